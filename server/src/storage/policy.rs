//! The interface between a shard and its eviction policy.
//!
//! A policy sees only slot numbers (and, when it evicts, a way to hash a slot's
//! key): the shard owns the items, the table and the byte accounting, and asks the
//! policy which slot to give up when an insert needs room. Every policy keeps its
//! own per-slot state in arrays indexed by slot number, so it can be measured on its
//! own and swapped without touching the shard.

use super::lru::Lru;
use super::s3fifo::S3Fifo;
use super::sieve::Sieve;

/// Which eviction policy a store runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// S3-FIFO (Yang et al., SOSP 2023): a small probationary FIFO, a main FIFO with
    /// reinsertion, and a ghost set of recently evicted one-hit keys.
    S3Fifo,
    /// SIEVE (Zhang et al., NSDI 2024): one FIFO and a hand that skips visited items.
    Sieve,
    /// Least recently used: every hit moves the item to the head of one list.
    Lru,
}

impl PolicyKind {
    /// Every policy, in the order the eviction benchmark prints them.
    pub const ALL: [PolicyKind; 3] = [PolicyKind::S3Fifo, PolicyKind::Sieve, PolicyKind::Lru];

    /// The name `stats settings` reports.
    pub const fn name(self) -> &'static str {
        match self {
            PolicyKind::S3Fifo => "s3fifo",
            PolicyKind::Sieve => "sieve",
            PolicyKind::Lru => "lru",
        }
    }

    /// A fresh policy of this kind.
    pub(super) fn build(self) -> Box<dyn EvictionPolicy> {
        match self {
            PolicyKind::S3Fifo => Box::new(S3Fifo::default()),
            PolicyKind::Sieve => Box::new(Sieve::default()),
            PolicyKind::Lru => Box::new(Lru::default()),
        }
    }
}

/// What a shard needs from an eviction policy. All calls happen under the shard's
/// lock; slot numbers are the shard's, and a slot is "in" the policy from
/// [`insert`](EvictionPolicy::insert) until [`remove`](EvictionPolicy::remove) or until
/// [`evict`](EvictionPolicy::evict) returns it.
pub(super) trait EvictionPolicy: Send {
    /// Bytes of policy state per cached item (links, tags, the item's share of a
    /// ghost set), charged to every item's cost.
    fn bytes_per_item(&self) -> usize;

    /// A new item now lives in `idx`; `hash` is its key's hash.
    fn insert(&mut self, idx: u32, hash: u64);

    /// The item in `idx` was read. Must not allocate; FIFO-based policies only set a
    /// bit or bump a counter here.
    fn access(&mut self, idx: u32);

    /// The item in `idx` left the cache for a reason other than eviction (deleted,
    /// replaced, expired, flushed).
    fn remove(&mut self, idx: u32);

    /// Chooses the next victim, forgets it and returns its slot; `None` only when the
    /// policy holds no item. `hash_of` hashes the key in a slot (S3-FIFO remembers the
    /// hashes of evicted one-hit items in its ghost set).
    fn evict(&mut self, hash_of: &dyn Fn(u32) -> u64) -> Option<u32>;
}
