//! Request parser micro-benchmarks: `cargo bench -p ringcache-protocol --bench parse`.
//!
//! What a connection pays to turn buffered bytes into requests: each case parses a
//! pipeline of 64 identical requests from one buffer (as a connection does after a
//! read), so per-request cost is the time divided by 64. The buffer copy that sets up
//! each iteration is excluded (`iter_batched`).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_main, BatchSize, Criterion, Throughput};
use ringcache_protocol::text::{parse_request, Limits};

const PIPELINE: usize = 64;

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let value = vec![b'v'; 100];
    let mut set = b"set user:12345:profile 0 3600 100\r\n".to_vec();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    let mut ms = b"ms user:12345:profile 100 T3600 F5\r\n".to_vec();
    ms.extend_from_slice(&value);
    ms.extend_from_slice(b"\r\n");
    let multi: String = (0..10).map(|i| format!(" user:{i}:profile")).collect();
    vec![
        ("get", b"get user:12345:profile\r\n".to_vec()),
        ("set_100b", set),
        ("get_10_keys", format!("get{multi}\r\n").into_bytes()),
        ("mg_v_f_t_c", b"mg user:12345:profile v f t c O123\r\n".to_vec()),
        ("ms_100b", ms),
        ("incr", b"incr counter:1 5\r\n".to_vec()),
    ]
}

fn parse(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("parse_request");
    group.throughput(Throughput::Elements(PIPELINE as u64));
    for (name, one) in cases() {
        let pipeline: Vec<u8> = one.repeat(PIPELINE);
        group.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&pipeline[..]),
                |mut buf| {
                    let mut n = 0;
                    while let Ok(Some(req)) = parse_request(&mut buf, &limits) {
                        black_box(&req);
                        n += 1;
                    }
                    assert_eq!(n, PIPELINE);
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

// criterion_group! makes a `pub fn` it gives no doc; in a private module it is not
// exported, so `missing_docs` does not ask for one.
mod group {
    criterion::criterion_group!(benches, super::parse);
}
criterion_main!(group::benches);
