//! S3-FIFO's ghost: fingerprints of keys recently evicted from the small queue.
//!
//! A key found here when it is stored again was evicted too early, and goes straight
//! to the main queue. Fingerprints are 32-bit; a collision only sends an item to main
//! early.
//!
//! A flat array of fingerprints in buckets of [`WAYS`], each bucket a little FIFO
//! (newest first): an insert pushes the bucket's oldest out. No table slack, no
//! pointers: 4 bytes per remembered key, sized to a power of two at or above its
//! capacity (`S3Tuning::ghost_factor` times main's item count), so 4 to 8 bytes per
//! key of capacity. The array is rebuilt (keeping what still fits) when the capacity
//! outgrows it or falls under a quarter of it. It is a FIFO of the last evictions
//! only approximately: each bucket forgets its own oldest.

/// Fingerprints per bucket.
const WAYS: usize = 4;

/// The ghost's key: the hash's upper half mixed with its lower half (the shard
/// already used bits 32..48 to pick the shard, which all keys here share). Never 0,
/// which marks an empty way.
pub(super) fn fingerprint(hash: u64) -> u32 {
    (((hash >> 32) as u32) ^ (hash as u32).rotate_left(16)).max(1)
}

/// Buckets of recently evicted small-queue fingerprints.
#[derive(Debug, Default, Clone)]
pub(super) struct Ghost {
    /// `buckets * WAYS` fingerprints, 0 for empty; a power of two in length.
    slots: Vec<u32>,
}

impl Ghost {
    /// The first slot of `fp`'s bucket: its top bits after a multiply (the low bits of
    /// a fingerprint are spread already, but cheaply made sure of).
    fn bucket(&self, fp: u32) -> usize {
        let buckets = self.slots.len() / WAYS;
        let spread = fp.wrapping_mul(0x9E37_79B1) as usize;
        (spread & (buckets - 1)) * WAYS
    }

    /// Sizes the array for `capacity` fingerprints (none for 0): grown to a power of
    /// two at or above it, shrunk once it is more than four times that. The shard
    /// calls this where it accounts for the bytes (`Shard::fit`).
    pub(super) fn resize_for(&mut self, capacity: usize) {
        let want = if capacity == 0 {
            0
        } else {
            capacity.max(WAYS).next_power_of_two()
        };
        if self.slots.len() < want || self.slots.len() > 4 * want {
            self.rebuild(want);
        }
    }

    /// Remembers `fp` (pushing its bucket's oldest out); nothing while it has no room.
    pub(super) fn insert(&mut self, fp: u32) {
        if self.slots.is_empty() {
            return;
        }
        let b = self.bucket(fp);
        let bucket = &mut self.slots[b..b + WAYS];
        // Already there: move it to the front; else push the oldest out.
        let end = bucket.iter().position(|&x| x == fp).unwrap_or(WAYS - 1);
        bucket.copy_within(0..end, 1);
        bucket[0] = fp;
    }

    /// A ghost of `len` slots holding what this one holds (newest first per bucket, so
    /// a shrunk bucket keeps its newest).
    fn rebuild(&mut self, len: usize) {
        let old = std::mem::replace(&mut self.slots, vec![0; len]);
        if len == 0 {
            return;
        }
        for way in (0..WAYS).rev() {
            for &fp in old.iter().skip(way).step_by(WAYS) {
                if fp != 0 {
                    let b = self.bucket(fp);
                    let bucket = &mut self.slots[b..b + WAYS];
                    bucket.copy_within(0..WAYS - 1, 1);
                    bucket[0] = fp;
                }
            }
        }
    }

    /// Bytes of its array.
    pub(super) fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<u32>()
    }

    /// Forgets `fp` and says whether it was there.
    pub(super) fn take(&mut self, fp: u32) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let b = self.bucket(fp);
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

    #[test]
    fn remembers_recent_and_bounds_its_size() {
        let mut g = Ghost::default();
        g.insert(7);
        assert!(!g.take(7), "no room before it is sized");
        g.resize_for(100);
        for fp in 1..=1000 {
            g.insert(fp);
        }
        assert_eq!(g.bytes(), 128 * 4, "capacity 100 rounds up to 128 slots");
        // The newest of each bucket is remembered.
        assert!(g.take(1000));
        assert!(!g.take(1000));
        // Most of the last 100 are still there; the first ones are long gone.
        let recent = (900..1000).filter(|&fp| g.take(fp)).count();
        assert!(recent >= 60, "only {recent} of the last 100 remembered");
        let old = (1..100).filter(|&fp| g.take(fp)).count();
        assert!(old <= 5, "{old} of the first 100 still remembered");
        assert!(!g.take(0) || fingerprint(0) == 1);
    }

    #[test]
    fn resizing_keeps_the_newest() {
        let mut g = Ghost::default();
        g.resize_for(64);
        for fp in 1..=64 {
            g.insert(fp);
        }
        // Growing keeps everything.
        let before: Vec<u32> = (1..=64).filter(|&fp| g.clone().take(fp)).collect();
        assert!(before.len() >= 32, "{} of 64 kept", before.len());
        g.resize_for(1024);
        g.insert(65);
        assert_eq!(g.bytes(), 1024 * 4);
        assert!(before.iter().all(|&fp| g.take(fp)));
        assert!(g.take(65));
        // Shrinking keeps at most the new size.
        for fp in 1..=1024 {
            g.insert(fp);
        }
        g.resize_for(8);
        assert_eq!(g.bytes(), 8 * 4);
        g.resize_for(100);
        g.resize_for(30);
        assert_eq!(g.bytes(), 128 * 4, "no shrink until four times too big");
        g.resize_for(8);
        g.insert(2000);
        assert_eq!(g.bytes(), 8 * 4);
        assert!(g.take(2000));
    }
}
