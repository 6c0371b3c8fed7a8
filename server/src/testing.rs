//! Several nodes in one process, wired together without sockets, for deterministic
//! tests (run them under `tokio::time::pause`) and fuzzing of the router (feature
//! `testing`; always on in this crate's own tests).
//!
//! Each node of a [`TestCluster`] is a real [`Node`]: its own store, its own
//! [`Cluster`] following a scripted membership (the test publishes each node's view of
//! the members, so rings can differ between nodes for as long as a test wants), and
//! the real router. Requests between nodes go through [`InProcessPeers`], the
//! [`Peers`] seam's in-process side: it hands the request to the target node's peer
//! connection logic (`peer_connection::answer`: the `rc_ring` fence, the request, the
//! check after a replication) and checks the reply's shape as the pooled connection
//! does, or fails it as a network would ([`Fault`]). The clock is tokio's: the repair
//! window, fencing waits and peer timeouts all follow paused time, and the Unix
//! seconds of expiry decisions are [`TestCluster::now`], a fixed start plus tokio's
//! elapsed time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ringcache_client::Error as ClientError;
use ringcache_protocol::cluster::{MemberState, NodeId};
use ringcache_protocol::ring::RingConfig;
use ringcache_protocol::text::frame::{reply_fits, Expect};
use ringcache_protocol::text::peer::encode_ring_mismatch;
use ringcache_protocol::text::{parse_request, response, Limits, Request};
use tokio::sync::watch;

use crate::cluster::{Cluster, ClusterConfig, ClusterStats};
use crate::exec::{self, Flow};
use crate::membership::{ClusterView, GossipConfig, Membership};
use crate::node::{Node, Settings};
use crate::peers::{PeerReply, Peers};
use crate::router;
use crate::stats::Counters;
use crate::storage::{Store, StoreConfig};

/// How a peer answers the requests sent to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// As the real node would.
    #[default]
    None,
    /// Connection refused, at once.
    Unreachable,
    /// Never answers: the request times out after the sender's timeout.
    Silent,
    /// Refuses every request with `SERVER_ERROR ring mismatch <its version>`, without
    /// running it, as a node on another ring does.
    RingMismatch,
}

/// The Unix seconds at tokio's start instant (so expiry decisions follow paused time).
const START_UNIX: u32 = 1_700_000_000;

/// The peers of every node of a [`TestCluster`]: nodes by client address, each with
/// its [`Fault`], and how many requests each was sent.
pub struct InProcessPeers {
    nodes: Mutex<HashMap<SocketAddr, Target>>,
    started: tokio::time::Instant,
    /// While recording ([`InProcessPeers::record`]): every request sent, in order.
    log: Mutex<Option<Vec<(SocketAddr, Bytes)>>>,
}

struct Target {
    /// Weak: the node holds its cluster, which holds these peers.
    node: Weak<Node>,
    fault: Fault,
    sent: Arc<AtomicU64>,
}

impl InProcessPeers {
    fn new() -> InProcessPeers {
        InProcessPeers {
            nodes: Mutex::new(HashMap::new()),
            started: tokio::time::Instant::now(),
            log: Mutex::new(None),
        }
    }

    /// Starts recording every request sent from now on (dropping what was recorded).
    pub fn record(&self) {
        *self.log.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
    }

    /// The requests sent since [`InProcessPeers::record`], in the order they were sent:
    /// the receiver's client address and the wire bytes.
    pub fn recorded(&self) -> Vec<(SocketAddr, Bytes)> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default()
    }

    fn targets(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Target>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The Unix seconds now: a fixed start plus tokio's elapsed time.
    pub fn now(&self) -> u32 {
        START_UNIX + self.started.elapsed().as_secs() as u32
    }
}

