//! One shard of the store: a log of fixed-size segments holding its items, the index
//! over them, its slice of the memory budget, its eviction policy and its counters,
//! all behind the shard's one lock.
//!
//! # Layout
//! - **Segments**: items (variable header, key, value; `item.rs`) are appended, packed
//!   and unaligned, to the *open* segment of their queue; a full segment is *sealed*
//!   and joins its queue's FIFO. A segment is one `Box<[u8]>` of `seg_size` bytes
//!   (`budget / 64`, between 1 KiB and 64 KiB); an item larger than that gets a
//!   segment of its own made of segment-size chunks ([`Shard::append_big`]): the
//!   first holds its header, key and the value's start, the last only the rest,
//!   rounded up to a page. Chunks and tails come from, and go back to, the shard's
//!   pools: memory stays resident and is reused whatever mix of sizes comes and goes
//!   (a mapping sized for each big item cost a fifth of the CPU of a large-value load
//!   in page faults and unmapping). No allocation per small item, no allocator
//!   header, no size-class rounding but a big item's tail.
//! - **Index** (`index.rs`): a table of 4-byte item locations (segment id in the
//!   upper 16 bits, byte offset in the lower), probed with the key's xxh3 hash (computed
//!   once per request by the store) and compared against the key bytes in the segment.
//!   We hand it the hash, so there is no `Hasher` to seed and nothing is hashed twice.
//! - **Deletion** marks the item's header DEAD and drops its index entry; its bytes
//!   come back when its segment is reclaimed. A segment whose last live item goes is
//!   reclaimed at once (an open one is rewound), so overwrite-heavy keys recycle whole
//!   segments without evicting anything.
//!
//! # Eviction
//! S3-FIFO (`policy.rs`) at segment granularity: two queues of segments, *small* and
//! *main*. A new key is appended to small (or to main if the ghost remembers it). To
//! make room, the shard takes the oldest segment of small while small holds at least
//! its share of the live items' bytes (5%) (else of main) and walks it: an item read since it was written
//! is copied forward to main's open segment (from main: with its frequency
//! decremented), an unread one is evicted (from small: remembered in the ghost), and
//! the emptied segment's buffer is reused. This is item-level S3-FIFO; only the
//! granularity of a step is a segment. While less than half the budget holds live
//! items (the rest being the dead bytes of deletes and overwrites), unread items are
//! copied forward too: eviction then compacts instead of dropping live items a
//! per-item allocator would still have room for. The small queue's share, the
//! frequency cap, promotion and the ghost are `S3Tuning`'s knobs.
//!
//! # Budget
//! The shard's slice of `-m` pays for its index table and ghost first: segments may
//! take what is left ([`Shard::seg_limit`]). When the table or the ghost grows (or the
//! budget shrinks), [`Shard::fit`] frees pooled buffers, shrinks an oversized table,
//! and evicts until everything fits again.
//!
//! Copying forward needs buffers while the victim's is still being read: the shard
//! keeps [`RESERVE`] buffers' worth of its budget free (unallocated or pooled) for
//! that, and if none is left an item that would have moved is evicted instead.
//!
//! # Invariants (between calls)
//! Every live item is in the index exactly once and every index entry points at a
//! live (not DEAD) item whose key hashes to it; each segment's `live` counts its live
//! items; a sealed segment is in exactly one FIFO, an open one in `open`, and every
//! segment has at least one live item unless it is open; `allocated` is the sum of
//! the sizes of all segment and pooled buffers, and it plus the index's and ghost's
//! bytes never exceeds `limit`; `live_bytes`
//! is the sum of the live items' sizes.

use std::collections::VecDeque;

use xxhash_rust::xxh3::xxh3_64;

use super::flush::FlushRule;
use super::ghost::Ghost;
use super::index::Index;
use super::item::{self, Bases, ItemMut, ItemRef, Meta};
use super::policy::{PolicyKind, S3Tuning};
use super::tombstone::Tombstones;
use super::{Item, StoreError};

/// Hashes a key for shard choice and the shard's table.
pub(super) fn hash_key(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// Where an item lives: segment id in the upper 16 bits, byte offset in the lower 16
/// (segments are at most 64 KiB; a bigger item has a segment of its own, at offset 0).
pub(super) type Loc = u32;

/// The most segment ids a shard may use at once (ids are 16 bits).
const MAX_SEGMENTS: usize = 1 << 16;

fn loc(seg: u32, off: usize) -> Loc {
    debug_assert!(seg < MAX_SEGMENTS as u32 && off < 1 << 16);
    (seg << 16) | off as u32
}

fn seg_of(l: Loc) -> usize {
    (l >> 16) as usize
}

fn off_of(l: Loc) -> usize {
    (l & 0xffff) as usize
}

/// The largest segment. Big enough that a segment's tail waste (less than one item)
/// is small, small enough that evicting one is a small step of a shard.
const MAX_SEGMENT: usize = 64 * 1024;
/// The smallest segment (a tiny budget makes tiny segments rather than too few).
const MIN_SEGMENT: usize = 1024;
/// A shard's budget is cut into about this many segments.
const SEGMENTS_PER_SHARD: usize = 64;
/// Buffers of budget kept free for eviction's copy-forward. One: a victim's items
/// (at most a segment's worth) go to one queue, main, except while eviction compacts,
/// when unread items of a small victim go back to small; if that finds no buffer the
/// item is evicted instead. Two (one per destination) cost 1.6 to 3.1% of a `-m 64`
/// store's items and misses rose with them (`docs/bench/eviction.md`).
pub(super) const RESERVE: usize = 1;
/// A big item's last chunk holds the rest of it in this many bytes' multiples (a
/// page): the most a big item wastes, where a whole last chunk would waste up to a
/// segment.
const TAIL_ROUND: usize = 4096;
/// The largest key a header can record.
const MAX_KEY: usize = u8::MAX as usize;

/// A FIFO of segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Small = 0,
    Main = 1,
}

struct Segment {
    buf: Buf,
    /// Bytes appended so far.
    used: usize,
    /// Live items in the segment.
    live: u32,
    queue: Queue,
    /// In its queue's FIFO and no longer appended to (else its queue's open segment).
    sealed: bool,
    /// A segment of its own for one item larger than a segment (moved whole).
    own: bool,
    /// Changes whenever the bytes at an offset may start to mean something else (the
    /// id is reused, or the segment is rewound), so the sweep cursor, which keeps an
    /// offset between calls, can tell its offset is no longer an item boundary.
    epoch: u32,
    /// The CAS unique and time its items' headers are deltas from (`item.rs`).
    bases: Bases,
    /// Reads of a big item (an `own` segment's) since it was stored or last passed
    /// over by eviction: the policy weighs them against its size.
    reads: u16,
}

/// A segment's bytes: a segment-size block, or a big item's chunks (at least two:
/// segment-size blocks, the last maybe smaller; see [`Shard::append_big`]). It derefs
/// to the first block, which holds every item's header and key.
enum Buf {
    Heap(Box<[u8]>),
    Chunks(Vec<Box<[u8]>>),
}

impl Buf {
    /// The chunks after the first (none for a plain segment).
    fn rest(&self) -> &[Box<[u8]>] {
        match self {
            Buf::Heap(_) => &[],
            Buf::Chunks(c) => &c[1..],
        }
    }

    /// Bytes allocated, every chunk's.
    #[cfg(test)]
    fn allocated(&self) -> usize {
        match self {
            Buf::Heap(b) => b.len(),
            Buf::Chunks(c) => c.iter().map(|b| b.len()).sum(),
        }
    }
}

impl std::ops::Deref for Buf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Buf::Heap(b) => b,
            Buf::Chunks(c) => &c[0],
        }
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Buf::Heap(b) => b,
            Buf::Chunks(c) => &mut c[0],
        }
    }
}

