//! The router's fencing, repair window and failover, in one process under paused time
//! (`crate::testing`): deterministic, no sockets, no timing windows.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::cluster::{ClusterStats, FENCE_WAIT};
use crate::storage::Item;
use crate::testing::{Fault, TestCluster, PEER_TIMEOUT};

/// Past the repair window that follows the cluster's start (and any ring change).
const PAST_REPAIR: Duration = Duration::from_secs(6);

/// The first key `k<n>` whose owners under node 0's ring satisfy `want`.
fn key_where(tc: &TestCluster, want: impl Fn(&[usize]) -> bool) -> String {
    (0..100_000)
        .map(|n| format!("k{n}"))
        .find(|k| want(&tc.owners(0, k.as_bytes())))
        .expect("some key has such owners")
}

/// The routing counters a test compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Routing {
    forwarded: u64,
    forward_errors: u64,
    forward_timeouts: u64,
    read_failovers: u64,
    fence_retries: u64,
    fence_refusals: u64,
}

impl Routing {
    fn of(s: &ClusterStats) -> Routing {
        Routing {
            forwarded: s.forwarded.load(Relaxed),
            forward_errors: s.forward_errors.load(Relaxed),
            forward_timeouts: s.forward_timeouts.load(Relaxed),
            read_failovers: s.read_failovers.load(Relaxed),
            fence_retries: s.fence_retries.load(Relaxed),
            fence_refusals: s.fence_refusals.load(Relaxed),
        }
    }

    fn since(self, before: Routing) -> Routing {
        Routing {
            forwarded: self.forwarded - before.forwarded,
            forward_errors: self.forward_errors - before.forward_errors,
            forward_timeouts: self.forward_timeouts - before.forward_timeouts,
            read_failovers: self.read_failovers - before.read_failovers,
            fence_retries: self.fence_retries - before.fence_retries,
            fence_refusals: self.fence_refusals - before.fence_refusals,
        }
    }
}

/// Runs `input` on node `i`: its replies, what it did to node `i`'s routing
/// counters, and how long it took (paused time).
async fn run(tc: &TestCluster, i: usize, input: &str) -> (String, Routing, Duration) {
    let before = Routing::of(&tc.cluster(i).stats);
    let started = Instant::now();
    let out = tc.request(i, input.as_bytes()).await;
    let took = started.elapsed();
    let reply = String::from_utf8_lossy(&out).into_owned();
    (reply, Routing::of(&tc.cluster(i).stats).since(before), took)
}

fn set(key: &str, value: &str) -> String {
    format!("set {key} 0 0 {}\r\n{value}\r\n", value.len())
}

fn value(key: &str, value: &str) -> String {
    format!("VALUE {key} 0 {}\r\n{value}\r\nEND\r\n", value.len())
}

#[tokio::test(start_paused = true)]
async fn a_forward_refused_for_a_ring_mismatch_is_placed_again_until_the_rings_agree() {
    let tc = TestCluster::start(3, 2).await;
    tokio::time::sleep(PAST_REPAIR).await;
    let key = key_where(&tc, |o| o[0] != 0);
    let primary = tc.owners(0, key.as_bytes())[0];
    let all = [0, 1, 2];
    // The primary moves to a ring without the third node: it refuses node 0's fenced
    // forwards until it comes back to the ring node 0 has, 300 ms later.
    let third = (0..3).find(|&n| n != 0 && n != primary).unwrap();
    tc.set_members(primary, &[0, primary]).await;
    let write = set(&key, "v1");
    let ((reply, routing, took), ()) = tokio::join!(run(&tc, 0, &write), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tc.set_members(primary, &all).await;
    });
    assert_eq!(reply, "STORED\r\n");
    assert!(routing.fence_retries >= 1, "{routing:?}");
    assert_eq!(routing.fence_refusals, 0);
    assert!(took >= Duration::from_millis(300) && took < FENCE_WAIT, "{took:?}");
    let (reply, _, _) = run(&tc, third, &format!("get {key}\r\n")).await;
    assert_eq!(reply, value(&key, "v1"));

    // Rings that never agree: the write is refused once FENCE_WAIT has passed, and a
    // read is a miss, nothing acknowledged or served by a node on another ring.
    tokio::time::sleep(PAST_REPAIR).await;
    tc.set_members(primary, &[0, primary]).await;
    let (reply, routing, took) = run(&tc, 0, &set(&key, "v2")).await;
    assert_eq!(reply, "SERVER_ERROR ring changing\r\n");
    assert_eq!(routing.fence_refusals, 1);
    assert!(took >= FENCE_WAIT, "{took:?}");
    let (reply, _, _) = run(&tc, 0, &format!("mg {key} v\r\n")).await;
    assert_eq!(reply, "EN\r\n");
    tc.set_members(primary, &all).await;
    let (reply, _, _) = run(&tc, third, &format!("get {key}\r\n")).await;
    assert_eq!(reply, value(&key, "v1"), "the refused write was not applied");
}

