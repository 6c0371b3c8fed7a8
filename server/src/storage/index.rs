//! A shard's index: from a key's hash to its item's location ([`Loc`]).
//!
//! An open-addressing table of groups of [`SLOTS`] entries, each group one tag byte per
//! slot, an overflow count, and the slots' 4-byte locations: 36 bytes for 7 entries.
//! A key's home group is picked from its hash's low 32 bits by a multiply-shift, so the
//! table may have any number of groups, and its tag (a slot's byte, never 0, which
//! marks an empty slot) is the hash's top byte: a lookup compares key bytes only for
//! the 1 in 255 foreign entries whose tag matches. An insert that finds its home full
//! goes on to the next group with room, counting itself in the overflow count of every
//! full group it passed, and a removal takes its count back, so a lookup stops at the
//! first group without a match and without overflow, and needs no tombstones (the
//! scheme of folly's F14 tables).
//!
//! Why not `hashbrown`, which this replaced: its bucket count is a power of two, so a
//! table that has just doubled is half empty, and at 5 bytes a slot its entries cost
//! 5.7 to 11.4 bytes per item (10.8 in a `-m 64` store filled with 100-byte values, whose
//! shards had just doubled). Here a table is filled to 7/8 before it grows (5.9 bytes
//! per item when full), and grows by as little as a quarter: the shard grows it to
//! about what its budget holds (`Shard::reserve_index`), charged to `-m` as before.

use super::shard::Loc;

/// Entries per group.
pub(super) const SLOTS: usize = 7;
/// The tag of an empty slot.
const EMPTY: u8 = 0;
/// An overflow count that has saturated stays so (lookups then always go on past its
/// group; only a rebuild clears it).
const SATURATED: u8 = u8::MAX;

#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Group {
    tags: [u8; SLOTS],
    /// Entries whose probe passed this group while it was full.
    overflow: u8,
    locs: [Loc; SLOTS],
}

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
/// The top bit of each tag's byte in [`Group::word`] (not the overflow count's).
const TAG_TOPS: u64 = 0x0080_8080_8080_8080;

/// The top bit of every tag byte of `x` that is zero, and no other bit (exact, unlike
/// the shorter test that may also flag the byte above a zero one).
fn zero_tags(x: u64) -> u64 {
    !(((x & LOW7) + LOW7) | x | LOW7) & TAG_TOPS
}

impl Group {
    /// The tags and the overflow count as one word (tag `i` in byte `i`).
    fn word(&self) -> u64 {
        let mut b = [0u8; 8];
        b[..SLOTS].copy_from_slice(&self.tags);
        b[SLOTS] = self.overflow;
        u64::from_le_bytes(b)
    }

    /// Slots whose tag is `tag`, as the top bit of byte `i` for slot `i`.
    fn matching(&self, tag: u8) -> u64 {
        zero_tags(self.word() ^ (u64::from(tag) * 0x0101_0101_0101_0101))
    }

    /// Empty slots, as [`Group::matching`] gives them.
    fn empties(&self) -> u64 {
        zero_tags(self.word())
    }
}

/// The slot of the lowest bit of a [`Group::matching`] mask.
fn slot_of(m: u64) -> usize {
    (m.trailing_zeros() / 8) as usize
}

/// The index (see the module doc).
#[derive(Default)]
pub(super) struct Index {
    groups: Box<[Group]>,
    len: usize,
}

/// The tag of `hash`: its top byte, never [`EMPTY`].
fn tag(hash: u64) -> u8 {
    ((hash >> 56) as u8).max(1)
}

/// The most entries `groups` groups hold (7/8 of their slots).
fn capacity_of(groups: usize) -> usize {
    groups * SLOTS * 7 / 8
}

/// The fewest groups that hold `capacity` entries.
fn groups_for(capacity: usize) -> usize {
    if capacity == 0 {
        0
    } else {
        (capacity * 8).div_ceil(SLOTS * 7)
    }
}

impl Index {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Entries it holds before it must grow.
    pub(super) fn capacity(&self) -> usize {
        capacity_of(self.groups.len())
    }

    /// Its bytes.
    pub(super) fn bytes(&self) -> usize {
        Self::bytes_for(self.capacity())
    }

    /// The bytes of an index that holds `capacity` entries.
    pub(super) fn bytes_for(capacity: usize) -> usize {
        groups_for(capacity) * std::mem::size_of::<Group>()
    }

    /// Its capacity after the smallest growth step.
    pub(super) fn grown_capacity(&self) -> usize {
        capacity_of(self.grown_groups())
    }

    /// Groups after the smallest growth step: a quarter more, at least one.
    fn grown_groups(&self) -> usize {
        let n = self.groups.len();
        (n + n / 4).max(n + 1)
    }

    fn home(&self, hash: u64) -> usize {
        ((u64::from(hash as u32) * self.groups.len() as u64) >> 32) as usize
    }

    fn next(&self, g: usize) -> usize {
        if g + 1 == self.groups.len() {
            0
        } else {
            g + 1
        }
    }

