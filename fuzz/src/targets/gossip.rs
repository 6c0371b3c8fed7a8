//! `gossip`: the gossip packet codec, `ringcache_protocol::gossip::BincodeCodec`
//! (foca's `Codec`: a `Header` then member updates), fed what a hostile or broken
//! host could send to the gossip port.
//!
//! Invariants:
//! - no panic; a decode consumes no more than the packet; a packet decodes as foca
//!   reads it (a header, then members until the packet is used up or one fails);
//! - allocation bounded by the codec's 1400-byte limit, whatever length prefixes say
//!   (a name "of 2^60 bytes" is rejected, not allocated);
//! - whatever decodes re-encodes to bytes that decode to an equal value.

use foca::{Codec, Header, Member, Message, State};
use ringcache_protocol::cluster::NodeId;
use ringcache_protocol::gossip::{BincodeCodec, NodeIdentity};

use crate::alloc::{check, measure};
use crate::{Signature, Target};

/// The `gossip` target (see the module doc).
pub struct GossipTarget;

/// Members after the header, as foca decodes a packet (bounded for speed).
const MEMBERS_MAX: usize = 64;

const DICTIONARY: &[&[u8]] = &[
    b"\xfb\xff\xff",
    b"\xfc\xff\xff\xff\xff",
    b"\xfd\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\xfd\x00\x00\x00\x00\x00\x00\x00\x10",
    b"\x00",
    b"\x01",
    b"\x02",
    b"\x7f\x00\x00\x01",
];

fn id(name: &str, port: u16, v6: bool, incarnation: u64) -> NodeIdentity {
    let ip = if v6 { "[::1]" } else { "127.0.0.1" };
    NodeIdentity(NodeId {
        name: name.into(),
        gossip: format!("{ip}:{port}").parse().expect("address"),
        client: format!("{ip}:{}", port.wrapping_add(1)).parse().expect("address"),
        incarnation,
    })
}

impl Target for GossipTarget {
    fn name(&self) -> &'static str {
        "gossip"
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        DICTIONARY
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let a = id("node-1", 7000, false, 1_700_000_000_000);
        let b = id(&"n".repeat(200), 65535, true, u64::MAX);
        let messages = vec![
            Message::Ping(7),
            Message::Ack(255),
            Message::PingReq {
                target: b.clone(),
                probe_number: 1,
            },
            Message::IndirectPing {
                origin: a.clone(),
                probe_number: 2,
            },
            Message::IndirectAck {
                target: b.clone(),
                probe_number: 3,
            },
            Message::ForwardedAck {
                origin: a.clone(),
                probe_number: 4,
            },
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ];
        let mut seeds = Vec::new();
        for (i, message) in messages.into_iter().enumerate() {
            let header = Header {
                src: a.clone(),
                src_incarnation: i as u16,
                dst: b.clone(),
                message,
            };
            let mut buf = Vec::new();
            BincodeCodec.encode_header(&header, &mut buf).expect("encode header");
            for (j, state) in [State::Alive, State::Suspect, State::Down]
                .into_iter()
                .enumerate()
                .take(i % 4)
            {
                let m = Member::new(id(&format!("m{j}"), 9000 + j as u16, j == 1, j as u64), u16::MAX, state);
                BincodeCodec.encode_member(&m, &mut buf).expect("encode member");
            }
            seeds.push(buf);
        }
        seeds
    }

    fn run(&self, input: &[u8]) -> Result<u64, String> {
        let mut sig = Signature::default();
        let (result, usage) = measure(|| decode_packet(input));
        check("BincodeCodec", usage, 8192, 64 * 1024 + 64 * input.len())?;
        let (header, members, members_error) = result?;
        sig.add(header.is_some() as u64);
        sig.add(members.len().min(4) as u64);
        sig.add(members_error as u64);
        if let Some(h) = &header {
            let mut buf = Vec::new();
            BincodeCodec
                .encode_header(h, &mut buf)
                .map_err(|e| format!("a decoded header does not encode: {e}"))?;
            let back = BincodeCodec.decode_header(&buf[..]);
            if back.as_ref().ok() != Some(h) {
                return Err(format!("header round trip: {h:?} came back as {back:?}"));
            }
        }
        for m in &members {
            let mut buf = Vec::new();
            BincodeCodec
                .encode_member(m, &mut buf)
                .map_err(|e| format!("a decoded member does not encode: {e}"))?;
            let back = BincodeCodec.decode_member(&buf[..]);
            if back.as_ref().ok() != Some(m) {
                return Err(format!("member round trip: {m:?} came back as {back:?}"));
            }
        }
        Ok(sig.finish())
    }
}

type Decoded = (Option<Header<NodeIdentity>>, Vec<Member<NodeIdentity>>, bool);

/// A header, then members until the packet ends or one fails to decode.
fn decode_packet(input: &[u8]) -> Result<Decoded, String> {
    let mut rest: &[u8] = input;
    let header = match BincodeCodec.decode_header(&mut rest) {
        Ok(h) => h,
        Err(_) => return Ok((None, Vec::new(), false)),
    };
    if rest.len() > input.len() {
        return Err("decode_header grew the buffer".into());
    }
    let mut members = Vec::new();
    while !rest.is_empty() && members.len() < MEMBERS_MAX {
        let left = rest.len();
        match BincodeCodec.decode_member(&mut rest) {
            Ok(m) => {
                if rest.len() >= left {
                    return Err("decode_member consumed nothing".into());
                }
                members.push(m);
            }
            Err(_) => return Ok((Some(header), members, true)),
        }
    }
    Ok((Some(header), members, false))
}
