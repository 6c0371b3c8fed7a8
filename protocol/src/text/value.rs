//! The one reader of `VALUE` blocks, the data-carrying part of a retrieval reply.
//!
//! ```text
//! VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n        (classic get, gets, gat, gats)
//! VALUE <key> <flags> <bytes> <cas> <exptime>[ b]\r\n<data>\r\n   (a peer's rc_get reply)
//! ```
//!
//! Fields are separated by runs of spaces. Every reader of these bytes goes through
//! here: the client's typed parser ([`crate::text::response::parse_response`]), the
//! framer that finds where a relayed reply ends ([`crate::text::frame::reply_len`]),
//! the peer protocol's `rc_get` reply ([`crate::text::peer::parse_peer_value`]), and
//! the server, bench and tests, which read whole retrieval replies with
//! [`read_values`]. So they agree on which bytes are a block and where it ends.
//!
//! The readers work on `&[u8]`, allocate nothing and never copy a value: a block is
//! returned as slices of the buffer ([`ValueBlock`]); a caller holding the reply as
//! `Bytes` keeps them zero-copy with `Bytes::slice_ref`. A data block is skipped by
//! its declared length, so data holding `END\r\n` or `VALUE ` is read as data.
//! Lengths are bounded ([`crate::limits::MAX_REPLY_LINE`] for the line, the caller's
//! maximum for the data), so no input makes a reader wait for more than that.

use memchr::memchr;

use crate::limits::MAX_REPLY_VALUE;
use crate::text::frame::{is_error_line, reply_line, FrameError};
use crate::text::num::decimal;

/// The fields of a `VALUE` header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueHeader<'a> {
    /// The key as the line carries it (not checked against the key rules: a peer's
    /// key may be base64, see [`crate::text::peer`]).
    pub key: &'a [u8],
    /// The client flags.
    pub flags: u32,
    /// The data block's length (without its `\r\n`), as declared.
    pub len: u64,
    /// Present in replies to `gets` and `gats`, and in a peer's `rc_get` reply.
    pub cas: Option<u64>,
    /// What follows the CAS, from its first token to the end of the line: a peer's
    /// `<exptime>[ b]`; empty on a classic `VALUE` line.
    pub rest: &'a [u8],
}

/// Reads a `VALUE` header line (without its `\r\n`): `VALUE`, then key, flags (a
/// 32-bit [`decimal`]) and length, then an optional CAS and whatever follows it
/// ([`ValueHeader::rest`]). [`FrameError::Malformed`] if it is not such a line.
pub fn parse_value_header(line: &[u8]) -> Result<ValueHeader<'_>, FrameError> {
    let fields = line.strip_prefix(b"VALUE ").ok_or(FrameError::Malformed)?;
    let mut toks: [&[u8]; 4] = [&[]; 4];
    let mut n = 0;
    let mut i = 0;
    let mut rest: &[u8] = &[];
    while i < fields.len() {
        if fields[i] == b' ' {
            i += 1;
            continue;
        }
        if n == toks.len() {
            rest = &fields[i..];
            break;
        }
        let end = memchr(b' ', &fields[i..]).map_or(fields.len(), |e| i + e);
        toks[n] = &fields[i..end];
        n += 1;
        i = end;
    }
    if n < 3 {
        return Err(FrameError::Malformed);
    }
    let flags = decimal(toks[1])
        .and_then(|f| u32::try_from(f).ok())
        .ok_or(FrameError::Malformed)?;
    let len = decimal(toks[2]).ok_or(FrameError::Malformed)?;
    let cas = match n {
        4 => Some(decimal(toks[3]).ok_or(FrameError::Malformed)?),
        _ => None,
    };
    Ok(ValueHeader {
        key: toks[0],
        flags,
        len,
        cas,
        rest,
    })
}

/// One whole `VALUE` block, as slices of the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueBlock<'a> {
    /// The key as the line carries it.
    pub key: &'a [u8],
    /// The client flags.
    pub flags: u32,
    /// The CAS unique, when the line has one.
    pub cas: Option<u64>,
    /// See [`ValueHeader::rest`].
    pub rest: &'a [u8],
    /// The data, without its `\r\n`.
    pub data: &'a [u8],
    /// The whole block as it came: header line, data and `\r\n` (what a node relays
    /// byte for byte). Its length is how far the block reaches into the buffer.
    pub raw: &'a [u8],
}

/// Reads the `VALUE` block at the start of `buf`, whose data may be at most
/// `max_value` bytes: `Ok(None)` while it is not all there;
/// [`FrameError::ValueTooLarge`] as soon as its header declares more than
/// `max_value`; [`FrameError::BadDataChunk`] if the data is not followed by `\r\n`.
pub fn read_value_block(buf: &[u8], max_value: usize) -> Result<Option<ValueBlock<'_>>, FrameError> {
    let Some((line, next)) = reply_line(buf)? else {
        return Ok(None);
    };
    let line = line.strip_suffix(b"\r").ok_or(FrameError::BadLineEnd)?;
    let head = parse_value_header(line)?;
    if head.len > max_value as u64 {
        return Err(FrameError::ValueTooLarge(head.len));
    }
    // `len <= max_value`, and `max_value` is a `usize`.
    let end = next + head.len as usize + 2;
    if buf.len() < end {
        return Ok(None);
    }
    if buf[end - 2..end] != *b"\r\n" {
        return Err(FrameError::BadDataChunk);
    }
    Ok(Some(ValueBlock {
        key: head.key,
        flags: head.flags,
        cas: head.cas,
        rest: head.rest,
        data: &buf[next..end - 2],
        raw: &buf[..end],
    }))
}

