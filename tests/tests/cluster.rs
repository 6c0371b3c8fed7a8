//! Multi-node behaviour: real ringcache processes on 127.0.0.1, joined by gossip.
//!
//! Every wait polls a condition with a deadline; timings the issue promises (a killed
//! node dropped within 5 s, a node that leaves dropped within 1 s) are measured and
//! printed, and asserted with those bounds. The failover tests need their read to
//! land inside the 5 s repair window after a ring change; a run that does not (a very
//! slow machine) is not counted, and is tried again at most twice.

use std::time::{Duration, Instant};

use ringcache_protocol::ring::{Ring, RingConfig};
use ringcache_tests::cluster::{get_all, set_all, stat, topology, TestCluster};
use ringcache_tests::tools::{require_python_module, run_bounded, workspace_root};
use ringcache_tests::{free_udp_port, poll_until, ServerKind, ServerProcess, Signal};

const KEYS: usize = 10_000;

fn items(tag: &str) -> Vec<(String, String)> {
    (0..KEYS)
        .map(|i| (format!("{tag}:{i}"), format!("v{i}-{tag}")))
        .collect()
}

fn keys(items: &[(String, String)]) -> Vec<String> {
    items.iter().map(|(k, _)| k.clone()).collect()
}

/// Asserts that reading every key through node `i` returns its value.
fn assert_all_read(c: &TestCluster, i: usize, items: &[(String, String)]) {
    let mut conn = c.nodes[i].process.connect();
    let got = get_all(&mut conn, &keys(items), 50);
    let wrong: Vec<_> = items
        .iter()
        .zip(&got)
        .filter(|((_, v), g)| g.as_deref() != Some(v.as_str()))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "through {}: {} wrong, e.g. {wrong:?}",
        c.nodes[i].name,
        wrong.len()
    );
}

/// [`assert_all_read`] for reads made while a killed owner is still on the ring: a
/// read that fails over inside the repair window of a ring change must hear from every
/// other owner of the window's rings, and is a miss (counted in
/// `cluster_failover_refusals`) when one of them does not answer
/// (`router::repair::may_fail_over`). So a key may read as a miss, never as another
/// value, and only as many keys as the node refused.
fn assert_all_read_or_refused(c: &TestCluster, i: usize, items: &[(String, String)]) {
    let before = stat(&c.nodes[i].process, "cluster_failover_refusals").unwrap_or(0.0);
    let mut conn = c.nodes[i].process.connect();
    let got = get_all(&mut conn, &keys(items), 50);
    let refused = stat(&c.nodes[i].process, "cluster_failover_refusals").unwrap_or(0.0) - before;
    let stale: Vec<_> = items
        .iter()
        .zip(&got)
        .filter(|((_, v), g)| g.as_deref().is_some_and(|g| g != v.as_str()))
        .take(5)
        .collect();
    assert!(
        stale.is_empty(),
        "through {}: stale values, e.g. {stale:?}",
        c.nodes[i].name
    );
    let missed = got.iter().filter(|g| g.is_none()).count();
    assert!(
        missed as f64 <= refused,
        "through {}: {missed} misses but {refused} failover refusals",
        c.nodes[i].name
    );
    if missed > 0 {
        println!("through {}: {missed} misses, all refused failovers", c.nodes[i].name);
    }
}

#[test]
fn three_nodes_any_node_answers_every_key() {
    let mut c = TestCluster::start(3, 1, &[]);
    let data = items("r1");
    let mut conn = c.nodes[0].process.connect();
    assert_eq!(set_all(&mut conn, &data), Vec::<String>::new());
    for i in 1..3 {
        assert_all_read(&c, i, &data);
    }
    // The keys are spread over the owners, and each is held exactly once (R=1).
    let held: Vec<f64> = c
        .nodes
        .iter()
        .map(|n| stat(&n.process, "curr_items").unwrap_or(0.0))
        .collect();
    println!("items per node: {held:?}");
    assert_eq!(held.iter().sum::<f64>() as usize, KEYS);
    for h in &held {
        assert!(*h > KEYS as f64 * 0.2, "uneven spread: {held:?}");
    }
    // Every node reports the same ring version once membership settles.
    assert!(c.converged(), "{}", c.describe());
    let forwarded = stat(&c.nodes[0].process, "cluster_forwarded").unwrap_or(0.0);
    assert!(forwarded > 0.0, "node 1 forwarded nothing");
}

