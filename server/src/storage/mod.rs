//! The in-memory store: sharded, memory-bounded, with S3-FIFO eviction and
//! memcached's expiry and `flush_all` rules.
//!
//! # Shape
//! A [`Store`] is a power-of-two number of shards (`shard.rs`), each a `std::sync::Mutex`
//! around its own segments, index, eviction state and slice of the memory budget
//! (`memory_limit / shards`). A request hashes its key once with xxh3-64; bits 32..48
//! of the hash pick the shard and the whole hash probes the shard's table (whose
//! bucket index uses the low bits and control bytes the top 7, so neither overlaps
//! the shard bits). A `std` mutex is enough: critical sections are a probe and a few
//! field writes, shards outnumber cores several times over, and an uncontended
//! `std::sync::Mutex` is a single atomic operation.
//!
//! Commands run under the lock through [`Store::with`] and a [`Slot`]: look at the
//! item, change it, replace it or remove it, atomically for that key.
//!
//! # Memory
//! Items live packed in segments: a variable-length header (key length, bits, then
//! varints for value length, CAS and times as deltas from per-segment bases, flags and
//! expiry only when set; `item.rs`), then key and value, with no allocation,
//! allocator header or size-class rounding per item. A segment is
//! `memory_limit / shards / 64` bytes (1 KiB to 64 KiB); an item larger than that
//! gets a segment of its own made of segment-size chunks (its last chunk partly
//! unused), so every buffer is the same size: buffers go back to the shard's pool and
//! are reused, not freed and faulted in again, whatever mix of sizes comes and goes.
//!
//! `memory_limit` (`-m`) bounds the segments, the index and S3-FIFO's ghost: each
//! shard's segments (in use, reserved for eviction, or pooled) get its slice less its
//! index table's and ghost's bytes (`Shard::fit`). Within the segments the commonest item (no flags, no
//! expiry, a value under 128 bytes, written soon after its segment's first item) costs
//!
//! ```text
//! cost = 5 + key + value        (6 once 128 CAS uniques from its segment's first)
//! ```
//!
//! so a 14-byte key and a 100-byte value cost 119-120 bytes, against memcached's
//! 192-byte slab chunk for the same item (48-byte header + 8 CAS + key + NUL + value +
//! CRLF = 173, rounded up to its slab class): 1.6x the items per MiB. The full formula
//! is in `docs/ARCHITECTURE.md`. What the segments lose: the unused tail of each open
//! segment (less than one item), one segment per shard kept free for eviction's
//! copying, and the dead bytes of deleted, replaced and moved items until their
//! segment is reclaimed or compacted (`shard.rs`).
//!
//! Also charged to `-m` (memcached leaves its hash table out of its `-m`): the index
//! (`index.rs`), 4-byte locations plus a tag byte a slot and an overflow byte per 7
//! slots, filled to 7/8 (5.9 bytes per item when full; a full table grows, to about
//! what the budget can hold and at most double, only if the budget less a table a
//! quarter bigger still holds more items than it does now, so a filled store's table
//! ends nearly full), and S3-FIFO's ghost (4 to 8 bytes per item in the main queue).
//! [`StoreStats::index_bytes`] reports them; `benches/memory.rs` measures items per
//! MiB with and without them.
//!
//! [`Store::set_memory_limit`] (`cache_memlimit`) changes the limit at run time: a
//! shrink evicts at once until every shard's segments fit its new slice and frees the
//! buffers (`Shard::resize`); a grow lets more in. The shard count stays as chosen at
//! start.
//!
//! An insert that does not fit evicts until it does. An item whose key and value
//! exceed `max_item_size`, or that could not fit a shard beside the eviction reserve,
//! is [`StoreError::TooLarge`]; an insert eviction cannot make room for (which the
//! invariants rule out) is [`StoreError::OutOfMemory`]. Either way any old item under
//! the key is removed first, as memcached does. Shards are halved (down to one) until
//! each can hold two items of `max_item_size`, so a legal item always fits.
//!
//! # Values
//! A value is copied into its segment on insert, never kept as the `Bytes` slice it
//! arrived in (which would pin a whole connection read buffer). A big value can
//! instead be read straight into the chunks it will live in, as memcached reads a
//! value into the item it allocated from the command line: [`Store::land`] lends
//! them once the line is parsed, the connection reads into [`Landing::spare`], and
//! [`Slot::insert_landed`] stores the item without copying the value. [`Slot::read`] lends
//! the value in place under the lock (the `get` hot path), as a [`Value`]: one slice,
//! or a big item's slice per chunk; [`Slot::get`] hands out an
//! [`Item`] whose `value` is a fresh copy, and changes the caller makes to that `Item`
//! are written back when [`Store::with`] returns.
//!
//! # Eviction
//! [`PolicyKind`] selects S3-FIFO or CLOCK (FIFO with reinsertion), both run over
//! segments (`shard.rs`): eviction takes a queue's oldest segment, copies forward the
//! items read since they were written and drops the rest. A read never moves
//! anything; it bumps a 2-bit frequency in the item's header. `benches/eviction.rs`
//! measures miss ratios of both and of S3-FIFO's variants ([`S3Tuning`]) on Zipf and
//! scan read-through workloads at equal byte budgets; S3-FIFO with
//! [`S3Tuning::DEFAULT`] is the default ([`EVICTION_POLICY`]) on those numbers (8 MiB,
//! 16 shards, 100-byte values, 729,440 keys, 2M requests; `docs/bench/eviction.md`):
//!
//! ```text
//! trace       s3fifo   clock     (miss ratios)
//! zipf 0.8    0.4809   0.5199
//! zipf 0.99   0.2317   0.2465
//! zipf 1.2    0.0660   0.0660
//! scan mix    0.5129   0.5390
//! ```
//!
//! # Expiry and flush
//! [`absolute_expiry`] converts memcached exptimes. An expired or flushed item is
//! invisible at once: [`Slot::get`] removes it and [`Slot::miss_reason`] says why.
//! It is removed on that access, when eviction meets it (counted as `reclaimed`, not
//! as an eviction), or by [`Store::sweep`], which the server calls every second and
//! which examines a bounded number of items per shard, releasing the lock between
//! batches; its bytes come back with its segment. The `flush_all` rule is in `flush.rs`.

