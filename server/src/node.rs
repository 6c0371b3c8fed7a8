//! The state one cache node shares between its connections.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::cluster::Cluster;
use crate::stats::Stats;
use crate::storage::Store;

/// Settings fixed at start, reported by `stats settings` (the memory limit, which
/// `cache_memlimit` changes, is the store's: [`Store::memory_limit`]).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The client port (`-p`).
    pub port: u16,
    /// The address it listens on (`-l`).
    pub listen: String,
    /// The connection limit (`-c`).
    pub max_conns: usize,
    /// The largest item accepted, in bytes (`-I`).
    pub max_item_size: usize,
    /// Worker threads (`-t`).
    pub threads: usize,
    /// Log verbosity (`-v`, `verbosity`).
    pub verbosity: u8,
    /// How long a stopping node may take to leave, hand off and let connections finish
    /// (`--drain-timeout-ms`).
    pub drain_timeout: std::time::Duration,
}

/// Everything a connection needs: the store, the counters, the settings.
pub struct Node {
    /// The items.
    pub store: Arc<Store>,
    /// Node-wide counters.
    pub stats: Stats,
    /// Settings fixed at start.
    pub settings: Settings,
    /// When the process started, for `uptime`.
    pub started: Instant,
    /// Membership, ring and peers; `None` for a node built without gossip (unit tests).
    pub cluster: Option<Arc<Cluster>>,
    /// Set when the node starts to stop (see [`Node::set_draining`]).
    draining: AtomicBool,
    /// The client port's connections: how many are open, and their stop at a drain.
    pub connections: crate::connection::Connections,
}

impl Node {
    /// A node serving `store`, started now, not draining.
    pub fn new(store: Arc<Store>, settings: Settings, cluster: Option<Arc<Cluster>>) -> Node {
        Node {
            store,
            stats: Stats::default(),
            settings,
            started: Instant::now(),
            cluster,
            draining: AtomicBool::new(false),
            connections: Default::default(),
        }
    }

    /// Marks the node as draining: it is on its way out (a SIGTERM, a scale-down), and
    /// `/readyz` answers 503 from now on so that load balancers and rolling restarts
    /// stop counting on it. It goes on serving meanwhile. There is no way back: a node
    /// that drains stops.
    pub fn set_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    /// Whether [`Node::set_draining`] was called.
    pub fn draining(&self) -> bool {
        self.draining.load(Relaxed)
    }
}

/// The current Unix time in seconds, the clock of every expiry decision.
pub fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}
