//! Commands nodes send each other on peer connections (never valid from clients), and
//! the replies only nodes read.
//!
//! ```text
//! rc_peer <node name> [<unix secs> <hex hmac>]\r\n               -> OK | CLIENT_ERROR authentication failed
//! rc_set <key> <flags> <exptime> <cas> <bytes>[ b]\r\n<data>\r\n -> STORED | NOT_STORED
//! rc_del <key> <cas>[ b]\r\n                                    -> DELETED | NOT_FOUND
//! rc_get <key>[ b]\r\n  -> VALUE <key> <flags> <bytes> <cas> <exptime>[ b]\r\n<data>\r\nEND\r\n | END\r\n
//! rc_ring <version>\r\n  -> (no reply of its own: fences the next request)
//! rc_id <id>\r\n         -> (no reply of its own: the next request's reply comes behind RI <id> <len>\r\n)
//! ```
//!
//! # Keys
//!
//! A key travels as it is when every byte of it is printable (`0x21..=0x7e` and
//! bytes above `0x7f`, as a classic command's key), and otherwise base64-encoded with
//! a trailing ` b` token on the line, as meta commands carry binary keys: clients send
//! keys holding spaces, CR, LF or NUL through the meta `b` flag, and such a key written
//! raw would break the line framing of the peer connection. [`put_key`] chooses, and
//! the parser decodes; the `VALUE` line of an `rc_get` reply carries the key the same
//! way.
//!
//! # Replies matched by id: `rc_id`
//!
//! `rc_id <id>` tags the request that follows it: that request's reply (whatever its
//! shape, including a refusal, a parse error, or nothing at all for a quiet meta
//! command) comes behind the line `RI <id> <length of the reply>\r\n`
//! ([`encode_reply_tag`]), as soon as it is ready, in whatever order the requests
//! finish. A node tags every request it sends on a peer connection with a sequence
//! number, reads each reply's tag first ([`parse_reply_tag`]), takes that many bytes,
//! and checks that they are one whole reply of the shape the request with that id
//! expects (`text::frame::reply_fits`). A tag it is not waiting for, or a reply that
//! does not fit, means the two ends no longer agree on what they are saying: the
//! connection is closed and every request in flight on it failed, so no reply ever
//! reaches a request it does not answer. Answering out of order is what keeps
//! replication free of wait-for cycles: a request that waits on another node (a
//! forwarded write waiting for its replicas) never holds back the reply to one that
//! does not (a replication that another node's write waits for). An untagged request
//! on a peer connection is answered in order: after everything before it, and before
//! anything after it is read.
//!
//! # Fencing: `rc_ring`
//!
//! `rc_ring` carries the sender's ring version (the membership version its placement
//! came from) and applies to the request that follows it on the connection: the
//! receiver runs that request only if its own ring has the same version; otherwise
//! the request is read but not run, and its reply is the single line
//! `SERVER_ERROR ring mismatch <receiver's version>` ([`RING_MISMATCH`]). Requests a
//! node forwards to a key's primary and the replications a primary sends are fenced
//! this way, so a request is never run by a node that places keys differently from
//! the node that sent it. `rc_id` and `rc_ring` may come in either order before the
//! request they apply to.
//!
//! # The rest
//!
//! `rc_peer` opens every connection a node makes to a peer: requests on it are
//! executed where they arrive and never forwarded again. `rc_set` and `rc_del` are how a
//! key's primary applies the outcome of a write to the other owners: `exptime` is an
//! absolute Unix time (0 = never) and `cas` the primary's CAS unique. A replica keeps
//! whichever of its item and the incoming one has the larger CAS, so replicas converge
//! to the primary's state whatever order the applications arrive in. A client that
//! sends these on an ordinary connection gets `ERROR`, like any unknown command.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::limits::{Limits, KEY_MAX_LEN, REPLY_TAG_MAX, TAGGED_REPLY_MAX};
use crate::text::frame::FrameError;
use crate::text::meta::base64;
use crate::text::num::canonical as number;
use crate::text::parse::ParseError;
use crate::text::response::{BAD_CHUNK, BAD_FORMAT, TOO_LARGE};
use crate::text::value::parse_value_header;

