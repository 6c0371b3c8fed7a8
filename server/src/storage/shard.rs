//! One shard of the store: its items, its index, its slice of the memory budget,
//! its eviction policy and its counters, all behind the shard's one lock.
//!
//! Layout:
//! - `slots`: a slab of [`Entry`]s addressed by `u32` slot numbers; freed slots are
//!   reused (LIFO) before the slab grows. Slot numbers give the eviction policy and
//!   the sweep cursor stable handles without pointers.
//! - `table`: a `hashbrown::HashTable<u32>` of slot numbers, probed with the key's
//!   xxh3 hash (computed once per request by the store) and compared against the key
//!   bytes held in the slot. It stores 4 bytes per entry instead of a key/value pair,
//!   and needs no `Hasher` at all: we hand it the hash, so there is no `RandomState`
//!   to seed and nothing to hash twice. (HashDoS: xxh3 with a fixed seed is not keyed;
//!   a client that can choose keys can aim them at one shard, but a shard is a plain
//!   probed table whose cost stays proportional to the colliding keys' own bytes.)
//! - each entry's key and value live together in one exact-size heap allocation, so
//!   an item never pins the connection buffer its value arrived in.
//!
//! Invariants (between calls): every `Some` slot is in `table` and in the policy
//! exactly once; `free` holds exactly the `None` slots; `bytes` is the sum of
//! [`Shard::cost`] over live slots and never exceeds `limit`.

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

use super::flush::FlushRule;
use super::policy::{EvictionPolicy, PolicyKind};
use super::{Item, StoreError};

/// Hashes a key for shard choice and the shard's table.
pub(super) fn hash_key(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// Bytes a heap allocation of `n` bytes really takes from glibc malloc: an 8-byte
/// header, rounded up to 16, at least 32.
pub(super) const fn malloc_chunk(n: usize) -> usize {
    let chunk = (n + 8 + 15) & !15;
    if chunk < 32 {
        32
    } else {
        chunk
    }
}

/// Bytes of index per item: a 4-byte slot number plus hashbrown's 1 control byte,
/// at the table's typical load (between 7/16 and 7/8), rounded up.
pub(super) const TABLE_BYTES_PER_ITEM: usize = 8;

/// Bytes of slab per item.
pub(super) const ENTRY_BYTES: usize = std::mem::size_of::<Option<Entry>>();

/// [`Entry::bits`]: fetched since stored.
const FETCHED: u8 = 1;
/// [`Entry::bits`]: marked stale by a meta invalidation.
const STALE: u8 = 2;
/// [`Entry::bits`]: a meta win flag was handed out.
const WIN_SENT: u8 = 4;

/// One stored item (40 bytes).
#[derive(Debug)]
pub(super) struct Entry {
    /// The key followed by the value, in one allocation of exactly their length.
    data: Box<[u8]>,
    cas: u64,
    exptime: u32,
    flags: u32,
    /// Unix time of the last access; also the store time that `flush_all N` compares.
    last_access: u32,
    key_len: u16,
    /// [`FETCHED`], [`STALE`], [`WIN_SENT`].
    bits: u8,
}

impl Entry {
    fn key(&self) -> &[u8] {
        &self.data[..usize::from(self.key_len)]
    }

    pub(super) fn value(&self) -> &[u8] {
        &self.data[usize::from(self.key_len)..]
    }

    pub(super) fn cas(&self) -> u64 {
        self.cas
    }

    fn fetched(&self) -> bool {
        self.bits & FETCHED != 0
    }

    /// Records a read at `now`: fetched, last access, and for get-and-touch a new
    /// expiry. Returns the value, flags and CAS unique to answer with.
    pub(super) fn mark_read(&mut self, now: u32, touch_to: Option<u32>) -> (&[u8], u32, u64) {
        self.bits |= FETCHED;
        self.last_access = self.last_access.max(now);
        if let Some(exp) = touch_to {
            self.exptime = exp;
        }
        (self.value(), self.flags, self.cas)
    }

    /// The item as the public [`Item`], with `value` a copy of the stored bytes.
    pub(super) fn to_item(&self, value: bytes::Bytes) -> Item {
        Item {
            value,
            flags: self.flags,
            exptime: self.exptime,
            cas: self.cas,
            stale: self.bits & STALE != 0,
            win_sent: self.bits & WIN_SENT != 0,
            fetched: self.fetched(),
            last_access: self.last_access,
        }
    }

    /// Copies an item's metadata (not its value) into the entry. A last access time
    /// in the future is clamped to `now`: it would let the item outlive a delayed
    /// `flush_all`.
    pub(super) fn set_meta(&mut self, item: &Item, now: u32) {
        self.flags = item.flags;
        self.exptime = item.exptime;
        self.cas = item.cas;
        self.last_access = item.last_access.min(now);
        self.bits = (if item.fetched { FETCHED } else { 0 })
            | (if item.stale { STALE } else { 0 })
            | (if item.win_sent { WIN_SENT } else { 0 });
    }
}

/// Whether a found item may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Liveness {
    Live,
    Expired,
    Flushed,
}

