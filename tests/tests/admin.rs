//! The admin HTTP listener (`--admin-addr`): `/metrics` parsed by Prometheus's own
//! Python parser, with memcached_exporter's names and counters that move; `/healthz`;
//! `/readyz` while joining, in a converged cluster, and as the gate of a rolling
//! restart that must lose nothing with `--replicas 2`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use ringcache_protocol::cluster::MemberState;
use ringcache_tests::cluster::{get_all, set_all, topology, TestCluster};
use ringcache_tests::http::{http_get, http_request};
use ringcache_tests::tools::{require_python_module, run_bounded, workspace_root};
use ringcache_tests::{free_port, free_udp_port, poll_until, ServerKind, ServerProcess, Signal};

/// A fresh `--admin-addr` value.
fn admin_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Samples of a `/metrics` page as `prometheus_client.parser` reads them:
/// (sample name, labels as sorted `k=v,...`) → value; plus each family's type.
struct Parsed {
    samples: HashMap<(String, String), f64>,
    types: HashMap<String, String>,
}

impl Parsed {
    fn value(&self, name: &str, labels: &str) -> f64 {
        *self
            .samples
            .get(&(name.to_string(), labels.to_string()))
            .unwrap_or_else(|| panic!("no sample {name}{{{labels}}}"))
    }
}

/// Fetches `/metrics` from `admin` and parses it with Python's `prometheus_client`.
fn scrape(admin: SocketAddr) -> Parsed {
    let resp = http_get(admin, "/metrics");
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let python = require_python_module("prometheus_client", "pip install prometheus-client");
    let page = std::env::temp_dir().join(format!("ringcache-metrics-{}-{}.txt", std::process::id(), admin.port()));
    std::fs::write(&page, &resp.body).expect("write the page");
    let script = workspace_root().join("tests/python/parse_metrics.py");
    let ran = run_bounded(
        std::process::Command::new(python).arg(&script).arg(&page),
        Duration::from_secs(60),
    );
    let _ = std::fs::remove_file(&page);
    assert!(
        ran.status.success(),
        "the page does not parse: {}\n{}",
        ran.stderr,
        resp.body
    );
    let mut parsed = Parsed {
        samples: HashMap::new(),
        types: HashMap::new(),
    };
    for line in ran.stdout.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 5, "{line}");
        parsed.types.insert(f[0].to_string(), f[1].to_string());
        let value: f64 = f[4].parse().unwrap_or_else(|_| panic!("value of {line}"));
        let old = parsed.samples.insert((f[2].to_string(), f[3].to_string()), value);
        assert!(old.is_none(), "sample {} {} twice", f[2], f[3]);
    }
    parsed
}

/// Polls `/readyz` until it answers 200; returns the last answer's body on failure.
fn wait_ready(admin: SocketAddr, timeout: Duration) -> Result<(), String> {
    let mut last = String::new();
    let ok = poll_until(timeout, Duration::from_millis(100), || {
        match http_request(admin, "GET", "/readyz", Duration::from_secs(5)) {
            Ok(r) if r.status == 200 => true,
            Ok(r) => {
                last = format!("{} {}", r.status, r.body);
                false
            }
            Err(e) => {
                last = e;
                false
            }
        }
    });
    if ok {
        Ok(())
    } else {
        Err(last)
    }
}

/// How many running nodes hold each of `keys` (asked as a peer, `rc_get`, so nothing
/// is forwarded or repaired on the way).
fn copies(c: &TestCluster, keys: &[String]) -> Vec<usize> {
    let mut copies = vec![0; keys.len()];
    for n in &c.nodes {
        if n.process.pid().is_none() {
            continue;
        }
        let mut p = n.process.connect();
        assert_eq!(p.request(b"rc_peer tester\r\n", b"\r\n"), b"OK\r\n");
        for (i, k) in keys.iter().enumerate() {
            if p.request(format!("rc_get {k}\r\n").as_bytes(), b"END\r\n")
                .starts_with(b"VALUE")
            {
                copies[i] += 1;
            }
        }
    }
    copies
}

