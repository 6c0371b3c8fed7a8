//! The listener: accepts connections, enforces `-c`, runs the expiry sweep, and shuts
//! down gracefully on request.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use ringcache_protocol::ring::RingConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::cluster::{Cluster, ClusterConfig};
use crate::config::Config;
use crate::membership::GossipConfig;
use crate::node::{unix_now, Node, Settings};
use crate::secret::ClusterKey;
use crate::storage::{Store, StoreConfig};

/// How often the background sweep reclaims expired items.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Builds the node from `config` and joins its cluster (a node without seeds is a
/// cluster of one that others can join).
pub async fn build_node(config: &Config) -> anyhow::Result<Node> {
    // CAS uniques must order across nodes and restarts for replicas to converge.
    let (store, settings) = store_and_settings(config, true);
    let gossip = GossipConfig {
        name: config.node_name(),
        gossip_addr: config.gossip_addr().map_err(anyhow::Error::msg)?,
        client_addr: config.client_addr().map_err(anyhow::Error::msg)?,
        seeds: config.seeds.clone(),
        probe_period: Duration::from_millis(config.gossip_probe_ms.max(10)),
        probe_rtt: Duration::from_millis(config.gossip_rtt_ms.max(5)),
        suspect_timeout: Duration::from_millis(config.gossip_suspect_ms.max(10)),
        suspect_max_timeout: Duration::from_millis(config.gossip_suspect_max_ms.max(config.gossip_suspect_ms.max(10))),
        key: config
            .gossip_key
            .as_deref()
            .map(|s| Arc::new(ClusterKey::from_secret(s))),
    };
    if gossip.key.is_none() && !gossip.gossip_addr.ip().is_loopback() {
        warn!(
            addr = %gossip.gossip_addr,
            "gossip listens beyond loopback without --gossip-key: anyone who can reach it can join the cluster \
             and read or change its membership; set the same --gossip-key on every node"
        );
    }
    if gossip.gossip_addr.ip().is_unspecified() && !gossip.seeds.is_empty() {
        warn!(
            addr = %gossip.gossip_addr,
            "the gossip address is unspecified, so peers cannot reach this node (their packets to it go \
             to themselves); give --gossip-addr this node's own IP (in Kubernetes, the pod IP)"
        );
    }
    let cluster = Cluster::start(
        ClusterConfig {
            gossip,
            ring: RingConfig {
                vnodes: config.vnodes,
                replicas: config.replicas,
            },
            peer_timeout: Duration::from_millis(config.peer_timeout_ms.max(1)),
            join_timeout: Duration::from_millis(config.join_timeout_ms),
            handoff_rate: config.handoff_rate_kb.saturating_mul(1024),
        },
        store.clone(),
    )
    .await?;
    Ok(Node::new(store, settings, Some(cluster)))
}

/// A node without gossip or peers: a store and settings only (for unit tests of
/// command semantics).
pub fn build_local_node(config: &Config) -> Node {
    let (store, settings) = store_and_settings(config, false);
    Node::new(store, settings, None)
}

fn store_and_settings(config: &Config, clock_cas: bool) -> (Arc<Store>, Settings) {
    let memory_limit = config.memory_limit.saturating_mul(1024 * 1024);
    let shards = (config.threads.max(1) * 8).next_power_of_two();
    let store = Store::new(StoreConfig {
        memory_limit: memory_limit as usize,
        shards,
        max_item_size: config.max_item_size,
    });
    let store = Arc::new(if clock_cas { store.with_clock_cas() } else { store });
    let settings = Settings {
        port: config.port,
        listen: config.listen.clone(),
        max_conns: config.max_conns,
        max_item_size: config.max_item_size,
        threads: config.threads,
        verbosity: config.verbose,
        drain_timeout: Duration::from_millis(config.drain_timeout_ms),
    };
    (store, settings)
}

/// Binds the client port.
pub async fn bind(config: &Config) -> std::io::Result<TcpListener> {
    let addr = format!("{}:{}", config.listen, config.port);
    TcpListener::bind(addr).await
}

/// Serves clients on `listener` until `shutdown` turns true, then stops accepting and
/// lets open connections finish the batch they are in.
pub async fn run(node: Arc<Node>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let local: Option<SocketAddr> = listener.local_addr().ok();
    info!(addr = ?local, "listening");
    let sweeper = {
        let node = node.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => node.store.sweep(unix_now()),
                    _ = shutdown.changed() => break,
                }
            }
        })
    };
    // Connections stop after the node has left and handed off (see below), not at the
    // signal: until then they serve their clients and the peers that still forward here.
    // They are plain tasks, counted in `node.connections`: nothing per connection is
    // kept here.
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (mut sock, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let curr = node.stats.curr_connections.fetch_add(1, Relaxed) + 1;
        node.stats.total_connections.fetch_add(1, Relaxed);
        if curr as usize > node.settings.max_conns {
            node.stats.curr_connections.fetch_sub(1, Relaxed);
            node.stats.totals.rejected_connections.fetch_add(1, Relaxed);
            debug!(%peer, "too many connections");
            tokio::spawn(async move {
                let _ = sock.write_all(b"ERROR Too many open connections\r\n").await;
            });
            continue;
        }
        debug!(%peer, "accepted");
        tokio::spawn(crate::connection::serve(node.clone(), sock));
    }
    info!("shutting down");
    // Draining: not ready at once, leave, hand off, let connections finish, all
    // within the drain timeout.
    node.set_draining();
    let deadline = tokio::time::Instant::now() + node.settings.drain_timeout;
    if let Some(cluster) = &node.cluster {
        // Leave first, so peers move this node's ranges at once, and hand this node's
        // items to their owners.
        if tokio::time::timeout_at(deadline, cluster.leave()).await.is_err() {
            warn!(after = ?node.settings.drain_timeout, "the hand-off did not finish within the drain timeout");
        }
    }
    // Connections end after their current batch. Any still open at the deadline end
    // with the runtime, when the process exits.
    node.connections.stop();
    if tokio::time::timeout_at(deadline, node.connections.all_closed())
        .await
        .is_err()
    {
        warn!(
            open = node.connections.open(),
            "connections still open at the drain timeout"
        );
    }
    info!("stopped");
    sweeper.abort();
}
