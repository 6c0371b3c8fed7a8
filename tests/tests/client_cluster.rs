//! The smart client against real multi-node clusters: direct routing (no node ever
//! forwards), reads through a SIGKILL with R=2, and a joining node picked up by the
//! client's background refresh.

use std::time::{Duration, Instant};

use ringcache_client::Client;
use ringcache_tests::client_runtime;
use ringcache_tests::cluster::{stat, TestCluster};
use ringcache_tests::Signal;

fn items(tag: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("{tag}:{i}"), format!("value-{tag}-{i}")))
        .collect()
}

fn forwarded(c: &TestCluster) -> Vec<f64> {
    c.nodes
        .iter()
        .map(|n| stat(&n.process, "cluster_forwarded").unwrap_or(-1.0))
        .collect()
}

#[test]
fn every_request_goes_straight_to_its_owner() {
    let c = TestCluster::start(3, 2, &[]);
    let data = items("direct", 400);
    let keys: Vec<&str> = data.iter().map(|(k, _)| k.as_str()).collect();
    client_runtime().block_on(async {
        // One seed is enough: the client learns the other members.
        let client = Client::builder().seeds([&c.seeds()[1]]).build().await.unwrap();
        assert_eq!(client.nodes().len(), 3);
        let ttl = Duration::from_secs(300);
        for (k, v) in &data {
            client.set(k, v.clone(), ttl).await.unwrap();
        }
        for (k, v) in &data {
            assert_eq!(client.get(k).await.unwrap().as_deref(), Some(v.as_bytes()));
        }
        let got = client.get_many(&keys).await.unwrap();
        for ((_, v), g) in data.iter().zip(&got) {
            assert_eq!(g.as_deref(), Some(v.as_bytes()));
        }
        for (k, _) in data.iter().take(50) {
            assert!(client.touch(k, ttl).await.unwrap());
            assert!(client.get_and_touch(k, ttl).await.unwrap().is_some());
            let item = client.gets(k).await.unwrap().unwrap();
            assert!(client.cas(k, "swapped", ttl, item.cas).await.unwrap().is_stored());
            assert!(client.delete(k).await.unwrap());
            assert!(client.add(k, "1", ttl).await.unwrap());
            assert_eq!(client.incr(k, 1).await.unwrap(), Some(2));
        }
        let stats = client.stats();
        assert_eq!(stats.failovers, 0, "{stats:?}");
        assert_eq!(stats.unreachable, 0, "{stats:?}");
    });
    // The keys are spread, and no node forwarded anything.
    let items_per_node: Vec<f64> = c
        .nodes
        .iter()
        .map(|n| stat(&n.process, "curr_items").unwrap_or(0.0))
        .collect();
    assert!(items_per_node.iter().all(|&n| n > 100.0), "{items_per_node:?}");
    assert_eq!(forwarded(&c), vec![0.0; 3]);
}

#[test]
fn reads_survive_the_owner_being_killed_with_two_replicas() {
    let c = TestCluster::start(3, 2, &[]);
    let data = items("kill", 600);
    let rt = client_runtime();
    let client = rt.block_on(async {
        let client = Client::builder()
            .seeds(c.seeds())
            .timeout(Duration::from_millis(500))
            .build()
            .await
            .unwrap();
        for (k, v) in &data {
            client.set(k, v.clone(), Duration::ZERO).await.unwrap();
        }
        client
    });
    // Kill the primary of the first key: a third of the keys lose their primary.
    let victim_name = client.owners(&data[0].0)[0].name.clone();
    let victim = c.nodes.iter().position(|n| n.name == victim_name).unwrap();
    let orphaned = data
        .iter()
        .filter(|(k, _)| client.owners(k)[0].name == victim_name)
        .count();
    assert!(orphaned > 100, "{orphaned} keys on {victim_name}");
    c.nodes[victim].process.signal(Signal::Kill);

    // Read everything, one by one and in batches, right away and until the cluster
    // has dropped the node and the client has installed the new ring: every read
    // returns the value, none fails.
    let keys: Vec<&str> = data.iter().map(|(k, _)| k.as_str()).collect();
    let start = Instant::now();
    let mut rounds = 0;
    rt.block_on(async {
        loop {
            for (k, v) in &data {
                let got = client.get(k).await;
                assert_eq!(
                    got.as_ref().ok().and_then(|g| g.as_deref()),
                    Some(v.as_bytes()),
                    "{k} after {:?}: {got:?}",
                    start.elapsed()
                );
            }
            let got = client.get_many(&keys).await.unwrap();
            for ((k, v), g) in data.iter().zip(&got) {
                assert_eq!(g.as_deref(), Some(v.as_bytes()), "{k} (get_many)");
            }
            rounds += 1;
            let dropped = !client.nodes().iter().any(|n| n.name == victim_name);
            if dropped && rounds >= 2 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the client never dropped {victim_name}"
            );
        }
    });
    println!(
        "{rounds} read rounds over {:?} until the ring dropped {victim_name}; {:?}",
        start.elapsed(),
        client.stats()
    );
    assert!(client.stats().failovers > 0);
    assert_eq!(client.stats().unreachable, 0);
}

#[test]
fn a_joining_node_is_used_within_two_seconds() {
    let mut c = TestCluster::start(2, 1, &[]);
    let rt = client_runtime();
    let client = rt.block_on(async { Client::builder().seeds(c.seeds()).build().await.unwrap() });
    let before = client.topology_version();
    c.add();
    c.wait_converged(Duration::from_secs(15));
    // From the moment every node agrees, the client has 2 s to notice.
    let converged = Instant::now();
    let noticed = rt.block_on(async {
        loop {
            if client.nodes().len() == 3 {
                return converged.elapsed();
            }
            assert!(
                converged.elapsed() < Duration::from_secs(2),
                "client still on {:?}",
                client.nodes()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    println!("client picked up the new node {noticed:?} after the cluster converged");
    assert_ne!(client.topology_version(), before);
    // And uses it: keys the new ring gives n3 are stored there, without forwarding.
    let data = items("join", 300);
    rt.block_on(async {
        for (k, v) in &data {
            client.set(k, v.clone(), Duration::ZERO).await.unwrap();
        }
    });
    let on_new = data.iter().filter(|(k, _)| client.owners(k)[0].name == "n3").count();
    assert!(on_new > 30, "{on_new}");
    assert_eq!(stat(&c.nodes[2].process, "curr_items"), Some(on_new as f64));
    assert_eq!(forwarded(&c), vec![0.0; 3]);
}
