//! The incremental request parser.
//!
//! [`parse_request`] looks at the front of the connection's read buffer. It returns:
//! - `Ok(Some(request))` and removes the request's bytes from the buffer (keys and
//!   values are `Bytes` slices of them: no copy);
//! - `Ok(None)` when the buffer holds no complete request yet; the buffer is untouched
//!   (except that spaces before a meta command's name may have been dropped);
//! - `Err(ParseError)` with memcached's exact reply for a bad request; the bad line
//!   has been removed from the buffer, and the connection discards `swallow` more
//!   bytes (already buffered or still to come), as memcached does with the data block
//!   of a value that is too large, then goes on, or closes when `close` is set.
//!
//! # Fidelity
//! Every classic command is read as memcached 1.6.18's `proto_text.c` reads it, and
//! every error answer below was observed on a real memcached 1.6.18 (`-I 1m`):
//! - A line ends at the first `\n`; one `\r` before it is dropped (unless the line is
//!   just `\r`). A NUL byte ends the line early, as C's `strlen` does in memcached.
//! - Tokens are separated by one or more spaces (only spaces); leading and trailing
//!   spaces are ignored. A wrong number of tokens, an unknown command or an empty
//!   line is answered `ERROR`; the rest of the input (a data block included) is then
//!   read as commands. An unknown command that looks like an HTTP request line (its
//!   last token starts with `HTTP/`) makes memcached hang up without a word, unless the
//!   command starts with a letter memcached dispatches on (`a c d g i s t`): see
//!   [`unknown`].
//! - Numbers follow C's `strtoul`/`strtol` (see `num`): `+5`, `-0`, `5\t` are accepted;
//!   flags, exptimes and lengths are truncated to 32 bits as memcached does.
//! - When the last token of a storage, `delete`, `incr`/`decr`, `touch`, `flush_all`
//!   or `verbosity` line is `noreply`, memcached sends no error line either: such
//!   errors come back with an empty `reply` (but still swallow and unlink).
//! - A storage command whose data block does not end in `\r\n` is answered
//!   `CLIENT_ERROR bad data chunk` once its `<bytes> + 2` bytes are buffered; those
//!   bytes are consumed and whatever follows is parsed as the next command.
//! - A value too large for `-I` ([`Limits::item_fits`]) is answered
//!   `SERVER_ERROR object too large for cache` right after its line, and
//!   `<bytes> + 2` bytes are swallowed whatever they hold; for `set` (only) the key's
//!   current item must be dropped (`unlink`).
//! - Keys: memcached refuses keys over 250 bytes (`CLIENT_ERROR bad command line
//!   format`). This parser also refuses, with the same reply, keys holding a control
//!   byte (0x00-0x1f, 0x7f) — memcached itself stores those.
//!
//! # Line length policy
//! memcached reads into a 16 KiB buffer. When 2048 bytes are buffered without a `\n`
//! it closes the connection silently, unless the buffer starts (after at most 100
//! spaces) with `get ` or `gets `, whose key lists it buffers without bound. A line
//! that is complete in the buffer is processed whatever its length, but one longer
//! than 16384 bytes (with its `\n`) never fits memcached's buffer, which closes. So:
//! - no `\n` among more than [`LINE_WITHOUT_NEWLINE_MAX`] buffered bytes: silent close
//!   (the outcome depends on how the line was split into reads, as in memcached);
//! - a complete line longer than [`LINE_MAX`] bytes: silent close;
//! - `get `/`gets ` lines are exempt from both, but bounded by [`GET_LINE_MAX`]: a
//!   longer one is answered `SERVER_ERROR out of memory reading request` and the
//!   connection closes (memcached's reply when its read buffer cannot grow).
//!
//! memcached's 24-token limit per line is not observable for the classic commands
//! (a `get` key list is re-tokenized; any other command with that many tokens is an
//! `ERROR` either way) and is not modelled.

#[cfg(test)]
mod tests;

use bytes::{Buf, Bytes, BytesMut};
use memchr::memchr;

use crate::text::num;
use crate::text::request::{ArithOp, GetKind, GetRequest, Keys, Limits, Request, StoreMode, StoreRequest, KEY_MAX_LEN};

