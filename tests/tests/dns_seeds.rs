//! Seeds given as DNS names (`--seed HOST:PORT`): nodes join through a name, nodes
//! that start at the same moment with every name as a seed form one cluster, clusters
//! that formed apart merge once a name leads one to the other, and a name that does
//! not resolve is retried while the node serves alone after the join timeout.
//!
//! The names are `localhost` (127.0.0.1, and maybe also ::1, which nodes on an IPv4
//! gossip socket leave out) and one under `.invalid`, which never resolves.

use std::time::{Duration, Instant};

use ringcache_tests::cluster::topology;
use ringcache_tests::process::{free_port, free_udp_port, poll_until, ServerKind, ServerProcess};

const JOINING: &[u8] = b"SERVER_ERROR joining the cluster\r\n";

/// Starts a node named `name` gossiping on 127.0.0.1:`gossip`, with `seeds` and
/// `extra` flags.
fn node(name: &str, gossip: u16, seeds: &[String], extra: &[&str]) -> ServerProcess {
    let mut args: Vec<String> = vec![
        "-m".into(),
        "32".into(),
        "-t".into(),
        "2".into(),
        "--node-name".into(),
        name.into(),
        "--gossip-addr".into(),
        format!("127.0.0.1:{gossip}"),
    ];
    for seed in seeds {
        args.push("--seed".into());
        args.push(seed.clone());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut last = String::new();
    for _ in 0..5 {
        match ServerProcess::start_on(ServerKind::Ringcache, free_port(), &args) {
            Ok(p) => return p,
            Err(e) => last = e,
        }
    }
    panic!("{name} did not start: {last}");
}

fn by_name(gossip: &[u16]) -> Vec<String> {
    gossip.iter().map(|g| format!("localhost:{g}")).collect()
}

/// Whether every node's ring holds exactly `names`, with one version.
fn one_ring(nodes: &[&ServerProcess], names: &[&str]) -> bool {
    let mut versions = Vec::new();
    for n in nodes {
        let Some(t) = topology(n) else { return false };
        if t.members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>() != names {
            return false;
        }
        versions.push(t.version);
    }
    versions.windows(2).all(|w| w[0] == w[1])
}

fn describe(nodes: &[&ServerProcess]) -> String {
    nodes
        .iter()
        .map(|n| match topology(n) {
            Some(t) => format!(
                "{} sees v{} {:?}",
                n.port(),
                t.version,
                t.members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>()
            ),
            None => format!("{}: no topology", n.port()),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn assert_one_ring(nodes: &[&ServerProcess], names: &[&str], timeout: Duration) {
    let ok = poll_until(timeout, Duration::from_millis(50), || one_ring(nodes, names));
    assert!(
        ok,
        "no single ring of {names:?} within {timeout:?}: {}",
        describe(nodes)
    );
}

/// Writes a key through each node and reads every key through every node.
fn assert_serves_as_one(nodes: &[&ServerProcess]) {
    for (i, n) in nodes.iter().enumerate() {
        let set = format!("set dns:{i} 0 0 1\r\n{i}\r\n");
        assert_eq!(
            n.connect().request(set.as_bytes(), b"\r\n"),
            b"STORED\r\n",
            "set through node {i}"
        );
    }
    for n in nodes {
        let mut conn = n.connect();
        for i in 0..nodes.len() {
            let get = format!("get dns:{i}\r\n");
            let want = format!("VALUE dns:{i} 0 1\r\n{i}\r\nEND\r\n");
            assert_eq!(conn.request(get.as_bytes(), b"END\r\n"), want.as_bytes());
        }
    }
}

#[test]
fn nodes_join_through_a_seed_name_and_a_seed_where_nothing_listens_is_harmless() {
    let [g1, g2, g3, nobody] = [free_udp_port(), free_udp_port(), free_udp_port(), free_udp_port()];
    let n1 = node("d1", g1, &[], &[]);
    // Default join timeout (10 s): joining through the name must not wait it out.
    let started = Instant::now();
    let seeds = by_name(&[g1, nobody]);
    let n2 = node("d2", g2, &seeds, &[]);
    let n3 = node("d3", g3, &seeds, &[]);
    let nodes = [&n1, &n2, &n3];
    assert_one_ring(&nodes, &["d1", "d2", "d3"], Duration::from_secs(5));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert_serves_as_one(&nodes);
    // The dead seed keeps being tried and changes nothing.
    std::thread::sleep(Duration::from_secs(2));
    assert!(one_ring(&nodes, &["d1", "d2", "d3"]), "{}", describe(&nodes));
}

#[test]
fn nodes_started_at_the_same_moment_with_every_name_as_a_seed_form_one_cluster() {
    for extra in [&[][..], &["--join-timeout-ms", "1"][..]] {
        // With the default join timeout (10 s) nobody may found a cluster of its own
        // before meeting the others; with 1 ms each founds one at once, and the three
        // must still merge into one.
        let gossip = [free_udp_port(), free_udp_port(), free_udp_port()];
        let seeds = by_name(&gossip);
        let started = Instant::now();
        let nodes: Vec<ServerProcess> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3)
                .map(|i| {
                    let seeds = &seeds;
                    s.spawn(move || node(&format!("s{}", i + 1), gossip[i], seeds, extra))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("start")).collect()
        });
        let refs: Vec<&ServerProcess> = nodes.iter().collect();
        assert_one_ring(&refs, &["s1", "s2", "s3"], Duration::from_secs(8));
        assert!(
            started.elapsed() < Duration::from_secs(9),
            "{extra:?}: took {:?}",
            started.elapsed()
        );
        assert_serves_as_one(&refs);
        if extra.is_empty() {
            for n in &refs {
                assert!(!n.log().contains("no seed answered"), "{}", n.log());
            }
        }
    }
}

#[test]
fn clusters_that_formed_apart_merge_once_a_seed_name_leads_to_the_other() {
    let [ga, gb, gc, gd] = [free_udp_port(), free_udp_port(), free_udp_port(), free_udp_port()];
    // a's only seed is a name for c's address, where nothing runs yet: a founds a
    // cluster after its join timeout, and b joins it.
    let a = node("a", ga, &by_name(&[gc]), &["--join-timeout-ms", "300"]);
    let served = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        a.connect().request(b"set m:a 0 0 1\r\na\r\n", b"\r\n") == b"STORED\r\n"
    });
    assert!(served, "a never served alone: {}", a.log());
    let b = node("b", gb, &[format!("127.0.0.1:{ga}")], &[]);
    assert_one_ring(&[&a, &b], &["a", "b"], Duration::from_secs(5));
    // c founds a second cluster, and d joins it.
    let c = node("c", gc, &[], &[]);
    let d = node("d", gd, &[format!("127.0.0.1:{gc}")], &[]);
    // a keeps announcing itself to the address its seed name gives (every few
    // seconds while it has not met it), so the two clusters become one.
    let all = [&a, &b, &c, &d];
    assert_one_ring(&all, &["a", "b", "c", "d"], Duration::from_secs(15));
    assert_serves_as_one(&all);
}

