//! Commands nodes send each other on peer connections (never valid from clients).
//!
//! ```text
//! rc_peer <node name> [<unix secs> <hex hmac>]\r\n        -> OK | CLIENT_ERROR authentication failed
//! rc_set <key> <flags> <exptime> <cas> <bytes>\r\n<data>\r\n -> STORED | NOT_STORED
//! rc_del <key> <cas>\r\n                                -> DELETED | NOT_FOUND
//! rc_get <key>\r\n       -> VALUE <key> <flags> <bytes> <cas> <exptime>\r\n<data>\r\nEND | END
//! rc_ring <version>\r\n  -> (no reply of its own: fences the next request)
//! ```
//!
//! `rc_peer` opens every connection a node makes to a peer: requests on it are
//! executed where they arrive and never forwarded again. `rc_set` and `rc_del` are how a
//! key's primary applies the outcome of a write to the other owners: `exptime` is an
//! absolute Unix time (0 = never) and `cas` the primary's CAS unique. A replica keeps
//! whichever of its item and the incoming one has the larger CAS, so replicas converge
//! to the primary's state whatever order the applications arrive in. A client that
//! sends these on an ordinary connection gets `ERROR`, like any unknown command.
//!
//! `rc_ring` carries the sender's ring version (the membership version its placement
//! came from) and applies to the request that follows it on the connection: the
//! receiver runs that request only if its own ring has the same version; otherwise
//! the request is read but not run, and its reply is the single line
//! `SERVER_ERROR ring mismatch <receiver's version>` ([`RING_MISMATCH`]). Requests a
//! node forwards to a key's primary and the replications a primary sends are fenced
//! this way, so a request is never run by a node that places keys differently from
//! the node that sent it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::text::parse::ParseError;
use crate::text::request::{Limits, KEY_MAX_LEN};

/// A peer command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRequest {
    /// Marks the connection as coming from the named peer; with a cluster secret, the
    /// Unix time and hex HMAC that prove the sender knows it.
    Hello { name: Bytes, proof: Option<(u64, Bytes)> },
    /// Apply this item (the primary's state of the key).
    Set {
        key: Bytes,
        flags: u32,
        exptime: u32,
        cas: u64,
        value: Bytes,
    },
    /// The key no longer exists on the primary (deleted at CAS `cas` or later).
    Del { key: Bytes, cas: u64 },
    /// Send this node's version of the key, for read repair:
    /// `VALUE <key> <flags> <bytes> <cas> <exptime>\r\n<data>\r\nEND\r\n` or `END\r\n`.
    Get { key: Bytes },
    /// Run the next request only if this node's ring version is `version`; no reply of
    /// its own.
    Ring { version: u64 },
}

/// How the reply to a fenced request starts when the receiver's ring differs (the
/// receiver's version follows).
pub const RING_MISMATCH: &[u8] = b"SERVER_ERROR ring mismatch";

/// Whether `reply` says the request was refused because the rings differ.
pub fn is_ring_mismatch(reply: &[u8]) -> bool {
    reply.starts_with(RING_MISMATCH)
}

/// Appends the reply that refuses a fenced request on a node whose ring is `mine`.
pub fn encode_ring_mismatch(mine: u64, out: &mut BytesMut) {
    out.put_slice(RING_MISMATCH);
    out.put_u8(b' ');
    out.put_slice(itoa::Buffer::new().format(mine).as_bytes());
    out.put_slice(b"\r\n");
}

const BAD_FORMAT: ParseError = ParseError {
    reply: b"CLIENT_ERROR bad command line format\r\n",
    swallow: 0,
    close: false,
    unlink: None,
};