#[tokio::test(start_paused = true)]
async fn in_the_repair_window_a_primary_takes_a_newer_version_from_another_owner() {
    let tc = TestCluster::start(4, 2).await;
    tokio::time::sleep(PAST_REPAIR).await;
    let key = key_where(&tc, |o| !o.contains(&3));
    let (p, s) = (tc.owners(0, key.as_bytes())[0], tc.owners(0, key.as_bytes())[1]);
    assert_eq!(run(&tc, p, &set(&key, "v1")).await.0, "STORED\r\n");
    // A newer version the primary has not seen (as one written under a ring the
    // primary has not adopted yet).
    let newer = |v: &'static str| {
        let store = &tc.nodes[s].store;
        let item = Item::new(Bytes::from_static(v.as_bytes()), 0, 0, store.next_cas(), tc.now());
        assert!(store.keep_newer(key.as_bytes(), item, tc.now()));
    };
    newer("v2");
    // Outside the window the primary serves what it holds.
    assert_eq!(run(&tc, p, &format!("get {key}\r\n")).await.0, value(&key, "v1"));

    // A ring change that leaves the key's owners as they were opens the window.
    for n in 0..3 {
        tc.set_members(n, &[0, 1, 2]).await;
    }
    tc.settle().await;
    assert_eq!(tc.owners(p, key.as_bytes()), [p, s]);
    assert_eq!(run(&tc, p, &format!("get {key}\r\n")).await.0, value(&key, "v2"));
    assert_eq!(tc.cluster(p).stats.repaired.load(Relaxed), 1);

    // The window closes with (paused) time.
    tokio::time::sleep(PAST_REPAIR).await;
    newer("v3");
    assert_eq!(run(&tc, p, &format!("get {key}\r\n")).await.0, value(&key, "v2"));
    assert_eq!(tc.cluster(p).stats.repaired.load(Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_read_fails_over_to_the_next_owner_when_the_primary_is_unreachable_or_silent() {
    let tc = TestCluster::start(3, 2).await;
    tokio::time::sleep(PAST_REPAIR).await;
    let key = key_where(&tc, |o| !o.contains(&0));
    let primary = tc.owners(0, key.as_bytes())[0];
    assert_eq!(run(&tc, 0, &set(&key, "v1")).await.0, "STORED\r\n");

    tc.fault(primary, Fault::Unreachable);
    let (reply, routing, took) = run(&tc, 0, &format!("get {key}\r\n")).await;
    assert_eq!(reply, value(&key, "v1"));
    assert_eq!((routing.read_failovers, routing.forward_errors), (1, 1), "{routing:?}");
    assert_eq!(took, Duration::ZERO);
    let (reply, _, _) = run(&tc, 0, &format!("mg {key} v\r\n")).await;
    assert_eq!(reply, "VA 2\r\nv1\r\n");
    // A write is decided by its primary alone: not acknowledged without it.
    let (reply, _, _) = run(&tc, 0, &set(&key, "v2")).await;
    assert_eq!(reply, "SERVER_ERROR owner unavailable\r\n");

    tc.fault(primary, Fault::Silent);
    let (reply, routing, took) = run(&tc, 0, &format!("get {key}\r\n")).await;
    assert_eq!(reply, value(&key, "v1"));
    assert_eq!(
        (routing.read_failovers, routing.forward_timeouts),
        (1, 1),
        "{routing:?}"
    );
    assert_eq!(took, PEER_TIMEOUT, "one peer timeout, then the next owner");

    // Both owners gone: a miss, after one timeout per owner tried.
    let second = tc.owners(0, key.as_bytes())[1];
    tc.fault(second, Fault::Silent);
    let (reply, routing, took) = run(&tc, 0, &format!("get {key}\r\n")).await;
    assert_eq!(reply, "END\r\n");
    assert_eq!(routing.forward_timeouts, 2);
    assert_eq!(took, 2 * PEER_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn every_path_counts_a_forward_timeout_once() {
    let tc = TestCluster::start(3, 2).await;
    tokio::time::sleep(PAST_REPAIR).await;
    let key = key_where(&tc, |o| !o.contains(&0));
    let primary = tc.owners(0, key.as_bytes())[0];
    // A second key on the same primary: `get key other` sends it one part.
    let other = key_where(&tc, |o| o[0] == primary && !o.contains(&0) && o != [0]);
    let other = if other == key {
        (0..100_000)
            .map(|n| format!("x{n}"))
            .find(|k| tc.owners(0, k.as_bytes())[0] == primary)
            .unwrap()
    } else {
        other
    };
    tc.fault(primary, Fault::Silent);
    for input in [
        format!("get {key}\r\n"),
        format!("get {key} {other}\r\n"),
        format!("mg {key} v\r\n"),
        // (Writes that may run twice wait for a verdict and try again: see
        // `a_write_whose_primary_cannot_be_reached_waits_for_the_verdict`.)
        format!("ma {key}\r\n"),
        format!("add {key} 0 0 1\r\nv\r\n"),
    ] {
        let (_, routing, _) = run(&tc, 0, &input).await;
        assert_eq!(routing.forward_timeouts, 1, "{input:?}: {routing:?}");
        assert!(routing.forwarded >= 1, "{input:?}: {routing:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_one_key_get_and_an_mg_take_the_same_path() {
    let tc = TestCluster::start(3, 2).await;
    tokio::time::sleep(PAST_REPAIR).await;
    let key = key_where(&tc, |o| !o.contains(&0));
    let primary = tc.owners(0, key.as_bytes())[0];
    assert_eq!(run(&tc, 0, &set(&key, "v1")).await.0, "STORED\r\n");
    for fault in [Fault::None, Fault::Unreachable, Fault::Silent, Fault::RingMismatch] {
        tc.fault(primary, fault);
        let (get, get_routing, get_took) = run(&tc, 0, &format!("get {key}\r\n")).await;
        let (mg, mg_routing, mg_took) = run(&tc, 0, &format!("mg {key} v\r\n")).await;
        assert_eq!(get_routing, mg_routing, "{fault:?}");
        assert_eq!(get_took, mg_took, "{fault:?}");
        let hit = fault != Fault::RingMismatch;
        assert_eq!(get == value(&key, "v1"), hit, "{fault:?}: {get}");
        assert_eq!(mg == "VA 2\r\nv1\r\n", hit, "{fault:?}: {mg}");
    }
}

#[tokio::test(start_paused = true)]
async fn in_the_repair_window_a_failover_read_is_a_miss_unless_every_other_owner_answers() {
    // Three owners of four nodes; node 0 is not one of them, so its reads reach the
    // second owner as a peer's, and a read sent to the second owner is a client's.
    let tc = TestCluster::start(4, 3).await;
    let key = key_where(&tc, |o| !o.contains(&0));
    let owners = tc.owners(0, key.as_bytes());
    let (primary, second, third) = (owners[0], owners[1], owners[2]);
    assert_eq!(run(&tc, 0, &set(&key, "v1")).await.0, "STORED\r\n");
    assert!(tc.cluster(second).repairing(), "the start is a ring change");
    tc.fault(primary, Fault::Unreachable);
    tc.fault(third, Fault::Unreachable);
    let refusals = || tc.cluster(second).stats.failover_refusals.load(Relaxed);
    // The second owner cannot hear from the third: it may not hold the newest version.
    for (node, input, miss) in [
        (0, format!("get {key}\r\n"), "END\r\n".to_string()),
        (0, format!("mg {key} v\r\n"), "EN\r\n".to_string()),
        (second, format!("get {key}\r\n"), "END\r\n".to_string()),
        (second, format!("mg {key} v\r\n"), "EN\r\n".to_string()),
    ] {
        let before = refusals();
        assert_eq!(run(&tc, node, &input).await.0, miss, "through node {node}: {input:?}");
        assert_eq!(refusals(), before + 1, "through node {node}: {input:?}");
    }
    // Once the third owner answers, or the window has closed, the second owner serves.
    tc.fault(third, Fault::None);
    assert_eq!(run(&tc, 0, &format!("mg {key} v\r\n")).await.0, "VA 2\r\nv1\r\n");
    tc.fault(third, Fault::Unreachable);
    tokio::time::sleep(PAST_REPAIR).await;
    assert_eq!(run(&tc, 0, &format!("get {key}\r\n")).await.0, value(&key, "v1"));
    assert_eq!(run(&tc, 0, &format!("mg {key} v\r\n")).await.0, "VA 2\r\nv1\r\n");
}

/// Whether node `i` holds `key` with `value` in its own store.
fn holds(tc: &TestCluster, i: usize, key: &str, value: &str) -> bool {
    tc.nodes[i]
        .store
        .with(key.as_bytes(), tc.now(), |slot| slot.get().map(|it| it.value.clone()))
        .is_some_and(|v| v == value.as_bytes())
}

#[tokio::test(start_paused = true)]
async fn a_write_whose_replica_cannot_be_reached_is_acknowledged_once_the_ring_drops_it() {
    let tc = TestCluster::start(3, 2).await;
    tokio::time::sleep(PAST_REPAIR).await;
    let key = key_where(&tc, |o| o[0] == 0);
    let replica = tc.owners(0, key.as_bytes())[1];
    let third = (0..3).find(|&n| n != 0 && n != replica).unwrap();
    tc.fault(replica, Fault::Unreachable);
    let waits = || tc.cluster(0).stats.verdict_waits.load(Relaxed);

    // No verdict comes: refused once the wait for one is over, as before.
    let (reply, _, took) = run(&tc, 0, &set(&key, "v1")).await;
    assert_eq!(reply, "SERVER_ERROR replica unavailable\r\n");
    assert!(took >= tc.cluster(0).verdict_wait, "{took:?}");
    assert!(waits() > 0);

    // The membership declares the replica down 700 ms into the write: the ring without
    // it makes the third node an owner, which gets the write before it is acknowledged.
    let before = waits();
    let write = set(&key, "v2");
    let ((reply, _, took), ()) = tokio::join!(run(&tc, 0, &write), async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        for n in [0, third] {
            tc.set_members(n, &[0, third]).await;
        }
    });
    assert_eq!(reply, "STORED\r\n");
    assert!(
        took >= Duration::from_millis(700) && took < tc.cluster(0).verdict_wait,
        "{took:?}"
    );
    assert!(waits() > before);
    assert_eq!(tc.owners(0, key.as_bytes()), [0, third]);
    assert!(
        holds(&tc, third, &key, "v2"),
        "the new owner has the acknowledged write"
    );
    assert!(!holds(&tc, replica, &key, "v2"));

    // A replica that hangs (accepts, never answers) is given up the moment the ring
    // drops it, not after a peer timeout.
    tc.settle().await;
    tokio::time::sleep(PAST_REPAIR).await;
    let key = key_where(&tc, |o| o == [0, third]);
    tc.fault(third, Fault::Silent);
    tc.fault(replica, Fault::None);
    let write = set(&key, "v3");
    let ((reply, _, took), ()) = tokio::join!(run(&tc, 0, &write), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for n in [replica, 0] {
            tc.set_members(n, &[0, replica]).await;
        }
    });
    assert_eq!(reply, "STORED\r\n");
    assert_eq!(took, Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn a_write_whose_primary_cannot_be_reached_waits_for_the_verdict() {
    let tc = TestCluster::start(3, 2).await;
    tokio::time::sleep(PAST_REPAIR).await;
    let key = key_where(&tc, |o| !o.contains(&0));
    let (primary, second) = (tc.owners(0, key.as_bytes())[0], tc.owners(0, key.as_bytes())[1]);
    assert_eq!(run(&tc, 0, &set(&key, "v1")).await.0, "STORED\r\n");
    tc.fault(primary, Fault::Unreachable);

    // A write that may have run on the primary before it failed, and must not run
    // twice, is refused at once, as before.
    for input in [
        format!("incr {key} 1\r\n"),
        format!("append {key} 0 0 1\r\nx\r\n"),
        format!("ms {key} 1 C1\r\nx\r\n"),
    ] {
        let (reply, _, took) = run(&tc, 0, &input).await;
        assert_eq!(reply, "SERVER_ERROR owner unavailable\r\n", "{input:?}");
        assert_eq!(took, Duration::ZERO, "{input:?}");
    }

    // A set waits: once the ring drops the primary, the next owner takes it.
    let write = set(&key, "v2");
    let ((reply, _, took), ()) = tokio::join!(run(&tc, 0, &write), async {
        tokio::time::sleep(Duration::from_millis(900)).await;
        for n in [0, second] {
            tc.set_members(n, &[0, second]).await;
        }
    });
    assert_eq!(reply, "STORED\r\n");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert_eq!(tc.owners(0, key.as_bytes())[0], second);
    assert!(holds(&tc, second, &key, "v2") && holds(&tc, 0, &key, "v2"));
    assert!(!holds(&tc, primary, &key, "v2"));
    let (reply, _, _) = run(&tc, 0, &format!("get {key}\r\n")).await;
    assert_eq!(reply, value(&key, "v2"));

    // A primary that answers again before any verdict takes the write itself.
    for n in [0, second] {
        tc.set_members(n, &[0, 1, 2]).await;
    }
    tc.settle().await;
    let delete = format!("md {key}\r\n");
    let ((reply, _, took), ()) = tokio::join!(run(&tc, 0, &delete), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tc.fault(primary, Fault::None);
    });
    assert_eq!(reply, "HD\r\n");
    assert!(took >= Duration::from_millis(300) && took < FENCE_WAIT, "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_write_to_a_hung_primary_is_placed_again_as_soon_as_the_ring_drops_it() {
    let tc = TestCluster::start(3, 2).await;
    tokio::time::sleep(PAST_REPAIR).await;
    let key = key_where(&tc, |o| !o.contains(&0));
    let (primary, second) = (tc.owners(0, key.as_bytes())[0], tc.owners(0, key.as_bytes())[1]);
    tc.fault(primary, Fault::Silent);
    let write = set(&key, "v1");
    let ((reply, routing, took), ()) = tokio::join!(run(&tc, 0, &write), async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        for n in [0, second] {
            tc.set_members(n, &[0, second]).await;
        }
    });
    assert_eq!(reply, "STORED\r\n");
    // Not a peer timeout: given up when the ring dropped the primary.
    assert!(
        took >= Duration::from_millis(600) && took < PEER_TIMEOUT,
        "{took:?} {routing:?}"
    );
    assert_eq!(routing.forward_timeouts, 0, "{routing:?}");
    assert!(holds(&tc, second, &key, "v1"));
}

#[tokio::test(start_paused = true)]
async fn a_write_is_not_settled_under_a_later_ring_once_the_node_dropped_its_data() {
    // As when the freeze guard or a "declared down" verdict empties the store while a
    // write waits for an unreachable replica: the write is refused, not sent on to
    // the owners of a later ring.
    let tc = TestCluster::start(3, 2).await;
    tokio::time::sleep(PAST_REPAIR).await;
    let key = key_where(&tc, |o| o[0] == 0);
    let replica = tc.owners(0, key.as_bytes())[1];
    let third = (0..3).find(|&n| n != 0 && n != replica).unwrap();
    tc.fault(replica, Fault::Unreachable);
    let write = set(&key, "v1");
    let ((reply, _, _), ()) = tokio::join!(run(&tc, 0, &write), async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        tc.cluster(0).stats.resets.fetch_add(1, Relaxed);
        for n in [0, third] {
            tc.set_members(n, &[0, third]).await;
        }
    });
    assert_eq!(reply, "SERVER_ERROR replica unavailable\r\n");
    assert!(!holds(&tc, third, &key, "v1"));
}

#[tokio::test(start_paused = true)]
async fn a_delete_that_finds_nothing_is_not_undone_by_an_older_copy_handed_off_later() {
    // A node leaving hands its items to their new owners; a delete the new owner runs
    // before the copy arrives finds nothing (NOT_FOUND, acknowledged) and must still
    // win over the older copy (membership_events found deletes undone this way).
    let tc = TestCluster::start(3, 1).await;
    tokio::time::sleep(PAST_REPAIR).await;
    for (i, delete) in ["delete {k}\r\n", "md {k}\r\n"].iter().enumerate() {
        let key = (0..100_000)
            .map(|n| format!("del{i}-{n}"))
            .find(|k| tc.owners(0, k.as_bytes()) == [0])
            .unwrap();
        let store = &tc.nodes[0].store;
        let old = Item::new(Bytes::from_static(b"old"), 0, 0, store.next_cas(), tc.now());
        let reply = run(&tc, 0, &delete.replace("{k}", &key)).await.0;
        assert!(reply == "NOT_FOUND\r\n" || reply == "NF\r\n", "{reply}");
        assert!(
            !store.keep_newer(key.as_bytes(), old, tc.now()),
            "{delete:?}: the older copy came back after an acknowledged delete"
        );
        assert!(!holds(&tc, 0, &key, "old"));
    }
}