#[test]
fn with_two_replicas_a_killed_node_loses_no_key_and_is_dropped_within_5s() {
    let mut c = TestCluster::start(3, 2, &[]);
    let data = items("r2");
    let mut conn = c.nodes[0].process.connect();
    assert_eq!(set_all(&mut conn, &data), Vec::<String>::new());
    // Every key is held twice.
    let held: f64 = c
        .nodes
        .iter()
        .map(|n| stat(&n.process, "curr_items").unwrap_or(0.0))
        .sum();
    assert_eq!(held as usize, 2 * KEYS);

    let killed_at = Instant::now();
    c.nodes[2].process.signal(Signal::Kill);
    // During detection: reads through the survivors fail over to the next owner (a
    // miss only where the repair window says so).
    assert_all_read_or_refused(&c, 0, &data);
    assert_all_read_or_refused(&c, 1, &data);
    let dropped = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        (0..2).all(|i| topology(&c.nodes[i].process).is_some_and(|t| t.members.iter().all(|m| m.name != "n3")))
    });
    let took = killed_at.elapsed();
    println!("killed node dropped from every ring after {took:?}");
    assert!(dropped, "dead node still on a ring: {}", c.describe());
    assert!(took < Duration::from_secs(5), "detection took {took:?}");
    // After detection: still every value.
    assert_all_read(&c, 0, &data);
    assert_all_read(&c, 1, &data);
}

#[test]
fn a_node_stopped_with_sigterm_is_dropped_within_1s() {
    let mut c = TestCluster::start(3, 1, &[]);
    let stopped_at = Instant::now();
    c.nodes[1].process.signal(Signal::Term);
    let dropped = poll_until(Duration::from_secs(5), Duration::from_millis(10), || {
        [0, 2]
            .iter()
            .all(|&i| topology(&c.nodes[i].process).is_some_and(|t| t.members.iter().all(|m| m.name != "n2")))
    });
    let took = stopped_at.elapsed();
    println!("node that left dropped from every ring after {took:?}");
    assert!(dropped, "{}", c.describe());
    assert!(took < Duration::from_secs(1), "leaving took {took:?}");
    assert!(
        c.nodes[1].process.wait_exit(Duration::from_secs(5)).is_some(),
        "node did not exit on SIGTERM"
    );
}

#[test]
fn a_fourth_node_joins_takes_a_quarter_and_reads_stay_correct() {
    let mut c = TestCluster::start(3, 1, &[]);
    let data = items("join");
    let mut conn = c.nodes[0].process.connect();
    assert_eq!(set_all(&mut conn, &data), Vec::<String>::new());
    c.add();
    c.wait_converged(Duration::from_secs(10));
    let share = stat(&c.nodes[3].process, "cluster_ring_share").unwrap_or(0.0);
    println!("the new node's share of the ring: {share:.3}");
    assert!((0.15..=0.35).contains(&share), "share {share}");
    let t = topology(&c.nodes[3].process).expect("topology");
    // Keys the new node now owns but does not hold yet are misses; every other key is
    // still read correctly; no key returns a wrong value.
    for i in 0..4 {
        let mut conn = c.nodes[i].process.connect();
        let got = get_all(&mut conn, &keys(&data), 50);
        let mut misses = 0;
        for ((k, v), g) in data.iter().zip(&got) {
            match g {
                Some(g) => assert_eq!(g, v, "key {k} through n{}", i + 1),
                None => misses += 1,
            }
        }
        // The old owners hand the new node its keys, so misses are a transient.
        println!("through n{}: {misses} misses, ring v{}", i + 1, t.version);
    }
}

