//! S3-FIFO eviction (Yang et al., "FIFO queues are all you need for cache
//! eviction", SOSP 2023).
//!
//! Three queues:
//! - **small** (S), about 10% of the items: every new key starts here, so one-hit
//!   wonders (most keys of a skewed workload) leave quickly without disturbing the
//!   rest;
//! - **main** (M), the other 90%: a FIFO with reinsertion — an item at the tail with a
//!   non-zero frequency goes back to the head with its frequency decremented;
//! - **ghost** (G): hashes of keys recently evicted from S. A key found there on
//!   insert was evicted too early and goes straight to M.
//!
//! A hit only bumps a 2-bit frequency (capped at 3); no list moves on reads. The
//! queue sizes are counted in items, not bytes (which would cost 4 more bytes per
//! item to remember each item's charge).
//!
//! The ghost holds 32-bit fingerprints in two generations of hash sets: inserts go
//! to the young one; when it holds half the ghost's capacity (the number of items in
//! M) the old generation is dropped and the young one takes its place, so the ghost
//! remembers between half and all of its capacity of recent evictions without a
//! FIFO of its own. A fingerprint collision only sends an item to M early.
//! Per item: 8 bytes of links, 1 byte of tag, and [`GHOST_BYTES_PER_ITEM`] for the
//! item's share of the ghost.

use hashbrown::HashTable;

use super::list::{Links, List};
use super::policy::EvictionPolicy;

/// The ghost's share of each item's cost: about one fingerprint per item in M, at
/// 4 bytes plus a control byte per table slot and a load between 7/16 and 7/8.
const GHOST_BYTES_PER_ITEM: usize = 10;

/// Tag bit: the slot is in the main queue (else in the small queue).
const IN_MAIN: u8 = 0b100;
/// Tag bits: the access frequency, 0..=3.
const FREQ: u8 = 0b011;
/// A small-queue item read at least this often moves to main instead of leaving.
/// Measured with `benches/eviction.rs`: 2 (the paper's `freq > 1`) lost about half a
/// point of hit ratio at both Zipf alphas.
const PROMOTE_AT: u8 = 1;

/// S3-FIFO over slot numbers.
#[derive(Debug, Default)]
pub(super) struct S3Fifo {
    links: Links,
    small: List,
    main: List,
    /// Per slot: [`IN_MAIN`] and [`FREQ`].
    tags: Vec<u8>,
    ghost: Ghost,
}

impl S3Fifo {
    fn tag(&mut self, idx: u32) -> &mut u8 {
        &mut self.tags[idx as usize]
    }

    /// Evicts from the small queue: promotes read items to main, returns the first
    /// unread one (remembering it in the ghost).
    fn evict_small(&mut self, hash_of: &dyn Fn(u32) -> u64) -> Option<u32> {
        while let Some(idx) = self.small.pop_back(&mut self.links) {
            if *self.tag(idx) & FREQ >= PROMOTE_AT {
                *self.tag(idx) = IN_MAIN;
                self.main.push_front(&mut self.links, idx);
            } else {
                self.ghost.insert(fingerprint(hash_of(idx)), self.main.len());
                return Some(idx);
            }
        }
        None
    }

    /// Evicts from the main queue: reinserts items with a frequency left (spending
    /// one), returns the first without.
    fn evict_main(&mut self) -> Option<u32> {
        // Each reinsertion lowers a frequency of at most 3, so 4 passes suffice.
        for _ in 0..=4 * self.main.len() {
            let idx = self.main.pop_back(&mut self.links)?;
            let tag = self.tag(idx);
            if *tag & FREQ == 0 {
                return Some(idx);
            }
            *tag -= 1;
            self.main.push_front(&mut self.links, idx);
        }
        self.main.pop_back(&mut self.links)
    }
}

impl EvictionPolicy for S3Fifo {
    fn bytes_per_item(&self) -> usize {
        Links::BYTES_PER_SLOT + 1 + GHOST_BYTES_PER_ITEM
    }

    fn insert(&mut self, idx: u32, hash: u64) {
        let i = idx as usize;
        if i >= self.tags.len() {
            if i >= self.tags.capacity() {
                self.tags.reserve_exact((i / 4).max(16));
            }
            self.tags.resize(i + 1, 0);
        }
        if self.ghost.take(fingerprint(hash)) {
            self.tags[i] = IN_MAIN;
            self.main.push_front(&mut self.links, idx);
        } else {
            self.tags[i] = 0;
            self.small.push_front(&mut self.links, idx);
        }
    }

