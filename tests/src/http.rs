//! A minimal blocking HTTP/1.1 GET for the admin listener's tests (`/metrics`,
//! `/healthz`, `/readyz`): one request per connection (`Connection: close`), the
//! response read to the end of the stream, never past a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use crate::raw::{RawConn, ReadEnd};

/// A response: status code, headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl HttpResponse {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Sends `<method> <path>` to `addr` and reads the whole response within `timeout`.
pub fn http_request(addr: SocketAddr, method: &str, path: &str, timeout: Duration) -> Result<HttpResponse, String> {
    let mut conn = RawConn::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.send(req.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    match conn.read_to_eof(&mut raw, timeout) {
        ReadEnd::Closed => {}
        other => return Err(format!("{method} {path}: no complete response ({other:?})")),
    }
    let text = String::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|l| l.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_string(),
    })
}

/// `GET path`; panics if no complete response comes within 10 s.
pub fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    http_request(addr, "GET", path, Duration::from_secs(10)).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}