/// The counters a shard keeps for `stats`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counters {
    pub(super) total_items: u64,
    pub(super) evictions: u64,
    pub(super) expired_unfetched: u64,
    pub(super) evicted_unfetched: u64,
    pub(super) reclaimed: u64,
}

/// One shard (see the module doc).
pub(super) struct Shard {
    table: HashTable<u32>,
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    policy: Box<dyn EvictionPolicy>,
    /// This shard's slice of the memory budget, in bytes.
    limit: usize,
    max_item_size: usize,
    /// Sum of the live items' costs.
    bytes: usize,
    items: usize,
    /// Fixed part of every item's cost: slab entry, index, policy state.
    overhead: usize,
    /// Where the next sweep resumes.
    cursor: usize,
    pub(super) flush: FlushRule,
    pub(super) counters: Counters,
}

fn slot_hash(slots: &[Option<Entry>], idx: u32) -> u64 {
    slots
        .get(idx as usize)
        .and_then(Option::as_ref)
        .map_or(0, |e| hash_key(e.key()))
}

impl Shard {
    pub(super) fn new(limit: usize, max_item_size: usize, policy: PolicyKind) -> Shard {
        let policy = policy.build();
        Shard {
            table: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            overhead: ENTRY_BYTES + TABLE_BYTES_PER_ITEM + policy.bytes_per_item(),
            policy,
            limit,
            max_item_size,
            bytes: 0,
            items: 0,
            cursor: 0,
            flush: FlushRule::default(),
            counters: Counters::default(),
        }
    }

    /// What an item with `data_len` bytes of key plus value costs against the budget.
    pub(super) fn cost(&self, data_len: usize) -> usize {
        malloc_chunk(data_len) + self.overhead
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn items(&self) -> usize {
        self.items
    }

    /// The slot holding `key`, if any (live or not).
    pub(super) fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(hash, |&i| slots[i as usize].as_ref().is_some_and(|e| e.key() == key))
            .copied()
    }

    pub(super) fn entry(&self, idx: u32) -> Option<&Entry> {
        self.slots.get(idx as usize).and_then(Option::as_ref)
    }

    pub(super) fn entry_mut(&mut self, idx: u32) -> Option<&mut Entry> {
        self.slots.get_mut(idx as usize).and_then(Option::as_mut)
    }

    /// Whether the item in `idx` may be served at `now` (flush first, as memcached).
    /// The caller has applied `flush.advance(now)`.
    pub(super) fn liveness(&self, idx: u32, now: u32) -> Liveness {
        match self.entry(idx) {
            Some(e) if self.flush.is_flushed(e.cas, e.last_access) => Liveness::Flushed,
            Some(e) if e.exptime != 0 && e.exptime <= now => Liveness::Expired,
            Some(_) | None => Liveness::Live,
        }
    }

    /// Tells the policy the item in `idx` was read.
    pub(super) fn touch(&mut self, idx: u32) {
        self.policy.access(idx);
    }

    /// Removes the item in `idx` from table and slab and returns it; the caller has
    /// already taken it out of the policy.
    fn unlink(&mut self, idx: u32) -> Option<Entry> {
        let entry = self.slots.get_mut(idx as usize)?.take()?;
        let hash = hash_key(entry.key());
        if let Ok(found) = self.table.find_entry(hash, |&i| i == idx) {
            found.remove();
        }
        self.free.push(idx);
        self.bytes -= self.cost(entry.data.len());
        self.items -= 1;
        Some(entry)
    }

    /// Removes the item in `idx` (a delete, a replacement, or an expired or flushed
    /// item met on access or by the sweep), counting a reclaim for the last two.
    pub(super) fn remove(&mut self, idx: u32, now: u32) -> Option<Entry> {
        self.entry(idx)?;
        let state = self.liveness(idx, now);
        self.policy.remove(idx);
        let entry = self.unlink(idx)?;
        self.count_reclaim(state, &entry);
        Some(entry)
    }

    fn count_reclaim(&mut self, state: Liveness, entry: &Entry) {
        match state {
            Liveness::Live => {}
            Liveness::Expired | Liveness::Flushed => {
                self.counters.reclaimed += 1;
                if !entry.fetched() {
                    self.counters.expired_unfetched += 1;
                }
            }
        }
    }