impl Peers for InProcessPeers {
    fn request(&self, addr: SocketAddr, wire: Bytes, expect: Expect, timeout: Duration) -> PeerReply {
        let now = self.now();
        if let Some(log) = self.log.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            log.push((addr, wire.clone()));
        }
        let (node, fault) = match self.targets().get(&addr) {
            Some(t) => {
                t.sent.fetch_add(1, Relaxed);
                (t.node.upgrade(), t.fault)
            }
            None => (None, Fault::Unreachable),
        };
        Box::pin(async move {
            let refused = || ClientError::Io {
                addr,
                source: std::io::ErrorKind::ConnectionRefused.into(),
            };
            let node = match (fault, node) {
                (Fault::Unreachable, _) | (_, None) => return Err(refused()),
                (Fault::Silent, _) => {
                    tokio::time::sleep(timeout).await;
                    return Err(ClientError::Timeout(timeout));
                }
                (Fault::RingMismatch, Some(node)) => {
                    let mut out = BytesMut::new();
                    let version = node.cluster.as_ref().map_or(0, |c| c.ring_version());
                    encode_ring_mismatch(version, &mut out);
                    return Ok(out.freeze());
                }
                (Fault::None, Some(node)) => node,
            };
            // A task of its own, as a request on a real peer connection runs on in
            // the peer when its sender gives up.
            let answering = tokio::spawn(crate::peer_connection::answer(node, wire, now));
            match tokio::time::timeout(timeout, answering).await {
                Err(_) => Err(ClientError::Timeout(timeout)),
                Ok(Err(_)) => Err(ClientError::Closed),
                Ok(Ok(reply)) if reply_fits(&reply, expect) => Ok(reply.freeze()),
                Ok(Ok(_)) => Err(ClientError::Protocol("reply out of step with its request".into())),
            }
        })
    }
}

/// The largest value a test node accepts (`-I`).
const MAX_ITEM_SIZE: usize = 1024 * 1024;

fn test_store() -> Arc<Store> {
    let store = Store::new(StoreConfig {
        memory_limit: 64 * 1024 * 1024,
        shards: 8,
        max_item_size: MAX_ITEM_SIZE,
    });
    Arc::new(store.with_clock_cas())
}

fn test_settings(client: SocketAddr) -> Settings {
    Settings {
        port: client.port(),
        listen: client.ip().to_string(),
        max_conns: 1024,
        max_item_size: MAX_ITEM_SIZE,
        threads: 1,
        verbosity: 0,
        drain_timeout: Duration::from_secs(10),
    }
}

/// Nodes wired together in one process (see the module doc).
pub struct TestCluster {
    /// The nodes, in the order they were built.
    pub nodes: Vec<Arc<Node>>,
    /// The in-process peers through which the nodes reach each other.
    pub peers: Arc<InProcessPeers>,
    ids: Vec<NodeId>,
    /// Each node's membership: what the test publishes here is what the node sees.
    views: Vec<watch::Sender<Arc<ClusterView>>>,
}

/// The peer timeout of every node (the default `--peer-timeout-ms`).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(1);

impl TestCluster {
    /// `n` nodes (`node-0`, `node-1`, ...) placing keys on `replicas` owners, every
    /// node seeing every other, hand-offs done.
    pub async fn start(n: usize, replicas: u32) -> TestCluster {
        TestCluster::start_with(n, replicas, 0).await
    }

