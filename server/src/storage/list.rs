//! Doubly linked lists threaded through slot indices.
//!
//! The eviction policies keep their queues as intrusive lists over the shard's slot
//! numbers instead of `VecDeque`s or pointer-linked nodes: a `[prev, next]` pair of
//! `u32`s per slot (8 bytes) gives O(1) push, unlink and move without allocating per
//! item, and without the tombstones a `VecDeque` would need to drop an item from
//! the middle (a delete or an expiry).
//!
//! Invariants: a slot is in at most one [`List`] of a [`Links`] at a time; `NIL`
//! marks "no neighbour"; `next` points from the head (newest) towards the tail
//! (oldest) and `prev` back towards the head.

/// "No slot".
pub(super) const NIL: u32 = u32::MAX;

/// The link pairs of every slot, indexed by slot number.
#[derive(Debug, Default)]
pub(super) struct Links {
    /// `[prev, next]` per slot.
    pairs: Vec<[u32; 2]>,
}

impl Links {
    /// Bytes of link storage per slot.
    pub(super) const BYTES_PER_SLOT: usize = std::mem::size_of::<[u32; 2]>();

    /// Makes room for slot `idx`, growing by about a quarter so the unused tail stays
    /// small (the store charges 8 bytes per item, not per allocated pair).
    pub(super) fn ensure(&mut self, idx: u32) {
        let need = idx as usize + 1;
        if need > self.pairs.len() {
            if need > self.pairs.capacity() {
                self.pairs.reserve_exact((need / 4).max(16));
            }
            self.pairs.resize(need, [NIL, NIL]);
        }
    }

    fn prev(&self, idx: u32) -> u32 {
        self.pairs[idx as usize][0]
    }

    fn next(&self, idx: u32) -> u32 {
        self.pairs[idx as usize][1]
    }

    fn set_prev(&mut self, idx: u32, to: u32) {
        self.pairs[idx as usize][0] = to;
    }

    fn set_next(&mut self, idx: u32, to: u32) {
        self.pairs[idx as usize][1] = to;
    }
}

/// One list: its ends and length.
#[derive(Debug, Clone, Copy)]
pub(super) struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl Default for List {
    fn default() -> List {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

impl List {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The oldest slot.
    pub(super) fn back(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    /// The neighbour of `idx` towards the head (newer), if any.
    pub(super) fn newer(&self, links: &Links, idx: u32) -> Option<u32> {
        let p = links.prev(idx);
        (p != NIL).then_some(p)
    }

    /// Inserts `idx` (not in any list) at the head.
    pub(super) fn push_front(&mut self, links: &mut Links, idx: u32) {
        links.ensure(idx);
        links.set_prev(idx, NIL);
        links.set_next(idx, self.head);
        if self.head != NIL {
            links.set_prev(self.head, idx);
        } else {
            self.tail = idx;
        }
        self.head = idx;
        self.len += 1;
    }

    /// Removes `idx`, which must be in this list.
    pub(super) fn unlink(&mut self, links: &mut Links, idx: u32) {
        let (prev, next) = (links.prev(idx), links.next(idx));
        if prev != NIL {
            links.set_next(prev, next);
        } else {
            self.head = next;
        }
        if next != NIL {
            links.set_prev(next, prev);
        } else {
            self.tail = prev;
        }
        links.set_prev(idx, NIL);
        links.set_next(idx, NIL);
        self.len -= 1;
    }

    /// Removes and returns the oldest slot.
    pub(super) fn pop_back(&mut self, links: &mut Links) -> Option<u32> {
        let idx = self.back()?;
        self.unlink(links, idx);
        Some(idx)
    }

    /// Moves `idx`, which must be in this list, to the head.
    pub(super) fn move_to_front(&mut self, links: &mut Links, idx: u32) {
        if self.head != idx {
            self.unlink(links, idx);
            self.push_front(links, idx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(list: &mut List, links: &mut Links) -> Vec<u32> {
        std::iter::from_fn(|| list.pop_back(links)).collect()
    }

    #[test]
    fn fifo_order_unlink_and_move() {
        let mut links = Links::default();
        let mut list = List::default();
        for i in [3, 1, 4, 0, 2] {
            list.push_front(&mut links, i);
        }
        assert_eq!(list.len(), 5);
        assert_eq!(list.back(), Some(3));
        assert_eq!(list.newer(&links, 3), Some(1));
        list.unlink(&mut links, 4);
        list.move_to_front(&mut links, 3);
        assert_eq!(drain(&mut list, &mut links), vec![1, 0, 2, 3]);
        assert!(list.is_empty());
        assert_eq!(list.back(), None);
    }

    #[test]
    fn unlink_only_element_empties_list() {
        let mut links = Links::default();
        let mut list = List::default();
        list.push_front(&mut links, 7);
        list.unlink(&mut links, 7);
        assert!(list.is_empty());
        list.push_front(&mut links, 7);
        assert_eq!(drain(&mut list, &mut links), vec![7]);
    }
}
