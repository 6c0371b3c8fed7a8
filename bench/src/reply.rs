//! Incremental, allocation-free classification of memcached text-protocol replies.
//!
//! The load generator pipelines requests and matches replies in order (memcached
//! answers in order), so all it needs from a reply is where it ends and what it says:
//! how many `VALUE` blocks a `get` returned (hits), or whether a `set` was stored.
//! [`parse_reply`] looks at the front of the read buffer and answers with the reply
//! and its length, or `Ok(None)` while the reply is not all there yet. It never
//! copies a value: a `VALUE` block is skipped by its declared length.
//!
//! The server's framing is trusted no further than this: a reply that cannot be
//! framed is a [`ReplyError`], never a panic; the caller drops the connection.

use memchr::memchr;

/// The shape of reply a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `get k1 k2 ...`: `VALUE` blocks, then `END`; or one error line.
    Values,
    /// `set`: one line.
    Stored,
}

/// What a complete reply said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A `get` reply with this many `VALUE` blocks (hits).
    Values { hits: u32 },
    /// `STORED`.
    Stored,
    /// `NOT_STORED`, `EXISTS` or `NOT_FOUND` to a storage command: a valid answer that
    /// did not store (counted, not an error of the server).
    NotStored,
    /// `ERROR`, `CLIENT_ERROR ...` or `SERVER_ERROR ...`.
    Error,
}

/// A reply that cannot be framed: the stream is out of sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// A line that is neither the expected reply nor an error line (first bytes shown).
    Unexpected(String),
    /// A `VALUE` header without a valid length.
    BadValueHeader,
    /// A data block not followed by `\r\n`.
    BadDataEnd,
    /// A reply line longer than [`MAX_LINE`].
    LineTooLong,
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::Unexpected(l) => write!(f, "unexpected reply line {l:?}"),
            ReplyError::BadValueHeader => f.write_str("malformed VALUE header"),
            ReplyError::BadDataEnd => f.write_str("data block not terminated by \\r\\n"),
            ReplyError::LineTooLong => write!(f, "reply line longer than {MAX_LINE} bytes"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Longest reply line accepted before the stream is declared broken.
pub const MAX_LINE: usize = 8 * 1024;

/// Largest value length accepted in a `VALUE` header (memcached's own ceiling is 1 GiB).
pub const MAX_VALUE: u64 = 1 << 30;

/// Parses the first reply in `buf`. `Ok(None)`: not complete yet, read more.
pub fn parse_reply(buf: &[u8], expect: Expect) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut hits = 0u32;
    loop {
        let Some((line, next)) = next_line(buf, pos)? else {
            return Ok(None);
        };
        if let Some(reply) = error_line(line) {
            // memcached sends an error line instead of (not after) VALUE blocks.
            if hits == 0 {
                return Ok(Some((reply, next)));
            }
            return Err(unexpected(line));
        }
        match expect {
            Expect::Stored => {
                let reply = match line {
                    b"STORED" => Reply::Stored,
                    b"NOT_STORED" | b"EXISTS" | b"NOT_FOUND" => Reply::NotStored,
                    _ => return Err(unexpected(line)),
                };
                return Ok(Some((reply, next)));
            }
            Expect::Values => {
                if line == b"END" {
                    return Ok(Some((Reply::Values { hits }, next)));
                }
                let Some(rest) = line.strip_prefix(b"VALUE ") else {
                    return Err(unexpected(line));
                };
                let len = value_len(rest)?;
                // The block is `len` bytes then `\r\n`.
                let Some(end) = next.checked_add(len).and_then(|e| e.checked_add(2)) else {
                    return Err(ReplyError::BadValueHeader);
                };
                if buf.len() < end {
                    return Ok(None);
                }
                if &buf[end - 2..end] != b"\r\n" {
                    return Err(ReplyError::BadDataEnd);
                }
                hits = hits.saturating_add(1);
                pos = end;
            }
        }
    }
}

/// The line starting at `pos` without its `\r\n`, and the offset after it.
fn next_line(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, ReplyError> {
    let rest = &buf[pos..];
    match memchr(b'\n', rest) {
        Some(nl) => {
            let line = &rest[..nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            Ok(Some((line, pos + nl + 1)))
        }
        None if rest.len() > MAX_LINE => Err(ReplyError::LineTooLong),
        None => Ok(None),
    }
}

fn error_line(line: &[u8]) -> Option<Reply> {
    (line == b"ERROR" || line.starts_with(b"CLIENT_ERROR") || line.starts_with(b"SERVER_ERROR")).then_some(Reply::Error)
}

/// The `<bytes>` field of `<key> <flags> <bytes> [<cas>]`.
fn value_len(header: &[u8]) -> Result<usize, ReplyError> {
    let field = header.split(|&b| b == b' ').nth(2).ok_or(ReplyError::BadValueHeader)?;
    if field.is_empty() || field.len() > 10 {
        return Err(ReplyError::BadValueHeader);
    }
    let mut n: u64 = 0;
    for &b in field {
        if !b.is_ascii_digit() {
            return Err(ReplyError::BadValueHeader);
        }
        n = n * 10 + u64::from(b - b'0');
    }
    if n > MAX_VALUE {
        return Err(ReplyError::BadValueHeader);
    }
    usize::try_from(n).map_err(|_| ReplyError::BadValueHeader)
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
        let long = vec![b'V'; MAX_LINE + 1];
        assert_eq!(parse(&long, Expect::Values), Err(ReplyError::LineTooLong));
    }
}