mod flush;
mod ghost;
mod index;
mod item;
mod policy;
mod shard;
#[cfg(test)]
mod tests;
mod tombstone;
#[cfg(test)]
mod workload;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use item::Meta;
pub use item::Value;
pub use policy::{PolicyKind, S3Tuning};
use shard::{gather, hash_key, Liveness, Loc, Read, Shard, Src};

/// Relative exptimes up to this many seconds (30 days); larger ones are Unix times.
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// The largest heat of an item ([`Store::scan_shard_at_heat`]).
pub const MAX_HEAT: u8 = 3;

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

/// The policy [`Store::new`] uses.
pub const DEFAULT_POLICY: PolicyKind = PolicyKind::S3Fifo;

/// The eviction policy's name, reported by `stats settings`.
pub const EVICTION_POLICY: &str = DEFAULT_POLICY.name();

/// The largest shard budget the store makes (see [`Store::with_policy`]).
const MAX_SHARD_BYTES: usize = 1 << 30;

/// Slots a sweep examines per shard while holding its lock once.
const SWEEP_BATCH: usize = 512;
/// Lock holds per shard per [`Store::sweep`] call: a call examines up to
/// `SWEEP_BATCH * SWEEP_ROUNDS` slots of each shard.
const SWEEP_ROUNDS: usize = 8;

/// Store settings.
#[derive(Debug, Clone, Copy)]
pub struct StoreConfig {
    /// The budget for the sum of item costs, in bytes (see the module doc).
    pub memory_limit: usize,
    /// Shards wanted; rounded up to a power of two (at most 65536), then halved while
    /// a shard could not hold two items of `max_item_size`.
    pub shards: usize,
    /// The largest key plus value accepted, in bytes.
    pub max_item_size: usize,
}

