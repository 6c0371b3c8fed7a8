//! `/healthz` and `/readyz`: what an orchestrator asks before it restarts a node or
//! sends it traffic.
//!
//! **Live** ([`liveness`]): the process answers HTTP on its runtime (the handler
//! running is the proof) and its gossip task still runs. A node failing this is
//! broken for good; restarting it is the cure.
//!
//! **Ready** ([`readiness`]) means *safe to restart the next node*, which takes all of:
//! - not draining ([`crate::node::Node::set_draining`]);
//! - joined: not still refusing key commands while it looks for its cluster
//!   (`Cluster::joining`; a node whose seeds never answered stops waiting after
//!   `--join-timeout-ms` and then counts as a cluster of one);
//! - its own hand-off done: it has sent every item the last ring change gave to
//!   other owners (`Cluster::handoff_version` equals its ring version);
//! - in quorum: its side of the cluster holds a majority of the members it counts
//!   (`crate::quorum`); a node cut off from most of its cluster refuses key commands
//!   and is not ready;
//! - every other member on its ring answers `stats` over the peer connection within
//!   [`PEER_WAIT`] with the same `cluster_ring_version` (they all adopted the same
//!   ring) and the same `cluster_handoff_version` (none of them has anything left to
//!   hand to this node, or to anyone, for that ring) — except members gossip already
//!   suspects, as long as this node and the members that do agree are a strict
//!   majority of the ring.
//!
//! The last two together are what makes a restart safe with `--replicas 2`: a node
//! that comes back empty is on every ring at once, but holds its share only once the
//! others have handed it over; until then the one other copy of those keys is the
//! only one, and restarting its holder would lose them. A peer whose `stats` has no
//! `cluster_handoff_version` (a version before this one, during an upgrade) counts
//! as done, so that a rolling upgrade can proceed.
//!
//! A member that stops answering is suspected within a probe period or so
//! (`--gossip-probe-ms`); until then it makes every node unready. Once it is suspect
//! the healthy majority is ready again while gossip probes it, so one frozen or
//! cut-off node does not take every node out of a load balancer. That node itself is
//! not ready (it cannot answer, or it is in a minority), and a PodDisruptionBudget
//! with `maxUnavailable: 1` counts it: no second node is restarted meanwhile.

use std::time::Duration;

use bytes::Bytes;
use ringcache_protocol::text::frame::Expect;

use crate::node::Node;

/// How long `/readyz` waits for each peer's `stats` (they are asked at once). A
/// Kubernetes probe times out after 1 s by default.
pub const PEER_WAIT: Duration = Duration::from_millis(500);

/// This node's own part of readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// Draining: stopping, so not ready.
    pub draining: bool,
    /// Still looking for its cluster (refusing key commands).
    pub joining: bool,
    /// The version of its ring.
    pub ring_version: u64,
    /// The ring version its hand-off has finished for (`Cluster::handoff_version`).
    pub handoff_version: u64,
    /// Handing items off (or dropping those it no longer owns) right now.
    pub handoff_in_progress: bool,
    /// Members up on this node's side of those it counts (`crate::quorum`).
    pub quorum: crate::quorum::Count,
    /// How many nodes its ring has (itself included).
    pub ring_len: usize,
}

/// What one peer said (or why it said nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReport {
    /// The peer's node name.
    pub name: String,
    /// Its ring version and, if it reports one, its hand-off version; or why it did
    /// not answer.
    pub answer: Result<(u64, Option<u64>), String>,
    /// Whether gossip suspects it (it missed a probe and has not refuted yet).
    pub suspect: bool,
}

/// `Ok` when the process is alive; otherwise why not.
pub fn liveness(node: &Node) -> Result<(), &'static str> {
    match &node.cluster {
        Some(cluster) if !cluster.membership.running() => Err("the gossip task has stopped"),
        _ => Ok(()),
    }
}

