//! The meta request parser: one command line (and the data block of `ms`) in, one
//! [`MetaRequest`] or memcached's exact error reply out.
//!
//! [`parse_meta`] is called by [`crate::text::parse_request`] once it has a whole line
//! whose command word is `mg`, `ms`, `md`, `ma`, `mn` or `me`. It allocates nothing:
//! tokens are located with a fixed array, a base64 key is decoded through a stack
//! buffer back into the read buffer, and every part of the request is a `Bytes` slice.
//!
//! The checks, their order and their messages follow memcached 1.6.18 (probed):
//! 1. no key: `ERROR` (`me`: `CLIENT_ERROR bad command line format`);
//! 2. key token over 250 bytes (before base64 decoding): `CLIENT_ERROR bad command line format`;
//! 3. `ms` without a data length: `CLIENT_ERROR bad command line format`;
//! 4. 20 tokens or more: `CLIENT_ERROR options flags are too long` (`mg`) or
//!    `CLIENT_ERROR options flags too long` (`ms`, `md`, `ma`);
//! 5. `ms` data length not a number, negative or absurd: `CLIENT_ERROR bad command line format`;
//! 6. the flags, left to right ([`preparse`]): a repeated first byte (or one ≥ 127) is
//!    `CLIENT_ERROR duplicate flag`, an unknown letter `CLIENT_ERROR invalid flag`,
//!    both at once; a bad argument records its message and parsing goes on, so the
//!    last bad argument names the error. `md` and `ma` report every flag error as
//!    `CLIENT_ERROR invalid or duplicate flag`;
//! 7. the mode (`ms`/`ma`): `CLIENT_ERROR invalid mode for ms M token` (`ma`);
//! 8. an opaque token over 32 bytes: `CLIENT_ERROR opaque token too long`;
//! 9. `ms`: an item over `-I`: `SERVER_ERROR object too large for cache`, and the old
//!    item is dropped;
//! 10. `ms`: data not ending in `\r\n`: `CLIENT_ERROR bad data chunk`.
//!
//! From step 6 on, an `ms` error swallows the data block (`<datalen> + 2` bytes); steps
//! 1 to 5 do not, so memcached then reads the data as a command, and so do we.

use bytes::{Buf, BytesMut};

use super::{base64, MetaCommand, MetaFlags, MetaMode, MetaRequest};
use crate::text::num::{safe_strtol, safe_strtoul, safe_strtoull};
use crate::text::parse::ParseError;
use crate::text::request::{Limits, KEY_MAX_LEN};
use crate::text::response::{BAD_CHUNK, BAD_FORMAT, ERROR, TOO_LARGE};

/// memcached's `MFLAG_MAX_OPT_LENGTH`: a line with this many tokens or more (command
/// and key included) is refused.
const MAX_TOKENS: usize = 20;
pub use crate::limits::MAX_OPAQUE_LEN;
/// Bytes memcached charges per item besides key and data: the item header (48) and
/// the CAS (8). With the key's NUL, the data's `\r\n` and 4 bytes of client flags
/// when they are not 0, this decides "object too large" exactly as memcached does.
pub const ITEM_HEADER: usize = 48 + 8;

/// The total size memcached gives an item (`ITEM_ntotal`), for `-I` and `me`.
pub fn item_total_size(key_len: usize, client_flags: u32, value_len: usize) -> usize {
    ITEM_HEADER + key_len + 1 + if client_flags != 0 { 4 } else { 0 } + value_len + 2
}

