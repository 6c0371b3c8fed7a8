//! Which eviction policy a store runs.
//!
//! Both run over segments (see `shard.rs`): items are appended to the open segment
//! of a FIFO queue, and eviction takes the queue's oldest segment, copying forward
//! the items that earned another round and dropping the rest. A read never moves
//! anything: it bumps a 2-bit frequency in the item's header.

/// Which eviction policy a store runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// S3-FIFO (Yang et al., SOSP 2023): a small probationary FIFO (5% of the
    /// live bytes by default, [`S3Tuning`]) that every new key enters, a main FIFO with
    /// reinsertion, and a ghost of recently evicted one-hit keys; a key found in the
    /// ghost enters main directly. Size-aware by default
    /// ([`S3Tuning::size_aware_pct`]): with mixed sizes an item is worth its reads per
    /// byte; with equal sizes the rules are the paper's.
    S3Fifo,
    /// FIFO with reinsertion (CLOCK): one queue; an item with a frequency left is
    /// copied forward with its frequency decremented, one without is evicted.
    Clock,
}

impl PolicyKind {
    /// Every policy, in the order the eviction benchmark prints them.
    pub const ALL: [PolicyKind; 2] = [PolicyKind::S3Fifo, PolicyKind::Clock];

    /// The name `stats settings` reports.
    pub const fn name(self) -> &'static str {
        match self {
            PolicyKind::S3Fifo => "s3fifo",
            PolicyKind::Clock => "clock",
        }
    }
}

/// S3-FIFO's knobs. The store runs [`S3Tuning::DEFAULT`]; `benches/eviction.rs`
/// measures the variants (see `docs/bench/eviction.md` for the table that chose it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Tuning {
    /// The small queue's share of the live items' bytes, in percent: small is evicted
    /// from while it holds at least this share (bytes, as in the paper, so one large
    /// new item counts for its size). 5 measured a little better than the paper's 10
    /// on every trace of the eviction bench (equal-size values, where bytes and items
    /// agree).
    pub small_percent: u8,
    /// The most reads an item's frequency counts (1 to 3; the header has 2 bits). An
    /// item leaving main with frequency f > 0 is reinserted with f - 1.
    pub max_freq: u8,
    /// Reads in small an item needs to be promoted to main (else it is evicted).
    pub promote_at: u8,
    /// Whether a key the ghost remembers enters main directly (else small, as any
    /// new key; the ghost is then not kept at all).
    pub ghost_admit: bool,
    /// The ghost remembers up to this many times main's item count of evicted keys.
    pub ghost_factor: u8,
    /// Size-aware S3-FIFO (0: off, the paper's size-blind rules). The yardstick is
    /// the mean size of the items stored lately times this percentage: an item r
    /// times that size needs r reads (rounded, at least 1) since it last passed to
    /// stay in main, an unread one smaller than it stays with probability 1 - r (at
    /// most [`S3Tuning::unread_keep_max_pct`]), and
    /// the ghost admits to main only a key whose item needs one read. So an item's
    /// worth is its reads per byte, what maximises hits when sizes differ; with equal
    /// sizes (r = 1) every rule is the size-blind one. 100 by default: on the mixed
    /// sizes of `scripts/bench.sh`'s scenario 14 it cut misses by a fifth and held
    /// half again as many items as size-blind (`docs/bench/eviction.md`).
    pub size_aware_pct: u16,
    /// The most an unread item of main may be kept with, in percent (size-aware
    /// only). Each kept item is copied forward, under the shard's lock: 100 kept
    /// the most small items and hit most often on scenario 14's mixed sizes, but
    /// cost about 4% more server CPU per request and a tenth more p99 latency than
    /// the size-blind rule; 70 keeps most of the hits at about the size-blind
    /// rule's cost (`docs/bench/eviction.md`).
    pub unread_keep_max_pct: u8,
}

impl S3Tuning {
    /// What [`PolicyKind::S3Fifo`] runs.
    pub const DEFAULT: S3Tuning = S3Tuning {
        small_percent: 5,
        max_freq: 3,
        promote_at: 1,
        ghost_admit: true,
        ghost_factor: 1,
        size_aware_pct: 100,
        unread_keep_max_pct: 70,
    };

    /// The frequency the policy sees for an item whose header records `freq`.
    pub(super) fn freq(self, freq: u8) -> u8 {
        freq.min(self.max_freq.max(1))
    }
}

impl Default for S3Tuning {
    fn default() -> S3Tuning {
        S3Tuning::DEFAULT
    }
}
