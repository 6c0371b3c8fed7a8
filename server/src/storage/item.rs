//! How one item is laid out inside a segment.
//!
//! Items are packed back to back, unaligned, with no allocator header and no padding:
//!
//! ```text
//! offset  size  field
//!      0     8  CAS unique (little-endian, as are all fields)
//!      8     4  exptime: absolute Unix time, 0 = never
//!     12     4  client flags
//!     16     4  last access: Unix time; also the store time `flush_all N` compares
//!     20     4  value length
//!     24     1  key length (keys are at most 250 bytes)
//!     25     1  bits: FETCHED, STALE, WIN_SENT, DEAD, and a 2-bit access frequency
//!     26     k  key
//!   26+k     v  value
//! ```
//!
//! so an item takes [`HEADER`] + key + value bytes of its segment, 26 bytes of
//! metadata where a heap allocation per item costs 40 to 60 (slab entry, allocator
//! header and rounding). Reads decode fields with `from_le_bytes` on byte slices,
//! which compiles to plain unaligned loads on x86-64 and AArch64.

use bytes::Bytes;

use super::Item;

/// Bytes of metadata in front of every item's key.
pub(super) const HEADER: usize = 26;

const CAS: usize = 0;
const EXPTIME: usize = 8;
const FLAGS: usize = 12;
const ACCESS: usize = 16;
const VALUE_LEN: usize = 20;
const KEY_LEN: usize = 24;
const BITS: usize = 25;

/// Bits: fetched since stored.
pub(super) const FETCHED: u8 = 1;
/// Bits: marked stale by a meta invalidation.
pub(super) const STALE: u8 = 2;
/// Bits: a meta win flag was handed out.
pub(super) const WIN_SENT: u8 = 4;
/// Bits: deleted or replaced; the bytes stay until the segment is reclaimed.
pub(super) const DEAD: u8 = 8;
/// Bits: the access frequency the eviction policy reads, 0..=3.
pub(super) const FREQ_SHIFT: u8 = 4;
const FREQ_MASK: u8 = 0b11 << FREQ_SHIFT;
/// The bits an item keeps as metadata (not policy or liveness state).
const META_BITS: u8 = FETCHED | STALE | WIN_SENT;

/// The metadata an item is written with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Meta {
    pub(super) cas: u64,
    pub(super) exptime: u32,
    pub(super) flags: u32,
    pub(super) last_access: u32,
    /// [`FETCHED`], [`STALE`], [`WIN_SENT`].
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
            bits: (if item.fetched { FETCHED } else { 0 })
                | (if item.stale { STALE } else { 0 })
                | (if item.win_sent { WIN_SENT } else { 0 }),
        }
    }
}

/// Bytes an item with this key and value takes in a segment.
pub(super) const fn size(key_len: usize, value_len: usize) -> usize {
    HEADER + key_len + value_len
}

/// Writes an item at the start of `out`, which is exactly [`size`] bytes long.
pub(super) fn write(out: &mut [u8], key: &[u8], value: &[u8], meta: &Meta) {
    debug_assert_eq!(out.len(), size(key.len(), value.len()));
    out[CAS..CAS + 8].copy_from_slice(&meta.cas.to_le_bytes());
    out[EXPTIME..EXPTIME + 4].copy_from_slice(&meta.exptime.to_le_bytes());
    out[FLAGS..FLAGS + 4].copy_from_slice(&meta.flags.to_le_bytes());
    out[ACCESS..ACCESS + 4].copy_from_slice(&meta.last_access.to_le_bytes());
    out[VALUE_LEN..VALUE_LEN + 4].copy_from_slice(&(value.len() as u32).to_le_bytes());
    out[KEY_LEN] = key.len() as u8;
    out[BITS] = meta.bits & META_BITS;
    out[HEADER..HEADER + key.len()].copy_from_slice(key);
    out[HEADER + key.len()..].copy_from_slice(value);
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// A read-only view of the item starting at the beginning of a slice (which may run
/// on past the item's end).
#[derive(Clone, Copy)]
pub(super) struct ItemRef<'a>(pub(super) &'a [u8]);

impl<'a> ItemRef<'a> {
    pub(super) fn key_len(self) -> usize {
        usize::from(self.0[KEY_LEN])
    }

    pub(super) fn value_len(self) -> usize {
        u32_at(self.0, VALUE_LEN) as usize
    }

    /// Bytes the item takes in its segment.
    pub(super) fn size(self) -> usize {
        size(self.key_len(), self.value_len())
    }

