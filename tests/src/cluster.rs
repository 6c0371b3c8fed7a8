//! A local ringcache cluster for tests: N real nodes on free 127.0.0.1 ports, seeded
//! from the first, plus the few client operations the cluster tests need.
//!
//! [`Placement`] places keys as the smart client does (from a node's `topology` reply), so
//! a test can pick keys that one node does not own; [`ClusterTarget`] is what the suites
//! that must also run "through a cluster" talk to (node 1 of a 3-node `--replicas 2`
//! cluster, or memcached in the self-check).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringcache_protocol::cluster::Topology;
use ringcache_protocol::ring::{ring_hash_name, NodeIdx, Ring, RingConfig};
use ringcache_protocol::text::value::{read_values, ValuesEnd};

use crate::process::{free_port, free_udp_port, poll_until, ServerKind, ServerProcess};
use crate::raw::RawConn;

/// One node of a [`TestCluster`].
pub struct ClusterNode {
    /// The node's name (`--node-name`).
    pub name: String,
    /// The UDP port it gossips on.
    pub gossip_port: u16,
    /// The running server.
    pub process: ServerProcess,
}

/// Nodes started with the same replica count and gossip timing.
///
/// Every node is given the gossip addresses of all the cluster's other nodes as seeds
/// (those of the first `n` are chosen before any starts), as an operator would list
/// them: a node restarted with its flags then rejoins through any live one. (A node
/// without seeds founds a new cluster of one, which is what a restarted first node
/// would otherwise do.)
pub struct TestCluster {
    /// The nodes, in start order.
    pub nodes: Vec<ClusterNode>,
    replicas: u32,
    extra: Vec<String>,
    /// Gossip ports chosen for nodes not started yet (by [`TestCluster::start`]).
    planned: Vec<u16>,
}