/// `Ok` when the node is ready (see the module doc); otherwise the reasons, one a line.
pub async fn readiness(node: &Node) -> Result<(), String> {
    let Some(cluster) = &node.cluster else {
        return decide(
            &Local {
                draining: node.draining(),
                joining: false,
                ring_version: 0,
                handoff_version: 0,
                handoff_in_progress: false,
                quorum: crate::quorum::Count { up: 1, known: 1 },
                ring_len: 1,
            },
            &[],
        );
    };
    let view = cluster.ring();
    let local = Local {
        draining: node.draining(),
        joining: cluster.joining(),
        ring_version: view.version,
        handoff_version: cluster.handoff_version(),
        handoff_in_progress: cluster.handoff_in_progress(),
        quorum: cluster.membership.stats.quorum(),
        ring_len: view.ring.len(),
    };
    // Asking the peers only makes sense once this node itself is settled.
    decide(&local, &[])?;
    let me = view.me.and_then(|m| view.ring.node(m));
    let wait = PEER_WAIT.min(cluster.peer_timeout);
    let asks = view
        .ring
        .nodes()
        .iter()
        .zip(&view.states)
        .filter(|(n, _)| Some(*n) != me)
        .map(|(peer, state)| {
            let pool = cluster.peer(peer.client);
            let name = peer.name.clone();
            let suspect = *state == ringcache_protocol::cluster::MemberState::Suspect;
            async move {
                let answer = match pool
                    .request(Bytes::from_static(b"stats\r\n"), Expect::Lines, wait)
                    .await
                {
                    Ok(reply) => match stat(&reply, "cluster_ring_version") {
                        Some(ring) => Ok((ring, stat(&reply, "cluster_handoff_version"))),
                        None => Err("its stats have no cluster_ring_version".to_string()),
                    },
                    Err(e) => Err(e.to_string()),
                };
                PeerReport { name, answer, suspect }
            }
        });
    let reports = futures_util::future::join_all(asks).await;
    decide(&local, &reports)
}

/// The readiness verdict from this node's state and its peers' answers.
pub fn decide(local: &Local, peers: &[PeerReport]) -> Result<(), String> {
    let mut why = Vec::new();
    if local.draining {
        why.push("draining".to_string());
    }
    if local.joining {
        why.push("joining the cluster".to_string());
    }
    if local.handoff_in_progress || local.handoff_version != local.ring_version {
        why.push(format!("handing off items for ring {}", local.ring_version));
    }
    if !local.quorum.in_quorum() {
        why.push(format!(
            "no quorum: {} of the {} members this node counts are up on its side",
            local.quorum.up, local.quorum.known
        ));
    }
    let mut agree = 1;
    let mut suspects = Vec::new();
    for p in peers {
        let problem = match &p.answer {
            Err(e) => Some(format!("peer {} did not answer: {e}", p.name)),
            Ok((ring, _)) if *ring != local.ring_version => Some(format!(
                "peer {} has ring {ring}, this node {}",
                p.name, local.ring_version
            )),
            Ok((_, Some(handoff))) if *handoff != local.ring_version => {
                Some(format!("peer {} is still handing off items", p.name))
            }
            Ok(_) => None,
        };
        match problem {
            None => agree += 1,
            Some(problem) if p.suspect => suspects.push(problem),
            Some(problem) => why.push(problem),
        }
    }
    // Suspects are being probed: they do not hold the healthy majority back.
    if !suspects.is_empty() && agree * 2 <= local.ring_len.max(peers.len() + 1) {
        why.extend(suspects);
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why.join("\n"))
    }
}

