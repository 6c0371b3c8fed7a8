//! Every decimal number this crate reads, in one place.
//!
//! - [`safe_strtoull`], [`safe_strtoul`], [`safe_strtol`]: memcached's own number
//!   parsing for request arguments (classic and meta), reproduced byte for byte.
//! - [`decimal`]: a number in a reply line (`VALUE` lengths, flags and CAS, `VA`
//!   lengths, `incr` results): digits only, no sign, no overflow.
//! - [`canonical`]: a number on a peer command line: as [`decimal`], and without a
//!   leading zero, so every number has one spelling.
//!
//! # memcached's number parsing
//!
//! memcached reads command arguments with `safe_strtoul`, `safe_strtoull` and
//! `safe_strtol` (util.c), thin wrappers over C's `strtoul`/`strtoull`/`strtol` on a
//! 64-bit `long`. What they accept is observable, so it is reproduced here without any
//! allocation or UTF-8 check:
//! - leading C whitespace (`\t \v \f \r`; a token never holds a space or `\n`) is
//!   skipped, then an optional `+` or `-`, then at least one decimal digit;
//! - what follows the digits must be the end of the token or a whitespace byte, after
//!   which anything is ignored (`5\tjunk` reads as 5);
//! - a magnitude outside the C type's range is an error (`ERANGE`);
//! - `strtoul` negates a `-` number modulo 2^64; the wrappers then refuse a result
//!   that is negative as a signed number when a `-` was given (so `-1` fails, `-0`
//!   is 0);
//! - `safe_strtoul` and `safe_strtol` store the 64-bit result into 32 bits, silently
//!   truncating: flags `4294967296` are 0, exptime `4294967297` is 1, a length of
//!   `4294967297` bytes is 1 byte.

/// C's `isspace` in the "C" locale.
#[inline]
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The run of decimal digits in `tok` from `i`: where it ends and its value; `None`
/// if the value overflows a `u64`.
#[inline]
fn digits(tok: &[u8], mut i: usize) -> Option<(usize, u64)> {
    let mut v: u64 = 0;
    while i < tok.len() {
        let d = tok[i].wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
        i += 1;
    }
    Some((i, v))
}

