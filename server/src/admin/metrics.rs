//! `/metrics`: the node's counters in the Prometheus text format (version 0.0.4),
//! encoded by the Prometheus project's `prometheus-client` crate.
//!
//! Every value is read when the page is asked for, from the counters the node keeps
//! anyway (`stats`, the store, the cluster, gossip): [`Snapshot::read`] takes them
//! at one moment, [`render`] writes them; nothing is counted twice on the request path
//! (the per-peer forward histogram, `crate::forward_stats`, is the one addition).
//!
//! # Names
//! - `memcached_*`: the names, labels and meanings of prometheus/memcached_exporter,
//!   so dashboards and alerts built for memcached work unchanged. Only what ringcache
//!   can fill honestly is there: no slab classes, LRU crawler or extstore metrics.
//!   `memcached_uptime_seconds` is a gauge here (the exporter types it a counter, but
//!   the crate only writes counters with a `_total` suffix, and the name is what
//!   queries use). `memcached_up` is always 1: the page is the node's own.
//! - `ringcache_*`: what a cluster adds: members by state, the ring (its version as
//!   a label of `ringcache_ring_info`: versions are 64-bit hashes, which a float
//!   sample would round), this node's share, join, drain and hand-off state, per-peer
//!   forward latency, errors and timeouts, fencing, replication, hand-off items and
//!   bytes each way, gossip.

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use ringcache_protocol::cluster::MemberState;

use crate::forward_stats::{ForwardSnapshot, BUCKETS_MICROS};
use crate::node::{unix_now, Node};
use crate::stats::Counters;
use crate::storage::StoreStats;

/// The `Content-Type` of the page.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Everything `/metrics` reports, read from a node at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Seconds since the process started.
    pub uptime_secs: u64,
    /// The node's clock, Unix seconds.
    pub unix_time: u32,
    /// User and system CPU time of the process, in seconds.
    pub cpu_user: f64,
    /// System CPU time of the process, in seconds.
    pub cpu_system: f64,
    /// The node-wide request counters.
    pub counters: Counters,
    /// The store's counters.
    pub store: StoreStats,
    /// Connections open now.
    pub curr_connections: u64,
    /// Connections accepted since start.
    pub total_connections: u64,
    /// The connection limit (`-c`).
    pub max_connections: usize,
    /// Whether the node is stopping.
    pub draining: bool,
    /// `None` on a node without a cluster.
    pub cluster: Option<ClusterSnapshot>,
}

/// The cluster's part of a [`Snapshot`].
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    /// Members gossip sees alive.
    pub alive: u64,
    /// Members gossip suspects are down.
    pub suspect: u64,
    /// The version of this node's ring.
    pub ring_version: u64,
    /// This node's share of the hash circle as primary (0 to 1).
    pub ring_share: f64,
    /// How many nodes hold each key (`--replicas`).
    pub replicas: u32,
    /// Whether the node has found its cluster (no longer joining).
    pub joined: bool,
    /// Whether a hand-off is running now.
    pub handoff_in_progress: bool,
    /// Members up on this node's side that it counts (`crate::quorum`).
    pub quorum_up: u64,
    /// How many members it counts.
    pub quorum_known: u64,
    /// This node's local health score (Lifeguard; 0 = healthy).
    pub gossip_awareness: u64,
    /// `ringcache_<name>_total` counters: (name, help, value).
    pub counters: Vec<(&'static str, &'static str, u64)>,
    /// Per peer, by name.
    pub forwards: Vec<(String, ForwardSnapshot)>,
}

