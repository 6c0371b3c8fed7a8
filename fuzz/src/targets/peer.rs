//! `peer`: the peer protocol from the encoder's side. The input is a program that
//! builds peer commands (`rc_peer`, `rc_set`, `rc_del`, `rc_get`, `rc_ring`, `rc_id`)
//! with keys of any bytes (raw or base64 on the wire), reply tags and `rc_get`
//! replies; the target encodes them as a node does and reads them back as the other
//! node does. (The `request` target covers the opposite direction: hostile bytes
//! parsed, then re-encoded.)
//!
//! Invariants:
//! - the pipelined stream of encoded commands parses (`text::parse_request`, the
//!   server's entry) back to exactly the commands, each consuming exactly its own
//!   bytes, with allocation bounded by the line (`rc_*` copies its tokens);
//! - every cut of a command before its end is "incomplete" and leaves the buffer
//!   untouched: never an error, never a different command (error vs need-more);
//! - a reply tag parses back to its id and length, its line length is the bytes
//!   written, whatever reply follows it; a length over `TAGGED_REPLY_MAX` is refused;
//! - an `rc_get` reply (a version or a miss) reads back equal for its key, is refused
//!   for another key, and frames whole as a retrieval reply (`reply_len`,
//!   `reply_fits`); the ring-mismatch refusal is recognised and frames as one line.

use bytes::{Bytes, BytesMut};
use ringcache_protocol::limits::TAGGED_REPLY_MAX;
use ringcache_protocol::text::frame::{reply_fits, reply_len, Expect};
use ringcache_protocol::text::peer::{
    encode_peer_value, encode_reply_tag, encode_ring_mismatch, is_ring_mismatch, parse_peer_value, parse_reply_tag,
    PeerRequest, PeerValue,
};
use ringcache_protocol::text::{parse_request, Limits, Request};

use crate::alloc::{check, measure};
use crate::input::Input;
use crate::rng::hash;
use crate::{show, Signature, Target};

/// The `peer` target (see the module doc).
pub struct PeerTarget;

/// Commands built per input at most.
const MAX_COMMANDS: usize = 16;

fn limits() -> Limits {
    Limits {
        max_item_size: 64 * 1024,
    }
}

/// A key of 1 to 250 bytes, any bytes; often a printable one (which travels raw).
fn key(inp: &mut Input<'_>) -> Bytes {
    let len = 1 + usize::from(inp.u8()) % 250;
    let mut key = inp.bytes(len).to_vec();
    if key.is_empty() {
        key.push(b'k');
    }
    if inp.bool() {
        for b in &mut key {
            *b = b'!' + *b % 94;
        }
    }
    Bytes::from(key)
}

/// A token a node name or proof can be: printable, no spaces, 1 to 64 bytes.
fn token(inp: &mut Input<'_>) -> Bytes {
    let len = 1 + usize::from(inp.u8()) % 64;
    let mut t: Vec<u8> = inp.bytes(len).iter().map(|b| b'!' + b % 94).collect();
    if t.is_empty() {
        t.push(b'n');
    }
    Bytes::from(t)
}

fn value(inp: &mut Input<'_>) -> Bytes {
    let len = match inp.u8() % 8 {
        0 => 0,
        7 => inp.uint(2) as usize % (limits().max_item_size + 1),
        n => usize::from(n) * 3,
    };
    let mut v = inp.bytes(len).to_vec();
    // Short inputs ask for long values: fill with line breaks, the bytes that matter.
    v.resize(len, b'\n');
    Bytes::from(v)
}

fn command(inp: &mut Input<'_>) -> PeerRequest {
    match inp.u8() % 6 {
        0 => PeerRequest::Hello {
            name: token(inp),
            proof: inp.bool().then(|| (inp.number(), token(inp))),
        },
        1 => PeerRequest::Set {
            key: key(inp),
            flags: inp.number() as u32,
            exptime: inp.number() as u32,
            cas: inp.number(),
            value: value(inp),
        },
        2 => PeerRequest::Del {
            key: key(inp),
            cas: inp.number(),
        },
        3 => PeerRequest::Get { key: key(inp) },
        4 => PeerRequest::Ring {
            version: inp.number(),
            handoff: false,
        },
        5 => PeerRequest::Ring {
            version: inp.number(),
            handoff: true,
        },
        _ => PeerRequest::Id { id: inp.number() },
    }
}

/// Parses one request off `buf` as the server does.
fn parse(buf: &mut BytesMut) -> Result<Option<Request>, String> {
    parse_request(buf, &limits()).map_err(|e| format!("error reply {}", show(e.reply)))
}

fn check_commands(cmds: &[PeerRequest], sig: &mut Signature) -> Result<(), String> {
    let mut stream = BytesMut::new();
    let mut lens = Vec::new();
    for cmd in cmds {
        let before = stream.len();
        cmd.encode(&mut stream);
        lens.push(stream.len() - before);
    }
    let whole = stream.clone().freeze();
    let mut buf = stream;
    let mut at = 0;
    for (cmd, &len) in cmds.iter().zip(&lens) {
        let before = buf.len();
        let (got, usage) = measure(|| parse(&mut buf));
        check("parse_request(rc_*)", usage, 2 * len + 1024, 4 * len + 4096)?;
        let encoded = &whole[at..at + len];
        match got? {
            Some(Request::Peer(p)) if p == *cmd => {}
            other => {
                return Err(format!("{cmd:?} encoded as {} parses as {other:?}", show(encoded)));
            }
        }
        if before - buf.len() != len {
            return Err(format!(
                "{} consumed {} bytes of a {len}-byte command",
                show(encoded),
                before - buf.len()
            ));
        }
        // Cuts: short commands at every byte, long ones at a few places.
        let h = hash(encoded);
        let cuts: Vec<usize> = if len <= 96 {
            (0..len).collect()
        } else {
            let line = encoded.iter().position(|&b| b == b'\n').unwrap_or(0);
            let mut cuts = vec![1, line, len - 2, len - 1, (h % len as u64) as usize];
            // The line alone, when a data block follows it.
            cuts.extend((line + 1 < len).then_some(line + 1));
            cuts
        };
        for cut in cuts {
            let mut part = BytesMut::from(&encoded[..cut]);
            match parse(&mut part) {
                Ok(None) if part.len() == cut => {}
                other => {
                    return Err(format!(
                        "the first {cut} bytes of {} give {other:?} (leaving {} bytes), not \"incomplete\"",
                        show(encoded),
                        part.len()
                    ))
                }
            }
        }
        sig.add(discriminant(cmd));
        at += len;
    }
    if !buf.is_empty() {
        return Err(format!("{} bytes left over", buf.len()));
    }
    Ok(())
}

