//! Throughput of the ringcache client against one node, next to the `memcache` crate
//! (the common synchronous Rust memcached client) on the same workload in the same run.
//!
//! ```text
//! target/release/ringcache -p 11311 --gossip-addr 127.0.0.1:0 &
//! cargo run --release -p ringcache-bench --bin client_compare -- --addr 127.0.0.1:11311
//! ```
//!
//! Workload: `--keys` keys holding `--value-size`-byte values are written first; then
//! each client performs `--requests` gets of random keys (every one a hit, checked)
//! from `--concurrency` threads (`memcache`, one pooled connection per thread) or
//! tokio tasks (ringcache, `--connections` pipelined connections), and the same
//! number of keys again as batches of `--batch` keys (`gets` / `get_many`). Each
//! measurement runs `--rounds` times, alternating the clients; the median is shown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Parser;
use ringcache_client::Client;

#[derive(Parser, Debug, Clone)]
struct Args {
    /// The node (ringcache or memcached) to measure against.
    #[arg(long, default_value = "127.0.0.1:11211")]
    addr: String,
    /// Gets per measurement.
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    /// Threads (memcache crate) or tasks (ringcache client) issuing requests.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Pipelined connections the ringcache client opens to the node.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Keys per multi-get.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Repetitions of each measurement (median reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

fn key(i: usize) -> String {
    format!("cc:{i}")
}

/// A cheap deterministic key sequence per worker (xorshift).
fn keys_for(worker: usize, n: usize, keys: usize) -> Vec<usize> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (worker as u64 + 1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % keys as u64) as usize
        })
        .collect()
}

fn memcache_gets(args: &Args, mc: &memcache::Client, batch: usize) -> anyhow::Result<Duration> {
    let per = args.requests / args.concurrency;
    let start = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..args.concurrency)
            .map(|w| {
                let mc = mc.clone();
                let seq = keys_for(w, per, args.keys);
                s.spawn(move || -> anyhow::Result<()> {
                    if batch <= 1 {
                        for i in seq {
                            let v: Option<Vec<u8>> = mc.get(&key(i))?;
                            ensure!(
                                v.is_some_and(|v| v.len() == args.value_size),
                                "memcache: miss on {}",
                                key(i)
                            );
                        }
                    } else {
                        for chunk in seq.chunks(batch) {
                            let names: Vec<String> = chunk.iter().map(|&i| key(i)).collect();
                            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                            let got: std::collections::HashMap<String, Vec<u8>> = mc.gets(&refs)?;
                            ensure!(names.iter().all(|n| got.contains_key(n)), "memcache: batch miss");
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
        }
        Ok(())
    })?;
    Ok(start.elapsed())
}

async fn ringcache_gets(args: &Args, client: &Client, batch: usize) -> anyhow::Result<Duration> {
    let per = args.requests / args.concurrency;
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|w| {
            let client = client.clone();
            let seq = keys_for(w, per, args.keys);
            let size = args.value_size;
            tokio::spawn(async move {
                if batch <= 1 {
                    for i in seq {
                        let v = client.get(key(i)).await?;
                        ensure!(v.is_some_and(|v| v.len() == size), "ringcache: miss on {}", key(i));
                    }
                } else {
                    for chunk in seq.chunks(batch) {
                        let names: Vec<String> = chunk.iter().map(|&i| key(i)).collect();
                        let got = client.get_many(&names).await?;
                        ensure!(got.iter().all(Option::is_some), "ringcache: batch miss");
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.concurrency > 0 && args.rounds > 0 && args.keys > 0,
        "counts must be positive"
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let client = rt.block_on(async {
        // A ringcache node: learn it from `topology`; a plain memcached: a fixed list.
        match Client::builder()
            .seeds([&args.addr])
            .connections_per_node(args.connections)
            .build()
            .await
        {
            Ok(c) => Ok(c),
            Err(_) => {
                Client::builder()
                    .servers([&args.addr])
                    .connections_per_node(args.connections)
                    .build()
                    .await
            }
        }
    })?;
    let url = format!("memcache://{}?protocol=ascii&tcp_nodelay=true&timeout=5", args.addr);
    let mc = memcache::Client::with_pool_size(url.as_str(), args.concurrency as u32)
        .with_context(|| format!("memcache crate: {url}"))?;

    let value = vec![b'x'; args.value_size];
    rt.block_on(async {
        for i in 0..args.keys {
            client.set(key(i), value.clone(), Duration::ZERO).await?;
        }
        anyhow::Ok(())
    })?;
    // Warm both (connections, caches).
    let warm = Args {
        requests: args.requests / 10,
        ..args.clone()
    };
    memcache_gets(&warm, &mc, 1)?;
    rt.block_on(ringcache_gets(&warm, &client, 1))?;

    let args = Arc::new(args);
    println!(
        "{} gets of {}-byte values ({} keys) against {}, concurrency {}, ringcache connections {}, median of {} rounds",
        args.requests, args.value_size, args.keys, args.addr, args.concurrency, args.connections, args.rounds
    );
    println!("| workload | memcache 0.21 (sync) ops/s | ringcache-client ops/s | ratio |");
    println!("|---|---:|---:|---:|");
    for batch in [1, args.batch] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds {
            a.push(memcache_gets(&args, &mc, batch)?);
            b.push(rt.block_on(ringcache_gets(&args, &client, batch))?);
        }
        let done = (args.requests / args.concurrency * args.concurrency) as f64;
        let (a, b) = (done / median(a).as_secs_f64(), done / median(b).as_secs_f64());
        let name = if batch <= 1 {
            "get (one key)".to_string()
        } else {
            format!("multi-get ({batch} keys), keys/s")
        };
        println!("| {name} | {a:.0} | {b:.0} | {:.2}x |", b / a);
    }
    let s = client.stats();
    println!(
        "ringcache client: hits {} misses {} failovers {}",
        s.hits, s.misses, s.failovers
    );
    Ok(())
}