const BAD_TOKEN: &[u8] = b"CLIENT_ERROR bad token in command line format\r\n";
const DUPLICATE: &[u8] = b"CLIENT_ERROR duplicate flag\r\n";
const INVALID: &[u8] = b"CLIENT_ERROR invalid flag\r\n";
const INVALID_OR_DUPLICATE: &[u8] = b"CLIENT_ERROR invalid or duplicate flag\r\n";
const DECODING: &[u8] = b"CLIENT_ERROR error decoding key\r\n";
const M_LENGTH: &[u8] = b"CLIENT_ERROR incorrect length for M token\r\n";
const BAD_INITIAL: &[u8] = b"CLIENT_ERROR invalid numeric initial value\r\n";
const BAD_DELTA: &[u8] = b"CLIENT_ERROR invalid numeric delta value\r\n";
const OPAQUE_TOO_LONG: &[u8] = b"CLIENT_ERROR opaque token too long\r\n";
const MG_TOO_MANY: &[u8] = b"CLIENT_ERROR options flags are too long\r\n";
const TOO_MANY: &[u8] = b"CLIENT_ERROR options flags too long\r\n";
const MS_MODE: &[u8] = b"CLIENT_ERROR invalid mode for ms M token\r\n";
const MA_MODE: &[u8] = b"CLIENT_ERROR invalid mode for ma M token\r\n";

/// Token positions `(start, end)` in the line; only the first [`MAX_TOKENS`] are kept,
/// more than that is an error anyway.
struct Tokens {
    spans: [(usize, usize); MAX_TOKENS],
    /// How many tokens the line has (may exceed `spans.len()`).
    count: usize,
}

impl Tokens {
    fn split(line: &[u8]) -> Tokens {
        let mut t = Tokens {
            spans: [(0, 0); MAX_TOKENS],
            count: 0,
        };
        let mut i = 0;
        while i < line.len() {
            if line[i] == b' ' {
                i += 1;
                continue;
            }
            let start = i;
            while i < line.len() && line[i] != b' ' {
                i += 1;
            }
            if t.count < MAX_TOKENS {
                t.spans[t.count] = (start, i);
            }
            t.count += 1;
        }
        t
    }

    fn get<'a>(&self, line: &'a [u8], i: usize) -> &'a [u8] {
        let (s, e) = self.spans[i];
        &line[s..e]
    }

    fn len_of(&self, i: usize) -> usize {
        self.spans[i].1 - self.spans[i].0
    }
}

/// A key decoded from base64, kept on the stack until the request is known complete.
struct DecodedKey {
    bytes: [u8; KEY_MAX_LEN],
    len: usize,
}

/// What [`preparse`] found.
struct Preparsed {
    flags: MetaFlags,
    /// The raw mode byte of `M`, validated per command later.
    mode: Option<u8>,
    /// The base64-decoded key when `b` was given and decoding worked.
    decoded: Option<DecodedKey>,
    /// The span of the opaque token, when present.
    opaque: Option<(usize, usize)>,
}

/// Parses the meta command whose line is `buf[..line_len]` (without its line end);
/// its data block, if any, starts at `buf[next..]`. Same contract as
/// [`crate::text::parse_request`]: on success the request's bytes are removed from
/// `buf`; `Ok(None)` (buffer untouched) until an `ms` data block is complete; on error
/// the line is removed and the error carries memcached's reply and how many bytes to
/// swallow after it.
pub fn parse_meta(
    buf: &mut BytesMut,
    line_len: usize,
    next: usize,
    limits: &Limits,
) -> Result<Option<MetaRequest>, ParseError> {
    let line_len = line_len.min(buf.len());
    let next = next.clamp(line_len, buf.len());
    let tokens = Tokens::split(&buf[..line_len]);
    let command = match (tokens.count > 0)
        .then(|| MetaCommand::from_word(tokens.get(&buf[..line_len], 0)))
        .flatten()
    {
        Some(c) => c,
        None => return fail(buf, next, ERROR, 0),
    };
    match command {
        MetaCommand::NoOp => {
            buf.advance(next);
            Ok(Some(MetaRequest {
                command,
                key: Default::default(),
                flags: MetaFlags::default(),
                tokens: Default::default(),
                value: Default::default(),
            }))
        }
        MetaCommand::Debug => parse_debug(buf, line_len, next, &tokens),
        MetaCommand::Get | MetaCommand::Delete | MetaCommand::Arithmetic | MetaCommand::Set => {
            parse_keyed(buf, line_len, next, &tokens, command, limits)
        }
    }
}

