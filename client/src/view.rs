//! The client's picture of the cluster: the ring, one connection pool per node, and
//! each node's health.
//!
//! A [`View`] is immutable and shared as an `Arc`: a request clones the current one
//! out of a lock held for no longer than the clone (never across `.await`), and a
//! topology change builds a new one. Nodes whose name and address did not change
//! carry their [`Node`] (pool and health) over to the new view, so a refresh neither
//! drops connections nor forgets that a node is down.
//!
//! # Health (TKO)
//! Like mcrouter, a node that fails `tko_threshold` requests in a row (refused,
//! broken, timed out), whatever the request, is marked down ("TKO"): requests skip it
//! at once instead of paying a timeout each, reads go to the next owner, and one
//! background probe per down node tries it again every `probe_interval` until it
//! answers. Any answer (an error line too) resets the count; opening a connection
//! does not, since a frozen process's kernel still accepts them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringcache_protocol::cluster::Topology;
use ringcache_protocol::ring::{ring_hash_name, NodeIdx, Ring, RingConfig};

use crate::error::{Error, Result};
use crate::pool::NodePool;

/// One cache node.
pub(crate) struct Node {
    /// Its name on the ring (`host:port` for a fixed list of servers).
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub pool: NodePool,
    /// Requests failed in a row; reset by any answer.
    failures: AtomicU32,
    /// Marked down (TKO): skipped until a probe succeeds.
    down: AtomicBool,
}

impl Node {
    pub(crate) fn new(name: Arc<str>, addr: SocketAddr, pool_size: usize, connect_timeout: Duration) -> Node {
        Node {
            name,
            addr,
            pool: NodePool::new(addr, pool_size, connect_timeout),
            failures: AtomicU32::new(0),
            down: AtomicBool::new(false),
        }
    }

    /// Whether requests should skip the node.
    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Records an answer: the node is reachable.
    pub(crate) fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failure; true if this one marked the node down (the caller starts
    /// the probe).
    pub(crate) fn failed(&self, threshold: u32) -> bool {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        n >= threshold && !self.down.swap(true, Ordering::Relaxed)
    }

    /// The probe got an answer: back in service.
    pub(crate) fn revive(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.down.store(false, Ordering::Relaxed);
    }
}

/// The ring and its nodes, as of one topology version.
pub(crate) struct View {
    pub ring: Ring<Arc<str>>,
    /// `nodes[i]` is the node `NodeIdx(i)` of `ring`.
    pub nodes: Vec<Arc<Node>>,
    /// The topology version it was built from (0 for a fixed server list).
    pub version: u64,
}

impl View {
    /// Builds a view of `members` (name, address), reusing `old`'s nodes where the
    /// name and address are unchanged.
    pub(crate) fn build(
        members: Vec<(Arc<str>, SocketAddr)>,
        config: RingConfig,
        version: u64,
        old: Option<&View>,
        pool_size: usize,
        connect_timeout: Duration,
    ) -> Result<View> {
        let addrs: HashMap<Arc<str>, SocketAddr> = members.iter().cloned().collect();
        let ring = Ring::new(members.into_iter().map(|(n, _)| n), config, version)
            .map_err(|e| Error::Topology(e.to_string()))?;
        let reuse: HashMap<(&str, SocketAddr), &Arc<Node>> = old
            .map(|v| v.nodes.iter().map(|n| ((&*n.name, n.addr), n)).collect())
            .unwrap_or_default();
        let mut nodes = Vec::with_capacity(ring.len());
        for name in ring.nodes() {
            let addr = *addrs
                .get(name)
                .ok_or_else(|| Error::Topology(format!("no address for {name}")))?;
            let node = match reuse.get(&(&**name, addr)) {
                Some(n) => Arc::clone(n),
                None => Arc::new(Node::new(name.clone(), addr, pool_size, connect_timeout)),
            };
            nodes.push(node);
        }
        Ok(View { ring, nodes, version })
    }

    /// A view with no nodes: every key has no owner (reads miss, writes fail with
    /// [`Error::NoNode`]). A client built while no seed answers starts with it.
    pub(crate) fn empty() -> Result<View> {
        let config = RingConfig {
            vnodes: ringcache_protocol::ring::DEFAULT_VNODES,
            replicas: 1,
        };
        View::build(Vec::new(), config, 0, None, 1, Duration::from_secs(1))
    }

