//! Meta command semantics: what `mg`, `ms`, `md`, `ma`, `mn` and `me` do to the store
//! and what they answer, byte for byte as memcached 1.6.18 (probed).
//!
//! Each command runs under one shard lock ([`crate::storage::Store::with`]), so a
//! read-modify-write (lease hand-out, CAS check, invalidation, counter update) is
//! atomic. Return flags are written in request order, and flags that change the item
//! (`T`, `N`) take effect at their place in that order, as in memcached
//! (`mg k t T30` reports the TTL from before `T`).
//!
//! # Leases (stale-while-revalidate)
//! Two bits on the item carry the protocol's lease state:
//! - `win_sent`: a `W` (you won: go recompute the value) has been handed out. Later
//!   fetches see `Z` instead, so exactly one client recomputes.
//! - `stale`: the item was invalidated (`md <k> I`, or `ms <k> I C<old cas>`); fetches
//!   see `X`, and the first one also wins `W`.
//!
//! `mg <k> N<ttl>` on a miss creates an empty item and hands out `W`; `mg <k> R<ttl>`
//! hands out `W` when the remaining TTL is below the token. Storing a new value (`ms`
//! with or without CAS) replaces the item and so clears both bits; `md I` sets `stale`
//! and clears `win_sent` so the next reader wins.
//!
//! # Quiet mode (`q`)
//! memcached hides only the nominal reply: `EN` for `mg` (a hit is still answered),
//! `HD` for `ms` and `md`, and the success of `ma` on an existing item; `NS`, `EX`,
//! `NF` and errors are always sent. A client ends a quiet batch with `mn`.
//!
//! # Statistics
//! `mg` counts `cmd_get` and `get_hits`/`get_misses` (a vivified miss is a hit), or
//! `cmd_touch`/`touch_hits` when `T` updated a hit; `ms` counts `cmd_set` and the CAS
//! counters; `md` counts `delete_hits`/`delete_misses` (a CAS mismatch is a miss,
//! an invalidation counts nothing); `ma` counts `incr_*`/`decr_*` (a vivified miss
//! counts nothing); `me` counts `cmd_meta`; `mn` counts nothing.

use bytes::{BufMut, Bytes, BytesMut};
use ringcache_protocol::text::meta::encode::{self, EN, EX, HD, NF, NS};
use ringcache_protocol::text::meta::parse::item_total_size;
use ringcache_protocol::text::meta::{MetaCommand, MetaMode, MetaRequest};
use ringcache_protocol::text::response::{NON_NUMERIC, NO_MEMORY, NO_MEMORY_STORING, TOO_LARGE};
use ringcache_protocol::text::ArithOp;

use super::next_counter;
use crate::node::Node;
use crate::stats::Counters;
use crate::storage::{absolute_expiry, Item, MissReason, StoreError};

/// Runs one meta request and appends its reply to `out`.
pub fn execute(node: &Node, req: MetaRequest, now: u32, c: &mut Counters, out: &mut BytesMut) {
    match req.command {
        MetaCommand::NoOp => out.put_slice(encode::MN_LINE),
        MetaCommand::Debug => debug(node, &req, now, c, out),
        MetaCommand::Get => get(node, &req, now, c, out),
        MetaCommand::Set => set(node, &req, now, c, out),
        MetaCommand::Delete => delete(node, &req, now, c, out),
        MetaCommand::Arithmetic => arith(node, &req, now, c, out),
    }
}

/// A TTL token (`T`, `N`, `R`) as an absolute expiry.
fn expiry(token: Option<i32>, now: u32) -> Option<u32> {
    token.map(|t| absolute_expiry(i64::from(t), now))
}

/// The remaining TTL as `t` reports it: -1 for never, else memcached's unsigned
/// `exptime - now` (an item that `T-1` just expired shows a wrapped number, as there).
fn ttl_left(exptime: u32, now: u32) -> i64 {
    if exptime == 0 {
        -1
    } else {
        i64::from(exptime.wrapping_sub(now))
    }
}

/// The CAS unique for an item this request creates or changes: `E` if given.
fn new_cas(node: &Node, req: &MetaRequest) -> u64 {
    match req.flags.new_cas {
        Some(e) => {
            if node.store.orders_versions() {
                // Uniques this node hands out later stay above the one the client chose.
                node.store.observe_cas(e);
            }
            e
        }
        None => node.store.next_cas(),
    }
}

