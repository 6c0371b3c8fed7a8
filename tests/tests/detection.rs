//! Failure detection with the default gossip timing (docs/ARCHITECTURE.md,
//! "Membership"): fast for a crash, and no false alarm for a node that is merely busy.
//!
//! - A SIGKILLed node of three is off both survivors' rings within a second (measured
//!   from the kill to the last survivor's `stats` showing two members; each kill is
//!   reported).
//! - Under a CPU hog on every core (busy threads at normal priority) with short
//!   SIGSTOP pauses of one node at a time, no node is ever declared down: no survivor
//!   counts a member down (`gossip_members_down`), rejoins, or changes its ring. It
//!   runs `RINGCACHE_DETECTION_SECS` seconds (60 by default; the check is 300),
//!   pausing a node every 3 s for `RINGCACHE_DETECTION_PAUSE_MS` (250 by default; a
//!   pause longer than a probe period plus `--gossip-suspect-ms`, 600 ms by default,
//!   may rightly be taken for a crash).
//!
//! Every loop is bounded in count and time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcache_tests::cluster::TestCluster;
use ringcache_tests::{RawConn, ServerProcess, Signal};

/// The node's `stats`, by name (empty if it does not answer).
fn stats(p: &ServerProcess) -> HashMap<String, String> {
    let Ok(mut conn) = RawConn::connect(p.addr()) else {
        return HashMap::new();
    };
    let reply = conn.request(b"stats\r\n", b"END\r\n");
    String::from_utf8_lossy(&reply)
        .lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn num(s: &HashMap<String, String>, name: &str) -> Option<u64> {
    s.get(name).and_then(|v| v.parse().ok())
}

/// How long a kill is allowed to take here. The target is a second (measured: 607-972 ms
/// over 30 kills on a loaded 2-core machine, docs/ARCHITECTURE.md); the bound is wider
/// so a CI machine under load does not fail on scheduling noise, and still catches the
/// old timing (about 3 s). Each kill's time is printed.
const DETECTED_WITHIN: Duration = Duration::from_millis(2000);

#[test]
fn a_killed_node_is_off_every_ring_within_a_second() {
    let kills: usize = std::env::var("RINGCACHE_DETECTION_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut c = TestCluster::start(3, 1, &[]);
    let mut took = Vec::new();
    for round in 0..kills {
        let victim = round % 3;
        let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
        // Let the restarted node's probes settle into their rhythm before the next kill.
        std::thread::sleep(Duration::from_millis(500 + 137 * (round as u64 % 4)));
        let killed_at = Instant::now();
        c.nodes[victim].process.kill();
        let mut off = [None; 3];
        while killed_at.elapsed() < Duration::from_secs(10) && survivors.iter().any(|&i| off[i].is_none()) {
            for &i in &survivors {
                if off[i].is_none() && num(&stats(&c.nodes[i].process), "cluster_members") == Some(2) {
                    off[i] = Some(killed_at.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let last = survivors.iter().map(|&i| off[i]).max().flatten();
        let Some(last) = last else {
            panic!(
                "kill {round}: a survivor still has 3 members after 10 s: {}",
                c.describe()
            );
        };
        eprintln!(
            "kill {round} ({}): off every ring after {} ms ({:?})",
            c.nodes[victim].name,
            last.as_millis(),
            survivors
                .iter()
                .map(|&i| off[i].map(|d| d.as_millis()))
                .collect::<Vec<_>>()
        );
        took.push(last);
        c.restart(victim);
        c.wait_converged(Duration::from_secs(15));
    }
    let mut sorted = took.clone();
    sorted.sort();
    eprintln!(
        "detection over {} kills: min {} ms, median {} ms, max {} ms",
        sorted.len(),
        sorted[0].as_millis(),
        sorted[sorted.len() / 2].as_millis(),
        sorted[sorted.len() - 1].as_millis()
    );
    assert!(
        took.iter().all(|t| *t <= DETECTED_WITHIN),
        "a kill took longer than {DETECTED_WITHIN:?} to leave every ring: {took:?}"
    );
}

/// Busy threads, one per core, at normal priority, until `stop` or `until`.
fn hog(stop: Arc<AtomicBool>, until: Instant) -> Vec<std::thread::JoinHandle<()>> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (0..cores)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Relaxed) && Instant::now() < until {
                    for i in 0..100_000u64 {
                        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
                    }
                }
            })
        })
        .collect()
}

#[test]
fn no_node_is_declared_down_while_busy_or_briefly_paused() {
    let secs: u64 = std::env::var("RINGCACHE_DETECTION_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let pause_ms: u64 = std::env::var("RINGCACHE_DETECTION_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250);
    let mut c = TestCluster::start(3, 1, &[]);
    let before: Vec<HashMap<String, String>> = c.nodes.iter().map(|n| stats(&n.process)).collect();
    let version = num(&before[0], "cluster_ring_version").expect("ring version");
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let stop = Arc::new(AtomicBool::new(false));
    let hogs = hog(stop.clone(), until);

    let mut problems = Vec::new();
    let mut max_awareness = [0u64; 3];
    let mut pauses = 0;
    let mut next_pause = start + Duration::from_secs(2);
    let mut polls = 0u64;
    // Bounded by `until` (and one poll of every node per round).
    while Instant::now() < until && problems.is_empty() {
        if Instant::now() >= next_pause {
            // A GC-like pause of one node at a time, well inside the detection time.
            let p = &c.nodes[pauses % 3].process;
            p.signal(Signal::Stop);
            std::thread::sleep(Duration::from_millis(pause_ms));
            p.signal(Signal::Cont);
            pauses += 1;
            next_pause = Instant::now() + Duration::from_secs(3);
        }
        for (i, n) in c.nodes.iter().enumerate() {
            let s = stats(&n.process);
            if s.is_empty() {
                // A busy node may be slow to answer a client; gossip is what counts.
                continue;
            }
            polls += 1;
            max_awareness[i] = max_awareness[i].max(num(&s, "gossip_awareness").unwrap_or(0));
            for (name, want) in [
                ("cluster_members", Some(3)),
                ("cluster_ring_version", Some(version)),
                ("gossip_members_down", num(&before[i], "gossip_members_down")),
                ("gossip_rejoins", num(&before[i], "gossip_rejoins")),
                // Nor does any node lose its majority (and drop its store on regaining
                // it): a lone suspect of three still leaves two up.
                ("cluster_resets", num(&before[i], "cluster_resets")),
            ] {
                if num(&s, name) != want {
                    problems.push(format!(
                        "{} after {:?}: {name} {:?}, want {want:?}",
                        n.name,
                        start.elapsed(),
                        num(&s, name)
                    ));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Relaxed);
    for h in hogs {
        h.join().expect("hog thread");
    }
    for (i, n) in c.nodes.iter().enumerate() {
        let s = stats(&n.process);
        eprintln!(
            "{}: suspicions raised {:?}, confirmations {:?}, awareness max seen {} (now {:?}), members down {:?}",
            n.name,
            num(&s, "gossip_suspicions"),
            num(&s, "gossip_confirmations"),
            max_awareness[i],
            num(&s, "gossip_awareness"),
            num(&s, "gossip_members_down"),
        );
    }
    eprintln!(
        "{secs} s under a CPU hog, {pauses} pauses of {pause_ms} ms, {polls} polls: {} problems",
        problems.len()
    );
    assert!(polls > 0, "no node ever answered stats");
    assert!(problems.is_empty(), "{problems:?}; {}", c.describe());
}
