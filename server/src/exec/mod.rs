//! Command semantics: what each request does to the store and what it answers.
//!
//! [`execute`] runs one parsed request against the node and appends memcached's exact
//! reply bytes to the connection's output buffer. It never blocks on I/O, so a
//! connection can run a whole pipelined batch before it writes once. (A `VALUE` of
//! [`DIRECT_VALUE`] bytes or more is the exception that writes: [`retrieve_one_to`]
//! sends it from the store without blocking, after what the buffer holds.)

pub mod meta;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ringcache_protocol::text::peer::{encode_peer_value, PeerRequest, PeerValue};
use ringcache_protocol::text::response::{self, write_number, write_value};
use ringcache_protocol::text::{ArithOp, GetKind, GetRequest, Limits, Request, StoreMode, StoreRequest};

use crate::node::Node;
use crate::stats::Counters;
use crate::storage::{absolute_expiry, Item, MissReason, StoreError, Value};

/// The first line a node sends on a connection to a peer (followed by its name):
/// requests on such a connection are executed locally and never forwarded again, so
/// nodes whose rings briefly disagree cannot bounce a request between them.
pub const PEER_HELLO: &str = "rc_peer";

/// What the connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading requests.
    Continue,
    /// `quit`: close after flushing what is buffered.
    Close,
}

/// Runs `req` and appends its reply to `out`.
pub fn execute(node: &Node, req: Request, now: u32, c: &mut Counters, out: &mut BytesMut) -> Flow {
    match req {
        Request::Get(get) => retrieve_all(node, get, now, c, out),
        Request::Store(store) => {
            let noreply = store.noreply;
            let reply = store_item(node, store, now, c);
            if !noreply {
                out.put_slice(reply);
            }
        }
        Request::Delete { key, noreply } => {
            let found = node.store.with(&key, now, |slot| {
                let found = slot.remove();
                bury_delete(node, slot);
                found
            });
            if found {
                c.delete_hits += 1;
            } else {
                c.delete_misses += 1;
            }
            if !noreply {
                out.put_slice(if found { response::DELETED } else { response::NOT_FOUND });
            }
        }
        Request::Arith {
            op,
            key,
            delta,
            noreply,
        } => {
            let mut reply = BytesMut::new();
            let out_ref: &mut BytesMut = if noreply { &mut reply } else { out };
            arith(node, op, &key, delta, now, c, out_ref);
        }
        Request::Touch { key, exptime, noreply } => {
            c.cmd_touch += 1;
            let exp = absolute_expiry(exptime, now);
            let hit = node.store.with(&key, now, |slot| match slot.get() {
                Some(item) => {
                    item.exptime = exp;
                    item.last_access = now;
                    true
                }
                None => false,
            });
            if hit {
                c.touch_hits += 1;
            } else {
                c.touch_misses += 1;
            }
            if !noreply {
                out.put_slice(if hit { response::TOUCHED } else { response::NOT_FOUND });
            }
        }
        Request::FlushAll { delay, noreply } => {
            c.cmd_flush += 1;
            node.store.flush_all(now, delay);
            if !noreply {
                out.put_slice(response::OK);
            }
        }
        Request::Version => {
            out.put_slice(b"VERSION ");
            out.put_slice(crate::VERSION.as_bytes());
            out.put_slice(b"\r\n");
        }
        Request::Verbosity { noreply } => {
            if !noreply {
                out.put_slice(response::OK);
            }
        }
        Request::Stats { group } => crate::stats_report::write(node, &group, now, out),
        Request::CacheMemlimit { mib, noreply } => {
            // Applies to this node only, as memcached's applies to one server.
            let bytes = usize::try_from(u64::from(mib) << 20).unwrap_or(usize::MAX);
            node.store.set_memory_limit(bytes, now);
            if !noreply {
                out.put_slice(response::OK);
            }
        }
        Request::Quit => return Flow::Close,
        Request::Meta(m) => meta::execute(node, m, now, c, out),
        Request::Topology => match &node.cluster {
            Some(cluster) => {
                let mut text = Vec::new();
                cluster.ring().topology().encode(&mut text);
                out.put_slice(&text);
            }
            None => out.put_slice(response::ERROR),
        },
        Request::Peer(p) => apply_peer(node, p, now, out),
    }
    Flow::Continue
}

