//! Every bound the wire format puts on what a peer may send, in one place.
//!
//! A parser that reads from a socket must bound how much it buffers before it can
//! decide, or a broken or hostile peer makes it buffer without limit. The bounds are
//! defined here once and used by every reader in this crate (requests, classic and
//! meta replies, framing, the peer protocol) and by the client, server, bench and
//! tests, so two readers of the same bytes never disagree on where a line is too long.
//!
//! # Requests (what a server accepts; memcached's own bounds)
//! - [`KEY_MAX_LEN`]: 250 bytes.
//! - [`LINE_WITHOUT_NEWLINE_MAX`], [`LINE_MAX`], [`GET_LINE_MAX`]: command lines.
//! - [`MAX_OPAQUE_LEN`]: a meta command's `O` token.
//! - [`Limits`]: the bounds taken from the server's flags (`-I`).
//!
//! # Replies (what a client or a relaying node accepts)
//! - [`MAX_REPLY_LINE`]: one reply line, without its `\r\n`.
//! - [`MAX_REPLY_VALUE`]: one data block (`VALUE` or `VA`), without its `\r\n`.
//! - [`REPLY_TAG_MAX`], [`TAGGED_REPLY_MAX`]: a peer's `RI <id> <len>` line and the
//!   reply it announces.

/// The longest key memcached accepts.
pub const KEY_MAX_LEN: usize = 250;

/// More buffered bytes than this without a `\n` close the connection (except for
/// `get `/`gets ` lines), as in memcached.
pub const LINE_WITHOUT_NEWLINE_MAX: usize = 2048;
/// The longest complete line (with its `\n`) memcached can process: its read buffer.
pub const LINE_MAX: usize = 16 * 1024;
/// The longest `get `/`gets ` line (with its `\n`) accepted; memcached has no bound.
/// 1 MiB, the default `-I`: the read buffer already grows that far for a value, and it
/// holds about 35 000 keys of 30 bytes.
pub const GET_LINE_MAX: usize = 1024 * 1024;

/// memcached's `MFLAG_MAX_OPAQUE_LENGTH`: the longest opaque token, `O` included.
pub const MAX_OPAQUE_LEN: usize = 32;

/// The longest reply line accepted, without its `\r\n`: a `VALUE` header with a
/// 250-byte key, a meta reply with the key base64 encoded (336 bytes), an opaque token
/// and every other return flag fit many times over. A reader that has buffered
/// `MAX_REPLY_LINE + 2` bytes without finding the line's end gives up.
pub const MAX_REPLY_LINE: usize = 8 * 1024;

/// The largest data block accepted in a reply (`VALUE` or `VA`): memcached's own
/// ceiling for `-I`, 1 GiB. A client that knows the server's `-I` bounds it further
/// ([`Limits::max_item_size`]).
pub const MAX_REPLY_VALUE: usize = 1 << 30;

/// Longest `RI <id> <len>\r\n` line a peer sends before a tagged reply.
pub const REPLY_TAG_MAX: usize = 3 + 20 + 1 + 20 + 2;

/// Longest reply a peer's tag may announce (a multi-get forwarded whole can be large,
/// but nothing a node sends comes near this).
pub const TAGGED_REPLY_MAX: u64 = 1 << 34;

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
