//! A polite stop (SIGTERM): the node leaves, hands its items to their owners, lets its
//! connections finish and exits 0, so a scale-down or a rolling restart loses nothing,
//! even with one replica (where the leaving node holds the only copy of its share).

use std::time::Duration;

use ringcache_tests::cluster::{get_all, set_all, stat, TestCluster};
use ringcache_tests::Signal;

const KEYS: usize = 3_000;

fn items(tag: &str) -> Vec<(String, String)> {
    (0..KEYS).map(|i| (format!("{tag}:{i}"), format!("v{i}"))).collect()
}

fn assert_every_key_read(c: &TestCluster, i: usize, items: &[(String, String)]) {
    let mut conn = c.nodes[i].process.connect();
    let keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
    let got = get_all(&mut conn, &keys, 50);
    let lost: Vec<&String> = keys
        .iter()
        .zip(&got)
        .zip(items)
        .filter(|((_, g), (_, v))| g.as_deref() != Some(v.as_str()))
        .map(|((k, _), _)| k)
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {KEYS} keys lost after a polite stop, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

fn polite_stop_loses_nothing(replicas: u32) {
    let mut c = TestCluster::start(3, replicas, &[]);
    let data = items(&format!("drain{replicas}"));
    let mut conn = c.nodes[0].process.connect();
    assert_eq!(set_all(&mut conn, &data), Vec::<String>::new());
    let held = stat(&c.nodes[1].process, "curr_items").unwrap_or(0.0);
    assert!(held > 0.0, "node 2 holds nothing to hand off");
    c.nodes[1].process.signal(Signal::Term);
    let status = c.nodes[1].process.wait_exit(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "exit after SIGTERM: {status:?}");
    // The default log level shows warnings: a polite stop shows none.
    let log = c.nodes[1].process.log();
    assert!(!log.contains("WARN"), "a polite stop logged a warning:\n{log}");
    c.wait_converged(Duration::from_secs(10));
    assert_every_key_read(&c, 0, &data);
    assert_every_key_read(&c, 2, &data);
}

#[test]
fn with_one_replica_a_polite_stop_hands_its_share_to_the_others() {
    polite_stop_loses_nothing(1);
}

#[test]
fn with_two_replicas_a_polite_stop_loses_nothing() {
    polite_stop_loses_nothing(2);
}
