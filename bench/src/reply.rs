//! Incremental, allocation-free classification of memcached text-protocol replies.
//!
//! The load generator pipelines requests and matches replies in order (memcached
//! answers in order), so all it needs from a reply is where it ends and what it says:
//! how many `VALUE` blocks a `get` returned (hits), or whether a `set` was stored.
//! [`parse_reply`] looks at the front of the read buffer and answers with the reply
//! and its length, or `Ok(None)` while the reply is not all there yet. It never
//! copies a value: it reads replies with the `protocol` crate's readers (the one
//! `VALUE` block reader, the one reply line reader and its limits), as the client and
//! the server do, and only counts what they find.
//!
//! The server's framing is trusted no further than this: a reply that cannot be
//! framed is a [`ReplyError`], never a panic; the caller drops the connection.

use ringcache_protocol::text::frame::{is_error_line, reply_len, reply_line, FrameError};
use ringcache_protocol::text::value::{read_values, ValuesEnd};
use ringcache_protocol::text::Expect;

/// What a complete reply said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// A `get` reply with this many `VALUE` blocks (hits).
    Values { hits: u32 },
    /// `STORED`.
    Stored,
    /// `NOT_STORED`, `EXISTS` or `NOT_FOUND` to a storage command: a valid answer that
    /// did not store (counted, not an error of the server).
    NotStored,
    /// `ERROR`, `CLIENT_ERROR ...` or `SERVER_ERROR ...`.
    Error,
    /// A whole reply of another shape (the load generator sends only `get` and `set`).
    Other,
}