/// A peer command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRequest {
    /// Marks the connection as coming from the named peer; with a cluster secret, the
    /// Unix time and hex HMAC that prove the sender knows it.
    Hello {
        /// The sender's node name.
        name: Bytes,
        /// With a cluster secret: the Unix time and the hex HMAC of it.
        proof: Option<(u64, Bytes)>,
    },
    /// Apply this item (the primary's state of the key).
    Set {
        /// The key.
        key: Bytes,
        /// The client flags.
        flags: u32,
        /// Absolute Unix time the item expires at; 0 never.
        exptime: u32,
        /// The primary's CAS unique, kept so every replica agrees on it.
        cas: u64,
        /// The data.
        value: Bytes,
    },
    /// The key no longer exists on the primary (deleted at CAS `cas` or later).
    Del {
        /// The key.
        key: Bytes,
        /// The CAS unique of the delete on the primary.
        cas: u64,
    },
    /// Send this node's version of the key, for read repair (a [`PeerValue`] or a miss;
    /// see [`encode_peer_value`]).
    Get {
        /// The key.
        key: Bytes,
    },
    /// `rc_ring <version> [handoff]`: run the next request only if this node's ring
    /// version is `version`; no reply of its own.
    Ring {
        /// The ring version the sender routed by (for a hand-off: the ring it is for).
        version: u64,
        /// `handoff`: the next request (an `rc_set`) is an item handed off after a ring
        /// change, not a replication (the receiver counts it as received hand-off).
        handoff: bool,
    },
    /// Follow the next request's reply with `RI <id>\r\n`; no reply of its own.
    Id {
        /// The tag the reply carries back.
        id: u64,
    },
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

/// Appends the line that comes before the reply to a request tagged `rc_id <id>`:
/// `RI <id> <length of the reply>`.
pub fn encode_reply_tag(id: u64, reply_len: usize, out: &mut impl BufMut) {
    let mut num = itoa::Buffer::new();
    out.put_slice(b"RI ");
    out.put_slice(num.format(id).as_bytes());
    out.put_u8(b' ');
    out.put_slice(num.format(reply_len).as_bytes());
    out.put_slice(b"\r\n");
}

/// A reply tag: which request the reply answers, and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTag {
    /// The `rc_id` the request was tagged with.
    pub id: u64,
    /// The reply's length in bytes (it follows the tag line).
    pub len: usize,
    /// The tag line's own length.
    pub line_len: usize,
}

/// Reads the `RI <id> <len>\r\n` line at the start of `buf` (what comes before the
/// reply to the request tagged `id`): `Ok(None)` while it may still be arriving, an
/// error as soon as the bytes there cannot be such a line.
pub fn parse_reply_tag(buf: &[u8]) -> Result<Option<ReplyTag>, FrameError> {
    let head = &buf[..buf.len().min(3)];
    if head != &b"RI "[..head.len()] {
        return Err(FrameError::OutOfStep);
    }
    let Some(nl) = memchr::memchr(b'\n', &buf[..buf.len().min(REPLY_TAG_MAX)]) else {
        return if buf.len() >= REPLY_TAG_MAX {
            Err(FrameError::OutOfStep)
        } else {
            Ok(None)
        };
    };
    let line = buf[3..nl].strip_suffix(b"\r").ok_or(FrameError::OutOfStep)?;
    let mut fields = line.split(|&b| b == b' ');
    let (Some(id), Some(len), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(FrameError::OutOfStep);
    };
    let (Some(id), Some(len)) = (number(id), number(len).filter(|&n| n <= TAGGED_REPLY_MAX)) else {
        return Err(FrameError::OutOfStep);
    };
    Ok(Some(ReplyTag {
        id,
        len: usize::try_from(len).map_err(|_| FrameError::OutOfStep)?,
        line_len: nl + 1,
    }))
}

/// Whether `key` can travel raw on a command line: the bytes a classic command's key
/// may hold. Any other key travels base64-encoded, flagged with a trailing ` b`.
fn plain_key(key: &[u8]) -> bool {
    key.iter().all(|&b| b > b' ' && b != 0x7f)
}