/// One cached item, as commands see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The data.
    pub value: Bytes,
    /// The client flags.
    pub flags: u32,
    /// Absolute Unix time in seconds, 0 = never.
    pub exptime: u32,
    /// The CAS unique.
    pub cas: u64,
    /// Meta: marked stale by an invalidation (`md I`, `ms I`).
    pub stale: bool,
    /// Meta: a win (`W`) flag has been handed out for this item.
    pub win_sent: bool,
    /// Fetched at least once since it was stored.
    pub fetched: bool,
    /// Unix time of the last access. On insert the store records `now` instead.
    pub last_access: u32,
}

impl Item {
    /// A new item, last accessed at Unix time `now`, neither stale nor fetched yet.
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

    /// Whether the item has expired by Unix time `now`.
    pub fn is_expired(&self, now: u32) -> bool {
        self.exptime != 0 && self.exptime <= now
    }
}

/// Why an insert was refused. The old item under the key, if any, is gone either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Key plus value exceed `max_item_size`, or the item costs more than a shard's
    /// budget.
    #[error("{}", ringcache_protocol::text::response::TOO_LARGE_MSG)]
    TooLarge,
    /// Eviction could not make room.
    #[error("{}", ringcache_protocol::text::response::NO_MEMORY_STORING_MSG)]
    OutOfMemory,
}

/// Counters the store keeps, summed over shards.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreStats {
    /// Sum of the live items' sizes: header, key and value (see the module doc).
    pub bytes: u64,
    /// Live items.
    pub curr_items: u64,
    /// Successful inserts.
    pub total_items: u64,
    /// Live items evicted to make room.
    pub evictions: u64,
    /// Expired or flushed items reclaimed that had never been fetched.
    pub expired_unfetched: u64,
    /// Evicted items that had never been fetched.
    pub evicted_unfetched: u64,
    /// Expired or flushed items whose memory was reclaimed (on access, by eviction
    /// or by the sweep).
    pub reclaimed: u64,
    /// Live items copied forward by eviction (reinserted or compacted).
    pub moved: u64,
    /// Segments evicted or reclaimed by the thread storing an item (all eviction is
    /// done that way; memcached's `direct_reclaims`).
    pub direct_reclaims: u64,
    /// Bytes of segments allocated (in use or pooled).
    pub allocated: u64,
    /// Bytes of the index tables and S3-FIFO's ghost (their slots, at their load).
    pub index_bytes: u64,
    /// The memory limit in bytes (`-m`, `cache_memlimit`): segments, index and ghost.
    pub limit_maxbytes: u64,
}

/// The sharded store.
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    /// `shards.len() - 1`.
    mask: usize,
    /// The last CAS unique handed out.
    cas: AtomicU64,
    /// Whether CAS uniques follow the clock (see [`Store::with_clock_cas`]).
    clock_cas: bool,
    /// The memory limit in force, in bytes (`-m`, then `cache_memlimit`).
    memory_limit: AtomicUsize,
    /// Held while the limit changes, so two changes do not interleave shard by shard.
    resizing: Mutex<()>,
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

/// An item handed out by [`Slot::get`], written back when the slot closes.
struct View {
    idx: Loc,
    item: Item,
    /// The value as handed out: keeps its allocation alive so that a changed
    /// `item.value` can be told apart by address.
    original: Bytes,
}

/// Access to one key's slot under its shard lock.
pub struct Slot<'a> {
    shard: &'a mut Shard,
    key: &'a [u8],
    hash: u64,
    now: u32,
    miss: MissReason,
    view: Option<View>,
}

