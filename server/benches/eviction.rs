//! Hit ratios of the eviction policies on Zipf read-through workloads.
//!
//! Every policy gets the same byte budget, so each pays for its own per-item state
//! (S3-FIFO's ghost, for one) in items that fit. The key space is ten times what
//! fits; each request is a `get`, followed by a `set` on a miss. Seeded, so reruns
//! print the same table.
//!
//! Run: `cargo bench -p ringcache-server --bench eviction` (optionally followed by
//! `-- REQUESTS` to change the trace length).

use ringcache_server::storage::{Item, PolicyKind, Store, StoreConfig, DEFAULT_POLICY};

#[path = "../src/storage/workload.rs"]
mod workload;

use workload::{hit_ratio, Workload};

const BUDGET: usize = 8 << 20;
const SHARDS: usize = 16;
const VALUE_LEN: usize = 100;
const SEED: u64 = 0x5eed;

fn main() {
    let requests = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(4_000_000);
    let config = StoreConfig {
        memory_limit: BUDGET,
        shards: SHARDS,
        max_item_size: 1 << 20,
    };
    println!(
        "Zipf read-through, {} MiB budget, {SHARDS} shards, {VALUE_LEN}-byte values, {requests} requests, seed {SEED:#x}",
        BUDGET >> 20
    );
    println!(
        "{:<8} {:>6} {:>9} {:>10} {:>9}",
        "policy", "alpha", "keys", "item cost", "hit ratio"
    );
    // The same key space for every policy: ten times what fits at LRU's item cost
    // ("key:" plus about six digits).
    let keys = BUDGET / Store::with_policy(config, PolicyKind::Clock).item_cost(10, VALUE_LEN) * 10;
    for alpha in [0.99, 0.8] {
        for policy in PolicyKind::ALL {
            let store = Store::with_policy(config, policy);
            let cost = store.item_cost(10, VALUE_LEN);
            let w = Workload {
                keys,
                alpha,
                requests,
                value_len: VALUE_LEN,
                seed: SEED,
            };
            let ratio = hit_ratio(&store, &w);
            let mark = if policy == DEFAULT_POLICY { " (default)" } else { "" };
            println!(
                "{:<8} {alpha:>6} {:>9} {cost:>10} {ratio:>9.4}{mark}",
                policy.name(),
                w.keys
            );
            assert!(store.stats().bytes <= BUDGET as u64);
        }
    }
}