    fn access(&mut self, idx: u32) {
        let tag = self.tag(idx);
        if *tag & FREQ < FREQ {
            *tag += 1;
        }
    }

    fn remove(&mut self, idx: u32) {
        if *self.tag(idx) & IN_MAIN != 0 {
            self.main.unlink(&mut self.links, idx);
        } else {
            self.small.unlink(&mut self.links, idx);
        }
    }

    fn evict(&mut self, hash_of: &dyn Fn(u32) -> u64) -> Option<u32> {
        let total = self.small.len() + self.main.len();
        if self.small.len() * 10 >= total || self.main.is_empty() {
            if let Some(idx) = self.evict_small(hash_of) {
                return Some(idx);
            }
        }
        self.evict_main()
    }
}

/// The ghost's key: the hash's upper half (the shard already used bits 32..48 to pick
/// the shard, which all keys here share, so mix them with the lower half).
fn fingerprint(hash: u64) -> u32 {
    ((hash >> 32) as u32) ^ (hash as u32).rotate_left(16)
}

/// Two generations of fingerprints of recently evicted small-queue items.
#[derive(Debug, Default)]
struct Ghost {
    young: HashTable<u32>,
    old: HashTable<u32>,
}

impl Ghost {
    /// Fingerprints are already hashes; spreading them with one multiply gives the
    /// table's control bytes (the top 7 bits) entropy too.
    fn table_hash(fp: u32) -> u64 {
        u64::from(fp).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// Remembers `fp`; `capacity` is the number of fingerprints to keep (M's size).
    fn insert(&mut self, fp: u32, capacity: usize) {
        if self.young.len() >= (capacity / 2).max(1) {
            std::mem::swap(&mut self.young, &mut self.old);
            self.young.clear();
        }
        let h = Self::table_hash(fp);
        if self.young.find(h, |&x| x == fp).is_none() {
            self.young.insert_unique(h, fp, |&x| Self::table_hash(x));
        }
    }

    /// Forgets `fp` and says whether it was there.
    fn take(&mut self, fp: u32) -> bool {
        let h = Self::table_hash(fp);
        for table in [&mut self.young, &mut self.old] {
            if let Ok(entry) = table.find_entry(h, |&x| x == fp) {
                entry.remove();
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(idx: u32) -> u64 {
        u64::from(idx).wrapping_mul(0x1234_5678_9abc_def1)
    }

    #[test]
    fn one_hit_items_leave_before_read_ones() {
        let mut p = S3Fifo::default();
        for i in 0..10 {
            p.insert(i, hash_of(i));
        }
        for i in [0, 3, 5] {
            p.access(i);
        }
        // All ten are in small; the read ones move to main, the rest leave in FIFO order.
        let first: Vec<u32> = (0..7).filter_map(|_| p.evict(&hash_of)).collect();
        assert_eq!(first, vec![1, 2, 4, 6, 7, 8, 9]);
        assert_eq!(p.main.len(), 3);
    }

    #[test]
    fn ghost_hit_goes_to_main() {
        let mut p = S3Fifo::default();
        p.insert(0, hash_of(0));
        p.insert(1, hash_of(1));
        assert_eq!(p.evict(&hash_of), Some(0));
        // Slot 0 is reused by the same key: the ghost remembers it.
        p.insert(0, hash_of(0));
        assert_eq!(p.tags[0] & IN_MAIN, IN_MAIN);
        assert_eq!(p.small.len(), 1);
        assert_eq!(p.main.len(), 1);
    }

    #[test]
    fn main_reinserts_while_frequency_lasts() {
        let mut p = S3Fifo::default();
        for i in 0..2 {
            p.insert(i, hash_of(i));
            p.access(i);
        }
        // Both promoted to main (small empty), freq reset to 0.
        assert_eq!(p.evict(&hash_of), Some(0));
        p.access(1);
        p.insert(2, hash_of(2));
        p.access(2);
        p.remove(2);
        assert_eq!(p.evict(&hash_of), Some(1));
        assert_eq!(p.evict(&hash_of), None);
    }

    #[test]
    fn ghost_generations_bound_its_size() {
        let mut g = Ghost::default();
        for fp in 0..1000 {
            g.insert(fp, 100);
        }
        assert!(g.young.len() + g.old.len() <= 100);
        assert!(g.take(999));
        assert!(!g.take(999));
        assert!(!g.take(0));
    }
}