pub use crate::limits::{GET_LINE_MAX, LINE_MAX, LINE_WITHOUT_NEWLINE_MAX};
/// memcached tolerates this many spaces before `get ` when looking at a long line.
const GET_PREFIX_SPACES_MAX: usize = 100;

/// memcached's error lines, defined once in [`crate::text::response`].
pub use crate::text::response as replies;

/// memcached's slab class ids are below this (`stats cachedump` refuses larger ones).
pub const MAX_NUMBER_OF_SLAB_CLASSES: u32 = 64;
/// The smallest `cache_memlimit`, in MiB.
pub const MEMLIMIT_MIN_MIB: u32 = 8;
/// The largest `cache_memlimit`, in MiB (memcached's guard against a value in bytes).
pub const MEMLIMIT_MAX_MIB: u32 = 1_000_000_000;

/// A request memcached answers with an error line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The exact reply, with its `\r\n` (`ERROR\r\n`, `CLIENT_ERROR ...\r\n`, ...),
    /// or empty where memcached says nothing.
    pub reply: &'static [u8],
    /// Bytes after the line to discard before parsing the next request.
    pub swallow: u64,
    /// Close the connection after sending the reply (memcached hangs up).
    pub close: bool,
    /// A key whose current item the server must drop: memcached unlinks the old value
    /// of a `set` whose new value it refused (too large), so that a stale value does
    /// not outlive a write the client believes replaced it.
    pub unlink: Option<Bytes>,
}

impl ParseError {
    fn reply(reply: &'static [u8]) -> ParseError {
        ParseError {
            reply,
            swallow: 0,
            close: false,
            unlink: None,
        }
    }

    fn hang_up(reply: &'static [u8]) -> ParseError {
        ParseError {
            close: true,
            ..ParseError::reply(reply)
        }
    }
}

/// An error found on a complete line, before the buffer is touched.
struct Fail {
    reply: &'static [u8],
    swallow: u64,
    /// Byte range of the key to unlink, within the line.
    unlink: Option<(usize, usize)>,
}

/// The reply, or nothing under `noreply` (memcached's `out_string`).
#[inline]
fn quiet(noreply: bool, reply: &'static [u8]) -> Fail {
    Fail {
        reply: if noreply { b"" } else { reply },
        swallow: 0,
        unlink: None,
    }
}

#[inline]
fn fail(reply: &'static [u8]) -> Fail {
    quiet(false, reply)
}

/// What a complete line asks for, with byte ranges into the buffer; built while the
/// buffer is borrowed, carried out after.
enum Plan {
    /// A request without slices of the buffer.
    Plain(Request),
    Get {
        kind: GetKind,
        keys: (usize, usize),
    },
    Store(StoreLine),
    Delete {
        key: (usize, usize),
        noreply: bool,
    },
    Arith {
        op: ArithOp,
        key: (usize, usize),
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: (usize, usize),
        exptime: i64,
        noreply: bool,
    },
    Stats {
        group: (usize, usize),
    },
    /// A meta command whose name starts at this offset.
    Meta {
        start: usize,
    },
    /// A node-to-node command (`rc_*`) whose name starts at this offset.
    Peer {
        start: usize,
    },
    Fail(Fail),
    /// Close the connection without a reply.
    HangUp,
}

/// Parses one request from the front of `buf`; see the module documentation.
pub fn parse_request(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Request>, ParseError> {
    let Some(nl) = memchr(b'\n', buf) else {
        return incomplete_line(buf);
    };
    if nl >= LINE_MAX {
        if !starts_like_get(buf) {
            return Err(hang_up(buf, b""));
        }
        if nl >= GET_LINE_MAX {
            return Err(hang_up(buf, replies::LINE_TOO_LONG));
        }
    }
    let end = line_end(buf, nl);
    let plan = plan(&buf[..end], limits);
    carry_out(buf, plan, end, nl + 1, limits)
}

/// Where the command in the line ending at the `\n` at `nl` ends: before one `\r`
/// (unless the line is just `\r`), or at the first NUL, as C's `strlen` sees it.
fn line_end(buf: &[u8], nl: usize) -> usize {
    let end = if nl > 1 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
    memchr(0, &buf[..end]).unwrap_or(end)
}

/// A storage command's line (`set`, `add`, ...), read and valid: everything but its
/// data block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLine {
    /// Which storage command.
    pub mode: StoreMode,
    /// The key's place in the buffer.
    pub key: (usize, usize),
    /// The client flags.
    pub flags: u32,
    /// The exptime as sent.
    pub exptime: i64,
    /// Bytes of the data block, not counting its `\r\n`.
    pub len: usize,
    /// Whether the line ends in `noreply`.
    pub noreply: bool,
}