/// Runs a command from a peer. `rc_peer` and `rc_ring` were already handled by the
/// connection (the first marks the connection, the second fences the next request);
/// here the first only answers.
fn apply_peer(node: &Node, req: PeerRequest, now: u32, out: &mut BytesMut) {
    match req {
        PeerRequest::Hello { .. } => out.put_slice(response::OK),
        // The peer connection holds the fence and the tag for the next request (see
        // `peer_connection`); neither has a reply of its own.
        PeerRequest::Ring { .. } | PeerRequest::Id { .. } => {}
        PeerRequest::Set {
            key,
            flags,
            exptime,
            cas,
            value,
        } => {
            let applied = node
                .store
                .keep_newer(&key, Item::new(value, flags, exptime, cas, now), now);
            out.put_slice(if applied {
                response::STORED
            } else {
                response::NOT_STORED
            });
        }
        PeerRequest::Get { key } => {
            let found = node.store.with(&key, now, |slot| {
                slot.get().map(|i| PeerValue {
                    value: i.value.clone(),
                    flags: i.flags,
                    cas: i.cas,
                    exptime: i.exptime,
                })
            });
            encode_peer_value(&key, found.as_ref(), out);
        }
        PeerRequest::Del { key, cas } => {
            node.store.observe_cas(cas);
            let removed = node.store.with(&key, now, |slot| {
                let removed = slot.cas().is_some_and(|mine| mine <= cas) && slot.remove();
                // Here or not, no version older than the delete may come back.
                slot.bury(cas);
                removed
            });
            out.put_slice(if removed {
                response::DELETED
            } else {
                response::NOT_FOUND
            });
        }
    }
}

/// After a client's delete of the key in `slot` (found or not), on a node whose
/// versions order across nodes: remembers the delete with a fresh CAS unique, so that
/// no older version of the key offered later (by the hand-off of a node leaving or of a
/// ring change, which may still be on its way to this new owner, or by replication or
/// read repair) is taken back. A delete that found nothing is acknowledged too
/// (`NOT_FOUND`); without this, a copy handed off a moment later would undo it.
fn bury_delete(node: &Node, slot: &mut crate::storage::Slot<'_>) {
    if node.store.orders_versions() {
        slot.bury(node.store.next_cas());
    }
}

fn retrieve_all(node: &Node, get: GetRequest, now: u32, c: &mut Counters, out: &mut BytesMut) {
    for key in get.keys.iter() {
        retrieve_one(node, get.kind, &key, now, c, out);
    }
    out.put_slice(response::END);
}

/// Looks up one key of a `get`/`gets`/`gat`/`gats` and appends its `VALUE` block on a
/// hit. The connection calls this key by key so it can flush between keys.
pub fn retrieve_one(node: &Node, kind: GetKind, key: &Bytes, now: u32, c: &mut Counters, out: &mut BytesMut) {
    let ended = retrieve_one_to(node, kind, key, now, c, out, None);
    debug_assert!(!ended, "only a direct send writes END");
}

/// Where [`retrieve_one_to`] may send a large value itself: the client's socket, and
/// whether the key is the retrieval's last (its `END` then goes in the same write).
#[derive(Clone, Copy)]
pub struct Direct<'a> {
    /// The client's socket.
    pub sock: &'a tokio::net::TcpStream,
    /// Whether this is the retrieval's last key.
    pub last: bool,
    /// Whether the reply to this key is the last the batch has to write (the
    /// retrieval's last key, and no request after it read yet): sending it now costs
    /// no system call the batch would not make anyway, so values of
    /// [`DIRECT_VALUE_LAST`] bytes or more go directly too.
    pub ends_batch: bool,
}