    /// Builds the view a `topology` reply describes.
    pub(crate) fn from_topology(
        topo: &Topology,
        old: Option<&View>,
        pool_size: usize,
        connect_timeout: Duration,
    ) -> Result<View> {
        if topo.hash != ring_hash_name() {
            return Err(Error::Topology(format!(
                "placement hash {:?} is not {:?}",
                topo.hash,
                ring_hash_name()
            )));
        }
        if topo.members.is_empty() {
            return Err(Error::Topology("no members".into()));
        }
        let members = topo
            .members
            .iter()
            .map(|m| (Arc::from(m.name.as_str()), m.client))
            .collect();
        let config = RingConfig {
            vnodes: topo.vnodes,
            replicas: topo.replicas,
        };
        View::build(members, config, topo.version, old, pool_size, connect_timeout)
    }

    /// The node of a ring index.
    pub(crate) fn node(&self, idx: NodeIdx) -> Option<&Arc<Node>> {
        self.nodes.get(idx.get())
    }

    /// Whether `node` (by identity) is still part of this view.
    pub(crate) fn contains(&self, node: &Arc<Node>) -> bool {
        self.nodes.iter().any(|n| Arc::ptr_eq(n, node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcache_protocol::cluster::{MemberState, TopologyMember};

    fn topo(version: u64, members: &[(&str, u16)]) -> Topology {
        Topology {
            version,
            hash: ring_hash_name().to_string(),
            vnodes: 160,
            replicas: 2,
            members: members
                .iter()
                .map(|(n, p)| TopologyMember {
                    name: n.to_string(),
                    client: SocketAddr::from(([127, 0, 0, 1], *p)),
                    state: MemberState::Alive,
                })
                .collect(),
        }
    }

    #[test]
    fn placement_matches_the_ring_and_nodes_carry_over() {
        let t = Duration::from_secs(1);
        let v1 = View::from_topology(&topo(1, &[("b", 2), ("a", 1)]), None, 1, t).unwrap();
        // Same placement as a ring built by name, as the server builds it.
        let ring = Ring::new(
            ["a", "b"],
            RingConfig {
                vnodes: 160,
                replicas: 2,
            },
            1,
        )
        .unwrap();
        for k in 0..100 {
            let key = format!("key:{k}");
            let want: Vec<&str> = ring
                .owners(key.as_bytes())
                .iter()
                .map(|&i| ring.nodes()[i.get()])
                .collect();
            let got: Vec<&str> = v1
                .ring
                .owners(key.as_bytes())
                .iter()
                .map(|&i| &*v1.node(i).unwrap().name)
                .collect();
            assert_eq!(got, want);
        }
        assert_eq!(v1.nodes[0].addr.port(), 1);
        v1.nodes[0].failed(1);
        // a keeps its node (and its health); c is new; b moved port so is new.
        let v2 = View::from_topology(&topo(2, &[("a", 1), ("b", 3), ("c", 4)]), Some(&v1), 1, t).unwrap();
        assert!(Arc::ptr_eq(&v1.nodes[0], &v2.nodes[0]));
        assert!(v2.nodes[0].is_down());
        assert!(!v2.contains(&v1.nodes[1]));
        assert_eq!(v2.nodes[1].addr.port(), 3);
    }

    #[test]
    fn bad_topologies_are_rejected() {
        let t = Duration::from_secs(1);
        let mut other = topo(1, &[("a", 1)]);
        other.hash = "md5".into();
        assert!(matches!(
            View::from_topology(&other, None, 1, t),
            Err(Error::Topology(_))
        ));
        assert!(View::from_topology(&topo(1, &[]), None, 1, t).is_err());
        let mut zero = topo(1, &[("a", 1)]);
        zero.vnodes = 0;
        assert!(View::from_topology(&zero, None, 1, t).is_err());
    }

    #[test]
    fn tko_after_threshold_failures_in_a_row() {
        let n = Node::new(
            "a".into(),
            SocketAddr::from(([127, 0, 0, 1], 1)),
            1,
            Duration::from_secs(1),
        );
        assert!(!n.failed(3));
        n.succeeded();
        assert!(!n.failed(3));
        assert!(!n.failed(3));
        assert!(n.failed(3), "third failure in a row marks it down");
        assert!(n.is_down());
        assert!(!n.failed(3), "already down: no second probe");
        n.revive();
        assert!(!n.is_down());
    }
}