/// The `E` of a request that must name a newer version than the key holds: on a node
/// with peers, whose versions are ordered by CAS across the cluster. Every owner keeps
/// the version with the larger CAS (replication, read repair), so a write with a
/// smaller one, once acknowledged, would lose to the version it replaced on the other
/// owners and come back as a stale read; it is refused with `EX` instead. A node alone
/// keeps memcached's rule: `E` sets whatever the client says.
fn ordered_explicit_cas(node: &Node, req: &MetaRequest) -> Option<u64> {
    let e = req.flags.new_cas?;
    let peers = node.cluster.as_ref().is_some_and(|c| c.ring().ring.len() > 1);
    (peers && node.store.orders_versions()).then_some(e)
}

/// Whether `E` (from [`ordered_explicit_cas`]) is no newer than what `slot` holds.
fn explicit_cas_too_old(e: Option<u64>, slot: &mut crate::storage::Slot<'_>) -> bool {
    e.is_some_and(|e| !slot.is_newer(e))
}

/// Writes `code`, the `O` and `k` return flags in request order, and the line end:
/// the reply of every outcome that has no item to describe.
fn write_bare(out: &mut BytesMut, code: &[u8; 2], req: &MetaRequest) {
    encode::start(out, code);
    for letter in req.flag_order() {
        write_key_or_opaque(out, letter, req);
    }
    encode::end(out);
}

fn write_key_or_opaque(out: &mut BytesMut, letter: u8, req: &MetaRequest) {
    match letter {
        b'O' => {
            if let Some(o) = &req.flags.opaque {
                encode::token(out, o);
            }
        }
        b'k' => encode::key(out, &req.key, req.flags.base64_key()),
        _ => {}
    }
}

fn get(node: &Node, req: &MetaRequest, now: u32, c: &mut Counters, out: &mut BytesMut) {
    let f = &req.flags;
    let ttl = expiry(f.ttl, now);
    let vivify = expiry(f.vivify, now);
    let recache = expiry(f.recache, now);
    let want_value = f.has(b'v');
    let found = node.store.with(&req.key, now, |slot| {
        let mut created = false;
        let mut reason = MissReason::Absent;
        if slot.get().is_none() {
            reason = slot.miss_reason();
            if vivify.is_some() {
                let item = Item::new(Bytes::new(), 0, 0, new_cas(node, req), now);
                created = slot.insert(item).is_ok();
            }
        }
        let Some(item) = slot.get() else {
            return Err(reason);
        };
        // h and l report the state from before this fetch.
        let was_fetched = item.fetched;
        let idle = now.saturating_sub(item.last_access);
        let mut won = false;
        let mut touched = false;
        if want_value {
            encode::start_value(out, item.value.len());
        } else {
            encode::start(out, HD);
        }
        for letter in req.flag_order() {
            match letter {
                b'T' => {
                    if let Some(t) = ttl {
                        item.exptime = t;
                        touched = true;
                    }
                }
                b'N' => {
                    if created {
                        item.exptime = vivify.unwrap_or(0);
                        won = true;
                    }
                }
                b'R' => {
                    if let Some(r) = recache {
                        if !item.win_sent && !created && item.exptime != 0 && item.exptime < r {
                            won = true;
                        }
                    }
                }
                b's' => encode::flag_u64(out, b's', item.value.len() as u64),
                b't' => encode::flag_i64(out, b't', ttl_left(item.exptime, now)),
                b'c' => encode::flag_u64(out, b'c', item.cas),
                b'f' => encode::flag_u64(out, b'f', u64::from(item.flags)),
                b'l' => encode::flag_u64(out, b'l', u64::from(idle)),
                b'h' => encode::flag_u64(out, b'h', u64::from(was_fetched)),
                other => write_key_or_opaque(out, other, req),
            }
        }
        // Z before X before W, as memcached orders them.
        if item.win_sent {
            encode::flag(out, b'Z');
        }
        if item.stale {
            encode::flag(out, b'X');
            if !item.win_sent {
                won = true;
            }
        }
        if won {
            encode::flag(out, b'W');
            item.win_sent = true;
        }
        encode::end(out);
        if !f.has(b'u') {
            item.fetched = true;
            item.last_access = now;
        }
        Ok((want_value.then(|| item.value.clone()), touched))
    });
    match found {
        Ok((value, touched)) => {
            if let Some(v) = value {
                encode::data(out, &v);
            }
            if touched {
                c.cmd_touch += 1;
                c.touch_hits += 1;
            } else {
                c.cmd_get += 1;
                c.get_hits += 1;
            }
        }
        Err(reason) => {
            // A miss counts as a get even with T (memcached only touches what it found).
            c.cmd_get += 1;
            c.get_misses += 1;
            match reason {
                MissReason::Expired => c.get_expired += 1,
                MissReason::Flushed => c.get_flushed += 1,
                MissReason::Absent => {}
            }
            if !f.quiet() {
                write_bare(out, EN, req);
            }
        }
    }
}

