//! How one item is laid out inside a segment.
//!
//! Items are packed back to back, unaligned, with no allocator header and no padding.
//! The header has a variable length: what most items share is stored once per
//! segment (a CAS base and a time base, [`Bases`]) and each item keeps small deltas.
//!
//! ```text
//! size   field
//!    1   key length (keys are at most 250 bytes)
//!    1   bits: FETCHED, DEAD, 2-bit access frequency, HAS_FLAGS, HAS_EXP, HAS_EXT, CAS_NEG
//!   0/1  ext bits (if HAS_EXT): STALE, WIN_SENT
//!  1-5   value length, varint
//!  1-10  |CAS unique - segment's CAS base|, varint (sign in CAS_NEG)
//!  1-5   zigzag(last access - segment's time base), varint
//!  0-5   client flags, varint (if HAS_FLAGS: flags 0 take no bytes)
//!  0-5   zigzag(exptime - segment's time base), varint (if HAS_EXP: 0 = never, no bytes)
//!    k   key
//!    v   value
//! ```
//!
//! A segment's CAS base is the CAS unique of the first item written to it and its time
//! base the time it was opened, so an item stored without flags or expiry into a
//! fresh segment has a 5- or 6-byte header: key length, bits, value length (1 byte up
//! to 127), CAS delta (1 byte below 128 uniques since the segment's first item, 2
//! below 16,384) and last access (1 byte within 63 s of the segment's opening).
//!
//! Varints are LEB128, and a field rewritten in place keeps its width (a smaller value
//! is padded with continuation bytes, which decode the same). A rewrite that needs
//! more bytes fails ([`ItemMut::try_set_meta`], [`ItemMut::try_mark_read`]); the shard
//! then moves the item to a fresh location with a header re-encoded for it.

use bytes::Bytes;

use super::Item;

/// The most bytes a header takes (key length, bits, ext, then the five varints).
pub(super) const MAX_HEADER: usize = 3 + 5 + 10 + 5 + 5 + 5;

/// Bits: fetched since stored.
pub(super) const FETCHED: u8 = 1;
/// Bits: deleted or replaced; the bytes stay until the segment is reclaimed.
pub(super) const DEAD: u8 = 2;
/// Bits: the access frequency the eviction policy reads, 0..=3.
pub(super) const FREQ_SHIFT: u8 = 2;
const FREQ_MASK: u8 = 0b11 << FREQ_SHIFT;
const HAS_FLAGS: u8 = 0x10;
const HAS_EXP: u8 = 0x20;
const HAS_EXT: u8 = 0x40;
const CAS_NEG: u8 = 0x80;

/// Ext bits: marked stale by a meta invalidation.
const EXT_STALE: u8 = 1;
/// Ext bits: a meta win flag was handed out.
const EXT_WIN_SENT: u8 = 2;

/// [`Meta::bits`]: fetched since stored.
pub(super) const M_FETCHED: u8 = 1;
/// [`Meta::bits`]: marked stale.
pub(super) const M_STALE: u8 = 2;
/// [`Meta::bits`]: a win flag was handed out.
pub(super) const M_WIN_SENT: u8 = 4;

/// What a segment stores once for all its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bases {
    pub(super) cas: u64,
    pub(super) time: u32,
}

/// The metadata an item is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta {
    pub(super) cas: u64,
    pub(super) exptime: u32,
    pub(super) flags: u32,
    pub(super) last_access: u32,
    /// [`M_FETCHED`], [`M_STALE`], [`M_WIN_SENT`].
    pub(super) bits: u8,
}