/// A value at least this long is sent from the store straight to the client
/// ([`retrieve_one_to`]) rather than copied into the output buffer first: past it, the
/// copy costs more than the system call the block then needs of its own.
pub const DIRECT_VALUE: usize = 64 * 1024;

/// A value at least this long whose reply ends the batch ([`Direct::ends_batch`]) is
/// sent from the store straight to the client: one `writev` of what `out` holds, the
/// value and its end, where a copy into `out` would be followed by a `write` of it
/// all. Below it the copy costs less than the vector's extra pieces.
pub const DIRECT_VALUE_LAST: usize = 4 * 1024;

/// [`retrieve_one`], and for a client connection's socket `direct`, a value of
/// [`DIRECT_VALUE`] bytes or more (or [`DIRECT_VALUE_LAST`] if its reply ends the
/// batch) goes from the store to the socket in one `writev`,
/// after what `out` holds and with its `VALUE` line, so the value is copied once (into
/// the kernel), as memcached's `sendmsg` from the item does. What the socket does not
/// take at once is left in `out`, in order, for the connection's next write.
///
/// For the retrieval's last key the write ends with the retrieval's `END` too, and
/// the return is true: the caller must not append another (one system call for a
/// one-key `get` of a large value, not two).
///
/// The write happens under the shard's lock, which holds the value in place; it never
/// blocks (a full socket takes less, or nothing). The request is counted in the node's
/// statistics before its reply can reach the client, as at the end of a batch.
#[must_use = "true means the END line is written"]
pub fn retrieve_one_to(
    node: &Node,
    kind: GetKind,
    key: &Bytes,
    now: u32,
    c: &mut Counters,
    out: &mut BytesMut,
    direct: Option<Direct<'_>>,
) -> bool {
    let touch_to = match kind {
        GetKind::Gat { exptime } | GetKind::Gats { exptime } => Some(absolute_expiry(exptime, now)),
        GetKind::Get | GetKind::Gets => None,
    };
    c.cmd_get += 1;
    if touch_to.is_some() {
        c.cmd_touch += 1;
    }
    let count_hit = |c: &mut Counters| {
        if touch_to.is_some() {
            c.touch_hits += 1;
        } else {
            c.get_hits += 1;
        }
    };
    // The VALUE block is written straight from the stored bytes, under the shard lock:
    // no copy of the value on the way out but the one into the output buffer (or,
    // sent directly, into the kernel).
    let found = node.store.with(key, now, |slot| {
        let hit = slot.read(touch_to, |value, flags, cas| {
            let cas = kind.with_cas().then_some(cas);
            // Whether the hit is counted already, and whether END is written.
            let mut counted = false;
            let direct =
                direct.filter(|d| value.len() >= DIRECT_VALUE || d.ends_batch && value.len() >= DIRECT_VALUE_LAST);
            if let Some(d) = direct {
                let head = out.len();
                response::write_value_head(out, key, flags, value.len(), cas);
                count_hit(c);
                node.stats.totals.absorb(c);
                counted = true;
                let tail = if d.last {
                    response::VALUE_END_LAST
                } else {
                    response::VALUE_END
                };
                if send_direct(d.sock, out, value, tail, c) {
                    return (counted, d.last);
                }
                out.truncate(head);
            }
            // A large value: room from the thread's pooled grown buffers if any.
            crate::connection::pool::grow(out, key.len() + value.len() + 48);
            match value.as_slice() {
                Some(v) => write_value(out, key, flags, v, cas),
                None => {
                    response::write_value_head(out, key, flags, value.len(), cas);
                    for piece in value.slices() {
                        out.put_slice(piece);
                    }
                    out.put_slice(response::VALUE_END);
                }
            }
            (counted, false)
        });
        (hit, slot.miss_reason())
    });
    match found {
        (Some((true, ended)), _) => return ended,
        (Some((false, _)), _) => count_hit(c),
        (None, reason) => {
            if touch_to.is_some() {
                c.touch_misses += 1;
            } else {
                c.get_misses += 1;
            }
            match reason {
                MissReason::Expired => c.get_expired += 1,
                MissReason::Flushed => c.get_flushed += 1,
                MissReason::Absent => {}
            }
        }
    }
    false
}