impl StoreLine {
    /// The request once the data block `value` and the two bytes after it (`end`)
    /// are read, given the key (`buf[key.0..key.1]` as it was). `None` when `end` is
    /// not `\r\n`: the answer is then [`StoreLine::bad_chunk`].
    pub fn finish(&self, key: Bytes, value: Bytes, end: [u8; 2]) -> Option<StoreRequest> {
        (end == *b"\r\n").then(|| StoreRequest {
            mode: self.mode,
            key,
            flags: self.flags,
            exptime: self.exptime,
            value,
            noreply: self.noreply,
        })
    }

    /// The error for a data block not followed by `\r\n` (nothing to swallow: the
    /// block and the two bytes were read).
    pub fn bad_chunk(&self) -> ParseError {
        ParseError::reply(if self.noreply { b"" } else { replies::BAD_CHUNK })
    }
}

/// A storage command whose line is buffered whole and valid but whose data block is
/// not: what a server needs to read the data block somewhere other than the read
/// buffer (straight into the store, as memcached reads a value into the item it
/// allocated from the line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingStore {
    /// Bytes of the command line, its `\n` included: the data block starts here.
    pub line: usize,
    /// The line, read.
    pub store: StoreLine,
}

/// The storage command at the front of `buf` when [`parse_request`] would wait for
/// its data block (`Ok(None)` with the line complete); `None` in every other case.
/// Reads the line exactly as [`parse_request`] does, and leaves `buf` as it is.
pub fn pending_store(buf: &[u8], limits: &Limits) -> Option<PendingStore> {
    let nl = memchr(b'\n', buf)?;
    if nl >= LINE_MAX {
        return None;
    }
    let next = nl + 1;
    match plan(&buf[..line_end(buf, nl)], limits) {
        Plan::Store(store) if buf.len() < next + store.len + 2 => Some(PendingStore { line: next, store }),
        _ => None,
    }
}

/// No `\n` buffered yet: wait, or give up on a line that is already too long.
#[cold]
fn incomplete_line(buf: &mut BytesMut) -> Result<Option<Request>, ParseError> {
    if buf.len() <= LINE_WITHOUT_NEWLINE_MAX {
        return Ok(None);
    }
    if !starts_like_get(buf) {
        return Err(hang_up(buf, b""));
    }
    // The line will be longer than `GET_LINE_MAX` with its `\n`.
    if buf.len() >= GET_LINE_MAX {
        return Err(hang_up(buf, replies::LINE_TOO_LONG));
    }
    Ok(None)
}

#[cold]
fn hang_up(buf: &mut BytesMut, reply: &'static [u8]) -> ParseError {
    buf.clear();
    ParseError::hang_up(reply)
}

/// memcached's test for a long line it keeps buffering: at most 100 spaces, then
/// `get ` or `gets `.
fn starts_like_get(buf: &[u8]) -> bool {
    let spaces = buf
        .iter()
        .take(GET_PREFIX_SPACES_MAX + 1)
        .take_while(|&&b| b == b' ')
        .count();
    let rest = &buf[spaces..];
    spaces <= GET_PREFIX_SPACES_MAX && (rest.starts_with(b"get ") || rest.starts_with(b"gets "))
}

