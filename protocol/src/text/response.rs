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

use crate::limits::{Limits, KEY_MAX_LEN};
use crate::text::frame::{reply_line, Expect, FrameError};
use crate::text::num::decimal;
use crate::text::value::{parse_value_header, read_value_block};

// Every fixed reply line, each defined once: what a server sends and what tests and
// the parsers compare against.

/// Stored.
pub const STORED: &[u8] = b"STORED\r\n";
/// Not stored: the condition of `add`, `replace`, `append` or `prepend` failed.
pub const NOT_STORED: &[u8] = b"NOT_STORED\r\n";
/// Not stored: the item changed since the client read its CAS unique.
pub const EXISTS: &[u8] = b"EXISTS\r\n";
/// No such key.
pub const NOT_FOUND: &[u8] = b"NOT_FOUND\r\n";
/// The item was deleted.
pub const DELETED: &[u8] = b"DELETED\r\n";
/// The item's expiry was changed.
pub const TOUCHED: &[u8] = b"TOUCHED\r\n";
/// The end of a retrieval or `stats` reply.
pub const END: &[u8] = b"END\r\n";
/// Done (`flush_all`, `verbosity`, `stats detail on|off`).
pub const OK: &[u8] = b"OK\r\n";
/// The statistics were reset (`stats reset`).
pub const RESET: &[u8] = b"RESET\r\n";
/// Unknown command or malformed request.
pub const ERROR: &[u8] = b"ERROR\r\n";

