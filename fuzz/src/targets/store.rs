//! `store`: the server's store (`ringcache_server::storage::Store`) driven through its
//! public API by a stream of operations read off the input, and checked against a
//! model (a map from key to the last write), in the manner of quick_cache's and
//! Pelikan segcache's fuzz targets. The store may evict, so the model is an upper
//! bound of what it holds:
//!
//! - every hit (`read`, `get`, `scan_shard`, an `add` that finds the key) is exactly
//!   the key's last write (value, flags, CAS, expiry, stale mark) and live: never a
//!   deleted, replaced, expired or flushed version;
//! - until the store has evicted something (its `evictions` counter, or a shrink of
//!   the memory limit), nothing live is missing either: a miss, a failed `remove` or a
//!   refused `keep_newer` of a key the model holds live is a finding;
//! - a miss says `Expired` only for a key whose last write has expired;
//! - an insert fails only as `TooLarge`, and only for an item over `max_item_size`
//!   or after the limit shrank; the old value is gone then;
//! - `keep_newer` stores only a larger CAS unique than the live one;
//! - memory: the segments never exceed the memory limit in force, the live bytes
//!   never exceed the segments, the item count never exceeds the model's, an
//!   immediate `flush_all` leaves no item and no live byte, and one operation never
//!   allocates more than the limit plus twice the value it carries.
//!
//! Some sets of big values go the way a connection reads them: into chunks lent by
//! `Store::land`, in pieces, stored with `Slot::insert_landed`, or abandoned half-way
//! (nothing stored, the key's last write still the one to find).
//!
//! Only the public API is used (`Store`, `Slot`, `Item`, `StoreStats`), so the target
//! keeps working when the store's internals change.

use std::collections::HashMap;

use bytes::Bytes;
use ringcache_server::storage::{Item, MissReason, PolicyKind, Store, StoreConfig, StoreError};

use crate::alloc::measure;
use crate::input::Input;
use crate::{Signature, Target};

/// The `store` target (see the module doc).
pub struct StoreTarget;

/// Operations per input at most.
const MAX_OPS: usize = 1000;
/// Whole-store operations (sweep, flush, resize, retain, scan) per input at most: each
/// walks every shard (a few ms in a debug build), so past this they become a clock
/// step, keeping one input well under the runner's 2 s bound.
const MAX_WIDE_OPS: u32 = 32;
/// The clock the run starts at.
const START: u32 = 1_700_000_000;

/// The model's copy of one key's last write.
#[derive(Debug, Clone)]
struct Entry {
    value: Bytes,
    flags: u32,
    exptime: u32,
    cas: u64,
    stale: bool,
    /// False once a delayed `flush_all` may have hidden it (a miss is then allowed;
    /// a hit must still be this write).
    sure: bool,
}

impl Entry {
    fn live(&self, now: u32) -> bool {
        self.exptime == 0 || self.exptime > now
    }
}

struct Run {
    store: Store,
    max_item: usize,
    model: HashMap<Vec<u8>, Entry>,
    now: u32,
    /// A delayed flush: it takes effect once the clock reaches this.
    pending_flush: Option<u32>,
    /// The time of the last delayed flush that took effect: writes in that second are
    /// hidden too.
    flushed_at: Option<u32>,
    /// The limit was lowered below the start: items may be gone, larger ones refused.
    shrunk: bool,
    start_limit: usize,
    /// Whole-store operations so far (see [`MAX_WIDE_OPS`]).
    wide_ops: u32,
    sig: Signature,
}

fn key(inp: &mut Input<'_>) -> Vec<u8> {
    let n = inp.u8();
    match n % 16 {
        // A few long and binary keys among many short ones.
        0 => vec![b'L'; 200 + usize::from(n % 51)],
        1 => vec![0, b' ', b'\r', b'\n', n],
        _ => format!("k{}", n % 48).into_bytes(),
    }
}

