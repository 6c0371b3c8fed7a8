//! Which eviction policy a store runs.
//!
//! Both run over segments (see `shard.rs`): items are appended to the open segment
//! of a FIFO queue, and eviction takes the queue's oldest segment, copying forward
//! the items that earned another round and dropping the rest. A read never moves
//! anything: it bumps a 2-bit frequency in the item's header.

/// Which eviction policy a store runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// S3-FIFO (Yang et al., SOSP 2023): a small probationary FIFO (about 10% of the
    /// items) that every new key enters, a main FIFO with reinsertion, and a ghost of
    /// recently evicted one-hit keys; a key found in the ghost enters main directly.
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
