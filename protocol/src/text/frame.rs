//! Response framing: where one reply ends in a stream of replies.
//!
//! memcached answers requests in order, so a client that pipelines many requests on
//! one connection only needs to know how long each reply is to match it to its
//! request. [`reply_len`] finds that length without building anything, which is all
//! a node needs to relay a peer's reply byte for byte. Typed replies are built by
//! [`crate::text::response`] and [`crate::text::meta`].

use memchr::memchr;

use crate::limits::{MAX_REPLY_LINE, MAX_REPLY_VALUE};
use crate::text::num::decimal;
use crate::text::value::read_values;

/// The shape of reply a request gets: the one answer to "what may come back", for the
/// framer ([`reply_len`], [`reply_fits`]), the client's typed parser
/// ([`crate::text::response::parse_response`]), relaying nodes and the bench.
///
/// `ERROR`, `CLIENT_ERROR` and `SERVER_ERROR` lines answer any request. The framer
/// frames [`Expect::Stored`] to [`Expect::Ok`] as one line, like [`Expect::Line`]; the
/// typed parser also checks that the line is one of those the request allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `get`/`gets`/`gat`/`gats`: `VALUE` blocks then `END`, or one error line.
    Values,
    /// `stats` and `topology`: lines up to `END` (`STAT`, `MEMBER`, `TOPOLOGY`), or one
    /// line (`RESET`, `OK`, an error).
    Lines,
    /// `set`, `add`, `replace`, `append`, `prepend`, `cas`: `STORED`, `NOT_STORED`,
    /// `EXISTS` or `NOT_FOUND`.
    Stored,
    /// `delete`: `DELETED` or `NOT_FOUND`.
    Deleted,
    /// `incr`, `decr`: the new value, or `NOT_FOUND`.
    Number,
    /// `touch`: `TOUCHED` or `NOT_FOUND`.
    Touched,
    /// `version`: `VERSION <version>`.
    Version,
    /// `flush_all`, `verbosity`: `OK`.
    Ok,
    /// Every other classic command: one line, whatever it says.
    Line,
    /// Any classic reply, for a reader that does not track requests: framed by its
    /// first line (`VALUE` as [`Expect::Values`], `STAT`, `MEMBER` or `TOPOLOGY` as
    /// [`Expect::Lines`], anything else as one line); the typed parser reads any
    /// classic reply element.
    Any,
    /// A meta command: one line, followed by a data block for `VA <size> ...`.
    Meta,
    /// Quiet meta commands followed by `mn`: any number of meta replies (a quiet
    /// command may answer nothing) up to and including `MN`.
    MetaUntilNoop,
    /// A quiet meta command (`q`) on its own: no reply, or one meta reply. Only a reply
    /// whose length is known can be framed this way (a peer's tagged reply, see
    /// `text::peer`); in a stream it frames as [`Expect::Meta`].
    MetaQuiet,
}

/// A reply that cannot be framed: the connection's stream is out of sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("malformed reply line")]
    /// The reply line does not have the shape its code requires.
    Malformed,
    #[error("reply line longer than {0} bytes")]
    /// No `\r\n` within the longest reply line allowed (the limit, in bytes).
    LineTooLong(usize),
    #[error("reply line not terminated by \\r\\n")]
    /// A `\n` not preceded by `\r`.
    BadLineEnd,
    #[error("data block of {0} bytes is larger than the limit")]
    /// A data block declared longer than the limit (its declared length).
    ValueTooLarge(u64),
    #[error("data block not terminated by \\r\\n")]
    /// The data block is not followed by `\r\n`.
    BadDataChunk,
    /// The reply is not the one the request in line expects (its `rc_id` tag, or the
    /// key it asked for, is not there): the two ends disagree on where replies begin.
    #[error("reply out of step with its request")]
    OutOfStep,
}

/// The first reply line in `buf`: the line without its `\n` (a `\r` before it is
/// left for the caller, who decides whether a bare `\n` is allowed) and the offset
/// after it; `Ok(None)` while it is not all there. The one place reply lines are
/// bounded: a line longer than [`MAX_REPLY_LINE`] without its `\r\n` is
/// [`FrameError::LineTooLong`], found after at most `MAX_REPLY_LINE + 2` bytes.
pub fn reply_line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, FrameError> {
    let window = &buf[..buf.len().min(MAX_REPLY_LINE + 2)];
    let Some(nl) = memchr(b'\n', window) else {
        return if buf.len() >= MAX_REPLY_LINE + 2 {
            Err(FrameError::LineTooLong(MAX_REPLY_LINE))
        } else {
            Ok(None)
        };
    };
    let line = &buf[..nl];
    if line.strip_suffix(b"\r").unwrap_or(line).len() > MAX_REPLY_LINE {
        return Err(FrameError::LineTooLong(MAX_REPLY_LINE));
    }
    Ok(Some((line, nl + 1)))
}

