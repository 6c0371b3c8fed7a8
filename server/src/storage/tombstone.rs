//! Tombstones: the CAS uniques of items that recently left by expiry or delete, so a
//! cluster node does not take an older version of the key back from a peer.
//!
//! A node applies versions from other nodes (replication, hand-off after a ring
//! change, read repair) with one rule, "larger CAS wins" (`Store::keep_newer`). That
//! rule needs the newer version to still be there: once it expires or is deleted,
//! an older version still held by another node (one that was an owner before a ring
//! change and hands its items off, say) would be taken as new, and an overwritten
//! value would come back. A tombstone keeps the departed version's CAS unique for a
//! while, and `keep_newer` refuses anything not newer than it.
//!
//! Keyed by the key's 64-bit hash (a collision only refuses an older-CAS version of an
//! unrelated key for a few seconds: a miss, never a wrong value). Two generations of
//! maps: records go to the young one; every [`TOMBSTONE_SECS`] (or when the young one
//! holds [`MAX_PER_GENERATION`]) the old one is dropped and the young one takes its
//! place, so a tombstone lives between one and two periods, in bounded memory. Ring
//! changes settle within seconds (failure detection, then one gossip round), well
//! inside a period; under extreme expiry or delete churn the cap shortens that.
//! Evicted items leave no tombstone: the store evicts the coldest items, and an older
//! version of one arriving later is the rare case a cache may get wrong.

use std::collections::HashMap;

/// Seconds a generation lasts: tombstones live between this and twice this.
pub(super) const TOMBSTONE_SECS: u32 = 15;
/// Tombstones per generation per shard (about 24 bytes each).
pub(super) const MAX_PER_GENERATION: usize = 8192;

/// Two generations of key hash -> CAS unique of the version that left.
#[derive(Debug, Default)]
pub(super) struct Tombstones {
    young: HashMap<u64, u64>,
    old: HashMap<u64, u64>,
    /// When `young` started.
    since: u32,
}

impl Tombstones {
    fn rotate_if_due(&mut self, now: u32) {
        if now >= self.since.saturating_add(2 * TOMBSTONE_SECS) {
            // Quiet for two periods: everything is too old.
            self.young.clear();
            self.old.clear();
            self.since = now;
        } else if now >= self.since.saturating_add(TOMBSTONE_SECS) || self.young.len() >= MAX_PER_GENERATION {
            self.old = std::mem::take(&mut self.young);
            self.since = now;
        }
    }

    /// Remembers that the version with `cas` of the key hashing to `hash` left at `now`.
    pub(super) fn record(&mut self, hash: u64, cas: u64, now: u32) {
        self.rotate_if_due(now);
        let e = self.young.entry(hash).or_insert(cas);
        *e = (*e).max(cas);
    }

    /// Whether a version with `cas` is no newer than one that left recently.
    pub(super) fn covers(&mut self, hash: u64, cas: u64, now: u32) -> bool {
        self.rotate_if_due(now);
        [&self.young, &self.old]
            .iter()
            .any(|m| m.get(&hash).is_some_and(|&gone| gone >= cas))
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_older_versions_for_one_to_two_periods() {
        let mut t = Tombstones::default();
        t.record(7, 100, 1000);
        assert!(t.covers(7, 100, 1000));
        assert!(t.covers(7, 99, 1000));
        assert!(!t.covers(7, 101, 1000), "a newer version is welcome");
        assert!(!t.covers(8, 1, 1000), "other keys are not affected");
        assert!(t.covers(7, 50, 1000 + TOMBSTONE_SECS), "moved to the old generation");
        assert!(!t.covers(7, 50, 1000 + 2 * TOMBSTONE_SECS), "gone after two periods");
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = Tombstones::default();
        for h in 0..(5 * MAX_PER_GENERATION as u64) {
            t.record(h, 1, 0);
        }
        assert!(t.len() <= 2 * MAX_PER_GENERATION);
    }
}