/// Parses the peer command whose line is `buf[..line_len]`; a data block starts at
/// `buf[next..]`. Same contract as [`crate::text::parse_request`].
pub fn parse_peer(
    buf: &mut BytesMut,
    line_len: usize,
    next: usize,
    limits: &Limits,
) -> Result<Option<PeerRequest>, ParseError> {
    // Token positions (not slices) so that `buf` can be split afterwards.
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(6);
    let mut i = 0;
    while i < line_len && spans.len() < 7 {
        while i < line_len && buf[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < line_len && buf[i] != b' ' {
            i += 1;
        }
        if i > start {
            spans.push((start, i));
        }
    }
    let tok =
        |buf: &BytesMut, j: usize| -> Vec<u8> { spans.get(j).map(|&(a, b)| buf[a..b].to_vec()).unwrap_or_default() };
    let key_ok = |k: &[u8]| !k.is_empty() && k.len() <= KEY_MAX_LEN && k.iter().all(|&b| b > b' ' && b != 0x7f);
    let bad = |buf: &mut BytesMut| {
        buf.advance(next);
        Err(BAD_FORMAT)
    };
    let cmd = tok(buf, 0);
    let nfields = spans.len().saturating_sub(1);
    match (cmd.as_slice(), nfields) {
        (b"rc_peer", 1) => {
            let (a, b) = spans[1];
            let frame = buf.split_to(next).freeze();
            Ok(Some(PeerRequest::Hello {
                name: frame.slice(a..b),
                proof: None,
            }))
        }
        (b"rc_peer", 3) => {
            let Some(secs) = number(&tok(buf, 2)) else {
                return bad(buf);
            };
            let ((a, b), (pa, pb)) = (spans[1], spans[3]);
            let frame = buf.split_to(next).freeze();
            Ok(Some(PeerRequest::Hello {
                name: frame.slice(a..b),
                proof: Some((secs, frame.slice(pa..pb))),
            }))
        }
        (b"rc_ring", 1) => {
            let Some(version) = number(&tok(buf, 1)) else {
                return bad(buf);
            };
            buf.advance(next);
            Ok(Some(PeerRequest::Ring { version }))
        }
        (b"rc_get", 1) if key_ok(&tok(buf, 1)) => {
            let (a, b) = spans[1];
            let frame = buf.split_to(next).freeze();
            Ok(Some(PeerRequest::Get { key: frame.slice(a..b) }))
        }
        (b"rc_del", 2) if key_ok(&tok(buf, 1)) => {
            let Some(cas) = number(&tok(buf, 2)) else {
                return bad(buf);
            };
            let (a, b) = spans[1];
            let frame = buf.split_to(next).freeze();
            Ok(Some(PeerRequest::Del {
                key: frame.slice(a..b),
                cas,
            }))
        }
        (b"rc_set", 5) if key_ok(&tok(buf, 1)) => {
            let (Some(flags), Some(exptime), Some(cas), Some(len)) = (
                number(&tok(buf, 2)),
                number(&tok(buf, 3)),
                number(&tok(buf, 4)),
                number(&tok(buf, 5)),
            ) else {
                return bad(buf);
            };
            let (Ok(flags), Ok(exptime), Ok(len)) =
                (u32::try_from(flags), u32::try_from(exptime), usize::try_from(len))
            else {
                return bad(buf);
            };
            if len > limits.max_item_size {
                buf.advance(next);
                return Err(ParseError {
                    reply: b"SERVER_ERROR object too large for cache\r\n",
                    swallow: (len as u64).saturating_add(2),
                    close: false,
                    unlink: None,
                });
            }
            let end = next + len + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                buf.advance(end);
                return Err(ParseError {
                    reply: b"CLIENT_ERROR bad data chunk\r\n",
                    ..BAD_FORMAT
                });
            }
            let (a, b) = spans[1];
            let frame = buf.split_to(end).freeze();
            Ok(Some(PeerRequest::Set {
                key: frame.slice(a..b),
                flags,
                exptime,
                cas,
                value: frame.slice(next..next + len),
            }))
        }
        _ => bad(buf),
    }
}

fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