/// Defines an error line and its message, spelling the message once: `$line` is
/// `<$word> <$msg>\r\n`, `$msg` the message alone (for an error type's `Display`).
macro_rules! error_line {
    ($(#[$doc:meta])* $line:ident, $msg:ident, $word:literal, $text:literal) => {
        $(#[$doc])*
        pub const $line: &[u8] = concat!($word, " ", $text, "\r\n").as_bytes();
        #[doc = concat!("The message of [`", stringify!($line), "`].")]
        pub const $msg: &str = $text;
    };
}

error_line!(
    /// A command line memcached cannot read.
    BAD_FORMAT, BAD_FORMAT_MSG, "CLIENT_ERROR", "bad command line format"
);
error_line!(
    /// `delete` with arguments memcached does not take.
    BAD_DELETE, BAD_DELETE_MSG, "CLIENT_ERROR", "bad command line format.  Usage: delete <key> [noreply]"
);
error_line!(
    /// An exptime that is not a number.
    BAD_EXPTIME, BAD_EXPTIME_MSG, "CLIENT_ERROR", "invalid exptime argument"
);
error_line!(
    /// An `incr`/`decr` delta that is not a number.
    BAD_DELTA, BAD_DELTA_MSG, "CLIENT_ERROR", "invalid numeric delta argument"
);
error_line!(
    /// A data block not followed by `\r\n`.
    BAD_CHUNK, BAD_CHUNK_MSG, "CLIENT_ERROR", "bad data chunk"
);
error_line!(
    /// A value larger than `-I` allows.
    TOO_LARGE, TOO_LARGE_MSG, "SERVER_ERROR", "object too large for cache"
);
error_line!(
    /// A request line longer than memcached's read buffer.
    LINE_TOO_LONG, LINE_TOO_LONG_MSG, "SERVER_ERROR", "out of memory reading request"
);
error_line!(
    /// A store that eviction could not make room for.
    NO_MEMORY_STORING, NO_MEMORY_STORING_MSG, "SERVER_ERROR", "out of memory storing object"
);
error_line!(
    /// An `ma` that could not allocate its new value.
    NO_MEMORY, NO_MEMORY_MSG, "SERVER_ERROR", "out of memory"
);
error_line!(
    /// ringcache: a request that could not be placed, or a write not acknowledged,
    /// because the nodes' rings disagree for a moment (a membership change). Nothing
    /// was acknowledged; the client may retry.
    RING_CHANGING, RING_CHANGING_MSG, "SERVER_ERROR", "ring changing"
);
error_line!(
    /// ringcache: a write whose owner could not be reached. It may or may not have run
    /// there (a write that gives the same result when run twice is placed on the next
    /// owner instead, and never gets this).
    OWNER_UNAVAILABLE, OWNER_UNAVAILABLE_MSG, "SERVER_ERROR", "owner unavailable"
);
error_line!(
    /// ringcache: a write the primary applied but could not apply on every live owner
    /// within the membership's verdict on the missing one.
    REPLICA_UNAVAILABLE, REPLICA_UNAVAILABLE_MSG, "SERVER_ERROR", "replica unavailable"
);
error_line!(
    /// ringcache: a key command to a node that is still joining its cluster.
    JOINING, JOINING_MSG, "SERVER_ERROR", "joining the cluster"
);
error_line!(
    /// ringcache: a key command to a node whose side of the cluster holds no majority of
    /// its members (it was cut off, or most of the cluster failed): what it holds may
    /// have been overwritten on the other side, and what it would accept the majority
    /// would not see. Nothing was done; a client should use another node.
    NO_QUORUM, NO_QUORUM_MSG, "SERVER_ERROR", "no quorum: this node is cut off from most of its cluster"
);
error_line!(
    /// ringcache: a key command to a node that has just dropped its store (it was
    /// frozen longer than failure detection, or the cluster declared it down, or its
    /// side regained a majority) and is still on the ring it held then: requests placed
    /// with that ring may have waited in its sockets since before the drop, and the
    /// cluster may have moved on without it. Nothing was done; a client should use
    /// another node.
    STORE_DROPPED, STORE_DROPPED_MSG, "SERVER_ERROR", "store dropped: waiting for the cluster's verdict"
);
error_line!(
    /// `incr`/`decr` on a value that is not a number.
    NON_NUMERIC, NON_NUMERIC_MSG, "CLIENT_ERROR", "cannot increment or decrement non-numeric value"
);
error_line!(
    /// An `lru_crawler`/`slabs` command line memcached cannot read.
    BAD_COMMAND_LINE, BAD_COMMAND_LINE_MSG, "CLIENT_ERROR", "bad command line"
);
error_line!(
    /// `stats cachedump` of a slab class that does not exist.
    ILLEGAL_SLAB_ID, ILLEGAL_SLAB_ID_MSG, "CLIENT_ERROR", "Illegal slab id"
);
/// `shutdown` without `-A`.
pub const SHUTDOWN_DISABLED: &[u8] = b"ERROR: shutdown not enabled\r\n";
/// `cache_memlimit` below 8 MiB.
pub const MEMLIMIT_TOO_SMALL: &[u8] = b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n";
/// `cache_memlimit` that looks like bytes, not MiB.
pub const MEMLIMIT_NOT_BYTES: &[u8] = b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n";

/// Appends `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n`.
pub fn write_value(out: &mut BytesMut, key: &[u8], flags: u32, data: &[u8], cas: Option<u64>) {
    out.reserve(key.len() + data.len() + 48);
    write_value_head(out, key, flags, data.len(), cas);
    out.put_slice(data);
    out.put_slice(VALUE_END);
}

/// Appends `VALUE <key> <flags> <bytes>[ <cas>]\r\n`: a `VALUE` block up to its data,
/// for a caller that sends the data and then [`VALUE_END`] from elsewhere.
pub fn write_value_head(out: &mut BytesMut, key: &[u8], flags: u32, bytes: usize, cas: Option<u64>) {
    let mut num = itoa::Buffer::new();
    out.put_slice(b"VALUE ");
    out.put_slice(key);
    out.put_u8(b' ');
    out.put_slice(num.format(flags).as_bytes());
    out.put_u8(b' ');
    out.put_slice(num.format(bytes).as_bytes());
    if let Some(cas) = cas {
        out.put_u8(b' ');
        out.put_slice(num.format(cas).as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// What ends a `VALUE` block after its data.
pub const VALUE_END: &[u8] = b"\r\n";
/// What ends the last `VALUE` block of a retrieval and the retrieval: [`VALUE_END`]
/// then [`END`].
pub const VALUE_END_LAST: &[u8] = b"\r\nEND\r\n";

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
    /// The key.
    pub key: Bytes,
    /// The client flags.
    pub flags: u32,
    /// Present in replies to `gets` and `gats`.
    pub cas: Option<u64>,
    /// The data, without its `\r\n`.
    pub data: Bytes,
}

/// One classic reply line (with its data block for `VALUE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `VALUE <key> <flags> <bytes>[ <cas>]` and its data block.
    Value(Value),
    /// `END`: the end of a retrieval or `stats` reply.
    End,
    /// `STORED`.
    Stored,
    /// `NOT_STORED`.
    NotStored,
    /// `EXISTS`.
    Exists,
    /// `NOT_FOUND`.
    NotFound,
    /// `DELETED`.
    Deleted,
    /// `TOUCHED`.
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
        /// The statistic's name.
        name: Bytes,
        /// Its value.
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

/// A reply that cannot be read: the stream is out of step; close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("malformed response line")]
    /// The line is not a reply this client knows.
    Malformed,
    #[error("response line not terminated by \\r\\n")]
    /// A `\n` not preceded by `\r`.
    BadLineEnd,
    #[error("response line longer than {} bytes", crate::limits::MAX_REPLY_LINE)]
    /// No `\r\n` within the longest reply line allowed.
    LineTooLong,
    #[error("value of {0} bytes is larger than the item size limit")]
    /// A value larger than the item size limit (its declared length).
    ValueTooLarge(u64),
    #[error("value data block not terminated by \\r\\n")]
    /// The data block is not followed by `\r\n`.
    BadDataChunk,
    #[error("reply {0} does not answer this request")]
    /// A well-formed reply that cannot answer the request sent (the reply's name).
    Unexpected(&'static str),
}

impl From<FrameError> for ResponseError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Malformed | FrameError::OutOfStep => ResponseError::Malformed,
            FrameError::LineTooLong(_) => ResponseError::LineTooLong,
            FrameError::BadLineEnd => ResponseError::BadLineEnd,
            FrameError::ValueTooLarge(n) => ResponseError::ValueTooLarge(n),
            FrameError::BadDataChunk => ResponseError::BadDataChunk,
        }
    }
}

/// A reply line read but not yet built: byte ranges into the buffer.
enum Head {
    Plain(Response),
    /// A `VALUE` line whose header is valid; the block is read by `read_value_block`.
    Value,
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
            Head::Value => "VALUE",
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
            Expect::Values => matches!(self, Head::Value | Head::Plain(R::End)),
            Expect::Stored => matches!(self, Head::Plain(R::Stored | R::NotStored | R::Exists | R::NotFound)),
            Expect::Deleted => matches!(self, Head::Plain(R::Deleted | R::NotFound)),
            Expect::Number => matches!(self, Head::Plain(R::Number(_) | R::NotFound)),
            Expect::Touched => matches!(self, Head::Plain(R::Touched | R::NotFound)),
            Expect::Lines => matches!(self, Head::Stat { .. } | Head::Plain(R::End | R::Reset | R::Ok)),
            Expect::Version => matches!(self, Head::Version(_)),
            Expect::Ok => matches!(self, Head::Plain(R::Ok)),
            // Any single line but a VALUE header (whose data block would be left behind).
            Expect::Line => !matches!(self, Head::Value),
            // Meta replies are read by `text::meta::response`; only errors are classic.
            Expect::Meta | Expect::MetaUntilNoop | Expect::MetaQuiet => false,
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
/// Lines are bounded by [`crate::limits::MAX_REPLY_LINE`], data blocks by
/// `limits.max_item_size`.
/// Never panics, whatever `buf` holds.
pub fn parse_response(buf: &mut BytesMut, expect: Expect, limits: &Limits) -> Result<Option<Response>, ResponseError> {
    let Some((line, next)) = reply_line(buf)? else {
        return Ok(None);
    };
    let line_len = line.strip_suffix(b"\r").ok_or(ResponseError::BadLineEnd)?.len();
    let head = head(&buf[..line_len], limits)?;
    if !head.answers(expect) {
        return Err(ResponseError::Unexpected(head.name()));
    }
    let resp = match head {
        Head::Plain(r) => {
            buf.advance(next);
            r
        }
        Head::Value => {
            let Some(block) = read_value_block(buf, limits.max_item_size)? else {
                return Ok(None);
            };
            // Where the key and the data sit in the buffer, to slice them out of it.
            let offset = |part: &[u8]| part.as_ptr() as usize - buf.as_ptr() as usize;
            let key = offset(block.key)..offset(block.key) + block.key.len();
            let data = offset(block.data)..offset(block.data) + block.data.len();
            let (flags, cas, total) = (block.flags, block.cas, block.raw.len());
            let frame = buf.split_to(total).freeze();
            Response::Value(Value {
                key: frame.slice(key),
                flags,
                cas,
                data: frame.slice(data),
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

/// `VALUE <key> <flags> <bytes>[ <cas>]`: a classic header, the key within
/// [`KEY_MAX_LEN`] and the data within `-I`.
fn value_head(line: &[u8], limits: &Limits) -> Result<Head, ResponseError> {
    let head = parse_value_header(line)?;
    if head.key.len() > KEY_MAX_LEN || !head.rest.is_empty() {
        return Err(ResponseError::Malformed);
    }
    if head.len > limits.max_item_size as u64 {
        return Err(ResponseError::ValueTooLarge(head.len));
    }
    Ok(Head::Value)
}

#[cfg(test)]
mod tests;
