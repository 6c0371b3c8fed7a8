//! The state one cache node shares between its connections.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::cluster::Cluster;
use crate::stats::Stats;
use crate::storage::Store;

/// Settings fixed at start, reported by `stats settings` (the memory limit, which
/// `cache_memlimit` changes, is the store's: [`Store::memory_limit`]).
#[derive(Debug, Clone)]
pub struct Settings {
    pub port: u16,
    pub listen: String,
    pub max_conns: usize,
    pub max_item_size: usize,
    pub threads: usize,
    pub verbosity: u8,
}

/// Everything a connection needs: the store, the counters, the settings.
pub struct Node {
    pub store: Arc<Store>,
    pub stats: Stats,
    pub settings: Settings,
    /// When the process started, for `uptime`.
    pub started: Instant,
    /// Membership, ring and peers; `None` for a node built without gossip (unit tests).
    pub cluster: Option<Arc<Cluster>>,
}

impl Node {
    pub fn new(store: Arc<Store>, settings: Settings, cluster: Option<Arc<Cluster>>) -> Node {
        Node {
            store,
            stats: Stats::default(),
            settings,
            started: Instant::now(),
            cluster,
        }
    }
}

/// The current Unix time in seconds, the clock of every expiry decision.
pub fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}
