//! Typed memcached requests, as produced by [`crate::text::parse_request`].
//!
//! Every key here has been validated (1..=250 bytes, no control characters or
//! spaces) and every value has exactly the length its command line declared.

use bytes::Bytes;

use crate::text::meta::MetaRequest;
use crate::text::peer::PeerRequest;

/// The longest key memcached accepts.
pub const KEY_MAX_LEN: usize = 250;

/// Limits the parser enforces, taken from the server's flags.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `-I`: the largest value accepted; larger ones are swallowed and answered with
    /// `SERVER_ERROR object too large for cache`.
    pub max_item_size: usize,
}

impl Limits {
    /// What memcached 1.6 counts against `-I` besides the key and the value: the item
    /// header (48 bytes on 64-bit), the key's NUL, the data block's `\r\n` and the CAS
    /// unique (8). Nonzero flags add 4 more ([`Limits::FLAGS_OVERHEAD`]).
    pub const ITEM_OVERHEAD: usize = 48 + 1 + 2 + 8;
    /// Extra bytes memcached stores for nonzero client flags.
    pub const FLAGS_OVERHEAD: usize = 4;

    /// Whether memcached (`-I` = `max_item_size`) would store an item with this key
    /// length, flags and value length: `59 + key + value (+ 4 if flags != 0) <= -I`.
    /// With `-I 1m`, a 1-byte key and flags 0 allow values of up to 1 048 516 bytes
    /// (verified against memcached 1.6.18, also for 250-byte keys, nonzero flags and
    /// `-I 2m`). A larger value is refused with `SERVER_ERROR object too large for
    /// cache`; `append`/`prepend` whose result would not fit answer `NOT_STORED`.
    pub fn item_fits(&self, key_len: usize, flags: u32, value_len: usize) -> bool {
        let flags = if flags != 0 { Self::FLAGS_OVERHEAD } else { 0 };
        value_len
            .saturating_add(key_len)
            .saturating_add(Self::ITEM_OVERHEAD + flags)
            <= self.max_item_size
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_item_size: 1024 * 1024,
        }
    }
}

/// One request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `get`, `gets`, `gat`, `gats`.
    Get(GetRequest),
    /// `set`, `add`, `replace`, `append`, `prepend`, `cas`.
    Store(StoreRequest),
    /// `delete <key> [0] [noreply]`.
    Delete { key: Bytes, noreply: bool },
    /// `incr|decr <key> <delta> [noreply]`.
    Arith {
        op: ArithOp,
        key: Bytes,
        delta: u64,
        noreply: bool,
    },
    /// `touch <key> <exptime> [noreply]`.
    Touch { key: Bytes, exptime: i64, noreply: bool },
    /// `flush_all [delay] [noreply]`; `delay` is 0 without the argument; memcached
    /// treats a delay <= 0 as "now".
    FlushAll { delay: i64, noreply: bool },
    /// `version`.
    Version,
    /// `verbosity <level> [noreply]`.
    Verbosity { noreply: bool },
    /// `stats [group]`; `group` is empty for the general statistics. Only the first
    /// argument is kept: memcached ignores the others for every group ringcache serves
    /// (`stats items junk` is `stats items`), except `stats cachedump <class> <limit>`,
    /// whose group is `cachedump <class> <limit>` as sent (its arguments have passed
    /// memcached's checks).
    Stats { group: Bytes },
    /// `cache_memlimit <MiB> [noreply]`: change the memory limit at run time. `mib` has
    /// passed memcached's checks (8 to 1 000 000 000).
    CacheMemlimit { mib: u32, noreply: bool },
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
    Get,
    Gets,
    /// Get and touch: the items' new expiry.
    Gat {
        exptime: i64,
    },
    /// Get and touch, with CAS.
    Gats {
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
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// Store only if the item's CAS unique still equals this one.
    Cas(u64),
}

/// A storage request with its data block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRequest {
    pub mode: StoreMode,
    pub key: Bytes,
    pub flags: u32,
    /// As sent (truncated to 32 bits, as memcached does): 0 never, up to 30 days
    /// relative, larger absolute Unix time, negative expired.
    pub exptime: i64,
    /// The data block without its trailing `\r\n`.
    pub value: Bytes,
    pub noreply: bool,
}

/// `incr` or `decr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Incr,
    Decr,
}