/// The most pieces of a value one direct send writes (a big item is one piece per
/// chunk; the kernel takes 1,024 in all): the rest goes into `out`, for the
/// connection's next write.
const MAX_PIECES: usize = 64;

/// Writes `out`, `value` (each of its pieces) and `tail` (the end of its `VALUE`
/// block, and maybe of the retrieval) to `sock` without blocking, leaving in `out`
/// what it did not take; false (nothing written) if the socket is not writable now or
/// failed (the connection's next write then sees the error).
fn send_direct(
    sock: &tokio::net::TcpStream,
    out: &mut BytesMut,
    value: Value<'_>,
    tail: &[u8],
    c: &mut Counters,
) -> bool {
    let written = {
        let mut bufs = Vec::with_capacity(MAX_PIECES + 2);
        bufs.push(std::io::IoSlice::new(out));
        bufs.extend(value.slices().take(MAX_PIECES).map(std::io::IoSlice::new));
        if value.slices().nth(MAX_PIECES).is_none() {
            bufs.push(std::io::IoSlice::new(tail));
        }
        sock.try_write_vectored(&bufs)
    };
    let Ok(n) = written else {
        return false;
    };
    if n == 0 {
        return false;
    }
    c.bytes_written += n as u64;
    // What the socket took came first from `out`, then from the value, then the tail.
    let from_out = n.min(out.len());
    if from_out == out.len() {
        out.clear();
    } else {
        out.advance(from_out);
    }
    let mut skip = n - from_out;
    crate::connection::pool::grow(out, value.len() + tail.len() - skip);
    for piece in value.slices().chain(std::iter::once(tail)) {
        if skip >= piece.len() {
            skip -= piece.len();
            continue;
        }
        out.put_slice(&piece[skip..]);
        skip = 0;
    }
    true
}

/// Executes a storage command and returns its reply line.
/// Runs a storage command whose value was read into `landing` (`req.value` is not
/// looked at; see `storage::Store::land`), and appends its reply to `out`.
pub fn execute_landed(
    node: &Node,
    req: StoreRequest,
    landing: &mut crate::storage::Landing<'_>,
    now: u32,
    c: &mut Counters,
    out: &mut BytesMut,
) -> Flow {
    let noreply = req.noreply;
    let reply = store_item_from(node, req, Some(landing), now, c);
    if !noreply {
        out.put_slice(reply);
    }
    Flow::Continue
}

fn store_item(node: &Node, req: StoreRequest, now: u32, c: &mut Counters) -> &'static [u8] {
    store_item_from(node, req, None, now, c)
}

