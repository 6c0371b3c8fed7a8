//! Read-through against real clusters: one origin load for a cold key however many
//! callers (one process or two), late write-backs that must not overwrite newer data,
//! origin errors, stale-while-revalidate, and a cluster that is entirely down.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringcache_client::{BoxError, Client, Error, Origin, ReadThrough};
use ringcache_tests::client_runtime;
use ringcache_tests::cluster::TestCluster;
use ringcache_tests::Signal;
use tokio::sync::Semaphore;

/// An origin that counts its loads, takes `delay` per load, and answers
/// `origin:<key>#<load number>`. With `gate`, every load first waits for a permit.
#[derive(Clone)]
struct Counting {
    loads: Arc<AtomicUsize>,
    delay: Duration,
    gate: Option<Arc<Semaphore>>,
    /// Loads numbered here fail.
    fail: Arc<Mutex<Vec<usize>>>,
}

impl Counting {
    fn new(delay: Duration) -> Counting {
        Counting {
            loads: Arc::default(),
            delay,
            gate: None,
            fail: Arc::default(),
        }
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

impl Origin for Counting {
    async fn load(&self, key: &[u8]) -> Result<Option<Bytes>, BoxError> {
        let n = self.loads.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(gate) = &self.gate {
            gate.acquire().await?.forget();
        }
        tokio::time::sleep(self.delay).await;
        if self.fail.lock().unwrap().contains(&n) {
            return Err(format!("database unavailable (load {n})").into());
        }
        if key.starts_with(b"absent:") {
            return Ok(None);
        }
        Ok(Some(Bytes::from(format!(
            "origin:{}#{n}",
            String::from_utf8_lossy(key)
        ))))
    }
}

async fn many_callers<O: Origin>(rt: &ReadThrough<O>, key: &str, n: usize) -> Vec<Option<Bytes>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let rt = rt.clone();
            let key = key.to_string();
            tokio::spawn(async move { rt.get_or_load(&key, Duration::from_secs(300)).await.unwrap() })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[test]
fn a_cold_key_read_by_200_tasks_loads_the_origin_once() {
    let c = TestCluster::start(3, 1, &[]);
    client_runtime().block_on(async {
        let client = Client::builder().seeds(c.seeds()).build().await.unwrap();
        let origin = Counting::new(Duration::from_millis(300));
        let cache = client.read_through(origin.clone());
        let got = many_callers(&cache, "cold:1", 200).await;
        let want = Bytes::from_static(b"origin:cold:1#1");
        assert!(got.iter().all(|v| v.as_ref() == Some(&want)), "{:?}", &got[..3]);
        assert_eq!(origin.loads(), 1);
        // Single-flight: only the leader asked the cache, so nobody met its lease.
        assert_eq!(client.stats().lease_waits, 0, "{:?}", client.stats());
        assert_eq!(client.stats().coalesced, 199, "{:?}", client.stats());
        // It was written back: a plain read hits, and a later read-through does not load.
        assert_eq!(client.get("cold:1").await.unwrap(), Some(want.clone()));
        assert_eq!(cache.get_or_load("cold:1", Duration::ZERO).await.unwrap(), Some(want));
        assert_eq!(origin.loads(), 1);
        assert_eq!(client.stats().writebacks, 1);
    });
}

#[test]
fn two_clients_share_one_origin_load_through_leases() {
    let c = TestCluster::start(3, 2, &[]);
    client_runtime().block_on(async {
        let origin = Counting::new(Duration::from_millis(300));
        let a = Client::builder().seeds(c.seeds()).build().await.unwrap();
        let b = Client::builder().seeds(c.seeds()).build().await.unwrap();
        let (ra, rb) = (a.read_through(origin.clone()), b.read_through(origin.clone()));
        for round in 0..3 {
            let key = format!("shared:{round}");
            let (ga, gb) = tokio::join!(many_callers(&ra, &key, 100), many_callers(&rb, &key, 100));
            let first = ga[0].clone().expect("a value");
            assert!(ga.iter().chain(&gb).all(|v| v.as_ref() == Some(&first)));
            assert_eq!(origin.loads(), round + 1, "round {round}");
        }
        // One client won each lease, the other waited for it.
        let waits = a.stats().lease_waits + b.stats().lease_waits;
        assert!(waits >= 3, "{:?} {:?}", a.stats(), b.stats());
    });
}

#[test]
fn a_late_write_back_does_not_overwrite_a_newer_set_or_a_delete() {
    let c = TestCluster::start(2, 2, &[]);
    client_runtime().block_on(async {
        let client = Client::builder().seeds(c.seeds()).build().await.unwrap();
        let gate = Arc::new(Semaphore::new(0));
        let origin = Counting {
            gate: Some(gate.clone()),
            ..Counting::new(Duration::ZERO)
        };
        let cache = client.read_through(origin.clone());

        // A newer set lands while the loader is still at the origin.
        let slow = tokio::spawn({
            let cache = cache.clone();
            async move { cache.get_or_load("late:set", Duration::ZERO).await }
        });
        wait_for(|| origin.loads() == 1).await;
        client.set("late:set", "newer", Duration::ZERO).await.unwrap();
        gate.add_permits(1);
        let loaded = slow.await.unwrap().unwrap();
        assert_eq!(
            loaded.as_deref(),
            Some(&b"origin:late:set#1"[..]),
            "the caller gets its load"
        );
        assert_eq!(client.get("late:set").await.unwrap().as_deref(), Some(&b"newer"[..]));

        // A delete lands while the loader is still at the origin.
        client.set("late:del", "old", Duration::ZERO).await.unwrap();
        client.invalidate("late:del").await.unwrap();
        let slow = tokio::spawn({
            let cache = cache.clone();
            async move { cache.get_or_load("late:del", Duration::ZERO).await }
        });
        wait_for(|| origin.loads() == 2).await;
        assert!(client.delete("late:del").await.unwrap());
        gate.add_permits(1);
        assert!(slow.await.unwrap().unwrap().is_some());
        assert_eq!(client.get("late:del").await.unwrap(), None, "the delete stays");

        // The same for a cold key whose placeholder is deleted.
        let slow = tokio::spawn({
            let cache = cache.clone();
            async move { cache.get_or_load("late:cold", Duration::ZERO).await }
        });
        wait_for(|| origin.loads() == 3).await;
        client.delete("late:cold").await.unwrap();
        gate.add_permits(1);
        assert!(slow.await.unwrap().unwrap().is_some());
        assert_eq!(client.get("late:cold").await.unwrap(), None);

        assert_eq!(client.stats().writebacks_refused, 3, "{:?}", client.stats());
        assert_eq!(client.stats().writebacks, 0);
    });
}

#[test]
fn origin_errors_reach_every_waiting_caller_and_are_not_cached() {
    let c = TestCluster::start(2, 1, &[]);
    client_runtime().block_on(async {
        let client = Client::builder().seeds(c.seeds()).build().await.unwrap();
        let origin = Counting::new(Duration::from_millis(200));
        origin.fail.lock().unwrap().push(1);
        let cache = client.read_through(origin.clone());
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get_or_load("flaky", Duration::ZERO).await })
            })
            .collect();
        for t in tasks {
            let r = t.await.unwrap();
            assert!(
                matches!(&r, Err(Error::Origin(e)) if e.to_string().contains("load 1")),
                "{r:?}"
            );
        }
        assert_eq!(origin.loads(), 1);
        // Not cached: neither the error nor a placeholder is left behind.
        assert_eq!(client.get("flaky").await.unwrap(), None);
        let v = cache.get_or_load("flaky", Duration::ZERO).await.unwrap();
        assert_eq!(v.as_deref(), Some(&b"origin:flaky#2"[..]));
        assert_eq!(origin.loads(), 2);
        // A key the origin does not have: None, nothing cached, asked again next time.
        assert_eq!(cache.get_or_load("absent:1", Duration::ZERO).await.unwrap(), None);
        assert_eq!(cache.get_or_load("absent:1", Duration::ZERO).await.unwrap(), None);
        assert_eq!(origin.loads(), 4);
        assert_eq!(client.stats().origin_errors, 1);
    });
}