/// The value of `STAT <name> <value>` in a `stats` reply.
pub(crate) fn stat(reply: &[u8], name: &str) -> Option<u64> {
    let text = std::str::from_utf8(reply).ok()?;
    text.lines().find_map(|line| {
        let mut words = line.trim_end().split(' ');
        match (words.next(), words.next(), words.next()) {
            (Some("STAT"), Some(n), Some(v)) if n == name => v.parse().ok(),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(v: u64) -> Local {
        Local {
            draining: false,
            joining: false,
            ring_version: v,
            handoff_version: v,
            handoff_in_progress: false,
            quorum: crate::quorum::Count { up: 3, known: 3 },
            ring_len: 3,
        }
    }

    fn peer(name: &str, answer: Result<(u64, Option<u64>), String>) -> PeerReport {
        PeerReport {
            name: name.to_string(),
            answer,
            suspect: false,
        }
    }

    fn suspect(name: &str, answer: Result<(u64, Option<u64>), String>) -> PeerReport {
        PeerReport {
            suspect: true,
            ..peer(name, answer)
        }
    }

    #[test]
    fn a_node_without_quorum_is_not_ready() {
        let l = Local {
            quorum: crate::quorum::Count { up: 1, known: 3 },
            ring_len: 1,
            ..settled(7)
        };
        assert_eq!(
            decide(&l, &[]),
            Err("no quorum: 1 of the 3 members this node counts are up on its side".into())
        );
    }

    #[test]
    fn a_suspect_peer_does_not_hold_back_the_healthy_majority() {
        let l = settled(7);
        let ok = peer("b", Ok((7, Some(7))));
        assert_eq!(decide(&l, &[ok.clone(), suspect("c", Err("timed out".into()))]), Ok(()));
        assert_eq!(decide(&l, &[ok.clone(), suspect("c", Ok((6, Some(6))))]), Ok(()));
        // Not suspected yet: it still blocks.
        assert!(decide(&l, &[ok.clone(), peer("c", Err("timed out".into()))]).is_err());
        // Two suspects of three: this node and b are no majority of a ring of four.
        let l4 = Local {
            ring_len: 4,
            ..settled(7)
        };
        let e = decide(
            &l4,
            &[
                ok,
                suspect("c", Err("timed out".into())),
                suspect("d", Err("timed out".into())),
            ],
        )
        .unwrap_err();
        assert_eq!(e, "peer c did not answer: timed out\npeer d did not answer: timed out");
    }

    #[test]
    fn ready_when_settled_and_every_peer_agrees() {
        assert_eq!(decide(&settled(7), &[]), Ok(()));
        let peers = [peer("b", Ok((7, Some(7)))), peer("c", Ok((7, None)))];
        assert_eq!(decide(&settled(7), &peers), Ok(()));
    }

    #[test]
    fn each_local_reason_is_named() {
        let l = Local {
            draining: true,
            ..settled(7)
        };
        assert_eq!(decide(&l, &[]), Err("draining".into()));
        let l = Local {
            joining: true,
            ..settled(7)
        };
        assert_eq!(decide(&l, &[]), Err("joining the cluster".into()));
        let l = Local {
            handoff_version: 6,
            ..settled(7)
        };
        assert_eq!(decide(&l, &[]), Err("handing off items for ring 7".into()));
        let l = Local {
            handoff_in_progress: true,
            ..settled(7)
        };
        assert!(decide(&l, &[]).is_err());
    }

    #[test]
    fn a_peer_behind_silent_or_still_handing_off_blocks_readiness() {
        let l = settled(7);
        let e = decide(&l, &[peer("b", Ok((6, Some(6))))]).unwrap_err();
        assert_eq!(e, "peer b has ring 6, this node 7");
        let e = decide(&l, &[peer("b", Ok((7, Some(6))))]).unwrap_err();
        assert_eq!(e, "peer b is still handing off items");
        let e = decide(&l, &[peer("b", Err("timed out".into())), peer("c", Ok((7, Some(7))))]).unwrap_err();
        assert_eq!(e, "peer b did not answer: timed out");
    }

    #[test]
    fn stats_lines_are_read_by_name() {
        let reply = b"STAT pid 1\r\nSTAT cluster_ring_version 123\r\nSTAT cluster_handoff_version 9\r\nEND\r\n";
        assert_eq!(stat(reply, "cluster_ring_version"), Some(123));
        assert_eq!(stat(reply, "cluster_handoff_version"), Some(9));
        assert_eq!(stat(reply, "cluster_ring"), None);
        assert_eq!(stat(b"SERVER_ERROR x\r\n", "pid"), None);
    }
}