/// Scans a token as `strto*` does. Returns `(negative, magnitude)`, or `None` when no
/// digit was found, the magnitude does not fit in 64 bits, or the digits are followed
/// by a byte that is not whitespace.
#[inline]
fn scan(tok: &[u8]) -> Option<(bool, u64)> {
    // Fast path: a plain run of digits, the only shape well-behaved clients send.
    let (mut i, v) = digits(tok, 0)?;
    if i == tok.len() && i > 0 {
        return Some((false, v));
    }
    if i > 0 {
        return is_c_space(tok[i]).then_some((false, v));
    }
    // General path: whitespace, sign.
    while i < tok.len() && is_c_space(tok[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < tok.len() && (tok[i] == b'+' || tok[i] == b'-') {
        neg = tok[i] == b'-';
        i += 1;
    }
    let start = i;
    let (i, v) = digits(tok, start)?;
    if i == start || (i < tok.len() && !is_c_space(tok[i])) {
        return None;
    }
    Some((neg, v))
}

/// `safe_strtoull`: CAS uniques and `incr`/`decr` deltas.
#[inline]
pub fn safe_strtoull(tok: &[u8]) -> Option<u64> {
    let (neg, mag) = scan(tok)?;
    let v = if neg { mag.wrapping_neg() } else { mag };
    if neg && (v as i64) < 0 {
        return None;
    }
    Some(v)
}

/// `safe_strtoul` into a `uint32_t`: flags and `verbosity` levels (truncated to 32 bits).
#[inline]
pub fn safe_strtoul(tok: &[u8]) -> Option<u32> {
    safe_strtoull(tok).map(|v| v as u32)
}

/// `safe_strtol` into an `int32_t`: exptimes and data lengths (truncated to 32 bits).
#[inline]
pub fn safe_strtol(tok: &[u8]) -> Option<i32> {
    let (neg, mag) = scan(tok)?;
    let v: i64 = if neg {
        if mag > 1u64 << 63 {
            return None;
        }
        (mag as i64).wrapping_neg()
    } else {
        if mag > i64::MAX as u64 {
            return None;
        }
        mag as i64
    };
    Some(v as i32)
}

/// A strict decimal number, as replies carry them: 1 to 20 ASCII digits (leading
/// zeros allowed), nothing else, no overflow of 64 bits.
#[inline]
pub fn decimal(tok: &[u8]) -> Option<u64> {
    if tok.is_empty() || tok.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in tok {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(v)
}

/// A [`decimal`] number without a leading zero (`0` itself is fine): the one spelling
/// a peer writes, so a peer line that parses re-encodes to the same bytes.
#[inline]
pub fn canonical(tok: &[u8]) -> Option<u64> {
    if tok.len() > 1 && tok[0] == b'0' {
        return None;
    }
    decimal(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoull_like_memcached() {
        let t: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"42", Some(42)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"9223372036854775808", Some(1 << 63)),
            (b"-1", None),
            (b"-0", Some(0)),
            (b"+1", Some(1)),
            (b"-18446744073709551615", Some(1)),
            (b"\t7", Some(7)),
            (b"7\t", Some(7)),
            (b"7\tjunk", Some(7)),
            (b"7\r", Some(7)),
            (b"7x", None),
            (b"x", None),
            (b"", None),
            (b"+", None),
            (b"-", None),
            (b"\t", None),
            (b"0x10", None),
            (b"00000000000000000000000000001", Some(1)),
        ];
        for (tok, want) in t {
            assert_eq!(safe_strtoull(tok), *want, "{:?}", String::from_utf8_lossy(tok));
        }
    }

    #[test]
    fn strtoul_truncates_to_32_bits() {
        assert_eq!(safe_strtoul(b"4294967295"), Some(u32::MAX));
        assert_eq!(safe_strtoul(b"4294967296"), Some(0));
        assert_eq!(safe_strtoul(b"18446744073709551615"), Some(u32::MAX));
        assert_eq!(safe_strtoul(b"18446744073709551616"), None);
        assert_eq!(safe_strtoul(b"-1"), None);
        assert_eq!(safe_strtoul(b"-5"), None);
        assert_eq!(safe_strtoul(b"+5"), Some(5));
    }

    #[test]
    fn strtol_truncates_to_32_bits() {
        let t: &[(&[u8], Option<i32>)] = &[
            (b"2147483647", Some(i32::MAX)),
            (b"2147483648", Some(i32::MIN)),
            (b"-2147483649", Some(i32::MAX)),
            (b"4294967296", Some(0)),
            (b"4294967297", Some(1)),
            (b"9223372036854775807", Some(-1)),
            (b"9223372036854775808", None),
            (b"-9223372036854775808", Some(0)),
            (b"-9223372036854775809", None),
            (b"-1", Some(-1)),
            (b"+3", Some(3)),
            (b"3x", None),
        ];
        for (tok, want) in t {
            assert_eq!(safe_strtol(tok), *want, "{:?}", String::from_utf8_lossy(tok));
        }
    }

    #[test]
    fn numbers_like_libc() {
        assert_eq!(safe_strtol(b"4294967306"), Some(10));
        assert_eq!(safe_strtol(b"+7"), Some(7));
        assert_eq!(safe_strtol(b"\t8"), Some(8));
        assert_eq!(safe_strtol(b"9\tx"), Some(9));
        assert_eq!(safe_strtol(b"-1"), Some(-1));
        assert_eq!(safe_strtol(b"99999999999999999999"), None);
        assert_eq!(safe_strtol(b""), None);
        assert_eq!(safe_strtol(b"-"), None);
        assert_eq!(safe_strtol(b"1x"), None);
        assert_eq!(safe_strtoull(b"-0"), Some(0));
        assert_eq!(safe_strtoull(b"-1"), None);
        assert_eq!(safe_strtoull(b"-18446744073709551615"), Some(1));
        assert_eq!(safe_strtoull(b"18446744073709551616"), None);
        assert_eq!(safe_strtoul(b"4294967297"), Some(1));
        assert_eq!(safe_strtoul(b"-5"), None);
    }

    #[test]
    fn decimal_is_digits_only_and_canonical_has_one_spelling() {
        let t: &[(&[u8], Option<u64>, Option<u64>)] = &[
            (b"0", Some(0), Some(0)),
            (b"42", Some(42), Some(42)),
            (b"007", Some(7), None),
            (b"00", Some(0), None),
            (b"18446744073709551615", Some(u64::MAX), Some(u64::MAX)),
            (b"18446744073709551616", None, None),
            (b"000000000000000000001", None, None),
            (b"", None, None),
            (b"+1", None, None),
            (b"-0", None, None),
            (b" 1", None, None),
            (b"1 ", None, None),
            (b"1x", None, None),
        ];
        for (tok, dec, can) in t {
            assert_eq!(decimal(tok), *dec, "{:?}", String::from_utf8_lossy(tok));
            assert_eq!(canonical(tok), *can, "{:?}", String::from_utf8_lossy(tok));
        }
    }
}