#[test]
fn stale_values_are_served_while_one_reader_revalidates() {
    let c = TestCluster::start(2, 1, &[]);
    client_runtime().block_on(async {
        let client = Client::builder().seeds(c.seeds()).build().await.unwrap();
        let origin = Counting::new(Duration::from_millis(300));
        let stale_ok = client.read_through(origin.clone()).allow_stale(true);
        client.set("profile", "v1", Duration::ZERO).await.unwrap();
        assert!(client.invalidate("profile").await.unwrap());
        assert_eq!(
            client.get("profile").await.unwrap(),
            None,
            "plain reads skip stale data"
        );
        // Callers that allow it get v1 at once; one background load refreshes it.
        for _ in 0..10 {
            let v = stale_ok.get_or_load("profile", Duration::ZERO).await.unwrap();
            assert_eq!(v.as_deref(), Some(&b"v1"[..]));
        }
        wait_for_async(|| async { client.get("profile").await.unwrap().as_deref() == Some(&b"origin:profile#1"[..]) })
            .await;
        assert_eq!(origin.loads(), 1);
        assert!(client.stats().stale_served >= 10);

        // Callers that do not allow it wait for the fresh value.
        let strict = client.read_through(origin.clone());
        client.invalidate("profile").await.unwrap();
        let v = strict.get_or_load("profile", Duration::ZERO).await.unwrap();
        assert_eq!(v.as_deref(), Some(&b"origin:profile#2"[..]));
    });
}

