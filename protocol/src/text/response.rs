//! Response encoders (server side) and the response parser (client side).
//!
//! # Encoding
//! The constants and `write_*` functions append memcached's exact reply bytes; a
//! [`Response`] value encodes itself with [`Response::encode`].
//!
//! # Parsing
//! [`parse_response`] reads one reply line (with its data block for `VALUE`) from the
//! front of a client's read buffer, incrementally and without copying: values, keys
//! and messages are `Bytes` slices of the buffer. Multi-line replies come one element
//! at a time: a `get` yields [`Response::Value`] per hit and then [`Response::End`];
//! `stats` yields [`Response::Stat`] per line and then [`Response::End`]. Which
//! replies are acceptable depends on the request sent, given as an [`Expect`]; any
//! other reply is a [`ResponseError`], after which the stream is out of step and the
//! connection should be closed.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use memchr::memchr;

use crate::text::request::{Limits, KEY_MAX_LEN};

pub const STORED: &[u8] = b"STORED\r\n";
pub const NOT_STORED: &[u8] = b"NOT_STORED\r\n";
pub const EXISTS: &[u8] = b"EXISTS\r\n";
pub const NOT_FOUND: &[u8] = b"NOT_FOUND\r\n";
pub const DELETED: &[u8] = b"DELETED\r\n";
pub const TOUCHED: &[u8] = b"TOUCHED\r\n";
pub const END: &[u8] = b"END\r\n";
pub const OK: &[u8] = b"OK\r\n";
pub const RESET: &[u8] = b"RESET\r\n";
pub const ERROR: &[u8] = b"ERROR\r\n";

/// Appends `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n`.
pub fn write_value(out: &mut BytesMut, key: &[u8], flags: u32, data: &[u8], cas: Option<u64>) {
    let mut num = itoa::Buffer::new();
    out.reserve(key.len() + data.len() + 48);
    out.put_slice(b"VALUE ");
    out.put_slice(key);
    out.put_u8(b' ');
    out.put_slice(num.format(flags).as_bytes());
    out.put_u8(b' ');
    out.put_slice(num.format(data.len()).as_bytes());
    if let Some(cas) = cas {
        out.put_u8(b' ');
        out.put_slice(num.format(cas).as_bytes());
    }
    out.put_slice(b"\r\n");
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Appends a decimal number line (the answer to `incr`/`decr`).
pub fn write_number(out: &mut BytesMut, n: u64) {
    let mut num = itoa::Buffer::new();
    out.put_slice(num.format(n).as_bytes());
    out.put_slice(b"\r\n");
}

/// Appends `STAT <name> <value>\r\n`.
pub fn write_stat(out: &mut BytesMut, name: &str, value: impl std::fmt::Display) {
    use std::fmt::Write;
    let _ = write!(WriteAdapter(out), "STAT {name} {value}\r\n");
}

/// Appends `<word> <text>\r\n` (`VERSION 1.6.18`, `CLIENT_ERROR bad data chunk`, ...).
fn write_line(out: &mut BytesMut, word: &[u8], text: &[u8]) {
    out.reserve(word.len() + text.len() + 3);
    out.put_slice(word);
    out.put_u8(b' ');
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

struct WriteAdapter<'a>(&'a mut BytesMut);

impl std::fmt::Write for WriteAdapter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// One item of a `get`/`gets`/`gat`/`gats` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub key: Bytes,
    pub flags: u32,
    /// Present in replies to `gets` and `gats`.
    pub cas: Option<u64>,
    pub data: Bytes,
}

/// One classic reply line (with its data block for `VALUE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `VALUE <key> <flags> <bytes>[ <cas>]` and its data block.
    Value(Value),
    /// `END`: the end of a retrieval or `stats` reply.
    End,
    Stored,
    NotStored,
    Exists,
    NotFound,
    Deleted,
    Touched,
    /// `OK` (`flush_all`, `verbosity`, `stats detail on|off`).
    Ok,
    /// `RESET` (`stats reset`).
    Reset,
    /// The new value after `incr`/`decr`.
    Number(u64),
    /// `VERSION <version>`.
    Version(Bytes),
    /// `STAT <name> <value>`; the value is the rest of the line.
    Stat {
        name: Bytes,
        value: Bytes,
    },
    /// `ERROR`: unknown command or malformed request.
    Error,
    /// `CLIENT_ERROR <message>`.
    ClientError(Bytes),
    /// `SERVER_ERROR <message>`.
    ServerError(Bytes),
}