/// How an `ms` ended.
enum SetOutcome {
    /// The reply code and the CAS to report for `c` (0 when nothing was stored).
    Reply(&'static [u8; 2], u64),
    Failed(StoreError),
}

fn set(node: &Node, req: &MetaRequest, now: u32, c: &mut Counters, out: &mut BytesMut) {
    c.cmd_set += 1;
    let f = &req.flags;
    let mode = f.mode.unwrap_or(MetaMode::Set);
    // memcached upgrades set and replace with a CAS token to its cas command.
    let compare = f
        .compare_cas
        .filter(|_| matches!(mode, MetaMode::Set | MetaMode::Replace));
    let exptime = absolute_expiry(i64::from(f.ttl.unwrap_or(0)), now);
    let client_flags = f.client_flags.unwrap_or(0);
    let max = node.settings.max_item_size;
    let ordered = ordered_explicit_cas(node, req);
    let outcome = node.store.with(&req.key, now, |slot| {
        if explicit_cas_too_old(ordered, slot) {
            c.cas_badval += 1;
            return SetOutcome::Reply(EX, 0);
        }
        let fresh = |cas| Item::new(req.value.clone(), client_flags, exptime, cas, now);
        let store = |slot: &mut crate::storage::Slot<'_>, item: Item| {
            let cas = item.cas;
            match slot.insert(item) {
                Ok(()) => SetOutcome::Reply(HD, cas),
                Err(e) => {
                    // memcached drops the old value rather than let it outlive a
                    // write the client believes replaced it.
                    slot.remove();
                    SetOutcome::Failed(e)
                }
            }
        };
        if let Some(token) = compare {
            let Some(item) = slot.get() else {
                c.cas_misses += 1;
                return SetOutcome::Reply(NF, 0);
            };
            if item.cas == token {
                c.cas_hits += 1;
                return store(slot, fresh(new_cas(node, req)));
            }
            if f.has(b'I') && token < item.cas {
                // Invalidation: an older writer's value goes in, marked stale, keeping
                // the item's TTL and whether a win was handed out.
                c.cas_hits += 1;
                let mut stale = fresh(new_cas(node, req));
                stale.exptime = item.exptime;
                stale.stale = true;
                stale.win_sent = item.win_sent;
                return store(slot, stale);
            }
            c.cas_badval += 1;
            return SetOutcome::Reply(EX, 0);
        }
        match mode {
            MetaMode::Append | MetaMode::Prepend => {
                let Some(item) = slot.get() else {
                    if let Some(ttl) = f.vivify {
                        // Later memcached releases: N autovivifies an append miss.
                        let mut item = fresh(new_cas(node, req));
                        item.exptime = absolute_expiry(i64::from(ttl), now);
                        return store(slot, item);
                    }
                    return SetOutcome::Reply(NS, 0);
                };
                if let Some(token) = f.compare_cas {
                    if token != 0 && token != item.cas {
                        return SetOutcome::Reply(EX, 0);
                    }
                }
                let len = item.value.len() + req.value.len();
                if item_total_size(req.key.len(), item.flags, len) > max {
                    return SetOutcome::Reply(NS, 0);
                }
                let mut joined = BytesMut::with_capacity(len);
                if mode == MetaMode::Append {
                    joined.put_slice(&item.value);
                    joined.put_slice(&req.value);
                } else {
                    joined.put_slice(&req.value);
                    joined.put_slice(&item.value);
                }
                // Append and prepend keep the item's client flags and expiry.
                let cas = new_cas(node, req);
                let item = Item::new(joined.freeze(), item.flags, item.exptime, cas, now);
                match slot.insert(item) {
                    Ok(()) => SetOutcome::Reply(HD, cas),
                    Err(_) => SetOutcome::Reply(NS, 0),
                }
            }
            MetaMode::Add => match slot.get() {
                Some(item) => {
                    // memcached bumps an existing item on a failed add.
                    item.last_access = now;
                    SetOutcome::Reply(NS, 0)
                }
                None => store(slot, fresh(new_cas(node, req))),
            },
            MetaMode::Replace if slot.get().is_none() => SetOutcome::Reply(NS, 0),
            _ => store(slot, fresh(new_cas(node, req))),
        }
    });
    let (code, cas) = match outcome {
        SetOutcome::Reply(code, cas) => (code, cas),
        SetOutcome::Failed(StoreError::TooLarge) => {
            c.store_too_large += 1;
            out.put_slice(TOO_LARGE);
            return;
        }
        SetOutcome::Failed(StoreError::OutOfMemory) => {
            c.store_no_memory += 1;
            out.put_slice(NO_MEMORY_STORING);
            return;
        }
    };
    if code == HD && f.quiet() {
        return;
    }
    encode::start(out, code);
    for letter in req.flag_order() {
        match letter {
            b'c' => encode::flag_u64(out, b'c', cas),
            other => write_key_or_opaque(out, other, req),
        }
    }
    encode::end(out);
}