#[test]
fn a_restarted_node_rejoins_with_its_name() {
    let mut c = TestCluster::start(3, 1, &[]);
    let before = topology(&c.nodes[0].process).expect("topology").version;
    c.nodes[2].process.signal(Signal::Kill);
    c.restart(2);
    let took = c.wait_converged(Duration::from_secs(10));
    println!("restarted node back on every ring after {took:?}");
    let after = topology(&c.nodes[0].process).expect("topology");
    assert_eq!(after.members.len(), 3);
    assert_ne!(after.version, before, "a new incarnation must change the version");
}

#[test]
fn flush_all_through_one_node_empties_the_cluster() {
    let c = TestCluster::start(3, 1, &[]);
    let data: Vec<_> = items("flush").into_iter().take(300).collect();
    let mut conn = c.nodes[1].process.connect();
    assert_eq!(set_all(&mut conn, &data), Vec::<String>::new());
    assert_eq!(conn.request(b"flush_all\r\n", b"\r\n"), b"OK\r\n");
    // Items are invisible at once everywhere (their memory is reclaimed lazily).
    for n in &c.nodes {
        let mut conn = n.process.connect();
        let got = get_all(&mut conn, &keys(&data), 50);
        assert!(got.iter().all(Option::is_none), "{} still serves flushed keys", n.name);
    }
}

#[test]
fn pymemcache_plain_and_hash_clients_against_the_cluster() {
    let c = TestCluster::start(3, 2, &[]);
    let python = require_python_module("pymemcache", "pip install pymemcache");
    let script = workspace_root().join("tests/python/pymemcache_suite.py");
    let ports: Vec<String> = c.nodes.iter().map(|n| n.process.port().to_string()).collect();
    let mut cmd = std::process::Command::new(python);
    cmd.arg(&script).args(&ports);
    let ran = run_bounded(&mut cmd, Duration::from_secs(180));
    println!("{}", ran.stdout);
    assert!(ran.status.success(), "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains(" passed, 0 failed"), "{}", ran.stdout);
}

#[test]
fn meta_commands_through_any_node_behave_as_on_the_owner() {
    let c = TestCluster::start(3, 2, &[]);
    let mut conn = c.nodes[0].process.connect();
    for i in 0..60 {
        let k = format!("meta:{i}");
        let v = format!("v{i}");
        let reply = conn.request(format!("ms {k} {} T0 F5 O7 k\r\n{v}\r\n", v.len()).as_bytes(), b"\r\n");
        assert_eq!(reply, format!("HD O7 k{k}\r\n").into_bytes(), "ms {k}");
        // Quiet mode: the hit is shown, the miss is not, `mn` ends the pipeline.
        let reply = conn.request(
            format!("mg {k} v f O9 k q\r\nmg nothere:{i} v q\r\nmn\r\n").as_bytes(),
            b"MN\r\n",
        );
        assert_eq!(
            reply,
            format!("VA {} f5 O9 k{k}\r\n{v}\r\nMN\r\n", v.len()).into_bytes(),
            "mg {k}"
        );
        // Through another node too (a different path to the owner).
        let mut other = c.nodes[1 + i % 2].process.connect();
        let reply = other.request(format!("mg {k} s v\r\n").as_bytes(), format!("{v}\r\n").as_bytes());
        assert_eq!(reply, format!("VA {} s{}\r\n{v}\r\n", v.len(), v.len()).into_bytes());
        assert_eq!(
            conn.request(format!("md {k} q\r\nmn\r\n").as_bytes(), b"MN\r\n"),
            b"MN\r\n"
        );
        assert_eq!(conn.request(format!("mg {k} v\r\n").as_bytes(), b"\r\n"), b"EN\r\n");
        assert_eq!(
            conn.request(format!("ma ctr:{i} N0 J5 v\r\n").as_bytes(), b"5\r\n"),
            b"VA 1\r\n5\r\n"
        );
        assert_eq!(
            other.request(format!("ma ctr:{i} v\r\n").as_bytes(), b"6\r\n"),
            b"VA 1\r\n6\r\n"
        );
    }
    assert!(stat(&c.nodes[0].process, "cluster_forwarded").unwrap_or(0.0) > 0.0);
}

#[test]
fn a_frozen_node_is_dropped_taken_back_and_serves_nothing_stale() {
    let mut c = TestCluster::start(3, 1, &[]);
    let data = items("freeze");
    let mut conn = c.nodes[0].process.connect();
    assert_eq!(set_all(&mut conn, &data), Vec::<String>::new());
    let frozen_items = stat(&c.nodes[2].process, "curr_items").unwrap_or(0.0);
    assert!(frozen_items > 0.0);

    c.nodes[2].process.signal(Signal::Stop);
    let dropped = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        (0..2).all(|i| topology(&c.nodes[i].process).is_some_and(|t| t.members.len() == 2))
    });
    assert!(dropped, "frozen node not dropped: {}", c.describe());
    // While it is away its keys move to the others: overwrite every key.
    let newer: Vec<(String, String)> = data.iter().map(|(k, v)| (k.clone(), format!("{v}-new"))).collect();
    assert_eq!(set_all(&mut conn, &newer), Vec::<String>::new());

    c.nodes[2].process.signal(Signal::Cont);
    c.wait_converged(Duration::from_secs(15));
    // Every read, through every node including the thawed one, is the newer value
    // or a miss; never the value from before the freeze.
    for i in 0..3 {
        let mut conn = c.nodes[i].process.connect();
        let got = get_all(&mut conn, &keys(&newer), 50);
        for ((k, v), g) in newer.iter().zip(&got) {
            if let Some(g) = g {
                assert_eq!(g, v, "stale value for {k} through n{}", i + 1);
            }
        }
    }
    let resets = stat(&c.nodes[2].process, "cluster_resets").unwrap_or(0.0);
    println!("thawed node dropped its data {resets} time(s)");
    assert!(resets >= 1.0);
}