/// Performs a plan: removes the consumed bytes and builds the request or error.
#[inline]
fn carry_out(
    buf: &mut BytesMut,
    plan: Plan,
    end: usize,
    next: usize,
    limits: &Limits,
) -> Result<Option<Request>, ParseError> {
    let req = match plan {
        Plan::Plain(req) => {
            buf.advance(next);
            req
        }
        Plan::Get { kind, keys } => Request::Get(GetRequest {
            kind,
            keys: Keys::new(take(buf, keys, next)),
        }),
        Plan::Store(store) => {
            let total = next + store.len + 2;
            if buf.len() < total {
                return Ok(None);
            }
            let end = [buf[total - 2], buf[total - 1]];
            let key = take(buf, store.key, next);
            let value = buf.split_to(store.len).freeze();
            buf.advance(2);
            match store.finish(key, value, end) {
                Some(req) => Request::Store(req),
                None => return Err(store.bad_chunk()),
            }
        }
        Plan::Delete { key, noreply } => Request::Delete {
            key: take(buf, key, next),
            noreply,
        },
        Plan::Arith {
            op,
            key,
            delta,
            noreply,
        } => Request::Arith {
            op,
            key: take(buf, key, next),
            delta,
            noreply,
        },
        Plan::Touch { key, exptime, noreply } => Request::Touch {
            key: take(buf, key, next),
            exptime,
            noreply,
        },
        Plan::Stats { group } => Request::Stats {
            group: take(buf, group, next),
        },
        Plan::Meta { start } => {
            if start > 0 {
                buf.advance(start);
            }
            return crate::text::meta::parse_meta(buf, end - start, next - start, limits).map(|m| m.map(Request::Meta));
        }
        Plan::Peer { start } => {
            if start > 0 {
                buf.advance(start);
            }
            return crate::text::peer::parse_peer(buf, end - start, next - start, limits).map(|p| p.map(Request::Peer));
        }
        Plan::HangUp => return Err(hang_up(buf, b"")),
        Plan::Fail(f) => {
            let unlink = match f.unlink {
                Some(key) => Some(take(buf, key, next)),
                None => {
                    buf.advance(next);
                    None
                }
            };
            return Err(ParseError {
                reply: f.reply,
                swallow: f.swallow,
                close: false,
                unlink,
            });
        }
    };
    Ok(Some(req))
}

/// Removes the first `next` bytes of `buf` and returns `range` of them: a `Bytes`
/// sharing the buffer's memory, at the cost of one reference count increment (rather
/// than freezing the whole frame and slicing it, which costs two more).
#[inline]
fn take(buf: &mut BytesMut, range: (usize, usize), next: usize) -> Bytes {
    let (s, e) = range;
    if s == e {
        buf.advance(next);
        return Bytes::new();
    }
    buf.advance(s);
    let out = buf.split_to(e - s).freeze();
    buf.advance(next - e);
    out
}

/// Reads a complete line (without its line end).
#[inline]
fn plan(line: &[u8], limits: &Limits) -> Plan {
    let len = line.len();
    let mut i = 0;
    while i < len && line[i] == b' ' {
        i += 1;
    }
    let start = i;
    while i < len && line[i] != b' ' {
        i += 1;
    }
    let cmd = &line[start..i];
    match cmd {
        b"get" => get(line, i, GetKind::Get),
        b"set" => store(line, i, StoreMode::Set, limits),
        b"gets" => get(line, i, GetKind::Gets),
        b"gat" => gat(line, i, false),
        b"gats" => gat(line, i, true),
        b"add" => store(line, i, StoreMode::Add, limits),
        b"replace" => store(line, i, StoreMode::Replace, limits),
        b"append" => store(line, i, StoreMode::Append, limits),
        b"prepend" => store(line, i, StoreMode::Prepend, limits),
        b"cas" => store(line, i, StoreMode::Cas(0), limits),
        b"delete" => delete(line, i),
        b"incr" => arith(line, i, ArithOp::Incr),
        b"decr" => arith(line, i, ArithOp::Decr),
        b"touch" => touch(line, i),
        [b'm', b'g' | b's' | b'n' | b'd' | b'a' | b'e'] => Plan::Meta { start },
        b"topology" => Plan::Plain(Request::Topology),
        b"rc_peer" | b"rc_set" | b"rc_del" | b"rc_get" | b"rc_ring" | b"rc_id" => Plan::Peer { start },
        b"flush_all" => flush_all(line, i),
        b"version" => Plan::Plain(Request::Version),
        b"verbosity" => verbosity(line, i),
        b"stats" => stats(line, i),
        b"cache_memlimit" => cache_memlimit(line, i),
        b"quit" => Plan::Plain(Request::Quit),
        // memcached 1.6.18 still answers the ancient "binary get" as `get`.
        b"bget" => get(line, i, GetKind::Get),
        b"shutdown" => Plan::Fail(fail(replies::SHUTDOWN_DISABLED)),
        _ => unknown(line, start, cmd),
    }
}