impl Slot<'_> {
    /// The live item, if any. An expired or flushed item is removed and
    /// [`Slot::miss_reason`] says so. Changes made to the returned item are kept.
    pub fn get(&mut self) -> Option<&mut Item> {
        if self.view.is_none() {
            let idx = self.live_index()?;
            let r = self.shard.item(idx)?;
            let value = r.value().to_bytes();
            let original = value.clone();
            let item = r.to_item(value);
            self.shard.touch(idx);
            self.miss = MissReason::Absent;
            self.view = Some(View { idx, item, original });
        }
        self.view.as_mut().map(|v| &mut v.item)
    }

    /// A read without copying the value: if the item is live, marks it fetched (and for
    /// get-and-touch sets its expiry to `touch_to`), then calls `f` with its value
    /// (borrowed from the store, under the shard lock), flags and CAS unique. `None` on
    /// a miss, with [`Slot::miss_reason`] saying why. The hot path of `get`.
    pub fn read<R>(&mut self, touch_to: Option<u32>, f: impl FnOnce(Value<'_>, u32, u64) -> R) -> Option<R> {
        if let Some(view) = &mut self.view {
            // A `get` earlier in this call handed out a copy: read that one.
            view.item.fetched = true;
            view.item.last_access = self.now;
            if let Some(exp) = touch_to {
                view.item.exptime = exp;
            }
            return Some(f(Value::flat(&view.item.value), view.item.flags, view.item.cas));
        }
        let idx = self.shard.find(self.hash, self.key)?;
        match self.shard.read(idx, self.now, touch_to) {
            Read::Hit(r) => {
                self.miss = MissReason::Absent;
                return Some(f(r.value(), r.flags(), r.cas()));
            }
            Read::Absent => return None,
            Read::Gone(state) => {
                self.shard.remove_hashed(idx, self.hash, self.now, false);
                self.miss = match state {
                    Liveness::Flushed => MissReason::Flushed,
                    _ => MissReason::Expired,
                };
                return None;
            }
            Read::NoRoom => {}
        }
        // The header has no room for the new last access or expiry: move the item.
        self.miss = MissReason::Absent;
        let mut meta = self.shard.item(idx)?.meta();
        meta.bits |= item::M_FETCHED;
        meta.last_access = meta.last_access.max(self.now);
        if let Some(exp) = touch_to {
            meta.exptime = exp;
        }
        let idx = self.shard.relocate(idx, self.hash, &meta, self.now).ok()?;
        let r = self.shard.item(idx)?;
        Some(f(r.value(), r.flags(), r.cas()))
    }

    /// The CAS unique of the live item, without copying it out (no fetch is recorded).
    pub fn cas(&mut self) -> Option<u64> {
        if let Some(view) = &self.view {
            return Some(view.item.cas);
        }
        let idx = self.live_index()?;
        self.shard.item(idx).map(|r| r.cas())
    }

    /// The slot of the key's live item; an expired or flushed one is removed and the
    /// miss reason recorded.
    fn live_index(&mut self) -> Option<Loc> {
        let idx = self.shard.find(self.hash, self.key)?;
        let reason = match self.shard.liveness(idx, self.now) {
            Liveness::Live => return Some(idx),
            Liveness::Expired => MissReason::Expired,
            Liveness::Flushed => MissReason::Flushed,
        };
        self.shard.remove_hashed(idx, self.hash, self.now, false);
        self.miss = reason;
        None
    }

    /// Why the last [`Slot::get`] found nothing.
    pub fn miss_reason(&self) -> MissReason {
        self.miss
    }

    /// Stores `item` under the key, replacing any old one. On an error the old one is
    /// removed too.
    pub fn insert(&mut self, item: Item) -> Result<(), StoreError> {
        self.view = None;
        self.shard.store(self.hash, self.key, &item, self.now)
    }

    /// [`Slot::insert`] with the value read into `landing` (for this key, and full):
    /// stored without a copy when the item comes out as the chunks were laid out for
    /// (the chunks are then the item's), else copied out of them (the landing keeps
    /// its chunks). A landing of another key, or not full, is stored as a copy of
    /// what it holds. Drop the landing outside [`Store::with`]: giving its chunks back
    /// takes its shard's lock.
    pub fn insert_landed(&mut self, item: Item, landing: &mut Landing<'_>) -> Result<(), StoreError> {
        self.view = None;
        if landing.hash != self.hash || !landing.is_full() || landing.chunks.is_empty() {
            debug_assert!(false, "a landing of another key, or not full: {landing:?}");
            let value = landing.to_bytes();
            return self.insert(Item { value, ..item });
        }
        let src = Src::Landed {
            chunks: std::mem::take(&mut landing.chunks),
            head: landing.head,
            len: landing.len,
        };
        self.shard.store_from(self.hash, self.key, &item, src, self.now)
    }

    /// Whether a version with CAS unique `cas` is newer than every version of the key
    /// this store holds or remembers (a live item, or a tombstone): what
    /// [`Store::keep_newer`] keeps.
    pub fn is_newer(&mut self, cas: u64) -> bool {
        // `cas()` first: an expired item it finds is removed and buried.
        !(self.cas().is_some_and(|mine| mine >= cas) || self.shard.buried(self.hash, cas, self.now))
    }

    /// Removes the item; true if it was live (an expired or flushed one is removed too,
    /// and counts as absent). On a cluster node the removed version is remembered for a
    /// while (`tombstone.rs`), so an older one from a peer is not taken back.
    pub fn remove(&mut self) -> bool {
        self.view = None;
        let Some(idx) = self.shard.find(self.hash, self.key) else {
            return false;
        };
        let live = self.shard.liveness(idx, self.now) == Liveness::Live;
        self.shard.remove_hashed(idx, self.hash, self.now, true) && live
    }

    /// Remembers a delete of the key made elsewhere with CAS unique `cas` (a replicated
    /// delete), whether or not an item is here: versions no newer are refused by
    /// [`Store::keep_newer`] for a while. No effect unless the store keeps tombstones.
    pub fn bury(&mut self, cas: u64) {
        self.shard.bury(self.hash, cas, self.now);
    }

    /// Writes back what the caller changed in the item [`Slot::get`] handed out.
    fn close(&mut self) {
        let Some(view) = self.view.take() else {
            return;
        };
        let same_value =
            view.item.value.as_ptr() == view.original.as_ptr() && view.item.value.len() == view.original.len();
        if same_value {
            let item = &view.item;
            // A last access in the future would let the item outlive a delayed
            // `flush_all`.
            let meta = Meta::of(item, item.last_access.min(self.now));
            let fits = self.shard.item_mut(view.idx).is_some_and(|mut m| m.try_set_meta(&meta));
            if !fits {
                // A header too narrow for the new metadata: the item moves (or, if it
                // cannot, is gone: a miss, never the old metadata).
                let _ = self.shard.relocate(view.idx, self.hash, &meta, self.now);
            }
        } else {
            // A replaced value is a new item (its cost may differ). If it cannot be
            // stored the key ends up empty, never holding the value the caller
            // replaced.
            let _ = self.shard.store(self.hash, self.key, &view.item, self.now);
        }
    }
}

