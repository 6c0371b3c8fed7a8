//! S3-FIFO's ghost: fingerprints of keys recently evicted from the small queue.
//!
//! A key found here when it is stored again was evicted too early, and goes straight
//! to the main queue. A key's bucket comes from its hash's low 32 bits and its
//! fingerprint from the top 16 (the shard picked by bits 32..48, which all keys here
//! share, takes part in neither), so a lookup confuses two keys only when both land in
//! one bucket and share a fingerprint: about 4 in 65,535 for a key never evicted. A
//! collision only sends an item to main early.
//!
//! A flat array of 16-bit fingerprints in buckets of [`WAYS`], each bucket a little
//! FIFO (newest first): an insert pushes the bucket's oldest out. No table slack, no
//! pointers, any number of buckets (a key's bucket is a multiply-shift of its hash):
//! 2 bytes per remembered key, sized to its capacity (`S3Tuning::ghost_factor` times
//! main's item count) plus an eighth, so 2 to 2.25 bytes per key of capacity. The
//! array is rebuilt (keeping what still fits) when the capacity outgrows it or falls
//! under half of it. It is a FIFO of the last evictions only approximately: each
//! bucket forgets its own oldest.
//!
//! (It held 32-bit fingerprints in a power of two of slots before: 4 to 8 bytes per
//! key, paid in items, since `-m` charges the ghost.)

/// Fingerprints per bucket.
const WAYS: usize = 4;

/// Buckets of recently evicted small-queue fingerprints.
#[derive(Debug, Default, Clone)]
pub(super) struct Ghost {
    /// `buckets * WAYS` fingerprints, 0 for empty.
    slots: Vec<u16>,
}

/// A key's place in the ghost: the first slot of its bucket and its fingerprint
/// (never 0, which marks an empty way).
fn place(hash: u64, buckets: usize) -> (usize, u16) {
    let bucket = ((hash & 0xFFFF_FFFF) * buckets as u64) >> 32;
    (bucket as usize * WAYS, ((hash >> 48) as u16).max(1))
}

impl Ghost {
    fn buckets(&self) -> usize {
        self.slots.len() / WAYS
    }

    /// Sizes the array for `capacity` fingerprints (none for 0): grown to it plus an
    /// eighth (whole buckets) once it no longer fits, shrunk the same way once the
    /// array is more than twice what it needs. The shard calls this where it accounts
    /// for the bytes (`Shard::fit`).
    pub(super) fn resize_for(&mut self, capacity: usize) {
        if capacity == 0 {
            if !self.slots.is_empty() {
                self.slots = Vec::new();
            }
            return;
        }
        let need = capacity.div_ceil(WAYS) * WAYS;
        if self.slots.len() < need || self.slots.len() > 2 * need {
            self.rebuild((need + need / 8).div_ceil(WAYS) * WAYS);
        }
    }

    /// Remembers the key of `hash` (pushing its bucket's oldest out); nothing while it
    /// has no room.
    pub(super) fn insert(&mut self, hash: u64) {
        if self.slots.is_empty() {
            return;
        }
        let (b, fp) = place(hash, self.buckets());
        Self::push(&mut self.slots[b..b + WAYS], fp);
    }

    /// Puts `fp` first in `bucket`: moved there if it is already in, else pushing the
    /// oldest out.
    fn push(bucket: &mut [u16], fp: u16) {
        let end = bucket.iter().position(|&x| x == fp).unwrap_or(WAYS - 1);
        bucket.copy_within(0..end, 1);
        bucket[0] = fp;
    }

    /// A ghost of `len` slots holding what this one holds, as far as it fits. A
    /// fingerprint does not say which hash it came from, so each old bucket's
    /// fingerprints go to the new bucket holding the middle of its share of the hash
    /// space: the right one for at least half of its keys when the size changes by at
    /// most 2x, one bucket off for the rest, which are then forgotten. A resize is rare
    /// (capacity must grow by an eighth or halve), and a forgotten key only enters
    /// small instead of main.
    fn rebuild(&mut self, len: usize) {
        let old = std::mem::replace(&mut self.slots, vec![0; len]);
        if len == 0 || old.is_empty() {
            return;
        }
        let (old_buckets, new_buckets) = (old.len() / WAYS, len / WAYS);
        for way in (0..WAYS).rev() {
            for (ob, &fp) in old.iter().skip(way).step_by(WAYS).enumerate() {
                if fp != 0 {
                    let b = (2 * ob + 1) * new_buckets / (2 * old_buckets) * WAYS;
                    Self::push(&mut self.slots[b..b + WAYS], fp);
                }
            }
        }
    }

