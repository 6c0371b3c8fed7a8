//! Gossip: the UDP packets nodes exchange to agree on membership (SWIM, crate `foca`),
//! and the cluster secret both ends must share.
//!
//! A packet is what foca writes through its [`foca::Codec`]: a [`foca::Header`] (who
//! sends it, to whom, and the SWIM message), then member updates until the packet
//! ends, each encoded with bincode ([`BincodeCodec`]), at most [`MAX_PACKET`] bytes.
//! Identities are [`NodeId`]s ([`NodeIdentity`] is foca's view of one). With a cluster
//! secret, each packet travels sealed and every peer connection opens with a proof
//! ([`seal`]).
//!
//! foca itself does no I/O (it hands its caller bytes to send and timers to set), and
//! neither does this module: the server's `membership` owns the socket and the timers.
//! The one thing here that reads the clock is [`NodeIdentity`]'s `renew`, which foca
//! calls and which must give an incarnation no smaller than the current time.

pub mod codec;
pub mod farewell;
pub mod seal;

use std::net::SocketAddr;

use foca::Identity;

use crate::cluster::NodeId;

pub use codec::{decode_packet, BincodeCodec, CodecError};
pub use farewell::Farewell;
pub use seal::{ClusterKey, NONCE_LEN, PROOF_MAX_AGE, SEAL_OVERHEAD};

/// Largest gossip packet a node sends or accepts (before sealing, which adds
/// [`SEAL_OVERHEAD`]); the codec refuses to decode anything that claims more.
pub const MAX_PACKET: usize = 1400;

/// [`NodeId`] as foca's identity (the orphan rule keeps the impl on a local type).
///
/// Encodes exactly as the [`NodeId`] it wraps.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct NodeIdentity(pub NodeId);

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Identity for NodeIdentity {
    type Addr = SocketAddr;

    /// The same node, rejoining after the cluster declared it down: a larger
    /// incarnation, and at least the current Unix time in milliseconds (so it also
    /// beats anything a previous run of the node announced).
    fn renew(&self) -> Option<Self> {
        let mut next = self.0.clone();
        next.incarnation = next.incarnation.wrapping_add(1).max(unix_millis());
        Some(NodeIdentity(next))
    }

    /// Identities that share a gossip address are the same member.
    fn addr(&self) -> SocketAddr {
        self.0.gossip
    }

    /// The larger incarnation wins.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.0.incarnation > adversary.0.incarnation
    }
}

/// The current Unix time in milliseconds: where a node's incarnation starts, so a
/// restarted node replaces its old identity at once.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, port: u16, incarnation: u64) -> NodeIdentity {
        NodeIdentity(NodeId {
            name: name.into(),
            gossip: format!("127.0.0.1:{port}").parse().unwrap(),
            client: format!("127.0.0.1:{}", port + 1).parse().unwrap(),
            incarnation,
        })
    }

    #[test]
    fn identities_share_an_address_and_the_larger_incarnation_wins() {
        let old = id("a", 7000, 5);
        let new = old.renew().unwrap();
        assert_eq!(new.addr(), old.addr());
        assert_eq!(new.0.name, "a");
        assert!(new.0.incarnation > 5 && new.0.incarnation >= unix_millis() - 60_000);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        let far = id("a", 7000, u64::MAX - 1);
        assert_eq!(far.renew().unwrap().0.incarnation, u64::MAX);
    }
}
