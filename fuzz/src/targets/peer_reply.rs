//! `peer_reply`: what a node reads back from a peer, `text::peer::parse_reply_tag`
//! (the `RI <id> <len>` line before every tagged reply), `text::frame::reply_fits`
//! (whether the bytes it announces are one reply of the shape the request expects) and
//! `text::peer::parse_peer_value` (an `rc_get` reply), fed what a broken or hostile peer
//! could send.
//!
//! Invariants:
//! - no panic; allocation bounded by the input (a length of 2^34 is never allocated);
//! - a tag that parses re-encodes to exactly the bytes of its line; every cut of that
//!   line before its end is "incomplete", never a different tag or an error;
//! - a reply that fits its shape is framed, as a stream, exactly whole by `reply_len`,
//!   and only `MetaQuiet` accepts an empty reply;
//! - a version read from an `rc_get` reply re-encodes (`encode_peer_value`) to a reply
//!   that reads back equal and fits `Expect::Values`; it is only ever read for the key
//!   the reply names.

use bytes::{Bytes, BytesMut};
use ringcache_protocol::text::frame::{reply_fits, reply_len, Expect};
use ringcache_protocol::text::peer::{encode_peer_value, encode_reply_tag, parse_peer_value, parse_reply_tag};

use crate::alloc::{check, measure};
use crate::{show, Signature, Target};

/// The `peer_reply` target (see the module doc).
pub struct PeerReplyTarget;

const EXPECTS: [Expect; 6] = [
    Expect::Values,
    Expect::Lines,
    Expect::Line,
    Expect::Meta,
    Expect::MetaUntilNoop,
    Expect::MetaQuiet,
];

const DICTIONARY: &[&[u8]] = &[
    b"RI ",
    b"VALUE ",
    b"END\r\n",
    b"STORED\r\n",
    b"HD\r\n",
    b"VA ",
    b"EN\r\n",
    b"MN\r\n",
    b"SERVER_ERROR ring mismatch 7\r\n",
    b" b\r\n",
    b"\r\n",
    b" ",
    b"18446744073709551615",
    b"17179869184",
    b"AA==",
];

/// The keys a reply is read for (as a node asks: the key it sent `rc_get` for).
const KEYS: [&[u8]; 3] = [b"k", b"\0 \r\n", b"b"];

impl Target for PeerReplyTarget {
    fn name(&self) -> &'static str {
        "peer_reply"
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        DICTIONARY
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        [
            &b"RI 7 8\r\nSTORED\r\n"[..],
            b"RI 0 0\r\n",
            b"RI 18446744073709551615 5\r\nEND\r\n",
            b"RI 3 24\r\nVALUE k 0 1 99 0\r\nx\r\nEND\r\n",
            b"RI 4 29\r\nVALUE ACANCg== 1 1 9 0 b\r\nx\r\nEND\r\n",
            b"RI 5 13\r\nVA 2 k\r\nab\r\n",
            b"VALUE b 3 2 5 1800000000\r\nhi\r\nEND\r\n",
        ]
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect()
    }

    fn run(&self, input: &[u8]) -> Result<u64, String> {
        let mut sig = Signature::default();
        let (tag, usage) = measure(|| parse_reply_tag(input));
        check("parse_reply_tag", usage, 1024, 4096)?;
        // The bytes after a tag that parses are its reply; otherwise the whole input.
        let reply = match tag {
            Ok(Some(tag)) => {
                sig.add_str("tag");
                if tag.line_len > input.len() {
                    return Err(format!("tag line of {} bytes in {}", tag.line_len, input.len()));
                }
                let mut again = BytesMut::new();
                encode_reply_tag(tag.id, tag.len, &mut again);
                if again[..] != input[..tag.line_len] {
                    return Err(format!("tag {tag:?} re-encodes as {}", show(&again)));
                }
                for cut in 0..tag.line_len {
                    if parse_reply_tag(&input[..cut]) != Ok(None) {
                        return Err(format!(
                            "cut at {cut} of {} is not incomplete",
                            show(&input[..tag.line_len])
                        ));
                    }
                }
                let end = tag.line_len.saturating_add(tag.len).min(input.len());
                &input[tag.line_len..end]
            }
            Ok(None) => {
                sig.add_str("incomplete");
                input
            }
            Err(_) => {
                sig.add_str("bad tag");
                input
            }
        };
        for expect in EXPECTS {
            let (fits, usage) = measure(|| reply_fits(reply, expect));
            check("reply_fits", usage, 1024, 4096)?;
            if !fits {
                continue;
            }
            sig.add_str(&format!("fits {expect:?}"));
            let whole = if reply.is_empty() {
                expect == Expect::MetaQuiet
            } else {
                let framing = if expect == Expect::MetaQuiet {
                    Expect::Meta
                } else {
                    expect
                };
                reply_len(reply, framing) == Ok(Some(reply.len()))
            };
            if !whole {
                return Err(format!("{expect:?} fits {} but does not frame whole", show(reply)));
            }
        }
        let bytes = Bytes::copy_from_slice(reply);
        for key in KEYS {
            let (value, usage) = measure(|| parse_peer_value(&bytes, key));
            check(
                "parse_peer_value",
                usage,
                2 * reply.len() + 1024,
                4 * reply.len() + 4096,
            )?;
            let Ok(Some(value)) = value else { continue };
            sig.add_str("version");
            let mut again = BytesMut::new();
            encode_peer_value(key, Some(&value), &mut again);
            let again = again.freeze();
            if parse_peer_value(&again, key) != Ok(Some(value.clone())) || !reply_fits(&again, Expect::Values) {
                return Err(format!("{value:?} for {} re-encodes as {}", show(key), show(&again)));
            }
            if let Some(other) = KEYS.iter().find(|k| **k != key) {
                if parse_peer_value(&bytes, other).is_ok_and(|v| v.is_some()) {
                    return Err(format!("{} read as a version of two keys", show(reply)));
                }
            }
        }
        Ok(sig.finish())
    }
}
