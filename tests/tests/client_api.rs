//! The smart client's API against real servers: every command's outcomes, typed
//! values, and a fixed server list placed on the ring under `host:port` names.
//!
//! These run against `ServerKind::target()`, so `RINGCACHE_DIFF_AGAINST=memcached`
//! runs them against real memcached too (the client speaks plain memcached).

use std::time::Duration;

use ringcache_client::{Client, Error, StoreKind, StoreOutcome};
use ringcache_protocol::ring::{Ring, RingConfig};
use ringcache_tests::client_runtime;
use ringcache_tests::{ServerKind, ServerProcess};

fn server() -> ServerProcess {
    ServerProcess::start(ServerKind::target(), &["-m", "64", "-t", "2"])
}

#[test]
fn every_command_answers_as_memcached_does() {
    let node = server();
    client_runtime().block_on(async {
        let c = Client::builder().servers([node.addr()]).build().await.unwrap();
        let ttl = Duration::from_secs(60);

        assert_eq!(c.get("a").await.unwrap(), None);
        c.set("a", "1", ttl).await.unwrap();
        assert_eq!(c.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));

        assert!(!c.add("a", "x", ttl).await.unwrap(), "add over a value");
        assert!(c.add("b", "2", ttl).await.unwrap());
        assert!(c.replace("b", "3", ttl).await.unwrap());
        assert!(!c.replace("missing", "x", ttl).await.unwrap());

        let item = c.gets("b").await.unwrap().unwrap();
        assert_eq!(&item.value[..], b"3");
        assert_eq!(c.cas("b", "4", ttl, item.cas).await.unwrap(), StoreOutcome::Stored);
        assert_eq!(c.cas("b", "5", ttl, item.cas).await.unwrap(), StoreOutcome::Exists);
        assert_eq!(c.cas("missing", "5", ttl, 1).await.unwrap(), StoreOutcome::NotFound);
        assert_eq!(c.get("b").await.unwrap().as_deref(), Some(&b"4"[..]));

        assert_eq!(
            c.store(StoreKind::Set, "f", "v", ttl, 42).await.unwrap(),
            StoreOutcome::Stored
        );
        assert_eq!(c.gets("f").await.unwrap().unwrap().flags, 42);
        assert_eq!(
            c.store(StoreKind::Append, "f", "w", ttl, 0).await.unwrap(),
            StoreOutcome::Stored
        );
        assert_eq!(c.get("f").await.unwrap().as_deref(), Some(&b"vw"[..]));

        c.set("n", "10", ttl).await.unwrap();
        assert_eq!(c.incr("n", 5).await.unwrap(), Some(15));
        assert_eq!(c.decr("n", 20).await.unwrap(), Some(0));
        assert_eq!(c.incr("missing", 1).await.unwrap(), None);
        assert!(matches!(c.incr("a", 1).await, Ok(Some(2))));
        c.set("text", "abc", ttl).await.unwrap();
        assert!(matches!(c.incr("text", 1).await, Err(Error::Server(_))));

        assert!(c.touch("a", ttl).await.unwrap());
        assert!(!c.touch("missing", ttl).await.unwrap());
        assert_eq!(c.get_and_touch("a", ttl).await.unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(c.get_and_touch("missing", ttl).await.unwrap(), None);

        assert!(c.delete("a").await.unwrap());
        assert!(!c.delete("a").await.unwrap());
        assert_eq!(c.get("a").await.unwrap(), None);

        let got = c.get_many(&["b", "missing", "f", "b"]).await.unwrap();
        let got: Vec<Option<&[u8]>> = got.iter().map(|v| v.as_deref()).collect();
        assert_eq!(got, vec![Some(&b"4"[..]), None, Some(b"vw"), Some(b"4")]);
        assert!(c.get_many::<&str>(&[]).await.unwrap().is_empty());

        // An expired value is gone (TTL 1 s; poll rather than sleep a fixed time).
        c.set("short", "x", Duration::from_secs(1)).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while c.get("short").await.unwrap().is_some() {
            assert!(tokio::time::Instant::now() < deadline, "never expired");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Binary-safe values, large values.
        let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        c.set("blob", blob.clone(), ttl).await.unwrap();
        assert_eq!(c.get("blob").await.unwrap().as_deref(), Some(&blob[..]));

        for bad in ["", "has space", "ctl\u{1}"] {
            assert!(matches!(c.get(bad).await, Err(Error::InvalidKey)), "{bad:?}");
            assert!(matches!(c.set(bad, "v", ttl).await, Err(Error::InvalidKey)));
        }
        assert!(matches!(c.get("k".repeat(251)).await, Err(Error::InvalidKey)));
        assert!(matches!(c.get_many(&["ok", "not ok"]).await, Err(Error::InvalidKey)));
        let too_big = vec![0u8; 2 * 1024 * 1024];
        assert!(matches!(c.set("big", too_big, ttl).await, Err(Error::Server(_))));
        // The connection is still usable after the server refused a value.
        assert_eq!(c.get("b").await.unwrap().as_deref(), Some(&b"4"[..]));
    });
}

#[test]
fn typed_values_round_trip_as_json() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct User {
        id: u32,
        name: String,
    }
    let node = server();
    client_runtime().block_on(async {
        let c = Client::builder().servers([node.addr()]).build().await.unwrap();
        let ada = User {
            id: 42,
            name: "Ada".into(),
        };
        c.set_json("user:42", &ada, Duration::ZERO).await.unwrap();
        assert_eq!(c.get_json::<User>("user:42").await.unwrap(), Some(ada));
        assert_eq!(c.get_json::<User>("user:43").await.unwrap(), None);
        c.set("user:44", "not json", Duration::ZERO).await.unwrap();
        assert!(matches!(c.get_json::<User>("user:44").await, Err(Error::Codec(_))));
    });
}