/// Chunks of the store lent for a big value to be read into ([`Store::land`]), in
/// order: the value's bytes go to [`Landing::spare`], then [`Slot::insert_landed`]
/// stores the item. Dropped unstored, the chunks go back to their shard.
pub struct Landing<'a> {
    store: &'a Store,
    shard: usize,
    hash: u64,
    /// Empty once stored.
    chunks: Vec<Box<[u8]>>,
    /// Bytes of header and key before the value.
    head: usize,
    /// The value's length, and how much of it is filled.
    len: usize,
    filled: usize,
}

impl Landing<'_> {
    /// Where the value's next bytes go: the rest of the chunk they fall in, at most
    /// what is still to come (empty once full).
    pub fn spare(&mut self) -> &mut [u8] {
        let at = self.head + self.filled;
        let left = self.len - self.filled;
        let size = self.chunks[0].len();
        let (i, off) = (at / size, at % size);
        match self.chunks.get_mut(i) {
            Some(c) => {
                let end = c.len().min(off + left);
                &mut c[off..end]
            }
            None => &mut [],
        }
    }

    /// Counts `n` more bytes of the value as written to [`Landing::spare`].
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.len - self.filled);
        self.filled += n;
    }

    /// Whether the whole value is in.
    pub fn is_full(&self) -> bool {
        self.filled == self.len
    }

    /// The value's bytes filled so far, copied out.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(gather(&self.chunks, self.head, self.filled))
    }
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        if !self.chunks.is_empty() {
            let chunks = std::mem::take(&mut self.chunks);
            self.store.lock(self.shard).return_chunks(chunks);
        }
    }
}