    /// The group and slot of the entry for `hash` that `eq` accepts.
    fn position(&self, hash: u64, mut eq: impl FnMut(Loc) -> bool) -> Option<(usize, usize)> {
        if self.len == 0 {
            return None;
        }
        let t = tag(hash);
        let mut g = self.home(hash);
        for _ in 0..self.groups.len() {
            let group = &self.groups[g];
            let mut m = group.matching(t);
            while m != 0 {
                let i = slot_of(m);
                if eq(group.locs[i]) {
                    return Some((g, i));
                }
                m &= m - 1;
            }
            if group.overflow == 0 {
                return None;
            }
            g = self.next(g);
        }
        None
    }

    /// The location for `hash` that `eq` accepts.
    pub(super) fn find(&self, hash: u64, eq: impl FnMut(Loc) -> bool) -> Option<Loc> {
        self.position(hash, eq).map(|(g, i)| self.groups[g].locs[i])
    }

    /// The location for `hash` that `eq` accepts, to rewrite in place.
    pub(super) fn find_mut(&mut self, hash: u64, eq: impl FnMut(Loc) -> bool) -> Option<&mut Loc> {
        let (g, i) = self.position(hash, eq)?;
        Some(&mut self.groups[g].locs[i])
    }

    /// Removes the location for `hash` that `eq` accepts, if any.
    pub(super) fn remove(&mut self, hash: u64, eq: impl FnMut(Loc) -> bool) -> Option<Loc> {
        let (at, i) = self.position(hash, eq)?;
        self.groups[at].tags[i] = EMPTY;
        self.len -= 1;
        // Take back the overflow counts its insert left on the way from home.
        let mut g = self.home(hash);
        while g != at {
            let o = &mut self.groups[g].overflow;
            if *o != SATURATED {
                *o -= 1;
            }
            g = self.next(g);
        }
        Some(self.groups[at].locs[i])
    }

    /// Adds `l` for `hash` (no entry `eq` to it may be present), growing first if full;
    /// `hasher` gives the hash of an entry already in the table.
    pub(super) fn insert_unique(&mut self, hash: u64, l: Loc, hasher: impl Fn(Loc) -> u64) {
        self.reserve_to(self.len + 1, hasher);
        self.place(hash, l);
    }

    fn place(&mut self, hash: u64, l: Loc) {
        let mut g = self.home(hash);
        loop {
            let group = &mut self.groups[g];
            let empty = group.empties();
            if empty != 0 {
                let i = slot_of(empty);
                group.tags[i] = tag(hash);
                group.locs[i] = l;
                self.len += 1;
                return;
            }
            if group.overflow != SATURATED {
                group.overflow += 1;
            }
            g = self.next(g);
        }
    }

    /// Makes room for `capacity` entries in all, growing by at least the smallest
    /// step if it must grow.
    pub(super) fn reserve_to(&mut self, capacity: usize, hasher: impl Fn(Loc) -> u64) {
        if capacity > self.capacity() {
            self.rebuild(groups_for(capacity).max(self.grown_groups()), hasher);
        }
    }

    /// Shrinks to the fewest groups that hold `min` entries and the ones it has, if
    /// that is fewer groups than now.
    pub(super) fn shrink_to(&mut self, min: usize, hasher: impl Fn(Loc) -> u64) {
        let groups = groups_for(min.max(self.len));
        if groups < self.groups.len() {
            self.rebuild(groups, hasher);
        }
    }

    fn rebuild(&mut self, groups: usize, hasher: impl Fn(Loc) -> u64) {
        let old = std::mem::replace(&mut self.groups, vec![Group::default(); groups].into_boxed_slice());
        self.len = 0;
        for group in old.iter() {
            for (i, &t) in group.tags.iter().enumerate() {
                if t != EMPTY {
                    let l = group.locs[i];
                    self.place(hasher(l), l);
                }
            }
        }
    }