fn value(inp: &mut Input<'_>, max_item: usize, tag: u64) -> Bytes {
    let len = match inp.u8() % 16 {
        0 => max_item - 8 + usize::from(inp.u8() % 24),
        1 => inp.uint(2) as usize % (max_item + 1),
        2 => 0,
        n => usize::from(n) * 7,
    };
    let mut v = vec![(tag % 251) as u8; len];
    let tag = tag.to_le_bytes();
    let n = len.min(8);
    v[..n].copy_from_slice(&tag[..n]);
    Bytes::from(v)
}

impl Run {
    fn new(inp: &mut Input<'_>) -> Run {
        let cfg = inp.u8();
        let policy = if cfg & 1 == 0 {
            PolicyKind::S3Fifo
        } else {
            PolicyKind::Clock
        };
        let memory_limit = [64 << 10, 256 << 10, 1 << 20][usize::from(cfg >> 1) % 3];
        let shards = 1 << ((cfg >> 3) % 3);
        let max_item = [1 << 10, 4 << 10, 16 << 10][usize::from(cfg >> 5) % 3];
        Run {
            store: Store::with_policy(
                StoreConfig {
                    memory_limit,
                    shards,
                    max_item_size: max_item,
                },
                policy,
            ),
            max_item,
            model: HashMap::new(),
            now: START,
            pending_flush: None,
            flushed_at: None,
            shrunk: false,
            start_limit: memory_limit,
            wide_ops: 0,
            sig: Signature::default(),
        }
    }

    /// Whether a live item may be missing: something was evicted or the limit shrank.
    fn lossy(&self) -> bool {
        self.shrunk || self.store.stats().evictions > 0
    }

    fn exptime(&self, inp: &mut Input<'_>) -> u32 {
        match inp.u8() % 8 {
            0 => self.now + 1,
            1 => self.now + 2,
            2 => self.now,
            3 => self.now - 1,
            _ => 0,
        }
    }

    /// A new write to the model: hidden by a delayed flush that took effect this second.
    fn write(&mut self, key: Vec<u8>, item: &Item) {
        let sure = self.flushed_at.is_none_or(|at| self.now > at);
        self.model.insert(
            key,
            Entry {
                value: item.value.clone(),
                flags: item.flags,
                exptime: item.exptime,
                cas: item.cas,
                stale: item.stale,
                sure,
            },
        );
    }

    /// Checks a hit against the model.
    fn hit(&self, key: &[u8], value: &[u8], flags: u32, cas: u64) -> Result<(), String> {
        match self.model.get(key) {
            Some(e) if e.live(self.now) && *e.value == *value && e.flags == flags && e.cas == cas => Ok(()),
            want => Err(format!(
                "{}: a hit on {} bytes, flags {flags}, cas {cas}; the last write was {want:?} (now {})",
                crate::show(key),
                value.len(),
                self.now
            )),
        }
    }

    /// Checks a miss against the model, then forgets the key (the store has not got it).
    fn miss(&mut self, key: &[u8], reason: MissReason) -> Result<(), String> {
        let entry = self.model.remove(key);
        if reason == MissReason::Expired && entry.as_ref().is_none_or(|e| e.live(self.now)) {
            return Err(format!(
                "{}: missed as expired; the last write was {entry:?}",
                crate::show(key)
            ));
        }
        if let Some(e) = entry {
            if e.live(self.now) && e.sure && !self.lossy() {
                return Err(format!(
                    "{}: missed ({reason:?}) with no eviction; the last write was {e:?} (now {})",
                    crate::show(key),
                    self.now
                ));
            }
        }
        Ok(())
    }

    /// An insert's outcome.
    fn inserted(&mut self, key: Vec<u8>, item: &Item, r: Result<(), StoreError>) -> Result<(), String> {
        match r {
            Ok(()) => {
                self.write(key, item);
                Ok(())
            }
            Err(StoreError::TooLarge) if key.len() + item.value.len() > self.max_item || self.shrunk => {
                self.sig.add_str("too large");
                self.model.remove(&key);
                Ok(())
            }
            Err(e) => Err(format!(
                "{}: {} bytes refused ({e:?}) under max_item_size {}",
                crate::show(&key),
                item.value.len(),
                self.max_item
            )),
        }
    }