impl Response {
    /// Appends the reply's exact bytes.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Response::Value(v) => write_value(out, &v.key, v.flags, &v.data, v.cas),
            Response::End => out.put_slice(END),
            Response::Stored => out.put_slice(STORED),
            Response::NotStored => out.put_slice(NOT_STORED),
            Response::Exists => out.put_slice(EXISTS),
            Response::NotFound => out.put_slice(NOT_FOUND),
            Response::Deleted => out.put_slice(DELETED),
            Response::Touched => out.put_slice(TOUCHED),
            Response::Ok => out.put_slice(OK),
            Response::Reset => out.put_slice(RESET),
            Response::Number(n) => write_number(out, *n),
            Response::Version(v) => write_line(out, b"VERSION", v),
            Response::Stat { name, value } => {
                out.reserve(name.len() + value.len() + 8);
                out.put_slice(b"STAT ");
                out.put_slice(name);
                out.put_u8(b' ');
                out.put_slice(value);
                out.put_slice(b"\r\n");
            }
            Response::Error => out.put_slice(ERROR),
            Response::ClientError(m) => write_line(out, b"CLIENT_ERROR", m),
            Response::ServerError(m) => write_line(out, b"SERVER_ERROR", m),
        }
    }
}

/// Which replies the request sent allows. `ERROR`, `CLIENT_ERROR` and `SERVER_ERROR`
/// are accepted after any request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `get`, `gets`, `gat`, `gats`: `Value`s, then `End`.
    Retrieval,
    /// `set`, `add`, `replace`, `append`, `prepend`, `cas`: `Stored`, `NotStored`,
    /// `Exists`, `NotFound`.
    Storage,
    /// `delete`: `Deleted`, `NotFound`.
    Delete,
    /// `incr`, `decr`: `Number`, `NotFound`.
    Arith,
    /// `touch`: `Touched`, `NotFound`.
    Touch,
    /// `stats [group]`: `Stat`s, then `End`; or `Reset`, or `Ok`.
    Stats,
    /// `version`: `Version`.
    Version,
    /// `flush_all`, `verbosity`: `Ok`.
    Ok,
    /// Any classic reply (for a relay that does not track requests).
    Any,
}

/// The longest reply line accepted (without a data block).
pub const MAX_RESPONSE_LINE: usize = 8192;

/// A reply that cannot be read: the stream is out of step; close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("malformed response line")]
    Malformed,
    #[error("response line not terminated by \\r\\n")]
    BadLineEnd,
    #[error("response line longer than {MAX_RESPONSE_LINE} bytes")]
    LineTooLong,
    #[error("value of {0} bytes is larger than the item size limit")]
    ValueTooLarge(u64),
    #[error("value data block not terminated by \\r\\n")]
    BadDataChunk,
    #[error("reply {0} does not answer this request")]
    Unexpected(&'static str),
}

/// A reply line read but not yet built: byte ranges into the buffer.
enum Head {
    Plain(Response),
    Value {
        key: (usize, usize),
        flags: u32,
        len: usize,
        cas: Option<u64>,
    },
    Version((usize, usize)),
    Stat {
        name: (usize, usize),
        value: (usize, usize),
    },
    ClientError((usize, usize)),
    ServerError((usize, usize)),
}

