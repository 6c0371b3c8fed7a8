//! Meta commands: `mg`, `ms`, `md`, `ma`, `mn`, `me`.

use bytes::Bytes;

/// One meta request (placeholder shape; the meta parser defines the flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRequest {
    pub key: Bytes,
}

impl MetaRequest {
    /// Appends the wire form.
    pub fn encode(&self, out: &mut BytesMut) {
        out.extend_from_slice(&self.key);
    }
}

use bytes::BytesMut;

use crate::text::parse::ParseError;
use crate::text::request::Limits;

/// Parses the meta command whose line is `buf[..line_len]` (without its line end);
/// its data block, if any, starts at `buf[next..]`. Same contract as
/// [`crate::text::parse_request`].
pub fn parse_meta(
    buf: &mut BytesMut,
    line_len: usize,
    next: usize,
    limits: &Limits,
) -> Result<Option<MetaRequest>, ParseError> {
    let _ = (line_len, limits);
    bytes::Buf::advance(buf, next);
    Err(ParseError {
        reply: b"ERROR\r\n",
        swallow: 0,
        close: false,
        unlink: None,
    })
}