impl Meta {
    /// The metadata of `item`, with the last access time given (the store records its
    /// own: the store time on insert, a clamped one on write-back).
    pub(super) fn of(item: &Item, last_access: u32) -> Meta {
        Meta {
            cas: item.cas,
            exptime: item.exptime,
            flags: item.flags,
            last_access,
            bits: (if item.fetched { M_FETCHED } else { 0 })
                | (if item.stale { M_STALE } else { 0 })
                | (if item.win_sent { M_WIN_SENT } else { 0 }),
        }
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn time_delta(t: u32, base: u32) -> u64 {
    zigzag(i64::from(t) - i64::from(base))
}

fn time_at(v: u64, base: u32) -> u32 {
    (i64::from(base) + unzigzag(v)).clamp(0, i64::from(u32::MAX)) as u32
}

/// The CAS field: magnitude and sign.
fn cas_delta(cas: u64, base: u64) -> (u64, bool) {
    if cas >= base {
        (cas - base, false)
    } else {
        (base - cas, true)
    }
}

/// Writes `v` in exactly `width` bytes (padding with continuation bytes); `width` is at
/// least [`varint_len`] of `v`.
fn put_varint(out: &mut [u8], mut v: u64, width: usize) {
    for (i, b) in out[..width].iter_mut().enumerate() {
        let more = i + 1 < width;
        *b = (v & 0x7f) as u8 | if more { 0x80 } else { 0 };
        v >>= 7;
    }
}

/// Reads a varint at `at`: (value, width).
fn get_varint(b: &[u8], at: usize) -> (u64, usize) {
    let mut v = 0u64;
    let mut i = 0;
    loop {
        let byte = b[at + i];
        if i < 10 {
            v |= u64::from(byte & 0x7f) << (7 * i);
        }
        i += 1;
        if byte & 0x80 == 0 {
            return (v, i);
        }
    }
}

/// Bytes an item with this key, value and metadata takes in a segment with `bases`.
pub(super) fn size(key_len: usize, value_len: usize, meta: &Meta, bases: Bases) -> usize {
    header_len(value_len, meta, bases) + key_len + value_len
}

fn header_len(value_len: usize, meta: &Meta, bases: Bases) -> usize {
    let ext = usize::from(meta.bits & (M_STALE | M_WIN_SENT) != 0);
    let flags = if meta.flags != 0 {
        varint_len(u64::from(meta.flags))
    } else {
        0
    };
    let exp = if meta.exptime != 0 {
        varint_len(time_delta(meta.exptime, bases.time))
    } else {
        0
    };
    2 + ext
        + varint_len(value_len as u64)
        + varint_len(cas_delta(meta.cas, bases.cas).0)
        + varint_len(time_delta(meta.last_access, bases.time))
        + flags
        + exp
}

/// Bytes the commonest item takes: no flags, no expiry, written to a fresh segment.
pub(super) fn min_size(key_len: usize, value_len: usize) -> usize {
    let meta = Meta {
        cas: 0,
        exptime: 0,
        flags: 0,
        last_access: 0,
        bits: 0,
    };
    size(key_len, value_len, &meta, Bases { cas: 0, time: 0 })
}

/// Writes an item at the start of `out`, which is exactly [`size`] bytes long, with
/// access frequency `freq`.
pub(super) fn write(out: &mut [u8], key: &[u8], value: &[u8], meta: &Meta, bases: Bases, freq: u8) {
    debug_assert_eq!(out.len(), size(key.len(), value.len(), meta, bases));
    let at = write_head(out, key, value.len(), meta, bases, freq);
    out[at..].copy_from_slice(value);
}

/// Writes the header and key of an item with a value of `value_len` bytes at the start
/// of `out`; returns where the value goes. For a big item in chunks, `out` is its first
/// chunk.
pub(super) fn write_head(out: &mut [u8], key: &[u8], value_len: usize, meta: &Meta, bases: Bases, freq: u8) -> usize {
    let (cas, neg) = cas_delta(meta.cas, bases.cas);
    let ext = (if meta.bits & M_STALE != 0 { EXT_STALE } else { 0 })
        | (if meta.bits & M_WIN_SENT != 0 { EXT_WIN_SENT } else { 0 });
    let mut bits = (if meta.bits & M_FETCHED != 0 { FETCHED } else { 0 }) | ((freq.min(3) << FREQ_SHIFT) & FREQ_MASK);
    if meta.flags != 0 {
        bits |= HAS_FLAGS;
    }
    if meta.exptime != 0 {
        bits |= HAS_EXP;
    }
    if ext != 0 {
        bits |= HAS_EXT;
    }
    if neg {
        bits |= CAS_NEG;
    }
    out[0] = key.len() as u8;
    out[1] = bits;
    let mut at = 2;
    if ext != 0 {
        out[at] = ext;
        at += 1;
    }
    let mut put = |v: u64| {
        let w = varint_len(v);
        put_varint(&mut out[at..], v, w);
        at += w;
    };
    put(value_len as u64);
    put(cas);
    put(time_delta(meta.last_access, bases.time));
    if meta.flags != 0 {
        put(u64::from(meta.flags));
    }
    if meta.exptime != 0 {
        put(time_delta(meta.exptime, bases.time));
    }
    out[at..at + key.len()].copy_from_slice(key);
    at + key.len()
}

/// The key of the item at the start of `buf`, found by skipping the header's varints
/// without decoding them: the index probes (`Shard::find`) compare keys at every
/// candidate, and a full [`ItemRef::new`] decodes fields they never read.
#[inline]
pub(super) fn key_of(buf: &[u8]) -> &[u8] {
    let bits = buf[1];
    let mut at = 2 + usize::from(bits & HAS_EXT != 0);
    // Value length, CAS delta and last access, then flags and expiry when present.
    let fields = 3 + usize::from(bits & HAS_FLAGS != 0) + usize::from(bits & HAS_EXP != 0);
    for _ in 0..fields {
        while buf[at] & 0x80 != 0 {
            at += 1;
        }
        at += 1;
    }
    &buf[at..at + usize::from(buf[0])]
}

/// Where a varint field sits in a header: offset and width (width 0: absent).
#[derive(Debug, Clone, Copy, Default)]
struct Field {
    at: u8,
    width: u8,
}

/// A decoded header.
#[derive(Debug, Clone, Copy)]
pub(super) struct Header {
    key_len: u8,
    /// Where the key starts (= header length).
    key_at: u8,
    value_len: u32,
    cas: u64,
    last_access: u32,
    flags: u32,
    exptime: u32,
    ext: u8,
    cas_f: Field,
    last_f: Field,
    flags_f: Field,
    exp_f: Field,
}

fn decode(b: &[u8], bases: Bases) -> Header {
    let bits = b[1];
    let mut at = 2;
    let ext = if bits & HAS_EXT != 0 {
        at += 1;
        b[2]
    } else {
        0
    };
    let mut field = || {
        let (v, w) = get_varint(b, at);
        let f = Field {
            at: at as u8,
            width: w as u8,
        };
        at += w;
        (v, f)
    };
    let (value_len, _) = field();
    let (cas_d, cas_f) = field();
    let (last, last_f) = field();
    let (flags, flags_f) = if bits & HAS_FLAGS != 0 {
        field()
    } else {
        (0, Field::default())
    };
    let (exp, exp_f) = if bits & HAS_EXP != 0 {
        field()
    } else {
        (0, Field::default())
    };
    let cas = if bits & CAS_NEG != 0 {
        bases.cas.wrapping_sub(cas_d)
    } else {
        bases.cas.wrapping_add(cas_d)
    };
    Header {
        key_len: b[0],
        key_at: at as u8,
        value_len: value_len as u32,
        cas,
        last_access: time_at(last, bases.time),
        flags: flags as u32,
        exptime: if bits & HAS_EXP != 0 {
            time_at(exp, bases.time)
        } else {
            0
        },
        ext,
        cas_f,
        last_f,
        flags_f,
        exp_f,
    }
}

/// A read-only view of the item starting at the beginning of a slice (which may run
/// on past the item's end), decoded against its segment's bases.
#[derive(Clone, Copy)]
pub(super) struct ItemRef<'a> {
    buf: &'a [u8],
    /// For a big item in chunks (`shard.rs`): the chunks after `buf`, the first one.
    rest: &'a [Box<[u8]>],
    h: Header,
}

impl<'a> ItemRef<'a> {
    pub(super) fn new(buf: &'a [u8], bases: Bases) -> ItemRef<'a> {
        ItemRef::chunked(buf, &[], bases)
    }

    /// The item at the start of `buf` whose bytes go on in `rest`: a big item's first
    /// chunk (which holds its header, key and the value's start) and the others.
    pub(super) fn chunked(buf: &'a [u8], rest: &'a [Box<[u8]>], bases: Bases) -> ItemRef<'a> {
        ItemRef::decoded(buf, rest, decode(buf, bases))
    }