#[test]
fn with_every_node_down_reads_come_from_the_origin_within_the_timeouts() {
    let mut c = TestCluster::start(2, 2, &[]);
    let rt = client_runtime();
    let timeout = Duration::from_millis(300);
    let (client, cache, origin) = rt.block_on(async {
        let client = Client::builder()
            .seeds(c.seeds())
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .await
            .unwrap();
        let origin = Counting::new(Duration::ZERO);
        let cache = client.read_through(origin.clone());
        // Warm the connections.
        assert!(cache.get_or_load("warm", Duration::ZERO).await.unwrap().is_some());
        (client, cache, origin)
    });
    for n in &c.nodes {
        n.process.signal(Signal::Kill);
    }
    for n in c.nodes.iter_mut() {
        n.process.wait_exit(Duration::from_secs(5));
    }
    rt.block_on(async {
        // Each call tries at most the two owners (lease, then a plain read), each
        // bounded by the timeouts; nodes marked down are skipped at once.
        let bound = timeout * 8;
        for i in 0..20 {
            let key = format!("down:{i}");
            let start = Instant::now();
            let v = cache.get_or_load(&key, Duration::ZERO).await.unwrap();
            assert!(v.is_some());
            assert!(start.elapsed() < bound, "{key} took {:?}", start.elapsed());
            // Plain reads are misses, not errors.
            assert_eq!(client.get(&key).await.unwrap(), None);
        }
        let got = client.get_many(&["down:1", "down:2"]).await.unwrap();
        assert_eq!(got, vec![None, None]);
        assert!(client.set("down:x", "v", Duration::ZERO).await.is_err(), "writes fail");
        assert_eq!(origin.loads(), 21);
        assert!(client.nodes().iter().all(|n| n.down), "{:?}", client.nodes());
    });
}

/// Polls `cond` every 10 ms for up to 10 s.
async fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not met within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls an async `cond` every 20 ms for up to 10 s.
async fn wait_for_async<F: std::future::Future<Output = bool>>(mut cond: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(Instant::now() < deadline, "condition not met within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