/// An unknown command: `ERROR`, or a silent hang-up for what looks like an HTTP request
/// (`GET / HTTP/1.1`), as memcached 1.6.18 does. memcached checks the last token only
/// for command words whose first letter it does not dispatch on (`a c d g i s t` answer
/// `ERROR` in their own branch), and it splits at most 23 tokens, the 23rd holding the
/// rest of the line.
fn unknown(line: &[u8], start: usize, cmd: &[u8]) -> Plan {
    if matches!(cmd.first(), None | Some(b'a' | b'c' | b'd' | b'g' | b'i' | b's' | b't')) {
        return Plan::Fail(fail(replies::ERROR));
    }
    let last = line[start..]
        .split(|&b| b == b' ')
        .filter(|t| !t.is_empty())
        .take(23)
        .last();
    if last.is_some_and(|t| t.starts_with(b"HTTP/")) {
        Plan::HangUp
    } else {
        Plan::Fail(fail(replies::ERROR))
    }
}

/// The space separated tokens after the command word: the byte ranges of the first
/// [`Args::CAP`] and their count (`CAP + 1` meaning "more").
struct Args<'a> {
    line: &'a [u8],
    r: [(usize, usize); Args::CAP],
    n: usize,
}

impl<'a> Args<'a> {
    /// More tokens than any classic command takes (`cas` takes 6).
    const CAP: usize = 7;

    #[inline]
    fn new(line: &'a [u8], mut i: usize) -> Args<'a> {
        let mut a = Args {
            line,
            r: [(0, 0); Args::CAP],
            n: 0,
        };
        let len = line.len();
        loop {
            while i < len && line[i] == b' ' {
                i += 1;
            }
            if i == len {
                return a;
            }
            if a.n == Args::CAP {
                a.n += 1;
                return a;
            }
            let s = i;
            while i < len && line[i] != b' ' {
                i += 1;
            }
            a.r[a.n] = (s, i);
            a.n += 1;
        }
    }

    #[inline]
    fn tok(&self, t: usize) -> &'a [u8] {
        let (s, e) = self.r[t];
        &self.line[s..e]
    }

    /// memcached's `set_noreply_maybe`: the last token is `noreply`.
    #[inline]
    fn noreply(&self) -> bool {
        self.n > 0 && self.tok(self.n - 1) == b"noreply"
    }
}

/// A key memcached accepts (1..=250 bytes) without control bytes.
#[inline]
fn key_ok(key: &[u8]) -> bool {
    key.len() <= KEY_MAX_LEN && key.iter().all(|&b| b > b' ' && b != 0x7f)
}

/// A space separated key list: every key 1..=250 bytes, no control bytes.
#[inline]
fn keys_ok(keys: &[u8]) -> bool {
    let mut run = 0usize;
    for &b in keys {
        if b <= b' ' {
            if b != b' ' {
                return false;
            }
            run = 0;
        } else if b == 0x7f {
            return false;
        } else {
            run += 1;
            if run > KEY_MAX_LEN {
                return false;
            }
        }
    }
    true
}

/// The key list after offset `i`, without surrounding spaces.
#[inline]
fn trim(line: &[u8], mut i: usize) -> (usize, usize) {
    let mut e = line.len();
    while i < e && line[i] == b' ' {
        i += 1;
    }
    while e > i && line[e - 1] == b' ' {
        e -= 1;
    }
    (i, e)
}

/// `get|gets|bget <key>+`.
#[inline]
fn get(line: &[u8], i: usize, kind: GetKind) -> Plan {
    let (s, e) = trim(line, i);
    if s == e {
        return Plan::Fail(fail(replies::ERROR));
    }
    if !keys_ok(&line[s..e]) {
        return Plan::Fail(fail(replies::BAD_FORMAT));
    }
    Plan::Get { kind, keys: (s, e) }
}