    /// Evicts until `charge` more bytes fit in the budget.
    fn make_room(&mut self, charge: usize, now: u32) -> Result<(), StoreError> {
        while self.bytes + charge > self.limit {
            let slots = &self.slots;
            let Some(idx) = self.policy.evict(&|i| slot_hash(slots, i)) else {
                return Err(StoreError::OutOfMemory);
            };
            let state = self.liveness(idx, now);
            let Some(entry) = self.unlink(idx) else {
                return Err(StoreError::OutOfMemory);
            };
            match state {
                Liveness::Live => {
                    self.counters.evictions += 1;
                    if !entry.fetched() {
                        self.counters.evicted_unfetched += 1;
                    }
                }
                Liveness::Expired | Liveness::Flushed => self.count_reclaim(state, &entry),
            }
        }
        Ok(())
    }

    /// Stores `item` under `key`, replacing any item there. A refused item still
    /// removes the old one, as memcached does, so a failed `set` never leaves the
    /// previous value behind.
    pub(super) fn store(&mut self, hash: u64, key: &[u8], item: &Item, now: u32) -> Result<(), StoreError> {
        if let Some(old) = self.find(hash, key) {
            self.remove(old, now);
        }
        let data_len = key.len() + item.value.len();
        let charge = self.cost(data_len);
        let key_len = u16::try_from(key.len()).map_err(|_| StoreError::TooLarge)?;
        if data_len > self.max_item_size || charge > self.limit {
            return Err(StoreError::TooLarge);
        }
        self.make_room(charge, now)?;
        let idx = match self.free.pop() {
            Some(idx) => idx,
            None => {
                let idx = u32::try_from(self.slots.len())
                    .ok()
                    .filter(|&i| i < super::list::NIL)
                    .ok_or(StoreError::OutOfMemory)?;
                if self.slots.len() == self.slots.capacity() {
                    self.slots.reserve_exact((self.slots.len() / 4).max(16));
                }
                self.slots.push(None);
                idx
            }
        };
        let mut data = Vec::with_capacity(data_len);
        data.extend_from_slice(key);
        data.extend_from_slice(&item.value);
        let mut entry = Entry {
            data: data.into_boxed_slice(),
            cas: 0,
            exptime: 0,
            flags: 0,
            last_access: now,
            key_len,
            bits: 0,
        };
        entry.set_meta(item, now);
        // The store time is now, whatever the caller's copy says: the flush rule
        // compares it.
        entry.last_access = now;
        self.slots[idx as usize] = Some(entry);
        let slots = &self.slots;
        self.table.insert_unique(hash, idx, |&i| slot_hash(slots, i));
        self.policy.insert(idx, hash);
        self.bytes += charge;
        self.items += 1;
        self.counters.total_items += 1;
        Ok(())
    }

    /// Examines up to `budget` slots from the sweep cursor, removing expired and
    /// flushed items. Returns how many it removed.
    pub(super) fn sweep(&mut self, now: u32, budget: usize) -> usize {
        self.flush.advance(now);
        let mut removed = 0;
        for _ in 0..budget.min(self.slots.len()) {
            if self.cursor >= self.slots.len() {
                self.cursor = 0;
            }
            let idx = self.cursor as u32;
            self.cursor += 1;
            if self.entry(idx).is_some() && self.liveness(idx, now) != Liveness::Live {
                self.remove(idx, now);
                removed += 1;
            }
        }
        removed
    }

    /// Calls `f` with every live item (key, value, flags, exptime, CAS).
    pub(super) fn scan(&self, now: u32, f: &mut impl FnMut(&[u8], &[u8], u32, u32, u64)) {
        for idx in 0..self.slots.len() as u32 {
            if self.liveness(idx, now) != Liveness::Live {
                continue;
            }
            if let Some(e) = self.entry(idx) {
                f(e.key(), e.value(), e.flags, e.exptime, e.cas);
            }
        }
    }

    /// Removes every item whose key fails `keep` (keys a ring change took away from
    /// this node). Returns how many it removed.
    pub(super) fn retain_keys(&mut self, keep: &mut impl FnMut(&[u8]) -> bool, now: u32) -> usize {
        let mut removed = 0;
        for idx in 0..self.slots.len() as u32 {
            let drop = self.entry(idx).is_some_and(|e| !keep(e.key()));
            if drop && self.remove(idx, now).is_some() {
                removed += 1;
            }
        }
        removed
    }

    /// Checks the invariants in the module doc; for tests.
    #[cfg(test)]
    pub(super) fn check(&self) {
        let live = self.slots.iter().filter(|s| s.is_some()).count();
        assert_eq!(live, self.items);
        assert_eq!(self.table.len(), self.items);
        assert_eq!(self.free.len() + live, self.slots.len());
        let bytes: usize = self.slots.iter().flatten().map(|e| self.cost(e.data.len())).sum();
        assert_eq!(bytes, self.bytes);
        assert!(self.bytes <= self.limit);
        for (i, e) in self.slots.iter().enumerate() {
            if let Some(e) = e {
                assert_eq!(self.find(hash_key(e.key()), e.key()), Some(i as u32));
            }
        }
    }
}