    /// The item at the start of `buf` (and `rest`) whose header `h` is decoded
    /// already: a read decodes it once for its checks, its update and its reply.
    pub(super) fn decoded(buf: &'a [u8], rest: &'a [Box<[u8]>], h: Header) -> ItemRef<'a> {
        ItemRef { buf, rest, h }
    }

    /// The decoded header, for [`ItemRef::decoded`] and [`ItemMut::try_mark_read`].
    pub(super) fn header(self) -> Header {
        self.h
    }

    pub(super) fn key_len(self) -> usize {
        usize::from(self.h.key_len)
    }

    pub(super) fn value_len(self) -> usize {
        self.h.value_len as usize
    }

    /// Bytes the item takes in its segment.
    pub(super) fn size(self) -> usize {
        usize::from(self.h.key_at) + self.key_len() + self.value_len()
    }

    pub(super) fn key(self) -> &'a [u8] {
        let at = usize::from(self.h.key_at);
        &self.buf[at..at + self.key_len()]
    }

    pub(super) fn value(self) -> Value<'a> {
        let start = usize::from(self.h.key_at) + self.key_len();
        let len = self.value_len();
        // A chunked item fills its first chunk; any other lies within `buf`.
        let end = if self.rest.is_empty() {
            start + len
        } else {
            self.buf.len().min(start + len)
        };
        Value {
            head: &self.buf[start..end],
            rest: self.rest,
            len,
        }
    }

    pub(super) fn cas(self) -> u64 {
        self.h.cas
    }

    pub(super) fn exptime(self) -> u32 {
        self.h.exptime
    }

    pub(super) fn flags(self) -> u32 {
        self.h.flags
    }

    pub(super) fn last_access(self) -> u32 {
        self.h.last_access
    }

    fn bits(self) -> u8 {
        self.buf[1]
    }

    pub(super) fn is_dead(self) -> bool {
        self.bits() & DEAD != 0
    }

    pub(super) fn fetched(self) -> bool {
        self.bits() & FETCHED != 0
    }

    pub(super) fn freq(self) -> u8 {
        (self.bits() & FREQ_MASK) >> FREQ_SHIFT
    }

    /// The item's metadata.
    pub(super) fn meta(self) -> Meta {
        Meta {
            cas: self.cas(),
            exptime: self.exptime(),
            flags: self.flags(),
            last_access: self.last_access(),
            bits: (if self.fetched() { M_FETCHED } else { 0 })
                | (if self.h.ext & EXT_STALE != 0 { M_STALE } else { 0 })
                | (if self.h.ext & EXT_WIN_SENT != 0 { M_WIN_SENT } else { 0 }),
        }
    }

    /// The item as the public [`Item`], with `value` a copy of its bytes.
    pub(super) fn to_item(self, value: Bytes) -> Item {
        Item {
            value,
            flags: self.flags(),
            exptime: self.exptime(),
            cas: self.cas(),
            stale: self.h.ext & EXT_STALE != 0,
            win_sent: self.h.ext & EXT_WIN_SENT != 0,
            fetched: self.fetched(),
            last_access: self.last_access(),
        }
    }
}

