//! Least-recently-used eviction: the baseline the other policies are measured
//! against (memcached's segmented LRU is an LRU at heart).
//!
//! One list, newest at the head. A hit moves the item to the head, which is a list
//! update under the shard lock on every read: the cost the FIFO-based policies avoid.
//! Per item: 8 bytes of links.

use super::list::{Links, List};
use super::policy::EvictionPolicy;

/// An LRU over slot numbers.
#[derive(Debug, Default)]
pub(super) struct Lru {
    links: Links,
    list: List,
}

impl EvictionPolicy for Lru {
    fn bytes_per_item(&self) -> usize {
        Links::BYTES_PER_SLOT
    }

    fn insert(&mut self, idx: u32, _hash: u64) {
        self.list.push_front(&mut self.links, idx);
    }

    fn access(&mut self, idx: u32) {
        self.list.move_to_front(&mut self.links, idx);
    }

    fn remove(&mut self, idx: u32) {
        self.list.unlink(&mut self.links, idx);
    }

    fn evict(&mut self, _hash_of: &dyn Fn(u32) -> u64) -> Option<u32> {
        self.list.pop_back(&mut self.links)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let mut p = Lru::default();
        for i in 0..4 {
            p.insert(i, u64::from(i));
        }
        p.access(0);
        p.remove(2);
        let order: Vec<u32> = std::iter::from_fn(|| p.evict(&|i| u64::from(i))).collect();
        assert_eq!(order, vec![1, 3, 0]);
    }
}