#[test]
fn a_seed_name_that_does_not_resolve_is_retried_while_the_node_serves_alone_after_the_join_timeout() {
    let node = node(
        "lonely",
        free_udp_port(),
        &["ringcache-test-no-such-seed.invalid:12211".to_string()],
        &["--join-timeout-ms", "3000", "-vv"],
    );
    let mut conn = node.connect();
    // A name may list other nodes: the node is joining until the timeout.
    assert_eq!(conn.request(b"set j 0 0 1\r\nx\r\n", b"\r\n"), JOINING);
    let served = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
        conn.request(b"set j 0 0 1\r\nx\r\n", b"\r\n") == b"STORED\r\n"
    });
    assert!(served, "still refusing after the join timeout; log:\n{}", node.log());
    assert_eq!(conn.request(b"get j\r\n", b"END\r\n"), b"VALUE j 0 1\r\nx\r\nEND\r\n");
    // Looked up again and again (1 s, then 2 s, ... apart), and said so.
    let lookups = |log: &str| log.matches("seed name does not resolve").count();
    let retried = poll_until(Duration::from_secs(40), Duration::from_millis(200), || {
        lookups(&node.log()) >= 3
    });
    let log = node.log();
    assert!(retried, "the name was not looked up again; log:\n{log}");
    assert!(
        log.lines().any(|l| l.contains("WARN") && lookups(l) == 1),
        "the first failure is a warning: {log}"
    );
    assert!(log.contains("ringcache-test-no-such-seed.invalid:12211"), "{log}");
    assert!(log.contains("no seed answered"), "{log}");
    let mut node = node;
    assert!(node.is_running());
    assert_eq!(topology(&node).expect("topology").members.len(), 1);
}