fn delete(node: &Node, req: &MetaRequest, now: u32, c: &mut Counters, out: &mut BytesMut) {
    let f = &req.flags;
    let ttl = expiry(f.ttl, now);
    let code = node.store.with(&req.key, now, |slot| {
        let Some(item) = slot.get() else {
            c.delete_misses += 1;
            // A delete that finds nothing still orders above every older version.
            super::bury_delete(node, slot);
            return NF;
        };
        if f.compare_cas.is_some_and(|token| token != item.cas) {
            c.delete_misses += 1;
            return EX;
        }
        if f.has(b'I') {
            // Invalidate: keep the item, mark it stale, let the next reader win.
            if let Some(t) = ttl {
                item.exptime = t;
            }
            item.stale = true;
            item.win_sent = false;
            item.cas = new_cas(node, req);
            return HD;
        }
        c.delete_hits += 1;
        if f.has(b'x') {
            // Later memcached releases: drop the value, keep the item and its flags.
            let emptied = Item::new(Bytes::new(), item.flags, item.exptime, new_cas(node, req), now);
            if slot.insert(emptied).is_ok() {
                return HD;
            }
        }
        slot.remove();
        super::bury_delete(node, slot);
        HD
    });
    if code == HD && f.quiet() {
        return;
    }
    write_bare(out, code, req);
}

/// How an `ma` ended.
enum ArithOutcome {
    /// Applied (or created with `N`); the reply is already in `out`.
    Done {
        created: bool,
    },
    Miss,
    CasMismatch,
    NonNumeric,
    NoMemory,
}

fn arith(node: &Node, req: &MetaRequest, now: u32, c: &mut Counters, out: &mut BytesMut) {
    let f = &req.flags;
    let op = match f.mode {
        Some(MetaMode::Decr) => ArithOp::Decr,
        _ => ArithOp::Incr,
    };
    let delta = f.delta.unwrap_or(1);
    let ttl = expiry(f.ttl, now);
    let vivify = expiry(f.vivify, now);
    let mark = out.len();
    let ordered = ordered_explicit_cas(node, req);
    let outcome = node.store.with(&req.key, now, |slot| {
        if explicit_cas_too_old(ordered, slot) {
            return ArithOutcome::CasMismatch;
        }
        let (mut item, number, created) = match slot.get() {
            None => {
                if vivify.is_none() {
                    return ArithOutcome::Miss;
                }
                let initial = f.initial.unwrap_or(0);
                let mut digits = itoa::Buffer::new();
                let value = Bytes::copy_from_slice(digits.format(initial).as_bytes());
                (Item::new(value, 0, 0, new_cas(node, req), now), initial, true)
            }
            Some(item) => {
                if f.compare_cas.is_some_and(|token| token != item.cas) {
                    return ArithOutcome::CasMismatch;
                }
                let Some((number, value)) = next_counter(&item.value, op, delta) else {
                    return ArithOutcome::NonNumeric;
                };
                let mut updated = item.clone();
                updated.value = value;
                updated.cas = new_cas(node, req);
                updated.last_access = now;
                (updated, number, false)
            }
        };
        // A quiet success on an existing item is not answered at all.
        let answer = created || !f.quiet();
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(number).as_bytes();
        if answer {
            if f.has(b'v') {
                encode::start_value(out, digits.len());
            } else {
                encode::start(out, HD);
            }
        }
        for letter in req.flag_order() {
            match letter {
                b'T' => item.exptime = ttl.unwrap_or(item.exptime),
                b'N' if created => item.exptime = vivify.unwrap_or(0),
                _ if !answer => {}
                b'c' => encode::flag_u64(out, b'c', item.cas),
                b't' => encode::flag_i64(out, b't', ttl_left(item.exptime, now)),
                other => write_key_or_opaque(out, other, req),
            }
        }
        if answer {
            encode::end(out);
            if f.has(b'v') {
                encode::data(out, digits);
            }
        }
        match slot.insert(item) {
            Ok(()) => ArithOutcome::Done { created },
            Err(_) => ArithOutcome::NoMemory,
        }
    });
    let (hits, misses) = match op {
        ArithOp::Incr => (&mut c.incr_hits, &mut c.incr_misses),
        ArithOp::Decr => (&mut c.decr_hits, &mut c.decr_misses),
    };
    match outcome {
        ArithOutcome::Done { created } => {
            if !created {
                *hits += 1;
            }
        }
        ArithOutcome::Miss => {
            *misses += 1;
            write_bare(out, NF, req);
        }
        ArithOutcome::CasMismatch => write_bare(out, EX, req),
        ArithOutcome::NonNumeric => out.put_slice(NON_NUMERIC),
        ArithOutcome::NoMemory => {
            out.truncate(mark);
            out.put_slice(NO_MEMORY);
        }
    }
}