impl PeerRequest {
    /// Appends the wire form.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut num = itoa::Buffer::new();
        match self {
            PeerRequest::Hello { name, proof } => {
                out.put_slice(b"rc_peer ");
                out.put_slice(name);
                if let Some((secs, mac)) = proof {
                    out.put_u8(b' ');
                    out.put_slice(num.format(*secs).as_bytes());
                    out.put_u8(b' ');
                    out.put_slice(mac);
                }
                out.put_slice(b"\r\n");
            }
            PeerRequest::Set {
                key,
                flags,
                exptime,
                cas,
                value,
            } => {
                out.reserve(key.len() + value.len() + 80);
                out.put_slice(b"rc_set ");
                out.put_slice(key);
                for n in [u64::from(*flags), u64::from(*exptime), *cas, value.len() as u64] {
                    out.put_u8(b' ');
                    out.put_slice(num.format(n).as_bytes());
                }
                out.put_slice(b"\r\n");
                out.put_slice(value);
                out.put_slice(b"\r\n");
            }
            PeerRequest::Get { key } => {
                out.put_slice(b"rc_get ");
                out.put_slice(key);
                out.put_slice(b"\r\n");
            }
            PeerRequest::Ring { version } => {
                out.put_slice(b"rc_ring ");
                out.put_slice(num.format(*version).as_bytes());
                out.put_slice(b"\r\n");
            }
            PeerRequest::Del { key, cas } => {
                out.put_slice(b"rc_del ");
                out.put_slice(key);
                out.put_u8(b' ');
                out.put_slice(num.format(*cas).as_bytes());
                out.put_slice(b"\r\n");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<PeerRequest>, ParseError> {
        let mut buf = BytesMut::from(bytes);
        let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let line_len = if nl > 0 && bytes[nl - 1] == b'\r' { nl - 1 } else { nl };
        parse_peer(&mut buf, line_len, nl + 1, &Limits::default())
    }

    #[test]
    fn round_trips() {
        for req in [
            PeerRequest::Hello {
                name: Bytes::from_static(b"node-1"),
                proof: None,
            },
            PeerRequest::Hello {
                name: Bytes::from_static(b"node-1"),
                proof: Some((1_800_000_000, Bytes::from_static(b"00ff"))),
            },
            PeerRequest::Set {
                key: Bytes::from_static(b"k"),
                flags: 7,
                exptime: 1_800_000_000,
                cas: 99,
                value: Bytes::from_static(b"a\r\nb"),
            },
            PeerRequest::Del {
                key: Bytes::from_static(b"k"),
                cas: 3,
            },
            PeerRequest::Get {
                key: Bytes::from_static(b"k"),
            },
            PeerRequest::Ring { version: u64::MAX },
            PeerRequest::Ring { version: 0 },
        ] {
            let mut out = BytesMut::new();
            req.encode(&mut out);
            assert_eq!(parse(&out), Ok(Some(req.clone())));
            for cut in 0..out.len() {
                assert_eq!(parse(&out[..cut]), Ok(None), "{req:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b"rc_set k 0 0 1\r\nx\r\n"[..],
            b"rc_set k x 0 1 1\r\nx\r\n",
            b"rc_set k 0 0 1 99999999999999999999999\r\n",
            b"rc_del k\r\n",
            b"rc_peer\r\n",
            b"rc_del \x01 1\r\n",
            b"rc_ring\r\n",
            b"rc_ring x\r\n",
            b"rc_ring 1 2\r\n",
            b"rc_ring 18446744073709551616\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            parse(b"rc_set k 0 0 1 1\r\nxyz\r\n").unwrap_err().reply,
            b"CLIENT_ERROR bad data chunk\r\n"
        );
        // A length of 2^64 - 1 is refused as too large, without overflowing the swallow
        // count (found by the request fuzzer).
        let err = parse(b"rc_set k 2 0 7 18446744073709551615\r\nabc\r\n").unwrap_err();
        assert_eq!(err.reply, b"SERVER_ERROR object too large for cache\r\n");
        assert_eq!(err.swallow, u64::MAX);
    }

    #[test]
    fn the_request_parser_reads_every_peer_command() {
        let mut buf = BytesMut::new();
        let all = [
            PeerRequest::Ring { version: 7 },
            PeerRequest::Get {
                key: Bytes::from_static(b"k"),
            },
            PeerRequest::Del {
                key: Bytes::from_static(b"k"),
                cas: 1,
            },
            PeerRequest::Hello {
                name: Bytes::from_static(b"n"),
                proof: None,
            },
        ];
        for req in &all {
            req.encode(&mut buf);
        }
        for req in all {
            let got = crate::text::parse_request(&mut buf, &Limits::default());
            assert_eq!(got, Ok(Some(crate::text::Request::Peer(req))));
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn ring_mismatch_reply_is_one_recognizable_line() {
        let mut out = BytesMut::new();
        encode_ring_mismatch(42, &mut out);
        assert_eq!(&out[..], b"SERVER_ERROR ring mismatch 42\r\n");
        assert!(is_ring_mismatch(&out));
        assert!(!is_ring_mismatch(b"SERVER_ERROR replica unavailable\r\n"));
    }
}
