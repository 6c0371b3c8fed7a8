//! Meta response encoders (server side).
//!
//! A meta reply line is `<code>[ <flag>]*\r\n`, and for `VA` the code carries the data
//! length (`VA <len>`) and the data block follows. Return flags are a letter glued to
//! its value (`c42`, `t-1`, `kfoo`), except the opaque token, which is echoed whole
//! (`O123`), and a base64 key, which is followed by a lone ` b`. The server appends
//! these pieces straight into the connection's output buffer: no allocation.

use bytes::BufMut;

use super::base64;

/// `HD`: success, no value.
pub const HD: &[u8; 2] = b"HD";
/// `VA`: a value follows.
pub const VA: &[u8; 2] = b"VA";
/// `EN`: miss (`mg`, `me`).
pub const EN: &[u8; 2] = b"EN";
/// `NS`: not stored.
pub const NS: &[u8; 2] = b"NS";
/// `EX`: CAS mismatch.
pub const EX: &[u8; 2] = b"EX";
/// `NF`: not found.
pub const NF: &[u8; 2] = b"NF";
/// The whole `mn` reply.
pub const MN_LINE: &[u8] = b"MN\r\n";
/// The whole `EN` line of a miss without return flags.
pub const EN_LINE: &[u8] = b"EN\r\n";

/// Starts a reply line with a bare code (`HD`, `EN`, `NS`, `EX`, `NF`).
pub fn start(out: &mut impl BufMut, code: &[u8; 2]) {
    out.put_slice(code);
}

/// Starts a `VA <len>` line.
pub fn start_value(out: &mut impl BufMut, len: usize) {
    out.put_slice(b"VA ");
    out.put_slice(itoa::Buffer::new().format(len).as_bytes());
}

/// Appends ` <letter><n>` (`c`, `f`, `s`, `l`, `h`).
pub fn flag_u64(out: &mut impl BufMut, letter: u8, n: u64) {
    out.put_u8(b' ');
    out.put_u8(letter);
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends ` <letter><n>` for a signed number (`t-1`).
pub fn flag_i64(out: &mut impl BufMut, letter: u8, n: i64) {
    out.put_u8(b' ');
    out.put_u8(letter);
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends ` <letter>` alone (`W`, `X`, `Z`).
pub fn flag(out: &mut impl BufMut, letter: u8) {
    out.put_u8(b' ');
    out.put_u8(letter);
}

/// Appends a token echoed verbatim (the opaque `O...`).
pub fn token(out: &mut impl BufMut, tok: &[u8]) {
    out.put_u8(b' ');
    out.put_slice(tok);
}

/// Appends ` k<key>`, or ` k<base64 key> b` for a binary key.
pub fn key(out: &mut impl BufMut, key: &[u8], binary: bool) {
    out.put_slice(b" k");
    if binary {
        base64::encode(out, key);
        out.put_slice(b" b");
    } else {
        out.put_slice(key);
    }
}

/// Ends the reply line.
pub fn end(out: &mut impl BufMut) {
    out.put_slice(b"\r\n");
}

/// Appends a data block and its `\r\n`.
pub fn data(out: &mut impl BufMut, value: &[u8]) {
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Appends the `me` reply: `ME <key> exp=<e> la=<l> cas=<c> fetch=<yes|no> cls=<n> size=<n>\r\n`.
/// `exp` is memcached's `now - exptime` (negative while the item lives), -1 if it
/// never expires.
#[allow(clippy::too_many_arguments)]
pub fn debug_line(
    out: &mut impl BufMut,
    key: &[u8],
    binary: bool,
    exp: i64,
    la: u64,
    cas: u64,
    fetched: bool,
    class: u32,
    size: usize,
) {
    let mut n = itoa::Buffer::new();
    out.put_slice(b"ME ");
    if binary {
        base64::encode(out, key);
    } else {
        out.put_slice(key);
    }
    out.put_slice(b" exp=");
    out.put_slice(n.format(exp).as_bytes());
    out.put_slice(b" la=");
    out.put_slice(n.format(la).as_bytes());
    out.put_slice(b" cas=");
    out.put_slice(n.format(cas).as_bytes());
    out.put_slice(if fetched { b" fetch=yes" } else { b" fetch=no" });
    out.put_slice(b" cls=");
    out.put_slice(n.format(class).as_bytes());
    out.put_slice(b" size=");
    out.put_slice(n.format(size).as_bytes());
    out.put_slice(b"\r\n");
}

/// The slab class memcached 1.6.18 (default `-f 1.25 -n 48`, 512 KiB chunk max) puts
/// an item of `total` bytes in, for `me`'s `cls=`: classes start at 96 bytes and grow
/// by 1.25, rounded up to 8; items past the last class are chunked and report it.
pub fn slab_class(total: usize) -> u32 {
    const CHUNK_MAX: usize = 512 * 1024;
    let mut size = 96usize;
    let mut class = 1u32;
    while size < total {
        if size > CHUNK_MAX * 4 / 5 {
            return class + 1;
        }
        size = size * 5 / 4;
        size = size.div_ceil(8) * 8;
        class += 1;
    }
    class
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let mut out = Vec::new();
        start_value(&mut out, 3);
        token(&mut out, b"O1");
        key(&mut out, b"hk", false);
        flag_u64(&mut out, b'c', 3);
        flag_i64(&mut out, b't', -1);
        flag(&mut out, b'W');
        end(&mut out);
        data(&mut out, b"abc");
        assert_eq!(out, b"VA 3 O1 khk c3 t-1 W\r\nabc\r\n");

        let mut out = Vec::new();
        start(&mut out, EN);
        key(&mut out, b"hk", true);
        end(&mut out);
        assert_eq!(out, b"EN kaGs= b\r\n");

        let mut out = Vec::new();
        debug_line(&mut out, b"hk", false, -98, 0, 3, true, 1, 68);
        assert_eq!(out, b"ME hk exp=-98 la=0 cas=3 fetch=yes cls=1 size=68\r\n");
    }

    #[test]
    fn slab_classes() {
        // memcached -vv prints: 96, 120, 152, 192, 240, 304, 384, 480, ...
        let table = [
            (1, 1),
            (61, 1),
            (96, 1),
            (97, 2),
            (120, 2),
            (121, 3),
            (152, 3),
            (153, 4),
            (240, 5),
            (241, 6),
        ];
        for (total, class) in table {
            assert_eq!(slab_class(total), class, "total {total}");
        }
        assert!(slab_class(10 << 20) < 64);
    }
}