impl Segment {
    /// The item at byte `off`.
    fn item(&self, off: usize) -> ItemRef<'_> {
        ItemRef::chunked(&self.buf[off..], self.buf.rest(), self.bases)
    }
}

/// What [`Shard::read`] found.
pub(super) enum Read<'a> {
    /// A live item, its read counted and recorded.
    Hit(ItemRef<'a>),
    /// An expired or flushed item, left as it was.
    Gone(Liveness),
    /// A live item, its read counted, whose header has no room for the read's new
    /// last access or expiry: the caller moves it.
    NoRoom,
    /// No item at that location.
    Absent,
}

/// Whether an item may be served at `now` under `flush` (flush first, as memcached).
fn liveness(flush: &FlushRule, r: ItemRef<'_>, now: u32) -> Liveness {
    if flush.is_flushed(r.cas(), r.last_access()) {
        Liveness::Flushed
    } else if r.exptime() != 0 && r.exptime() <= now {
        Liveness::Expired
    } else {
        Liveness::Live
    }
}

/// Whether a found item may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Liveness {
    Live,
    Expired,
    Flushed,
}

/// The counters a shard keeps for `stats`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counters {
    pub(super) total_items: u64,
    pub(super) evictions: u64,
    pub(super) expired_unfetched: u64,
    pub(super) evicted_unfetched: u64,
    pub(super) reclaimed: u64,
    /// Items copied forward by eviction (reinserted or compacted).
    pub(super) moved: u64,
    /// Segments a request's thread reclaimed itself to make room (`direct_reclaims`):
    /// every eviction here runs on the thread that stores, as memcached's worker does
    /// when its background threads have not freed enough.
    pub(super) direct_reclaims: u64,
}

/// One shard (see the module doc).
pub(super) struct Shard {
    table: Index,
    /// Segments by id; `None` for ids in `free_ids`.
    segs: Vec<Option<Segment>>,
    free_ids: Vec<u32>,
    /// Segment-size buffers not in use (allocated, so counted in `allocated`).
    pool: Vec<Box<[u8]>>,
    /// Big items' tails not in use, by size (`len / TAIL_ROUND - 1`), for the next
    /// big items' (allocated, so counted in `allocated`, and freed before anything is
    /// evicted).
    tails: Vec<Vec<Box<[u8]>>>,
    /// Bytes of the pooled tails.
    tail_bytes: usize,
    /// Sealed segments per queue, newest at the front.
    fifo: [VecDeque<u32>; 2],
    /// The segment each queue appends to.
    open: [Option<u32>; 2],
    /// Live items per queue.
    queue_items: [usize; 2],
    /// Live items' bytes per queue.
    queue_bytes: [usize; 2],
    ghost: Ghost,
    policy: PolicyKind,
    /// S3-FIFO's knobs (unused by CLOCK).
    tuning: S3Tuning,
    seg_size: usize,
    /// This shard's slice of the memory budget, in bytes.
    limit: usize,
    max_item_size: usize,
    /// Bytes of segment and pooled buffers, and of chunks lent out (`lent`).
    allocated: usize,
    /// Bytes of chunks lent for big values being read into place
    /// ([`Shard::lend_chunks`]), counted in `allocated` until they come back.
    lent: usize,
    /// Sum of the live items' sizes.
    live_bytes: usize,
    items: usize,
    /// Where the next sweep resumes: segment id, its epoch, offset.
    cursor: (usize, u32, usize),
    /// The epoch the next new segment gets.
    next_epoch: u32,
    /// Versions that left by expiry or delete (cluster nodes only; `tombstone.rs`).
    tombs: Option<Tombstones>,
    pub(super) flush: FlushRule,
    pub(super) counters: Counters,
    /// The state of [`Shard::draw`].
    rng: u64,
    /// Sizes of the items stored lately (sum, count; both halved now and then): the
    /// size-aware policy's yardstick, the workload's mean item rather than the mean
    /// of the items the policy chose to keep.
    stored: (u64, u64),
}

/// Where a stored item's value comes from.
pub(super) enum Src<'v> {
    /// Bytes to copy in.
    Copy(&'v [u8]),
    /// Chunks from [`Shard::lend_chunks`] with the value already read into place:
    /// `head` bytes (header and key) are left before it, and it is `len` bytes long.
    Landed {
        chunks: Vec<Box<[u8]>>,
        head: usize,
        len: usize,
    },
}

impl Src<'_> {
    fn len(&self) -> usize {
        match self {
            Src::Copy(v) => v.len(),
            Src::Landed { len, .. } => *len,
        }
    }
}

/// The `len` bytes after the first `head` of `chunks`, in one vector.
pub(super) fn gather(chunks: &[Box<[u8]>], head: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut skip = head;
    for c in chunks {
        let from = skip.min(c.len());
        skip -= from;
        let n = (c.len() - from).min(len - out.len());
        out.extend_from_slice(&c[from..from + n]);
    }
    out
}

fn loc_hash(segs: &[Option<Segment>], l: Loc) -> u64 {
    segs.get(seg_of(l))
        .and_then(Option::as_ref)
        .map_or(0, |s| hash_key(item::key_of(&s.buf[off_of(l)..])))
}

/// The segment size for a shard budget of `limit` bytes.
pub(super) fn segment_size(limit: usize) -> usize {
    (limit / SEGMENTS_PER_SHARD)
        .clamp(MIN_SEGMENT, MAX_SEGMENT)
        .min(limit / (RESERVE + 2))
        .max(1)
}

impl Shard {
    pub(super) fn new(limit: usize, max_item_size: usize, policy: PolicyKind, tuning: S3Tuning) -> Shard {
        Shard {
            table: Index::default(),
            segs: Vec::new(),
            free_ids: Vec::new(),
            pool: Vec::new(),
            tails: Vec::new(),
            tail_bytes: 0,
            fifo: [VecDeque::new(), VecDeque::new()],
            open: [None, None],
            queue_items: [0, 0],
            queue_bytes: [0, 0],
            ghost: Ghost::default(),
            policy,
            tuning,
            seg_size: segment_size(limit),
            limit,
            max_item_size,
            allocated: 0,
            lent: 0,
            live_bytes: 0,
            items: 0,
            cursor: (0, 0, 0),
            next_epoch: 0,
            tombs: None,
            flush: FlushRule::default(),
            counters: Counters::default(),
            rng: 0x9E37_79B9_7F4A_7C15,
            stored: (0, 0),
        }
    }

    /// Keeps tombstones from now on (see `tombstone.rs`).
    pub(super) fn keep_tombstones(&mut self) {
        self.tombs.get_or_insert_with(Tombstones::default);
    }

    /// Records that the version with `cas` of the key hashing to `hash` left.
    pub(super) fn bury(&mut self, hash: u64, cas: u64, now: u32) {
        if let Some(t) = &mut self.tombs {
            t.record(hash, cas, now);
        }
    }

    /// Whether a version with `cas` is no newer than one that recently left.
    pub(super) fn buried(&mut self, hash: u64, cas: u64, now: u32) -> bool {
        self.tombs.as_mut().is_some_and(|t| t.covers(hash, cas, now))
    }

    /// The live items' bytes (header, key and value).
    pub(super) fn bytes(&self) -> usize {
        self.live_bytes
    }

    /// Bytes of segments held, in use or pooled.
    pub(super) fn allocated(&self) -> usize {
        self.allocated
    }

    /// Bytes of the index table and the ghost.
    pub(super) fn index_bytes(&self) -> usize {
        self.table.bytes() + self.ghost.bytes()
    }

    pub(super) fn items(&self) -> usize {
        self.items
    }

    /// The item location holding `key`, if any (live or not).
    pub(super) fn find(&self, hash: u64, key: &[u8]) -> Option<Loc> {
        let segs = &self.segs;
        self.table.find(hash, |l| {
            segs.get(seg_of(l))
                .and_then(Option::as_ref)
                .is_some_and(|s| item::key_of(&s.buf[off_of(l)..]) == key)
        })
    }