fn debug(node: &Node, req: &MetaRequest, now: u32, c: &mut Counters, out: &mut BytesMut) {
    c.cmd_meta += 1;
    let snapshot = node.store.with(&req.key, now, |slot| {
        slot.get()
            .map(|it| (it.exptime, it.last_access, it.cas, it.fetched, it.flags, it.value.len()))
    });
    let Some((exptime, last_access, cas, fetched, flags, len)) = snapshot else {
        out.put_slice(encode::EN_LINE);
        return;
    };
    // memcached prints `current_time - exptime` as a signed int: negative while alive.
    let exp = if exptime == 0 {
        -1
    } else {
        i64::from(now.wrapping_sub(exptime) as i32)
    };
    let size = item_total_size(req.key.len(), flags, len);
    encode::debug_line(
        out,
        &req.key,
        req.flags.base64_key(),
        exp,
        u64::from(now.saturating_sub(last_access)),
        cas,
        fetched,
        encode::slab_class(size),
        size,
    );
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use clap::Parser;
    use ringcache_protocol::text::meta::parse_meta;
    use ringcache_protocol::text::Limits;

    use super::*;
    use crate::config::Config;
    use crate::server::build_local_node;

    const NOW: u32 = 1_700_000_000;

    fn node() -> Node {
        build_local_node(&Config::parse_from(["ringcache"]))
    }

    /// Parses and runs every request in `input` at time `now`; returns the replies.
    fn run_at(node: &Node, c: &mut Counters, input: &[u8], now: u32) -> Vec<u8> {
        let mut buf = BytesMut::from(input);
        let mut out = BytesMut::new();
        while let Some(nl) = memchr::memchr(b'\n', &buf) {
            let line_len = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
            match parse_meta(&mut buf, line_len, nl + 1, &Limits::default()) {
                Ok(Some(req)) => execute(node, req, now, c, &mut out),
                Ok(None) => panic!("incomplete request in {input:?}"),
                Err(e) => out.extend_from_slice(e.reply),
            }
        }
        out.to_vec()
    }

    /// Runs a table of (request, exact reply) rows in order against one node.
    fn table(node: &Node, rows: &[(&str, &str)]) -> Counters {
        let mut c = Counters::default();
        for (req, want) in rows {
            let got = run_at(node, &mut c, req.as_bytes(), NOW);
            assert_eq!(String::from_utf8_lossy(&got), *want, "request {req:?}");
        }
        c
    }

    /// On a node with peers (versions ordered by CAS), `E` must name a newer version
    /// than the key holds, or remembers from a delete; the differential suite checks
    /// the replies through a cluster (`ms_E_below_current_cas`). A node alone keeps
    /// memcached's rule.
    #[test]
    fn an_explicit_cas_must_be_newer_than_the_version_held() {
        let store = crate::storage::Store::new(crate::storage::StoreConfig {
            memory_limit: 64 << 20,
            shards: 8,
            max_item_size: 1 << 20,
        })
        .with_clock_cas();
        let far = 1u64 << 60;
        store.with(b"k", NOW, |slot| {
            assert!(!explicit_cas_too_old(Some(5), slot), "nothing held yet");
            slot.insert(Item::new(Bytes::from_static(b"a"), 0, 0, far, NOW))
                .unwrap();
            assert!(explicit_cas_too_old(Some(5), slot));
            assert!(explicit_cas_too_old(Some(far), slot));
            assert!(!explicit_cas_too_old(Some(far + 1), slot));
            assert!(!explicit_cas_too_old(None, slot));
            slot.remove();
            assert!(explicit_cas_too_old(Some(far), slot), "a deleted version is remembered");
            assert!(!explicit_cas_too_old(Some(far + 1), slot));
        });
        let single = node();
        assert_eq!(ordered_explicit_cas(&single, &parse_one(b"ms k 1 E5\r\na\r\n")), None);
        let mut c = Counters::default();
        assert_eq!(run_at(&single, &mut c, b"ms k 1 E9\r\na\r\n", NOW), b"HD\r\n");
        assert_eq!(run_at(&single, &mut c, b"ms k 1 E5 c\r\nb\r\n", NOW), b"HD c5\r\n");
    }

    fn parse_one(input: &[u8]) -> MetaRequest {
        let mut buf = BytesMut::from(input);
        let nl = memchr::memchr(b'\n', &buf).unwrap();
        parse_meta(&mut buf, nl - 1, nl + 1, &Limits::default())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn lease_dance() {
        // Each row was checked against memcached 1.6.18 (CAS numbers included).
        table(
            &node(),
            &[
                // A miss with N creates an empty item and hands this client the win.
                ("mg k N30 c t v s f\r\n", "VA 0 c1 t30 s0 f0 W\r\n\r\n"),
                // Everyone else sees that a win is out.
                ("mg k N30 c t v\r\n", "VA 0 c1 t30 Z\r\n\r\n"),
                // The winner stores with the CAS it saw: the lease is gone.
                ("ms k 3 C1 c T60\r\nnew\r\n", "HD c2\r\n"),
                ("mg k c t v\r\n", "VA 3 c2 t60\r\nnew\r\n"),
                // R: win when the remaining TTL is below the token, once.
                ("mg k R30 c\r\n", "HD c2\r\n"),
                ("mg k R90 c\r\n", "HD c2 W\r\n"),
                ("mg k R90 c\r\n", "HD c2 Z\r\n"),
                // md I: keep the item, mark it stale, bump CAS, reopen the race.
                ("md k I T30 k\r\n", "HD kk\r\n"),
                ("mg k c t v\r\n", "VA 3 c3 t30 X W\r\nnew\r\n"),
                ("mg k c\r\n", "HD c3 Z X\r\n"),
                // ms I with an older CAS: stored, but stale, keeping TTL and the win.
                ("ms k 3 I C1 c T5\r\nold\r\n", "HD c4\r\n"),
                ("mg k c t v\r\n", "VA 3 c4 t30 Z X\r\nold\r\n"),
                // A newer (unknown) CAS is refused even with I.
                ("ms k 3 I C99 c\r\nxxx\r\n", "EX c0\r\n"),
                // The current CAS stores a fresh, clean item.
                ("ms k 3 C4 c\r\nfix\r\n", "HD c5\r\n"),
                ("mg k c t v\r\n", "VA 3 c5 t-1\r\nfix\r\n"),
            ],
        );
    }

    #[test]
    fn get_flags_in_request_order() {
        table(
            &node(),
            &[
                ("ms hk 3 T100 F5\r\nabc\r\n", "HD\r\n"),
                (
                    "mg hk O1 k v c f t s h l\r\n",
                    "VA 3 O1 khk c1 f5 t100 s3 h0 l0\r\nabc\r\n",
                ),
                ("mg hk s v\r\n", "VA 3 s3\r\nabc\r\n"),
                ("mg hk h t\r\n", "HD h1 t100\r\n"),
                // t reports the TTL from before T, as memcached does.
                ("mg hk t T30\r\n", "HD t100\r\n"),
                ("mg hk t\r\n", "HD t30\r\n"),
                ("mg hk T0 t\r\n", "HD t-1\r\n"),
                ("mg nokey O12 k\r\n", "EN O12 knokey\r\n"),
                ("mg nokey k O12 c f v\r\n", "EN knokey O12\r\n"),
                ("mg hk k q O9\r\n", "HD khk O9\r\n"),
                (
                    "mg x c f h k l s t u v O1 q N1 R1 T1 P L I\r\n",
                    "VA 0 c2 f0 h0 kx l0 s0 t-1 O1 W\r\n\r\n",
                ),
                ("mg x c t\r\n", "HD c2 t1 Z\r\n"),
            ],
        );
    }

    #[test]
    fn hit_and_idle_flags_follow_access_unless_u() {
        let node = node();
        let mut c = Counters::default();
        let mut at = |req: &str, now: u32| String::from_utf8(run_at(&node, &mut c, req.as_bytes(), now)).unwrap();
        assert_eq!(at("ms k 1\r\nx\r\n", NOW), "HD\r\n");
        assert_eq!(at("mg k h l\r\n", NOW + 5), "HD h0 l5\r\n");
        assert_eq!(at("mg k h l u\r\n", NOW + 7), "HD h1 l2\r\n");
        assert_eq!(at("mg k h l\r\n", NOW + 9), "HD h1 l4\r\n");
        assert_eq!(
            at("me k\r\n", NOW + 10),
            "ME k exp=-1 la=1 cas=1 fetch=yes cls=1 size=61\r\n"
        );
        // An expired item is a miss.
        assert_eq!(at("ms e 1 T10\r\nx\r\n", NOW), "HD\r\n");
        assert_eq!(
            at("me e\r\n", NOW + 3),
            "ME e exp=-7 la=3 cas=2 fetch=no cls=1 size=61\r\n"
        );
        assert_eq!(at("mg e v\r\n", NOW + 10), "EN\r\n");
        assert_eq!(c.get_expired, 1);
        assert_eq!(c.cmd_meta, 2);
    }

    #[test]
    fn set_modes_and_cas() {
        table(
            &node(),
            &[
                ("ms s 2 MA\r\nab\r\n", "NS\r\n"),
                ("ms s 2 MP c k\r\nab\r\n", "NS c0 ks\r\n"),
                ("ms s 2 MR\r\nab\r\n", "NS\r\n"),
                ("ms s 2 ME c\r\nab\r\n", "HD c1\r\n"),
                ("ms s 2 ME q\r\nab\r\n", "NS\r\n"),
                ("ms s 2 MA c F9 T1\r\ncd\r\n", "HD c2\r\n"),
                ("ms s 2 MP c\r\nzz\r\n", "HD c3\r\n"),
                // Append keeps the item's client flags and TTL.
                ("mg s v f t\r\n", "VA 6 f0 t-1\r\nzzabcd\r\n"),
                ("ms s 1 MA C1\r\nx\r\n", "EX\r\n"),
                ("ms s 1 MA C0 c\r\nx\r\n", "HD c4\r\n"),
                ("ms s 1 MR F7 T100 c\r\ny\r\n", "HD c5\r\n"),
                ("mg s v f t c\r\n", "VA 1 f7 t100 c5\r\ny\r\n"),
                ("ms s 1 C4 c\r\nz\r\n", "EX c0\r\n"),
                ("ms none 1 C4 c\r\nz\r\n", "NF c0\r\n"),
                ("ms none 1 MR C4\r\nz\r\n", "NF\r\n"),
                // Add with a CAS is still an add.
                ("ms add 1 ME C77 c\r\nz\r\n", "HD c6\r\n"),
                ("ms s 1 q\r\nq\r\n", ""),
                ("ms s 1 k O5 c q MS\r\nq\r\n", ""),
                ("mg s v\r\n", "VA 1\r\nq\r\n"),
            ],
        );
    }

    #[test]
    fn delete_flags() {
        let c = table(
            &node(),
            &[
                ("ms d 2\r\nab\r\n", "HD\r\n"),
                ("md d q\r\n", ""),
                ("md d q\r\n", "NF\r\n"),
                ("md d k O1 c\r\n", "NF kd O1\r\n"),
                ("ms d 2 c\r\nab\r\n", "HD c2\r\n"),
                ("md d C1 k O1\r\n", "EX kd O1\r\n"),
                ("md d T30\r\n", "HD\r\n"),
                ("mg d\r\n", "EN\r\n"),
            ],
        );
        assert_eq!((c.delete_hits, c.delete_misses), (2, 3));
    }

    #[test]
    fn arithmetic() {
        let c = table(
            &node(),
            &[
                ("ma a\r\n", "NF\r\n"),
                ("ma a q\r\n", "NF\r\n"),
                ("ma a N0 J10 v\r\n", "VA 2\r\n10\r\n"),
                ("ma a v\r\n", "VA 2\r\n11\r\n"),
                ("ma a v D5 MD\r\n", "VA 1\r\n6\r\n"),
                // The stored value keeps its length, padded with spaces.
                ("mg a v\r\n", "VA 2\r\n6 \r\n"),
                ("ma a v D50 M-\r\n", "VA 1\r\n0\r\n"),
                ("ma a v t c k O1 N0 T100\r\n", "VA 1 t-1 c5 ka O1\r\n1\r\n"),
                ("mg a t\r\n", "HD t100\r\n"),
                ("ma a q\r\n", ""),
                ("ma a q v\r\n", ""),
                ("ma a C1 v\r\n", "EX\r\n"),
                ("ma a C1 q k\r\n", "EX ka\r\n"),
                ("ma a D18446744073709551615 v\r\n", "VA 1\r\n2\r\n"),
                ("ma a M+ v s f\r\n", "VA 1\r\n3\r\n"),
                ("ms t 2\r\nab\r\n", "HD\r\n"),
                (
                    "ma t\r\n",
                    "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
                ),
                (
                    "ma t q\r\n",
                    "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
                ),
                // Vivified: answered even in quiet mode; t is read before N applies.
                ("ma v t N50 v c q\r\n", "VA 1 t-1 c11\r\n0\r\n"),
                ("mg v t\r\n", "HD t50\r\n"),
                ("ma n MD N0 J5 v\r\n", "VA 1\r\n5\r\n"),
                ("ma n MD v\r\n", "VA 1\r\n4\r\n"),
            ],
        );
        assert_eq!((c.incr_hits, c.incr_misses, c.decr_hits, c.decr_misses), (6, 2, 3, 0));
    }

    #[test]
    fn quiet_pipeline_ends_with_mn() {
        let node = node();
        let mut c = Counters::default();
        let got = run_at(
            &node,
            &mut c,
            b"ms q1 1 q\r\na\r\nms q2 1 q\r\nb\r\nmg q1 v q\r\nmg q3 v q k\r\nmd q2 q\r\nmd q2 q\r\nma q4 q\r\nmn\r\n",
            NOW,
        );
        assert_eq!(got, b"VA 1\r\na\r\nNF\r\nNF\r\nMN\r\n");
    }

    #[test]
    fn base64_keys() {
        table(
            &node(),
            &[
                ("ms aGs= 2 b k c O5\r\nab\r\n", "HD kaGs= b c1 O5\r\n"),
                ("mg hk v\r\n", "VA 2\r\nab\r\n"),
                ("mg aGs= b k v\r\n", "VA 2 kaGs= b\r\nab\r\n"),
                ("mg aG*s= b k\r\n", "HD kaGs= b\r\n"),
                ("mg aA== b k\r\n", "EN kaA== b\r\n"),
                ("md aA== b k q\r\n", "NF kaA== b\r\n"),
                ("ma aA== b k N0\r\n", "HD kaA== b\r\n"),
                ("mg h v\r\n", "VA 1\r\n0\r\n"),
                ("me aGs= b\r\n", "ME aGs= exp=-1 la=0 cas=1 fetch=yes cls=1 size=63\r\n"),
                ("mg aGs b\r\n", "CLIENT_ERROR error decoding key\r\n"),
            ],
        );
    }

    #[test]
    fn flags_from_later_releases() {
        table(
            &node(),
            &[
                // E: the caller chooses the new CAS.
                ("ms e 1 E777 c\r\nx\r\n", "HD c777\r\n"),
                ("mg e c\r\n", "HD c777\r\n"),
                ("ma n N0 E42 c\r\n", "HD c42\r\n"),
                ("mg v N30 E9 c\r\n", "HD c9 W\r\n"),
                ("md e I E800\r\n", "HD\r\n"),
                ("mg e c\r\n", "HD c800 X W\r\n"),
                // x: drop the value, keep the item and its client flags.
                ("ms x 3 F4\r\nabc\r\n", "HD\r\n"),
                ("md x x q\r\n", ""),
                ("mg x v f\r\n", "VA 0 f4\r\n\r\n"),
                // N on append: create the item on a miss.
                ("ms a 1 MA N30\r\nx\r\n", "HD\r\n"),
                ("mg a v t\r\n", "VA 1 t30\r\nx\r\n"),
            ],
        );
    }

    #[test]
    fn statistics_like_memcached() {
        // The sequence and the expected counters come from `stats` on memcached 1.6.18.
        let node = node();
        let mut c = Counters::default();
        run_at(
            &node,
            &mut c,
            b"mg a v\r\nms a 1\r\nx\r\nmg a v\r\nmg a T10\r\nmg b T10\r\nmd a\r\nmd a\r\nma c\r\nma c N0\r\n\
              ma c\r\nma c MD\r\nma c C1\r\nmn\r\nme c\r\nmg n N10\r\nms c 1 C999\r\nx\r\nms d 1 MA\r\nx\r\n\
              md c C1\r\nmd c I\r\nmg c v\r\nmg zz b\r\nms q9 1 C54\r\nx\r\nms c 1 I C1\r\nx\r\n",
            NOW,
        );
        let got = [
            c.cmd_get,
            c.get_hits,
            c.get_misses,
            c.cmd_touch,
            c.touch_hits,
            c.cmd_set,
            c.cmd_meta,
            c.delete_hits,
            c.delete_misses,
            c.incr_hits,
            c.incr_misses,
            c.decr_hits,
            c.cas_hits,
            c.cas_misses,
            c.cas_badval,
        ];
        assert_eq!(got, [5, 3, 2, 1, 1, 5, 1, 1, 2, 1, 1, 1, 1, 1, 1]);
    }
}
