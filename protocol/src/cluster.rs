//! Wire types shared by nodes and clients: a node's identity and the topology view.
//!
//! [`NodeId`] travels inside every gossip packet (serde, encoded with bincode by
//! [`crate::gossip::BincodeCodec`]). The topology view a client downloads is text (see
//! `docs/PROTOCOL.md`), so a person with telnet can read it too: [`Topology`] holds it,
//! [`Topology::encode`] writes it and [`Topology::parse`] reads it back.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Who a cluster member is.
///
/// Two identities with the same gossip address are the same member at different
/// times; the one with the larger `incarnation` wins (a restarted node starts with
/// the current Unix time in milliseconds, so it replaces its old self at once
/// instead of waiting for the cluster to forget it).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// The node's name: its identity on the ring (vnode points derive from it).
    pub name: String,
    /// Where the node gossips (UDP).
    pub gossip: SocketAddr,
    /// Where clients and peers reach its memcached port (TCP).
    pub client: SocketAddr,
    /// Larger wins among identities sharing a gossip address.
    pub incarnation: u64,
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.gossip, self.incarnation)
    }
}

/// A member's state as the topology reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Someone suspects it is down; still on the ring until declared down.
    Suspect,
}

impl MemberState {
    /// The state's name in a `topology` reply (`alive`, `suspect`).
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
        }
    }
}

/// One member as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyMember {
    /// The node's name, unique in the cluster.
    pub name: String,
    /// The address clients connect to.
    pub client: SocketAddr,
    /// Whether it answers probes or is suspected down.
    pub state: MemberState,
}

/// The view a client needs to place keys itself: the members on the ring, the ring
/// parameters, and a version that changes whenever membership changes (equal on
/// every node that sees the same members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Changes whenever membership changes; equal on nodes that see the same members.
    pub version: u64,
    /// The ring's hash function, by name (clients refuse one they do not know).
    pub hash: String,
    /// Ring points per member.
    pub vnodes: u32,
    /// How many members hold each key (the owner first).
    pub replicas: u32,
    /// The members on the ring.
    pub members: Vec<TopologyMember>,
}

/// A topology reply that does not follow the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed topology line: {0}")]
pub struct TopologyError(pub String);

impl Topology {
    /// Writes the reply to the `topology` command:
    ///
    /// ```text
    /// TOPOLOGY <version> <hash> <vnodes> <replicas> <member count>\r\n
    /// MEMBER <name> <client ip:port> <alive|suspect>\r\n   (one per member)
    /// END\r\n
    /// ```
    pub fn encode(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = write!(
            out,
            "TOPOLOGY {} {} {} {} {}\r\n",
            self.version,
            self.hash,
            self.vnodes,
            self.replicas,
            self.members.len()
        );
        for m in &self.members {
            let _ = write!(out, "MEMBER {} {} {}\r\n", m.name, m.client, m.state.as_str());
        }
        out.extend_from_slice(b"END\r\n");
    }

    /// Parses a complete reply (as written by [`Topology::encode`]). Returns `Ok(None)`
    /// while the reply is incomplete, and the number of bytes it used otherwise.
    pub fn parse(buf: &[u8]) -> Result<Option<(Topology, usize)>, TopologyError> {
        let mut pos = 0;
        let mut lines = Vec::new();
        loop {
            let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
                return Ok(None);
            };
            let raw = &buf[pos..pos + nl];
            pos += nl + 1;
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = std::str::from_utf8(line).map_err(|_| TopologyError("not UTF-8".into()))?;
            if line == "END" {
                break;
            }
            lines.push(line.to_string());
            if lines.len() > 100_000 {
                return Err(TopologyError("too many members".into()));
            }
        }
        let bad = |l: &str| TopologyError(l.to_string());
        let head = lines.first().ok_or_else(|| bad("missing TOPOLOGY line"))?;
        let f: Vec<&str> = head.split(' ').collect();
        if f.len() != 6 || f[0] != "TOPOLOGY" {
            return Err(bad(head));
        }
        let num = |s: &str| s.parse::<u64>().map_err(|_| bad(head));
        let mut topo = Topology {
            version: num(f[1])?,
            hash: f[2].to_string(),
            vnodes: u32::try_from(num(f[3])?).map_err(|_| bad(head))?,
            replicas: u32::try_from(num(f[4])?).map_err(|_| bad(head))?,
            members: Vec::new(),
        };
        let count = num(f[5])? as usize;
        for line in &lines[1..] {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() != 4 || f[0] != "MEMBER" {
                return Err(bad(line));
            }
            let state = match f[3] {
                "alive" => MemberState::Alive,
                "suspect" => MemberState::Suspect,
                _ => return Err(bad(line)),
            };
            topo.members.push(TopologyMember {
                name: f[1].to_string(),
                client: f[2].parse().map_err(|_| bad(line))?,
                state,
            });
        }
        if topo.members.len() != count {
            return Err(bad(head));
        }
        Ok(Some((topo, pos)))
    }
}

impl crate::ring::RingNode for NodeId {
    fn ring_name(&self) -> &[u8] {
        self.name.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Topology {
        Topology {
            version: 42,
            hash: "xxh3-64".into(),
            vnodes: 160,
            replicas: 2,
            members: vec![
                TopologyMember {
                    name: "node-1".into(),
                    client: "127.0.0.1:11211".parse().unwrap(),
                    state: MemberState::Alive,
                },
                TopologyMember {
                    name: "node-2".into(),
                    client: "127.0.0.1:11212".parse().unwrap(),
                    state: MemberState::Suspect,
                },
            ],
        }
    }

    #[test]
    fn encodes_the_documented_format() {
        let mut out = Vec::new();
        sample().encode(&mut out);
        assert_eq!(
            out,
            b"TOPOLOGY 42 xxh3-64 160 2 2\r\nMEMBER node-1 127.0.0.1:11211 alive\r\n\
MEMBER node-2 127.0.0.1:11212 suspect\r\nEND\r\n"
        );
    }

    #[test]
    fn round_trips_and_waits_for_the_end() {
        let mut out = Vec::new();
        sample().encode(&mut out);
        for cut in 0..out.len() {
            assert_eq!(Topology::parse(&out[..cut]), Ok(None), "cut at {cut}");
        }
        out.extend_from_slice(b"extra");
        let (topo, used) = Topology::parse(&out).unwrap().unwrap();
        assert_eq!(topo, sample());
        assert_eq!(used, out.len() - 5);
    }

    #[test]
    fn rejects_malformed_replies() {
        for bad in [
            &b"END\r\n"[..],
            b"TOPOLOGY x xxh3-64 160 2 0\r\nEND\r\n",
            b"TOPOLOGY 1 xxh3-64 160 2 1\r\nEND\r\n",
            b"TOPOLOGY 1 xxh3-64 160 2 1\r\nMEMBER a nowhere alive\r\nEND\r\n",
            b"TOPOLOGY 1 xxh3-64 160 2 1\r\nMEMBER a 127.0.0.1:1 dead\r\nEND\r\n",
            b"\xff\r\nEND\r\n",
        ] {
            assert!(Topology::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