    /// [`TestCluster::start`] with every node's hand-off limited to `handoff_rate`
    /// bytes per second (0: no limit; see `ClusterConfig::handoff_rate`).
    pub async fn start_with(n: usize, replicas: u32, handoff_rate: u64) -> TestCluster {
        let peers = Arc::new(InProcessPeers::new());
        let ids: Vec<NodeId> = (0..n)
            .map(|i| NodeId {
                name: format!("node-{i}"),
                gossip: SocketAddr::from(([127, 0, 0, 1], 30000 + i as u16)),
                client: SocketAddr::from(([127, 0, 0, 1], 20000 + i as u16)),
                incarnation: 1,
            })
            .collect();
        let mut nodes = Vec::new();
        let mut views = Vec::new();
        for id in &ids {
            let store = test_store();
            let config = ClusterConfig {
                gossip: GossipConfig {
                    name: id.name.clone(),
                    gossip_addr: id.gossip,
                    client_addr: id.client,
                    seeds: Vec::new(),
                    probe_period: Duration::from_millis(500),
                    probe_rtt: Duration::from_millis(200),
                    suspect_timeout: Duration::from_millis(1500),
                    suspect_max_timeout: Duration::from_millis(1500),
                    key: None,
                },
                ring: RingConfig { vnodes: 160, replicas },
                peer_timeout: PEER_TIMEOUT,
                join_timeout: Duration::from_secs(10),
                handoff_rate,
            };
            let (membership, view_tx) = Membership::scripted(id.clone(), id.gossip);
            let stats = Arc::new(ClusterStats::default());
            let cluster = Cluster::follow(config, store.clone(), membership, peers.clone(), stats);
            let node = Arc::new(Node::new(store, test_settings(id.client), Some(cluster)));
            peers.targets().insert(
                id.client,
                Target {
                    node: Arc::downgrade(&node),
                    fault: Fault::None,
                    sent: Arc::new(AtomicU64::new(0)),
                },
            );
            nodes.push(node);
            views.push(view_tx);
        }
        let tc = TestCluster {
            nodes,
            peers,
            ids,
            views,
        };
        let all: Vec<usize> = (0..n).collect();
        for i in 0..n {
            tc.set_members(i, &all).await;
        }
        tc.settle().await;
        tc
    }

    /// Node `i`'s cluster state.
    pub fn cluster(&self, i: usize) -> &Arc<Cluster> {
        self.nodes[i].cluster.as_ref().expect("every test node has a cluster")
    }

    /// Node `i`'s identity.
    pub fn id(&self, i: usize) -> &NodeId {
        &self.ids[i]
    }