/// An item's value as it lies in the store: one slice, or for a big item (stored in
/// segment-size chunks, `shard.rs`) one slice per chunk, in order. Borrowed under the
/// shard's lock.
#[derive(Clone, Copy)]
pub struct Value<'a> {
    /// The value's bytes in the buffer that holds the item's header.
    head: &'a [u8],
    /// The chunks after that buffer (the last one partly the value's).
    rest: &'a [Box<[u8]>],
    len: usize,
}

impl<'a> Value<'a> {
    /// A value that is one slice.
    pub fn flat(bytes: &'a [u8]) -> Value<'a> {
        Value {
            head: bytes,
            rest: &[],
            len: bytes.len(),
        }
    }

    /// The value's length in bytes.
    pub fn len(self) -> usize {
        self.len
    }

    /// Whether the value has no bytes.
    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// The value's bytes, if they are one slice (every value no bigger than a
    /// segment).
    pub fn as_slice(self) -> Option<&'a [u8]> {
        (self.head.len() == self.len).then_some(self.head)
    }

    /// The value's pieces, in order: the first may be empty, no other is.
    pub fn slices(self) -> impl Iterator<Item = &'a [u8]> + Clone {
        let mut left = self.len - self.head.len();
        std::iter::once(self.head).chain(self.rest.iter().map_while(move |c| {
            let n = left.min(c.len());
            left -= n;
            (n > 0).then(|| &c[..n])
        }))
    }

    /// A copy of the value in one buffer.
    pub fn to_vec(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for s in self.slices() {
            v.extend_from_slice(s);
        }
        v
    }

    /// A copy of the value as [`Bytes`].
    pub fn to_bytes(self) -> Bytes {
        match self.as_slice() {
            Some(s) => Bytes::copy_from_slice(s),
            None => Bytes::from(self.to_vec()),
        }
    }
}

