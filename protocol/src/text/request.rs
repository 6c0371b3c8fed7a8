//! Typed memcached requests, as produced by [`crate::text::parse_request`].
//!
//! Every key here has been validated (1..=250 bytes, no control characters or
//! spaces) and every value has exactly the length its command line declared.

use bytes::Bytes;

use crate::text::meta::MetaRequest;
use crate::text::peer::PeerRequest;

pub use crate::limits::{Limits, KEY_MAX_LEN};

/// One request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `get`, `gets`, `gat`, `gats`.
    Get(GetRequest),
    /// `set`, `add`, `replace`, `append`, `prepend`, `cas`.
    Store(StoreRequest),
    /// `delete <key> [0] [noreply]`.
    Delete {
        /// The key.
        key: Bytes,
        /// Send no reply.
        noreply: bool,
    },
    /// `incr|decr <key> <delta> [noreply]`.
    Arith {
        /// Which of the two.
        op: ArithOp,
        /// The key.
        key: Bytes,
        /// The amount to add or subtract.
        delta: u64,
        /// Send no reply.
        noreply: bool,
    },
    /// `touch <key> <exptime> [noreply]`.
    Touch {
        /// The key.
        key: Bytes,
        /// The new expiry, as sent (see [`StoreRequest::exptime`]).
        exptime: i64,
        /// Send no reply.
        noreply: bool,
    },
    /// `flush_all [delay] [noreply]`; `delay` is 0 without the argument; memcached
    /// treats a delay <= 0 as "now".
    FlushAll {
        /// When the flush takes effect, as sent: 0 or less is now.
        delay: i64,
        /// Send no reply.
        noreply: bool,
    },
    /// `version`.
    Version,
    /// `verbosity <level> [noreply]`.
    Verbosity {
        /// Send no reply.
        noreply: bool,
    },
    /// `stats [group]`; `group` is empty for the general statistics. Only the first
    /// argument is kept: memcached ignores the others for every group ringcache serves
    /// (`stats items junk` is `stats items`), except `stats cachedump <class> <limit>`,
    /// whose group is `cachedump <class> <limit>` as sent (its arguments have passed
    /// memcached's checks).
    Stats {
        /// The group asked for (`items`, `slabs`, ...); empty for the general one.
        group: Bytes,
    },
    /// `cache_memlimit <MiB> [noreply]`: change the memory limit at run time. `mib` has
    /// passed memcached's checks (8 to 1 000 000 000).
    CacheMemlimit {
        /// The new limit in MiB.
        mib: u32,
        /// Send no reply.
        noreply: bool,
    },
    /// `quit`: close the connection.
    Quit,
    /// A meta command (`mg`, `ms`, `md`, `ma`, `mn`, `me`).
    Meta(MetaRequest),
    /// `topology`: the cluster's members and ring parameters (see `docs/PROTOCOL.md`).
    Topology,
    /// A command between nodes (`rc_peer`, `rc_set`, `rc_del`).
    Peer(PeerRequest),
}

/// Which of the retrieval commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetKind {
    /// `get <key>*`.
    Get,
    /// `gets <key>*`: with CAS uniques.
    Gets,
    /// Get and touch: the items' new expiry.
    Gat {
        /// As sent: 0 never, up to 30 days relative, larger absolute Unix time, negative expired.
        exptime: i64,
    },
    /// Get and touch, with CAS.
    Gats {
        /// As for `Gat`.
        exptime: i64,
    },
}

impl GetKind {
    /// Whether responses carry the CAS unique (`gets`, `gats`).
    pub fn with_cas(self) -> bool {
        matches!(self, GetKind::Gets | GetKind::Gats { .. })
    }
}

/// A retrieval request with one or more keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRequest {
    /// Which retrieval command, with its expiry for `gat`/`gats`.
    pub kind: GetKind,
    /// The keys in request order, separated by single or repeated spaces.
    pub keys: Keys,
}

/// The keys of a multi-key request, kept as one slice of the read buffer and split
/// lazily so that a request with many keys costs no allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The validated keys, separated by one or more spaces; no leading or trailing space.
    raw: Bytes,
}

impl Keys {
    /// Wraps already validated, space separated keys.
    pub fn new(raw: Bytes) -> Keys {
        Keys { raw }
    }

    /// The keys in request order.
    pub fn iter(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.raw
            .split(|&b| b == b' ')
            .filter(|k| !k.is_empty())
            .map(|k| self.raw.slice_ref(k))
    }

    /// The raw, space separated key list.
    pub fn as_bytes(&self) -> &Bytes {
        &self.raw
    }
}

/// Which storage command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// Store unconditionally.
    Set,
    /// Store only if the key is absent.
    Add,
    /// Store only if the key is present.
    Replace,
    /// Add the data after the present item's.
    Append,
    /// Add the data before the present item's.
    Prepend,
    /// Store only if the item's CAS unique still equals this one.
    Cas(u64),
}

/// A storage request with its data block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRequest {
    /// Which storage command.
    pub mode: StoreMode,
    /// The key.
    pub key: Bytes,
    /// The client flags, stored and returned untouched.
    pub flags: u32,
    /// As sent (truncated to 32 bits, as memcached does): 0 never, up to 30 days
    /// relative, larger absolute Unix time, negative expired.
    pub exptime: i64,
    /// The data block without its trailing `\r\n`.
    pub value: Bytes,
    /// Send no reply.
    pub noreply: bool,
}

/// `incr` or `decr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// Add the delta.
    Incr,
    /// Subtract the delta (stopping at 0).
    Decr,
}
