//! S3-FIFO's ghost: fingerprints of keys recently evicted from the small queue.
//!
//! A key found here when it is stored again was evicted too early, and goes straight
//! to the main queue. Fingerprints are 32-bit; a collision only sends an item to main
//! early.
//!
//! Two generations of hash sets: inserts go to the young one; when it holds half the
//! ghost's capacity (the number of items in main) the old generation is dropped and
//! the young one takes its place, so the ghost remembers between half and all of its
//! capacity of recent evictions without a FIFO of its own. The ghost lives outside
//! the segments (about 10 bytes per item in main: a 4-byte fingerprint plus a control
//! byte per table slot, at the table's load); see the store's memory notes.

use hashbrown::HashTable;

/// The ghost's key: the hash's upper half mixed with its lower half (the shard
/// already used bits 32..48 to pick the shard, which all keys here share).
pub(super) fn fingerprint(hash: u64) -> u32 {
    ((hash >> 32) as u32) ^ (hash as u32).rotate_left(16)
}

/// Two generations of fingerprints of recently evicted small-queue items.
#[derive(Debug, Default)]
pub(super) struct Ghost {
    young: HashTable<u32>,
    old: HashTable<u32>,
}

impl Ghost {
    /// Fingerprints are already hashes; spreading them with one multiply gives the
    /// table's control bytes (the top 7 bits) entropy too.
    fn table_hash(fp: u32) -> u64 {
        u64::from(fp).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// Remembers `fp`; `capacity` is the number of fingerprints to keep (main's size).
    pub(super) fn insert(&mut self, fp: u32, capacity: usize) {
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
    pub(super) fn take(&mut self, fp: u32) -> bool {
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

    #[test]
    fn generations_bound_its_size() {
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
