//! The process stays within `-m` plus a bounded overhead under a hostile workload:
//! values of random sizes from 1 B to 512 KB, 250-byte keys, and floods of tiny items
//! (where per-item overhead, not value bytes, dominates), then large values again.
//! The measured numbers are in `docs/FUZZING.md`. The bound asserted is
//! `-m × 1.5 + 32 MiB` (128 MiB at `-m 64`), with room for run-to-run variation: the
//! peak measured 81 MiB (memcached: 77 MiB). The overhead beyond `-m` is connection
//! buffers, the runtime and allocator slack (the store's index and ghost are charged
//! to `-m`; see `server/src/storage/mod.rs`); large values are made of the same
//! segment-size buffers as small items, and pooled buffers freed for room give their
//! pages back, so alternating tiny items and large values does not stack one on the
//! other.
//!
//! Writes are pipelined with `noreply` (no replies to read, so the client never stalls
//! the server) and each phase ends with `mn`, whose `MN` proves everything before it
//! was processed. Every phase is bounded by a count and a time limit.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringcache_tests::{ReadEnd, ServerKind, ServerProcess};

const MIB: u64 = 1024 * 1024;
const LIMIT_MIB: u64 = 64;
/// No phase may take longer than this (debug builds on two shared cores).
const PHASE_TIME: Duration = Duration::from_secs(40);

/// `VmRSS` and `VmHWM` (peak) of a process, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).expect("field");
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .expect("value")
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// xorshift64*: a fixed, seeded stream of sizes and keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A 250-byte key unique to `i`.
fn long_key(i: u64) -> String {
    let head = format!("adv:{i}:");
    format!("{head}{}", "k".repeat(250 - head.len()))
}

/// Pipelines `noreply` sets produced by `next` (None ends the phase) in ~256 KiB
/// writes, then syncs with `mn`. Returns (items, bytes of values) sent.
fn phase(n: &ServerProcess, name: &str, mut next: impl FnMut(&mut Vec<u8>) -> Option<usize>) -> (u64, u64) {
    let started = Instant::now();
    let mut sock = TcpStream::connect(n.addr()).expect("connect");
    sock.set_write_timeout(Some(PHASE_TIME)).expect("timeout");
    let mut batch = Vec::with_capacity(1 << 20);
    let (mut items, mut bytes) = (0u64, 0u64);
    loop {
        let more = next(&mut batch);
        if let Some(len) = more {
            items += 1;
            bytes += len as u64;
        }
        if batch.len() >= 256 * 1024 || more.is_none() {
            sock.write_all(&batch).expect("write");
            batch.clear();
        }
        if more.is_none() {
            break;
        }
        assert!(started.elapsed() < PHASE_TIME, "phase {name} took over {PHASE_TIME:?}");
    }
    let mut conn = ringcache_tests::RawConn::connect(n.addr()).expect("connect");
    // `mn` on the same connection proves the pipeline was processed; a second
    // connection checks the node still answers.
    sock.write_all(b"mn\r\n").expect("write");
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    sock.set_read_timeout(Some(PHASE_TIME)).expect("timeout");
    while !reply.ends_with(b"MN\r\n") {
        let k = std::io::Read::read(&mut sock, &mut buf).expect("read");
        assert!(k > 0, "the server closed during phase {name}");
        reply.extend_from_slice(&buf[..k]);
    }
    assert_eq!(String::from_utf8_lossy(&reply), "MN\r\n", "replies during phase {name}");
    let mut out = Vec::new();
    conn.send(b"version\r\n").expect("send");
    assert_eq!(conn.read_until_suffix(&mut out, b"\r\n", PHASE_TIME), ReadEnd::Done);
    (items, bytes)
}

fn set_noreply(batch: &mut Vec<u8>, key: &str, value: &[u8]) {
    batch.extend_from_slice(format!("set {key} 0 0 {} noreply\r\n", value.len()).as_bytes());
    batch.extend_from_slice(value);
    batch.extend_from_slice(b"\r\n");
}

#[test]
fn rss_stays_within_the_memory_limit_plus_a_bounded_overhead() {
    let n = ServerProcess::start(
        ServerKind::target(),
        &["-m", &LIMIT_MIB.to_string(), "-I", "1m", "-t", "2"],
    );
    let pid = n.pid().expect("pid");
    let limit = LIMIT_MIB * MIB;
    let bound = limit * 3 / 2 + 32 * MIB;
    let (idle, _) = memory(pid);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let data: Vec<u8> = (0..512 * 1024).map(|i| b'a' + (i % 23) as u8).collect();
    let mut report = vec![format!(
        "{}: -m {LIMIT_MIB}: idle RSS {:.1} MiB",
        n.kind().name(),
        idle as f64 / MIB as f64
    )];
    let check = |name: &str, sent: (u64, u64), report: &mut Vec<String>| {
        let (now, peak) = memory(pid);
        report.push(format!(
            "after {name}: {} items, {:.0} MB of values; RSS {:.1} MiB, peak {:.1} MiB (peak - limit = {:+.1} MiB)",
            sent.0,
            sent.1 as f64 / 1e6,
            now as f64 / MIB as f64,
            peak as f64 / MIB as f64,
            (peak as f64 - limit as f64) / MIB as f64
        ));
        assert!(
            peak <= bound,
            "peak RSS {} MiB passed the bound {} MiB after {name}\n{}",
            peak / MIB,
            bound / MIB,
            report.join("\n")
        );
    };

    // 1. Values of 1 B to 512 KB (half uniform, half log-uniform, so small ones are
    //    common too), half of them under 250-byte keys: 3 × -m of values in total.
    let mut i = 0u64;
    let mut random_sizes = |rng: &mut Rng| {
        let mut total = 0u64;
        phase(&n, "random sizes", |batch| {
            if total >= 3 * limit {
                return None;
            }
            i += 1;
            let size = if rng.below(2) == 0 {
                1 + rng.below(512 * 1024)
            } else {
                1u64 << rng.below(20)
            } as usize;
            total += size as u64;
            let key = if i & 1 == 0 { long_key(i) } else { format!("r:{i}") };
            set_noreply(batch, &key, &data[..size]);
            Some(size)
        })
    };
    let sent = random_sizes(&mut rng);
    check("random sizes 1 B - 512 KB", sent, &mut report);

    // 2. 250-byte keys with 1-10 byte values: the key dominates each item.
    let mut i = 0u64;
    let sent = phase(&n, "250-byte keys", |batch| {
        i += 1;
        if i > 300_000 {
            return None;
        }
        let size = 1 + rng.below(10) as usize;
        set_noreply(batch, &long_key(i), &data[..size]);
        Some(size)
    });
    check("300k items with 250-byte keys", sent, &mut report);

    // 3. Many tiny items: short keys, 1-byte values; per-item overhead dominates.
    let mut i = 0u64;
    let sent = phase(&n, "tiny items", |batch| {
        i += 1;
        if i > 800_000 {
            return None;
        }
        set_noreply(batch, &format!("t:{i}"), b"x");
        Some(1)
    });
    check("800k tiny items", sent, &mut report);

    // 4. Large values again, into a store whose arrays the tiny items grew.
    let sent = random_sizes(&mut rng);
    check("random sizes again", sent, &mut report);

    // The store still works.
    let out = n
        .connect()
        .request(b"set marker 0 0 1\r\nm\r\nget marker\r\n", b"END\r\n");
    assert_eq!(out, b"STORED\r\nVALUE marker 0 1\r\nm\r\nEND\r\n");
    println!("{}", report.join("\n"));
}
