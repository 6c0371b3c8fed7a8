//! The node-to-node protocol under what clients really send: keys with any byte (meta
//! `b`), and many connections writing to a replicated cluster at once.
//!
//! Regression tests for two bugs of the first wave:
//! - a key holding a space or a control byte (base64 on the client's side, raw on the
//!   peer connection) broke the line framing of `rc_set`/`rc_del`/`rc_get`, and from
//!   then on replies on that peer connection went to the wrong requests: plain `set`s
//!   through the node got `END`, and `get`s other clients' values;
//! - replicated writes stalled: each peer connection ran one request at a time, so a
//!   write forwarded to its primary waited for its replication while the replica's
//!   connection waited on a write forwarded the other way, until the 1 s peer timeout
//!   broke the cycle (99 sets/s from 8 connections, `SERVER_ERROR` after exactly 1 s).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use ringcache_tests::cluster::TestCluster;
use ringcache_tests::raw::RawConn;

fn b64(key: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Keys no classic command can carry: spaces, CR, LF, NUL, and every control byte.
fn awkward_keys(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut k = format!("c2raw:has space{i}").into_bytes();
            k.push((i % 33) as u8); // 0x00..=0x20
            k.extend_from_slice(b"\r\nrc_del x 1\r\n");
            k.push(0x7f);
            k.push(0xff);
            k
        })
        .collect()
}

#[test]
fn binary_keys_through_a_replicated_cluster_keep_every_reply_with_its_request() {
    let c = TestCluster::start(3, 2, &[]);
    let mut conn = c.nodes[0].process.connect();
    let keys = awkward_keys(40);
    for (i, key) in keys.iter().enumerate() {
        let value = format!("hello{i}");
        let req = format!("ms {} {} b\r\n{value}\r\n", b64(key), value.len());
        assert_eq!(conn.request(req.as_bytes(), b"\r\n"), b"HD\r\n", "ms of key {key:?}");
    }
    for (i, key) in keys.iter().enumerate() {
        let value = format!("hello{i}");
        let want = format!("VA {} k{} b\r\n{value}\r\n", value.len(), b64(key));
        let got = conn.request(format!("mg {} b v k\r\n", b64(key)).as_bytes(), b"\r\n");
        let mut got = got;
        if got.starts_with(b"VA ") {
            conn.read_until_suffix(&mut got, format!("{value}\r\n").as_bytes(), Duration::from_secs(5));
        }
        assert_eq!(String::from_utf8_lossy(&got), want, "mg of key {key:?}");
    }
    // Every node holds each key on two owners, so some of these went through
    // replication between the other two nodes.
    for (i, key) in keys.iter().enumerate().step_by(3) {
        let got = conn.request(format!("md {} b\r\n", b64(key)).as_bytes(), b"\r\n");
        assert_eq!(got, b"HD\r\n", "md of key {i}");
        for node in &c.nodes {
            let mut other = node.process.connect();
            let got = other.request(format!("mg {} b v\r\n", b64(key)).as_bytes(), b"\r\n");
            assert_eq!(got, b"EN\r\n", "deleted key {i} read through {}", node.name);
        }
    }
    // Plain requests through every node keep getting their own replies.
    assert_plain_requests_answered_in_step(&c, 100);
}

/// Sets and reads back `n` unique keys through each node, from several connections at
/// once, and asserts each reply is exactly the one its request should get.
fn assert_plain_requests_answered_in_step(c: &TestCluster, n: usize) {
    std::thread::scope(|s| {
        for (t, node) in c.nodes.iter().enumerate() {
            for w in 0..4 {
                let mut conn = node.process.connect();
                s.spawn(move || {
                    for i in 0..n {
                        let key = format!("plain:{t}:{w}:{i}");
                        let value = format!("v{t}.{w}.{i}");
                        let set = format!("set {key} 0 0 {}\r\n{value}\r\n", value.len());
                        assert_eq!(
                            String::from_utf8_lossy(&conn.request(set.as_bytes(), b"\r\n")),
                            "STORED\r\n",
                            "set {key}"
                        );
                        let got = conn.request(format!("get {key}\r\n").as_bytes(), b"END\r\n");
                        let want = format!("VALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len());
                        assert_eq!(String::from_utf8_lossy(&got), want, "get {key}");
                    }
                });
            }
        }
    });
}

/// 32 connections spread over 3 nodes with `--replicas 2`, each setting unique keys and
/// waiting for each reply: no request may wait anywhere near the peer timeout, and none
/// may fail. (With the old one-request-at-a-time peer connections this ran at about 90
/// sets/s, with `SERVER_ERROR` after exactly the 1 s peer timeout.) The peer timeout is
/// raised to 5 s so a stall shows as a wait of seconds rather than as an error.
#[test]
fn replicated_writes_from_32_connections_never_wait_on_each_other() {
    let c = TestCluster::start(3, 2, &["--peer-timeout-ms", "5000"]);
    let done = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let worst = std::sync::Mutex::new(Duration::ZERO);
    let run_for = Duration::from_secs(3);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..32 {
            let mut conn: RawConn = c.nodes[t % 3].process.connect();
            let (done, errors, worst) = (done.clone(), errors.clone(), &worst);
            s.spawn(move || {
                for i in 0..5_000 {
                    if start.elapsed() > run_for {
                        break;
                    }
                    let req = format!("set w:{t}:{i} 0 0 5\r\nhello\r\n");
                    let sent = Instant::now();
                    let reply = conn.request(req.as_bytes(), b"\r\n");
                    let took = sent.elapsed();
                    {
                        let mut w = worst.lock().unwrap();
                        *w = (*w).max(took);
                    }
                    if reply != b"STORED\r\n" {
                        if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("set w:{t}:{i}: {}", String::from_utf8_lossy(&reply));
                        }
                    } else {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let elapsed = start.elapsed();
    let worst = *worst.lock().unwrap();
    let done = done.load(Ordering::Relaxed);
    println!(
        "{done} sets in {elapsed:?} ({:.0}/s), slowest {worst:?}",
        done as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(errors.load(Ordering::Relaxed), 0, "sets answered with an error");
    assert!(
        worst < Duration::from_millis(900),
        "a set waited {worst:?}: replicated writes waited on each other"
    );
    assert!(done >= 32, "only {done} sets in {elapsed:?}");
}