    fn step(&mut self, inp: &mut Input<'_>, tag: u64) -> Result<(), String> {
        let mut op = inp.u8() % 16;
        if op >= 13 {
            self.wide_ops += 1;
            if self.wide_ops > MAX_WIDE_OPS {
                op = 12;
            }
        }
        self.sig.add(u64::from(op));
        let key = key(inp);
        let now = self.now;
        match op {
            // set
            0..=3 => {
                let item = Item::new(
                    value(inp, self.max_item, tag),
                    inp.uint(4) as u32,
                    self.exptime(inp),
                    self.store.next_cas(),
                    now,
                );
                let r = match (op == 3).then(|| self.store.land(&key, item.value.len(), item.flags, item.exptime, now))
                {
                    // A big value read into the store's chunks in pieces, as a
                    // connection does; sometimes abandoned half-way (the client went
                    // away): nothing is stored then, and the chunks go back.
                    Some(Some(mut landing)) => {
                        self.sig.add_str("landed");
                        let step = 1 + usize::from(inp.u8()) * 97;
                        let abandon = inp.u8().is_multiple_of(8);
                        let mut at = 0;
                        while !(landing.is_full() || abandon && at > 0) {
                            let spare = landing.spare();
                            let n = spare.len().min(step);
                            spare[..n].copy_from_slice(&item.value[at..at + n]);
                            landing.advance(n);
                            at += n;
                        }
                        if !landing.is_full() {
                            self.sig.add_str("abandoned");
                            return Ok(());
                        }
                        let bare = Item {
                            value: Bytes::new(),
                            ..item.clone()
                        };
                        self.store
                            .with(&key, now, |slot| slot.insert_landed(bare, &mut landing))
                    }
                    _ => self.store.with(&key, now, |slot| slot.insert(item.clone())),
                };
                self.inserted(key, &item, r)?;
            }
            // add: only when the key holds nothing live
            4 => {
                let item = Item::new(value(inp, self.max_item, tag), 0, 0, self.store.next_cas(), now);
                let (existing, r) = self.store.with(&key, now, |slot| match slot.get() {
                    Some(old) => (Some(old.clone()), None),
                    None => (None, Some((slot.insert(item.clone()), slot.miss_reason()))),
                });
                match (existing, r) {
                    (Some(old), _) => self.hit(&key, &old.value, old.flags, old.cas)?,
                    (None, Some((r, reason))) => {
                        self.miss(&key, reason)?;
                        self.inserted(key, &item, r)?;
                    }
                    (None, None) => unreachable!(),
                }
            }
            // read (the `get` hot path), sometimes get-and-touch
            5..=7 => {
                let touch = (op == 7).then(|| self.exptime(inp));
                let (got, reason) = self.store.with(&key, now, |slot| {
                    let got = slot.read(touch, |v, flags, cas| (v.to_bytes(), flags, cas));
                    (got, slot.miss_reason())
                });
                match got {
                    Some((v, flags, cas)) => {
                        self.hit(&key, &v, flags, cas)?;
                        if let (Some(exp), Some(e)) = (touch, self.model.get_mut(&key)) {
                            e.exptime = exp;
                        }
                    }
                    None => self.miss(&key, reason)?,
                }
            }
            // get a copy, check all of it, change its metadata (written back on close)
            8 => {
                let flags = inp.uint(4) as u32;
                let exptime = self.exptime(inp);
                let stale = inp.bool();
                let (got, reason) = self.store.with(&key, now, |slot| {
                    let got = slot.get().map(|item| {
                        let before = item.clone();
                        item.flags = flags;
                        item.exptime = exptime;
                        item.stale = stale;
                        before
                    });
                    (got, slot.miss_reason())
                });
                match got {
                    Some(item) => {
                        self.hit(&key, &item.value, item.flags, item.cas)?;
                        let e = self.model.get_mut(&key).expect("checked by hit");
                        if item.exptime != e.exptime || item.stale != e.stale {
                            return Err(format!("{}: got {item:?}, the last write was {e:?}", crate::show(&key)));
                        }
                        e.flags = flags;
                        e.exptime = exptime;
                        e.stale = stale;
                    }
                    None => self.miss(&key, reason)?,
                }
            }
            // replace the value through a copy (append, incr): a new item on close
            9 => {
                let value = value(inp, self.max_item, tag);
                let cas = self.store.next_cas();
                let got = self.store.with(&key, now, |slot| {
                    slot.get().map(|item| {
                        let before = item.clone();
                        item.value = value.clone();
                        item.cas = cas;
                        before
                    })
                });
                if let Some(old) = got {
                    self.hit(&key, &old.value, old.flags, old.cas)?;
                    let mut new = old;
                    new.value = value;
                    new.cas = cas;
                    // Stored unless too large; then the key is empty.
                    let back = self.store.with(&key, now, |slot| slot.get().cloned());
                    match back {
                        Some(b) if b.value == new.value && b.cas == cas && b.flags == new.flags => {
                            self.write(key, &new);
                        }
                        None if key.len() + new.value.len() > self.max_item || self.shrunk || self.lossy() => {
                            self.model.remove(&key);
                        }
                        other => {
                            return Err(format!(
                                "{}: the value replaced through get() reads back as {other:?}",
                                crate::show(&key)
                            ))
                        }
                    }
                } else {
                    self.model.remove(&key);
                }
            }
            // delete
            10 => {
                let removed = self.store.with(&key, now, |slot| slot.remove());
                let entry = self.model.remove(&key);
                let live = entry.as_ref().is_some_and(|e| e.live(now));
                if removed && !live {
                    return Err(format!(
                        "{}: removed a key the model has no live write of",
                        crate::show(&key)
                    ));
                }
                if !removed && live && entry.is_some_and(|e| e.sure) && !self.lossy() {
                    return Err(format!("{}: not removed, with no eviction", crate::show(&key)));
                }
            }
            // keep_newer: a version from a peer, older or newer than the live one
            11 => {
                let live_cas = self.model.get(&key).filter(|e| e.live(now)).map(|e| e.cas);
                let cas = match (inp.u8() % 3, live_cas) {
                    (0, Some(c)) => c,
                    (1, Some(c)) => c.saturating_sub(1).max(1),
                    _ => self.store.next_cas() + u64::from(inp.u8()),
                };
                let item = Item::new(value(inp, self.max_item, tag), 0, 0, cas, now);
                let stored = self.store.keep_newer(&key, item.clone(), now);
                let newer = live_cas.is_none_or(|c| c < cas);
                if stored {
                    // A delayed flush may have hidden the live version (not `sure`).
                    let sure = self.model.get(&key).is_some_and(|e| e.sure);
                    if !newer && sure && !self.lossy() {
                        return Err(format!(
                            "{}: kept cas {cas} over the live {live_cas:?}",
                            crate::show(&key)
                        ));
                    }
                    self.write(key, &item);
                } else if newer && !self.lossy() && key.len() + item.value.len() <= self.max_item {
                    let sure = self.model.get(&key).is_none_or(|e| e.sure);
                    if sure {
                        return Err(format!("{}: refused cas {cas} over {live_cas:?}", crate::show(&key)));
                    }
                } else if newer {
                    self.model.remove(&key);
                }
            }
            // the clock
            12 => {
                self.now += u32::from(inp.u8() % 4);
                self.advance();
            }
            13 => match inp.u8() % 8 {
                0 => {
                    self.store.flush_all(self.now, 0);
                    self.pending_flush = None;
                    self.model.clear();
                    let st = self.store.stats();
                    if st.curr_items != 0 || st.bytes != 0 {
                        return Err(format!("after flush_all: {st:?}"));
                    }
                }
                1 | 2 => {
                    let delay = 1 + inp.u8() % 3;
                    self.store.flush_all(self.now, i64::from(delay));
                    self.pending_flush = Some(self.now + u32::from(delay) - 1);
                    self.advance();
                }
                3 => {
                    let limit = [32 << 10, 64 << 10, 256 << 10, 1 << 20, 2 << 20][usize::from(inp.u8()) % 5];
                    self.store.set_memory_limit(limit, self.now);
                    self.shrunk |= limit < self.start_limit;
                }
                _ => self.store.sweep(self.now),
            },
            // drop the keys of one parity
            14 => {
                let parity = inp.u8() & 1;
                let keep = |k: &[u8]| k.iter().map(|&b| u32::from(b)).sum::<u32>() & 1 != u32::from(parity);
                self.store.retain_keys(now, |k| keep(k));
                self.model.retain(|k, _| keep(k));
            }
            // everything the store holds is the model's
            _ => self.scan()?,
        }
        Ok(())
    }