/// [`store_item`] with the value in `landing` if there is one.
fn store_item_from(
    node: &Node,
    mut req: StoreRequest,
    mut landing: Option<&mut crate::storage::Landing<'_>>,
    now: u32,
    c: &mut Counters,
) -> &'static [u8] {
    c.cmd_set += 1;
    if matches!(req.mode, StoreMode::Append | StoreMode::Prepend) {
        // Joined with the old value anyway: no use for the chunks.
        if let Some(l) = landing.take() {
            req.value = l.to_bytes();
        }
    }
    let exptime = absolute_expiry(req.exptime, now);
    let limits = Limits {
        max_item_size: node.settings.max_item_size,
    };
    let outcome = node.store.with(&req.key, now, |slot| {
        let put = |slot: &mut crate::storage::Slot<'_>, item: Item| match landing {
            Some(l) => slot.insert_landed(item, l),
            None => slot.insert(item),
        };
        // A plain set needs nothing of the old item: skip copying it out.
        if req.mode == StoreMode::Set {
            let item = Item::new(req.value, req.flags, exptime, node.store.next_cas(), now);
            return put(slot, item).map(|()| Outcome::Stored);
        }
        let current = slot.get();
        let value = match (req.mode, current) {
            (StoreMode::Set, _) => req.value,
            (StoreMode::Add, Some(item)) => {
                // memcached bumps an existing item on a failed add.
                item.last_access = now;
                return Ok(Outcome::NotStored);
            }
            (StoreMode::Add, None) => req.value,
            (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => return Ok(Outcome::NotStored),
            (StoreMode::Cas(_), None) => return Ok(Outcome::NotFound),
            (StoreMode::Cas(token), Some(item)) => {
                if item.cas != token {
                    return Ok(Outcome::Exists);
                }
                req.value
            }
            (StoreMode::Replace, Some(_)) => req.value,
            (StoreMode::Append | StoreMode::Prepend, Some(item)) => {
                if !limits.item_fits(req.key.len(), item.flags, item.value.len() + req.value.len()) {
                    return Ok(Outcome::NotStored);
                }
                let mut joined = BytesMut::with_capacity(item.value.len() + req.value.len());
                if req.mode == StoreMode::Append {
                    joined.put_slice(&item.value);
                    joined.put_slice(&req.value);
                } else {
                    joined.put_slice(&req.value);
                    joined.put_slice(&item.value);
                }
                // Append and prepend keep the item's flags and expiry.
                let item = Item::new(joined.freeze(), item.flags, item.exptime, node.store.next_cas(), now);
                return slot.insert(item).map(|()| Outcome::Stored);
            }
        };
        let item = Item::new(value, req.flags, exptime, node.store.next_cas(), now);
        put(slot, item).map(|()| Outcome::Stored)
    });
    let outcome = outcome.unwrap_or_else(|e| match e {
        StoreError::TooLarge => {
            c.store_too_large += 1;
            Outcome::TooLarge
        }
        StoreError::OutOfMemory => {
            c.store_no_memory += 1;
            Outcome::OutOfMemory
        }
    });
    if let StoreMode::Cas(_) = req.mode {
        match outcome {
            Outcome::Stored => c.cas_hits += 1,
            Outcome::Exists => c.cas_badval += 1,
            Outcome::NotFound => c.cas_misses += 1,
            Outcome::NotStored | Outcome::TooLarge | Outcome::OutOfMemory => {}
        }
    }
    outcome.reply()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Stored,
    NotStored,
    Exists,
    NotFound,
    TooLarge,
    OutOfMemory,
}

impl Outcome {
    fn reply(self) -> &'static [u8] {
        match self {
            Outcome::Stored => response::STORED,
            Outcome::NotStored => response::NOT_STORED,
            Outcome::Exists => response::EXISTS,
            Outcome::NotFound => response::NOT_FOUND,
            Outcome::TooLarge => response::TOO_LARGE,
            Outcome::OutOfMemory => response::NO_MEMORY_STORING,
        }
    }
}

/// The result of applying a delta to an item's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithResult {
    /// The new value.
    Value(u64),
    /// No such item.
    NotFound,
    /// The item's value is not a decimal number that fits in 64 bits.
    NonNumeric,
}

/// Applies `incr`/`decr` to the item under `key`, as memcached does: the value must be
/// a decimal number of at most 20 digits; incr wraps at 2^64, decr stops at 0; a
/// result shorter than the old value is padded with spaces to the old length (the
/// item is rewritten in place). The item gets a new CAS unique and keeps its flags
/// and expiry.
pub fn apply_delta(node: &Node, op: ArithOp, key: &[u8], delta: u64, now: u32, new_cas: Option<u64>) -> ArithResult {
    node.store.with(key, now, |slot| {
        let Some(item) = slot.get() else {
            return ArithResult::NotFound;
        };
        let Some((next, value)) = next_counter(&item.value, op, delta) else {
            return ArithResult::NonNumeric;
        };
        let mut updated = item.clone();
        updated.value = value;
        updated.cas = new_cas.unwrap_or_else(|| node.store.next_cas());
        updated.last_access = now;
        match slot.insert(updated) {
            Ok(()) => ArithResult::Value(next),
            Err(_) => ArithResult::NotFound,
        }
    })
}

