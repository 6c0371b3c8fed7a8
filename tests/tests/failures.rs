//! Failures under load: nodes of a 3-node, R=2 cluster are SIGKILLed and restarted,
//! one at a time, while clients read and write through every node. A checker records
//! every write and verifies every read:
//!
//! - no read returns a value that was never written;
//! - no read returns a value that had expired before the read began;
//! - no read returns a value older than one whose write was acknowledged before the
//!   read began (a stale value): not while membership is stable, and not while it
//!   changes either (nodes adopt a new ring one after another; a restarted node comes
//!   back empty and must not serve before it has joined);
//! - after the cluster settles, every key returns its last acknowledged value or a
//!   later one that was attempted: with at most one node down at a time, no
//!   acknowledged write is lost.
//!
//! Misses are allowed (a cache may forget), and so are errors while a node is down
//! (a write whose owner is unreachable is refused, not acknowledged). Every loop is
//! bounded in count and time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringcache_tests::cluster::{parse_values, TestCluster};
use ringcache_tests::{RawConn, ReadEnd, Signal};

static T0: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

const WRITERS: usize = 4;
const KEYS_PER_WRITER: usize = 50;
const KILLS: usize = 4;

/// What one key has seen: each write attempt's sequence number, whether it was
/// acknowledged, when, and its expiry.
#[derive(Default, Clone)]
struct History {
    /// (seq, acknowledged at, expires at) of acknowledged writes, in order.
    acked: Vec<(u64, Instant, Option<Instant>)>,
    /// Highest sequence number attempted (acknowledged or not).
    attempted: u64,
    /// The highest attempted sequence number that was written with a TTL.
    last_with_ttl: u64,
}

#[derive(Default)]
struct Tally {
    /// Stale reads, each described with the node that served it and when it began.
    stale: Mutex<Vec<String>>,
    ops: AtomicU64,
    reads: AtomicU64,
    hits: AtomicU64,
    acked: AtomicU64,
    refused: AtomicU64,
    /// Refused writes by reply (`no answer` when the node could not be reached).
    refusals: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Requests a live node answered with `SERVER_ERROR` (reads and writes): the
    /// errors a client sees although the node it asked is up.
    server_errors: AtomicU64,
    violations: Mutex<Vec<String>>,
}

/// One request with bounded waits; `None` on any failure (the connection is dropped).
fn exchange(conn: &mut Option<RawConn>, addr: SocketAddr, req: &[u8], done: fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    if conn.is_none() {
        *conn = RawConn::connect(addr).ok();
    }
    let c = conn.as_mut()?;
    if c.send(req).is_err() {
        *conn = None;
        return None;
    }
    let mut out = Vec::new();
    if c.read_until(&mut out, Duration::from_secs(3), done) != ReadEnd::Done {
        *conn = None;
        return None;
    }
    Some(out)
}

fn line_done(b: &[u8]) -> bool {
    b.ends_with(b"\r\n")
}

fn get_done(b: &[u8]) -> bool {
    b.ends_with(b"END\r\n") || b.starts_with(b"SERVER_ERROR") || b.starts_with(b"CLIENT_ERROR")
}

fn key(w: usize, k: usize) -> String {
    format!("soak:{w}:{k}")
}

