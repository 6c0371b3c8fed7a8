//! `flush_all` as memcached 1.6 does it, as a rule each shard applies lazily.
//!
//! memcached never walks the cache on `flush_all`: it records a point
//! (`settings.oldest_live`) and treats any item last touched at or before it as
//! gone when it next meets it (`item_is_flushed`), reclaiming the memory then or in
//! its LRU crawler. What a client observes, checked against memcached 1.6.18:
//!
//! - `flush_all` (or a delay ≤ 0): every item stored before the command is gone at
//!   once; items stored after it, even within the same second, survive. memcached
//!   gets the same-second precision from CAS uniques; the store removes the items
//!   outright instead (`Store::flush_all`), because items applied later from a peer
//!   carry that peer's CAS uniques and a local CAS floor would hide them. The CAS
//!   floor below remains for callers of the rule itself.
//! - `flush_all N` (N > 0, relative like an exptime, or an absolute Unix time): with
//!   `deadline = now + N`, memcached sets `oldest_live = deadline - 1` and, from the
//!   moment the clock reaches `oldest_live`, every item whose last access time is at
//!   or before it is gone. So the flush takes effect one second before the deadline,
//!   and `flush_all 1` acts at once and also hides items stored later in that same
//!   second (memcached 1.6.18 answers `END` to a `get` of a key set right after
//!   `flush_all 1`). We do the same.
//! - A later `flush_all` replaces a pending delayed one (memcached keeps one
//!   `oldest_live`). Unlike memcached, an immediate flush already in force is never
//!   undone by a later delayed one: memcached would briefly resurrect items its
//!   crawler had not reclaimed yet; we keep them gone (a miss is always allowed, a
//!   stale hit is not).
//!
//! Each shard keeps its own copy of the rule (set under its lock by `flush_all`), so
//! checking it costs no shared-memory traffic on the read path.

/// The flush state of one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct FlushRule {
    /// Items with a non-zero CAS unique at or below this are flushed (0 = none).
    cas_floor: u64,
    /// Items last accessed at or before this Unix time are flushed.
    time_floor: Option<u32>,
    /// A delayed flush: becomes `time_floor` once the clock reaches it.
    pending: Option<u32>,
}

impl FlushRule {
    /// Records a `flush_all` with `delay` at `now`; `cas_now` is the last CAS unique
    /// handed out.
    pub(super) fn flush(&mut self, now: u32, delay: i64, cas_now: u64) {
        if delay <= 0 {
            self.cas_floor = self.cas_floor.max(cas_now);
            self.pending = None;
        } else {
            let deadline = super::absolute_expiry(delay, now);
            self.pending = Some(deadline.saturating_sub(1));
        }
    }

    /// Drops a pending delayed flush (an immediate flush replaces it, as in memcached).
    pub(super) fn cancel_pending(&mut self) {
        self.pending = None;
    }

    /// Applies a pending flush whose time has come. Call before [`is_flushed`].
    ///
    /// [`is_flushed`]: FlushRule::is_flushed
    pub(super) fn advance(&mut self, now: u32) {
        if let Some(at) = self.pending.filter(|&at| at <= now) {
            self.time_floor = Some(self.time_floor.map_or(at, |t| t.max(at)));
            self.pending = None;
        }
    }

    /// Whether an item with this CAS unique and last access time is flushed.
    pub(super) fn is_flushed(&self, cas: u64, last_access: u32) -> bool {
        (cas != 0 && cas <= self.cas_floor) || self.time_floor.is_some_and(|t| last_access <= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u32 = 1_700_000_000;

    #[test]
    fn immediate_flush_uses_cas() {
        let mut r = FlushRule::default();
        assert!(!r.is_flushed(1, T));
        r.flush(T, 0, 10);
        r.advance(T);
        assert!(r.is_flushed(10, T));
        assert!(r.is_flushed(3, T - 100));
        assert!(!r.is_flushed(11, T), "stored after the flush, same second");
        assert!(!r.is_flushed(0, T), "unique 0 is never flushed");
        r.flush(T, -5, 20);
        assert!(r.is_flushed(20, T));
    }

    #[test]
    fn delayed_flush_acts_one_second_before_deadline() {
        let mut r = FlushRule::default();
        r.flush(T, 10, 5);
        r.advance(T + 8);
        assert!(!r.is_flushed(5, T), "not yet");
        r.advance(T + 9);
        assert!(r.is_flushed(5, T));
        assert!(r.is_flushed(99, T + 9), "stored in the flush second");
        assert!(!r.is_flushed(99, T + 10), "stored after the flush");
    }

    #[test]
    fn delay_one_is_immediate_for_the_whole_second() {
        let mut r = FlushRule::default();
        r.flush(T, 1, 5);
        r.advance(T);
        assert!(r.is_flushed(6, T));
        assert!(!r.is_flushed(7, T + 1));
    }

    #[test]
    fn absolute_delay_and_replacement() {
        let mut r = FlushRule::default();
        r.flush(T, i64::from(T) + 100, 1);
        r.advance(T + 98);
        assert_eq!(
            r,
            FlushRule {
                pending: Some(T + 99),
                ..FlushRule::default()
            }
        );
        // A second delayed flush replaces the first.
        r.flush(T, 50, 1);
        r.advance(T + 49);
        assert!(r.is_flushed(1, T + 49));
        r.advance(T + 200);
        assert!(!r.is_flushed(1, T + 60), "the replaced deadline never fires");
    }

    #[test]
    fn immediate_flush_cancels_pending_but_later_delay_does_not_resurrect() {
        let mut r = FlushRule::default();
        r.flush(T, 100, 1);
        r.flush(T, 0, 7);
        r.advance(T + 200);
        assert!(!r.is_flushed(8, T + 150), "pending flush was cancelled");
        r.flush(T + 200, 30, 9);
        r.advance(T + 201);
        assert!(r.is_flushed(7, T), "still flushed by the earlier rule");
    }
}