    fn advance(&mut self) {
        if let Some(at) = self.pending_flush.filter(|&at| at <= self.now) {
            self.pending_flush = None;
            self.flushed_at = Some(at);
            for e in self.model.values_mut() {
                e.sure = false;
            }
        }
    }

    fn scan(&mut self) -> Result<(), String> {
        let mut seen = HashMap::new();
        let mut failure = None;
        for i in 0..self.store.shard_count() {
            self.store.scan_shard(i, self.now, |k, v, flags, exptime, cas| {
                if failure.is_some() {
                    return;
                }
                let e = self.model.get(k);
                let ok = e.is_some_and(|e| {
                    e.live(self.now) && *e.value == *v && e.flags == flags && e.exptime == exptime && e.cas == cas
                });
                if !ok || seen.insert(k.to_vec(), ()).is_some() {
                    failure = Some(format!(
                        "scan: {} ({} bytes, cas {cas}, exptime {exptime}); the last write was {e:?}",
                        crate::show(k),
                        v.len()
                    ));
                }
            });
        }
        failure.map_or(Ok(()), Err)
    }

    fn check_memory(&self) -> Result<(), String> {
        let st = self.store.stats();
        let limit = self.store.memory_limit() as u64;
        if st.allocated > limit || st.bytes > st.allocated || st.curr_items > self.model.len() as u64 {
            return Err(format!(
                "store counters {st:?} against the limit {limit} and {} keys in the model",
                self.model.len()
            ));
        }
        Ok(())
    }
}