impl Head {
    fn name(&self) -> &'static str {
        match self {
            Head::Plain(r) => match r {
                Response::End => "END",
                Response::Stored => "STORED",
                Response::NotStored => "NOT_STORED",
                Response::Exists => "EXISTS",
                Response::NotFound => "NOT_FOUND",
                Response::Deleted => "DELETED",
                Response::Touched => "TOUCHED",
                Response::Ok => "OK",
                Response::Reset => "RESET",
                Response::Number(_) => "a number",
                Response::Error => "ERROR",
                _ => "?",
            },
            Head::Value { .. } => "VALUE",
            Head::Version(_) => "VERSION",
            Head::Stat { .. } => "STAT",
            Head::ClientError(_) => "CLIENT_ERROR",
            Head::ServerError(_) => "SERVER_ERROR",
        }
    }

    fn answers(&self, expect: Expect) -> bool {
        use Response as R;
        match self {
            Head::Plain(R::Error) | Head::ClientError(_) | Head::ServerError(_) => return true,
            _ => {}
        }
        match expect {
            Expect::Any => true,
            Expect::Retrieval => matches!(self, Head::Value { .. } | Head::Plain(R::End)),
            Expect::Storage => matches!(self, Head::Plain(R::Stored | R::NotStored | R::Exists | R::NotFound)),
            Expect::Delete => matches!(self, Head::Plain(R::Deleted | R::NotFound)),
            Expect::Arith => matches!(self, Head::Plain(R::Number(_) | R::NotFound)),
            Expect::Touch => matches!(self, Head::Plain(R::Touched | R::NotFound)),
            Expect::Stats => matches!(self, Head::Stat { .. } | Head::Plain(R::End | R::Reset | R::Ok)),
            Expect::Version => matches!(self, Head::Version(_)),
            Expect::Ok => matches!(self, Head::Plain(R::Ok)),
        }
    }
}

/// Parses one reply from the front of `buf`.
///
/// - `Ok(Some(reply))`: its bytes are removed from `buf`; slices point into them.
/// - `Ok(None)`: incomplete; `buf` is untouched.
/// - `Err(e)`: the bytes cannot be a reply to this request; `buf` is untouched and
///   the connection should be dropped.
///
/// Lines are bounded by [`MAX_RESPONSE_LINE`], data blocks by `limits.max_item_size`.
/// Never panics, whatever `buf` holds.
pub fn parse_response(buf: &mut BytesMut, expect: Expect, limits: &Limits) -> Result<Option<Response>, ResponseError> {
    let window = &buf[..buf.len().min(MAX_RESPONSE_LINE)];
    let Some(nl) = memchr(b'\n', window) else {
        return if buf.len() >= MAX_RESPONSE_LINE {
            Err(ResponseError::LineTooLong)
        } else {
            Ok(None)
        };
    };
    if nl == 0 || buf[nl - 1] != b'\r' {
        return Err(ResponseError::BadLineEnd);
    }
    let next = nl + 1;
    let head = head(&buf[..nl - 1], limits)?;
    if !head.answers(expect) {
        return Err(ResponseError::Unexpected(head.name()));
    }
    let resp = match head {
        Head::Plain(r) => {
            buf.advance(next);
            r
        }
        Head::Value { key, flags, len, cas } => {
            let total = next + len + 2;
            if buf.len() < total {
                return Ok(None);
            }
            if buf[total - 2..total] != *b"\r\n" {
                return Err(ResponseError::BadDataChunk);
            }
            let frame = buf.split_to(total).freeze();
            Response::Value(Value {
                key: frame.slice(key.0..key.1),
                flags,
                cas,
                data: frame.slice(next..next + len),
            })
        }
        Head::Version(v) => Response::Version(slice(buf, next, v)),
        Head::Stat { name, value } => {
            let frame = buf.split_to(next).freeze();
            Response::Stat {
                name: frame.slice(name.0..name.1),
                value: frame.slice(value.0..value.1),
            }
        }
        Head::ClientError(m) => Response::ClientError(slice(buf, next, m)),
        Head::ServerError(m) => Response::ServerError(slice(buf, next, m)),
    };
    Ok(Some(resp))
}

/// Removes the line and returns `range` of it.
fn slice(buf: &mut BytesMut, next: usize, range: (usize, usize)) -> Bytes {
    buf.split_to(next).freeze().slice(range.0..range.1)
}