fn fail<T>(buf: &mut BytesMut, next: usize, reply: &'static [u8], swallow: u64) -> Result<T, ParseError> {
    buf.advance(next);
    Err(ParseError {
        reply,
        swallow,
        close: false,
        unlink: None,
    })
}

/// `me <key> [b]`: memcached looks only at the key and whether the next token is `b`.
fn parse_debug(
    buf: &mut BytesMut,
    line_len: usize,
    next: usize,
    tokens: &Tokens,
) -> Result<Option<MetaRequest>, ParseError> {
    if tokens.count < 2 || tokens.len_of(1) > KEY_MAX_LEN {
        return fail(buf, next, BAD_FORMAT, 0);
    }
    let line = &buf[..line_len];
    let mut flags = MetaFlags::default();
    let mut decoded = None;
    if tokens.count >= 3 && tokens.get(line, 2) == b"b" {
        match decode_key(tokens.get(line, 1)) {
            Some(k) => decoded = Some(k),
            None => return fail(buf, next, BAD_FORMAT, 0),
        }
        flags.set(b'b');
    }
    Ok(Some(finish(
        buf,
        tokens,
        2,
        line_len,
        next,
        0,
        MetaCommand::Debug,
        flags,
        decoded,
        None,
    )))
}

fn parse_keyed(
    buf: &mut BytesMut,
    line_len: usize,
    next: usize,
    tokens: &Tokens,
    command: MetaCommand,
    limits: &Limits,
) -> Result<Option<MetaRequest>, ParseError> {
    let is_set = command == MetaCommand::Set;
    if tokens.count < 2 {
        return fail(buf, next, ERROR, 0);
    }
    if tokens.len_of(1) > KEY_MAX_LEN || (is_set && tokens.count == 2) {
        return fail(buf, next, BAD_FORMAT, 0);
    }
    if tokens.count >= MAX_TOKENS {
        let reply = if command == MetaCommand::Get {
            MG_TOO_MANY
        } else {
            TOO_MANY
        };
        return fail(buf, next, reply, 0);
    }
    let line = &buf[..line_len];
    let mut first_flag = 2;
    let mut vlen = 0usize;
    if is_set {
        match safe_strtol(tokens.get(line, 2)) {
            Some(n) if (0..=i32::MAX - 2).contains(&n) => vlen = n as usize,
            _ => return fail(buf, next, BAD_FORMAT, 0),
        }
        first_flag = 3;
    }
    // From here on an `ms` error swallows the data block.
    let swallow = if is_set { vlen as u64 + 2 } else { 0 };
    let pre = match preparse(line, tokens, first_flag) {
        Ok(p) => p,
        Err(reply) => {
            let reply = match command {
                MetaCommand::Delete | MetaCommand::Arithmetic => INVALID_OR_DUPLICATE,
                _ => reply,
            };
            return fail(buf, next, reply, swallow);
        }
    };
    let Preparsed {
        mut flags,
        mode,
        decoded,
        opaque,
    } = pre;
    if let Some(m) = mode {
        let parsed = match command {
            MetaCommand::Set => match m {
                b'E' => Some(MetaMode::Add),
                b'A' => Some(MetaMode::Append),
                b'P' => Some(MetaMode::Prepend),
                b'R' => Some(MetaMode::Replace),
                b'S' => Some(MetaMode::Set),
                _ => return fail(buf, next, MS_MODE, swallow),
            },
            MetaCommand::Arithmetic => match m {
                b'I' | b'+' => Some(MetaMode::Incr),
                b'D' | b'-' => Some(MetaMode::Decr),
                _ => return fail(buf, next, MA_MODE, swallow),
            },
            // mg and md accept and ignore any mode.
            _ => None,
        };
        flags.mode = parsed;
    }
    if opaque.is_some_and(|(s, e)| e - s > MAX_OPAQUE_LEN) {
        return fail(buf, next, OPAQUE_TOO_LONG, swallow);
    }
    if is_set {
        let key_len = decoded.as_ref().map_or(tokens.len_of(1), |k| k.len);
        let total = item_total_size(key_len, flags.client_flags.unwrap_or(0), vlen);
        if total > limits.max_item_size {
            let key = match &decoded {
                Some(k) => bytes::Bytes::copy_from_slice(&k.bytes[..k.len]),
                None => bytes::Bytes::copy_from_slice(tokens.get(line, 1)),
            };
            buf.advance(next);
            return Err(ParseError {
                reply: TOO_LARGE,
                swallow,
                close: false,
                unlink: Some(key),
            });
        }
        let end = next + vlen + 2;
        if buf.len() < end {
            return Ok(None);
        }
        if &buf[end - 2..end] != b"\r\n" {
            return fail(buf, end, BAD_CHUNK, 0);
        }
    }
    Ok(Some(finish(
        buf, tokens, first_flag, line_len, next, vlen, command, flags, decoded, opaque,
    )))
}