impl Target for StoreTarget {
    fn name(&self) -> &'static str {
        "store"
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[b"\0\0\0\0", b"\x0f\x0f", b"\x0c\x03"]
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut fill = vec![0x02];
        for i in 0..200u8 {
            fill.extend([0, i, 5, 0, 0, 0, 0, 4]);
        }
        vec![
            vec![0, 0, 2, 3, 1, 2, 3, 4, 4, 5, 2, 15, 0],
            vec![0x21, 0, 2, 0, 7, 7, 7, 7, 0, 12, 0, 3, 5, 2, 10, 2],
            vec![1, 0, 1, 0, 9, 9, 9, 9, 1, 13, 0, 1, 12, 0, 2, 5, 1, 14, 0, 0],
            fill,
        ]
    }

    fn run(&self, input: &[u8]) -> Result<u64, String> {
        let mut inp = Input::new(input);
        let mut run = Run::new(&mut inp);
        let mut tag = 0;
        while !inp.is_empty() && tag < MAX_OPS as u64 {
            tag += 1;
            let budget = run.store.memory_limit() + 2 * run.max_item + 64 * 1024;
            let (r, usage) = measure(|| run.step(&mut inp, tag));
            r.map_err(|e| format!("op {tag}: {e}"))?;
            if usage.largest > budget {
                return Err(format!("op {tag}: allocated {} bytes at once", usage.largest));
            }
            run.check_memory().map_err(|e| format!("op {tag}: {e}"))?;
        }
        run.scan()?;
        Ok(run.sig.finish())
    }
}