    /// The index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.ids.iter().position(|id| id.name == name)
    }

    /// The indexes of `key`'s owners under node `i`'s ring, primary first.
    pub fn owners(&self, i: usize, key: &[u8]) -> Vec<usize> {
        let view = self.cluster(i).ring();
        view.ring
            .owners(key)
            .iter()
            .filter_map(|o| view.ring.node(*o))
            .filter_map(|id| self.index_of(&id.name))
            .collect()
    }

    /// Makes node `i` see exactly `members` (indexes, itself included or not), and
    /// returns once its ring is built from them (its hand-off may still run).
    pub async fn set_members(&self, i: usize, members: &[usize]) {
        self.set_members_suspecting(i, members, &[]).await;
    }

    /// Makes node `i` see exactly `members` without waiting for anything; returns the
    /// version of the ring it will build from them.
    pub fn publish_members(&self, i: usize, members: &[usize]) -> u64 {
        let list = members
            .iter()
            .map(|&m| (self.ids[m].clone(), MemberState::Alive))
            .collect();
        let view = ClusterView::new(self.ids[i].clone(), list);
        let version = view.version;
        self.views[i].send_replace(Arc::new(view));
        version
    }

    /// As [`TestCluster::set_members`], with the members in `suspects` suspected (the
    /// ring is the same; only their state differs).
    pub async fn set_members_suspecting(&self, i: usize, members: &[usize], suspects: &[usize]) {
        let list = members
            .iter()
            .map(|&m| {
                let state = if suspects.contains(&m) {
                    MemberState::Suspect
                } else {
                    MemberState::Alive
                };
                (self.ids[m].clone(), state)
            })
            .collect();
        let view = ClusterView::new(self.ids[i].clone(), list);
        let version = view.version;
        self.views[i].send_replace(Arc::new(view));
        let cluster = self.cluster(i);
        let published = |c: &Cluster| {
            let ring = c.ring();
            ring.version == version
                && suspects.iter().all(|&m| {
                    ring.states
                        .iter()
                        .zip(ring.ring.nodes())
                        .any(|(s, id)| *id == self.ids[m] && *s == MemberState::Suspect)
                })
        };
        while !published(cluster) {
            tokio::task::yield_now().await;
        }
    }

    /// Waits until every node has finished the hand-off of its current ring.
    pub async fn settle(&self) {
        for i in 0..self.nodes.len() {
            let cluster = self.cluster(i);
            while cluster.handoff_version() != cluster.ring_version() || cluster.handoff_in_progress() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// Sets how node `i` answers requests from its peers.
    pub fn fault(&self, i: usize, fault: Fault) {
        if let Some(t) = self.peers.targets().get_mut(&self.ids[i].client) {
            t.fault = fault;
        }
    }

    /// How many requests node `i`'s peers have sent it.
    pub fn sent_to(&self, i: usize) -> u64 {
        self.peers
            .targets()
            .get(&self.ids[i].client)
            .map_or(0, |t| t.sent.load(Relaxed))
    }

    /// The Unix seconds of expiry decisions now.
    pub fn now(&self) -> u32 {
        self.peers.now()
    }

    /// Runs `input` (any number of requests) as a client connection to node `i` runs
    /// them, one after another, and returns the replies. A request whose data block
    /// is not all in `input` is dropped, as if the client closed the connection.
    pub async fn request(&self, i: usize, input: &[u8]) -> BytesMut {
        let node = &self.nodes[i];
        let cluster = self.cluster(i);
        let limits = Limits {
            max_item_size: node.settings.max_item_size,
        };
        let now = self.now();
        let view = cluster.ring();
        let mut rbuf = BytesMut::from(input);
        let mut out = BytesMut::new();
        let mut counters = Counters::default();
        loop {
            match parse_request(&mut rbuf, &limits) {
                Ok(None) => break,
                Ok(Some(Request::Get(get))) if router::runs_here(node, Some(&view), &get) => {
                    for key in get.keys.iter() {
                        exec::retrieve_one(node, get.kind, &key, now, &mut counters, &mut out);
                    }
                    out.put_slice(response::END);
                }
                Ok(Some(Request::Peer(_))) => out.put_slice(response::ERROR),
                Ok(Some(req)) => {
                    let mut ctx = router::Ctx::new(node, cluster, &view, false, now, &mut counters);
                    if router::handle(&mut ctx, req, &mut out).await == Flow::Close {
                        break;
                    }
                }
                Err(e) => {
                    out.put_slice(e.reply);
                    if let Some(key) = e.unlink.clone() {
                        let mut ctx = router::Ctx::new(node, cluster, &view, false, now, &mut counters);
                        router::unlink(&mut ctx, key).await;
                    }
                    let swallow = (e.swallow as usize).min(rbuf.len());
                    rbuf.advance(swallow);
                    if e.close {
                        break;
                    }
                }
            }
        }
        node.stats.totals.absorb(&mut counters);
        out
    }
}

/// One step of a differential run: a client request to one node of the cluster, or
/// time passing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Send these bytes (whole requests) to node `node` (modulo the cluster's size).
    Request {
        /// Which node (modulo the cluster's size).
        node: usize,
        /// Whole requests.
        bytes: Vec<u8>,
    },
    /// Let this many seconds pass (paused time: expiries, the repair window).
    Advance(u32),
}

impl Op {
    /// Decodes a stream of operations from arbitrary bytes (a fuzzer's input): each
    /// operation takes a few bytes, picks a command, a key of eight, a small value,
    /// flags and an expiry of 0 to 3 s. Commands whose replies carry a CAS unique
    /// (`gets`, `mg c`) are left out: a cluster's uniques are a hybrid clock, one
    /// node's may be too, and neither is a reply the model can predict.
    pub fn decode(input: &[u8]) -> Vec<Op> {
        let mut ops = Vec::new();
        for c in input.chunks(4) {
            let &[a, b, v, n] = c else { break };
            let node = usize::from(n % 3);
            let key = format!("k{}", b % 8);
            let other = format!("k{}", (b / 8) % 8);
            let ttl = u32::from(v % 4);
            let flags = u32::from(v / 4);
            let value = "v".repeat(usize::from(v % 5));
            let num = u32::from(v) * 7;
            let text = match a % 18 {
                0 | 1 => format!("set {key} {flags} {ttl} {}\r\n{value}\r\n", value.len()),
                2 => format!("add {key} {flags} {ttl} {}\r\n{value}\r\n", value.len()),
                3 => format!("replace {key} {flags} 0 {}\r\n{value}\r\n", value.len()),
                4 => format!("append {key} 0 0 {}\r\n{value}\r\n", value.len()),
                5 => format!("prepend {key} 0 0 {}\r\n{value}\r\n", value.len()),
                6 | 7 => format!("get {key}\r\n"),
                8 => format!("get {key} {other} k{}\r\n", n % 8),
                9 => format!("delete {key}\r\n"),
                10 => format!("set {key} 0 0 {}\r\n{num}\r\n", num.to_string().len()),
                11 => format!("incr {key} {num}\r\n"),
                12 => format!("decr {key} {num}\r\n"),
                13 => format!("touch {key} {ttl}\r\n"),
                14 => format!("mg {key} v f k\r\n"),
                15 => format!("ms {key} {} F{flags} T{ttl}\r\n{value}\r\n", value.len()),
                16 => format!("md {key}\r\n"),
                _ => {
                    ops.push(Op::Advance(u32::from(v % 7)));
                    continue;
                }
            };
            ops.push(Op::Request {
                node,
                bytes: text.into_bytes(),
            });
        }
        ops
    }
}

