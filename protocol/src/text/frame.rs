//! Response framing: where one reply ends in a stream of replies.
//!
//! memcached answers requests in order, so a client that pipelines many requests on
//! one connection only needs to know how long each reply is to match it to its
//! request. [`reply_len`] finds that length without building anything, which is all
//! a node needs to relay a peer's reply byte for byte. Typed replies are built by
//! [`crate::text::response`] and [`crate::text::meta`].

use memchr::memchr;

/// The shape of reply a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `get`/`gets`/`gat`/`gats`: `VALUE` blocks then `END`, or one error line.
    Values,
    /// `stats` and `topology`: lines up to `END`, or one error line.
    Lines,
    /// Every other classic command: one line.
    Line,
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("malformed reply line")]
    Malformed,
    #[error("reply line longer than {0} bytes")]
    LineTooLong(usize),
    /// The reply is not the one the request in line expects (its `rc_id` tag, or the
    /// key it asked for, is not there): the two ends disagree on where replies begin.
    #[error("reply out of step with its request")]
    OutOfStep,
}

/// Longest reply line accepted (a `VALUE` header with a 250-byte key is far shorter).
pub const MAX_LINE: usize = 8 * 1024;

/// The largest data block accepted in a reply.
pub const MAX_VALUE: usize = 1 << 30;

/// The length of the first complete reply in `buf`, `Ok(None)` if it is not all there.
pub fn reply_len(buf: &[u8], expect: Expect) -> Result<Option<usize>, FrameError> {
    let mut pos = 0;
    loop {
        let Some(line_end) = line_end(&buf[pos..])? else {
            return Ok(None);
        };
        let line = &buf[pos..pos + line_end];
        let line = line.strip_suffix(b"\r\n").unwrap_or(line);
        let next = pos + line_end;
        match expect {
            Expect::Line => return Ok(Some(next)),
            Expect::Meta | Expect::MetaQuiet => {
                if let Some(rest) = line.strip_prefix(b"VA ") {
                    let size = leading_number(rest)?;
                    return Ok(data_end(buf, next, size));
                }
                return Ok(Some(next));
            }
            Expect::MetaUntilNoop => {
                if line == b"MN" {
                    return Ok(Some(next));
                }
                pos = match line.strip_prefix(b"VA ") {
                    Some(rest) => match data_end(buf, next, leading_number(rest)?) {
                        Some(end) => end,
                        None => return Ok(None),
                    },
                    None => next,
                };
            }
            Expect::Values => {
                if let Some(rest) = line.strip_prefix(b"VALUE ") {
                    // VALUE <key> <flags> <bytes> [<cas>], separated by runs of spaces
                    // (as `response::parse_response` reads them).
                    let mut fields = rest.split(|&b| b == b' ').filter(|f| !f.is_empty());
                    let size = fields.nth(2).ok_or(FrameError::Malformed)?;
                    let size = leading_number(size)?;
                    match data_end(buf, next, size) {
                        Some(end) => pos = end,
                        None => return Ok(None),
                    }
                    continue;
                }
                // END, or an error line ends the reply.
                return Ok(Some(next));
            }
            Expect::Lines => {
                if line.starts_with(b"STAT ") || line.starts_with(b"MEMBER ") || line.starts_with(b"TOPOLOGY ") {
                    pos = next;
                    continue;
                }
                return Ok(Some(next));
            }
        }
    }
}

/// Whether `reply` is exactly one whole reply of the shape `expect` (empty only for
/// [`Expect::MetaQuiet`]); a meta reply must also start with a meta reply code or an
/// error. For a reply whose length came with it (a peer's tagged reply), this is the
/// check that it answers the request it was matched to.
pub fn reply_fits(reply: &[u8], expect: Expect) -> bool {
    if reply.is_empty() {
        return expect == Expect::MetaQuiet;
    }
    const ERRORS: [&[u8]; 3] = [b"SERVER_ERROR", b"CLIENT_ERROR", b"ERROR"];
    const META: [&[u8]; 8] = [b"HD", b"VA", b"EN", b"NS", b"EX", b"NF", b"MN", b"ME"];
    if reply_len(reply, expect) != Ok(Some(reply.len())) {
        return false;
    }
    // Whether the line's first word is one of `codes`.
    let starts = |codes: &[&[u8]], line: &[u8]| {
        let end = line.iter().position(|&b| b == b' ' || b == b'\r').unwrap_or(line.len());
        codes.contains(&&line[..end])
    };
    match expect {
        Expect::Meta | Expect::MetaQuiet | Expect::MetaUntilNoop => starts(&META, reply) || starts(&ERRORS, reply),
        // The line that ends the reply: END, or an error instead of the whole reply.
        Expect::Values | Expect::Lines => {
            let last = reply[..reply.len() - 1]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(reply, |i| &reply[i + 1..]);
            last == b"END\r\n" || starts(&ERRORS, last)
        }
        Expect::Line => true,
    }
}

/// Where the data block of `size` bytes starting at `start` ends (after its `\r\n`).
fn data_end(buf: &[u8], start: usize, size: usize) -> Option<usize> {
    let end = start.checked_add(size)?.checked_add(2)?;
    (buf.len() >= end).then_some(end)
}

/// Length of the first line including its `\n`.
fn line_end(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    match memchr(b'\n', buf) {
        Some(i) if i > MAX_LINE => Err(FrameError::LineTooLong(MAX_LINE)),
        Some(i) => Ok(Some(i + 1)),
        None if buf.len() > MAX_LINE => Err(FrameError::LineTooLong(MAX_LINE)),
        None => Ok(None),
    }
}

fn leading_number(s: &[u8]) -> Result<usize, FrameError> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 10 {
        return Err(FrameError::Malformed);
    }
    let mut n = 0usize;
    for &d in &s[..digits] {
        n = n * 10 + usize::from(d - b'0');
    }
    if n > MAX_VALUE {
        return Err(FrameError::Malformed);
    }
    Ok(n)
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
            Err(FrameError::Malformed)
        );
        let long = vec![b'x'; MAX_LINE + 2];
        assert!(reply_len(&long, Expect::Line).is_err());
        assert_eq!(
            reply_len(b"VA 18446744073\r\n", Expect::Meta),
            Err(FrameError::Malformed)
        );
    }
}
