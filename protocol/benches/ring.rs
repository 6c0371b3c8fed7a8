//! Ring lookup micro-benchmarks: `cargo bench -p ringcache-protocol --bench ring`.
//!
//! What a request pays for placement: one xxh3-64 of the key, a binary search over
//! `nodes × 160` points, and a clockwise walk to R distinct owners. Also the cost of
//! rebuilding the ring, which happens on every membership change.

use std::hint::black_box;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use ringcache_protocol::ring::{key_hash, NodeIdx, Ring, RingConfig, DEFAULT_VNODES};

/// 1024 distinct keys shaped like typical cache keys.
fn keys() -> Vec<Vec<u8>> {
    (0..1024).map(|i| format!("user:{i}:profile").into_bytes()).collect()
}

fn ring(nodes: usize, replicas: u32) -> Ring<String> {
    let names = (1..=nodes).map(|i| format!("node-{i}"));
    Ring::new(
        names,
        RingConfig {
            vnodes: DEFAULT_VNODES,
            replicas,
        },
        1,
    )
    .expect("valid ring")
}

fn lookups(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("ring_lookup");
    group.throughput(Throughput::Elements(keys.len() as u64));
    for &(nodes, replicas) in &[(3usize, 1u32), (10, 1), (10, 3), (100, 1), (100, 3)] {
        let r = ring(nodes, replicas);
        let id = format!("{nodes}n_r{replicas}");
        group.bench_function(BenchmarkId::new("owners_into", &id), |b| {
            let mut out = [NodeIdx::default(); 8];
            b.iter(|| {
                let mut sum = 0usize;
                for k in &keys {
                    sum += r.owners_into(black_box(k), &mut out);
                }
                sum
            })
        });
        if replicas == 1 {
            group.bench_function(BenchmarkId::new("primary", &id), |b| {
                b.iter(|| {
                    keys.iter()
                        .filter_map(|k| r.primary(black_box(k)))
                        .map(NodeIdx::get)
                        .sum::<usize>()
                })
            });
        }
    }
    group.bench_function("key_hash_only", |b| {
        b.iter(|| keys.iter().map(|k| key_hash(black_box(k))).sum::<u64>())
    });
    group.finish();
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_build");
    for &nodes in &[10usize, 100] {
        let names: Vec<String> = (1..=nodes).map(|i| format!("node-{i}")).collect();
        group.bench_function(BenchmarkId::from_parameter(nodes), |b| {
            b.iter(|| Ring::new(names.iter().map(String::as_str), RingConfig::default(), 1).map(|r| r.len()))
        });
    }
    group.finish();
}

// criterion_group! makes a `pub fn` it gives no doc; in a private module it is not
// exported, so `missing_docs` does not ask for one.
mod group {
    criterion::criterion_group!(benches, super::lookups, super::build);
}
criterion_main!(group::benches);
