//! The incremental request parser.
//!
//! [`parse_request`] looks at the front of the connection's read buffer. It returns:
//! - `Ok(Some(request))` and removes the request's bytes from the buffer (keys and
//!   values are `Bytes` slices of them: no copy);
//! - `Ok(None)` when the buffer holds no complete request yet; the buffer is untouched;
//! - `Err(ParseError)` with memcached's exact reply for a bad request; the bad line
//!   has been removed from the buffer, and the connection discards `swallow` more
//!   bytes (already buffered or still to come), as memcached does with the data block
//!   of a value that is too large, then goes on, or closes when `close` is set.

use bytes::{Bytes, BytesMut};

use crate::text::request::{Limits, Request};

/// A request memcached answers with an error line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The exact reply, with its `\r\n` (`ERROR\r\n`, `CLIENT_ERROR ...\r\n`, ...),
    /// or empty where memcached says nothing.
    pub reply: &'static [u8],
    /// Bytes after the line to discard before parsing the next request.
    pub swallow: u64,
    /// Close the connection after sending the reply (memcached hangs up).
    pub close: bool,
    /// A key whose current item the server must drop: memcached unlinks the old value
    /// of a `set` whose new value it refused (too large), so that a stale value does
    /// not outlive a write the client believes replaced it.
    pub unlink: Option<Bytes>,
}

/// Parses one request from the front of `buf`; see the module documentation.
pub fn parse_request(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Request>, ParseError> {
    let _ = (buf, limits);
    Ok(None)
}