/// A cluster and a single node (the model) fed the same operations: every reply
/// through any node of the cluster must be the one node's reply.
pub struct Differential {
    /// The nodes under test.
    pub cluster: TestCluster,
    /// One node alone: whatever it answers is the expected reply.
    pub model: Arc<Node>,
}

impl Differential {
    /// `n` nodes with `replicas` owners per key, and the model.
    pub async fn start(n: usize, replicas: u32) -> Differential {
        let cluster = TestCluster::start(n, replicas).await;
        let model = Arc::new(Node::new(
            test_store(),
            test_settings(SocketAddr::from(([127, 0, 0, 1], 0))),
            None,
        ));
        Differential { cluster, model }
    }

    /// Runs `op` on both: the reply (empty when time passed), or the difference.
    pub async fn step(&self, op: &Op) -> Result<BytesMut, String> {
        match op {
            Op::Advance(secs) => {
                tokio::time::sleep(Duration::from_secs(u64::from(*secs))).await;
                Ok(BytesMut::new())
            }
            Op::Request { node, bytes } => {
                let node = node % self.cluster.nodes.len();
                let got = self.cluster.request(node, bytes).await;
                let want = self.model_request(bytes);
                if got == want {
                    Ok(got)
                } else {
                    Err(format!(
                        "{:?} through node {node}: cluster {:?}, one node {:?}",
                        String::from_utf8_lossy(bytes),
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(&want)
                    ))
                }
            }
        }
    }

    /// Runs `bytes` on the model, as a connection to a node without a cluster does.
    fn model_request(&self, bytes: &[u8]) -> BytesMut {
        let limits = Limits {
            max_item_size: self.model.settings.max_item_size,
        };
        let now = self.cluster.now();
        let mut rbuf = BytesMut::from(bytes);
        let mut out = BytesMut::new();
        let mut counters = Counters::default();
        loop {
            match parse_request(&mut rbuf, &limits) {
                Ok(None) => break,
                Ok(Some(req)) => {
                    if exec::execute(&self.model, req, now, &mut counters, &mut out) == Flow::Close {
                        break;
                    }
                }
                Err(e) => {
                    out.put_slice(e.reply);
                    if let Some(key) = &e.unlink {
                        self.model.store.with(key, now, |slot| slot.remove());
                    }
                    let swallow = (e.swallow as usize).min(rbuf.len());
                    rbuf.advance(swallow);
                    if e.close {
                        break;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: a seeded byte stream, no dependency.
    fn bytes(mut seed: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed >> 12;
                seed ^= seed << 25;
                seed ^= seed >> 27;
                (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn random_request_streams_through_three_nodes_answer_as_one_node() {
        let diff = Differential::start(3, 2).await;
        let mut steps = 0;
        for seed in 1..=40u64 {
            for op in Op::decode(&bytes(seed, 4 * 60)) {
                if let Err(e) = diff.step(&op).await {
                    panic!("seed {seed}, step {steps}: {e}");
                }
                steps += 1;
            }
        }
        assert!(steps > 2000, "{steps} steps");
    }
}