#[test]
fn fixed_servers_are_placed_by_host_port_name() {
    let nodes: Vec<ServerProcess> = (0..3).map(|_| server()).collect();
    let names: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
    let ring = Ring::new(names.clone(), RingConfig::default(), 0).unwrap();
    client_runtime().block_on(async {
        let c = Client::builder().servers(&names).build().await.unwrap();
        assert_eq!(c.topology_version(), 0);
        let keys: Vec<String> = (0..300).map(|i| format!("fixed:{i}")).collect();
        for k in &keys {
            c.set(k, k.clone(), Duration::ZERO).await.unwrap();
        }
        // Each key is on exactly the node the ring names, and on no other.
        let mut direct = Vec::new();
        for n in &nodes {
            direct.push(Client::builder().servers([n.addr()]).build().await.unwrap());
        }
        let mut per_node = vec![0; nodes.len()];
        for k in &keys {
            // Ring indices follow name order, not the order given.
            let owner_name = &ring.nodes()[ring.primary(k.as_bytes()).unwrap().get()];
            let owner = names.iter().position(|n| n == owner_name).unwrap();
            assert_eq!(&c.owners(k)[0].name, owner_name);
            for (i, d) in direct.iter().enumerate() {
                let v = d.get(k).await.unwrap();
                assert_eq!(v.is_some(), i == owner, "{k} on {}", names[i]);
            }
            per_node[owner] += 1;
        }
        assert!(per_node.iter().all(|&n| n > 50), "spread: {per_node:?}");
        let got = c.get_many(&keys).await.unwrap();
        for (k, v) in keys.iter().zip(&got) {
            assert_eq!(v.as_deref(), Some(k.as_bytes()));
        }
    });
}

#[test]
fn build_fails_cleanly_on_bad_configuration() {
    client_runtime().block_on(async {
        assert!(matches!(Client::builder().build().await, Err(Error::Config(_))));
        assert!(matches!(
            Client::builder()
                .seeds(["127.0.0.1:1"])
                .servers(["127.0.0.1:1"])
                .build()
                .await,
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Client::builder().seeds(["not an address"]).build().await,
            Err(Error::Config(_))
        ));
        // A seed that does not answer is not an error: the client looks for the
        // cluster in the background (see client_faults.rs).
        let closed = ringcache_tests::free_port();
        let client = Client::builder()
            .seeds([format!("127.0.0.1:{closed}")])
            .build()
            .await
            .unwrap();
        assert!(client.nodes().is_empty());
    });
    // A memcached (no `topology` command) is not a seed.
    let memcached = ServerProcess::memcached(&[]);
    client_runtime().block_on(async {
        let r = Client::builder().seeds([memcached.addr()]).build().await;
        assert!(matches!(r, Err(Error::Topology(_))), "{r:?}");
    });
}