impl PartialEq<[u8]> for Value<'_> {
    fn eq(&self, other: &[u8]) -> bool {
        if self.len != other.len() {
            return false;
        }
        let mut at = 0;
        self.slices().all(|s| {
            let same = *s == other[at..at + s.len()];
            at += s.len();
            same
        })
    }
}

impl std::fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Value").field("len", &self.len).finish()
    }
}

/// A mutable view of the item starting at the beginning of a slice.
pub(super) struct ItemMut<'a> {
    buf: &'a mut [u8],
    bases: Bases,
}

impl<'a> ItemMut<'a> {
    pub(super) fn new(buf: &'a mut [u8], bases: Bases) -> ItemMut<'a> {
        ItemMut { buf, bases }
    }

    pub(super) fn as_ref(&self) -> ItemRef<'_> {
        ItemRef::new(self.buf, self.bases)
    }

    pub(super) fn set_dead(&mut self) {
        self.buf[1] |= DEAD;
    }

    /// Counts an access for the eviction policy (saturating at 3).
    pub(super) fn bump_freq(&mut self) {
        let bits = self.buf[1];
        if bits & FREQ_MASK != FREQ_MASK {
            self.buf[1] = bits + (1 << FREQ_SHIFT);
        }
    }

    pub(super) fn set_freq(&mut self, freq: u8) {
        self.buf[1] = (self.buf[1] & !FREQ_MASK) | ((freq.min(3) << FREQ_SHIFT) & FREQ_MASK);
    }

    /// Writes `v` into field `f` if it fits its width.
    fn fits(f: Field, v: u64) -> bool {
        f.width > 0 && varint_len(v) <= usize::from(f.width)
    }

    fn put(&mut self, f: Field, v: u64) {
        put_varint(&mut self.buf[usize::from(f.at)..], v, usize::from(f.width));
    }

    /// Records a read at `now`: fetched, last access, and for get-and-touch a new
    /// expiry. False, with nothing changed, if the new values need a wider header.
    /// `h` is the item's header as decoded before this call (the bits may have
    /// changed since, the fields not).
    pub(super) fn try_mark_read(&mut self, h: &Header, now: u32, touch_to: Option<u32>) -> bool {
        let last = time_delta(h.last_access.max(now), self.bases.time);
        if !Self::fits(h.last_f, last) {
            return false;
        }
        if let Some(exp) = touch_to.filter(|&e| e != h.exptime) {
            if exp == 0 || !Self::fits(h.exp_f, time_delta(exp, self.bases.time)) {
                return false;
            }
        }
        self.buf[1] |= FETCHED;
        self.put(h.last_f, last);
        if let Some(exp) = touch_to.filter(|&e| e != h.exptime) {
            self.put(h.exp_f, time_delta(exp, self.bases.time));
        }
        true
    }