/// Cuts the complete request out of `buf` and slices its parts.
#[allow(clippy::too_many_arguments)]
fn finish(
    buf: &mut BytesMut,
    tokens: &Tokens,
    first_flag: usize,
    line_len: usize,
    next: usize,
    vlen: usize,
    command: MetaCommand,
    mut flags: MetaFlags,
    decoded: Option<DecodedKey>,
    opaque: Option<(usize, usize)>,
) -> MetaRequest {
    let (key_start, mut key_end) = tokens.spans[1];
    if let Some(k) = &decoded {
        // The decoded key is never longer than its base64 form: decode in place.
        buf[key_start..key_start + k.len].copy_from_slice(&k.bytes[..k.len]);
        key_end = key_start + k.len;
    }
    let flags_start = if tokens.count > first_flag && command != MetaCommand::Debug {
        tokens.spans[first_flag].0
    } else {
        line_len
    };
    let consumed = if command == MetaCommand::Set {
        next + vlen + 2
    } else {
        next
    };
    let all = buf.split_to(consumed).freeze();
    flags.opaque = opaque.map(|(s, e)| all.slice(s..e));
    MetaRequest {
        command,
        key: all.slice(key_start..key_end),
        flags,
        tokens: all.slice(flags_start..line_len),
        value: if command == MetaCommand::Set {
            all.slice(next..next + vlen)
        } else {
            Default::default()
        },
    }
}

fn decode_key(src: &[u8]) -> Option<DecodedKey> {
    let mut k = DecodedKey {
        bytes: [0; KEY_MAX_LEN],
        len: 0,
    };
    k.len = base64::decode(src, &mut k.bytes)?;
    Some(k)
}

