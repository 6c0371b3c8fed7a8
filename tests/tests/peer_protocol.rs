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

/// What the proxy in front of a node does to the replies it relays.
const RELAY: u8 = 0;
/// Inject a tagged reply whose id no request is waiting for.
const UNKNOWN_TAG: u8 = 1;
/// Inject an untagged line.
const GARBAGE: u8 = 2;
/// Send a chunk twice (every tag in it comes again, answered already).
const REPLAY: u8 = 3;

/// A TCP relay in front of a node's memcached port, advertised to the cluster as the
/// node's address (`--advertise-addr`), that corrupts the node's replies while `mode`
/// says so.
struct BadPeerProxy {
    port: u16,
    target: Arc<std::sync::Mutex<Option<std::net::SocketAddr>>>,
    mode: Arc<std::sync::atomic::AtomicU8>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl BadPeerProxy {
    fn start() -> BadPeerProxy {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let proxy = BadPeerProxy {
            port: l.local_addr().unwrap().port(),
            target: Arc::default(),
            mode: Arc::default(),
            stop: Arc::default(),
        };
        let (target, mode, stop) = (proxy.target.clone(), proxy.mode.clone(), proxy.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let Some(addr) = *target.lock().unwrap() else { continue };
                let Ok(server) = std::net::TcpStream::connect(addr) else {
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut c_rd, mut s_wr) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_rd, &mut s_wr);
                    let _ = s_wr.shutdown(std::net::Shutdown::Both);
                });
                let (mut s_rd, mut c_wr, mode) = (server, client, mode.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match s_rd.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        let tagged = chunk.starts_with(b"RI ");
                        let sent = match mode.load(Ordering::Relaxed) {
                            UNKNOWN_TAG if tagged => c_wr
                                .write_all(b"RI 987654321 5\r\nEND\r\n")
                                .and_then(|_| c_wr.write_all(chunk)),
                            GARBAGE if tagged => c_wr.write_all(b"END\r\n").and_then(|_| c_wr.write_all(chunk)),
                            REPLAY if tagged => c_wr.write_all(chunk).and_then(|_| c_wr.write_all(chunk)),
                            _ => c_wr.write_all(chunk),
                        };
                        if sent.is_err() {
                            break;
                        }
                    }
                    let _ = c_wr.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        proxy
    }
}

impl Drop for BadPeerProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A peer whose replies go bad (unknown tags, garbage lines, replayed replies) while
/// 24 clients write and read unique values through another node: every reply a client
/// gets is its own (its value, or a `SERVER_ERROR` for the requests in flight when the
/// peer connection was closed), and once the peer behaves again, requests succeed.
#[test]
fn a_peer_whose_replies_go_bad_fails_only_what_was_in_flight_and_never_misdelivers() {
    use ringcache_tests::cluster::{topology, Placement};
    let proxy = BadPeerProxy::start();
    let mut c = TestCluster::start(1, 1, &[]);
    let advertised = format!("127.0.0.1:{}", proxy.port);
    c.add_with(&["--advertise-addr", &advertised]);
    *proxy.target.lock().unwrap() = Some(c.nodes[1].process.addr());
    c.wait_converged(Duration::from_secs(15));
    let top = topology(&c.nodes[0].process).expect("topology");
    let placement = Placement::new(&top, "n1");
    // Keys whose owner is the node behind the proxy.
    let keys: Vec<String> = (0..)
        .map(|i| format!("bad-peer:{i}"))
        .filter(|k| placement.primary_name(k.as_bytes()) == "n2")
        .take(24 * 20)
        .collect();
    let errors = AtomicUsize::new(0);
    let ok = AtomicUsize::new(0);
    let phase = |mode: u8, rounds: usize| {
        proxy.mode.store(mode, Ordering::Relaxed);
        std::thread::scope(|s| {
            for (t, mine) in keys.chunks(20).enumerate() {
                let mut conn = c.nodes[0].process.connect();
                let (errors, ok) = (&errors, &ok);
                s.spawn(move || {
                    for r in 0..rounds {
                        for key in mine {
                            let value = format!("{t}.{r}.{key}");
                            let set = format!("set {key} 0 0 {}\r\n{value}\r\n", value.len());
                            let got = conn.request(set.as_bytes(), b"\r\n");
                            let got = String::from_utf8_lossy(&got).into_owned();
                            if got.starts_with("SERVER_ERROR") {
                                errors.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            assert_eq!(got, "STORED\r\n", "set {key}");
                            let got = conn.request(format!("mg {key} v\r\n").as_bytes(), b"\r\n");
                            let mut got = got;
                            if got.starts_with(b"VA ") {
                                conn.read_until_suffix(&mut got, b"\r\n", Duration::from_secs(5));
                                let want = format!("VA {}\r\n{value}\r\n", value.len());
                                assert_eq!(String::from_utf8_lossy(&got), want, "mg {key}: another reply");
                                ok.fetch_add(1, Ordering::Relaxed);
                            } else {
                                // A miss is allowed (the read failed); another value never.
                                let got = String::from_utf8_lossy(&got);
                                assert!(got == "EN\r\n" || got.starts_with("SERVER_ERROR"), "mg {key}: {got}");
                            }
                        }
                    }
                });
            }
        });
    };
    phase(RELAY, 1);
    assert_eq!(errors.load(Ordering::Relaxed), 0, "errors before the peer went bad");
    for bad in [UNKNOWN_TAG, GARBAGE, REPLAY] {
        phase(bad, 2);
    }
    let failed = errors.swap(0, Ordering::Relaxed);
    println!(
        "while the peer's replies were bad: {failed} requests failed, {} answered",
        ok.load(Ordering::Relaxed)
    );
    assert!(failed > 0, "the bad replies failed nothing: were they relayed?");
    let closed = ringcache_tests::cluster::stat(&c.nodes[0].process, "cluster_forward_errors").unwrap_or(0.0);
    assert!(closed > 0.0, "no forward failed");
    // The peer behaves again: fresh connections, no errors.
    ok.store(0, Ordering::Relaxed);
    phase(RELAY, 1);
    assert_eq!(errors.load(Ordering::Relaxed), 0, "errors after the peer recovered");
    assert_eq!(ok.load(Ordering::Relaxed), keys.len());
}