/// Appends `key` as a peer command carries it: raw if [`plain_key`], else base64.
/// Returns whether it was encoded (the line must then end with ` b`).
pub fn put_key(out: &mut impl BufMut, key: &[u8]) -> bool {
    if plain_key(key) {
        out.put_slice(key);
        false
    } else {
        base64::encode(out, key);
        true
    }
}

/// Decodes a key token (base64 when `binary`); `None` unless it is a key a client
/// could have stored: 1 to [`KEY_MAX_LEN`] bytes, and printable when raw.
fn read_key(token: &[u8], binary: bool) -> Option<Bytes> {
    if binary {
        let mut out = vec![0u8; token.len() * 3 / 4 + 3];
        let n = base64::decode(token, &mut out)?;
        out.truncate(n);
        (1..=KEY_MAX_LEN).contains(&n).then(|| Bytes::from(out))
    } else {
        (!token.is_empty() && token.len() <= KEY_MAX_LEN && plain_key(token)).then(|| Bytes::copy_from_slice(token))
    }
}

const BAD_LINE: ParseError = ParseError {
    reply: BAD_FORMAT,
    swallow: 0,
    close: false,
    unlink: None,
};

/// Most tokens a peer command line has (`rc_set` with its ` b`).
const MAX_TOKENS: usize = 7;

/// The tokens of a command line, split on runs of spaces; `None` if there are more
/// than [`MAX_TOKENS`].
fn tokens(line: &[u8]) -> Option<Vec<&[u8]>> {
    let tokens: Vec<&[u8]> = line
        .split(|&b| b == b' ')
        .filter(|t| !t.is_empty())
        .take(MAX_TOKENS + 1)
        .collect();
    (tokens.len() <= MAX_TOKENS).then_some(tokens)
}

/// The `n` arguments of a command whose key may be base64, and whether it is: `n`
/// arguments as they are, or `n + 1` whose last is `b`. (A key that is itself `b`
/// travels raw as `n` arguments, so counting tells the two apart.)
fn with_binary_flag<'a, 'b>(args: &'a [&'b [u8]], n: usize) -> Option<(&'a [&'b [u8]], bool)> {
    match args.len() {
        len if len == n => Some((args, false)),
        len if len == n + 1 && args[n] == b"b" => Some((&args[..n], true)),
        _ => None,
    }
}

/// Parses the peer command whose line is `buf[..line_len]`; a data block starts at
/// `buf[next..]`. Same contract as [`crate::text::parse_request`].
pub fn parse_peer(
    buf: &mut BytesMut,
    line_len: usize,
    next: usize,
    limits: &Limits,
) -> Result<Option<PeerRequest>, ParseError> {
    let parsed = parse_line(&buf[..line_len], limits);
    let (req, data) = match parsed {
        Line::Bad => {
            buf.advance(next);
            return Err(BAD_LINE);
        }
        Line::TooLarge(len) => {
            buf.advance(next);
            return Err(ParseError {
                reply: TOO_LARGE,
                swallow: len.saturating_add(2),
                close: false,
                unlink: None,
            });
        }
        Line::Done(req) => (req, None),
        Line::Data(req, len) => (req, Some(len)),
    };
    let Some(len) = data else {
        buf.advance(next);
        return Ok(Some(req));
    };
    let end = next + len + 2;
    if buf.len() < end {
        return Ok(None);
    }
    if &buf[end - 2..end] != b"\r\n" {
        buf.advance(end);
        return Err(ParseError {
            reply: BAD_CHUNK,
            ..BAD_LINE
        });
    }
    let frame = buf.split_to(end).freeze();
    match req {
        PeerRequest::Set {
            key,
            flags,
            exptime,
            cas,
            ..
        } => Ok(Some(PeerRequest::Set {
            key,
            flags,
            exptime,
            cas,
            value: frame.slice(next..next + len),
        })),
        other => Ok(Some(other)),
    }
}

/// What a peer command line says.
enum Line {
    Bad,
    /// An `rc_set` whose data block is longer than the item size limit.
    TooLarge(u64),
    /// A whole request.
    Done(PeerRequest),
    /// A request whose data block of this many bytes follows the line.
    Data(PeerRequest, usize),
}