impl Snapshot {
    /// Reads every counter of `node`.
    pub fn read(node: &Node) -> Snapshot {
        let ((us, uu), (ss, su)) = crate::stats_report::rusage();
        let cluster = node.cluster.as_ref().map(|cluster| {
            let view = cluster.ring();
            let count = |want: MemberState| view.states.iter().filter(|s| **s == want).count() as u64;
            let cs = &cluster.stats;
            let gs = &cluster.membership.stats;
            let c = node.stats.totals.snapshot();
            ClusterSnapshot {
                alive: count(MemberState::Alive),
                suspect: count(MemberState::Suspect),
                ring_version: view.version,
                ring_share: view.my_share(),
                replicas: view.ring.replicas(),
                joined: !cluster.joining(),
                handoff_in_progress: cluster.handoff_in_progress(),
                quorum_up: gs.quorum().up as u64,
                quorum_known: gs.quorum().known as u64,
                gossip_awareness: gs.awareness.load(Relaxed),
                counters: vec![
                    (
                        "ringcache_forwarded",
                        "Requests (or parts of a multi-key get) this node sent on to their owner.",
                        cs.forwarded.load(Relaxed),
                    ),
                    (
                        "ringcache_read_failovers",
                        "Reads answered by a later owner because an earlier one failed.",
                        cs.read_failovers.load(Relaxed),
                    ),
                    (
                        "ringcache_read_hedges",
                        "Reads given up on an owner that had not answered within 100 ms, to ask the next owner (also counted as forward timeouts).",
                        cs.read_hedges.load(Relaxed),
                    ),
                    (
                        "ringcache_failover_refusals",
                        "Failover reads answered as misses because, just after a ring change, an owner did not answer.",
                        cs.failover_refusals.load(Relaxed),
                    ),
                    (
                        "ringcache_replicated",
                        "Writes applied to a replica.",
                        cs.replicated.load(Relaxed),
                    ),
                    (
                        "ringcache_replication_errors",
                        "Replica or hand-off applications that failed, timed out or were refused.",
                        cs.replication_errors.load(Relaxed),
                    ),
                    (
                        "ringcache_ring_mismatches",
                        "Fenced requests from peers refused here because their ring differed.",
                        cs.ring_mismatches.load(Relaxed),
                    ),
                    (
                        "ringcache_fence_retries",
                        "Requests placed again after an owner refused them for a ring mismatch.",
                        cs.fence_retries.load(Relaxed),
                    ),
                    (
                        "ringcache_fence_refusals",
                        "Client requests refused because the rings did not agree in time.",
                        cs.fence_refusals.load(Relaxed),
                    ),
                    (
                        "ringcache_verdict_waits",
                        "Times a write waited for an owner it could not reach to answer or be dropped from the ring.",
                        cs.verdict_waits.load(Relaxed),
                    ),
                    (
                        "ringcache_handoff_items_sent",
                        "Items this node sent to owners they newly had after a ring change.",
                        cs.handed_off.load(Relaxed),
                    ),
                    (
                        "ringcache_handoff_bytes_sent",
                        "Key and value bytes of the items this node handed off.",
                        cs.handed_off_bytes.load(Relaxed),
                    ),
                    (
                        "ringcache_handoff_items_received",
                        "Items peers handed to this node after a ring change.",
                        c.handoff_items_received,
                    ),
                    (
                        "ringcache_handoff_bytes_received",
                        "Key and value bytes of the items peers handed to this node.",
                        c.handoff_bytes_received,
                    ),
                    (
                        "ringcache_purged_items",
                        "Items dropped because a ring change took their key away from this node.",
                        cs.purged_items.load(Relaxed),
                    ),
                    (
                        "ringcache_read_repairs",
                        "Reads that found a newer version on another owner and took it.",
                        cs.repaired.load(Relaxed),
                    ),
                    (
                        "ringcache_repair_round_trips",
                        "Requests that asked the key's other owners for their version first (repair window, keys that changed hands).",
                        cs.repair_round_trips.load(Relaxed),
                    ),
                    (
                        "ringcache_resets",
                        "Times the store was dropped because it may be stale: this node regained a majority after being cut off, was declared down while in a minority, or was frozen.",
                        cs.resets.load(Relaxed),
                    ),
                    (
                        "ringcache_gossip_packets_received",
                        "Gossip packets received.",
                        gs.packets_in.load(Relaxed),
                    ),
                    (
                        "ringcache_gossip_packets_sent",
                        "Gossip packets sent.",
                        gs.packets_out.load(Relaxed),
                    ),
                    (
                        "ringcache_gossip_packets_bad",
                        "Gossip packets that could not be decoded.",
                        gs.packets_bad.load(Relaxed),
                    ),
                    (
                        "ringcache_gossip_auth_failures",
                        "Gossip packets dropped because they failed authentication with the cluster secret.",
                        gs.auth_failures.load(Relaxed),
                    ),
                    (
                        "ringcache_gossip_rejoins",
                        "Times this node rejoined the cluster after being declared down.",
                        gs.rejoins.load(Relaxed),
                    ),
                    (
                        "ringcache_gossip_members_down",
                        "Members this node saw declared down (by itself or by others' gossip).",
                        gs.members_down.load(Relaxed),
                    ),
                    (
                        "ringcache_gossip_suspicions",
                        "Suspicions this node raised (its probe of a member went unanswered).",
                        gs.suspicions.load(Relaxed),
                    ),
                    (
                        "ringcache_gossip_confirmations",
                        "Other members' requests to probe a member this node suspects (independent confirmations).",
                        gs.confirmations.load(Relaxed),
                    ),
                    (
                        "ringcache_gossip_verdicts_held",
                        "Suspicions that ran out while this node saw no settled majority alive, held back rather than declaring the member down.",
                        gs.verdicts_held.load(Relaxed),
                    ),
                ],
                forwards: cluster.forwards.snapshot(),
            }
        });
        Snapshot {
            uptime_secs: node.started.elapsed().as_secs(),
            unix_time: unix_now(),
            cpu_user: us as f64 + uu as f64 / 1e6,
            cpu_system: ss as f64 + su as f64 / 1e6,
            counters: node.stats.totals.snapshot(),
            store: node.store.stats(),
            curr_connections: node.stats.curr_connections.load(Relaxed),
            total_connections: node.stats.total_connections.load(Relaxed),
            max_connections: node.settings.max_conns,
            draining: node.draining(),
            cluster,
        }
    }
}

