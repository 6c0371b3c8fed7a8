//! Hit ratios of the eviction policies and of S3-FIFO's variants on read-through
//! workloads: Zipf 0.8, 0.99 and 1.2, and a scan-heavy mix (Zipf 0.99 with a third of
//! the requests the steps of a sequential scan; `workload.rs`).
//!
//! Every store gets the same `-m`. The key space is ten times what fits; each request
//! is a `get`, followed by a `set` on a miss. Seeded, so reruns print the same table.
//!
//! Run: `cargo bench -p ringcache-server --bench eviction` (optionally followed by
//! `-- REQUESTS` to change the trace length).

use ringcache_server::storage::{Item, PolicyKind, S3Tuning, Store, StoreConfig};

#[path = "../src/storage/workload.rs"]
mod workload;

use workload::{hit_ratio, Workload};

const BUDGET: usize = 8 << 20;
const SHARDS: usize = 16;
const VALUE_LEN: usize = 100;
const SEED: u64 = 0x5eed;

/// The variants measured: a name, and the tuning (`None` for CLOCK).
fn variants() -> Vec<(String, Option<S3Tuning>)> {
    let d = S3Tuning::DEFAULT;
    let mut v = vec![("s3fifo (default)".to_string(), Some(d)), ("clock".to_string(), None)];
    for small_percent in [10, 20, 30] {
        v.push((format!("small {small_percent}%"), Some(S3Tuning { small_percent, ..d })));
    }
    for max_freq in [1, 2] {
        v.push((format!("max freq {max_freq}"), Some(S3Tuning { max_freq, ..d })));
    }
    v.push(("promote at 2".to_string(), Some(S3Tuning { promote_at: 2, ..d })));
    v.push((
        "no ghost admission".to_string(),
        Some(S3Tuning {
            ghost_admit: false,
            ..d
        }),
    ));
    for ghost_factor in [2, 4] {
        v.push((format!("ghost {ghost_factor}x"), Some(S3Tuning { ghost_factor, ..d })));
    }
    v.push(("size-blind".to_string(), Some(S3Tuning { size_aware_pct: 0, ..d })));
    for unread_keep_max_pct in [0, 50, 100] {
        v.push((
            format!("unread kept <= {unread_keep_max_pct}%"),
            Some(S3Tuning {
                unread_keep_max_pct,
                ..d
            }),
        ));
    }
    for size_aware_pct in [50, 200] {
        v.push((
            format!("size-aware {size_aware_pct}%"),
            Some(S3Tuning { size_aware_pct, ..d }),
        ));
    }
    v
}

fn main() {
    let requests = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(4_000_000);
    let filter = std::env::var("EVICTION_VARIANTS").ok();
    let config = StoreConfig {
        memory_limit: BUDGET,
        shards: SHARDS,
        max_item_size: 1 << 20,
    };
    // The same key space for every store: ten times what fits at the least item cost
    // ("key:" plus about six digits).
    let keys = BUDGET / Store::new(config).item_cost(10, VALUE_LEN) * 10;
    println!(
        "read-through, {} MiB budget, {SHARDS} shards, {VALUE_LEN}-byte values, {keys} keys, {requests} requests, seed {SEED:#x}",
        BUDGET >> 20
    );
    let workloads = [
        ("zipf 0.8", 0.8, 0.0),
        ("zipf 0.99", 0.99, 0.0),
        ("zipf 1.2", 1.2, 0.0),
        ("scan mix", 0.99, 0.33),
    ];
    if std::env::var_os("EVICTION_MIXED_ONLY").is_some() {
        mixed(requests / 10, filter.as_deref());
        return;
    }
    print!("| {:<20} |", "variant");
    for (name, ..) in workloads {
        print!(" {name:>9} |");
    }
    println!(" {:>9} |", "index+ghost B/item");
    for (name, tuning) in variants() {
        if filter
            .as_deref()
            .is_some_and(|f| !f.split(',').any(|x| name.starts_with(x)))
        {
            continue;
        }
        print!("| {name:<20} |");
        let mut overhead = 0.0;
        for (_, alpha, scan) in workloads {
            let store = store_for(config, tuning);
            let w = Workload {
                keys,
                alpha,
                requests,
                value_len: VALUE_LEN,
                seed: SEED,
                scan,
                value_max: None,
            };
            let ratio = hit_ratio(&store, &w);
            let st = store.stats();
            assert!(st.allocated <= BUDGET as u64);
            if alpha == 0.99 && scan == 0.0 {
                overhead = st.index_bytes as f64 / st.curr_items.max(1) as f64;
            }
            print!(" {:>9.4} |", 1.0 - ratio);
            use std::io::Write;
            let _ = std::io::stdout().flush();
        }
        println!(" {overhead:>9.1} |");
    }
    println!("(miss ratios; lower is better)");
    mixed(requests / 10, filter.as_deref());
}

/// A store running `tuning` (`None`: CLOCK).
fn store_for(config: StoreConfig, tuning: Option<S3Tuning>) -> Store {
    match tuning {
        Some(t) => Store::with_s3_tuning(config, t),
        None => Store::with_policy(config, PolicyKind::Clock),
    }
}

/// `scripts/bench.sh`'s scenario 14 in process: values of 10 KiB to 512 KiB
/// (log-uniform, fixed per key), Zipf 0.99 over 2,000 keys, read-through, a 64 MiB
/// store in 8 shards (`ringcache -m 64 -t 1`). Prints the miss ratio and the items
/// held per MiB at the end.
fn mixed(requests: usize, filter: Option<&str>) {
    const MIB: usize = 1 << 20;
    let config = StoreConfig {
        memory_limit: 64 * MIB,
        shards: 8,
        max_item_size: MIB,
    };
    println!();
    println!("mixed sizes: read-through, 64 MiB budget, 8 shards, 10 KiB - 512 KiB values, 2000 keys, zipf 0.99, {requests} requests");
    println!("| {:<20} | {:>9} | {:>13} |", "variant", "miss", "items per MiB");
    for (name, tuning) in variants() {
        if filter.is_some_and(|f| !f.split(',').any(|x| name.starts_with(x))) {
            continue;
        }
        let store = store_for(config, tuning);
        let w = Workload {
            keys: 2000,
            alpha: 0.99,
            requests,
            value_len: 10 * 1024,
            seed: SEED,
            scan: 0.0,
            value_max: Some(512 * 1024),
        };
        let ratio = hit_ratio(&store, &w);
        let st = store.stats();
        println!(
            "| {name:<20} | {:>9.4} | {:>13.2} |",
            1.0 - ratio,
            st.curr_items as f64 * MIB as f64 / config.memory_limit as f64
        );
    }
}
