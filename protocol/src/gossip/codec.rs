//! foca's wire codec over `bincode::serde` (foca 2 ships only a postcard codec).
//!
//! Each value is bincode's standard configuration (little-endian varints) of its serde
//! form; decoding refuses anything that claims more than [`MAX_PACKET`] bytes, so a
//! length prefix of 2^60 is an error rather than an allocation.

use bytes::{Buf, BufMut};
use foca::{Header, Member};

use super::{NodeIdentity, MAX_PACKET};

/// foca's [`foca::Codec`] for ringcache's gossip packets.
#[derive(Debug, Clone, Copy, Default)]
pub struct BincodeCodec;

/// A gossip packet that does not encode or decode.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encode: {0}")]
    /// bincode could not encode the packet.
    Encode(#[from] bincode::error::EncodeError),
    #[error("decode: {0}")]
    /// The bytes are not a packet bincode can decode.
    Decode(#[from] bincode::error::DecodeError),
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_PACKET>()
}

impl foca::Codec<NodeIdentity> for BincodeCodec {
    type Error = CodecError;

    fn encode_header(&mut self, header: &Header<NodeIdentity>, buf: impl BufMut) -> Result<(), CodecError> {
        bincode::serde::encode_into_std_write(header, &mut buf.writer(), bincode_config())?;
        Ok(())
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<NodeIdentity>, CodecError> {
        let (header, used) = bincode::serde::decode_from_slice(buf.chunk(), bincode_config())?;
        buf.advance(used);
        Ok(header)
    }

    fn encode_member(&mut self, member: &Member<NodeIdentity>, buf: impl BufMut) -> Result<(), CodecError> {
        bincode::serde::encode_into_std_write(member, &mut buf.writer(), bincode_config())?;
        Ok(())
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<NodeIdentity>, CodecError> {
        let (member, used) = bincode::serde::decode_from_slice(buf.chunk(), bincode_config())?;
        buf.advance(used);
        Ok(member)
    }
}

/// A gossip packet as foca lays it out: the header, then (unless the message is a
/// custom broadcast or an announce) a big-endian `u16` count of member updates and the
/// updates; custom broadcasts, if any, follow and are left out.
///
/// foca decodes every packet itself; the membership task reads packets a second time
/// through this to learn what foca does not report: who asked it to probe whom
/// (`PingReq`, an independent suspicion) and what others say about it (a suspicion it
/// had to refute).
pub fn decode_packet(packet: &[u8]) -> Result<(Header<NodeIdentity>, Vec<Member<NodeIdentity>>), CodecError> {
    use foca::Codec;
    let mut data = packet;
    let header = BincodeCodec.decode_header(&mut data)?;
    let mut updates = Vec::new();
    if data.remaining() >= 2 && header.message != foca::Message::Broadcast && header.message != foca::Message::Announce
    {
        let n = data.get_u16();
        for _ in 0..n {
            updates.push(BincodeCodec.decode_member(&mut data)?);
        }
    }
    Ok((header, updates))
}

#[cfg(test)]
mod tests {
    use foca::{Codec, Message, State};

    use super::*;
    use crate::cluster::NodeId;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_codec_round_trips_and_rejects_garbage() {
        let id = NodeIdentity(NodeId {
            name: "n1".into(),
            gossip: "127.0.0.1:7000".parse().unwrap(),
            client: "127.0.0.1:11211".parse().unwrap(),
            incarnation: 7,
        });
        let member = Member::alive(id);
        let mut buf = Vec::new();
        BincodeCodec.encode_member(&member, &mut buf).unwrap();
        let back = BincodeCodec.decode_member(&buf[..]).unwrap();
        assert_eq!(back, member);
        assert!(BincodeCodec.decode_member(&b"\xff\xff\xff"[..]).is_err());
        assert!(BincodeCodec.decode_header(&b""[..]).is_err());
    }

    /// The wire format, byte for byte: a fixed header (with a member identity in its
    /// message) and a fixed member update. These bytes must never change: nodes of
    /// different builds gossip with each other.
    #[test]
    fn golden_header_and_member() {
        let id = |name: &str, port: u16, incarnation| {
            NodeIdentity(NodeId {
                name: name.into(),
                gossip: format!("127.0.0.1:{port}").parse().unwrap(),
                client: format!("[::1]:{}", port + 1).parse().unwrap(),
                incarnation,
            })
        };
        let header = Header {
            src: id("a", 7000, 1_700_000_000_000),
            src_incarnation: 3,
            dst: id("b", 7002, 5),
            message: Message::PingReq {
                target: id("c", 7004, 9),
                probe_number: 42,
            },
        };
        let mut buf = Vec::new();
        BincodeCodec.encode_header(&header, &mut buf).unwrap();
        assert_eq!(
            hex(&buf),
            "0161007f000001fb581b0100000000000000000000000000000001fb591bfd0068e5cf8b01000003\
             0162007f000001fb5a1b0100000000000000000000000000000001fb5b1b05\
             020163007f000001fb5c1b0100000000000000000000000000000001fb5d1b092a"
        );
        assert_eq!(BincodeCodec.decode_header(&buf[..]).unwrap(), header);
        let member = Member::new(id("d", 7006, u64::MAX), 7, State::Suspect);
        let mut buf = Vec::new();
        BincodeCodec.encode_member(&member, &mut buf).unwrap();
        assert_eq!(
            hex(&buf),
            "0164007f000001fb5e1b0100000000000000000000000000000001fb5f1bfdffffffffffffffff0701"
        );
        assert_eq!(BincodeCodec.decode_member(&buf[..]).unwrap(), member);
    }

    #[test]
    fn a_packet_decodes_to_its_header_and_updates() {
        let id = |name: &str, port: u16| {
            NodeIdentity(NodeId {
                name: name.into(),
                gossip: format!("127.0.0.1:{port}").parse().unwrap(),
                client: format!("127.0.0.1:{}", port + 1).parse().unwrap(),
                incarnation: 1,
            })
        };
        let header = Header {
            src: id("a", 7000),
            src_incarnation: 0,
            dst: id("b", 7002),
            message: Message::PingReq {
                target: id("c", 7004),
                probe_number: 1,
            },
        };
        let updates = vec![
            Member::new(id("b", 7002), 4, State::Suspect),
            Member::new(id("c", 7004), 0, State::Alive),
        ];
        let mut buf = Vec::new();
        BincodeCodec.encode_header(&header, &mut buf).unwrap();
        buf.put_u16(updates.len() as u16);
        for m in &updates {
            BincodeCodec.encode_member(m, &mut buf).unwrap();
        }
        // A custom broadcast may follow the updates; it is not read.
        buf.extend_from_slice(b"\x00\x03abc");
        assert_eq!(decode_packet(&buf).unwrap(), (header.clone(), updates));

        let mut bare = Vec::new();
        BincodeCodec.encode_header(&header, &mut bare).unwrap();
        assert_eq!(decode_packet(&bare).unwrap(), (header, vec![]));
        // A count promising more updates than the packet holds is an error.
        bare.put_u16(3);
        assert!(decode_packet(&bare).is_err());
        assert!(decode_packet(b"").is_err());
    }

    #[test]
    fn a_length_over_the_packet_limit_is_refused_not_allocated() {
        // A name claiming 2^24 bytes.
        let mut buf = vec![0xfc, 0, 0, 0, 1];
        buf.extend_from_slice(&[b'a'; 64]);
        assert!(BincodeCodec.decode_member(&buf[..]).is_err());
    }
}