/// `gat|gats <exptime> <key>*`.
fn gat(line: &[u8], i: usize, cas: bool) -> Plan {
    let (s, e) = trim(line, i);
    if s == e {
        return Plan::Fail(fail(replies::ERROR));
    }
    let t = memchr(b' ', &line[s..e]).map_or(e, |x| s + x);
    let Some(exptime) = num::safe_strtol(&line[s..t]) else {
        return Plan::Fail(fail(replies::BAD_EXPTIME));
    };
    let exptime = exptime as i64;
    let keys = trim(line, t);
    if !keys_ok(&line[keys.0..keys.1]) {
        return Plan::Fail(fail(replies::BAD_FORMAT));
    }
    let kind = if cas {
        GetKind::Gats { exptime }
    } else {
        GetKind::Gat { exptime }
    };
    Plan::Get { kind, keys }
}

/// `set|add|replace|append|prepend <key> <flags> <exptime> <bytes> [noreply]` and
/// `cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]`.
#[inline]
fn store(line: &[u8], i: usize, mode: StoreMode, limits: &Limits) -> Plan {
    let a = Args::new(line, i);
    let is_cas = matches!(mode, StoreMode::Cas(_));
    let want = if is_cas { 5 } else { 4 };
    if a.n != want && a.n != want + 1 {
        return Plan::Fail(fail(replies::ERROR));
    }
    // An extra token that is not `noreply` is ignored, as in memcached.
    let noreply = a.noreply();
    let key = a.tok(0);
    if !key_ok(key) {
        return Plan::Fail(quiet(noreply, replies::BAD_FORMAT));
    }
    let (Some(flags), Some(exptime), Some(len)) = (
        num::safe_strtoul(a.tok(1)),
        num::safe_strtol(a.tok(2)),
        num::safe_strtol(a.tok(3)),
    ) else {
        return Plan::Fail(quiet(noreply, replies::BAD_FORMAT));
    };
    let mode = if is_cas {
        match num::safe_strtoull(a.tok(4)) {
            Some(unique) => StoreMode::Cas(unique),
            None => return Plan::Fail(quiet(noreply, replies::BAD_FORMAT)),
        }
    } else {
        mode
    };
    if !(0..=i32::MAX - 2).contains(&len) {
        return Plan::Fail(quiet(noreply, replies::BAD_FORMAT));
    }
    let len = len as usize;
    if !limits.item_fits(key.len(), flags, len) {
        return Plan::Fail(Fail {
            swallow: len as u64 + 2,
            unlink: (mode == StoreMode::Set).then_some(a.r[0]),
            ..quiet(noreply, replies::TOO_LARGE)
        });
    }
    Plan::Store(StoreLine {
        mode,
        key: a.r[0],
        flags,
        exptime: exptime as i64,
        len,
        noreply,
    })
}

/// `delete <key> [0] [noreply]`.
fn delete(line: &[u8], i: usize) -> Plan {
    let a = Args::new(line, i);
    if a.n < 1 || a.n > 3 {
        return Plan::Fail(fail(replies::ERROR));
    }
    let mut noreply = false;
    if a.n > 1 {
        let hold_is_zero = a.tok(1) == b"0";
        noreply = a.noreply();
        let valid = (a.n == 2 && (hold_is_zero || noreply)) || (a.n == 3 && hold_is_zero && noreply);
        if !valid {
            return Plan::Fail(quiet(noreply, replies::BAD_DELETE));
        }
    }
    if !key_ok(a.tok(0)) {
        return Plan::Fail(quiet(noreply, replies::BAD_FORMAT));
    }
    Plan::Delete { key: a.r[0], noreply }
}

/// `incr|decr <key> <delta> [noreply]`.
fn arith(line: &[u8], i: usize, op: ArithOp) -> Plan {
    let a = Args::new(line, i);
    if a.n != 2 && a.n != 3 {
        return Plan::Fail(fail(replies::ERROR));
    }
    let noreply = a.noreply();
    if !key_ok(a.tok(0)) {
        return Plan::Fail(quiet(noreply, replies::BAD_FORMAT));
    }
    let Some(delta) = num::safe_strtoull(a.tok(1)) else {
        return Plan::Fail(quiet(noreply, replies::BAD_DELTA));
    };
    Plan::Arith {
        op,
        key: a.r[0],
        delta,
        noreply,
    }
}

