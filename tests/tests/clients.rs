//! Real third-party memcached clients against a ringcache node: pymemcache (Python), the
//! libmemcached command-line tools, and the Rust `memcache` crate (text protocol). Each also
//! runs against node 1 of a 3-node `--replicas 2` cluster (`..._through_a_cluster`), with
//! every key the test names placed so that node 1 is not its primary: a cluster must look
//! like one memcached to them.
//!
//! A missing client fails its test with the command that installs it; `scripts/test.sh`
//! installs them all. With `RINGCACHE_DIFF_AGAINST=memcached` the node (and each cluster
//! node) is a memcached, which checks the tests themselves.

use std::process::Command;
use std::time::Duration;

use ringcache_tests::cluster::ClusterTarget;
use ringcache_tests::tools::{require_command, require_python_module, run_bounded, workspace_root};
use ringcache_tests::{ServerKind, ServerProcess};

const NODE_FLAGS: &[&str] = &["-m", "64", "-I", "1m", "-t", "2"];
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

fn node() -> ServerProcess {
    ServerProcess::start(ServerKind::target(), NODE_FLAGS)
}

fn cluster() -> ClusterTarget {
    ClusterTarget::start(NODE_FLAGS)
}

/// Runs the pymemcache suite against the given ports and fails with its output unless it
/// passes. With `keymap`, the suite's keys are first listed and each replaced by
/// `keymap(key)`.
fn run_pymemcache(ports: &[u16], keymap: Option<&dyn Fn(&str) -> String>) {
    let python = require_python_module("pymemcache", "pip install pymemcache");
    let script = workspace_root().join("tests/python/pymemcache_suite.py");
    let mut cmd = Command::new(&python);
    if let Some(map) = keymap {
        let prefix = format!("py-{}-{}-", std::process::id(), ports[0]);
        let mut list = Command::new(&python);
        list.arg(&script).args(["--prefix", &prefix, "--list-keys"]);
        let listed = run_bounded(&mut list, Duration::from_secs(30));
        assert!(
            listed.status.success(),
            "pymemcache suite --list-keys failed: {listed:?}"
        );
        let lines: String = listed.stdout.lines().map(|k| format!("{k}\t{}\n", map(k))).collect();
        assert!(lines.lines().count() >= 100, "the suite listed too few keys: {lines}");
        let file = std::env::temp_dir().join(format!("ringcache-pymemcache-keys-{prefix}txt"));
        std::fs::write(&file, lines).expect("write the key map");
        cmd.arg(&script).args(["--prefix", &prefix, "--keymap"]).arg(&file);
    } else {
        cmd.arg(&script);
    }
    cmd.args(ports.iter().map(|p| p.to_string()));
    let ran = run_bounded(&mut cmd, Duration::from_secs(120));
    println!("{}", ran.stdout);
    assert!(
        ran.status.success(),
        "pymemcache suite failed ({}):\n{}\n{}",
        ran.status,
        ran.stdout,
        ran.stderr
    );
    assert!(
        ran.stdout.contains(" passed, 0 failed"),
        "unexpected suite output: {}",
        ran.stdout
    );
}

#[test]
fn pymemcache_client_and_hashclient_on_one_node() {
    let n = node();
    run_pymemcache(&[n.port()], None);
}

/// pymemcache's Client talks to node 1 and its HashClient spreads over all three nodes (by
/// its own hash, not the ring's); every key is one whose primary is not node 1.
#[test]
fn pymemcache_client_and_hashclient_through_a_cluster() {
    let c = cluster();
    let ports: Vec<u16> = c.addrs().iter().map(|a| a.port()).collect();
    run_pymemcache(&ports, Some(&|k: &str| c.key_elsewhere(k)));
}

/// A libmemcached tool (Debian names them memccp, memccat, ...) pointed at `port`.
fn tool(name: &str, port: u16) -> Command {
    let path = require_command(name, "apt-get install libmemcached-tools");
    let mut cmd = Command::new(path);
    cmd.arg(format!("--servers=127.0.0.1:{port}"));
    cmd
}