/// memcached's `_meta_flag_preparse`: reads every flag token left to right.
fn preparse(line: &[u8], tokens: &Tokens, first: usize) -> Result<Preparsed, &'static [u8]> {
    let mut seen = [false; 128];
    let mut error: Option<&'static [u8]> = None;
    let mut out = Preparsed {
        flags: MetaFlags::default(),
        mode: None,
        decoded: None,
        opaque: None,
    };
    for i in first..tokens.count {
        let tok = tokens.get(line, i);
        let o = tok[0];
        if o >= 127 || seen[o as usize] {
            return Err(DUPLICATE);
        }
        seen[o as usize] = true;
        let arg = &tok[1..];
        match o {
            b'b' => match decode_key(tokens.get(line, 1)) {
                Some(k) => out.decoded = Some(k),
                None => error = Some(DECODING),
            },
            b'N' => match safe_strtol(arg) {
                Some(v) => out.flags.vivify = Some(v),
                None => error = Some(BAD_TOKEN),
            },
            b'T' => match safe_strtol(arg) {
                Some(v) => out.flags.ttl = Some(v),
                None => error = Some(BAD_TOKEN),
            },
            b'R' => match safe_strtol(arg) {
                Some(v) => out.flags.recache = Some(v),
                None => error = Some(BAD_TOKEN),
            },
            b'F' => match safe_strtoul(arg) {
                Some(v) => out.flags.client_flags = Some(v),
                // memcached sets no message here: the default one (or an earlier one) stands.
                None => error = Some(error.unwrap_or(BAD_FORMAT)),
            },
            b'C' => match safe_strtoull(arg) {
                Some(v) => out.flags.compare_cas = Some(v),
                None => error = Some(BAD_TOKEN),
            },
            b'E' => match safe_strtoull(arg) {
                Some(v) => out.flags.new_cas = Some(v),
                None => error = Some(BAD_TOKEN),
            },
            b'M' => {
                if tok.len() != 2 {
                    error = Some(M_LENGTH);
                } else {
                    out.mode = Some(tok[1]);
                }
            }
            b'J' => match safe_strtoull(arg) {
                Some(v) => out.flags.initial = Some(v),
                None => error = Some(BAD_INITIAL),
            },
            b'D' => match safe_strtoull(arg) {
                Some(v) => out.flags.delta = Some(v),
                None => error = Some(BAD_DELTA),
            },
            b'O' => out.opaque = Some(tokens.spans[i]),
            b'P' | b'L' | b'l' | b'k' | b's' | b't' | b'c' | b'f' | b'v' | b'h' | b'u' | b'q' | b'I' | b'x' => {}
            _ => return Err(INVALID),
        }
        out.flags.set(o);
    }
    match error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, Bytes};

    fn limits() -> Limits {
        Limits {
            max_item_size: 1024 * 1024,
        }
    }

    /// Plays `parse_request`'s part: finds the line, then calls `parse_meta`.
    fn drive(buf: &mut BytesMut) -> Result<Option<MetaRequest>, ParseError> {
        let Some(nl) = memchr::memchr(b'\n', buf) else {
            return Ok(None);
        };
        let line_len = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
        parse_meta(buf, line_len, nl + 1, &limits())
    }

    #[derive(Debug, PartialEq)]
    enum Want {
        Req {
            cmd: MetaCommand,
            key: &'static [u8],
            tokens: &'static [u8],
            value: &'static [u8],
        },
        Err {
            reply: &'static [u8],
            swallow: u64,
        },
    }

    fn req(cmd: MetaCommand, key: &'static [u8], tokens: &'static [u8], value: &'static [u8]) -> Want {
        Want::Req {
            cmd,
            key,
            tokens,
            value,
        }
    }

    fn err(reply: &'static [u8], swallow: u64) -> Want {
        Want::Err { reply, swallow }
    }

    fn got(r: Result<Option<MetaRequest>, ParseError>) -> Option<(Want, Option<MetaRequest>)> {
        match r {
            Ok(None) => None,
            Ok(Some(m)) => {
                let w = Want::Req {
                    cmd: m.command,
                    key: Box::leak(m.key.to_vec().into_boxed_slice()),
                    tokens: Box::leak(m.tokens.to_vec().into_boxed_slice()),
                    value: Box::leak(m.value.to_vec().into_boxed_slice()),
                };
                Some((w, Some(m)))
            }
            Err(e) => Some((
                Want::Err {
                    reply: e.reply,
                    swallow: e.swallow,
                },
                None,
            )),
        }
    }

    use MetaCommand::*;

    /// (input, outcome, bytes left in the buffer). Every error row was probed against
    /// memcached 1.6.18.
    fn table() -> Vec<(&'static [u8], Want, &'static [u8])> {
        vec![
            (b"mn\r\n", req(NoOp, b"", b"", b""), b""),
            (b"mn x\r\nmn\r\n", req(NoOp, b"", b"", b""), b"mn\r\n"),
            (b"mg foo\r\n", req(Get, b"foo", b"", b""), b""),
            (b"mg foo v c  t\n", req(Get, b"foo", b"v c  t", b""), b""),
            (b"mg  foo   v \r\nrest", req(Get, b"foo", b"v ", b""), b"rest"),
            (b"mg aGs= b k\r\n", req(Get, b"hk", b"b k", b""), b""),
            (b"mg aG*s= k b\r\n", req(Get, b"hk", b"k b", b""), b""),
            (b"md foo q I T30\r\n", req(Delete, b"foo", b"q I T30", b""), b""),
            (
                b"ma foo N0 J10 D2 MD\r\n",
                req(Arithmetic, b"foo", b"N0 J10 D2 MD", b""),
                b"",
            ),
            (b"ms foo 3 T10 F5\r\nbar\r\n", req(Set, b"foo", b"T10 F5", b"bar"), b""),
            (b"ms foo 0\r\n\r\nmn\r\n", req(Set, b"foo", b"", b""), b"mn\r\n"),
            (b"ms foo 4294967298 c\r\nab\r\n", req(Set, b"foo", b"c", b"ab"), b""),
            (b"ms czE= 2 b k\r\nab\r\n", req(Set, b"s1", b"b k", b"ab"), b""),
            (b"me foo\r\n", req(Debug, b"foo", b"", b""), b""),
            (b"me aGs= b\r\n", req(Debug, b"hk", b"", b""), b""),
            (b"me foo x y\r\n", req(Debug, b"foo", b"", b""), b""),
            // Errors: no key, key too long, too many tokens.
            (b"mg\r\n", err(b"ERROR\r\n", 0), b""),
            (b"mg   \r\n", err(b"ERROR\r\n", 0), b""),
            (b"md\r\n", err(b"ERROR\r\n", 0), b""),
            (b"ma\r\n", err(b"ERROR\r\n", 0), b""),
            (b"ms\r\n", err(b"ERROR\r\n", 0), b""),
            (b"ms k\r\nab\r\n", err(BAD_FORMAT, 0), b"ab\r\n"),
            (b"me\r\n", err(BAD_FORMAT, 0), b""),
            (b"me foo b\r\n", err(BAD_FORMAT, 0), b""),
            (
                b"mg x c f h k l s t u v O1 q N1 R1 T1 P L I C1\r\n",
                err(b"CLIENT_ERROR options flags are too long\r\n", 0),
                b"",
            ),
            (
                b"md x c f h k l s t u v O1 q N1 R1 T1 P L I C1\r\n",
                err(b"CLIENT_ERROR options flags too long\r\n", 0),
                b"",
            ),
            (
                b"ms x 2 c f h k l s t u v O1 N1 R1 T1 P L I C1\r\nab\r\n",
                err(b"CLIENT_ERROR options flags too long\r\n", 0),
                b"ab\r\n",
            ),
            (
                b"mg x c f h k l s t u v O1 q N1 R1 T1 P L I\r\n",
                req(Get, b"x", b"c f h k l s t u v O1 q N1 R1 T1 P L I", b""),
                b"",
            ),
            // Flag errors.
            (b"mg x v v\r\n", err(DUPLICATE, 0), b""),
            (b"mg x v O1 O2\r\n", err(DUPLICATE, 0), b""),
            (b"mg x \xc3\xa9\r\n", err(DUPLICATE, 0), b""),
            (b"mg x !\r\n", err(INVALID, 0), b""),
            (b"mg x V\r\n", err(INVALID, 0), b""),
            (b"mg x N\r\n", err(BAD_TOKEN, 0), b""),
            (b"mg x Nabc\r\n", err(BAD_TOKEN, 0), b""),
            (b"mg x R1x\r\n", err(BAD_TOKEN, 0), b""),
            (b"mg x Fabc\r\n", err(BAD_FORMAT, 0), b""),
            (b"mg x Mxx\r\n", err(M_LENGTH, 0), b""),
            (b"mg x T v v\r\n", err(DUPLICATE, 0), b""),
            (b"mg x T D\r\n", err(BAD_DELTA, 0), b""),
            (b"mg x b\r\n", err(DECODING, 0), b""),
            (b"mg aGs b k\r\n", err(DECODING, 0), b""),
            (
                b"mg x O12345678901234567890123456789012 k\r\n",
                err(OPAQUE_TOO_LONG, 0),
                b"",
            ),
            (
                b"mg x O1234567890123456789012345678901 k\r\n",
                req(Get, b"x", b"O1234567890123456789012345678901 k", b""),
                b"",
            ),
            (b"md d1 x b\r\n", err(INVALID_OR_DUPLICATE, 0), b""),
            (b"md d1 Zq\r\n", err(INVALID_OR_DUPLICATE, 0), b""),
            (b"ma a1 Mxx\r\n", err(INVALID_OR_DUPLICATE, 0), b""),
            (b"ma a1 Dx\r\n", err(INVALID_OR_DUPLICATE, 0), b""),
            (b"ma a1 MX\r\n", err(MA_MODE, 0), b""),
            // ms errors before the data length do not swallow; after it they do.
            (b"ms z x\r\nab\r\n", err(BAD_FORMAT, 0), b"ab\r\n"),
            (b"ms z -1\r\nab\r\n", err(BAD_FORMAT, 0), b"ab\r\n"),
            (b"ms z 2x\r\nab\r\n", err(BAD_FORMAT, 0), b"ab\r\n"),
            (b"ms z 2 v v\r\nab\r\n", err(DUPLICATE, 4), b"ab\r\n"),
            (b"ms z 2 !\r\nab\r\n", err(INVALID, 4), b"ab\r\n"),
            (b"ms z 2 Fx\r\nab\r\n", err(BAD_FORMAT, 4), b"ab\r\n"),
            (b"ms z 2 F-1\r\nab\r\n", err(BAD_FORMAT, 4), b"ab\r\n"),
            (b"ms z 2 T\r\nab\r\n", err(BAD_TOKEN, 4), b"ab\r\n"),
            (b"ms z 2 M\r\nab\r\n", err(M_LENGTH, 4), b"ab\r\n"),
            (b"ms z 2 MX\r\nab\r\n", err(MS_MODE, 4), b"ab\r\n"),
            (b"ms z 2 Ms\r\nab\r\n", err(MS_MODE, 4), b"ab\r\n"),
            (b"ms z 2 b\r\nab\r\n", err(DECODING, 4), b"ab\r\n"),
            (b"ms z 2 D\r\nab\r\n", err(BAD_DELTA, 4), b"ab\r\n"),
            (
                b"ms z 2 O123456789012345678901234567890123\r\nab\r\n",
                err(OPAQUE_TOO_LONG, 4),
                b"ab\r\n",
            ),
            (
                b"ms z 2 O123456789012345678901234567890123 MX\r\nab\r\n",
                err(MS_MODE, 4),
                b"ab\r\n",
            ),
            // Bad data chunk: the block is consumed, whatever follows is the next command.
            (b"ms z 2\r\nabc\r\n", err(BAD_CHUNK, 0), b"\n"),
            (b"ms z 2\r\nab\r\r\n", err(BAD_CHUNK, 0), b"\n"),
        ]
    }

    #[test]
    fn whole_buffers() {
        for (input, want, rest) in table() {
            let mut buf = BytesMut::from(input);
            let (outcome, _) = got(drive(&mut buf)).unwrap_or_else(|| panic!("incomplete: {input:?}"));
            assert_eq!(outcome, want, "input {:?}", String::from_utf8_lossy(input));
            assert_eq!(&buf[..], rest, "rest of {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        for (input, want, rest) in table() {
            let mut buf = BytesMut::new();
            let mut outcome = None;
            for (i, &b) in input.iter().enumerate() {
                buf.put_u8(b);
                let before = buf.clone();
                match got(drive(&mut buf)) {
                    None => assert_eq!(buf, before, "Ok(None) must leave the buffer alone"),
                    Some((o, _)) => {
                        buf.extend_from_slice(&input[i + 1..]);
                        outcome = Some(o);
                        break;
                    }
                }
            }
            assert_eq!(outcome, Some(want), "input {:?}", String::from_utf8_lossy(input));
            assert_eq!(&buf[..], rest);
        }
    }

    #[test]
    fn decoded_flags() {
        let mut buf =
            BytesMut::from(&b"ms k 1 T-1 N+7 R30 F4294967306 C18446744073709551615 E5 MA q I O123 c k\r\nx\r\n"[..]);
        let r = drive(&mut buf).unwrap().unwrap();
        let f = &r.flags;
        assert_eq!(f.ttl, Some(-1));
        assert_eq!(f.vivify, Some(7));
        assert_eq!(f.recache, Some(30));
        assert_eq!(f.client_flags, Some(10));
        assert_eq!(f.compare_cas, Some(u64::MAX));
        assert_eq!(f.new_cas, Some(5));
        assert_eq!(f.mode, Some(MetaMode::Append));
        assert_eq!(f.opaque.as_deref(), Some(&b"O123"[..]));
        assert!(f.quiet() && f.has(b'I') && f.has(b'c') && f.has(b'k'));
        assert!(!f.has(b'v') && !f.base64_key() && !f.has(b'D'));
        assert_eq!(r.flag_order().collect::<Vec<_>>(), b"TNRFCEMqIOck".to_vec());
        assert_eq!(r.value, Bytes::from_static(b"x"));

        let mut buf = BytesMut::from(&b"ma k M- D18446744073709551615 J-0\r\n"[..]);
        let r = drive(&mut buf).unwrap().unwrap();
        assert_eq!(r.flags.mode, Some(MetaMode::Decr));
        assert_eq!(r.flags.delta, Some(u64::MAX));
        assert_eq!(r.flags.initial, Some(0));
    }

    #[test]
    fn too_large_unlinks_and_swallows() {
        // 56 + key 3 + 1 + data + 2 <= 1 MiB: 1048514 fits, 1048515 does not (probed).
        let mut buf = BytesMut::from(&b"ms big 1048515\r\n"[..]);
        let e = drive(&mut buf).unwrap_err();
        assert_eq!(e.reply, TOO_LARGE);
        assert_eq!(e.swallow, 1048517);
        assert_eq!(e.unlink.as_deref(), Some(&b"big"[..]));
        assert!(buf.is_empty());
        let mut buf = BytesMut::from(&b"ms big 1048514\r\n"[..]);
        assert_eq!(drive(&mut buf), Ok(None));
        // Client flags cost 4 bytes.
        let mut buf = BytesMut::from(&b"ms big 1048511 F1\r\n"[..]);
        assert_eq!(drive(&mut buf).unwrap_err().reply, TOO_LARGE);
        // A base64 key is unlinked decoded.
        let mut buf = BytesMut::from(&b"ms aGs= 2000000 b\r\n"[..]);
        assert_eq!(drive(&mut buf).unwrap_err().unlink.as_deref(), Some(&b"hk"[..]));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic sweep of short lines built from meta-ish bytes.
        let alphabet: &[u8] = b"mgsdaen 0123456789bkvqOTNMCFEJDI=+-\r\n\xff";
        let mut state: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..20_000 {
            let mut line = Vec::from(&b"m"[..]);
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            let mut s = state;
            for _ in 0..len {
                line.push(alphabet[(s % alphabet.len() as u64) as usize]);
                s = s.rotate_left(5).wrapping_mul(0x2545f4914f6cdd1d);
            }
            let mut buf = BytesMut::from(&line[..]);
            let Some(nl) = memchr::memchr(b'\n', &buf) else {
                continue;
            };
            if !matches!(buf.get(1), Some(b'g' | b's' | b'd' | b'a' | b'n' | b'e')) {
                continue;
            }
            let _ = parse_meta(&mut buf, nl, nl + 1, &limits());
        }
    }
}