#[test]
fn with_a_gossip_key_only_nodes_that_know_it_join_or_act_as_peers() {
    let mut c = TestCluster::start(2, 1, &["--gossip-key", "s3cret"]);
    let data: Vec<_> = items("keyed").into_iter().take(200).collect();
    let mut conn = c.nodes[0].process.connect();
    assert_eq!(set_all(&mut conn, &data), Vec::<String>::new());
    assert_all_read(&c, 1, &data);

    // A node with another secret never joins; its packets are counted and dropped.
    c.add_with(&["--gossip-key", "wrong"]);
    let rejected = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        stat(&c.nodes[0].process, "gossip_auth_failures").unwrap_or(0.0) > 0.0
    });
    assert!(rejected, "no authentication failure counted");
    for i in 0..2 {
        let t = topology(&c.nodes[i].process).expect("topology");
        assert_eq!(t.members.len(), 2, "{}", c.describe());
    }

    // A connection that claims to be a peer without the secret stays an ordinary one.
    let mut raw = c.nodes[0].process.connect();
    assert_eq!(
        raw.request(b"rc_peer intruder\r\n", b"\r\n"),
        b"CLIENT_ERROR authentication failed\r\n"
    );
    assert_eq!(
        raw.request(b"rc_peer intruder 1800000000 00\r\n", b"\r\n"),
        b"CLIENT_ERROR authentication failed\r\n"
    );
    assert_eq!(raw.request(b"rc_del keyed:1 99999999\r\n", b"\r\n"), b"ERROR\r\n");
    assert_all_read(&c, 0, &data);
}

