//! Compatibility with what real clients expect, beyond our own scripts:
//! - pymemcache's own integration tests (`pymemcache/test/test_integration.py` from its
//!   source distribution, fetched at test time into `target/`, never committed), run with
//!   pytest against a single node and against node 1 of a 3-node `--replicas 2` cluster;
//! - emcache, an asyncio client that reads the `version` line strictly, through a single
//!   node and through a cluster node;
//! - `version` (one token, read by libmemcached), `stats cachedump` and `cache_memlimit`
//!   (which pymemcache's `test_misc` uses) on a running node.
//!
//! A missing tool fails its test with the command that installs it; `scripts/test.sh`
//! installs them all. With `RINGCACHE_DIFF_AGAINST=memcached` the single-node tests run
//! against a memcached, which checks the tests themselves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use ringcache_tests::cluster::{stat, TestCluster};
use ringcache_tests::tools::{require_command, require_python_module, run_bounded, workspace_root, Ran};
use ringcache_tests::{ServerKind, ServerProcess};

const NODE_FLAGS: &[&str] = &["-m", "64", "-I", "1m", "-t", "2"];
/// The pymemcache release whose integration tests are run (its sdist has them).
const PYMEMCACHE_VERSION: &str = "4.0.0";
const MIB: u64 = 1 << 20;

fn node() -> ServerProcess {
    ServerProcess::start(ServerKind::target(), NODE_FLAGS)
}