fn raw_get(n: &ServerProcess, key: &str) -> Vec<u8> {
    n.connect().request(format!("get {key}\r\n").as_bytes(), b"END\r\n")
}

#[test]
fn libmemcached_tools_copy_cat_remove_stat_flush() {
    let n = node();
    libmemcached_tools(&n, &|k: &str| k.to_string());
}

/// The tools talk to node 1; the file's key and the flushed key live on other nodes.
#[test]
fn libmemcached_tools_through_a_cluster() {
    let c = cluster();
    libmemcached_tools(c.process(0), &|k: &str| c.key_elsewhere(k));
}

/// memccp / memccat / memcstat / memcrm / memcflush against `n`, with the keys `key` makes
/// of the test's names.
fn libmemcached_tools(n: &ServerProcess, key_of: &dyn Fn(&str) -> String) {
    let port = n.port();
    let dir = std::env::temp_dir().join(format!("ringcache-lmtools-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let key = &key_of("lm-file.txt");
    let path = dir.join(key);
    let content: String = (0..400).map(|i| format!("line {i}: the quick brown fox\n")).collect();
    std::fs::write(&path, &content).expect("write temp file");

    // memccp stores the file under its base name.
    let ran = run_bounded(tool("memccp", port).arg(&path), TOOL_TIMEOUT);
    assert!(ran.status.success(), "memccp failed: {ran:?}");
    let stored = raw_get(n, key);
    let header = format!("VALUE {key} ");
    assert!(
        stored.starts_with(header.as_bytes()),
        "memccp did not store {key}: {}",
        String::from_utf8_lossy(&stored)
    );
    assert!(
        stored.windows(content.len()).any(|w| w == content.as_bytes()),
        "stored value differs from the file"
    );

    // memccat prints it back.
    let ran = run_bounded(tool("memccat", port).arg(key), TOOL_TIMEOUT);
    assert!(ran.status.success(), "memccat failed: {ran:?}");
    assert!(
        ran.stdout.starts_with(&content),
        "memccat printed something else: {:?}",
        ran.stdout
    );

    // memcstat reports the server.
    let ran = run_bounded(&mut tool("memcstat", port), TOOL_TIMEOUT);
    assert!(ran.status.success(), "memcstat failed: {ran:?}");
    assert!(
        ran.stdout.contains(&format!("Server: 127.0.0.1 ({port})")),
        "memcstat: {}",
        ran.stdout
    );
    for stat in ["pid:", "uptime:", "version:", "curr_items:"] {
        assert!(ran.stdout.contains(stat), "memcstat shows no `{stat}`: {}", ran.stdout);
    }

    // memcrm removes it; memccat then fails.
    let ran = run_bounded(tool("memcrm", port).arg(key), TOOL_TIMEOUT);
    assert!(ran.status.success(), "memcrm failed: {ran:?}");
    assert_eq!(raw_get(n, key), b"END\r\n", "memcrm left the key");
    let ran = run_bounded(tool("memccat", port).arg(key), TOOL_TIMEOUT);
    assert!(!ran.status.success(), "memccat of a removed key succeeded: {ran:?}");

    // memcflush empties the node (through a cluster: every node).
    let mut c = n.connect();
    let other = key_of("lm-other");
    assert_eq!(
        c.request(format!("set {other} 0 0 2\r\nhi\r\n").as_bytes(), b"\r\n"),
        b"STORED\r\n"
    );
    let ran = run_bounded(&mut tool("memcflush", port), TOOL_TIMEOUT);
    assert!(ran.status.success(), "memcflush failed: {ran:?}");
    assert_eq!(raw_get(n, &other), b"END\r\n", "memcflush left a key");

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rust_memcache_crate() {
    let n = node();
    memcache_crate(&n, &|k: &str| k.to_string());
}

/// The crate talks to node 1; every key lives on other nodes.
#[test]
fn rust_memcache_crate_through_a_cluster() {
    let c = cluster();
    memcache_crate(c.process(0), &|k: &str| c.key_elsewhere(k));
}

/// The `memcache` crate against `n`, with the keys `key` makes of the test's names.
fn memcache_crate(n: &ServerProcess, key: &dyn Fn(&str) -> String) {
    let url = format!("memcache://127.0.0.1:{}?protocol=ascii&timeout=5", n.port());
    let client = memcache::Client::connect(url.as_str()).expect("memcache crate connects");
    let a: &str = &key("rs-a");
    let missing: &str = &key("rs-missing");
    let b: &str = &key("rs-b");
    let none: &str = &key("rs-none");
    let flags: &str = &key("rs-flags");
    let num: &str = &key("rs-n");
    let num_missing: &str = &key("rs-n-missing");
    let large: &str = &key("rs-large");

    client.set(a, "hello", 0).expect("set");
    assert_eq!(client.get::<String>(a).expect("get"), Some("hello".to_string()));
    assert_eq!(client.get::<String>(missing).expect("get missing"), None);

    // add / replace (the crate maps NOT_STORED to Ok, so check the stored values)
    client.add(b, "1", 0).expect("add new");
    client.add(b, "2", 0).expect("add existing");
    assert_eq!(
        client.get::<String>(b).unwrap(),
        Some("1".to_string()),
        "add replaced a value"
    );
    client.replace(none, "x", 0).expect("replace missing");
    assert_eq!(client.get::<String>(none).unwrap(), None, "replace created a key");
    client.replace(b, "3", 0).expect("replace existing");
    assert_eq!(client.get::<String>(b).unwrap(), Some("3".to_string()));

    // append / prepend
    client.append(b, "45").expect("append");
    client.prepend(b, "012").expect("prepend");
    assert_eq!(client.get::<String>(b).unwrap(), Some("012345".to_string()));

    // flags stored by another client come back through the crate
    assert_eq!(
        n.connect()
            .request(format!("set {flags} 42 0 1\r\nv\r\n").as_bytes(), b"\r\n"),
        b"STORED\r\n"
    );
    let (v, got_flags): (Vec<u8>, u32) = client.get(flags).unwrap().expect("hit");
    assert_eq!((v.as_slice(), got_flags), (b"v".as_slice(), 42));

    // gets + cas
    let got: std::collections::HashMap<String, (Vec<u8>, u32, Option<u64>)> = client.gets(&[a, b]).expect("gets");
    let cas = got[a].2.expect("gets returns a cas");
    assert!(
        client.cas(a, "v2", 0, cas).expect("cas"),
        "cas with a fresh token must store"
    );
    assert!(
        !client.cas(a, "v3", 0, cas).expect("cas"),
        "cas with a stale token must not store"
    );
    assert_eq!(client.get::<String>(a).unwrap(), Some("v2".to_string()));

    // incr / decr
    client.set(num, 10u64, 0).expect("set number");
    assert_eq!(client.increment(num, 5).expect("incr"), 15);
    assert_eq!(client.decrement(num, 20).expect("decr"), 0);
    assert!(
        client.increment(num_missing, 1).is_err(),
        "incr of a missing key must fail"
    );

    // touch / delete
    assert!(client.touch(a, 100).expect("touch"));
    assert!(!client.touch(missing, 100).expect("touch missing"));
    assert!(client.delete(a).expect("delete"));
    assert!(!client.delete(a).expect("delete again"));
    assert_eq!(client.get::<String>(a).unwrap(), None);

    // a large value
    let big = vec![b'z'; 500 * 1024];
    client.set(large, big.as_slice(), 0).expect("set large");
    assert_eq!(client.get::<Vec<u8>>(large).unwrap(), Some(big));

    // version and flush
    let versions = client.version().expect("version");
    assert_eq!(versions.len(), 1);
    client.flush().expect("flush");
    assert_eq!(client.get::<String>(b).unwrap(), None, "flush left a key");
}