    /// Bytes of its array.
    pub(super) fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<u16>()
    }

    /// Forgets the key of `hash` and says whether it was there.
    pub(super) fn take(&mut self, hash: u64) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let (b, fp) = place(hash, self.buckets());
        let bucket = &mut self.slots[b..b + WAYS];
        match bucket.iter().position(|&x| x == fp) {
            Some(i) => {
                bucket.copy_within(i + 1.., i);
                bucket[WAYS - 1] = 0;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spread hashes for small integers (splitmix64's finaliser).
    fn h(i: u64) -> u64 {
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn remembers_recent_and_bounds_its_size() {
        let mut g = Ghost::default();
        g.insert(h(7));
        assert!(!g.take(h(7)), "no room before it is sized");
        g.resize_for(100);
        assert_eq!(g.bytes(), 112 * 2, "capacity 100 plus an eighth, in whole buckets");
        for i in 1..=1000 {
            g.insert(h(i));
        }
        assert_eq!(g.bytes(), 112 * 2, "inserts never grow it");
        // The newest of each bucket is remembered, once.
        assert!(g.take(h(1000)));
        assert!(!g.take(h(1000)));
        // Most of the last 100 are still there; the first ones are long gone.
        let recent = (900..1000).filter(|&i| g.take(h(i))).count();
        assert!(recent >= 60, "only {recent} of the last 100 remembered");
        let old = (1..100).filter(|&i| g.take(h(i))).count();
        assert!(old <= 2, "{old} of the first 100 still remembered");
    }

    #[test]
    fn keys_never_evicted_are_almost_never_found() {
        let mut g = Ghost::default();
        g.resize_for(10_000);
        for i in 0..20_000 {
            g.insert(h(i));
        }
        // A 16-bit fingerprint in a 4-way bucket: about 4 / 65,535 per lookup.
        let false_hits = (1_000_000..1_100_000).filter(|&i| g.take(h(i))).count();
        assert!(false_hits <= 30, "{false_hits} of 100,000 unknown keys found");
        // Keys differing only in the shard's bits (32..48) still differ here.
        let base = h(42) & !(0xFFFF << 32);
        g.insert(base);
        assert!(g.take(base));
        let same_shard = (1..1000u64).filter(|&s| g.take(base | (s << 32))).count();
        assert_eq!(same_shard, 0);
    }

    #[test]
    fn resizing_keeps_most_and_shrinks_only_when_twice_too_big() {
        let mut g = Ghost::default();
        g.resize_for(1000);
        for i in 1..=1000 {
            g.insert(h(i));
        }
        let before: Vec<u64> = (1..=1000).filter(|&i| g.clone().take(h(i))).collect();
        assert!(before.len() >= 600, "{} of 1000 kept", before.len());
        // Growing by an eighth or so keeps at least half of what it held.
        g.resize_for(1200);
        assert_eq!(g.bytes(), 1352 * 2);
        let kept = before.iter().filter(|&&i| g.clone().take(h(i))).count();
        assert!(2 * kept >= before.len(), "{kept} of {} kept growing", before.len());
        g.insert(h(5000));
        assert!(g.take(h(5000)));
        // Not shrunk until more than twice too big.
        g.resize_for(700);
        assert_eq!(g.bytes(), 1352 * 2);
        g.resize_for(600);
        assert_eq!(g.bytes(), 676 * 2);
        let kept = before.iter().filter(|&&i| g.clone().take(h(i))).count();
        assert!((200..=676).contains(&kept), "{kept} kept shrinking to 676 slots");
        g.resize_for(0);
        assert_eq!(g.bytes(), 0);
        g.insert(h(1));
        assert!(!g.take(h(1)));
    }
}