#[test]
fn after_a_restart_and_a_new_owner_no_acknowledged_write_is_lost() {
    let mut c = TestCluster::start(3, 2, &[]);
    let data = items("handoff");
    let mut conn = c.nodes[0].process.connect();
    assert_eq!(set_all(&mut conn, &data), Vec::<String>::new());
    // Kill a node and wait until the others have dropped it: the survivors hand its
    // keys to their new second owners, restoring two copies of every key.
    c.nodes[2].process.signal(Signal::Kill);
    c.wait_converged(Duration::from_secs(10));
    let settled = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let held: f64 = (0..2)
            .map(|i| stat(&c.nodes[i].process, "curr_items").unwrap_or(0.0))
            .sum();
        held as usize == 2 * KEYS
    });
    assert!(settled, "two copies of every key were not restored");
    // It comes back empty: the others hand it the keys it owns again.
    c.restart(2);
    c.wait_converged(Duration::from_secs(10));
    let handed = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let held: f64 = (0..3)
            .map(|i| stat(&c.nodes[i].process, "curr_items").unwrap_or(0.0))
            .sum();
        held as usize == 2 * KEYS
    });
    assert!(handed, "the restarted node did not get its keys back");
    for i in 0..3 {
        assert_all_read(&c, i, &data);
    }
}

#[test]
fn a_node_started_with_seeds_refuses_keys_until_it_has_joined() {
    // Its only seed never answers, so it cannot join: until the join timeout it must
    // not act as a cluster of one (it would acknowledge writes no other node sees).
    let seed = format!("127.0.0.1:{}", free_udp_port());
    let node = ServerProcess::start(
        ServerKind::Ringcache,
        &["--node-name", "lonely", "--seed", &seed, "--join-timeout-ms", "5000"],
    );
    let joining: &[u8] = b"SERVER_ERROR joining the cluster\r\n";
    let mut conn = node.connect();
    assert_eq!(conn.request(b"set j 0 0 1\r\nx\r\n", b"\r\n"), joining);
    assert_eq!(conn.request(b"get j\r\n", b"\r\n"), joining);
    assert_eq!(conn.request(b"mg j v\r\n", b"\r\n"), joining);
    assert_eq!(conn.request(b"flush_all\r\n", b"\r\n"), joining);
    // Commands that touch no item are answered.
    assert!(conn.request(b"version\r\n", b"\r\n").starts_with(b"VERSION "));
    assert_eq!(conn.request(b"mn\r\n", b"\r\n"), b"MN\r\n");
    let t = topology(&node).expect("topology");
    assert_eq!(t.members.len(), 1);
    // After the timeout it gives up waiting and serves alone.
    let served = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
        conn.request(b"set j 0 0 1\r\nx\r\n", b"\r\n") == b"STORED\r\n"
    });
    assert!(served, "still refusing after the join timeout; log:\n{}", node.log());
    assert_eq!(conn.request(b"get j\r\n", b"END\r\n"), b"VALUE j 0 1\r\nx\r\nEND\r\n");
}

#[test]
fn a_fenced_peer_request_runs_only_on_a_node_with_the_same_ring() {
    let c = TestCluster::start(2, 2, &[]);
    let version = topology(&c.nodes[0].process).expect("topology").version;
    let other = version.wrapping_add(1);
    let mismatch = format!("SERVER_ERROR ring mismatch {version}\r\n");
    let mut peer = c.nodes[0].process.connect();
    assert_eq!(peer.request(b"rc_peer tester\r\n", b"\r\n"), b"OK\r\n");

    // Placed with another ring: read whole, not run, refused with one line.
    let reply = peer.request(
        format!("rc_ring {other}\r\nset fence:a 0 0 1\r\nx\r\n").as_bytes(),
        b"\r\n",
    );
    assert_eq!(reply, mismatch.as_bytes());
    let reply = peer.request(
        format!("rc_ring {other}\r\nms fence:b 1 q\r\ny\r\nmn\r\n").as_bytes(),
        b"MN\r\n",
    );
    assert_eq!(reply, format!("{mismatch}MN\r\n").into_bytes());
    let reply = peer.request(
        format!("rc_ring {other}\r\nrc_set fence:c 0 0 99 1\r\nz\r\n").as_bytes(),
        b"\r\n",
    );
    assert_eq!(reply, mismatch.as_bytes());
    // The fence held only the request after it, and none of them ran.
    assert_eq!(peer.request(b"get fence:a fence:b fence:c\r\n", b"END\r\n"), b"END\r\n");

    // Placed with this node's ring: it runs, and the write reaches the other owner.
    let reply = peer.request(
        format!("rc_ring {version}\r\nset fence:a 0 0 1\r\nx\r\n").as_bytes(),
        b"\r\n",
    );
    assert_eq!(reply, b"STORED\r\n");
    let mut client = c.nodes[1].process.connect();
    assert_eq!(
        client.request(b"get fence:a\r\n", b"END\r\n"),
        b"VALUE fence:a 0 1\r\nx\r\nEND\r\n"
    );
    // An ordinary connection cannot fence (nor send any peer command).
    assert_eq!(client.request(b"rc_ring 1\r\n", b"\r\n"), b"ERROR\r\n");
    assert_eq!(stat(&c.nodes[0].process, "cluster_ring_mismatches").unwrap_or(0.0), 3.0);
}

