//! Meta commands: `mg`, `ms`, `md`, `ma`, `mn`, `me`, as memcached 1.6.18 speaks them.
//!
//! A meta command is `<cmd> <key> [<datalen>] <flag>*`; each flag is one token whose
//! first byte names it and whose remaining bytes, for some flags, are its argument
//! (`T30`, `Oabc`, `MA`). memcached answers with a two-letter code (`HD`, `VA`, `EN`,
//! `NS`, `EX`, `NF`, `MN`, `ME`) followed by the return flags the request asked for,
//! **in the order the request named them**, and some flags take effect in that order
//! too (`mg k t T30` reports the TTL before `T` changes it). A request therefore keeps
//! its raw flag tokens ([`MetaRequest::tokens`]) next to the decoded values
//! ([`MetaFlags`]) so that execution can replay them in order without allocating.
//!
//! # Layout
//! - this module: the typed request ([`MetaRequest`], [`MetaCommand`], [`MetaFlags`]);
//! - [`parse`]: [`parse_meta`], the request parser (called by [`crate::text::parse_request`]);
//! - [`base64`]: memcached's lenient base64 decoder and the encoder for `k` in `b` mode;
//! - [`encode`]: response encoders for the server;
//! - [`response`]: [`parse_meta_response`], the incremental response parser for clients.
//!
//! # Flags beyond 1.6.18
//! memcached 1.6.18 rejects `E` (explicit new CAS), `x` (`md`: drop the value, keep the
//! item) and treats `N` on `ms` as a no-op; later releases accept them. ringcache
//! accepts them with the later releases' meaning, so clients written for newer
//! memcached work; every other flag and reply matches 1.6.18 byte for byte.

pub mod base64;
pub mod encode;
pub mod parse;
pub mod response;

use bytes::Bytes;

pub use parse::parse_meta;
pub use response::{parse_meta_response, MetaResponse, MetaResponseError, MetaStatus};

/// Which meta command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaCommand {
    /// `mg`: meta get.
    Get,
    /// `ms`: meta set, with a data block.
    Set,
    /// `md`: meta delete.
    Delete,
    /// `ma`: meta arithmetic.
    Arithmetic,
    /// `mn`: no-op, answered `MN` (marks the end of a quiet pipeline).
    NoOp,
    /// `me`: debug dump of one item.
    Debug,
}

impl MetaCommand {
    /// The command for a command word, if it is a meta command.
    pub fn from_word(word: &[u8]) -> Option<MetaCommand> {
        match word {
            b"mg" => Some(MetaCommand::Get),
            b"ms" => Some(MetaCommand::Set),
            b"md" => Some(MetaCommand::Delete),
            b"ma" => Some(MetaCommand::Arithmetic),
            b"mn" => Some(MetaCommand::NoOp),
            b"me" => Some(MetaCommand::Debug),
            _ => None,
        }
    }
}

/// The `M` (mode) flag of `ms` and `ma`, validated for its command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaMode {
    /// `ms ME`: store only if absent.
    Add,
    /// `ms MA`.
    Append,
    /// `ms MP`.
    Prepend,
    /// `ms MR`: store only if present.
    Replace,
    /// `ms MS` (the default).
    Set,
    /// `ma MI`, `ma M+` (the default).
    Incr,
    /// `ma MD`, `ma M-`.
    Decr,
}

/// The decoded flags of one request: which letters are present, plus the arguments
/// of the flags that take one. Fixed size, no heap.
///
/// TTL-like arguments (`T`, `N`, `R`) are kept as sent, after memcached's conversion
/// to a 32-bit signed number (`strtol` truncated to `int32_t`): 0 never expires, up to
/// 30 days is relative, larger is a Unix time, negative is already expired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaFlags {
    /// One bit per flag letter: `A`..=`Z` are bits 0..=25, `a`..=`z` bits 26..=51.
    present: u64,
    /// `T`: new TTL.
    pub ttl: Option<i32>,
    /// `N`: vivify on miss with this TTL.
    pub vivify: Option<i32>,
    /// `R`: win the recache race when the remaining TTL is below this.
    pub recache: Option<i32>,
    /// `F`: client flags to store.
    pub client_flags: Option<u32>,
    /// `C`: compare against the item's CAS.
    pub compare_cas: Option<u64>,
    /// `E`: use this as the item's new CAS (later memcached releases).
    pub new_cas: Option<u64>,
    /// `D`: the delta of `ma` (default 1).
    pub delta: Option<u64>,
    /// `J`: the initial value of an item `ma` creates (default 0).
    pub initial: Option<u64>,
    /// `M`: the mode of `ms`/`ma`.
    pub mode: Option<MetaMode>,
    /// `O`: the whole opaque token, `O` included, echoed back verbatim.
    pub opaque: Option<Bytes>,
}

fn letter_bit(letter: u8) -> Option<u64> {
    match letter {
        b'A'..=b'Z' => Some(1 << (letter - b'A')),
        b'a'..=b'z' => Some(1 << (26 + letter - b'a')),
        _ => None,
    }
}

impl MetaFlags {
    /// Whether the request carried the flag `letter` (`b'v'`, `b'q'`, `b'T'`, ...).
    pub fn has(&self, letter: u8) -> bool {
        letter_bit(letter).is_some_and(|bit| self.present & bit != 0)
    }

    /// Records that `letter` is present. Letters outside `A-Za-z` are never flags.
    pub fn set(&mut self, letter: u8) {
        if let Some(bit) = letter_bit(letter) {
            self.present |= bit;
        }
    }

    /// `q`: quiet mode (suppress the command's nominal reply).
    pub fn quiet(&self) -> bool {
        self.has(b'q')
    }

    /// `b`: the key was sent base64 encoded; `k` returns it encoded.
    pub fn base64_key(&self) -> bool {
        self.has(b'b')
    }
}

/// One parsed meta request. `key`, `tokens`, `value` and `opaque` are slices of the
/// connection's read buffer (a base64 key is decoded in place there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRequest {
    /// Which meta command (`mg`, `ms`, `md`, `ma`, `mn`, `me`).
    pub command: MetaCommand,
    /// The key, decoded when `b` was given; empty for `mn`.
    pub key: Bytes,
    /// The flags that change what the command does, parsed.
    pub flags: MetaFlags,
    /// The raw flag tokens (after the key, and after the data length of `ms`),
    /// separated by one or more spaces, in request order.
    pub tokens: Bytes,
    /// `ms`: the data block without its `\r\n`; empty otherwise.
    pub value: Bytes,
}

impl MetaRequest {
    /// The flag letters in request order (first byte of each token).
    pub fn flag_order(&self) -> impl Iterator<Item = u8> + '_ {
        self.tokens.split(|&b| b == b' ').filter_map(|t| t.first().copied())
    }
}