    pub(super) fn key(self) -> &'a [u8] {
        &self.0[HEADER..HEADER + self.key_len()]
    }

    pub(super) fn value(self) -> &'a [u8] {
        let start = HEADER + self.key_len();
        &self.0[start..start + self.value_len()]
    }

    pub(super) fn cas(self) -> u64 {
        u64::from_le_bytes(self.0[CAS..CAS + 8].try_into().expect("8 bytes"))
    }

    pub(super) fn exptime(self) -> u32 {
        u32_at(self.0, EXPTIME)
    }

    pub(super) fn flags(self) -> u32 {
        u32_at(self.0, FLAGS)
    }

    pub(super) fn last_access(self) -> u32 {
        u32_at(self.0, ACCESS)
    }

    pub(super) fn bits(self) -> u8 {
        self.0[BITS]
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

    /// The item as the public [`Item`], with `value` a copy of its bytes.
    pub(super) fn to_item(self, value: Bytes) -> Item {
        let bits = self.bits();
        Item {
            value,
            flags: self.flags(),
            exptime: self.exptime(),
            cas: self.cas(),
            stale: bits & STALE != 0,
            win_sent: bits & WIN_SENT != 0,
            fetched: bits & FETCHED != 0,
            last_access: self.last_access(),
        }
    }
}

/// A mutable view of the item starting at the beginning of a slice.
pub(super) struct ItemMut<'a>(pub(super) &'a mut [u8]);

impl ItemMut<'_> {
    pub(super) fn as_ref(&self) -> ItemRef<'_> {
        ItemRef(self.0)
    }

    pub(super) fn set_dead(&mut self) {
        self.0[BITS] |= DEAD;
    }

    /// Counts an access for the eviction policy (saturating at 3).
    pub(super) fn bump_freq(&mut self) {
        let bits = self.0[BITS];
        if bits & FREQ_MASK != FREQ_MASK {
            self.0[BITS] = bits + (1 << FREQ_SHIFT);
        }
    }

    pub(super) fn set_freq(&mut self, freq: u8) {
        self.0[BITS] = (self.0[BITS] & !FREQ_MASK) | ((freq.min(3) << FREQ_SHIFT) & FREQ_MASK);
    }

    /// Records a read at `now`: fetched, last access, and for get-and-touch a new
    /// expiry.
    pub(super) fn mark_read(&mut self, now: u32, touch_to: Option<u32>) {
        self.0[BITS] |= FETCHED;
        let last = u32_at(self.0, ACCESS).max(now);
        put_u32(self.0, ACCESS, last);
        if let Some(exp) = touch_to {
            put_u32(self.0, EXPTIME, exp);
        }
    }

    /// Overwrites the metadata (not key, value, liveness or frequency).
    pub(super) fn set_meta(&mut self, meta: &Meta) {
        self.0[CAS..CAS + 8].copy_from_slice(&meta.cas.to_le_bytes());
        put_u32(self.0, EXPTIME, meta.exptime);
        put_u32(self.0, FLAGS, meta.flags);
        put_u32(self.0, ACCESS, meta.last_access);
        self.0[BITS] = (self.0[BITS] & !META_BITS) | (meta.bits & META_BITS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bits() {
        let meta = Meta {
            cas: 0x0102_0304_0506_0708,
            exptime: 7,
            flags: u32::MAX,
            last_access: 99,
            bits: FETCHED | DEAD,
        };
        let mut buf = vec![0xAA; size(3, 5) + 4];
        write(&mut buf[..size(3, 5)], b"key", b"value", &meta);
        let r = ItemRef(&buf);
        assert_eq!((r.key(), r.value()), (&b"key"[..], &b"value"[..]));
        assert_eq!(
            (r.cas(), r.exptime(), r.flags(), r.last_access()),
            (meta.cas, 7, u32::MAX, 99)
        );
        assert!(r.fetched() && !r.is_dead(), "DEAD is not metadata");
        assert_eq!(r.size(), 34);
        let mut m = ItemMut(&mut buf);
        for _ in 0..5 {
            m.bump_freq();
        }
        assert_eq!(m.as_ref().freq(), 3);
        m.set_freq(1);
        m.mark_read(50, Some(123));
        assert_eq!((m.as_ref().last_access(), m.as_ref().exptime()), (99, 123));
        m.set_meta(&Meta { bits: STALE, ..meta });
        assert_eq!(m.as_ref().freq(), 1, "metadata writes keep the frequency");
        assert!(!m.as_ref().fetched());
        m.set_dead();
        assert!(m.as_ref().is_dead());
        assert_eq!(buf[size(3, 5)..], [0xAA; 4], "nothing written past the item");
    }
}