/// `target/` of this workspace (or `$CARGO_TARGET_DIR`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// pymemcache's source distribution, unpacked under `target/client-suites/`: downloaded
/// with pip the first time (into a directory of this process's own, then renamed into
/// place, so test processes running at once never see half of it; tests of this
/// process, which `cargo test` runs on threads, take turns).
fn pymemcache_sdist(python: &Path) -> PathBuf {
    static FETCH: Mutex<()> = Mutex::new(());
    let _turn = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let root = target_dir().join("client-suites");
    let dir = root.join(format!("pymemcache-{PYMEMCACHE_VERSION}"));
    let suite = |d: &Path| d.join("pymemcache/test/test_integration.py").is_file();
    if suite(&dir) {
        return dir;
    }
    let tmp = root.join(format!(".download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("create the download directory");
    let ran = run_bounded(
        Command::new(python)
            .args(["-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"])
            .arg("--dest")
            .arg(&tmp)
            .arg(format!("pymemcache=={PYMEMCACHE_VERSION}")),
        Duration::from_secs(300),
    );
    assert!(
        ran.status.success(),
        "pip download of pymemcache's sdist failed: {ran:?}"
    );
    let archive = tmp.join(format!("pymemcache-{PYMEMCACHE_VERSION}.tar.gz"));
    let ran = run_bounded(
        Command::new(python)
            .args([
                "-c",
                "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])",
            ])
            .arg(&archive)
            .arg(&tmp),
        Duration::from_secs(60),
    );
    assert!(ran.status.success(), "unpacking {} failed: {ran:?}", archive.display());
    let unpacked = tmp.join(format!("pymemcache-{PYMEMCACHE_VERSION}"));
    assert!(suite(&unpacked), "the sdist has no pymemcache/test/test_integration.py");
    // Another process may have won the race; its copy is as good as ours.
    if std::fs::rename(&unpacked, &dir).is_err() {
        assert!(suite(&dir), "could not move the sdist into {}", dir.display());
    }
    let _ = std::fs::remove_dir_all(&tmp);
    dir
}

/// Runs pymemcache's integration tests (all of them: `-m integration`) against
/// 127.0.0.1:`port` with the options of its conftest (`--server`, `--port`); the sdist's
/// `setup.cfg` options (coverage, `-m unit`) are dropped.
fn run_pymemcache_integration(port: u16) -> Ran {
    let python = require_python_module("pytest", "pip install pytest");
    require_python_module("pymemcache", "pip install pymemcache");
    let sdist = pymemcache_sdist(&python);
    let mut cmd = Command::new(&python);
    cmd.current_dir(&sdist)
        .env("PYTHONPATH", &sdist)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts="])
        .args(["-m", "integration", "-q", "-rfE", "--tb=short", "--color=no"])
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .arg("pymemcache/test/test_integration.py");
    run_bounded(&mut cmd, Duration::from_secs(300))
}

/// The count before `word` in pytest's closing line (`100 passed, 3 skipped in 2.1s`).
fn pytest_count(out: &str, word: &str) -> u32 {
    let Some(last) = out
        .lines()
        .rev()
        .find(|l| l.contains(" passed") || l.contains(" failed"))
    else {
        return 0;
    };
    last.split(',')
        .filter_map(|part| {
            let mut words = part.split_whitespace().map(|w| w.trim_matches('='));
            let n = words.find(|w| w.parse::<u32>().is_ok())?;
            (words.next()? == word).then(|| n.parse().ok()).flatten()
        })
        .next()
        .unwrap_or(0)
}

fn assert_pymemcache_passes(ran: &Ran, against: &str) {
    println!("{}", ran.stdout);
    let (passed, failed) = (pytest_count(&ran.stdout, "passed"), pytest_count(&ran.stdout, "failed"));
    assert!(
        ran.status.success() && failed == 0,
        "pymemcache's integration tests fail against {against} ({}, {passed} passed, {failed} failed):\n{}\n{}",
        ran.status,
        ran.stdout,
        ran.stderr
    );
    // 100 tests in 4.0.0 without gevent (3 more, TLS, are skipped by pymemcache itself).
    assert!(
        passed >= 100,
        "only {passed} of pymemcache's integration tests ran against {against}:\n{}",
        ran.stdout
    );
}

#[test]
fn pymemcache_integration_tests_on_one_node() {
    let n = node();
    let ran = run_pymemcache_integration(n.port());
    assert_pymemcache_passes(&ran, "a single node");
}

#[test]
fn pymemcache_integration_tests_through_a_replicated_cluster_node() {
    let cluster = TestCluster::start(3, 2, &["-I", "1m"]);
    let ran = run_pymemcache_integration(cluster.nodes[0].process.port());
    assert_pymemcache_passes(&ran, "node 1 of a 3-node --replicas 2 cluster");
}

/// Runs `tests/python/emcache_suite.py` against 127.0.0.1:`port`.
fn run_emcache(port: u16, against: &str) {
    let python = require_python_module("emcache", "pip install emcache");
    let script = workspace_root().join("tests/python/emcache_suite.py");
    let ran = run_bounded(
        Command::new(python).arg(&script).arg(port.to_string()),
        Duration::from_secs(120),
    );
    println!("{}", ran.stdout);
    assert!(
        ran.status.success() && ran.stdout.contains(" passed, 0 failed"),
        "emcache suite failed against {against} ({}):\n{}\n{}",
        ran.status,
        ran.stdout,
        ran.stderr
    );
}

#[test]
fn emcache_reads_version_and_serves_keys_on_one_node() {
    let n = node();
    run_emcache(n.port(), "a single node");
}

#[test]
fn emcache_reads_version_and_serves_keys_through_a_cluster_node() {
    let cluster = TestCluster::start(3, 2, &[]);
    run_emcache(
        cluster.nodes[0].process.port(),
        "node 1 of a 3-node --replicas 2 cluster",
    );
}

#[test]
fn version_is_one_token_that_libmemcached_reads_as_1_6() {
    let n = node();
    let reply = n.connect().request(b"version\r\n", b"\r\n");
    assert_eq!(reply, b"VERSION 1.6.18\r\n");
    let stats = String::from_utf8_lossy(&n.connect().request(b"stats\r\n", b"END\r\n")).into_owned();
    assert!(stats.contains("STAT version 1.6.18\r\n"), "{stats}");
    if n.kind() == ServerKind::Ringcache {
        let own = format!("STAT ringcache_version {}\r\n", env!("CARGO_PKG_VERSION"));
        assert!(stats.contains(&own), "no `{own}` in {stats}");
    }
    // libmemcached parses the numbers (memcached_version): memcstat prints them back.
    let memcstat = require_command("memcstat", "apt-get install libmemcached-tools");
    let ran = run_bounded(
        Command::new(memcstat)
            .arg(format!("--servers=127.0.0.1:{}", n.port()))
            .arg("--server-version"),
        Duration::from_secs(30),
    );
    assert!(ran.status.success(), "memcstat --server-version failed: {ran:?}");
    // (libmemcached 1.1's memcstat prints the versions on stderr.)
    let printed = format!("{}{}", ran.stdout, ran.stderr);
    assert_eq!(printed.trim(), format!("127.0.0.1:{} 1.6.18", n.port()));
}

#[test]
fn cachedump_answers_end_for_every_class() {
    let n = node();
    let mut c = n.connect();
    assert_eq!(c.request(b"set cd-k 0 0 1\r\nx\r\n", b"\r\n"), b"STORED\r\n");
    for class in ["0 0", "1 1", "1 100", "63 5"] {
        let req = format!("stats cachedump {class}\r\n");
        let reply = c.request(req.as_bytes(), b"\r\n");
        // memcached lists an item once it reached the cold LRU; ringcache has no classes.
        if n.kind() == ServerKind::Ringcache || reply == b"END\r\n" {
            assert_eq!(reply, b"END\r\n", "{req}");
        }
    }
    assert_eq!(
        c.request(b"stats cachedump 64 1\r\n", b"\r\n"),
        b"CLIENT_ERROR Illegal slab id\r\n"
    );
    assert_eq!(
        c.request(b"stats cachedump 1\r\n", b"\r\n"),
        b"CLIENT_ERROR bad command line\r\n"
    );
}

/// `VmRSS` of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
        .expect("VmRSS value")
        * 1024
}

/// Stores `count` values of `len` bytes under `prefix<i>`, 100 per pipelined batch.
fn fill(n: &ServerProcess, prefix: &str, count: usize, len: usize) {
    let mut c = n.connect();
    let value = "v".repeat(len);
    for batch in (0..count).collect::<Vec<_>>().chunks(100) {
        let mut req = String::new();
        for i in batch {
            req.push_str(&format!("set {prefix}{i} 0 0 {len} noreply\r\n{value}\r\n"));
        }
        req.push_str("mn\r\n");
        assert_eq!(c.request(req.as_bytes(), b"MN\r\n"), b"MN\r\n");
    }
}

fn maxbytes(n: &ServerProcess) -> u64 {
    let reply = String::from_utf8_lossy(&n.connect().request(b"stats settings\r\n", b"END\r\n")).into_owned();
    reply
        .lines()
        .find_map(|l| l.strip_prefix("STAT maxbytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxbytes in {reply}"))
}

#[test]
fn cache_memlimit_shrinks_and_grows_a_running_node() {
    let n = ServerProcess::start(ServerKind::target(), &["-m", "128", "-I", "1m", "-t", "2"]);
    let pid = n.pid().expect("pid");
    let stat_of = |name: &str| stat(&n, name).unwrap_or_else(|| panic!("no stat {name}")) as u64;
    // About 115 MiB of 4000-byte values: the store's segments (64 KiB, on the heap).
    fill(&n, "full", 30_000, 4000);
    let full_items = stat_of("curr_items");
    let full_rss = rss(pid);
    assert!(stat_of("bytes") > 100 * MIB, "the node did not fill");

    let mut c = n.connect();
    assert_eq!(c.request(b"cache_memlimit 16\r\n", b"\r\n"), b"OK\r\n");
    assert_eq!(maxbytes(&n), 16 * MIB, "stats settings reports the new limit");
    assert_eq!(stat_of("limit_maxbytes"), 16 * MIB);
    if n.kind() == ServerKind::Ringcache {
        // memcached gives memory back slowly (its slab mover); ringcache at once.
        assert!(
            stat_of("bytes") <= 16 * MIB,
            "bytes {} over the new limit",
            stat_of("bytes")
        );
        assert!(stat_of("curr_items") < full_items / 4);
        let after = rss(pid);
        assert!(
            after + 64 * MIB < full_rss,
            "RSS went from {full_rss} to {after} bytes: the memory was not returned"
        );
    }
    // The smaller node goes on serving.
    assert_eq!(c.request(b"set after 0 0 2\r\nok\r\n", b"\r\n"), b"STORED\r\n");
    assert_eq!(
        c.request(b"get after\r\n", b"END\r\n"),
        b"VALUE after 0 2\r\nok\r\nEND\r\n"
    );

    // A grow lets more in than the small limit held.
    assert_eq!(c.request(b"cache_memlimit 96 noreply\r\nmn\r\n", b"\r\n"), b"MN\r\n");
    assert_eq!(maxbytes(&n), 96 * MIB);
    fill(&n, "grown", 15_000, 4000);
    assert!(
        stat_of("bytes") > 40 * MIB,
        "a grow let only {} bytes in",
        stat_of("bytes")
    );
    if n.kind() == ServerKind::Ringcache {
        assert!(stat_of("bytes") <= 96 * MIB);
    }

    // Bad arguments answer what memcached answers.
    for (req, reply) in [
        (
            &b"cache_memlimit 7\r\n"[..],
            &b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"[..],
        ),
        (
            b"cache_memlimit 1000000001\r\n",
            b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n",
        ),
        (b"cache_memlimit x\r\n", b"ERROR\r\n"),
        (b"cache_memlimit\r\n", b"ERROR\r\n"),
    ] {
        assert_eq!(c.request(req, b"\r\n"), reply, "{}", String::from_utf8_lossy(req));
    }
    assert_eq!(maxbytes(&n), 96 * MIB, "a refused change changes nothing");
}