/// Whether a reply line (without `\r\n`) is one of memcached's error lines, which
/// answer any request: `ERROR` (also `ERROR: <why>` and `ERROR <why>`, as memcached
/// says for `shutdown`), `CLIENT_ERROR[ <msg>]`, `SERVER_ERROR[ <msg>]`.
pub fn is_error_line(line: &[u8]) -> bool {
    let word = |w: &[u8], seps: &[u8]| {
        line.strip_prefix(w)
            .is_some_and(|rest| rest.is_empty() || seps.contains(&rest[0]))
    };
    word(b"ERROR", b": ") || word(b"CLIENT_ERROR", b" ") || word(b"SERVER_ERROR", b" ")
}

/// The data length of a `VA <size> <flags>*` meta reply, from what follows `VA `: a
/// [`decimal`] up to the first space, at most [`MAX_REPLY_VALUE`].
pub fn va_len(rest: &[u8]) -> Result<usize, FrameError> {
    let token = &rest[..memchr(b' ', rest).unwrap_or(rest.len())];
    let n = decimal(token).ok_or(FrameError::Malformed)?;
    if n > MAX_REPLY_VALUE as u64 {
        return Err(FrameError::ValueTooLarge(n));
    }
    Ok(n as usize)
}

/// The length of the first complete reply in `buf`, `Ok(None)` if it is not all there.
pub fn reply_len(buf: &[u8], expect: Expect) -> Result<Option<usize>, FrameError> {
    let mut pos = 0;
    loop {
        let Some((line, next)) = reply_line(&buf[pos..])? else {
            return Ok(None);
        };
        // Only `MN\r\n` ends a run of meta replies, as the typed parser sees it.
        let crlf = line.ends_with(b"\r");
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let next = pos + next;
        match expect {
            Expect::Stored
            | Expect::Deleted
            | Expect::Number
            | Expect::Touched
            | Expect::Version
            | Expect::Ok
            | Expect::Line => return Ok(Some(next)),
            Expect::Any => {
                let shape = if line.starts_with(b"VALUE ") {
                    Expect::Values
                } else if is_list_line(line) {
                    Expect::Lines
                } else {
                    return Ok(Some(next));
                };
                return reply_len(buf, shape);
            }
            Expect::Meta | Expect::MetaQuiet => {
                if let Some(rest) = line.strip_prefix(b"VA ") {
                    return Ok(data_end(buf, next, va_len(rest)?));
                }
                return Ok(Some(next));
            }
            Expect::MetaUntilNoop => {
                if crlf && line == b"MN" {
                    return Ok(Some(next));
                }
                pos = match line.strip_prefix(b"VA ") {
                    Some(rest) => match data_end(buf, next, va_len(rest)?) {
                        Some(end) => end,
                        None => return Ok(None),
                    },
                    None => next,
                };
            }
            Expect::Values => {
                // The one reader of VALUE blocks, as the typed parser and peers read them.
                return Ok(read_values(buf, |_| {})?.map(|(_, len)| len));
            }
            Expect::Lines => {
                if is_list_line(line) {
                    pos = next;
                    continue;
                }
                return Ok(Some(next));
            }
        }
    }
}

/// A line of a `stats` or `topology` reply before its `END`.
fn is_list_line(line: &[u8]) -> bool {
    line.starts_with(b"STAT ") || line.starts_with(b"MEMBER ") || line.starts_with(b"TOPOLOGY ")
}

/// Whether `reply` is exactly one whole reply of the shape `expect` (empty only for
/// [`Expect::MetaQuiet`]); a meta reply must also start with a meta reply code or an
/// error. For a reply whose length came with it (a peer's tagged reply), this is the
/// check that it answers the request it was matched to.
pub fn reply_fits(reply: &[u8], expect: Expect) -> bool {
    if reply.is_empty() {
        return expect == Expect::MetaQuiet;
    }
    const META: [&[u8]; 8] = [b"HD", b"VA", b"EN", b"NS", b"EX", b"NF", b"MN", b"ME"];
    if reply_len(reply, expect) != Ok(Some(reply.len())) {
        return false;
    }
    let first = &reply[..reply
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(reply.len())];
    match expect {
        Expect::Meta | Expect::MetaQuiet | Expect::MetaUntilNoop => {
            let word = &first[..memchr(b' ', first).unwrap_or(first.len())];
            META.contains(&word) || is_error_line(first)
        }
        // The line that ends the reply: END, or an error instead of the whole reply.
        Expect::Values | Expect::Lines => {
            let last = reply[..reply.len() - 1]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(reply, |i| &reply[i + 1..]);
            last == b"END\r\n" || is_error_line(last.strip_suffix(b"\r\n").unwrap_or(last))
        }
        Expect::Stored
        | Expect::Deleted
        | Expect::Number
        | Expect::Touched
        | Expect::Version
        | Expect::Ok
        | Expect::Line
        | Expect::Any => true,
    }
}