#[allow(clippy::too_many_arguments)]
fn writer(
    w: usize,
    addrs: Vec<SocketAddr>,
    histories: Arc<Vec<Mutex<History>>>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(0x5eed + w as u64);
    let mut conns: Vec<Option<RawConn>> = addrs.iter().map(|_| None).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Relaxed) && Instant::now() < deadline {
        let k = rng.gen_range(0..KEYS_PER_WRITER);
        let n = rng.gen_range(0..addrs.len());
        let slot = w * KEYS_PER_WRITER + k;
        tally.ops.fetch_add(1, Relaxed);
        if rng.gen_bool(0.5) {
            let seq = {
                let mut h = histories[slot].lock().unwrap();
                h.attempted += 1;
                h.attempted
            };
            // One write in ten expires after 2 seconds.
            let ttl = if rng.gen_bool(0.1) { 2 } else { 0 };
            if ttl > 0 {
                histories[slot].lock().unwrap().last_with_ttl = seq;
            }
            let value = format!("{seq}");
            let req = format!("set {} 0 {ttl} {}\r\n{value}\r\n", key(w, k), value.len());
            let sent_at = Instant::now();
            match exchange(&mut conns[n], addrs[n], req.as_bytes(), line_done) {
                Some(r) if r == b"STORED\r\n" => {
                    let expires = (ttl > 0).then(|| sent_at + Duration::from_secs(ttl));
                    histories[slot]
                        .lock()
                        .unwrap()
                        .acked
                        .push((seq, Instant::now(), expires));
                    tally.acked.fetch_add(1, Relaxed);
                }
                other => {
                    tally.refused.fetch_add(1, Relaxed);
                    if other.as_ref().is_some_and(|r| r.starts_with(b"SERVER_ERROR")) {
                        tally.server_errors.fetch_add(1, Relaxed);
                    }
                    let why = match &other {
                        Some(r) => String::from_utf8_lossy(r).trim_end().to_string(),
                        None => "no answer".to_string(),
                    };
                    *tally.refusals.lock().unwrap().entry(why).or_default() += 1;
                }
            }
        } else {
            let began = Instant::now();
            let before = histories[slot].lock().unwrap().clone();
            let req = format!("get {}\r\n", key(w, k));
            let Some(reply) = exchange(&mut conns[n], addrs[n], req.as_bytes(), get_done) else {
                continue;
            };
            tally.reads.fetch_add(1, Relaxed);
            if reply.starts_with(b"SERVER_ERROR") {
                tally.server_errors.fetch_add(1, Relaxed);
                continue;
            }
            let Some(values) = parse_values(&reply) else {
                record(&tally, format!("malformed reply {:?}", String::from_utf8_lossy(&reply)));
                continue;
            };
            let Some((_, v)) = values.first() else { continue };
            tally.hits.fetch_add(1, Relaxed);
            let after = histories[slot].lock().unwrap().attempted;
            let Ok(seq) = v.parse::<u64>() else {
                record(&tally, format!("{}: never-written value {v:?}", key(w, k)));
                continue;
            };
            if seq == 0 || seq > after {
                record(&tally, format!("{}: value {seq} was never written", key(w, k)));
            }
            // The newest write acknowledged before the read began.
            if let Some(&(last, _, _)) = before.acked.iter().rev().find(|(_, at, _)| *at <= began) {
                if seq < last {
                    let what = format!(
                        "{}: stale value {seq} through n{} at {:?}, {last} was acknowledged first",
                        key(w, k),
                        n + 1,
                        began.duration_since(*T0),
                    );
                    tally.stale.lock().unwrap().push(what);
                }
            }
            // A value whose expiry passed before the read began (1 s of clock slack).
            if let Some(&(_, _, Some(exp))) = before.acked.iter().find(|(s, _, _)| *s == seq) {
                if exp + Duration::from_millis(1500) < began {
                    record(&tally, format!("{}: value {seq} had expired", key(w, k)));
                }
            }
        }
    }
}

fn record(tally: &Tally, what: String) {
    let mut v = tally.violations.lock().unwrap();
    if v.len() < 50 {
        v.push(what);
    }
}