    /// Overwrites the metadata (not key, value, liveness or frequency). False, with
    /// nothing changed, if it needs a wider header.
    pub(super) fn try_set_meta(&mut self, meta: &Meta) -> bool {
        let h = self.as_ref().h;
        let (cas, neg) = cas_delta(meta.cas, self.bases.cas);
        let ext_needed = meta.bits & (M_STALE | M_WIN_SENT) != 0;
        let has_ext = self.buf[1] & HAS_EXT != 0;
        let last = time_delta(meta.last_access, self.bases.time);
        let flags_ok = meta.flags == 0 && h.flags_f.width == 0 || Self::fits(h.flags_f, u64::from(meta.flags));
        let exp = time_delta(meta.exptime, self.bases.time);
        let exp_ok = meta.exptime == 0 && h.exp_f.width == 0 || meta.exptime != 0 && Self::fits(h.exp_f, exp);
        if !(Self::fits(h.cas_f, cas) && Self::fits(h.last_f, last) && flags_ok && exp_ok && (has_ext || !ext_needed)) {
            return false;
        }
        self.put(h.cas_f, cas);
        self.put(h.last_f, last);
        if h.flags_f.width > 0 {
            self.put(h.flags_f, u64::from(meta.flags));
        }
        if h.exp_f.width > 0 {
            self.put(h.exp_f, exp);
        }
        let mut bits = self.buf[1] & !(FETCHED | CAS_NEG);
        if meta.bits & M_FETCHED != 0 {
            bits |= FETCHED;
        }
        if neg {
            bits |= CAS_NEG;
        }
        self.buf[1] = bits;
        if has_ext {
            self.buf[2] = (if meta.bits & M_STALE != 0 { EXT_STALE } else { 0 })
                | (if meta.bits & M_WIN_SENT != 0 { EXT_WIN_SENT } else { 0 });
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bases = Bases {
        cas: 1000,
        time: 1_700_000_000,
    };

    fn meta() -> Meta {
        Meta {
            cas: 1005,
            exptime: 0,
            flags: 0,
            last_access: B.time,
            bits: 0,
        }
    }

    #[test]
    fn common_item_has_a_five_byte_header() {
        assert_eq!(size(14, 100, &meta(), B), 5 + 14 + 100);
        assert_eq!(min_size(14, 100), 5 + 14 + 100);
        // 2 more bytes of CAS delta past 127 uniques, flags and expiry when set.
        let m = Meta {
            cas: 1000 + 200,
            flags: 7,
            exptime: B.time + 3600,
            ..meta()
        };
        assert_eq!(size(14, 100, &m, B), 5 + 1 + 1 + 2 + 114);
    }

    #[test]
    fn round_trip_and_bits() {
        for m in [
            meta(),
            Meta {
                cas: 3,
                exptime: 1,
                flags: u32::MAX,
                last_access: B.time - 10_000,
                bits: M_FETCHED | M_STALE | M_WIN_SENT,
            },
            Meta {
                cas: u64::MAX,
                exptime: u32::MAX,
                flags: 1,
                last_access: u32::MAX,
                bits: M_WIN_SENT,
            },
        ] {
            let n = size(3, 5, &m, B);
            let mut buf = vec![0xAA; n + 4];
            write(&mut buf[..n], b"key", b"value", &m, B, 2);
            let r = ItemRef::new(&buf, B);
            assert_eq!((r.key(), r.value().as_slice()), (&b"key"[..], Some(&b"value"[..])));
            assert_eq!(key_of(&buf), b"key");
            assert_eq!(r.meta(), m);
            assert_eq!(r.size(), n);
            assert_eq!(r.freq(), 2);
            assert!(!r.is_dead());
            assert_eq!(buf[n..], [0xAA; 4], "nothing written past the item");
        }
    }

    #[test]
    fn in_place_rewrites_keep_the_width_or_refuse() {
        let m = Meta {
            exptime: B.time + 100,
            flags: 300,
            ..meta()
        };
        let n = size(3, 5, &m, B);
        let mut buf = vec![0; n];
        write(&mut buf, b"key", b"value", &m, B, 0);
        let mut w = ItemMut::new(&mut buf, B);
        for _ in 0..5 {
            w.bump_freq();
        }
        assert_eq!(w.as_ref().freq(), 3);
        w.set_freq(1);
        let h = w.as_ref().header();
        assert!(w.try_mark_read(&h, B.time + 20, Some(B.time + 50)));
        assert_eq!(
            (w.as_ref().last_access(), w.as_ref().exptime()),
            (B.time + 20, B.time + 50)
        );
        assert!(w.as_ref().fetched());
        let h = w.as_ref().header();
        assert!(
            !w.try_mark_read(&h, B.time + 100_000, None),
            "last access needs more bytes"
        );
        assert!(
            !w.try_mark_read(&h, B.time, Some(0)),
            "no expiry field to clear in place"
        );
        // Smaller values pad to the old width and decode the same.
        let small = Meta {
            flags: 1,
            cas: 1000,
            exptime: B.time + 1,
            last_access: B.time,
            bits: 0,
        };
        assert!(w.try_set_meta(&small));
        assert_eq!(w.as_ref().meta(), small);
        assert_eq!(w.as_ref().freq(), 1, "metadata writes keep the frequency");
        assert_eq!(w.as_ref().size(), n);
        assert!(!w.try_set_meta(&Meta { bits: M_STALE, ..small }), "no ext byte");
        assert!(!w.try_set_meta(&Meta { cas: 1 << 40, ..small }));
        assert!(w.try_set_meta(&Meta { cas: 990, ..small }), "an older CAS fits too");
        assert_eq!(w.as_ref().cas(), 990);
        w.set_dead();
        assert!(w.as_ref().is_dead());
    }
}