/// Where the data block of `size` bytes starting at `start` ends (after its `\r\n`).
fn data_end(buf: &[u8], start: usize, size: usize) -> Option<usize> {
    let end = start.checked_add(size)?.checked_add(2)?;
    (buf.len() >= end).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CASES: &[(Expect, &[u8])] = &[
        (Expect::Line, b"STORED\r\n"),
        (Expect::Line, b"SERVER_ERROR out of memory\r\n"),
        (Expect::Values, b"END\r\n"),
        (Expect::Values, b"VALUE a 0 1\r\nx\r\nEND\r\n"),
        (
            Expect::Values,
            b"VALUE a 5 3 99\r\n\r\n\n\r\nVALUE b 0 0\r\n\r\nEND\r\n",
        ),
        (Expect::Values, b"CLIENT_ERROR bad command line format\r\n"),
        (Expect::Lines, b"STAT pid 1\r\nSTAT uptime 2\r\nEND\r\n"),
        (
            Expect::Lines,
            b"TOPOLOGY 1 xxh3-64 160 1 1\r\nMEMBER a 127.0.0.1:1 alive\r\nEND\r\n",
        ),
        (Expect::Lines, b"ERROR\r\n"),
        (Expect::Meta, b"HD c5\r\n"),
        (Expect::Meta, b"VA 2 f0\r\nab\r\n"),
        (Expect::Meta, b"EN\r\n"),
        (Expect::Meta, b"VA 0\r\n\r\n"),
        (Expect::MetaUntilNoop, b"MN\r\n"),
        (Expect::MetaUntilNoop, b"HD\r\nVA 2 k\r\nMN\r\nEN\r\nMN\r\n"),
        (Expect::MetaQuiet, b"HD\r\n"),
        (Expect::MetaQuiet, b"VA 2 k\r\nab\r\n"),
    ];

    #[test]
    fn frames_each_reply_whole_and_nothing_before() {
        for (expect, reply) in CASES {
            let mut buf = reply.to_vec();
            buf.extend_from_slice(b"NEXT\r\n");
            assert_eq!(
                reply_len(&buf, *expect),
                Ok(Some(reply.len())),
                "{:?}",
                String::from_utf8_lossy(reply)
            );
            for cut in 0..reply.len() {
                assert_eq!(reply_len(&reply[..cut], *expect), Ok(None), "cut {cut} of {reply:?}");
            }
        }
    }

    #[test]
    fn a_reply_fits_only_its_own_shape() {
        for (expect, reply) in CASES {
            assert!(reply_fits(reply, *expect), "{expect:?} {reply:?}");
            let mut longer = reply.to_vec();
            longer.extend_from_slice(b"END\r\n");
            assert!(!reply_fits(&longer, *expect), "{expect:?} {longer:?}");
        }
        assert!(reply_fits(b"", Expect::MetaQuiet));
        for expect in [Expect::Meta, Expect::Line, Expect::Values, Expect::Lines] {
            assert!(!reply_fits(b"", expect));
        }
        assert!(!reply_fits(b"RI 19\r\n", Expect::Meta));
        assert!(!reply_fits(b"END\r\n", Expect::MetaQuiet));
        assert!(!reply_fits(b"VALUE k 0 1\r\nx\r\nEND\r\n", Expect::Meta));
        assert!(!reply_fits(b"STORED\r\n", Expect::Values));
        assert!(!reply_fits(b"VA 1\r\nx\r\n", Expect::Values));
        assert!(!reply_fits(b"MN\r\n", Expect::Lines));
        assert!(reply_fits(b"SERVER_ERROR ring mismatch 5\r\n", Expect::Values));
        assert!(reply_fits(b"SERVER_ERROR ring mismatch 5\r\n", Expect::Meta));
    }

    /// Found by `ringcache-fuzz --target response`: `reply_len` took the third
    /// single-space field as the length, so with repeated spaces it framed a different
    /// reply than `response::parse_response`, which splits on runs of spaces.
    #[test]
    fn value_fields_split_on_runs_of_spaces_as_the_typed_parser_does() {
        let reply = b"VALUE a  1 3\r\nabc\r\nEND\r\n";
        assert_eq!(reply_len(reply, Expect::Values), Ok(Some(reply.len())));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert_eq!(
            reply_len(b"VALUE a 0 x\r\n", Expect::Values),
            Err(FrameError::Malformed)
        );
        assert_eq!(reply_len(b"VALUE a\r\n", Expect::Values), Err(FrameError::Malformed));
        assert_eq!(
            reply_len(b"VA 99999999999\r\n", Expect::Meta),
            Err(FrameError::ValueTooLarge(99999999999))
        );
        assert_eq!(
            reply_len(b"VA 184467440737095516160\r\n", Expect::Meta),
            Err(FrameError::Malformed)
        );
        let long = vec![b'x'; MAX_REPLY_LINE + 2];
        assert!(reply_len(&long, Expect::Line).is_err());
        assert_eq!(
            reply_len(b"VA 18446744073\r\n", Expect::Meta),
            Err(FrameError::ValueTooLarge(18446744073))
        );
        assert_eq!(reply_len(b"VA 3x\r\nabc\r\n", Expect::Meta), Err(FrameError::Malformed));
        assert_eq!(
            reply_len(b"VALUE a 0 1\r\nxy\r\nEND\r\n", Expect::Values),
            Err(FrameError::BadDataChunk)
        );
    }
}