#[test]
fn kills_and_restarts_under_load_lose_nothing_acknowledged() {
    let _ = *T0;
    let mut c = TestCluster::start(3, 2, &[]);
    let addrs: Vec<SocketAddr> = c.nodes.iter().map(|n| n.process.addr()).collect();
    let histories: Arc<Vec<Mutex<History>>> = Arc::new(
        (0..WRITERS * KEYS_PER_WRITER)
            .map(|_| Mutex::new(History::default()))
            .collect(),
    );
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (addrs, histories, tally, stop) = (addrs.clone(), histories.clone(), tally.clone(), stop.clone());
            std::thread::spawn(move || writer(w, addrs, histories, tally, stop))
        })
        .collect();

    let mut rng = StdRng::seed_from_u64(7);
    std::thread::sleep(Duration::from_secs(1));
    for round in 0..KILLS {
        let victim = rng.gen_range(0..3);
        let killed_at = Instant::now();
        c.nodes[victim].process.signal(Signal::Kill);
        std::thread::sleep(Duration::from_millis(2500));
        c.restart(victim);
        let took = c.wait_converged(Duration::from_secs(15));
        println!(
            "round {round}: killed n{} at {:?}, restarted, back on every ring after {took:?} (at {:?})",
            victim + 1,
            killed_at.duration_since(*T0),
            T0.elapsed()
        );
        // Let the hand-off finish before the next node goes down.
        std::thread::sleep(Duration::from_millis(1500));
    }
    stop.store(true, Relaxed);
    for t in threads {
        t.join().expect("writer thread");
    }

    // Settled: every node takes writes again (nothing is left refusing)...
    for (i, addr) in addrs.iter().enumerate() {
        let stored = ringcache_tests::poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
            let mut conn = None;
            exchange(&mut conn, *addr, b"set soak:settled 0 0 1\r\nx\r\n", line_done).as_deref() == Some(b"STORED\r\n")
        });
        assert!(stored, "n{} does not take writes after the cluster settled", i + 1);
    }
    // ...and every key returns its last acknowledged value or a later attempt.
    let mut lost = Vec::new();
    for w in 0..WRITERS {
        for k in 0..KEYS_PER_WRITER {
            let h = histories[w * KEYS_PER_WRITER + k].lock().unwrap().clone();
            let Some(&(last, _, exp)) = h.acked.last() else {
                continue;
            };
            // A write with a TTL at or after the last acknowledged one may have been
            // applied and expired since: then a miss is right.
            if exp.is_some() || h.last_with_ttl >= last {
                continue;
            }
            for (i, addr) in addrs.iter().enumerate() {
                let mut conn = None;
                let reply = exchange(&mut conn, *addr, format!("get {}\r\n", key(w, k)).as_bytes(), get_done);
                let got = reply
                    .as_deref()
                    .and_then(parse_values)
                    .and_then(|v| v.first().and_then(|(_, v)| v.parse::<u64>().ok()));
                if got.is_none_or(|g| g < last || g > h.attempted) {
                    lost.push(format!(
                        "{} through n{}: {got:?}, last acknowledged {last}",
                        key(w, k),
                        i + 1
                    ));
                }
            }
        }
    }
    let violations = tally.violations.lock().unwrap().clone();
    let stale = tally.stale.lock().unwrap().clone();
    println!(
        "stale reads: {} of {} reads (kills and restarts included)",
        stale.len(),
        tally.reads.load(Relaxed)
    );
    for w in stale.iter().take(20) {
        println!("  {w}");
    }
    println!("refused writes by reply: {:?}", tally.refusals.lock().unwrap());
    println!(
        "operations {}, reads {} ({} hits), acknowledged writes {}, refused {}, kills {KILLS}, violations {}, lost {}",
        tally.ops.load(Relaxed),
        tally.reads.load(Relaxed),
        tally.hits.load(Relaxed),
        tally.acked.load(Relaxed),
        tally.refused.load(Relaxed),
        violations.len(),
        lost.len()
    );
    // The error budget (issue: one fault at a time with --replicas 2, client-visible
    // errors <= 0.1% of requests): a node that is up answers, whatever its peers do.
    // (Requests sent to the node that was just killed are not its answers.)
    let server_errors = tally.server_errors.load(Relaxed);
    let ops = tally.ops.load(Relaxed);
    println!("SERVER_ERROR answers from live nodes: {server_errors} of {ops} requests");
    assert!(
        server_errors * 1000 <= ops,
        "{server_errors} SERVER_ERROR answers in {ops} requests: over 0.1% ({:?})",
        tally.refusals.lock().unwrap()
    );
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(
        stale.is_empty(),
        "{} stale reads: {:#?}",
        stale.len(),
        &stale[..stale.len().min(20)]
    );
    assert!(lost.is_empty(), "{:#?}", &lost[..lost.len().min(20)]);
    assert!(tally.acked.load(Relaxed) > 100, "too little load to mean anything");
    assert!(tally.hits.load(Relaxed) > 100, "too few hits to mean anything");
}