#[test]
fn metrics_parse_with_prometheus_client_and_counters_move() {
    let admin = admin_addr();
    let node = ServerProcess::start(ServerKind::Ringcache, &["--admin-addr", &admin.to_string()]);
    let before = scrape(admin);

    // memcached_exporter's names (and types), so memcached dashboards work unchanged.
    for (family, kind) in [
        ("memcached_up", "gauge"),
        ("memcached_commands", "counter"),
        ("memcached_current_items", "gauge"),
        ("memcached_items_evicted", "counter"),
        ("memcached_current_bytes", "gauge"),
        ("memcached_limit_bytes", "gauge"),
        ("memcached_current_connections", "gauge"),
        ("memcached_read_bytes", "counter"),
        ("memcached_written_bytes", "counter"),
        ("memcached_items", "counter"),
        ("memcached_connections", "counter"),
        ("memcached_max_connections", "gauge"),
        ("memcached_uptime_seconds", "gauge"),
        ("memcached_version", "gauge"),
        ("ringcache_cluster_members", "gauge"),
        ("ringcache_ring_info", "gauge"),
        ("ringcache_ring_share", "gauge"),
        ("ringcache_cluster_joined", "gauge"),
        ("ringcache_draining", "gauge"),
        ("ringcache_handoff_in_progress", "gauge"),
        ("ringcache_fence_refusals", "counter"),
        ("ringcache_replication_errors", "counter"),
        ("ringcache_handoff_items_sent", "counter"),
        ("ringcache_handoff_items_received", "counter"),
        ("ringcache_gossip_auth_failures", "counter"),
    ] {
        assert_eq!(
            before.types.get(family).map(String::as_str),
            Some(kind),
            "family {family}"
        );
    }
    assert_eq!(before.value("memcached_up", ""), 1.0);
    assert_eq!(before.value("memcached_limit_bytes", ""), 64.0 * 1024.0 * 1024.0);
    assert_eq!(before.value("ringcache_cluster_members", "state=alive"), 1.0);
    assert_eq!(before.value("ringcache_ring_share", ""), 1.0);

    let mut conn = node.connect();
    for i in 0..20 {
        assert_eq!(
            conn.request(format!("set m{i} 0 0 2\r\nhi\r\n").as_bytes(), b"\r\n"),
            b"STORED\r\n"
        );
    }
    for i in 0..30 {
        // 20 hits, 10 misses.
        conn.request(format!("get m{i}\r\n").as_bytes(), b"END\r\n");
    }
    let after = scrape(admin);
    let moved = |name: &str, labels: &str| after.value(name, labels) - before.value(name, labels);
    assert_eq!(moved("memcached_commands_total", "command=set,status=hit"), 20.0);
    assert_eq!(moved("memcached_commands_total", "command=get,status=hit"), 20.0);
    assert_eq!(moved("memcached_commands_total", "command=get,status=miss"), 10.0);
    assert_eq!(after.value("memcached_current_items", ""), 20.0);
    assert!(after.value("memcached_current_bytes", "") > 0.0);
    assert_eq!(after.value("memcached_current_connections", ""), 1.0);
    assert!(moved("memcached_read_bytes_total", "") > 0.0);
    assert!(moved("memcached_written_bytes_total", "") > 0.0);
    assert!(moved("memcached_connections_total", "") >= 1.0);

    let health = http_get(admin, "/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    // A node without seeds founds its own cluster: ready at once.
    let ready = http_get(admin, "/readyz");
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    assert_eq!(http_get(admin, "/nothing").status, 404);
    let post = http_request(admin, "POST", "/readyz", Duration::from_secs(5)).expect("POST");
    assert_eq!(post.status, 405);
}

#[test]
fn readyz_is_503_while_joining_and_healthz_is_200() {
    // Its only seed never answers: it stays joining for the whole (long) join timeout.
    let seed = format!("127.0.0.1:{}", free_udp_port());
    let admin = admin_addr();
    let _node = ServerProcess::start(
        ServerKind::Ringcache,
        &[
            "--node-name",
            "lonely",
            "--seed",
            &seed,
            "--join-timeout-ms",
            "60000",
            "--admin-addr",
            &admin.to_string(),
        ],
    );
    let ready = http_get(admin, "/readyz");
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.body, "joining the cluster\n");
    assert_eq!(ready.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(http_get(admin, "/healthz").status, 200);
    let m = scrape(admin);
    assert_eq!(m.value("ringcache_cluster_joined", ""), 0.0);
}

#[test]
fn a_converged_cluster_is_ready_and_readiness_gates_a_safe_rolling_restart() {
    // Nodes n1..n3, each with its own admin port; two owners per key.
    let mut c = TestCluster::start(0, 2, &[]);
    let mut admins = Vec::new();
    for _ in 0..3 {
        let admin = admin_addr();
        c.add_with(&["--admin-addr", &admin.to_string()]);
        admins.push(admin);
    }
    c.wait_converged(Duration::from_secs(15));
    for (i, a) in admins.iter().enumerate() {
        wait_ready(*a, Duration::from_secs(15)).unwrap_or_else(|why| panic!("n{} not ready: {why}", i + 1));
    }

    // Writes through n1: most keys belong to other primaries, so n1 forwards them.
    let items: Vec<(String, String)> = (0..600).map(|i| (format!("roll:{i}"), format!("v{i}"))).collect();
    let keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
    let mut conn = c.nodes[0].process.connect();
    assert_eq!(set_all(&mut conn, &items), Vec::<String>::new());
    let m = scrape(admins[0]);
    for (family, kind) in [
        ("ringcache_forward_duration_seconds", "histogram"),
        ("ringcache_forward_errors", "counter"),
        ("ringcache_forward_timeouts", "counter"),
    ] {
        assert_eq!(m.types.get(family).map(String::as_str), Some(kind), "family {family}");
    }
    assert_eq!(m.value("ringcache_cluster_members", "state=alive"), 3.0);
    let forwarded: f64 = ["n2", "n3"]
        .iter()
        .map(|p| m.value("ringcache_forward_duration_seconds_count", &format!("peer={p}")))
        .sum();
    assert!(forwarded > 0.0, "n1 forwarded nothing");
    assert_eq!(m.value("ringcache_forwarded_total", ""), forwarded);
    let inf = m.value("ringcache_forward_duration_seconds_bucket", "le=+Inf,peer=n2");
    assert_eq!(inf, m.value("ringcache_forward_duration_seconds_count", "peer=n2"));
    // Each peer's round trip is measured every 2 s once it is on the ring.
    let rtt_of_both = || {
        let m = scrape(admins[0]);
        ["n2", "n3"].iter().all(|p| {
            m.samples
                .get(&("ringcache_peer_rtt_seconds".to_string(), format!("peer={p}")))
                .is_some_and(|v| *v > 0.0 && *v < 1.0)
        })
    };
    assert!(
        poll_until(Duration::from_secs(6), Duration::from_millis(200), rtt_of_both),
        "no round-trip time for n2 and n3"
    );
    // Every node reports the same ring version.
    let versions: Vec<String> = admins
        .iter()
        .map(|a| {
            let m = scrape(*a);
            let (key, _) = m
                .samples
                .keys()
                .find(|(n, _)| n == "ringcache_ring_info")
                .expect("ringcache_ring_info")
                .clone();
            key
        })
        .collect();
    assert!(versions.windows(2).all(|w| w[0] == w[1]), "{versions:?}");

    // The smart client's own counters, as an application would export them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client_metrics = rt.block_on(async {
        let client = ringcache_client::Client::builder()
            .seeds([c.nodes[0].process.addr()])
            .build()
            .await
            .expect("client");
        for k in keys.iter().take(10) {
            assert!(client.get(k.as_str()).await.expect("get").is_some(), "{k}");
        }
        assert_eq!(client.get("roll:absent").await.expect("get"), None);
        client.metrics()
    });
    assert_eq!((client_metrics.stats.hits, client_metrics.stats.misses), (10, 1));
    assert_eq!((client_metrics.nodes, client_metrics.nodes_down), (3, 0));
    let mut page = String::new();
    client_metrics.write_prometheus(&mut page, None);
    assert!(page.contains("ringcache_client_hits_total 10\n"), "{page}");

    // Restart n3: it comes back empty and is not ready until n1 and n2 have handed it
    // its share; only then is it safe to take n1 away.
    c.restart(2);
    wait_ready(admins[2], Duration::from_secs(20))
        .unwrap_or_else(|why| panic!("n3 not ready after its restart: {why}"));
    let m = scrape(admins[2]);
    assert!(
        m.value("ringcache_handoff_items_received_total", "") > 0.0,
        "n3 received nothing"
    );
    assert!(m.value("memcached_current_items", "") > 0.0);

    // Every key is on both its owners again: the restart's hand-off is done.
    let thin: Vec<(&String, usize)> = keys.iter().zip(copies(&c, &keys)).filter(|(_, n)| *n != 2).collect();
    assert!(thin.is_empty(), "ready, but keys without two copies: {thin:?}");
    c.nodes[0].process.kill();
    c.wait_converged(Duration::from_secs(15));
    for i in [1, 2] {
        wait_ready(admins[i], Duration::from_secs(20)).unwrap_or_else(|why| panic!("n{} not ready: {why}", i + 1));
    }
    let mut conn = c.nodes[1].process.connect();
    let got = get_all(&mut conn, &keys, 50);
    let lost: Vec<&String> = keys
        .iter()
        .zip(&got)
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k)
        .collect();
    assert!(
        lost.is_empty(),
        "{} keys lost after a restart gated by /readyz: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    // n1 is gone: the others are ready, and their peers' answers say so.
    let ready = http_get(admins[1], "/readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
}

/// One member frozen (SIGSTOP) with failure detection slowed down so it stays suspect,
/// not down, for the whole check: the two healthy nodes are ready again while it is
/// being probed (before, every node was unready until it was declared down), and the
/// frozen node is still on their rings as `suspect`.
#[test]
fn a_suspect_member_does_not_keep_the_healthy_majority_unready() {
    let mut c = TestCluster::start(0, 2, &[]);
    let mut admins = Vec::new();
    for _ in 0..3 {
        let admin = admin_addr();
        c.add_with(&["--admin-addr", &admin.to_string(), "--gossip-suspect-ms", "30000"]);
        admins.push(admin);
    }
    c.wait_converged(Duration::from_secs(15));
    for (i, a) in admins.iter().enumerate() {
        wait_ready(*a, Duration::from_secs(15)).unwrap_or_else(|why| panic!("n{} not ready: {why}", i + 1));
    }
    c.nodes[2].process.signal(Signal::Stop);
    let frozen_at = std::time::Instant::now();
    let suspect_on_both = || {
        [0, 1].iter().all(|&i| {
            topology(&c.nodes[i].process).is_some_and(|t| {
                t.members
                    .iter()
                    .any(|m| m.name == "n3" && m.state == MemberState::Suspect)
            })
        })
    };
    assert!(
        poll_until(Duration::from_secs(10), Duration::from_millis(50), suspect_on_both),
        "n3 not suspected by n1 and n2"
    );
    let ready = [0, 1].map(|i| wait_ready(admins[i], Duration::from_secs(5)));
    let took = frozen_at.elapsed();
    let still_suspect = suspect_on_both();
    c.nodes[2].process.signal(Signal::Cont);
    for (i, r) in ready.iter().enumerate() {
        if let Err(why) = r {
            panic!("n{} unready while n3 is only suspect: {why}", i + 1);
        }
    }
    assert!(still_suspect, "n3 was no longer suspect when the check ended");
    assert!(
        took < Duration::from_secs(20),
        "took {took:?}: n3 may have been declared down"
    );
    println!("n1 and n2 ready {took:?} after n3 froze, n3 still suspect");
}