fn discriminant(cmd: &PeerRequest) -> u64 {
    match cmd {
        PeerRequest::Hello { proof: None, .. } => 1,
        PeerRequest::Hello { .. } => 2,
        PeerRequest::Set { .. } => 3,
        PeerRequest::Del { .. } => 4,
        PeerRequest::Get { .. } => 5,
        PeerRequest::Ring { handoff: false, .. } => 6,
        PeerRequest::Id { .. } => 7,
        PeerRequest::Ring { handoff: true, .. } => 8,
    }
}

fn check_tag(id: u64, len: usize, tail: &[u8], sig: &mut Signature) -> Result<(), String> {
    let mut out = BytesMut::new();
    encode_reply_tag(id, len, &mut out);
    let line_len = out.len();
    out.extend_from_slice(tail);
    let got = parse_reply_tag(&out);
    if len as u64 > TAGGED_REPLY_MAX {
        sig.add_str("tag too long");
        return match got {
            Err(_) => Ok(()),
            other => Err(format!("a tag announcing {len} bytes read as {other:?}")),
        };
    }
    match got {
        Ok(Some(tag)) if tag.id == id && tag.len == len && tag.line_len == line_len => {
            sig.add_str("tag");
            Ok(())
        }
        other => Err(format!("tag {id} {len} followed by {} read as {other:?}", show(tail))),
    }
}

fn check_value(key: &Bytes, other: &Bytes, found: Option<&PeerValue>, sig: &mut Signature) -> Result<(), String> {
    let mut out = BytesMut::new();
    encode_peer_value(key, found, &mut out);
    let reply = out.freeze();
    let back = parse_peer_value(&reply, key);
    if back.as_ref().ok() != Some(&found.cloned()) {
        return Err(format!(
            "{found:?} for {} encoded as {} reads as {back:?}",
            show(key),
            show(&reply)
        ));
    }
    if reply_len(&reply, Expect::Values) != Ok(Some(reply.len())) || !reply_fits(&reply, Expect::Values) {
        return Err(format!("the rc_get reply {} does not frame whole", show(&reply)));
    }
    if found.is_some() && other != key && parse_peer_value(&reply, other).is_ok() {
        return Err(format!("{} was read for another key {}", show(&reply), show(other)));
    }
    sig.add_str(if found.is_some() { "version" } else { "miss" });
    Ok(())
}

impl Target for PeerTarget {
    fn name(&self) -> &'static str {
        "peer"
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[b"\r\n", b" ", b"\0", b"\xff\xff\xff\xff\xff\xff\xff\xff"]
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        vec![
            vec![0, 5, b'n', b'o', b'd', b'e', b'1', 0],
            vec![1, 3, b'k', b' ', b'\r', b'\n', 0, 5, 7, 1, 2, 3, 4, 6, 1, 0, 0, 0, 3],
            vec![2, 0, 0x80, 1, 4, 0xff, 3, 2, b'a', b'b', 1],
            vec![4, 4, 5, 9, 7, 1, 2, 3, 4, 5, 6, 7, 8],
        ]
    }

    fn run(&self, input: &[u8]) -> Result<u64, String> {
        let mut sig = Signature::default();
        let mut inp = Input::new(input);
        let mut cmds = Vec::new();
        while !inp.is_empty() && cmds.len() < MAX_COMMANDS {
            cmds.push(command(&mut inp));
        }
        check_commands(&cmds, &mut sig)?;
        // Replies, from the bytes the commands left (derived from them when none did).
        let mut inp = Input::new(input);
        let (key, other) = (key(&mut inp), key(&mut inp));
        let found = PeerValue {
            value: value(&mut inp),
            flags: inp.number() as u32,
            cas: inp.number(),
            exptime: inp.number() as u32,
        };
        check_value(&key, &other, Some(&found), &mut sig)?;
        check_value(&key, &other, None, &mut sig)?;
        let id = inp.number();
        let len = match inp.u8() % 4 {
            0 => inp.uint(2) as usize,
            1 => TAGGED_REPLY_MAX as usize,
            2 => TAGGED_REPLY_MAX as usize + 1 + inp.uint(1) as usize,
            _ => inp.number() as usize,
        };
        check_tag(id, len, inp.bytes(32), &mut sig)?;
        let mut refusal = BytesMut::new();
        encode_ring_mismatch(inp.number(), &mut refusal);
        if !is_ring_mismatch(&refusal) || reply_len(&refusal, Expect::Line) != Ok(Some(refusal.len())) {
            return Err(format!("the refusal {} is not one ring-mismatch line", show(&refusal)));
        }
        Ok(sig.finish())
    }
}