/// `touch <key> <exptime> [noreply]`.
fn touch(line: &[u8], i: usize) -> Plan {
    let a = Args::new(line, i);
    if a.n != 2 && a.n != 3 {
        return Plan::Fail(fail(replies::ERROR));
    }
    let noreply = a.noreply();
    if !key_ok(a.tok(0)) {
        return Plan::Fail(quiet(noreply, replies::BAD_FORMAT));
    }
    let Some(exptime) = num::safe_strtol(a.tok(1)) else {
        return Plan::Fail(quiet(noreply, replies::BAD_EXPTIME));
    };
    Plan::Touch {
        key: a.r[0],
        exptime: exptime as i64,
        noreply,
    }
}

/// `flush_all [delay] [noreply]`. A second token that is not `noreply` is ignored.
fn flush_all(line: &[u8], i: usize) -> Plan {
    let a = Args::new(line, i);
    if a.n > 2 {
        return Plan::Fail(fail(replies::ERROR));
    }
    let noreply = a.noreply();
    let mut delay = 0;
    if a.n != noreply as usize {
        match num::safe_strtol(a.tok(0)) {
            Some(d) => delay = d as i64,
            None => return Plan::Fail(quiet(noreply, replies::BAD_EXPTIME)),
        }
    }
    Plan::Plain(Request::FlushAll { delay, noreply })
}

/// `verbosity <level> [noreply]`; a second token that is not `noreply` is ignored.
fn verbosity(line: &[u8], i: usize) -> Plan {
    let a = Args::new(line, i);
    if a.n != 1 && a.n != 2 {
        return Plan::Fail(fail(replies::ERROR));
    }
    let noreply = a.noreply();
    if num::safe_strtoul(a.tok(0)).is_none() {
        return Plan::Fail(quiet(noreply, replies::BAD_FORMAT));
    }
    Plan::Plain(Request::Verbosity { noreply })
}

/// `stats [group ...]`. Only `stats cachedump <class> <limit>` has its arguments
/// checked here, as memcached 1.6.18 checks them: fewer than two is `CLIENT_ERROR bad
/// command line`, a non-number `CLIENT_ERROR bad command line format`, a class of 64 or
/// more `CLIENT_ERROR Illegal slab id` (numbers are truncated to 32 bits first, as
/// memcached's `safe_strtoul` does); further tokens are ignored.
fn stats(line: &[u8], i: usize) -> Plan {
    let a = Args::new(line, i);
    if a.n == 0 {
        return Plan::Stats { group: (0, 0) };
    }
    if a.tok(0) == b"cachedump" {
        if a.n < 3 {
            return Plan::Fail(fail(replies::BAD_COMMAND_LINE));
        }
        let (Some(class), Some(_limit)) = (num::safe_strtoul(a.tok(1)), num::safe_strtoul(a.tok(2))) else {
            return Plan::Fail(fail(replies::BAD_FORMAT));
        };
        if class >= MAX_NUMBER_OF_SLAB_CLASSES {
            return Plan::Fail(fail(replies::ILLEGAL_SLAB_ID));
        }
        // The group keeps its two arguments (`cachedump 1 10`), so it re-encodes whole.
        return Plan::Stats {
            group: (a.r[0].0, a.r[2].1),
        };
    }
    Plan::Stats { group: a.r[0] }
}

/// `cache_memlimit <MiB> [noreply]`, as memcached 1.6.18 reads it: a wrong number of
/// tokens or a non-number is `ERROR`, less than 8 MiB (after truncation to 32 bits)
/// `MEMLIMIT_TOO_SMALL ...`, more than 10^9 `MEMLIMIT_ADJUST_FAILED ...`; a second token
/// that is not `noreply` is ignored, and `noreply` silences the errors too.
fn cache_memlimit(line: &[u8], i: usize) -> Plan {
    let a = Args::new(line, i);
    if a.n != 1 && a.n != 2 {
        return Plan::Fail(fail(replies::ERROR));
    }
    let noreply = a.noreply();
    let Some(mib) = num::safe_strtoul(a.tok(0)) else {
        return Plan::Fail(quiet(noreply, replies::ERROR));
    };
    if mib < MEMLIMIT_MIN_MIB {
        return Plan::Fail(quiet(noreply, replies::MEMLIMIT_TOO_SMALL));
    }
    if mib > MEMLIMIT_MAX_MIB {
        return Plan::Fail(quiet(noreply, replies::MEMLIMIT_NOT_BYTES));
    }
    Plan::Plain(Request::CacheMemlimit { mib, noreply })
}