/// How a whole retrieval reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValuesEnd {
    /// `END`: every block was delivered.
    End,
    /// An error line (`ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`) instead of the
    /// reply, or after some blocks (memcached stops a `get` that way when it runs out
    /// of memory).
    Error,
}

/// Reads the whole retrieval reply at the start of `buf`: `VALUE` blocks (each at most
/// [`MAX_REPLY_VALUE`] bytes of data) up to `END` or an error line. Gives each block
/// to `each` in order and returns how the reply ended and its length; `Ok(None)` while
/// it is not all there. Any other line is [`FrameError::Malformed`].
///
/// On `Ok(None)` or an error, forget the blocks `each` was given: they are given
/// again when the call is repeated with more bytes.
pub fn read_values<'a>(
    buf: &'a [u8],
    mut each: impl FnMut(ValueBlock<'a>),
) -> Result<Option<(ValuesEnd, usize)>, FrameError> {
    let mut pos = 0;
    loop {
        let Some((line, next)) = reply_line(&buf[pos..])? else {
            return Ok(None);
        };
        let stripped = line.strip_suffix(b"\r").unwrap_or(line);
        if stripped == b"END" || is_error_line(stripped) {
            if stripped.len() == line.len() {
                return Err(FrameError::BadLineEnd);
            }
            let end = if stripped == b"END" {
                ValuesEnd::End
            } else {
                ValuesEnd::Error
            };
            return Ok(Some((end, pos + next)));
        }
        let Some(block) = read_value_block(&buf[pos..], MAX_REPLY_VALUE)? else {
            return Ok(None);
        };
        pos += block.raw.len();
        each(block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_REPLY_LINE;

    fn blocks(buf: &[u8]) -> Result<Option<(Vec<ValueBlock<'_>>, ValuesEnd, usize)>, FrameError> {
        let mut found = Vec::new();
        Ok(read_values(buf, |b| found.push(b))?.map(|(end, len)| (found, end, len)))
    }

    #[test]
    fn reads_each_block_with_its_fields_and_raw_bytes() {
        let reply = b"VALUE a 0 1\r\nx\r\nVALUE b  5 3 77\r\n\r\n\n\r\nEND\r\nSTORED\r\n";
        let (found, end, len) = blocks(reply).unwrap().unwrap();
        assert_eq!((end, len), (ValuesEnd::End, reply.len() - 8));
        assert_eq!(found.len(), 2);
        assert_eq!(
            (found[0].key, found[0].flags, found[0].cas, found[0].data),
            (&b"a"[..], 0, None, &b"x"[..])
        );
        assert_eq!(found[0].raw, b"VALUE a 0 1\r\nx\r\n");
        assert_eq!(
            (found[1].key, found[1].flags, found[1].cas, found[1].data),
            (&b"b"[..], 5, Some(77), &b"\r\n\n"[..])
        );
        assert_eq!(found[1].raw, b"VALUE b  5 3 77\r\n\r\n\n\r\n");
        assert_eq!(blocks(b"END\r\n").unwrap().unwrap().1, ValuesEnd::End);
        let (found, end, _) = blocks(b"VALUE a 0 1\r\nx\r\nSERVER_ERROR out of memory\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((found.len(), end), (1, ValuesEnd::Error));
        assert_eq!(blocks(b"ERROR\r\n").unwrap().unwrap().1, ValuesEnd::Error);
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let reply = b"VALUE key:1 0 5 9\r\nhello\r\nVALUE key:2 0 5\r\nEND\r\n\r\nEND\r\n";
        for cut in 0..reply.len() {
            assert_eq!(blocks(&reply[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(blocks(reply).unwrap().is_some());
    }

    #[test]
    fn a_peer_header_keeps_what_follows_the_cas() {
        let head = parse_value_header(b"VALUE a2V5 1 2 3 1800000000 b").unwrap();
        assert_eq!(
            head,
            ValueHeader {
                key: b"a2V5",
                flags: 1,
                len: 2,
                cas: Some(3),
                rest: b"1800000000 b"
            }
        );
        assert_eq!(parse_value_header(b"VALUE k 0 1   ").unwrap().rest, b"");
    }

    #[test]
    fn refuses_what_is_not_a_block_without_panicking() {
        let bad: &[(&[u8], FrameError)] = &[
            (b"VALUE k 0\r\n", FrameError::Malformed),
            (b"VALUE k 0 x\r\n", FrameError::Malformed),
            (b"VALUE k 0 -1\r\n", FrameError::Malformed),
            (b"VALUE k 4294967296 1\r\n", FrameError::Malformed),
            (b"VALUE k 0 1 x\r\n", FrameError::Malformed),
            (b"VALUE k 0 99999999999\r\n", FrameError::ValueTooLarge(99999999999)),
            (b"VALUE k 0 18446744073709551616\r\n", FrameError::Malformed),
            (b"VALUE k 0 2\r\nabcd\r\n", FrameError::BadDataChunk),
            (b"VALUE k 0 1\nx\r\nEND\r\n", FrameError::BadLineEnd),
            (b"END\n", FrameError::BadLineEnd),
            (b"STORED\r\n", FrameError::Malformed),
            (b"VA 1\r\nx\r\n", FrameError::Malformed),
        ];
        for (input, want) in bad {
            assert_eq!(blocks(input), Err(*want), "{:?}", String::from_utf8_lossy(input));
        }
        let long = vec![b'V'; MAX_REPLY_LINE + 2];
        assert_eq!(blocks(&long), Err(FrameError::LineTooLong(MAX_REPLY_LINE)));
        assert_eq!(blocks(&long[..MAX_REPLY_LINE + 1]), Ok(None));
    }
}