fn parse_line(line: &[u8], limits: &Limits) -> Line {
    let Some(tokens) = tokens(line) else {
        return Line::Bad;
    };
    let Some((cmd, args)) = tokens.split_first() else {
        return Line::Bad;
    };
    let parsed = match *cmd {
        b"rc_peer" => match args {
            [name] => Some(PeerRequest::Hello {
                name: Bytes::copy_from_slice(name),
                proof: None,
            }),
            [name, secs, mac] => number(secs).map(|secs| PeerRequest::Hello {
                name: Bytes::copy_from_slice(name),
                proof: Some((secs, Bytes::copy_from_slice(mac))),
            }),
            _ => None,
        },
        b"rc_ring" => match args {
            [v] => number(v).map(|version| PeerRequest::Ring {
                version,
                handoff: false,
            }),
            [v, b"handoff"] => number(v).map(|version| PeerRequest::Ring { version, handoff: true }),
            _ => None,
        },
        b"rc_id" => match args {
            [v] => number(v).map(|id| PeerRequest::Id { id }),
            _ => None,
        },
        b"rc_get" => match with_binary_flag(args, 1) {
            Some(([key], binary)) => read_key(key, binary).map(|key| PeerRequest::Get { key }),
            _ => None,
        },
        b"rc_del" => match with_binary_flag(args, 2) {
            Some(([key, cas], binary)) => match (read_key(key, binary), number(cas)) {
                (Some(key), Some(cas)) => Some(PeerRequest::Del { key, cas }),
                _ => None,
            },
            _ => None,
        },
        b"rc_set" => {
            let Some(([key, flags, exptime, cas, len], binary)) = with_binary_flag(args, 5) else {
                return Line::Bad;
            };
            let (Some(key), Some(flags), Some(exptime), Some(cas), Some(len)) = (
                read_key(key, binary),
                number(flags).and_then(|n| u32::try_from(n).ok()),
                number(exptime).and_then(|n| u32::try_from(n).ok()),
                number(cas),
                number(len),
            ) else {
                return Line::Bad;
            };
            if len > limits.max_item_size as u64 {
                return Line::TooLarge(len);
            }
            let req = PeerRequest::Set {
                key,
                flags,
                exptime,
                cas,
                value: Bytes::new(),
            };
            return Line::Data(req, len as usize);
        }
        _ => None,
    };
    parsed.map_or(Line::Bad, Line::Done)
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
                out.reserve(key.len() * 2 + value.len() + 80);
                out.put_slice(b"rc_set ");
                let binary = put_key(out, key);
                for n in [u64::from(*flags), u64::from(*exptime), *cas, value.len() as u64] {
                    out.put_u8(b' ');
                    out.put_slice(num.format(n).as_bytes());
                }
                end_line(out, binary);
                out.put_slice(value);
                out.put_slice(b"\r\n");
            }
            PeerRequest::Get { key } => {
                out.put_slice(b"rc_get ");
                let binary = put_key(out, key);
                end_line(out, binary);
            }
            PeerRequest::Ring { version, handoff } => {
                out.put_slice(b"rc_ring ");
                out.put_slice(num.format(*version).as_bytes());
                if *handoff {
                    out.put_slice(b" handoff");
                }
                out.put_slice(b"\r\n");
            }
            PeerRequest::Id { id } => {
                out.put_slice(b"rc_id ");
                out.put_slice(num.format(*id).as_bytes());
                out.put_slice(b"\r\n");
            }
            PeerRequest::Del { key, cas } => {
                out.put_slice(b"rc_del ");
                let binary = put_key(out, key);
                out.put_u8(b' ');
                out.put_slice(num.format(*cas).as_bytes());
                end_line(out, binary);
            }
        }
    }
}

/// Ends a line, with ` b` if its key was base64-encoded.
fn end_line(out: &mut impl BufMut, binary: bool) {
    if binary {
        out.put_slice(b" b");
    }
    out.put_slice(b"\r\n");
}

/// One node's version of a key, as an `rc_get` reply carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerValue {
    /// The data.
    pub value: Bytes,
    /// The client flags.
    pub flags: u32,
    /// The CAS unique: the larger one is the newer version.
    pub cas: u64,
    /// Absolute Unix time, 0 for never.
    pub exptime: u32,
}

