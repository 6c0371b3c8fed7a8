//! Store micro-benchmarks: `cargo bench -p ringcache-server --bench store`.
//!
//! One shard-locked operation each, as a request runs it: a `get` hit (the value
//! lent under the lock, as the server's hot path does), a miss, a `set` replacing an
//! existing item, and a `set` of a new key into a full store (which evicts). Keys are
//! drawn from 100,000 distinct ones in a fixed order; values are 100 bytes.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_main, Criterion, Throughput};
use ringcache_server::storage::{Item, Store, StoreConfig};

const KEYS: usize = 100_000;
const NOW: u32 = 1_700_000_000;

fn store(memory_limit: usize) -> Store {
    Store::new(StoreConfig {
        memory_limit,
        shards: 32,
        max_item_size: 1 << 20,
    })
}

fn keys(prefix: &str) -> Vec<Vec<u8>> {
    // A stride through the ids so consecutive operations hit unrelated shards and
    // table slots, as independent clients would.
    (0..KEYS)
        .map(|i| format!("{prefix}{}", (i * 7919) % KEYS).into_bytes())
        .collect()
}

fn set(s: &Store, key: &[u8], value: &Bytes) {
    let item = Item::new(value.clone(), 0, 0, s.next_cas(), NOW);
    s.with(key, NOW, |slot| slot.insert(item)).expect("fits");
}

fn ops(c: &mut Criterion) {
    let value = Bytes::from(vec![b'v'; 100]);
    let roomy = store(256 << 20);
    let present = keys("key:");
    for k in &present {
        set(&roomy, k, &value);
    }
    let absent = keys("nokey:");
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));

    let mut i = 0;
    group.bench_function("get_hit", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            roomy.with(black_box(&present[i]), NOW, |slot| slot.read(None, |v, _, _| v.len()))
        })
    });
    group.bench_function("get_miss", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            roomy.with(black_box(&absent[i]), NOW, |slot| slot.read(None, |v, _, _| v.len()))
        })
    });
    group.bench_function("set_replace", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            set(&roomy, black_box(&present[i]), &value)
        })
    });
    // 4 MiB holds about a quarter of the keys: every set of a new key evicts.
    let full = store(4 << 20);
    let mut n = 0u64;
    group.bench_function("set_evicting", |b| {
        b.iter(|| {
            n += 1;
            set(&full, format!("fresh:{n}").as_bytes(), &value)
        })
    });
    group.finish();
    assert!(full.stats().evictions > 0);
}

// criterion_group! makes a `pub fn` it gives no doc; in a private module it is not
// exported, so `missing_docs` does not ask for one.
mod group {
    criterion::criterion_group!(benches, super::ops);
}
criterion_main!(group::benches);