/// A strict decimal number: digits only, no overflow.
fn decimal(tok: &[u8]) -> Option<u64> {
    if tok.is_empty() || tok.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in tok {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(v)
}

/// The text after `word ` (or nothing after `word`), as a byte range of `line`.
fn rest_after(line: &[u8], word: &[u8]) -> Option<(usize, usize)> {
    if line == word {
        return Some((line.len(), line.len()));
    }
    (line.len() > word.len() && line.starts_with(word) && line[word.len()] == b' ')
        .then_some((word.len() + 1, line.len()))
}

/// Reads a reply line (without `\r\n`).
fn head(line: &[u8], limits: &Limits) -> Result<Head, ResponseError> {
    use Response as R;
    let plain = match line {
        b"END" => R::End,
        b"STORED" => R::Stored,
        b"NOT_STORED" => R::NotStored,
        b"EXISTS" => R::Exists,
        b"NOT_FOUND" => R::NotFound,
        b"DELETED" => R::Deleted,
        b"TOUCHED" => R::Touched,
        b"OK" => R::Ok,
        b"RESET" => R::Reset,
        b"ERROR" => R::Error,
        _ => {
            if line.starts_with(b"VALUE ") {
                return value_head(line, limits);
            }
            if line.starts_with(b"STAT ") {
                let n0 = 5;
                let n1 = memchr(b' ', &line[n0..]).map_or(line.len(), |i| n0 + i);
                if n1 == n0 {
                    return Err(ResponseError::Malformed);
                }
                let v0 = (n1 + 1).min(line.len());
                return Ok(Head::Stat {
                    name: (n0, n1),
                    value: (v0, line.len()),
                });
            }
            if let Some(r) = rest_after(line, b"VERSION") {
                return Ok(Head::Version(r));
            }
            if let Some(r) = rest_after(line, b"CLIENT_ERROR") {
                return Ok(Head::ClientError(r));
            }
            if let Some(r) = rest_after(line, b"SERVER_ERROR") {
                return Ok(Head::ServerError(r));
            }
            // memcached also says `ERROR: shutdown not enabled` and the like.
            if line.starts_with(b"ERROR:") || line.starts_with(b"ERROR ") {
                return Ok(Head::Plain(R::Error));
            }
            match decimal(line) {
                Some(n) => R::Number(n),
                None => return Err(ResponseError::Malformed),
            }
        }
    };
    Ok(Head::Plain(plain))
}

/// `VALUE <key> <flags> <bytes>[ <cas>]`.
fn value_head(line: &[u8], limits: &Limits) -> Result<Head, ResponseError> {
    let mut toks = [(0usize, 0usize); 4];
    let mut n = 0;
    let mut i = 6;
    while i < line.len() {
        if line[i] == b' ' {
            i += 1;
            continue;
        }
        if n == toks.len() {
            return Err(ResponseError::Malformed);
        }
        let s = i;
        while i < line.len() && line[i] != b' ' {
            i += 1;
        }
        toks[n] = (s, i);
        n += 1;
    }
    if n < 3 {
        return Err(ResponseError::Malformed);
    }
    let tok = |t: usize| &line[toks[t].0..toks[t].1];
    let key = toks[0];
    if key.1 - key.0 > KEY_MAX_LEN {
        return Err(ResponseError::Malformed);
    }
    let flags = decimal(tok(1))
        .and_then(|f| u32::try_from(f).ok())
        .ok_or(ResponseError::Malformed)?;
    let len = decimal(tok(2)).ok_or(ResponseError::Malformed)?;
    if len > limits.max_item_size as u64 {
        return Err(ResponseError::ValueTooLarge(len));
    }
    let cas = if n == 4 {
        Some(decimal(tok(3)).ok_or(ResponseError::Malformed)?)
    } else {
        None
    };
    Ok(Head::Value {
        key,
        flags,
        len: len as usize,
        cas,
    })
}

#[cfg(test)]
mod tests;