/// What one failover read after a ring change saw (see [`failover_read_after_a_ring_change`]).
struct FailoverRead {
    /// The value read through a non-owner, `None` for a miss.
    got: Option<String>,
    /// The stale version the surviving owner held, and the newer one a previous owner held.
    stale: String,
    newer: String,
    /// How much the surviving owner's `cluster_repaired` and `cluster_failover_refusals` moved.
    repaired: f64,
    refusals: f64,
}

/// The repair window after a ring change (`cluster::REPAIR_WINDOW`) is 5 s; a scenario
/// that took longer than this from the ring change to the read proves nothing.
const INSIDE_REPAIR_WINDOW: Duration = Duration::from_millis(4500);

/// A read that fails over inside the repair window, set up so that the surviving owner
/// holds an older version than another owner of the key's previous ring:
///
/// - a 3-node cluster with R=2 gets a 4th node (a ring change: every node is in its
///   repair window for 5 s);
/// - a key is chosen whose owners on the new ring are {A, B} (A primary) and whose
///   owners on the old ring include X, neither A nor B (a hand-off that has not
///   reached B yet looks like this); Y is the fourth node, owner on neither;
/// - once X has purged what it no longer owns, B is given v1 and X a newer v2 (larger
///   CAS) directly, as a peer would;
/// - A is killed (and X too if `x_down`), and the key is read through Y: A refuses,
///   the read fails over to B.
///
/// `None` if the scenario did not finish inside the repair window, or A was dropped
/// from the ring before the read (then it was not a failover): the caller tries again.
fn failover_read_after_a_ring_change(x_down: bool) -> Option<FailoverRead> {
    // Killed nodes stay on the ring well past the read.
    let mut c = TestCluster::start(3, 2, &["--gossip-suspect-ms", "5000"]);
    // Items for X to purge once the new node takes some of its ranges: the purge's
    // end is visible (`cluster_purged_items`), and a value given to X before it would
    // be purged too.
    let pre: Vec<(String, String)> = (0..300).map(|i| (format!("pre:{i}"), format!("p{i}"))).collect();
    let mut conn = c.nodes[0].process.connect();
    assert_eq!(set_all(&mut conn, &pre), Vec::<String>::new());

    let changed = Instant::now();
    c.add();
    c.wait_converged(Duration::from_secs(10));
    let t = topology(&c.nodes[0].process).expect("topology");
    let config = RingConfig {
        vnodes: t.vnodes,
        replicas: t.replicas,
    };
    let names: Vec<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
    let new_ring = Ring::new(names.clone(), config, 0).expect("ring");
    let old_ring = Ring::new(names[..3].to_vec(), config, 0).expect("ring");
    let owners = |ring: &Ring<String>, key: &str| -> Vec<usize> {
        ring.owners(key.as_bytes())
            .iter()
            .map(|o| {
                let name = ring.node(*o).expect("owner");
                names.iter().position(|n| n == name).expect("named node")
            })
            .collect()
    };
    let (key, a, b, x, y) = (0..10_000)
        .find_map(|i| {
            let key = format!("fo:{i}");
            let now = owners(&new_ring, &key);
            let x = *owners(&old_ring, &key).iter().find(|o| !now.contains(o))?;
            let y = (0..4).find(|n| !now.contains(n) && *n != x)?;
            Some((key, now[0], now[1], x, y))
        })
        .expect("a key whose old owners include a node that is not a new owner");
    println!(
        "key {key}: owners {} (primary) and {}, previously also {}; read through {}",
        names[a], names[b], names[x], names[y]
    );

    let purged = poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        stat(&c.nodes[x].process, "cluster_purged_items").unwrap_or(0.0) > 0.0
    });
    assert!(purged, "{} did not purge after the ring change", names[x]);
    let stale = "v1-stale".to_string();
    let newer = "v2-newer".to_string();
    for (i, value, cas) in [(b, &stale, 1_000_000u64), (x, &newer, 2_000_000)] {
        let mut peer = c.nodes[i].process.connect();
        assert_eq!(peer.request(b"rc_peer tester\r\n", b"\r\n"), b"OK\r\n");
        let reply = peer.request(
            format!("rc_set {key} 0 0 {cas} {}\r\n{value}\r\n", value.len()).as_bytes(),
            b"\r\n",
        );
        assert_eq!(reply, b"STORED\r\n", "rc_set on {}", names[i]);
    }
    let repaired = stat(&c.nodes[b].process, "cluster_repaired").unwrap_or(0.0);
    let refusals = stat(&c.nodes[b].process, "cluster_failover_refusals").unwrap_or(0.0);

    c.nodes[a].process.signal(Signal::Kill);
    if x_down {
        c.nodes[x].process.signal(Signal::Kill);
    }
    let mut conn = c.nodes[y].process.connect();
    let got = get_all(&mut conn, std::slice::from_ref(&key), 1).remove(0);
    let took = changed.elapsed();
    let same_ring = topology(&c.nodes[y].process).is_some_and(|now| now.version == t.version);
    if took >= INSIDE_REPAIR_WINDOW || !same_ring {
        println!("inconclusive: read {took:?} after the ring change, ring unchanged: {same_ring}");
        return None;
    }
    Some(FailoverRead {
        got,
        stale,
        newer,
        repaired: stat(&c.nodes[b].process, "cluster_repaired").unwrap_or(0.0) - repaired,
        refusals: stat(&c.nodes[b].process, "cluster_failover_refusals").unwrap_or(0.0) - refusals,
    })
}