/// The page for `snapshot`.
pub fn render(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut out = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail, and every name here is valid.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

/// The page for `node` now.
pub fn render_node(node: &Node) -> String {
    render(Snapshot::read(node))
}

/// Writes one family after another into a [`DescriptorEncoder`].
struct Out<'a, 'b>(&'a mut DescriptorEncoder<'b>);

type Labels<'l> = [(&'static str, &'l str)];

impl Out<'_, '_> {
    /// A counter; `name` without the `_total` the encoder appends.
    fn counter(&mut self, name: &str, help: &str, value: impl Into<Value>) -> std::fmt::Result {
        let m = self.0.encode_descriptor(name, help, None, MetricType::Counter)?;
        match value.into() {
            Value::Int(v) => ConstCounter::new(v).encode(m),
            Value::Float(v) => ConstCounter::new(v).encode(m),
        }
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl Into<Value>) -> std::fmt::Result {
        let m = self.0.encode_descriptor(name, help, None, MetricType::Gauge)?;
        match value.into() {
            Value::Int(v) => ConstGauge::new(v).encode(m),
            Value::Float(v) => ConstGauge::new(v).encode(m),
        }
    }

    fn counters(&mut self, name: &str, help: &str, rows: &[(&Labels<'_>, u64)]) -> std::fmt::Result {
        let mut m = self.0.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, v) in rows {
            ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn gauges(&mut self, name: &str, help: &str, rows: &[(&Labels<'_>, u64)]) -> std::fmt::Result {
        let mut m = self.0.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, v) in rows {
            ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
        }
        Ok(())
    }
}

/// A sample value: an integer or a float.
enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(u64::from(v))
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let s = self;
        let c = &s.counters;
        let st = &s.store;
        let mut o = Out(&mut encoder);

        // --- memcached_exporter's names ---
        o.gauge(
            "memcached_up",
            "Whether the server answers: always 1 on its own page.",
            1,
        )?;
        o.gauge(
            "memcached_uptime_seconds",
            "Seconds since the server started.",
            s.uptime_secs,
        )?;
        o.gauge(
            "memcached_time_seconds",
            "The server's Unix time.",
            u64::from(s.unix_time),
        )?;
        o.gauges(
            "memcached_version",
            "The memcached version whose protocol the server speaks.",
            &[(&[("version", crate::VERSION)], 1)],
        )?;
        o.counter(
            "memcached_process_user_cpu_seconds",
            "User CPU time of the process, in seconds.",
            s.cpu_user,
        )?;
        o.counter(
            "memcached_process_system_cpu_seconds",
            "System CPU time of the process, in seconds.",
            s.cpu_system,
        )?;
        o.counter(
            "memcached_read_bytes",
            "Bytes read from clients and peers.",
            c.bytes_read,
        )?;
        o.counter(
            "memcached_written_bytes",
            "Bytes written to clients and peers.",
            c.bytes_written,
        )?;
        o.gauge("memcached_current_connections", "Open connections.", s.curr_connections)?;
        o.gauge(
            "memcached_max_connections",
            "Connections allowed at once (-c).",
            s.max_connections as u64,
        )?;
        o.counter(
            "memcached_connections",
            "Connections accepted since start.",
            s.total_connections,
        )?;
        o.counter(
            "memcached_connections_rejected",
            "Connections refused because -c connections were open.",
            c.rejected_connections,
        )?;
        o.counter(
            "memcached_connections_yielded",
            "Times a connection yielded to others after a long batch of requests.",
            c.conn_yields,
        )?;
        o.counter(
            "memcached_connections_listener_disabled",
            "Times the listener was disabled at the connection limit (never: ringcache refuses instead).",
            0,
        )?;
        o.gauge(
            "memcached_accepting_connections",
            "Whether the server accepts connections.",
            1,
        )?;
        o.gauge(
            "memcached_current_bytes",
            "Bytes of the items stored (headers, keys, values).",
            st.bytes,
        )?;
        o.gauge(
            "memcached_limit_bytes",
            "The item memory budget (-m).",
            st.limit_maxbytes,
        )?;
        o.gauge(
            "memcached_malloced_bytes",
            "Bytes of store segments allocated.",
            st.allocated,
        )?;
        o.gauge("memcached_current_items", "Items stored now.", st.curr_items)?;
        o.counter("memcached_items", "Items stored since start.", st.total_items)?;
        o.counter(
            "memcached_items_evicted",
            "Live items evicted to make room for new ones.",
            st.evictions,
        )?;
        o.counter(
            "memcached_items_reclaimed",
            "Expired or flushed items whose memory was reused.",
            st.reclaimed,
        )?;
        o.counter(
            "memcached_item_too_large",
            "Stores refused because the item exceeded the item size limit (-I).",
            c.store_too_large,
        )?;
        o.counter(
            "memcached_item_no_memory",
            "Stores refused for lack of memory.",
            c.store_no_memory,
        )?;
        // As the exporter derives it: memcached counts cas commands in cmd_set too.
        let sets = c.cmd_set.saturating_sub(c.cas_hits + c.cas_misses + c.cas_badval);
        o.counters(
            "memcached_commands",
            "Commands by command and result.",
            &[
                (&[("command", "get"), ("status", "hit")], c.get_hits),
                (&[("command", "get"), ("status", "miss")], c.get_misses),
                (&[("command", "delete"), ("status", "hit")], c.delete_hits),
                (&[("command", "delete"), ("status", "miss")], c.delete_misses),
                (&[("command", "incr"), ("status", "hit")], c.incr_hits),
                (&[("command", "incr"), ("status", "miss")], c.incr_misses),
                (&[("command", "decr"), ("status", "hit")], c.decr_hits),
                (&[("command", "decr"), ("status", "miss")], c.decr_misses),
                (&[("command", "cas"), ("status", "hit")], c.cas_hits),
                (&[("command", "cas"), ("status", "miss")], c.cas_misses),
                (&[("command", "cas"), ("status", "badval")], c.cas_badval),
                (&[("command", "touch"), ("status", "hit")], c.touch_hits),
                (&[("command", "touch"), ("status", "miss")], c.touch_misses),
                (&[("command", "flush"), ("status", "hit")], c.cmd_flush),
                (&[("command", "set"), ("status", "hit")], sets),
            ],
        )?;

        // --- ringcache's own ---
        o.gauges(
            "ringcache_build_info",
            "The ringcache version running.",
            &[(&[("version", crate::RINGCACHE_VERSION)], 1)],
        )?;
        o.gauge(
            "ringcache_draining",
            "Whether the node is draining (on its way out; /readyz answers 503).",
            s.draining,
        )?;
        let Some(cl) = &s.cluster else {
            return Ok(());
        };
        o.gauges(
            "ringcache_cluster_members",
            "Members on this node's ring, itself included, by gossip state.",
            &[(&[("state", "alive")], cl.alive), (&[("state", "suspect")], cl.suspect)],
        )?;
        let version = cl.ring_version.to_string();
        o.gauges(
            "ringcache_ring_info",
            "This node's ring version (a hash of the member set: equal on nodes that agree).",
            &[(&[("version", &version)], 1)],
        )?;
        o.gauge(
            "ringcache_ring_share",
            "This node's share of the hash ring as primary (0 to 1).",
            cl.ring_share,
        )?;
        o.gauge(
            "ringcache_ring_replicas",
            "Owners per key (--replicas).",
            u64::from(cl.replicas),
        )?;
        o.gauge(
            "ringcache_cluster_joined",
            "Whether the node has met its cluster (0 while it refuses key commands as joining).",
            cl.joined,
        )?;
        o.gauge(
            "ringcache_quorum_members_up",
            "Members this node counts that are up on its side (it serves keys while this is more than half of ringcache_quorum_members_known).",
            cl.quorum_up,
        )?;
        o.gauge(
            "ringcache_gossip_awareness",
            "This node's local health score (Lifeguard: 0 is healthy; higher stretches its probe and suspicion timers).",
            cl.gossip_awareness,
        )?;
        o.gauge(
            "ringcache_quorum_members_known",
            "Members this node counts: those it has seen while its side held a majority, less those that left on purpose.",
            cl.quorum_known,
        )?;
        o.gauge(
            "ringcache_handoff_in_progress",
            "Whether the node is handing items to their new owners after a ring change.",
            cl.handoff_in_progress,
        )?;
        for (name, help, value) in &cl.counters {
            o.counter(name, help, *value)?;
        }

        // Per peer.
        let rows = |pick: fn(&ForwardSnapshot) -> u64| -> Vec<([(&'static str, &str); 1], u64)> {
            cl.forwards
                .iter()
                .map(|(peer, f)| ([("peer", peer.as_str())], pick(f)))
                .collect()
        };
        let errors = rows(|f| f.failed);
        let errors: Vec<(&Labels<'_>, u64)> = errors.iter().map(|(l, v)| (&l[..], *v)).collect();
        o.counters(
            "ringcache_forward_errors",
            "Forwarded requests whose owner could not be reached or broke the connection, by peer.",
            &errors,
        )?;
        let timeouts = rows(|f| f.timed_out);
        let timeouts: Vec<(&Labels<'_>, u64)> = timeouts.iter().map(|(l, v)| (&l[..], *v)).collect();
        o.counters(
            "ringcache_forward_timeouts",
            "Forwarded requests whose owner did not answer in time, by peer.",
            &timeouts,
        )?;
        let rtts: Vec<([(&'static str, &str); 1], f64)> = cl
            .forwards
            .iter()
            .filter_map(|(peer, f)| Some(([("peer", peer.as_str())], f.rtt_micros? as f64 / 1e6)))
            .collect();
        let mut m = o.0.encode_descriptor(
            "ringcache_peer_rtt_seconds",
            "The last round trip of a no-op to the peer over the peer connection, measured every 2 s (absent while it does not answer).",
            None,
            MetricType::Gauge,
        )?;
        for (labels, rtt) in &rtts {
            m.encode_family(labels)?.encode_gauge(rtt)?;
        }
        let mut m = o.0.encode_descriptor(
            "ringcache_forward_duration_seconds",
            "How long forwarded requests took, from sending to the owner's reply (or failure), by peer.",
            None,
            MetricType::Histogram,
        )?;
        for (peer, f) in &cl.forwards {
            let buckets: Vec<(f64, u64)> = BUCKETS_MICROS
                .iter()
                .map(|&le| le as f64 / 1e6)
                .chain([f64::INFINITY])
                .zip(f.buckets)
                .collect();
            m.encode_family(&[("peer", peer.as_str())])?
                .encode_histogram::<NoLabelSet>(f.sum_micros as f64 / 1e6, f.count(), &buckets, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use std::sync::Arc;

    use super::*;
    use crate::forward_stats::{ForwardStats, Outcome};

    fn cluster_snapshot() -> ClusterSnapshot {
        let forwards = ForwardStats::default();
        let p = forwards.peer("node-2");
        p.observe(Duration::from_micros(300), Outcome::Replied);
        p.observe(Duration::from_secs(2), Outcome::TimedOut);
        p.observe_rtt(Some(Duration::from_micros(250)));
        forwards
            .peer("node-3")
            .observe(Duration::from_micros(50), Outcome::Failed);
        // The last probe of node-3 got no answer: no RTT sample.
        forwards.peer("node-3").observe_rtt(None);
        ClusterSnapshot {
            alive: 2,
            suspect: 1,
            ring_version: u64::MAX - 1,
            ring_share: 0.25,
            replicas: 2,
            joined: true,
            handoff_in_progress: false,
            quorum_up: 2,
            quorum_known: 3,
            gossip_awareness: 0,
            counters: vec![("ringcache_fence_refusals", "help", 7)],
            forwards: forwards.snapshot(),
        }
    }

    /// The sample lines (`name{labels} value`) of a page.
    fn samples(page: &str) -> Vec<&str> {
        page.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn memcached_names_and_labels_are_the_exporters() {
        let mut s = Snapshot::default();
        s.counters.get_hits = 5;
        s.counters.get_misses = 2;
        s.counters.cmd_set = 10;
        s.counters.cas_hits = 1;
        s.counters.cas_badval = 1;
        s.counters.bytes_read = 123;
        s.store.curr_items = 3;
        s.store.limit_maxbytes = 64 << 20;
        s.store.evictions = 4;
        s.curr_connections = 9;
        let page = render(s);
        let lines = samples(&page);
        for want in [
            "memcached_up 1",
            "memcached_current_items 3",
            "memcached_limit_bytes 67108864",
            "memcached_items_evicted_total 4",
            "memcached_current_connections 9",
            "memcached_read_bytes_total 123",
            "memcached_written_bytes_total 0",
            "memcached_current_bytes 0",
            "memcached_commands_total{command=\"get\",status=\"hit\"} 5",
            "memcached_commands_total{command=\"get\",status=\"miss\"} 2",
            "memcached_commands_total{command=\"cas\",status=\"badval\"} 1",
            // cmd_set counts cas commands too; the exporter takes them out.
            "memcached_commands_total{command=\"set\",status=\"hit\"} 8",
            "memcached_version{version=\"1.6.18\"} 1",
        ] {
            assert!(lines.contains(&want), "{want} missing from\n{page}");
        }
        assert!(page.contains("# TYPE memcached_commands_total counter\n"));
        assert!(page.contains("# TYPE memcached_current_items gauge\n"));
        assert!(page.contains("# TYPE memcached_uptime_seconds gauge\n"));
        // Without a cluster, no ringcache_* cluster families.
        assert!(!page.contains("ringcache_ring_info"));
        assert!(!page.contains("# EOF"), "0.0.4 text, not OpenMetrics");
    }

    #[test]
    fn cluster_families_with_per_peer_histograms() {
        let s = Snapshot {
            cluster: Some(cluster_snapshot()),
            draining: true,
            ..Snapshot::default()
        };
        let page = render(s);
        let lines = samples(&page);
        assert!(!page.contains("ringcache_peer_rtt_seconds{peer=\"node-3\"}"), "{page}");
        for want in [
            "ringcache_peer_rtt_seconds{peer=\"node-2\"} 0.00025",
            "ringcache_draining 1",
            "ringcache_cluster_members{state=\"alive\"} 2",
            "ringcache_cluster_members{state=\"suspect\"} 1",
            // The version as a label, every digit kept.
            "ringcache_ring_info{version=\"18446744073709551614\"} 1",
            "ringcache_ring_share 0.25",
            "ringcache_ring_replicas 2",
            "ringcache_cluster_joined 1",
            "ringcache_quorum_members_up 2",
            "ringcache_quorum_members_known 3",
            "ringcache_handoff_in_progress 0",
            "ringcache_fence_refusals_total 7",
            "ringcache_forward_errors_total{peer=\"node-2\"} 0",
            "ringcache_forward_errors_total{peer=\"node-3\"} 1",
            "ringcache_forward_timeouts_total{peer=\"node-2\"} 1",
            // Cumulative buckets: 300 µs is above 250 µs and within 500 µs.
            "ringcache_forward_duration_seconds_bucket{peer=\"node-2\",le=\"0.00025\"} 0",
            "ringcache_forward_duration_seconds_bucket{peer=\"node-2\",le=\"0.0005\"} 1",
            "ringcache_forward_duration_seconds_bucket{peer=\"node-2\",le=\"1\"} 1",
            "ringcache_forward_duration_seconds_bucket{peer=\"node-2\",le=\"2.5\"} 2",
            "ringcache_forward_duration_seconds_bucket{peer=\"node-2\",le=\"+Inf\"} 2",
            "ringcache_forward_duration_seconds_count{peer=\"node-2\"} 2",
            "ringcache_forward_duration_seconds_sum{peer=\"node-2\"} 2.0003",
            "ringcache_forward_duration_seconds_bucket{peer=\"node-3\",le=\"0.0001\"} 1",
        ] {
            assert!(lines.contains(&want), "{want} missing from\n{page}");
        }
        assert!(page.contains("# TYPE ringcache_forward_duration_seconds histogram\n"));
        // One HELP and one TYPE per family.
        assert_eq!(page.matches("# TYPE ringcache_forward_duration_seconds ").count(), 1);
    }

    #[test]
    fn a_local_node_reads_its_counters() {
        let config = <crate::config::Config as clap::Parser>::parse_from(["ringcache", "-m", "8"]);
        let node = Arc::new(crate::server::build_local_node(&config));
        node.stats.totals.cmd_get.fetch_add(3, Relaxed);
        node.stats.totals.get_hits.fetch_add(2, Relaxed);
        node.set_draining();
        let page = render_node(&node);
        let lines = samples(&page);
        assert!(lines.contains(&"memcached_commands_total{command=\"get\",status=\"hit\"} 2"));
        assert!(lines.contains(&"memcached_limit_bytes 8388608"));
        assert!(lines.contains(&"memcached_max_connections 1024"));
        assert!(lines.contains(&"ringcache_draining 1"));
    }
}