impl TestCluster {
    /// Every node's client address, as the client takes its seeds.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.process.addr().to_string()).collect()
    }

    /// Starts `n` nodes named `n1..` with `replicas` owners per key, default gossip
    /// timing, and `extra` flags, and waits until every node sees all of them.
    pub fn start(n: usize, replicas: u32, extra: &[&str]) -> TestCluster {
        let mut c = TestCluster {
            nodes: Vec::new(),
            replicas,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            planned: (0..n).map(|_| free_udp_port()).collect(),
        };
        for _ in 0..n {
            c.add();
        }
        c.wait_converged(Duration::from_secs(15));
        c
    }

    /// Starts one more node (named `n<k>`, seeded from the first) without waiting for
    /// the others to see it.
    pub fn add(&mut self) -> &ClusterNode {
        self.add_with(&[])
    }

    /// Like [`TestCluster::add`], with `more` flags for this node only (after the
    /// cluster's, so they win).
    pub fn add_with(&mut self, more: &[&str]) -> &ClusterNode {
        let name = format!("n{}", self.nodes.len() + 1);
        let mut last = String::new();
        let mut planned = (!self.planned.is_empty()).then(|| self.planned.remove(0));
        for _ in 0..5 {
            let gossip = planned.take().unwrap_or_else(free_udp_port);
            let mut args = self.args(&name, gossip);
            args.extend(more.iter().map(|s| s.to_string()));
            match ServerProcess::start_on(ServerKind::Ringcache, free_port(), &args) {
                Ok(process) => {
                    self.nodes.push(ClusterNode {
                        name,
                        gossip_port: gossip,
                        process,
                    });
                    return self.nodes.last().expect("just pushed");
                }
                Err(e) => last = e,
            }
        }
        panic!("node {name} did not start: {last}");
    }

    fn args(&self, name: &str, gossip: u16) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "-m".into(),
            "64".into(),
            "-t".into(),
            "2".into(),
            "--node-name".into(),
            name.into(),
            "--gossip-addr".into(),
            format!("127.0.0.1:{gossip}"),
            "--replicas".into(),
            self.replicas.to_string(),
        ];
        let others = self
            .nodes
            .iter()
            .map(|n| n.gossip_port)
            .chain(self.planned.iter().copied());
        for port in others.filter(|p| *p != gossip) {
            args.push("--seed".into());
            args.push(format!("127.0.0.1:{port}"));
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// The indices of the nodes whose processes are running.
    pub fn live(&mut self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].process.is_running())
            .collect()
    }

    /// Waits until every running node's ring holds exactly the running nodes, with one
    /// version; panics after `timeout`.
    pub fn wait_converged(&mut self, timeout: Duration) -> Duration {
        let start = Instant::now();
        let ok = poll_until(timeout, Duration::from_millis(50), || self.converged());
        assert!(ok, "cluster did not converge within {timeout:?}: {}", self.describe());
        start.elapsed()
    }

    /// Whether every running node sees exactly the running nodes, with one version.
    pub fn converged(&mut self) -> bool {
        let live = self.live();
        let mut want: Vec<String> = live.iter().map(|&i| self.nodes[i].name.clone()).collect();
        want.sort();
        let mut versions = Vec::new();
        for &i in &live {
            let Some(t) = topology(&self.nodes[i].process) else {
                return false;
            };
            let names: Vec<String> = t.members.iter().map(|m| m.name.clone()).collect();
            if names != want {
                return false;
            }
            versions.push(t.version);
        }
        versions.windows(2).all(|w| w[0] == w[1])
    }

    /// Each running node's view, for failure messages.
    pub fn describe(&mut self) -> String {
        let live = self.live();
        live.iter()
            .map(|&i| {
                let n = &self.nodes[i];
                match topology(&n.process) {
                    Some(t) => format!(
                        "{} sees v{} {:?}",
                        n.name,
                        t.version,
                        t.members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>()
                    ),
                    None => format!("{}: no topology", n.name),
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Restarts node `i` with its name and ports.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].process.restart();
    }
}

/// The node's `topology` reply, `None` if it does not answer properly.
pub fn topology(p: &ServerProcess) -> Option<Topology> {
    let mut conn = RawConn::connect(p.addr()).ok()?;
    conn.send(b"topology\r\n").ok()?;
    let mut out = Vec::new();
    conn.read_until_suffix(&mut out, b"END\r\n", Duration::from_secs(2));
    Topology::parse(&out).ok().flatten().map(|(t, _)| t)
}

/// One `STAT` value of the node, as a number.
pub fn stat(p: &ServerProcess, name: &str) -> Option<f64> {
    let mut conn = RawConn::connect(p.addr()).ok()?;
    let reply = conn.request(b"stats\r\n", b"END\r\n");
    let text = String::from_utf8_lossy(&reply).into_owned();
    let prefix = format!("STAT {name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Sets every `(key, value)` through `conn`, pipelined in batches; returns the replies
/// that were not `STORED`.
pub fn set_all(conn: &mut RawConn, items: &[(String, String)]) -> Vec<String> {
    let mut bad = Vec::new();
    for batch in items.chunks(200) {
        let mut req = Vec::new();
        for (k, v) in batch {
            req.extend_from_slice(format!("set {k} 0 0 {}\r\n{v}\r\n", v.len()).as_bytes());
        }
        conn.send(&req).expect("send");
        let mut out = Vec::new();
        let n = batch.len();
        conn.read_until(&mut out, Duration::from_secs(20), |o| count_lines(o) >= n);
        for line in String::from_utf8_lossy(&out).lines() {
            if line != "STORED" {
                bad.push(line.to_string());
            }
        }
        if count_lines(&out) < n {
            bad.push(format!("only {} of {n} replies", count_lines(&out)));
        }
    }
    bad
}

fn count_lines(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

/// Reads `keys` through `conn` with multi-key gets of `width` keys; returns each key's
/// value (`None` for a miss). Panics if the reply is not a well-formed retrieval reply.
pub fn get_all(conn: &mut RawConn, keys: &[String], width: usize) -> Vec<Option<String>> {
    let mut values = Vec::with_capacity(keys.len());
    for batch in keys.chunks(width.max(1)) {
        let req = format!("get {}\r\n", batch.join(" "));
        let reply = conn.request(req.as_bytes(), b"END\r\n");
        let found = parse_values(&reply).unwrap_or_else(|| panic!("bad reply: {}", String::from_utf8_lossy(&reply)));
        for k in batch {
            values.push(found.iter().find(|(fk, _)| fk == k).map(|(_, v)| v.clone()));
        }
    }
    values
}

/// `VALUE` blocks of a retrieval reply as `(key, value)`, read with `protocol`'s one
/// `VALUE` reader; `None` unless `reply` is exactly one retrieval reply ending in END.
pub fn parse_values(reply: &[u8]) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let found = read_values(reply, |block| out.push((lossy(block.key), lossy(block.data))));
    matches!(found, Ok(Some((ValuesEnd::End, len))) if len == reply.len()).then_some(out)
}

/// Key placement as one node's `topology` reply describes it, built exactly as the smart
/// client builds its ring (`client/src/view.rs`): the members' names, the reply's vnodes
/// and replicas.
#[derive(Debug)]
pub struct Placement {
    ring: Ring<String>,
    /// The node whose keys the tests want to avoid (the one they talk to).
    this: NodeIdx,
    this_name: String,
}

impl Placement {
    /// The placement `topology` describes, seen from the member named `this`.
    pub fn new(topology: &Topology, this: &str) -> Placement {
        assert_eq!(topology.hash, ring_hash_name(), "unexpected placement hash");
        let config = RingConfig {
            vnodes: topology.vnodes,
            replicas: topology.replicas,
        };
        let names = topology.members.iter().map(|m| m.name.clone());
        let ring = Ring::new(names, config, topology.version).expect("the topology reply builds a ring");
        let idx = ring
            .index_of(this.as_bytes())
            .unwrap_or_else(|| panic!("{this} is not on the ring of {topology:?}"));
        Placement {
            ring,
            this: idx,
            this_name: this.to_string(),
        }
    }

    /// The name of the node the placement is seen from.
    pub fn this_name(&self) -> &str {
        &self.this_name
    }

    /// The name of `key`'s primary owner.
    pub fn primary_name(&self, key: &[u8]) -> &str {
        let idx = self.ring.primary(key).expect("a ring with members");
        self.ring.node(idx).expect("an index of the ring")
    }

    /// Whether this node is `key`'s primary owner.
    pub fn is_primary_here(&self, key: &[u8]) -> bool {
        self.ring.primary(key) == Some(self.this)
    }

    /// Whether this node is one of `key`'s owners (primary or replica).
    pub fn owns_here(&self, key: &[u8]) -> bool {
        self.ring.is_owner(key, self.this)
    }

    /// `base` itself if this node is not its primary, else the first of `base~1`,
    /// `base~2`, ... that it is not the primary of (the suffix keeps keys unique).
    pub fn key_elsewhere(&self, base: &str) -> String {
        (0..10_000)
            .map(|i| {
                if i == 0 {
                    base.to_string()
                } else {
                    format!("{base}~{i}")
                }
            })
            .find(|k| !self.is_primary_here(k.as_bytes()))
            .expect("a key owned elsewhere within 10000 tries")
    }
}

/// The number of nodes and the replica count of the cluster a [`ClusterTarget`] starts.
pub const TARGET_NODES: usize = 3;
/// See [`TARGET_NODES`].
pub const TARGET_REPLICAS: u32 = 2;

/// What a suite that must also run "through a cluster" talks to: node 1 of a converged
/// 3-node `--replicas 2` ringcache cluster; in the self-check
/// (`RINGCACHE_DIFF_AGAINST=memcached`, see [`ServerKind::target`]) three memcacheds
/// instead, the first standing for node 1.
pub struct ClusterTarget {
    cluster: Option<TestCluster>,
    memcached: Vec<ServerProcess>,
    placement: Option<Placement>,
}

impl ClusterTarget {
    /// Starts the cluster (every node with `extra` flags) and waits until it converged.
    pub fn start(extra: &[&str]) -> ClusterTarget {
        match ServerKind::target() {
            ServerKind::Memcached => ClusterTarget {
                cluster: None,
                memcached: (0..TARGET_NODES)
                    .map(|_| ServerProcess::start(ServerKind::Memcached, extra))
                    .collect(),
                placement: None,
            },
            ServerKind::Ringcache => {
                let cluster = TestCluster::start(TARGET_NODES, TARGET_REPLICAS, extra);
                let first = &cluster.nodes[0];
                let topo = topology(&first.process).expect("node 1 answers topology");
                assert_eq!(topo.members.len(), TARGET_NODES, "node 1 sees {topo:?}");
                let placement = Placement::new(&topo, &first.name);
                ClusterTarget {
                    cluster: Some(cluster),
                    memcached: Vec::new(),
                    placement: Some(placement),
                }
            }
        }
    }

    /// What the nodes are.
    pub fn kind(&self) -> ServerKind {
        match self.cluster {
            Some(_) => ServerKind::Ringcache,
            None => ServerKind::Memcached,
        }
    }

    /// Node 1's client address (the one the suites talk to).
    pub fn addr(&self) -> SocketAddr {
        self.process(0).addr()
    }

    /// Every node's client address, node 1's first.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        (0..TARGET_NODES).map(|i| self.process(i).addr()).collect()
    }

    /// Node `i`'s process (0 is node 1).
    pub fn process(&self, i: usize) -> &ServerProcess {
        match &self.cluster {
            Some(c) => &c.nodes[i].process,
            None => &self.memcached[i],
        }
    }

    /// Key placement seen from node 1 (`None` in the self-check: memcached has no ring).
    pub fn placement(&self) -> Option<&Placement> {
        self.placement.as_ref()
    }

    /// A key named after `base` whose primary is not node 1 (see
    /// [`Placement::key_elsewhere`]); `base` itself in the self-check.
    pub fn key_elsewhere(&self, base: &str) -> String {
        match &self.placement {
            Some(p) => p.key_elsewhere(base),
            None => base.to_string(),
        }
    }

    /// A one-line description for reports.
    pub fn describe(&self) -> String {
        match &self.placement {
            Some(p) => format!(
                "node {} of a {TARGET_NODES}-node --replicas {TARGET_REPLICAS} ringcache cluster",
                p.this_name()
            ),
            None => format!("memcached standing for node 1 of a {TARGET_NODES}-node cluster (self-check)"),
        }
    }
}