/// The counter after `incr`/`decr` by `delta` of an item holding `old`: the new number
/// and the item's new value (the digits, padded with spaces to the old length when
/// shorter, as memcached rewrites in place). `None` if `old` is not a counter.
pub(crate) fn next_counter(old: &[u8], op: ArithOp, delta: u64) -> Option<(u64, Bytes)> {
    let current = parse_counter(old)?;
    let next = match op {
        ArithOp::Incr => current.wrapping_add(delta),
        ArithOp::Decr => current.saturating_sub(delta),
    };
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(next).as_bytes();
    let mut value = BytesMut::with_capacity(digits.len().max(old.len()));
    value.put_slice(digits);
    if digits.len() < old.len() {
        value.resize(old.len(), b' ');
    }
    Some((next, value.freeze()))
}

/// Parses a counter value as memcached's `safe_strtoull` does on item data: optional
/// leading spaces, decimal digits, optional trailing spaces; no sign.
pub fn parse_counter(value: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(value).ok()?;
    let t = s
        .trim_start_matches([' ', '\t'])
        .trim_end_matches([' ', '\t', '\r', '\n']);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<u64>().ok()
}

fn arith(node: &Node, op: ArithOp, key: &Bytes, delta: u64, now: u32, c: &mut Counters, out: &mut BytesMut) {
    let result = apply_delta(node, op, key, delta, now, None);
    let (hits, misses) = match op {
        ArithOp::Incr => (&mut c.incr_hits, &mut c.incr_misses),
        ArithOp::Decr => (&mut c.decr_hits, &mut c.decr_misses),
    };
    match result {
        ArithResult::Value(v) => {
            *hits += 1;
            write_number(out, v);
        }
        ArithResult::NotFound => {
            *misses += 1;
            out.put_slice(response::NOT_FOUND);
        }
        ArithResult::NonNumeric => {
            out.put_slice(response::NON_NUMERIC);
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::Config;
    use crate::server::build_local_node;

    const NOW: u32 = 1_800_000_000;

    fn node() -> Node {
        build_local_node(&Config::parse_from(["ringcache"]))
    }

    fn set(node: &Node, key: &[u8], value: &[u8]) {
        let item = Item::new(Bytes::copy_from_slice(value), 0, 0, node.store.next_cas(), NOW);
        node.store.with(key, NOW, |slot| slot.insert(item)).unwrap();
    }

    fn value(node: &Node, key: &[u8]) -> Option<Bytes> {
        node.store.with(key, NOW, |slot| slot.get().map(|i| i.value.clone()))
    }

    #[test]
    fn incr_wraps_at_2_pow_64_and_decr_stops_at_zero() {
        let n = node();
        set(&n, b"c", b"18446744073709551615");
        assert_eq!(
            apply_delta(&n, ArithOp::Incr, b"c", 2, NOW, None),
            ArithResult::Value(1)
        );
        // The shorter result is padded to the old length, as memcached rewrites in place.
        assert_eq!(value(&n, b"c").unwrap(), Bytes::from_static(b"1                   "));
        assert_eq!(
            apply_delta(&n, ArithOp::Decr, b"c", 5, NOW, None),
            ArithResult::Value(0)
        );
        set(&n, b"d", b"99");
        assert_eq!(
            apply_delta(&n, ArithOp::Incr, b"d", 1, NOW, None),
            ArithResult::Value(100)
        );
        assert_eq!(value(&n, b"d").unwrap(), Bytes::from_static(b"100"));
        set(&n, b"x", b"12a");
        assert_eq!(
            apply_delta(&n, ArithOp::Incr, b"x", 1, NOW, None),
            ArithResult::NonNumeric
        );
        assert_eq!(
            apply_delta(&n, ArithOp::Incr, b"none", 1, NOW, None),
            ArithResult::NotFound
        );
    }

    #[test]
    fn cas_succeeds_once_then_reports_exists() {
        let n = node();
        set(&n, b"k", b"v1");
        let cas = n.store.with(b"k", NOW, |slot| slot.get().map(|i| i.cas)).unwrap();
        let mut c = Counters::default();
        let req = |token, v: &'static [u8]| StoreRequest {
            mode: StoreMode::Cas(token),
            key: Bytes::from_static(b"k"),
            flags: 0,
            exptime: 0,
            value: Bytes::from_static(v),
            noreply: false,
        };
        assert_eq!(store_item(&n, req(cas, b"v2"), NOW, &mut c), response::STORED);
        assert_eq!(store_item(&n, req(cas, b"v3"), NOW, &mut c), response::EXISTS);
        assert_eq!(value(&n, b"k").unwrap(), Bytes::from_static(b"v2"));
        assert_eq!((c.cas_hits, c.cas_badval), (1, 1));
    }

    #[test]
    fn peer_applications_keep_the_larger_cas() {
        let n = node();
        let mut out = BytesMut::new();
        let apply = |cas, v: &'static [u8], out: &mut BytesMut| {
            let req = PeerRequest::Set {
                key: Bytes::from_static(b"r"),
                flags: 1,
                exptime: 0,
                cas,
                value: Bytes::from_static(v),
            };
            apply_peer(&n, req, NOW, out)
        };
        apply(10, b"new", &mut out);
        apply(5, b"old", &mut out);
        assert_eq!(&out[..], b"STORED\r\nNOT_STORED\r\n");
        assert_eq!(value(&n, b"r").unwrap(), Bytes::from_static(b"new"));
        // Later local writes get larger CAS uniques than the applied one.
        assert!(n.store.next_cas() > 10);
        out.clear();
        let del = |cas, out: &mut BytesMut| {
            apply_peer(
                &n,
                PeerRequest::Del {
                    key: Bytes::from_static(b"r"),
                    cas,
                },
                NOW,
                out,
            )
        };
        del(3, &mut out);
        del(20, &mut out);
        assert_eq!(&out[..], b"NOT_FOUND\r\nDELETED\r\n");
        assert_eq!(value(&n, b"r"), None);
    }

    /// A connected pair of loopback sockets, the first known writable.
    async fn socket_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        a.writable().await.unwrap();
        (a, b)
    }

    /// Reads exactly `n` bytes from `s` (bounded by a timeout).
    async fn read_n(s: &mut tokio::net::TcpStream, n: usize) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut got = vec![0; n];
        tokio::time::timeout(std::time::Duration::from_secs(10), s.read_exact(&mut got))
            .await
            .expect("bytes in time")
            .unwrap();
        got
    }

    #[tokio::test]
    async fn a_direct_send_leaves_what_the_socket_did_not_take_in_order() {
        use tokio::io::AsyncWriteExt;
        let (mut a, mut b) = socket_pair().await;
        // Far more than loopback's socket buffers hold while nobody reads, stored as a
        // big item in 64 KiB chunks: 256 pieces, more than one write sends.
        let value: Vec<u8> = (0..16 << 20).map(|i| (i % 251) as u8).collect();
        let store = crate::storage::Store::new(crate::storage::StoreConfig {
            memory_limit: 64 << 20,
            shards: 1,
            max_item_size: 32 << 20,
        });
        let item = Item::new(Bytes::from(value.clone()), 0, 0, store.next_cas(), NOW);
        store.with(b"k", NOW, |slot| slot.insert(item)).unwrap();
        let send = |out: &mut BytesMut, c: &mut Counters| {
            store.with(b"k", NOW, |slot| {
                slot.read(None, |v, _, _| {
                    assert!(v.as_slice().is_none() && v.slices().count() > MAX_PIECES);
                    send_direct(&a, out, v, response::VALUE_END, c)
                })
            })
        };
        let head = b"END\r\nVALUE k 0 16777216\r\n";
        let mut out = BytesMut::from(&head[..]);
        let mut c = Counters::default();
        assert_eq!(send(&mut out, &mut c), Some(true));
        let sent = c.bytes_written as usize;
        let total = head.len() + value.len() + 2;
        assert!(sent > 0 && sent < total, "{sent} of {total} bytes sent at once");
        assert_eq!(out.len(), total - sent, "the rest is left to write");
        // The socket is full now: nothing more goes, and nothing is lost.
        let mut other = BytesMut::from(&b"x"[..]);
        assert_eq!(send(&mut other, &mut c), Some(false));
        assert_eq!((&other[..], c.bytes_written as usize), (&b"x"[..], sent));
        let mut expected = head.to_vec();
        expected.extend_from_slice(&value);
        expected.extend_from_slice(b"\r\n");
        let (_, got) = tokio::join!(async { a.write_all(&out).await.unwrap() }, read_n(&mut b, total));
        assert!(got == expected, "the bytes arrived out of order");
    }

    /// A value too small to be sent directly mid-batch goes directly when its reply
    /// ends the batch (one `writev` instead of a copy and a `write`).
    #[tokio::test]
    async fn a_value_whose_reply_ends_the_batch_goes_directly() {
        let (a, mut b) = socket_pair().await;
        let n = node();
        let v = vec![5u8; 10 * 1024];
        let item = Item::new(Bytes::from(v.clone()), 0, 0, n.store.next_cas(), NOW);
        n.store.with(b"k", NOW, |slot| slot.insert(item)).unwrap();
        let mut c = Counters::default();
        let get = |ends_batch, out: &mut BytesMut, c: &mut Counters| {
            let d = Direct {
                sock: &a,
                last: true,
                ends_batch,
            };
            retrieve_one_to(&n, GetKind::Get, &Bytes::from_static(b"k"), NOW, c, out, Some(d))
        };
        let mut out = BytesMut::new();
        assert!(!get(false, &mut out, &mut c), "mid-batch: copied");
        assert_eq!(out.len(), "VALUE k 0 10240\r\n".len() + v.len() + 2);
        let mut out = BytesMut::new();
        assert!(get(true, &mut out, &mut c), "ends the batch: sent with its END");
        assert!(out.is_empty());
        let mut want = b"VALUE k 0 10240\r\n".to_vec();
        want.extend_from_slice(&v);
        want.extend_from_slice(b"\r\nEND\r\n");
        assert_eq!(read_n(&mut b, want.len()).await, want);
        // A direct send counts its hit in the node's totals before it goes out.
        assert_eq!(c.get_hits + n.stats.totals.snapshot().get_hits, 2);
    }

    #[tokio::test]
    async fn a_direct_send_that_fits_leaves_nothing() {
        let (a, mut b) = socket_pair().await;
        let value = vec![7u8; 100 * 1024];
        let head = b"VALUE k 0 102400\r\n";
        let mut out = BytesMut::from(&head[..]);
        let mut c = Counters::default();
        assert!(send_direct(
            &a,
            &mut out,
            Value::flat(&value),
            response::VALUE_END_LAST,
            &mut c
        ));
        assert!(out.is_empty());
        assert_eq!(c.bytes_written as usize, head.len() + value.len() + 7);
        let got = read_n(&mut b, head.len() + value.len() + 7).await;
        assert!(got.starts_with(b"VALUE k 0 102400\r\n") && got.ends_with(b"\x07\r\nEND\r\n"));
    }
}
