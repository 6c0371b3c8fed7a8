//! SIEVE eviction (Zhang et al., "SIEVE is simpler than LRU", NSDI 2024).
//!
//! One FIFO list, newest at the head, and a hand that starts at the tail and walks
//! towards the head. A hit only sets the item's visited bit. To evict, the hand
//! clears visited bits as it passes and stops at the first unvisited item, which
//! leaves; the hand stays where it stopped (the next candidate is the victim's newer
//! neighbour) and wraps to the tail at the head. Unlike CLOCK, survivors are not
//! moved, so new items stay near the head and one-hit items leave quickly.
//! Per item: 8 bytes of links and 1 byte of visited flag.

use super::list::{Links, List};
use super::policy::EvictionPolicy;

/// SIEVE over slot numbers.
#[derive(Debug, Default)]
pub(super) struct Sieve {
    links: Links,
    list: List,
    /// Visited flag per slot.
    visited: Vec<bool>,
    /// The next slot to examine; `None` means the tail.
    hand: Option<u32>,
}

impl EvictionPolicy for Sieve {
    fn bytes_per_item(&self) -> usize {
        Links::BYTES_PER_SLOT + 1
    }

    fn insert(&mut self, idx: u32, _hash: u64) {
        self.list.push_front(&mut self.links, idx);
        let i = idx as usize;
        if i >= self.visited.len() {
            if i >= self.visited.capacity() {
                self.visited.reserve_exact((i / 4).max(16));
            }
            self.visited.resize(i + 1, false);
        }
        self.visited[i] = false;
    }

    fn access(&mut self, idx: u32) {
        self.visited[idx as usize] = true;
    }

    fn remove(&mut self, idx: u32) {
        if self.hand == Some(idx) {
            self.hand = self.list.newer(&self.links, idx);
        }
        self.list.unlink(&mut self.links, idx);
    }

    fn evict(&mut self, _hash_of: &dyn Fn(u32) -> u64) -> Option<u32> {
        // Every pass over the list clears the bits it passes, so the walk ends within
        // two passes.
        for _ in 0..=2 * self.list.len() {
            let idx = self.hand.or_else(|| self.list.back())?;
            if self.visited[idx as usize] {
                self.visited[idx as usize] = false;
                self.hand = self.list.newer(&self.links, idx);
            } else {
                self.hand = self.list.newer(&self.links, idx);
                self.list.unlink(&mut self.links, idx);
                return Some(idx);
            }
        }
        // Unreachable while the invariants hold; giving up the tail keeps eviction
        // making progress rather than failing the insert.
        let idx = self.list.pop_back(&mut self.links)?;
        self.hand = None;
        Some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evict_all(p: &mut Sieve) -> Vec<u32> {
        std::iter::from_fn(|| p.evict(&|i| u64::from(i))).collect()
    }

    #[test]
    fn visited_items_survive_one_pass() {
        let mut p = Sieve::default();
        for i in 0..4 {
            p.insert(i, 0);
        }
        p.access(0);
        p.access(2);
        // Hand: 0 (visited, cleared) -> 1 evicted; then 2 (cleared) -> 3 evicted;
        // then wraps: 0, 2 are now unvisited.
        assert_eq!(evict_all(&mut p), vec![1, 3, 0, 2]);
    }

    #[test]
    fn removing_the_hand_moves_it() {
        let mut p = Sieve::default();
        for i in 0..3 {
            p.insert(i, 0);
        }
        p.access(0);
        p.access(1);
        assert_eq!(p.evict(&|i| u64::from(i)), Some(2));
        // The hand now wraps to the tail (0); remove it and the next is 1.
        p.remove(0);
        assert_eq!(evict_all(&mut p), vec![1]);
    }
}