    /// Every location in the table.
    #[cfg(test)]
    pub(super) fn locs(&self) -> impl Iterator<Item = Loc> + '_ {
        self.groups.iter().flat_map(|g| {
            g.tags
                .iter()
                .zip(g.locs.iter())
                .filter(|(&t, _)| t != EMPTY)
                .map(|(_, &l)| l)
        })
    }

    /// Checks the table against `hasher`: every entry's tag is its hash's, every
    /// entry is found from its home, and every overflow count is the number of
    /// entries whose probe passed its group (or saturated).
    #[cfg(test)]
    pub(super) fn check(&self, hasher: impl Fn(Loc) -> u64) {
        let n = self.groups.len();
        let mut overflow = vec![0usize; n];
        let mut len = 0;
        for (at, group) in self.groups.iter().enumerate() {
            for (i, &t) in group.tags.iter().enumerate() {
                if t == EMPTY {
                    continue;
                }
                len += 1;
                let l = group.locs[i];
                let hash = hasher(l);
                assert_eq!(t, tag(hash), "entry {l:#x} has another hash's tag");
                let mut g = self.home(hash);
                while g != at {
                    overflow[g] += 1;
                    g = self.next(g);
                }
                assert_eq!(self.find(hash, |x| x == l), Some(l), "entry {l:#x} is not found");
            }
        }
        assert_eq!(len, self.len);
        assert!(self.len <= self.capacity() || n == 0);
        for (g, group) in self.groups.iter().enumerate() {
            if group.overflow != SATURATED {
                assert_eq!(usize::from(group.overflow), overflow[g], "group {g}'s overflow count");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// A hash for a location: one of `spread` distinct hashes (0: every entry the same
    /// hash, so one home group and one tag; `u64::MAX`: the location's own hash).
    fn hash_of(l: Loc, spread: u64) -> u64 {
        let h = xxhash_rust::xxh3::xxh3_64(&l.to_le_bytes());
        match spread {
            0 => 0x5555_0000_0000_0007,
            u64::MAX => h,
            s => (h % s).wrapping_mul(u64::MAX / s),
        }
    }

    fn churn(seed: u64, spread: u64, ops: usize, keys: u32) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut index = Index::default();
        let mut model: HashMap<Loc, ()> = HashMap::new();
        let h = |l: Loc| hash_of(l, spread);
        for step in 0..ops {
            let l = rng.gen_range(0..keys);
            match rng.gen_range(0..10) {
                0..=4 => {
                    if model.insert(l, ()).is_none() {
                        index.insert_unique(h(l), l, h);
                    }
                }
                5..=7 => {
                    assert_eq!(index.remove(h(l), |x| x == l), model.remove(&l).map(|()| l));
                }
                8 => assert_eq!(index.find(h(l), |x| x == l), model.get(&l).map(|()| l)),
                _ => {
                    let min = rng.gen_range(0..keys as usize);
                    index.shrink_to(min, h);
                }
            }
            if step % 97 == 0 {
                index.check(h);
            }
        }
        index.check(h);
        assert_eq!(index.len(), model.len());
        let mut all: Vec<Loc> = index.locs().collect();
        all.sort_unstable();
        let mut want: Vec<Loc> = model.keys().copied().collect();
        want.sort_unstable();
        assert_eq!(all, want);
    }

    #[test]
    fn a_groups_masks_name_exactly_the_matching_and_empty_slots() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..10_000 {
            let mut g = Group::default();
            for t in g.tags.iter_mut() {
                // Few distinct bytes, so zeros sit next to ones and to matches.
                *t = [0, 1, 2, 0x80, 0x81, 0xff][rng.gen_range(0..6)];
            }
            g.overflow = [0, 1, 0xff][rng.gen_range(0..3)];
            for tag in [0u8, 1, 2, 0x80, 0x81, 0xff] {
                let want: Vec<usize> = (0..SLOTS).filter(|&i| g.tags[i] == tag).collect();
                let mut m = if tag == EMPTY { g.empties() } else { g.matching(tag) };
                let mut got = Vec::new();
                while m != 0 {
                    got.push(slot_of(m));
                    m &= m - 1;
                }
                assert_eq!(got, want, "tags {:?}, overflow {}, tag {tag}", g.tags, g.overflow);
            }
        }
    }

    #[test]
    fn agrees_with_a_map_under_churn() {
        for seed in 0..8 {
            churn(seed, u64::MAX, 20_000, 3_000);
        }
    }

    #[test]
    fn agrees_with_a_map_when_hashes_crowd_a_few_groups() {
        // Few distinct hashes: long probes, shared tags, overflow counts in use.
        for seed in 0..4 {
            churn(seed, 16, 5_000, 400);
        }
        churn(9, 0, 3_000, 300);
    }

    #[test]
    fn saturated_overflow_counts_keep_every_entry_findable() {
        // 300 entries with one home: the home's count saturates at 255.
        let h = |l: Loc| hash_of(l, 0);
        let mut index = Index::default();
        for l in 0..300 {
            index.insert_unique(h(l), l, h);
        }
        assert_eq!(index.groups[index.home(h(0))].overflow, SATURATED);
        for l in (0..300).step_by(2) {
            assert_eq!(index.remove(h(l), |x| x == l), Some(l));
        }
        index.check(h);
        for l in 0..300 {
            assert_eq!(index.find(h(l), |x| x == l).is_some(), l % 2 == 1);
        }
    }

    #[test]
    fn grown_by_quarters_it_costs_at_most_seven_and_a_half_bytes_an_item() {
        // hashbrown's doubling left a table of this size at 10.8 bytes per item.
        let h = |l: Loc| xxhash_rust::xxh3::xxh3_64(&l.to_le_bytes());
        let mut index = Index::default();
        let mut worst: f64 = 0.0;
        for l in 0..100_000u32 {
            index.insert_unique(h(l), l, h);
            if l >= 1_000 {
                worst = worst.max(index.bytes() as f64 / index.len() as f64);
            }
        }
        index.check(h);
        assert_eq!(std::mem::size_of::<Group>(), 36);
        assert!(worst <= 7.5, "{worst:.2} bytes per item");
        assert_eq!(Index::bytes_for(index.capacity()), index.bytes());
    }
}
