//! A seeded Zipf read-through workload for measuring eviction policies.
//!
//! Shared by the hit-ratio unit test in `storage::tests` and by
//! `benches/eviction.rs`, which includes this file by path; it needs `Item` and
//! `Store` in its parent module and `rand` (a dev-dependency), so it is compiled
//! only for tests and benches.
//!
//! The trace: each request draws a key rank from a Zipf(alpha) distribution over
//! `keys` keys; a `get` that misses is followed by a `set` of the key (read-through,
//! as a cache in front of a database sees it). The hit ratio is hits / requests.
//!
//! A scan-heavy mix replaces a share (`scan`) of the requests with the steps of a
//! sequential scan: read-through of `scan:0`, `scan:1`, ... over as many keys as the
//! Zipf key space, round and round, so a scanned key comes back only after ten
//! cache-fulls of other scanned keys. A policy that admits every new key at the head
//! of one queue lets the scan flush its hot set.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Item, Store};

/// Zipf(alpha) over ranks `0..n` (rank 0 the most popular), sampled by inverting a
/// precomputed cumulative distribution.
pub(crate) struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub(crate) fn new(n: usize, alpha: f64) -> Zipf {
        let mut cdf: Vec<f64> = (1..=n.max(1))
            .scan(0.0, |sum, k| {
                *sum += 1.0 / (k as f64).powf(alpha);
                Some(*sum)
            })
            .collect();
        let total = cdf.last().copied().unwrap_or(1.0);
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    pub(crate) fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.gen();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// One read-through run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Workload {
    pub keys: usize,
    pub alpha: f64,
    pub requests: usize,
    pub value_len: usize,
    pub seed: u64,
    /// The share of requests that are scan steps (0 for a pure Zipf trace).
    pub scan: f64,
    /// Mixed sizes: key `rank`'s value is between `value_len` and this, log-uniform
    /// and fixed per key ([`value_len_between`]), as `ringcache-bench --value-max`
    /// draws them. `None`: every value is `value_len` bytes.
    pub value_max: Option<usize>,
}

/// The load generator's per-key sizes (`ringcache-bench --value-max`), so a trace here
/// and a `scripts/bench.sh` scenario give a key the same size.
#[path = "../../../bench/src/sizes.rs"]
mod sizes;
use sizes::value_len_between;

/// Replays `w` against `store` at a fixed clock and returns the hit ratio.
pub(crate) fn hit_ratio(store: &Store, w: &Workload) -> f64 {
    const NOW: u32 = 1_700_000_000;
    let zipf = Zipf::new(w.keys, w.alpha);
    let mut rng = StdRng::seed_from_u64(w.seed);
    let value = Bytes::from(vec![b'v'; w.value_max.unwrap_or(w.value_len).max(w.value_len)]);
    let mut key = Vec::with_capacity(32);
    let mut hits = 0usize;
    let mut scanned = 0usize;
    for _ in 0..w.requests {
        key.clear();
        let len = if w.scan > 0.0 && rng.gen::<f64>() < w.scan {
            key.extend_from_slice(b"scan:");
            key.extend_from_slice(itoa::Buffer::new().format(scanned).as_bytes());
            scanned = (scanned + 1) % w.keys.max(1);
            w.value_len
        } else {
            let rank = zipf.sample(&mut rng);
            key.extend_from_slice(b"key:");
            key.extend_from_slice(itoa::Buffer::new().format(rank).as_bytes());
            w.value_max
                .map_or(w.value_len, |max| value_len_between(w.value_len, max, rank as u64))
        };
        let hit = store.with(&key, NOW, |slot| {
            if slot.get().is_some() {
                return true;
            }
            // A refused set is a miss like any other.
            let _ = slot.insert(Item::new(value.slice(..len), 0, 0, store.next_cas(), NOW));
            false
        });
        hits += usize::from(hit);
    }
    hits as f64 / w.requests.max(1) as f64
}