    pub(super) fn item(&self, l: Loc) -> Option<ItemRef<'_>> {
        let seg = self.segs.get(seg_of(l))?.as_ref()?;
        Some(seg.item(off_of(l)))
    }

    pub(super) fn item_mut(&mut self, l: Loc) -> Option<ItemMut<'_>> {
        let seg = self.segs.get_mut(seg_of(l))?.as_mut()?;
        Some(ItemMut::new(&mut seg.buf[off_of(l)..], seg.bases))
    }

    fn seg_mut(&mut self, id: usize) -> &mut Segment {
        self.segs[id].as_mut().expect("segment ids in use are occupied")
    }

    /// Whether the item at `l` may be served at `now` (flush first, as memcached).
    /// The caller has applied `flush.advance(now)`.
    pub(super) fn liveness(&self, l: Loc, now: u32) -> Liveness {
        match self.item(l) {
            Some(r) => self.liveness_of(r, now),
            None => Liveness::Live,
        }
    }

    fn liveness_of(&self, r: ItemRef<'_>, now: u32) -> Liveness {
        liveness(&self.flush, r, now)
    }

    /// A read of the item at `l` at `now` that decodes its header once: if the item
    /// is live, counts the read for the eviction policy (its frequency, and a big
    /// item's read count), records it (fetched, last access, and for get-and-touch
    /// the expiry `touch_to`) and hands the item out. The hot path of `get`; the
    /// caller has applied `flush.advance(now)`.
    pub(super) fn read(&mut self, l: Loc, now: u32, touch_to: Option<u32>) -> Read<'_> {
        let Some(seg) = self.segs.get_mut(seg_of(l)).and_then(Option::as_mut) else {
            return Read::Absent;
        };
        let (off, bases) = (off_of(l), seg.bases);
        let r = ItemRef::new(&seg.buf[off..], bases);
        let h = r.header();
        match liveness(&self.flush, r, now) {
            Liveness::Live => {}
            gone => return Read::Gone(gone),
        }
        if seg.own {
            seg.reads = seg.reads.saturating_add(1);
        }
        let mut m = ItemMut::new(&mut seg.buf[off..], bases);
        m.bump_freq();
        if !m.try_mark_read(&h, now, touch_to) {
            return Read::NoRoom;
        }
        Read::Hit(ItemRef::decoded(&seg.buf[off..], seg.buf.rest(), h))
    }

    /// Counts a read of the item at `l` for the eviction policy.
    pub(super) fn touch(&mut self, l: Loc) {
        self.item_read(l);
    }

    /// Counts a read of the item at `l` for the eviction policy (its frequency, and a
    /// big item's read count) and hands it out for the read's own updates.
    pub(super) fn item_read(&mut self, l: Loc) -> Option<ItemMut<'_>> {
        let seg = self.segs.get_mut(seg_of(l))?.as_mut()?;
        if seg.own {
            seg.reads = seg.reads.saturating_add(1);
        }
        let mut m = ItemMut::new(&mut seg.buf[off_of(l)..], seg.bases);
        m.bump_freq();
        Some(m)
    }

    /// Removes the item at `l` (a delete, a replacement, or an expired or flushed item
    /// met on access or by the sweep), counting a reclaim for the last two. Returns
    /// whether there was an item.
    pub(super) fn remove(&mut self, l: Loc, now: u32) -> bool {
        let Some(hash) = self
            .segs
            .get(seg_of(l))
            .and_then(Option::as_ref)
            .map(|s| hash_key(item::key_of(&s.buf[off_of(l)..])))
        else {
            return false;
        };
        self.remove_hashed(l, hash, now, false)
    }

    /// [`Shard::remove`] for a caller that has the key's hash at hand. An expired item,
    /// or any item when `deleted` (a client's delete), leaves a tombstone.
    pub(super) fn remove_hashed(&mut self, l: Loc, hash: u64, now: u32, deleted: bool) -> bool {
        let Some(r) = self.item(l) else {
            return false;
        };
        if r.is_dead() {
            return false;
        }
        let state = self.liveness_of(r, now);
        let (fetched, size, cas) = (r.fetched(), r.size(), r.cas());
        // Only an item the index points at is live (a location is never trusted alone).
        if self.table.remove(hash, |x| x == l).is_none() {
            return false;
        }
        if deleted || state == Liveness::Expired {
            self.bury(hash, cas, now);
        }
        if let Some(mut m) = self.item_mut(l) {
            m.set_dead();
        }
        self.count_reclaim(state, fetched);
        let id = seg_of(l);
        let seg = self.seg_mut(id);
        seg.live -= 1;
        let (q, empty, sealed) = (seg.queue, seg.live == 0, seg.sealed);
        self.forget(q, size);
        if empty {
            if sealed {
                if let Some(pos) = self.fifo[q as usize].iter().position(|&s| s as usize == id) {
                    self.fifo[q as usize].remove(pos);
                }
                self.release(id);
            } else {
                // The open segment holds nothing live: append from its start again.
                let seg = self.seg_mut(id);
                seg.used = 0;
                seg.epoch = seg.epoch.wrapping_add(1);
            }
        }
        true
    }

    /// Takes a live item of `size` bytes in queue `q` off the books.
    fn forget(&mut self, q: Queue, size: usize) {
        self.queue_items[q as usize] -= 1;
        self.queue_bytes[q as usize] -= size;
        self.items -= 1;
        self.live_bytes -= size;
    }

    fn count_reclaim(&mut self, state: Liveness, fetched: bool) {
        match state {
            Liveness::Live => {}
            Liveness::Expired | Liveness::Flushed => {
                self.counters.reclaimed += 1;
                if !fetched {
                    self.counters.expired_unfetched += 1;
                }
            }
        }
    }

    /// Returns segment `id` (out of every queue) and its buffer.
    fn release(&mut self, id: usize) {
        if let Some(seg) = self.segs[id].take() {
            self.recycle(seg.buf);
        }
        self.free_ids.push(id as u32);
    }

    /// Pools a segment's buffers (a big item's chunks too) if they are segment-size;
    /// frees any other (one cut to the size before a resize).
    fn recycle(&mut self, buf: Buf) {
        match buf {
            Buf::Heap(buf) => self.recycle_one(buf),
            Buf::Chunks(chunks) => {
                for buf in chunks {
                    self.recycle_one(buf);
                }
            }
        }
    }

    /// Pools a segment-size buffer or a big item's tail; frees any other (a segment
    /// from before a resize).
    fn recycle_one(&mut self, buf: Box<[u8]>) {
        let len = buf.len();
        if len == self.seg_size {
            self.pool.push(buf);
        } else if len < self.seg_size && len.is_multiple_of(TAIL_ROUND) {
            let class = len / TAIL_ROUND - 1;
            if self.tails.len() <= class {
                self.tails.resize_with(class + 1, Vec::new);
            }
            self.tails[class].push(buf);
            self.tail_bytes += len;
        } else {
            self.allocated -= len;
            free_buffer(buf);
        }
    }

    /// A pooled tail of `len` bytes, if there is one.
    fn pooled_tail(&mut self, len: usize) -> Option<Box<[u8]>> {
        let buf = self.tails.get_mut(len / TAIL_ROUND - 1)?.pop()?;
        self.tail_bytes -= len;
        Some(buf)
    }

    /// Frees every pooled buffer.
    fn free_pool(&mut self) {
        while self.free_pooled() {}
    }

    /// Frees one pooled buffer (a segment-size one first, else the biggest pooled
    /// tail), giving its pages back to the kernel; false if there was none.
    fn free_pooled(&mut self) -> bool {
        let buf = match self.pool.pop() {
            Some(buf) => buf,
            None => {
                let Some(class) = self.tails.iter().rposition(|t| !t.is_empty()) else {
                    return false;
                };
                let buf = self.tails[class].pop().expect("a tail in the class");
                self.tail_bytes -= buf.len();
                buf
            }
        };
        self.allocated -= buf.len();
        free_buffer(buf);
        true
    }

    /// This shard's slice of the memory budget, in bytes.
    #[cfg(test)]
    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// Changes this shard's slice of the budget to `limit` bytes (`cache_memlimit`).
    ///
    /// New segments get the size the new budget calls for (existing ones keep theirs
    /// until they are reclaimed, when their buffers are freed rather than pooled). A
    /// smaller budget is met at once: pooled buffers are freed, then segments are
    /// evicted (oldest first, items read since they were written copied forward
    /// while there is room, as any eviction does) and their buffers freed until the
    /// segments' bytes fit, so the memory goes back to the system. A larger budget
    /// only lets more in.
    pub(super) fn resize(&mut self, limit: usize, now: u32) {
        self.limit = limit;
        let seg_size = segment_size(limit);
        if seg_size != self.seg_size {
            self.seg_size = seg_size;
            self.free_pool();
            // The open segments have the old size: seal them, so that eviction can
            // take them and new items go to segments of the new size. Left open, they
            // could hold a shrunk budget that eviction cannot free, and an item that
            // fits the new budget would fail as out of memory.
            self.seal(Queue::Small);
            self.seal(Queue::Main);
        }
        let patience = self.patience();
        let mut attempts = 0;
        while self.allocated > self.seg_limit() {
            self.free_pool();
            if self.allocated <= self.seg_limit() || self.shrink_index() {
                continue;
            }
            if !self.evict_one(now, attempts >= patience) {
                // Nothing sealed or open with items left: release empty open segments.
                self.seal(Queue::Small);
                self.seal(Queue::Main);
                self.free_pool();
                break;
            }
            attempts += 1;
        }
        // While the budget is tight, keep no spare buffers beyond it either.
        if self.allocated > self.seg_limit() {
            self.free_pool();
        }
        let segs = &self.segs;
        self.table.shrink_to(self.items, |x| loc_hash(segs, x));
        self.fit(now);
        self.segs_trim();
    }

    /// Drops unused ids at the end of the segment table.
    fn segs_trim(&mut self) {
        while matches!(self.segs.last(), Some(None)) {
            self.segs.pop();
        }
        let len = self.segs.len();
        self.free_ids.retain(|&x| (x as usize) < len);
        self.segs.shrink_to_fit();
        self.free_ids.shrink_to_fit();
    }

    /// Gives `seg` an id; `None` (the buffer recycled) if every id is taken.
    fn new_segment(&mut self, mut seg: Segment) -> Option<u32> {
        seg.epoch = self.next_epoch;
        self.next_epoch = self.next_epoch.wrapping_add(1);
        match self.free_ids.pop() {
            Some(id) => {
                self.segs[id as usize] = Some(seg);
                Some(id)
            }
            None if self.segs.len() < MAX_SEGMENTS => {
                self.segs.push(Some(seg));
                Some((self.segs.len() - 1) as u32)
            }
            None => {
                self.recycle(seg.buf);
                None
            }
        }
    }

    /// Seals queue `q`'s open segment (reclaiming it if nothing in it is live).
    fn seal(&mut self, q: Queue) {
        let Some(id) = self.open[q as usize].take() else {
            return;
        };
        let seg = self.seg_mut(id as usize);
        if seg.live == 0 {
            self.release(id as usize);
        } else {
            seg.sealed = true;
            self.fifo[q as usize].push_front(id);
        }
    }

    /// Gives back the buffers of open segments that hold no live item (to the pool);
    /// false if there were none.
    fn release_empty_open(&mut self) -> bool {
        let mut released = false;
        for q in [Queue::Small, Queue::Main] {
            let open = self.open[q as usize].and_then(|id| self.segs[id as usize].as_ref());
            if open.is_some_and(|s| s.live == 0) {
                self.seal(q);
                released = true;
            }
        }
        released
    }

    /// The bytes segments may take: the budget less the index and the ghost.
    fn seg_limit(&self) -> usize {
        self.limit.saturating_sub(self.index_bytes())
    }

    /// Segment-size buffers that could be had without evicting: pooled, unallocated,
    /// or in place of pooled tails.
    fn available(&self) -> usize {
        self.room() / self.seg_size
    }

    /// Brings segments, index and ghost back within the budget after the index or the
    /// ghost grew (or the budget shrank): sizes the ghost for main's item count, then
    /// frees pooled buffers, shrinks an index table more than four times too big, and
    /// evicts, until they fit or nothing is left to evict.
    fn fit(&mut self, now: u32) {
        let ghost = if self.policy == PolicyKind::S3Fifo && self.tuning.ghost_admit {
            self.queue_items[Queue::Main as usize] * usize::from(self.tuning.ghost_factor)
        } else {
            0
        };
        self.ghost.resize_for(ghost);
        self.make_room(now, 0);
    }

    /// Frees pooled buffers, shrinks an oversized index table, then evicts, until
    /// `extra` more bytes fit beside the segments, index and ghost (or nothing is left
    /// to evict).
    fn make_room(&mut self, now: u32, extra: usize) {
        let patience = self.patience();
        let mut attempts = 0;
        while self.allocated + extra + self.index_bytes() > self.limit {
            if self.free_pooled() || self.shrink_index() {
                continue;
            }
            if !self.evict_one(now, attempts >= patience) || attempts > 2 * patience {
                break;
            }
            attempts += 1;
        }
    }

    /// Shrinks an index table more than four times bigger than its items need (to
    /// twice their number); false if it was not.
    fn shrink_index(&mut self) -> bool {
        if self.table.capacity() <= 4 * self.items + 64 {
            return false;
        }
        let segs = &self.segs;
        self.table.shrink_to(2 * self.items, |x| loc_hash(segs, x));
        true
    }

    /// Makes room in the index for one more entry. A full table grows only if the
    /// budget less the table grown by a step (a quarter), the ghost and eviction's
    /// reserve still holds more items (of today's average size) than the table holds
    /// now; else eviction makes the room, so the index never costs more items than it
    /// lets in. It grows to about what the budget can hold, at most double: a store
    /// filling up rebuilds its table a dozen times, not forty, and ends with its table
    /// nearly full. Then [`Shard::fit`].
    fn reserve_index(&mut self, now: u32) {
        let cap = self.table.capacity();
        if self.table.len() < cap {
            return;
        }
        let avg = (self.live_bytes / self.items.max(1)).max(1);
        // What is left for items: the budget less the table, the ghost and eviction's
        // reserve.
        let other = self.ghost.bytes() + RESERVE * self.seg_size;
        let holds = |capacity: usize| self.limit.saturating_sub(Index::bytes_for(capacity) + other) / avg;
        let step = self.table.grown_capacity();
        let target = if holds(step) > cap {
            holds(step).min(2 * cap).max(step)
        } else {
            let patience = self.patience();
            let mut attempts = 0;
            while self.table.len() >= self.table.capacity() {
                if !self.evict_one(now, attempts >= patience) || attempts > 2 * patience {
                    break;
                }
                attempts += 1;
            }
            self.table.len() + 1
        };
        let segs = &self.segs;
        self.table.reserve_to(target, |x| loc_hash(segs, x));
        self.fit(now);
    }

    /// A segment-size buffer from the pool or the unallocated budget, if any.
    fn spare_buffer(&mut self) -> Option<Box<[u8]>> {
        if let Some(buf) = self.pool.pop() {
            return Some(buf);
        }
        while self.allocated + self.seg_size > self.seg_limit() {
            if self.tail_bytes == 0 {
                return None;
            }
            self.free_pooled();
        }
        self.allocated += self.seg_size;
        Some(vec![0; self.seg_size].into_boxed_slice())
    }

    /// How many evictions in a row may copy items forward before one must drop them:
    /// enough to pass every segment a few times (each pass lowers the frequencies).
    fn patience(&self) -> usize {
        4 * self.segs.len() + 8
    }

    /// A segment-size buffer for new items, evicting until the reserve stays free.
    fn buffer(&mut self, now: u32) -> Result<Box<[u8]>, StoreError> {
        self.fit(now);
        let patience = self.patience();
        let mut attempts = 0;
        while self.available() <= RESERVE {
            if !self.evict_one(now, attempts >= patience) || attempts > 2 * patience {
                break;
            }
            attempts += 1;
        }
        self.spare_buffer().ok_or(StoreError::OutOfMemory)
    }

    /// Room at the end of queue `q` for an item that takes `len_for(bases)` bytes in a
    /// segment with those bases (at most `seg_size` in a new segment, whose bases are
    /// `fresh`): in its open segment, or in a new one. Returns the location and the
    /// length. While evicting, new segments come only from the reserve, and an error
    /// means there was none.
    fn append(
        &mut self,
        q: Queue,
        len_for: impl Fn(Bases) -> usize,
        fresh: Bases,
        now: u32,
        evicting: bool,
    ) -> Result<(Loc, usize), StoreError> {
        let fresh_len = len_for(fresh);
        if fresh_len > self.seg_size {
            return Err(StoreError::OutOfMemory);
        }
        // Evicting (to get a buffer) may itself open a segment for `q`; use that one
        // then, and give the buffer back. Each round either returns or seals a full
        // segment, so a few rounds suffice.
        for _ in 0..4 {
            if let Some(id) = self.open[q as usize] {
                let seg = self.seg_mut(id as usize);
                if seg.used == 0 {
                    // A rewound segment: start its bases afresh.
                    seg.bases = fresh;
                }
                let len = len_for(seg.bases);
                if seg.used + len <= seg.buf.len() {
                    let off = seg.used;
                    seg.used += len;
                    return Ok((loc(id, off), len));
                }
                self.seal(q);
            }
            let buf = if evicting {
                self.spare_buffer().ok_or(StoreError::OutOfMemory)?
            } else {
                self.buffer(now)?
            };
            if self.open[q as usize].is_some() {
                self.pool.push(buf);
                continue;
            }
            let id = self
                .new_segment(Segment {
                    buf: Buf::Heap(buf),
                    used: fresh_len,
                    live: 0,
                    queue: q,
                    sealed: false,
                    own: false,
                    epoch: 0,
                    bases: fresh,
                    reads: 0,
                })
                .ok_or(StoreError::OutOfMemory)?;
            self.open[q as usize] = Some(id);
            return Ok((loc(id, 0), fresh_len));
        }
        Err(StoreError::OutOfMemory)
    }

    /// A segment of its own, with bases `fresh`, for an item of `len` (more than
    /// `seg_size`) bytes, in chunks ([`Shard::big_layout`]): segment-size buffers from
    /// the pool or the unallocated budget, and a tail cut to what it holds, evicting
    /// until they fit beside the eviction reserve.
    fn append_big(&mut self, q: Queue, len: usize, fresh: Bases, now: u32) -> Result<Loc, StoreError> {
        let chunks = self.take_chunks(len, now)?;
        self.big_segment(q, len, fresh, chunks)
    }

    /// The chunks a big item of `len` bytes is made of ([`Shard::big_layout`]), from
    /// the pool or the unallocated budget, evicting for room; counted in `allocated`.
    fn take_chunks(&mut self, len: usize, now: u32) -> Result<Vec<Box<[u8]>>, StoreError> {
        let (full, tail) = self.big_layout(len);
        let need = full * self.seg_size + tail;
        self.fit(now);
        let patience = self.patience();
        let mut attempts = 0;
        while self.room() < need + RESERVE * self.seg_size {
            if self.shrink_index() {
                continue;
            }
            if !self.evict_one(now, attempts >= patience) || attempts > 2 * patience {
                // Eviction skips an open segment; one left empty (its items deleted)
                // still holds a buffer the big item may need.
                if self.release_empty_open() {
                    continue;
                }
                break;
            }
            attempts += 1;
        }
        if self.room() < need {
            return Err(StoreError::OutOfMemory);
        }
        let mut chunks: Vec<Box<[u8]>> = Vec::with_capacity(full + 1);
        chunks.extend((0..full).map_while(|_| self.spare_buffer()));
        if tail > 0 {
            if let Some(buf) = self.pooled_tail(tail) {
                chunks.push(buf);
            } else if self.allocated + tail > self.seg_limit() && !self.pool.is_empty() {
                // No room beside the pooled buffers: a pooled segment-size buffer is
                // cut down to the tail in place, so the tail's pages are resident
                // already and the rest go back to the kernel (freeing it and
                // allocating the tail anew faulted every tail's pages in: 6% of a
                // large-value load's CPU).
                let buf = self.pool.pop().expect("a pooled buffer");
                self.allocated -= buf.len() - tail;
                chunks.push(cut(buf, tail));
            } else {
                // Room for a new tail: free pooled buffers if need be.
                while self.allocated + tail > self.seg_limit() && self.free_pooled() {}
                if self.allocated + tail <= self.seg_limit() {
                    self.allocated += tail;
                    chunks.push(vec![0; tail].into_boxed_slice());
                }
            }
        }
        if chunks.len() < full + usize::from(tail > 0) {
            self.recycle(Buf::Chunks(chunks));
            return Err(StoreError::OutOfMemory);
        }
        Ok(chunks)
    }

    /// A big item's segment of `chunks` at the front of queue `q`.
    fn big_segment(&mut self, q: Queue, len: usize, fresh: Bases, chunks: Vec<Box<[u8]>>) -> Result<Loc, StoreError> {
        let id = self
            .new_segment(Segment {
                buf: Buf::Chunks(chunks),
                used: len,
                live: 0,
                queue: q,
                sealed: true,
                own: true,
                epoch: 0,
                bases: fresh,
                reads: 0,
            })
            .ok_or(StoreError::OutOfMemory)?;
        self.fifo[q as usize].push_front(id);
        Ok(loc(id, 0))
    }

    /// Chunks for a big item of a `key_len`-byte key and a `value_len`-byte value with
    /// `meta`, stored now, lent so that the value can be read straight into place
    /// before the item is stored ([`super::Store::land`]): the chunks (counted in
    /// `allocated` and `lent`) and how many bytes of header and key go before the
    /// value. `None` if the item would not be big, would be refused, or finds no
    /// room.
    pub(super) fn lend_chunks(
        &mut self,
        key_len: usize,
        value_len: usize,
        meta: &Meta,
        now: u32,
    ) -> Option<(Vec<Box<[u8]>>, usize)> {
        let fresh = Bases {
            cas: meta.cas,
            time: now,
        };
        let len = item::size(key_len, value_len, meta, fresh);
        if len <= self.seg_size || len - value_len > self.seg_size || self.too_large(key_len, value_len, len) {
            return None;
        }
        let chunks = self.take_chunks(len, now).ok()?;
        self.lent += chunks.iter().map(|c| c.len()).sum::<usize>();
        Some((chunks, len - value_len))
    }

    /// Takes back chunks from [`Shard::lend_chunks`] that were not stored.
    pub(super) fn return_chunks(&mut self, chunks: Vec<Box<[u8]>>) {
        self.lent -= chunks.iter().map(|c| c.len()).sum::<usize>();
        self.recycle(Buf::Chunks(chunks));
    }

    /// Whether an item of a `key_len`-byte key and a `value_len`-byte value, `len`
    /// bytes stored, is refused as too large: over `-I`, or more than the budget can
    /// ever hold beside eviction's reserve.
    fn too_large(&self, key_len: usize, value_len: usize, len: usize) -> bool {
        key_len > MAX_KEY
            || value_len > u32::MAX as usize
            || key_len + value_len > self.max_item_size
            || self.charge(len) + RESERVE * self.seg_size > self.limit
    }

    /// Whether `chunks` are what [`Shard::take_chunks`] gives for a big item of `len`
    /// bytes today.
    fn fits_layout(&self, chunks: &[Box<[u8]>], len: usize) -> bool {
        if len <= self.seg_size {
            return false;
        }
        let (full, tail) = self.big_layout(len);
        chunks.len() == full + usize::from(tail > 0)
            && chunks[..full].iter().all(|c| c.len() == self.seg_size)
            && (tail == 0 || chunks[full].len() == tail)
    }

    /// How a big item of `len` bytes is cut: full segment-size chunks, and the bytes of
    /// a last, smaller chunk for the rest (0 for none), rounded up to [`TAIL_ROUND`]. A
    /// tail as big as a segment is a full chunk.
    fn big_layout(&self, len: usize) -> (usize, usize) {
        let (full, rest) = (len / self.seg_size, len % self.seg_size);
        match rest.next_multiple_of(TAIL_ROUND) {
            0 => (full, 0),
            tail if tail >= self.seg_size => (full + 1, 0),
            tail => (full, tail),
        }
    }

    /// Bytes of buffers an item of `len` bytes takes: its own if it is bigger than a
    /// segment, else `len` of a shared one.
    fn charge(&self, len: usize) -> usize {
        if len > self.seg_size {
            let (full, tail) = self.big_layout(len);
            full * self.seg_size + tail
        } else {
            len
        }
    }

    /// Bytes of buffers that could be had without evicting: pooled (tails too, which
    /// can be freed for room) or unallocated.
    fn room(&self) -> usize {
        self.pool.len() * self.seg_size + self.seg_limit().saturating_sub(self.allocated - self.tail_bytes)
    }

    /// Whether queue `q` holds any segment with something in it.
    fn has(&self, q: Queue) -> bool {
        !self.fifo[q as usize].is_empty()
            || self.open[q as usize].is_some_and(|id| self.segs[id as usize].as_ref().is_some_and(|s| s.used > 0))
    }

    /// The queue to evict from: S3-FIFO takes small while it holds at least its share
    /// of the live bytes (`S3Tuning::small_percent`).
    fn victim_queue(&self) -> Option<Queue> {
        let (small, main) = (self.has(Queue::Small), self.has(Queue::Main));
        let share = usize::from(self.tuning.small_percent);
        if small && (!main || self.queue_bytes[Queue::Small as usize] * 100 >= self.live_bytes * share) {
            Some(Queue::Small)
        } else if main {
            Some(Queue::Main)
        } else if small {
            Some(Queue::Small)
        } else {
            None
        }
    }

    /// Where a live item of queue `q` goes when its segment is evicted, under
    /// size-aware S3-FIFO (`S3Tuning::size_aware_pct`): `None` to evict it, else its
    /// queue and header frequency. An item's worth is its reads per byte: an item r
    /// times [`Shard::size_unit`] needs r reads (rounded, at least 1) since it last
    /// passed to stay in main, and an unread one smaller than the unit stays with
    /// probability 1 - r, at most `S3Tuning::unread_keep_max_pct`. With equal sizes that is S3-FIFO's rule (one read to stay,
    /// none kept unread). A big item counts its reads in its segment
    /// (`Segment::reads`, the surplus kept for the next pass); an item of a shared
    /// segment has its 2-bit frequency, so it needs at most the frequency cap.
    fn size_aware_dest(
        &mut self,
        q: Queue,
        big_reads: Option<&mut u16>,
        size: usize,
        freq: u8,
        compact: bool,
    ) -> Option<(Queue, u8)> {
        let unit = self.size_unit();
        let need = reads_for(size, unit);
        let (reads, need) = match &big_reads {
            Some(r) => (**r, need),
            None => {
                let max = u16::from(self.tuning.max_freq.max(1));
                (u16::from(self.tuning.freq(freq)), need.min(max))
            }
        };
        match q {
            Queue::Small if reads >= u16::from(self.tuning.promote_at.max(1)) => Some((Queue::Main, 0)),
            Queue::Main if reads >= need => {
                if let Some(r) = big_reads {
                    *r -= need;
                }
                Some((Queue::Main, (reads - need).min(3) as u8))
            }
            Queue::Main if reads == 0 && size < unit && self.draw(unit) >= size.max(unit * self.keep_floor() / 100) => {
                Some((Queue::Main, 0))
            }
            q if compact => Some((q, 0)),
            _ => None,
        }
    }

    /// The size an item of one read per pass is worth keeping at: the mean size of
    /// the items stored lately (not of those kept, which the policy itself skews
    /// small) times `S3Tuning::size_aware_pct`.
    fn size_unit(&self) -> usize {
        let mean = match self.stored {
            (bytes, n) if n > 0 => (bytes / n) as usize,
            _ => self.live_bytes / self.items.max(1),
        };
        (mean.max(1) * usize::from(self.tuning.size_aware_pct) / 100).max(1)
    }

    /// 100 less the most an unread item may be kept with, in percent.
    fn keep_floor(&self) -> usize {
        100 - usize::from(self.tuning.unread_keep_max_pct.min(100))
    }

    /// Counts an item of `len` bytes stored, for [`Shard::size_aware_dest`].
    fn note_stored(&mut self, len: usize) {
        if self.stored.1 >= 1 << 16 {
            self.stored = (self.stored.0 / 2, self.stored.1 / 2);
        }
        self.stored = (self.stored.0 + len as u64, self.stored.1 + 1);
    }

    /// A pseudo-random number below `n` (xorshift64: the shard's own, seeded, so a
    /// run replays exactly).
    fn draw(&mut self, n: usize) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % n.max(1) as u64) as usize
    }

    /// Evicts one segment: copies forward the items that earn it (unless `force`),
    /// evicts the rest, and reuses its buffer. False if there was nothing to evict.
    fn evict_one(&mut self, now: u32, force: bool) -> bool {
        let Some(q) = self.victim_queue() else {
            return false;
        };
        if self.fifo[q as usize].is_empty() {
            self.seal(q);
        }
        let Some(id) = self.fifo[q as usize].pop_back() else {
            return false;
        };
        let id = id as usize;
        // The victim leaves `segs` while it is walked, but its id stays taken until the
        // end, so no new segment can reuse it while the index still points into it.
        let Some(mut seg) = self.segs[id].take() else {
            return false;
        };
        let compact = !force && self.live_bytes * 2 < self.seg_limit();
        let big = seg.own;
        let mut off = 0;
        while off < seg.used {
            // Borrows the buffer alone: the policy may count a big item's reads.
            let r = ItemRef::chunked(&seg.buf[off..], seg.buf.rest(), seg.bases);
            let size = r.size();
            let at = off;
            off += size;
            if r.is_dead() {
                continue;
            }
            let l = loc(id as u32, at);
            let hash = hash_key(r.key());
            let state = self.liveness_of(r, now);
            // An item of a segment cut before a resize may not fit today's segments.
            let dest = if state != Liveness::Live || force || (!big && size > self.seg_size) {
                None
            } else if self.policy == PolicyKind::S3Fifo && self.tuning.size_aware_pct > 0 {
                self.size_aware_dest(q, big.then_some(&mut seg.reads), size, r.freq(), compact)
            } else {
                let promote = self.tuning.promote_at.max(1);
                match (q, self.tuning.freq(r.freq())) {
                    (Queue::Small, f) if f >= promote => Some((Queue::Main, 0)),
                    (Queue::Main, f) if f >= 1 => Some((Queue::Main, f - 1)),
                    (q, _) if compact => Some((q, 0)),
                    _ => None,
                }
            };
            if let Some((to, freq)) = dest {
                if big {
                    // A segment of its own moves whole: relink it, copy nothing.
                    ItemMut::new(&mut seg.buf[at..], seg.bases).set_freq(freq);
                    seg.queue = to;
                    self.queue_items[q as usize] -= 1;
                    self.queue_items[to as usize] += 1;
                    self.queue_bytes[q as usize] -= size;
                    self.queue_bytes[to as usize] += size;
                    self.segs[id] = Some(seg);
                    self.fifo[to as usize].push_front(id as u32);
                    self.counters.moved += 1;
                    return true;
                }
                // The header is re-encoded against the destination's bases.
                let meta = r.meta();
                let (klen, vlen) = (r.key_len(), r.value_len());
                let fresh = Bases {
                    cas: meta.cas,
                    time: now,
                };
                if let Ok((new, len)) = self.append(to, |b| item::size(klen, vlen, &meta, b), fresh, now, true) {
                    let r = seg.item(at);
                    let value = r.value().as_slice().expect("only a big item is in chunks");
                    let dst = self.seg_mut(seg_of(new));
                    let bases = dst.bases;
                    item::write(
                        &mut dst.buf[off_of(new)..off_of(new) + len],
                        r.key(),
                        value,
                        &meta,
                        bases,
                        freq,
                    );
                    dst.live += 1;
                    self.live_bytes = self.live_bytes - size + len;
                    if let Some(entry) = self.table.find_mut(hash, |x| x == l) {
                        *entry = new;
                    }
                    self.queue_items[q as usize] -= 1;
                    self.queue_items[to as usize] += 1;
                    self.queue_bytes[q as usize] -= size;
                    self.queue_bytes[to as usize] += len;
                    self.counters.moved += 1;
                    continue;
                }
            }
            // Evicted (or expired or flushed: reclaimed).
            let r = seg.item(at);
            self.table.remove(hash, |x| x == l);
            match state {
                Liveness::Live => {
                    self.counters.evictions += 1;
                    if !r.fetched() {
                        self.counters.evicted_unfetched += 1;
                    }
                    if q == Queue::Small && self.policy == PolicyKind::S3Fifo && self.tuning.ghost_admit {
                        self.ghost.insert(hash);
                    }
                }
                Liveness::Expired | Liveness::Flushed => {
                    self.count_reclaim(state, r.fetched());
                    if state == Liveness::Expired {
                        let cas = r.cas();
                        self.bury(hash, cas, now);
                    }
                }
            }
            self.forget(q, size);
        }
        self.recycle(seg.buf);
        self.free_ids.push(id as u32);
        self.counters.direct_reclaims += 1;
        true
    }

    /// Stores `item` under `key`, replacing any item there. A refused item still
    /// removes the old one, as memcached does, so a failed `set` never leaves the
    /// previous value behind.
    pub(super) fn store(&mut self, hash: u64, key: &[u8], item: &Item, now: u32) -> Result<(), StoreError> {
        self.store_from(hash, key, item, Src::Copy(&item.value), now)
    }

    /// [`Shard::store`] with the value from `src` (`item.value` is not looked at).
    pub(super) fn store_from(
        &mut self,
        hash: u64,
        key: &[u8],
        item: &Item,
        src: Src<'_>,
        now: u32,
    ) -> Result<(), StoreError> {
        if let Src::Landed { chunks, .. } = &src {
            self.lent -= chunks.iter().map(|c| c.len()).sum::<usize>();
        }
        if let Some(old) = self.find(hash, key) {
            self.remove_hashed(old, hash, now, false);
        }
        // The store time is now, whatever the caller's copy says: the flush rule
        // compares it.
        let meta = Meta::of(item, now);
        let vlen = src.len();
        let len = item::size(
            key.len(),
            vlen,
            &meta,
            Bases {
                cas: meta.cas,
                time: now,
            },
        );
        // A value read into chunks laid out for another item (a header of another
        // width, the clock having moved on; or a segment size changed since) is
        // copied out and stored as any other: rare, and never wrong.
        let gathered;
        let src = match src {
            Src::Landed { chunks, head, len: v } if len - v != head || !self.fits_layout(&chunks, len) => {
                gathered = gather(&chunks, head, v);
                self.recycle(Buf::Chunks(chunks));
                Src::Copy(&gathered)
            }
            src => src,
        };
        if self.too_large(key.len(), vlen, len) {
            if let Src::Landed { chunks, .. } = src {
                self.recycle(Buf::Chunks(chunks));
            }
            return Err(StoreError::TooLarge);
        }
        let q = match self.policy {
            PolicyKind::Clock => Queue::Main,
            PolicyKind::S3Fifo
                if self.tuning.ghost_admit
                    && self.ghost.take(hash)
                    && (self.tuning.size_aware_pct == 0 || reads_for(len, self.size_unit()) == 1) =>
            {
                Queue::Main
            }
            PolicyKind::S3Fifo => Queue::Small,
        };
        self.place(q, hash, key, src, &meta, 0, now)?;
        self.counters.total_items += 1;
        self.note_stored(len);
        // Eviction while placing may have grown the ghost's count of main's items.
        self.fit(now);
        Ok(())
    }

    /// Writes a new item (its key not in the index) at the end of queue `q` and
    /// indexes it.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        q: Queue,
        hash: u64,
        key: &[u8],
        value: Src<'_>,
        meta: &Meta,
        freq: u8,
        now: u32,
    ) -> Result<Loc, StoreError> {
        let fresh = Bases {
            cas: meta.cas,
            time: now,
        };
        let (klen, vlen) = (key.len(), value.len());
        self.reserve_index(now);
        let fresh_len = item::size(klen, vlen, meta, fresh);
        let (value, landed) = match value {
            Src::Copy(v) => (v, None),
            Src::Landed { chunks, .. } => (&[][..], Some(chunks)),
        };
        if fresh_len > self.seg_size && fresh_len - vlen > self.seg_size {
            // A big item's header and key go in its first chunk, a segment long: in a
            // shard under 864 bytes a segment is shorter than the longest key.
            if let Some(chunks) = landed {
                self.recycle(Buf::Chunks(chunks));
            }
            return Err(StoreError::TooLarge);
        }
        let (l, len) = match landed {
            // `store_from` checked that they are laid out for this item.
            Some(chunks) => (self.big_segment(q, fresh_len, fresh, chunks)?, fresh_len),
            None if fresh_len > self.seg_size => (self.append_big(q, fresh_len, fresh, now)?, fresh_len),
            None => self.append(q, |b| item::size(klen, vlen, meta, b), fresh, now, false)?,
        };
        let seg = self.seg_mut(seg_of(l));
        let bases = seg.bases;
        match &mut seg.buf {
            Buf::Heap(buf) => item::write(&mut buf[off_of(l)..off_of(l) + len], key, value, meta, bases, freq),
            Buf::Chunks(chunks) => {
                // Header, key and the value's start fill the first chunk; the value
                // goes on in the others.
                let at = item::write_head(&mut chunks[0], key, vlen, meta, bases, freq);
                // A landed value is in place already (`value` is empty then).
                let mut value = value;
                for (i, chunk) in chunks.iter_mut().enumerate() {
                    let to = &mut chunk[if i == 0 { at } else { 0 }..];
                    let n = to.len().min(value.len());
                    to[..n].copy_from_slice(&value[..n]);
                    value = &value[n..];
                }
                debug_assert!(value.is_empty());
            }
        }
        seg.live += 1;
        self.queue_items[q as usize] += 1;
        self.queue_bytes[q as usize] += len;
        self.items += 1;
        self.live_bytes += len;
        let segs = &self.segs;
        self.table.insert_unique(hash, l, |x| loc_hash(segs, x));
        Ok(l)
    }

    /// Moves the live item at `l` to the end of its queue with metadata `meta` (which
    /// its header had no room for), keeping its access frequency. If there is no room
    /// the item is gone (a miss is always allowed).
    pub(super) fn relocate(&mut self, l: Loc, hash: u64, meta: &Meta, now: u32) -> Result<Loc, StoreError> {
        let Some(seg) = self.segs.get(seg_of(l)).and_then(Option::as_ref) else {
            return Err(StoreError::OutOfMemory);
        };
        let q = seg.queue;
        let r = seg.item(off_of(l));
        let freq = r.freq();
        let key = r.key().to_vec();
        let value = r.value().to_vec();
        self.remove_hashed(l, hash, now, false);
        self.place(q, hash, &key, Src::Copy(&value), meta, freq, now)
    }

    /// Examines up to `budget` items from the sweep cursor, removing expired and
    /// flushed ones, and stops early at the end of a lap (the last segment), so a
    /// small store is not walked over and over. Returns how many it removed and
    /// whether it reached the end of a lap (the next call starts a new one).
    pub(super) fn sweep(&mut self, now: u32, budget: usize) -> (usize, bool) {
        self.flush.advance(now);
        let mut removed = 0;
        let mut examined = 0;
        // Entering and leaving a segment cost steps too, bounded separately.
        let mut steps = budget + 3 * self.segs.len() + 1;
        while examined < budget && steps > 0 {
            steps -= 1;
            let (id, epoch, off) = self.cursor;
            if id >= self.segs.len() {
                self.cursor = (0, 0, 0);
                return (removed, true);
            }
            let Some(seg) = self.segs[id].as_ref() else {
                self.cursor = (id + 1, 0, 0);
                continue;
            };
            if seg.epoch != epoch {
                // New to this segment (or it changed under the cursor): from its start.
                self.cursor = (id, seg.epoch, 0);
                continue;
            }
            if off >= seg.used {
                self.cursor = (id + 1, 0, 0);
                continue;
            }
            let r = seg.item(off);
            self.cursor.2 += r.size();
            examined += 1;
            if !r.is_dead() && self.liveness_of(r, now) != Liveness::Live {
                self.remove(loc(id as u32, off), now);
                removed += 1;
            }
        }
        (removed, false)
    }

    /// Calls `f` with every live item (key, value, flags, exptime, CAS) whose access
    /// frequency (0..=3, what the eviction policy reads) `heat` accepts.
    pub(super) fn scan(&self, now: u32, heat: &impl Fn(u8) -> bool, f: &mut impl FnMut(&[u8], &[u8], u32, u32, u64)) {
        for seg in self.segs.iter().flatten() {
            let mut off = 0;
            while off < seg.used {
                let r = seg.item(off);
                off += r.size();
                if !r.is_dead() && heat(r.freq()) && self.liveness_of(r, now) == Liveness::Live {
                    let value = r.value();
                    match value.as_slice() {
                        Some(v) => f(r.key(), v, r.flags(), r.exptime(), r.cas()),
                        None => f(r.key(), &value.to_vec(), r.flags(), r.exptime(), r.cas()),
                    }
                }
            }
        }
    }

    /// Removes every item whose key fails `keep` (keys a ring change took away from
    /// this node, or all of them for `flush_all`). Returns how many it removed.
    pub(super) fn retain_keys(&mut self, keep: &mut impl FnMut(&[u8]) -> bool, now: u32) -> usize {
        let mut removed = 0;
        for id in 0..self.segs.len() {
            let mut off = 0;
            // Re-read the segment every step: a removal may reclaim it (or rewind it).
            while let Some(seg) = self.segs[id].as_ref().filter(|s| off < s.used) {
                let r = seg.item(off);
                let at = off;
                off += r.size();
                if !r.is_dead() && !keep(r.key()) && self.remove(loc(id as u32, at), now) {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Checks the invariants in the module doc; for tests.
    #[cfg(test)]
    pub(super) fn check(&self) {
        let mut live = 0;
        let mut live_bytes = 0;
        let mut allocated: usize = self
            .pool
            .iter()
            .chain(self.tails.iter().flatten())
            .map(|b| b.len())
            .sum::<usize>()
            + self.lent;
        assert_eq!(
            self.tail_bytes,
            self.tails.iter().flatten().map(|b| b.len()).sum::<usize>()
        );
        assert!(self.pool.iter().all(|b| b.len() == self.seg_size));
        for (class, tails) in self.tails.iter().enumerate() {
            assert!(tails
                .iter()
                .all(|b| b.len() == (class + 1) * TAIL_ROUND && b.len() < self.seg_size));
        }
        let mut per_queue = [0, 0];
        let mut per_queue_bytes = [0, 0];
        for (id, seg) in self.segs.iter().enumerate() {
            let Some(seg) = seg else {
                assert!(self.free_ids.contains(&(id as u32)));
                continue;
            };
            allocated += seg.buf.allocated();
            match &seg.buf {
                Buf::Heap(b) => assert!(!seg.own && seg.used <= b.len()),
                Buf::Chunks(c) => {
                    assert!(seg.own && c.len() >= 2);
                    assert!(seg.buf.allocated() >= seg.used);
                    let r = seg.item(0);
                    assert!(
                        r.size() - r.value_len() <= c[0].len(),
                        "header and key in the first chunk"
                    );
                    assert!(
                        c[..c.len() - 1].iter().all(|b| b.len() == c[0].len()),
                        "only the tail is shorter"
                    );
                }
            }
            let q = seg.queue as usize;
            if seg.sealed {
                assert_eq!(self.fifo[q].iter().filter(|&&s| s as usize == id).count(), 1);
                assert!(seg.live > 0, "an empty sealed segment is reclaimed");
            } else {
                assert_eq!(self.open[q], Some(id as u32));
            }
            let (mut n, mut off, mut seg_bytes) = (0, 0, 0);
            while off < seg.used {
                let r = seg.item(off);
                if !r.is_dead() {
                    n += 1;
                    live_bytes += r.size();
                    seg_bytes += r.size();
                    assert_eq!(self.find(hash_key(r.key()), r.key()), Some(loc(id as u32, off)));
                }
                off += r.size();
            }
            assert_eq!(off, seg.used);
            assert_eq!(n, seg.live);
            live += n as usize;
            per_queue[q] += n as usize;
            per_queue_bytes[q] += seg_bytes;
        }
        assert_eq!(live, self.items);
        assert_eq!(per_queue, self.queue_items);
        assert_eq!(per_queue_bytes, self.queue_bytes);
        assert_eq!(self.table.len(), self.items);
        self.table.check(|x| loc_hash(&self.segs, x));
        assert_eq!(live_bytes, self.live_bytes);
        assert_eq!(allocated, self.allocated);
        assert!(self.allocated + self.index_bytes() <= self.limit);
    }
}

/// Reads per pass an item of `size` bytes needs to stay in main: its size in units
/// of `unit` ([`Shard::size_unit`]), rounded, at least 1.
fn reads_for(size: usize, unit: usize) -> u16 {
    ((size + unit / 2) / unit.max(1)).clamp(1, usize::from(u16::MAX)) as u16
}

/// `buf` cut to its first `len` bytes in place (malloc shrinks the block), the pages
/// past them handed back to the kernel first.
fn cut(buf: Box<[u8]>, len: usize) -> Box<[u8]> {
    let mut v = buf.into_vec();
    crate::sys::discard_pages(&mut v[len..]);
    v.truncate(len);
    v.into_boxed_slice()
}

/// Frees a segment buffer, first handing its whole pages back to the kernel.
///
/// A segment-size buffer comes from the malloc heap, and a freed heap block stays
/// resident until malloc reuses it.
/// Buffers are pooled, so this only happens when the budget shrinks (or the index
/// or ghost grows into it): without it, the memory given back would stay in RSS.
fn free_buffer(mut buf: Box<[u8]>) {
    crate::sys::discard_pages(&mut buf);
    drop(buf);
}