/// Runs [`failover_read_after_a_ring_change`] until it is conclusive (at most 3 times).
fn conclusive_failover_read(x_down: bool) -> FailoverRead {
    for _ in 0..3 {
        if let Some(read) = failover_read_after_a_ring_change(x_down) {
            return read;
        }
    }
    panic!("three tries did not read within the repair window");
}

#[test]
fn a_failover_read_in_the_repair_window_takes_the_newest_version_from_the_other_owners() {
    let read = conclusive_failover_read(false);
    println!(
        "got {:?}; surviving owner repaired {} and refused {}",
        read.got, read.repaired, read.refusals
    );
    assert_ne!(read.got.as_deref(), Some(read.stale.as_str()), "stale value served");
    // Every other owner answered, so the read is answered, with the newest version.
    assert_eq!(read.got.as_deref(), Some(read.newer.as_str()));
    assert_eq!(read.repaired, 1.0);
    assert_eq!(read.refusals, 0.0);
}

#[test]
fn a_failover_read_in_the_repair_window_is_a_miss_when_another_owner_is_unreachable() {
    let read = conclusive_failover_read(true);
    println!(
        "got {:?}; surviving owner repaired {} and refused {}",
        read.got, read.repaired, read.refusals
    );
    assert_ne!(read.got.as_deref(), Some(read.stale.as_str()), "stale value served");
    // The previous owner that may hold a newer version did not answer: a miss.
    assert_eq!(read.got, None);
    assert_eq!(read.refusals, 1.0);
}