/// A reply that cannot be framed: the stream is out of sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplyError {
    /// A line that is neither the expected reply nor an error line (first bytes shown).
    Unexpected(String),
    /// What `protocol`'s reply readers refused (a malformed `VALUE` header, a data
    /// block not followed by `\r\n`, a line over the reply line limit, ...).
    Frame(FrameError),
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::Unexpected(l) => write!(f, "unexpected reply line {l:?}"),
            ReplyError::Frame(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReplyError {}

impl From<FrameError> for ReplyError {
    fn from(e: FrameError) -> Self {
        ReplyError::Frame(e)
    }
}

/// Parses the first reply in `buf`, which answers a request of shape `expect`.
/// `Ok(None)`: not complete yet, read more.
pub(crate) fn parse_reply(buf: &[u8], expect: Expect) -> Result<Option<(Reply, usize)>, ReplyError> {
    match expect {
        Expect::Values => {
            let mut hits = 0u32;
            let Some((end, len)) = read_values(buf, |_| hits = hits.saturating_add(1))? else {
                return Ok(None);
            };
            let reply = match end {
                ValuesEnd::End => Reply::Values { hits },
                ValuesEnd::Error if hits == 0 => Reply::Error,
                // memcached sends an error line instead of (not after) VALUE blocks.
                ValuesEnd::Error => return Err(unexpected(last_line(&buf[..len]))),
            };
            Ok(Some((reply, len)))
        }
        Expect::Stored => {
            let Some((line, next)) = reply_line(buf)? else {
                return Ok(None);
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let reply = match line {
                b"STORED" => Reply::Stored,
                b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND" => Reply::NotStored,
                _ if is_error_line(line) => Reply::Error,
                _ => return Err(unexpected(line)),
            };
            Ok(Some((reply, next)))
        }
        // Any other shape: framed as the client frames it, and only told apart as an
        // error or not.
        other => {
            let Some(len) = reply_len(buf, other)? else {
                return Ok(None);
            };
            let first = reply_line(buf)?.map_or(&buf[..0], |(line, _)| line);
            let error = is_error_line(first.strip_suffix(b"\r").unwrap_or(first));
            Ok(Some((if error { Reply::Error } else { Reply::Other }, len)))
        }
    }
}

/// The last line of a whole reply, without its `\r\n`.
fn last_line(reply: &[u8]) -> &[u8] {
    let body = reply.strip_suffix(b"\r\n").unwrap_or(reply);
    body.iter().rposition(|&b| b == b'\n').map_or(body, |i| &body[i + 1..])
}

fn unexpected(line: &[u8]) -> ReplyError {
    let shown = &line[..line.len().min(60)];
    ReplyError::Unexpected(String::from_utf8_lossy(shown).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8], e: Expect) -> Result<Option<(Reply, usize)>, ReplyError> {
        parse_reply(buf, e)
    }

    #[test]
    fn store_replies() {
        assert_eq!(parse(b"STORED\r\n", Expect::Stored), Ok(Some((Reply::Stored, 8))));
        assert_eq!(
            parse(b"NOT_STORED\r\nSTORED\r\n", Expect::Stored),
            Ok(Some((Reply::NotStored, 12)))
        );
        assert_eq!(parse(b"EXISTS\r\n", Expect::Stored), Ok(Some((Reply::NotStored, 8))));
        assert_eq!(
            parse(b"SERVER_ERROR out of memory\r\n", Expect::Stored),
            Ok(Some((Reply::Error, 28)))
        );
        assert_eq!(parse(b"STORED\r", Expect::Stored), Ok(None));
        assert_eq!(parse(b"", Expect::Stored), Ok(None));
        assert!(matches!(
            parse(b"END\r\n", Expect::Stored),
            Err(ReplyError::Unexpected(_))
        ));
    }

    #[test]
    fn get_miss_hit_and_multi() {
        assert_eq!(
            parse(b"END\r\n", Expect::Values),
            Ok(Some((Reply::Values { hits: 0 }, 5)))
        );
        let one = b"VALUE k 0 3\r\nabc\r\nEND\r\n";
        assert_eq!(
            parse(one, Expect::Values),
            Ok(Some((Reply::Values { hits: 1 }, one.len())))
        );
        let two = b"VALUE a 5 2 99\r\nxy\r\nVALUE b 0 0\r\n\r\nEND\r\nSTORED\r\n";
        assert_eq!(
            parse(two, Expect::Values),
            Ok(Some((Reply::Values { hits: 2 }, two.len() - 8)))
        );
        assert_eq!(parse(b"ERROR\r\n", Expect::Values), Ok(Some((Reply::Error, 7))));
    }

    #[test]
    fn data_containing_end_lines_is_skipped_by_length() {
        let r = b"VALUE k 0 7\r\nEND\r\nxx\r\nEND\r\n";
        assert_eq!(parse(r, Expect::Values), Ok(Some((Reply::Values { hits: 1 }, r.len()))));
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let r = b"VALUE key:1 0 5\r\nhello\r\nVALUE key:2 0 1\r\nx\r\nEND\r\n";
        for cut in 0..r.len() {
            assert_eq!(parse(&r[..cut], Expect::Values), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse(r, Expect::Values), Ok(Some((Reply::Values { hits: 2 }, r.len()))));
    }

    #[test]
    fn broken_framing_is_an_error_not_a_panic() {
        let bad: &[&[u8]] = &[
            b"VALUE k 0\r\n",
            b"VALUE k 0 x\r\n",
            b"VALUE k 0 -1\r\n",
            b"VALUE k 0 99999999999\r\n",
            b"VALUE k 0 2\r\nabcd\r\n",
            b"STORED\r\n",
            b"VALUE k 0 1\r\na\r\nSERVER_ERROR x\r\n",
        ];
        for b in bad {
            assert!(parse(b, Expect::Values).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
        let long = vec![b'V'; ringcache_protocol::limits::MAX_REPLY_LINE + 2];
        assert_eq!(
            parse(&long, Expect::Values),
            Err(ReplyError::Frame(FrameError::LineTooLong(
                ringcache_protocol::limits::MAX_REPLY_LINE
            )))
        );
        assert_eq!(parse(b"DELETED\r\n", Expect::Deleted), Ok(Some((Reply::Other, 9))));
        assert_eq!(parse(b"ERROR\r\n", Expect::Deleted), Ok(Some((Reply::Error, 7))));
    }
}