impl std::fmt::Debug for Landing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Landing")
            .field("shard", &self.shard)
            .field("chunks", &self.chunks.len())
            .field("len", &self.len)
            .field("filled", &self.filled)
            .finish()
    }
}

impl Store {
    /// Lends the chunks a `key` with a `value_len`-byte value, `flags` and absolute
    /// `exptime`, stored at Unix time `now`, will live in, for the value to be read
    /// straight into them; `None` unless the item is big (over a segment) and there is
    /// room for it now, in which case the value is read and stored as usual. The
    /// chunks count against the memory limit from now on.
    pub fn land(&self, key: &[u8], value_len: usize, flags: u32, exptime: u32, now: u32) -> Option<Landing<'_>> {
        let hash = hash_key(key);
        let i = (hash >> 32) as usize & self.mask;
        let meta = Meta::of(&Item::new(Bytes::new(), flags, exptime, 0, now), now);
        let (chunks, head) = self.lock(i).lend_chunks(key.len(), value_len, &meta, now)?;
        Some(Landing {
            store: self,
            shard: i,
            hash,
            chunks,
            head,
            len: value_len,
            filled: 0,
        })
    }

    /// A store running [`DEFAULT_POLICY`].
    pub fn new(cfg: StoreConfig) -> Store {
        Store::with_policy(cfg, DEFAULT_POLICY)
    }

    /// A store running `policy`.
    pub fn with_policy(cfg: StoreConfig, policy: PolicyKind) -> Store {
        Store::build(cfg, policy, S3Tuning::DEFAULT)
    }

    /// A store running S3-FIFO with knobs other than the default's (for the eviction
    /// benchmark, which measures the variants).
    pub fn with_s3_tuning(cfg: StoreConfig, tuning: S3Tuning) -> Store {
        Store::build(cfg, PolicyKind::S3Fifo, tuning)
    }

    fn build(cfg: StoreConfig, policy: PolicyKind, tuning: S3Tuning) -> Store {
        let mut n = cfg.shards.clamp(1, 1 << 16).next_power_of_two();
        // Item locations name a segment in 16 bits: keep shards at most 1 GiB (16 Ki
        // segments of 64 KiB, and as many big items' segments at most).
        while n < 1 << 16 && cfg.memory_limit / n > MAX_SHARD_BYTES {
            n *= 2;
        }
        while n > 1 && cfg.memory_limit / n < cfg.max_item_size.saturating_add(item::MAX_HEADER).saturating_mul(2) {
            n /= 2;
        }
        let limit = cfg.memory_limit / n;
        let shards = (0..n)
            .map(|_| Mutex::new(Shard::new(limit, cfg.max_item_size, policy, tuning)))
            .collect();
        Store {
            shards,
            mask: n - 1,
            cas: AtomicU64::new(0),
            clock_cas: false,
            memory_limit: AtomicUsize::new(cfg.memory_limit),
            resizing: Mutex::new(()),
        }
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // No code path panics while holding a shard; should one ever do so, the shard
        // is still better served than abandoned.
        self.shards[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the key's slot under its shard lock.
    pub fn with<R>(&self, key: &[u8], now: u32, f: impl FnOnce(&mut Slot<'_>) -> R) -> R {
        let hash = hash_key(key);
        let mut shard = self.lock((hash >> 32) as usize & self.mask);
        shard.flush.advance(now);
        let mut slot = Slot {
            shard: &mut shard,
            key,
            hash,
            now,
            miss: MissReason::Absent,
            view: None,
        };
        let r = f(&mut slot);
        slot.close();
        r
    }

    /// How many shards the store has.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The memory limit in force, in bytes.
    pub fn memory_limit(&self) -> usize {
        self.memory_limit.load(Ordering::Relaxed)
    }

    /// Changes the memory limit to `bytes` (`cache_memlimit`), shard by shard, each
    /// getting `bytes / shards`. A smaller limit evicts at once until every shard's
    /// segments fit its new slice, and frees the buffers it no longer needs; a larger
    /// one lets more items in. The shard count stays as it was chosen at start, so
    /// after a large shrink an item must also fit a smaller shard (less its eviction
    /// reserve) or is refused as too large.
    pub fn set_memory_limit(&self, bytes: usize, now: u32) {
        let _one_at_a_time = self.resizing.lock().unwrap_or_else(PoisonError::into_inner);
        self.memory_limit.store(bytes, Ordering::Relaxed);
        let per_shard = bytes / self.shards.len();
        for i in 0..self.shards.len() {
            let mut shard = self.lock(i);
            shard.flush.advance(now);
            shard.resize(per_shard, now);
        }
    }

    /// Reclaims expired and flushed items: examines up to a fixed number of slots per
    /// shard, in batches between which the shard's lock is released, resuming where
    /// the previous call stopped, and at most one lap of a shard per call (a store
    /// smaller than the budget is walked once, not eight times over).
    pub fn sweep(&self, now: u32) {
        for i in 0..self.shards.len() {
            for _ in 0..SWEEP_ROUNDS {
                let (_, lapped) = self.lock(i).sweep(now, SWEEP_BATCH);
                if lapped {
                    break;
                }
            }
        }
    }

    /// The number of shards (see [`Store::retain_keys_in`]).
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Keeps only the items of shard `i` whose key satisfies `keep`, which is called
    /// under the shard's lock; returns how many were dropped.
    pub fn retain_keys_in(&self, i: usize, now: u32, mut keep: impl FnMut(&[u8]) -> bool) -> u64 {
        if i >= self.shards.len() {
            return 0;
        }
        self.lock(i).retain_keys(&mut keep, now) as u64
    }

    /// Keeps only the items whose key satisfies `keep`; returns how many were dropped.
    /// Locks one shard at a time.
    pub fn retain_keys(&self, now: u32, mut keep: impl FnMut(&[u8]) -> bool) -> u64 {
        let mut dropped = 0;
        for i in 0..self.shards.len() {
            dropped += self.lock(i).retain_keys(&mut keep, now) as u64;
        }
        dropped
    }

    /// Calls `f` with every live item of shard `i` (key, value, flags, exptime, CAS),
    /// under that shard's lock: keep `f` short (copy out what you need).
    pub fn scan_shard(&self, i: usize, now: u32, mut f: impl FnMut(&[u8], &[u8], u32, u32, u64)) {
        if i < self.shards.len() {
            self.lock(i).scan(now, &|_| true, &mut f);
        }
    }

    /// [`Store::scan_shard`], of the items whose heat is `heat` only: how often an item
    /// was read lately, the 2-bit access frequency the eviction policy keeps in the
    /// item (0 to [`MAX_HEAT`]: bumped by each read, lowered as the item is passed over
    /// by eviction). A hand-off sends the hottest items first by scanning each heat in
    /// turn.
    pub fn scan_shard_at_heat(&self, i: usize, now: u32, heat: u8, mut f: impl FnMut(&[u8], &[u8], u32, u32, u64)) {
        if i < self.shards.len() {
            self.lock(i).scan(now, &|h| h == heat, &mut f);
        }
    }

    /// Makes CAS uniques a hybrid logical clock: each is the larger of the last one
    /// plus one and the current Unix time in microseconds. Uniques from different
    /// nodes, and from one node before and after a restart, then order by when they
    /// were made (as far as the clocks agree), which is what lets a replica keep the
    /// newer of two versions (`rc_set`: larger CAS wins). A cluster node uses this; a
    /// plain counter (the default) keeps unit tests exact. The store also keeps
    /// tombstones from then on (`tombstone.rs`), so [`Store::keep_newer`] does not take
    /// back a version older than one that expired or was deleted.
    pub fn with_clock_cas(mut self) -> Store {
        self.clock_cas = true;
        for i in 0..self.shards.len() {
            self.lock(i).keep_tombstones();
        }
        self
    }

    /// A fresh CAS unique, larger than every one handed out or observed before.
    pub fn next_cas(&self) -> u64 {
        if !self.clock_cas {
            return self.cas.fetch_add(1, Ordering::Relaxed) + 1;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut cur = self.cas.load(Ordering::Relaxed);
        loop {
            let next = (cur + 1).max(now);
            match self
                .cas
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Stores `item` unless the key already holds a version with a CAS unique at least
    /// as large (the same version or a newer one), and makes later CAS uniques larger
    /// than the item's. How a node applies versions that come from other nodes
    /// (replication, hand-off, read repair), which may arrive in any order. Returns
    /// whether it stored.
    pub fn keep_newer(&self, key: &[u8], item: Item, now: u32) -> bool {
        self.observe_cas(item.cas);
        self.with(key, now, |slot| slot.is_newer(item.cas) && slot.insert(item).is_ok())
    }

    /// Whether versions are ordered by CAS unique across nodes ([`Store::with_clock_cas`]):
    /// a write must then never give a key a CAS unique older than one it had.
    pub fn orders_versions(&self) -> bool {
        self.clock_cas
    }

    /// Makes every later CAS unique larger than `cas` (one applied from a peer).
    pub fn observe_cas(&self, cas: u64) {
        self.cas.fetch_max(cas, Ordering::Relaxed);
    }

    /// `flush_all` with `delay` at `now` (see `flush.rs` for the exact rule).
    ///
    /// An immediate flush (delay ≤ 0) removes every item at once, shard by shard,
    /// rather than recording a CAS floor: items applied later from a peer carry the
    /// peer's CAS uniques, which a local floor would wrongly hide.
    pub fn flush_all(&self, now: u32, delay: i64) {
        if delay <= 0 {
            for i in 0..self.shards.len() {
                let mut shard = self.lock(i);
                shard.flush.cancel_pending();
                shard.retain_keys(&mut |_| false, now);
            }
            return;
        }
        let cas_now = self.cas.load(Ordering::Relaxed);
        for i in 0..self.shards.len() {
            let mut shard = self.lock(i);
            shard.flush.flush(now, delay, cas_now);
            shard.flush.advance(now);
        }
    }

    /// The counters, summed over shards (each locked briefly in turn).
    pub fn stats(&self) -> StoreStats {
        let mut st = StoreStats {
            limit_maxbytes: self.memory_limit() as u64,
            ..Default::default()
        };
        for i in 0..self.shards.len() {
            let shard = self.lock(i);
            let c = shard.counters;
            st.bytes += shard.bytes() as u64;
            st.allocated += shard.allocated() as u64;
            st.index_bytes += shard.index_bytes() as u64;
            st.moved += c.moved;
            st.direct_reclaims += c.direct_reclaims;
            st.curr_items += shard.items() as u64;
            st.total_items += c.total_items;
            st.evictions += c.evictions;
            st.expired_unfetched += c.expired_unfetched;
            st.evicted_unfetched += c.evicted_unfetched;
            st.reclaimed += c.reclaimed;
        }
        st
    }

    /// Bytes an item with this key and value length takes in a segment when it has no
    /// flags and no expiry and its CAS unique is within 127 of its segment's first
    /// (see the module doc): the least it can take.
    pub fn item_cost(&self, key_len: usize, value_len: usize) -> usize {
        item::min_size(key_len, value_len)
    }
}
