//! The in-memory store (interim: a plain sharded map without eviction).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

/// Relative exptimes up to this many seconds (30 days); larger ones are Unix times.
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// Converts a memcached exptime as sent by a client into an absolute Unix time:
/// 0 never expires, up to 30 days is relative to `now`, larger is absolute, and a
/// negative one is already expired (1, a time long past).
pub fn absolute_expiry(exptime: i64, now: u32) -> u32 {
    if exptime == 0 {
        0
    } else if exptime < 0 {
        1
    } else if exptime > REALTIME_MAXDELTA {
        u32::try_from(exptime).unwrap_or(u32::MAX).max(1)
    } else {
        now.saturating_add(exptime as u32)
    }
}

/// The eviction policy's name, reported by `stats settings`.
pub const EVICTION_POLICY: &str = "none";

/// Store settings.
#[derive(Debug, Clone, Copy)]
pub struct StoreConfig {
    pub memory_limit: usize,
    pub shards: usize,
    pub max_item_size: usize,
}

/// One cached item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub value: Bytes,
    pub flags: u32,
    /// Absolute Unix time in seconds, 0 = never.
    pub exptime: u32,
    pub cas: u64,
    /// Meta: marked stale by an invalidation (`md I`, `ms I`).
    pub stale: bool,
    /// Meta: a win (`W`) flag has been handed out for this item.
    pub win_sent: bool,
    /// Fetched at least once since it was stored.
    pub fetched: bool,
    /// Unix time of the last access.
    pub last_access: u32,
}

impl Item {
    pub fn new(value: Bytes, flags: u32, exptime: u32, cas: u64, now: u32) -> Item {
        Item {
            value,
            flags,
            exptime,
            cas,
            stale: false,
            win_sent: false,
            fetched: false,
            last_access: now,
        }
    }

    pub fn is_expired(&self, now: u32) -> bool {
        self.exptime != 0 && self.exptime <= now
    }
}

/// Why an insert was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("object too large for cache")]
    TooLarge,
    #[error("out of memory storing object")]
    OutOfMemory,
}

/// Counters the store keeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreStats {
    pub bytes: u64,
    pub curr_items: u64,
    pub total_items: u64,
    pub evictions: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub reclaimed: u64,
    pub limit_maxbytes: u64,
}

/// The sharded store.
pub struct Store {
    shards: Box<[Mutex<HashMap<Bytes, Item>>]>,
    cas: AtomicU64,
    cfg: StoreConfig,
}

/// Why [`Slot::get`] found no live item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissReason {
    /// Nothing was stored under the key (or the last [`Slot::get`] found an item).
    Absent,
    /// An item was there but had expired; it has been removed.
    Expired,
    /// An item was there but a `flush_all` invalidated it; it has been removed.
    Flushed,
}

/// Access to one key's slot under its shard lock.
pub struct Slot<'a> {
    map: &'a mut HashMap<Bytes, Item>,
    key: &'a [u8],
    now: u32,
    miss: MissReason,
}

impl Slot<'_> {
    /// The live item, if any. An expired or flushed item is removed and
    /// [`Slot::miss_reason`] says so.
    pub fn get(&mut self) -> Option<&mut Item> {
        if self.map.get(self.key).is_some_and(|i| i.is_expired(self.now)) {
            self.map.remove(self.key);
            self.miss = MissReason::Expired;
        }
        self.map.get_mut(self.key)
    }

    /// Why the last [`Slot::get`] found nothing.
    pub fn miss_reason(&self) -> MissReason {
        self.miss
    }

    /// Stores `item` under the key, replacing any old one.
    pub fn insert(&mut self, item: Item) -> Result<(), StoreError> {
        self.map.insert(Bytes::copy_from_slice(self.key), item);
        Ok(())
    }

    /// Removes the item.
    pub fn remove(&mut self) -> Option<Item> {
        self.map.remove(self.key)
    }
}

impl Store {
    pub fn new(cfg: StoreConfig) -> Store {
        let shards = (0..cfg.shards).map(|_| Mutex::new(HashMap::new())).collect();
        Store {
            shards,
            cas: AtomicU64::new(0),
            cfg,
        }
    }

    /// Runs `f` on the key's slot under its shard lock.
    pub fn with<R>(&self, key: &[u8], now: u32, f: impl FnOnce(&mut Slot<'_>) -> R) -> R {
        let h = key
            .iter()
            .fold(0usize, |h, &b| h.wrapping_mul(31).wrapping_add(b as usize));
        let mut map = self.shards[h % self.shards.len()].lock().unwrap();
        let mut slot = Slot {
            map: &mut map,
            key,
            now,
            miss: MissReason::Absent,
        };
        f(&mut slot)
    }

    /// How many shards the store has.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Removes expired items (the background sweep).
    pub fn sweep(&self, now: u32) {
        for s in self.shards.iter() {
            s.lock().unwrap().retain(|_, i| !i.is_expired(now));
        }
    }

    /// Keeps only the items whose key satisfies `keep`; returns how many were dropped.
    /// Locks one shard at a time.
    pub fn retain_keys(&self, mut keep: impl FnMut(&[u8]) -> bool) -> u64 {
        let mut dropped = 0;
        for s in self.shards.iter() {
            let mut map = s.lock().unwrap();
            let before = map.len();
            map.retain(|k, _| keep(k));
            dropped += (before - map.len()) as u64;
        }
        dropped
    }

    /// A fresh CAS unique.
    pub fn next_cas(&self) -> u64 {
        self.cas.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Makes every later CAS unique larger than `cas` (one applied from a peer).
    pub fn observe_cas(&self, cas: u64) {
        self.cas.fetch_max(cas, Ordering::Relaxed);
    }

    /// Invalidates every item now.
    pub fn flush_all(&self, _now: u32, _delay: i64) {
        for s in self.shards.iter() {
            s.lock().unwrap().clear();
        }
    }

    pub fn stats(&self) -> StoreStats {
        let mut st = StoreStats {
            limit_maxbytes: self.cfg.memory_limit as u64,
            ..Default::default()
        };
        for s in self.shards.iter() {
            st.curr_items += s.lock().unwrap().len() as u64;
        }
        st
    }
}
