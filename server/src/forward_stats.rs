//! Per-peer counters of forwarded requests: how many this node sent each peer, how
//! long their replies took (a latency histogram), how many failed and how many timed
//! out. `router::placement::forward` records each forward once; `/metrics` reads them
//! (`ringcache_forward_duration_seconds{peer}` and friends).
//!
//! Recording is lock-free after a peer's first forward: a read lock and a lookup by
//! name, then two or three relaxed atomic adds (a bucket, the sum, and a failure
//! counter on failure). A forward waits a network round trip, so this is small next
//! to it. Peers are keyed by node name, which stays the same across restarts (a
//! StatefulSet's pod name), so a peer that comes back at a new address keeps its
//! series; a name that leaves the cluster keeps its last values.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds (100 µs to 2.5 s; a forward
/// waits at most `--peer-timeout-ms`, 1 s by default). Slower ones land in `+Inf`.
pub const BUCKETS_MICROS: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
];

/// How a forward ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The owner answered (whatever the answer).
    Replied,
    /// The owner could not be reached or the connection broke.
    Failed,
    /// The owner did not answer within the peer timeout.
    TimedOut,
}

/// One peer's counters.
#[derive(Debug, Default)]
pub struct PeerForwards {
    /// Forwards per latency bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS_MICROS.len() + 1],
    /// Sum of all latencies, in microseconds.
    sum_micros: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    /// The last round trip of a no-op (`mn`) to the peer, in microseconds plus one (0:
    /// none measured yet); see `Cluster::probe_peers`.
    rtt_micros_plus_one: AtomicU64,
}

impl PeerForwards {
    /// Records a round trip of a no-op to the peer (`None`: it did not answer).
    pub fn observe_rtt(&self, rtt: Option<Duration>) {
        let value = rtt.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX - 1) + 1);
        self.rtt_micros_plus_one.store(value, Relaxed);
    }

    /// Records one forward that took `elapsed` and ended as `outcome`.
    pub fn observe(&self, elapsed: Duration, outcome: Outcome) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_MICROS.partition_point(|&le| le < micros);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(micros, Relaxed);
        match outcome {
            Outcome::Replied => {}
            Outcome::Failed => {
                self.failed.fetch_add(1, Relaxed);
            }
            Outcome::TimedOut => {
                self.timed_out.fetch_add(1, Relaxed);
            }
        }
    }

    /// The counters as plain numbers.
    pub fn snapshot(&self) -> ForwardSnapshot {
        let mut buckets = [0; BUCKETS_MICROS.len() + 1];
        for (n, b) in buckets.iter_mut().zip(&self.buckets) {
            *n = b.load(Relaxed);
        }
        ForwardSnapshot {
            buckets,
            sum_micros: self.sum_micros.load(Relaxed),
            failed: self.failed.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
            rtt_micros: self.rtt_micros_plus_one.load(Relaxed).checked_sub(1),
        }
    }
}

/// One peer's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardSnapshot {
    /// Forwards per bucket of [`BUCKETS_MICROS`] (not cumulative), then `+Inf`.
    pub buckets: [u64; BUCKETS_MICROS.len() + 1],
    /// Sum of the forwards' round trips, in microseconds.
    pub sum_micros: u64,
    /// Forwards whose owner could not be reached or whose connection broke.
    pub failed: u64,
    /// Forwards that got no reply within the peer timeout.
    pub timed_out: u64,
    /// The last measured round trip to the peer, in microseconds (`None`: none yet, or
    /// the last probe got no answer).
    pub rtt_micros: Option<u64>,
}

impl ForwardSnapshot {
    /// How many forwards (the histogram's count: the buckets' sum, so the two agree
    /// however the counters moved while they were read).
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// Every peer's counters, by node name.
#[derive(Debug, Default)]
pub struct ForwardStats {
    peers: RwLock<HashMap<String, Arc<PeerForwards>>>,
}

impl ForwardStats {
    /// The counters of the peer named `name` (created on its first forward).
    pub fn peer(&self, name: &str) -> Arc<PeerForwards> {
        if let Some(p) = self.peers.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return p.clone();
        }
        let mut peers = self.peers.write().unwrap_or_else(|e| e.into_inner());
        peers.entry(name.to_string()).or_default().clone()
    }

    /// Every peer's counters, sorted by name.
    pub fn snapshot(&self) -> Vec<(String, ForwardSnapshot)> {
        let peers = self.peers.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = peers.iter().map(|(n, p)| (n.clone(), p.snapshot())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_forward_lands_in_the_first_bucket_that_holds_it() {
        let stats = ForwardStats::default();
        let p = stats.peer("node-2");
        p.observe(Duration::from_micros(100), Outcome::Replied); // le 100 µs
        p.observe(Duration::from_micros(101), Outcome::Replied); // le 250 µs
        p.observe(Duration::from_millis(3), Outcome::Failed); // le 5 ms
        p.observe(Duration::from_secs(9), Outcome::TimedOut); // +Inf
        let all = stats.snapshot();
        assert_eq!(all.len(), 1);
        let (name, s) = &all[0];
        assert_eq!(name, "node-2");
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[5], 1);
        assert_eq!(s.buckets[BUCKETS_MICROS.len()], 1);
        assert_eq!(s.count(), 4);
        assert_eq!(s.sum_micros, 100 + 101 + 3_000 + 9_000_000);
        assert_eq!((s.failed, s.timed_out), (1, 1));
    }

    #[test]
    fn peers_are_kept_apart_and_listed_by_name() {
        let stats = ForwardStats::default();
        stats.peer("b").observe(Duration::ZERO, Outcome::Replied);
        stats.peer("a").observe(Duration::ZERO, Outcome::Replied);
        stats.peer("b").observe(Duration::ZERO, Outcome::Replied);
        let all = stats.snapshot();
        let names: Vec<_> = all.iter().map(|(n, s)| (n.as_str(), s.count())).collect();
        assert_eq!(names, [("a", 1), ("b", 2)]);
    }
}