/// Appends the reply to `rc_get <key>`: the node's version of the key, or a miss.
///
/// ```text
/// VALUE <key> <flags> <bytes> <cas> <exptime>[ b]\r\n<data>\r\nEND\r\n      (or END\r\n)
/// ```
///
/// A `VALUE` block with the absolute expiry after the CAS, the key carried as in the
/// request (so it frames as a retrieval reply, [`crate::text::frame::Expect::Values`]).
pub fn encode_peer_value(key: &[u8], found: Option<&PeerValue>, out: &mut BytesMut) {
    if let Some(v) = found {
        let mut num = itoa::Buffer::new();
        out.reserve(key.len() * 2 + v.value.len() + 80);
        out.put_slice(b"VALUE ");
        let binary = put_key(out, key);
        for n in [u64::from(v.flags), v.value.len() as u64, v.cas, u64::from(v.exptime)] {
            out.put_u8(b' ');
            out.put_slice(num.format(n).as_bytes());
        }
        end_line(out, binary);
        out.put_slice(&v.value);
        out.put_slice(b"\r\n");
    }
    out.put_slice(crate::text::response::END);
}

/// Reads the reply to `rc_get <key>` (a whole reply, as framed with
/// [`crate::text::frame::Expect::Values`]): `Ok(None)` for a miss, an error if it is
/// anything but a miss or one version of `key`.
pub fn parse_peer_value(reply: &Bytes, key: &[u8]) -> Result<Option<PeerValue>, FrameError> {
    if &reply[..] == crate::text::response::END {
        return Ok(None);
    }
    let nl = memchr::memchr(b'\n', reply).ok_or(FrameError::Malformed)?;
    let line = reply[..nl].strip_suffix(b"\r").ok_or(FrameError::Malformed)?;
    let head = parse_value_header(line)?;
    let rest = tokens(head.rest).ok_or(FrameError::Malformed)?;
    let (Some(cas), Some(([exptime], binary))) = (head.cas, with_binary_flag(&rest, 1)) else {
        return Err(FrameError::Malformed);
    };
    if read_key(head.key, binary).as_deref() != Some(key) {
        return Err(FrameError::OutOfStep);
    }
    let (flags, Some(len), Some(exptime)) = (
        head.flags,
        usize::try_from(head.len).ok(),
        number(exptime).and_then(|n| u32::try_from(n).ok()),
    ) else {
        return Err(FrameError::Malformed);
    };
    let start = nl + 1;
    let end = start.checked_add(len).ok_or(FrameError::Malformed)?;
    if reply.get(end..) != Some(b"\r\nEND\r\n".as_slice()) {
        return Err(FrameError::Malformed);
    }
    Ok(Some(PeerValue {
        value: reply.slice(start..end),
        flags,
        cas,
        exptime,
    }))
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
            PeerRequest::Ring {
                version: u64::MAX,
                handoff: false,
            },
            PeerRequest::Ring {
                version: 0,
                handoff: false,
            },
            PeerRequest::Ring {
                version: 7,
                handoff: true,
            },
            PeerRequest::Id { id: 0 },
            PeerRequest::Id { id: u64::MAX },
            PeerRequest::Set {
                key: Bytes::from_static(b"has space\r\nrc_del x 1\r\n"),
                flags: 0,
                exptime: 0,
                cas: 1,
                value: Bytes::from_static(b"v"),
            },
            PeerRequest::Del {
                key: Bytes::from_static(b"\0"),
                cas: 3,
            },
            PeerRequest::Get {
                key: Bytes::from(vec![0xff; KEY_MAX_LEN]),
            },
        ] {
            let mut out = BytesMut::new();
            req.encode(&mut out);
            assert_eq!(parse(&out), Ok(Some(req.clone())));
            for cut in 0..out.len() {
                assert_eq!(parse(&out[..cut]), Ok(None), "{req:?} cut at {cut}");
            }
        }
    }

    /// Every byte value, in every position a key has on a peer line, comes back as it
    /// was sent, and the line stays one line.
    #[test]
    fn keys_with_every_byte_survive_every_command() {
        for key in [&b"b"[..], b"B", b"rc_set"] {
            let req = PeerRequest::Get {
                key: Bytes::copy_from_slice(key),
            };
            let mut out = BytesMut::new();
            req.encode(&mut out);
            assert_eq!(parse(&out), Ok(Some(req)));
        }
        for b in 0..=255u8 {
            let key = Bytes::from(vec![b'k', b, b, b'z']);
            let plain = b > b' ' && b != 0x7f;
            for req in [
                PeerRequest::Set {
                    key: key.clone(),
                    flags: 1,
                    exptime: 2,
                    cas: 3,
                    value: Bytes::from_static(b"\r\nEND\r\n"),
                },
                PeerRequest::Del {
                    key: key.clone(),
                    cas: 9,
                },
                PeerRequest::Get { key: key.clone() },
            ] {
                let mut out = BytesMut::new();
                req.encode(&mut out);
                let line_end = out.iter().position(|&c| c == b'\n').unwrap();
                let line = &out[..line_end - 1];
                assert!(!line.contains(&b'\r') && !line.contains(&0), "{line:?}");
                assert_eq!(line.ends_with(b" b"), !plain, "byte {b}: {line:?}");
                assert_eq!(parse(&out), Ok(Some(req.clone())), "byte {b}");
            }
            let found = PeerValue {
                value: Bytes::from_static(b"VALUE x 0 1\r\n"),
                flags: 5,
                cas: 77,
                exptime: 1_800_000_000,
            };
            let mut reply = BytesMut::new();
            encode_peer_value(&key, Some(&found), &mut reply);
            let reply = reply.freeze();
            assert_eq!(
                crate::text::frame::reply_len(&reply, crate::text::frame::Expect::Values),
                Ok(Some(reply.len()))
            );
            assert_eq!(parse_peer_value(&reply, &key), Ok(Some(found)), "byte {b}");
            assert_eq!(parse_peer_value(&reply, b"other"), Err(FrameError::OutOfStep));
        }
        let mut miss = BytesMut::new();
        encode_peer_value(b"k", None, &mut miss);
        assert_eq!(parse_peer_value(&miss.freeze(), b"k"), Ok(None));
        for bad in [
            &b"SERVER_ERROR ring mismatch 5\r\n"[..],
            b"VALUE k 0 1 5 0\r\nx\r\n",
            b"VALUE k 0 1 5\r\nx\r\nEND\r\n",
            b"STORED\r\n",
        ] {
            assert!(parse_peer_value(&Bytes::from_static(bad), b"k").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reply_tags_read_back_and_garbage_is_out_of_step() {
        let mut out = BytesMut::new();
        encode_reply_tag(42, 8, &mut out);
        assert_eq!(&out[..], b"RI 42 8\r\n");
        let tag = |id, len, line_len| Ok(Some(ReplyTag { id, len, line_len }));
        assert_eq!(parse_reply_tag(b"RI 42 8\r\nSTORED\r\n"), tag(42, 8, 9));
        for cut in 0..9 {
            assert_eq!(parse_reply_tag(&out[..cut]), Ok(None));
        }
        let mut max = BytesMut::new();
        encode_reply_tag(u64::MAX, 0, &mut max);
        assert_eq!(parse_reply_tag(&max), tag(u64::MAX, 0, max.len()));
        for bad in [
            &b"STORED\r\n"[..],
            b"END\r\n",
            b"RI x 1\r\n",
            b"RI 1 1\n",
            b"RI 1\r\n",
            b"RI 1 2 3\r\n",
            b"RI \r\n",
            b"RI 18446744073709551616 1\r\n",
            b"RI 1 99999999999999999\r\n",
            b"RI 01 1\r\n",
            b"RI 0000000000000000000000000000000000000000000000",
            b"R\r",
        ] {
            assert_eq!(parse_reply_tag(bad), Err(FrameError::OutOfStep), "{bad:?}");
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
            b"rc_id\r\n",
            b"rc_id -1\r\n",
            // base64 that decodes to nothing, or to more than a key may hold
            b"rc_get *** b\r\n",
            b"rc_del ==== 1 b\r\n",
            b"rc_get k b c\r\n",
            b"rc_set a b c d e f g h\r\n",
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
            PeerRequest::Ring {
                version: 7,
                handoff: false,
            },
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
            PeerRequest::Id { id: 3 },
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
