//! `scripts/cluster.sh`, the README's first command: it starts a cluster whose nodes
//! all see each other, and refuses to report a node as started when another program
//! holds its port (which used to print "started node-2" while the real node-2 had
//! exited and the others formed clusters of their own).

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use ringcache_tests::process::{free_port, ringcache_bin};
use ringcache_tests::tools::{run_bounded, workspace_root};

/// Three consecutive free TCP ports (and the UDP ports 100 above them are checked by
/// the nodes themselves: a taken one makes the script fail, and the test retries).
fn free_base() -> u16 {
    for _ in 0..50 {
        let base = free_port();
        if base < 60000 && (0..3).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no three consecutive free ports");
}

fn script(args: &[&str], base: u16, state: &std::path::Path) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(workspace_root().join("scripts/cluster.sh"))
        .args(args)
        .env("RINGCACHE_BIN", ringcache_bin())
        .env("CLUSTER_STATE", state)
        .env("BASE_PORT", base.to_string())
        .env("GOSSIP_BASE", (base + 100).to_string());
    cmd
}

#[test]
fn starts_a_cluster_and_refuses_a_taken_port() {
    let state = std::env::temp_dir().join(format!("ringcache-cluster-sh-{}", std::process::id()));
    let base = free_base();
    let started = run_bounded(&mut script(&["start", "3"], base, &state), Duration::from_secs(60));
    // Every node lists the three members once gossip has spread (the nodes joined one
    // cluster).
    let mut status = run_bounded(&mut script(&["status"], base, &state), Duration::from_secs(30));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while status.stdout.matches("MEMBER node-").count() < 9 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        status = run_bounded(&mut script(&["status"], base, &state), Duration::from_secs(30));
    }
    let stopped = run_bounded(&mut script(&["stop"], base, &state), Duration::from_secs(30));
    assert!(started.status.success(), "start failed: {started:?}");
    assert!(stopped.status.success(), "stop failed: {stopped:?}");
    for i in 1..=3 {
        assert!(started.stdout.contains(&format!("started node-{i}")), "{started:?}");
    }
    let members = status.stdout.matches("MEMBER node-").count();
    assert_eq!(members, 9, "{status:?}");

    // Another program holds node-2's port: nothing is reported started.
    let base = free_base();
    let squatter = TcpListener::bind(("127.0.0.1", base + 1)).expect("bind");
    let refused = run_bounded(&mut script(&["start", "3"], base, &state), Duration::from_secs(60));
    let _ = run_bounded(&mut script(&["stop"], base, &state), Duration::from_secs(30));
    drop(squatter);
    assert!(!refused.status.success(), "started despite a taken port: {refused:?}");
    assert!(!refused.stdout.contains("started node-"), "{refused:?}");
    assert!(refused.stderr.contains("already taken"), "{refused:?}");
    let _ = std::fs::remove_dir_all(&state);
}
