//! Byte tables for the request parser.
//!
//! Each case is an input and what the parser yields for it, in order, run the way
//! the connection loop runs it (swallowing and closing as told). Every error reply
//! here is the one memcached 1.6.18 (`-I 1m`) sent for the same bytes, and the events
//! after it show what memcached did with the bytes that followed (e.g. a data block
//! after `ERROR` is read as a command and answered `ERROR` again).

use bytes::{Bytes, BytesMut};

use super::replies::*;
use super::*;
use crate::text::request::{ArithOp, GetKind, GetRequest, Keys, Limits, Request, StoreMode, StoreRequest};

/// One thing the parser yields.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Req(Request),
    Err(ParseError),
}

struct Case {
    input: Vec<u8>,
    events: Vec<Ev>,
    /// Bytes left in the buffer at the end (an incomplete request).
    rest: Vec<u8>,
    /// Fed one byte at a time, the input yields the same events. False for lines
    /// longer than 2048 bytes, whose fate depends on how they were split (as in
    /// memcached).
    split_ok: bool,
}

fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

fn err(reply: &'static [u8]) -> Ev {
    Ev::Err(ParseError {
        reply,
        swallow: 0,
        close: false,
        unlink: None,
    })
}

/// The error memcached suppresses under `noreply`.
fn silent() -> Ev {
    err(b"")
}

fn swallow(reply: &'static [u8], n: u64, unlink: Option<&[u8]>) -> Ev {
    Ev::Err(ParseError {
        reply,
        swallow: n,
        close: false,
        unlink: unlink.map(b),
    })
}

fn close(reply: &'static [u8]) -> Ev {
    Ev::Err(ParseError {
        reply,
        swallow: 0,
        close: true,
        unlink: None,
    })
}

fn get_kind(kind: GetKind, keys: &[u8]) -> Ev {
    Ev::Req(Request::Get(GetRequest {
        kind,
        keys: Keys::new(b(keys)),
    }))
}

fn get(keys: &[u8]) -> Ev {
    get_kind(GetKind::Get, keys)
}

fn store(mode: StoreMode, key: &[u8], flags: u32, exptime: i64, value: &[u8], noreply: bool) -> Ev {
    Ev::Req(Request::Store(StoreRequest {
        mode,
        key: b(key),
        flags,
        exptime,
        value: b(value),
        noreply,
    }))
}

fn set(key: &[u8], flags: u32, exptime: i64, value: &[u8]) -> Ev {
    store(StoreMode::Set, key, flags, exptime, value, false)
}

fn delete(key: &[u8], noreply: bool) -> Ev {
    Ev::Req(Request::Delete { key: b(key), noreply })
}

fn arith(op: ArithOp, key: &[u8], delta: u64, noreply: bool) -> Ev {
    Ev::Req(Request::Arith {
        op,
        key: b(key),
        delta,
        noreply,
    })
}

fn touch(key: &[u8], exptime: i64, noreply: bool) -> Ev {
    Ev::Req(Request::Touch {
        key: b(key),
        exptime,
        noreply,
    })
}

fn flush(delay: i64, noreply: bool) -> Ev {
    Ev::Req(Request::FlushAll { delay, noreply })
}

fn stats(group: &[u8]) -> Ev {
    Ev::Req(Request::Stats { group: b(group) })
}

fn memlimit(mib: u32, noreply: bool) -> Ev {
    Ev::Req(Request::CacheMemlimit { mib, noreply })
}

fn version() -> Ev {
    Ev::Req(Request::Version)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Runs `input` through the parser as the connection loop does, `chunk` bytes at a
/// time: returns the events and what is left in the buffer.
fn run(input: &[u8], chunk: usize, limits: &Limits) -> (Vec<Ev>, Vec<u8>) {
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut swallow = 0u64;
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            if swallow > 0 {
                let d = swallow.min(buf.len() as u64) as usize;
                let _ = buf.split_to(d);
                swallow -= d as u64;
                if swallow > 0 {
                    break;
                }
            }
            match parse_request(&mut buf, limits) {
                Ok(Some(req)) => events.push(Ev::Req(req)),
                Ok(None) => break,
                Err(e) => {
                    swallow = e.swallow;
                    let close = e.close;
                    events.push(Ev::Err(e));
                    if close {
                        return (events, buf.to_vec());
                    }
                }
            }
        }
    }
    (events, buf.to_vec())
}

fn case(input: &[u8], events: Vec<Ev>) -> Case {
    Case {
        input: input.to_vec(),
        events,
        rest: Vec::new(),
        split_ok: true,
    }
}

fn cases() -> Vec<Case> {
    use ArithOp::{Decr, Incr};
    use StoreMode::*;
    let k250 = vec![b'k'; 250];
    let k251 = vec![b'k'; 251];
    let k3000 = vec![b'k'; 3000];
    let big = vec![b'x'; 1_048_517];
    let mut t = vec![
        // Empty lines, unknown commands, line ends.
        case(b"\r\n", vec![err(ERROR)]),
        case(b"\n", vec![err(ERROR)]),
        case(b"\r\r\n", vec![err(ERROR)]),
        case(b"x\r\n", vec![err(ERROR)]),
        case(b"  \r\n", vec![err(ERROR)]),
        case(b"GET a\r\n", vec![err(ERROR)]),
        case(b"QUIT\r\n", vec![err(ERROR)]),
        case(b"sh\r\n", vec![err(ERROR)]),
        case(b"ge\r\n", vec![err(ERROR)]),
        case(b"gex a\r\n", vec![err(ERROR)]),
        case(b"m\r\n", vec![err(ERROR)]),
        case(b"mx\r\n", vec![err(ERROR)]),
        case(b"mget k\r\n", vec![err(ERROR)]),
        case(b"slabs\r\n", vec![err(ERROR)]),
        case(b"shutdown\r\n", vec![err(SHUTDOWN_DISABLED)]),
        case(b"shutdown graceful\r\n", vec![err(SHUTDOWN_DISABLED)]),
        // A NUL ends the line, as strlen() does in memcached.
        case(b"\x00\r\n", vec![err(ERROR)]),
        case(b"get\x00 a\r\n", vec![err(ERROR)]),
        case(b"get a\x00b\r\nversion\r\n", vec![get(b"a"), version()]),
        case(b"set k\x000 0 1\r\na\r\n", vec![err(ERROR), err(ERROR)]),
        case(b"set k 0 0 1\x00junk\r\na\r\n", vec![set(b"k", 0, 0, b"a")]),
        // Retrieval.
        case(b"get\r\n", vec![err(ERROR)]),
        case(b"get \r\n", vec![err(ERROR)]),
        case(b"get a\r\n", vec![get(b"a")]),
        case(b"get a\n", vec![get(b"a")]),
        case(b"get a\r\n\r\n", vec![get(b"a"), err(ERROR)]),
        case(b"  get   a   b  \r\n", vec![get(b"a   b")]),
        case(b"gets a b\r\n", vec![get_kind(GetKind::Gets, b"a b")]),
        case(b"bget a\r\n", vec![get(b"a")]),
        case(&cat(&[b"get ", &k250, b"\r\n"]), vec![get(&k250)]),
        case(&cat(&[b"get ", &k251, b"\r\n"]), vec![err(BAD_FORMAT)]),
        case(
            &cat(&[b"get a ", &k251, b" b\r\nversion\r\n"]),
            vec![err(BAD_FORMAT), version()],
        ),
        // Control bytes in keys: memcached serves these keys; ringcache refuses them.
        case(b"get a\rb\r\n", vec![err(BAD_FORMAT)]),
        case(b"get a\r\r\n", vec![err(BAD_FORMAT)]),
        case(b"get a\tb\r\n", vec![err(BAD_FORMAT)]),
        case(b"get a\x7f\r\n", vec![err(BAD_FORMAT)]),
        case(b"get \xc3\xa9t\xc3\xa9\r\n", vec![get("été".as_bytes())]),
        case(b"gat\r\n", vec![err(ERROR)]),
        case(b"gat 10\r\n", vec![get_kind(GetKind::Gat { exptime: 10 }, b"")]),
        case(b"gat 10  \r\n", vec![get_kind(GetKind::Gat { exptime: 10 }, b"")]),
        case(b"gat x a\r\n", vec![err(BAD_EXPTIME)]),
        case(b"gat -1 a\r\n", vec![get_kind(GetKind::Gat { exptime: -1 }, b"a")]),
        case(b"gat 10 a b\r\n", vec![get_kind(GetKind::Gat { exptime: 10 }, b"a b")]),
        case(b"gats 10 a\r\n", vec![get_kind(GetKind::Gats { exptime: 10 }, b"a")]),
        case(b"gats\r\n", vec![err(ERROR)]),
        case(b"gats 1\r\n", vec![get_kind(GetKind::Gats { exptime: 1 }, b"")]),
        case(
            b"gat 99999999999 a\r\n",
            vec![get_kind(
                GetKind::Gat {
                    exptime: 99999999999i64 as i32 as i64,
                },
                b"a",
            )],
        ),
        case(b"gat 9223372036854775808 a\r\n", vec![err(BAD_EXPTIME)]),
        case(&cat(&[b"gat 10 ", &k251, b"\r\n"]), vec![err(BAD_FORMAT)]),
        case(b"gat x \x01\r\n", vec![err(BAD_EXPTIME)]),
        // Storage.
        case(b"set k 0 0 1\r\na\r\n", vec![set(b"k", 0, 0, b"a")]),
        case(b"set k 0 0 1\na\r\n", vec![set(b"k", 0, 0, b"a")]),
        case(b"set  k  5  10  3  \r\nabc\r\n", vec![set(b"k", 5, 10, b"abc")]),
        case(
            b"set k 0 0 1   \r\na\r\nget k\r\n",
            vec![set(b"k", 0, 0, b"a"), get(b"k")],
        ),
        case(b"set k 0 0 0\r\n\r\n", vec![set(b"k", 0, 0, b"")]),
        case(b"set k 0 0 2\r\n\r\n\r\n", vec![set(b"k", 0, 0, b"\r\n")]),
        case(
            b"set k 0 0 1 noreply\r\na\r\nversion\r\n",
            vec![store(Set, b"k", 0, 0, b"a", true), version()],
        ),
        case(b"set k 0 0 1 foo\r\na\r\n", vec![set(b"k", 0, 0, b"a")]),
        case(b"set k 0 0\r\na\r\n", vec![err(ERROR), err(ERROR)]),
        case(b"set k\r\n", vec![err(ERROR)]),
        case(b"set k 0 0 1 noreply x\r\na\r\n", vec![err(ERROR), err(ERROR)]),
        case(b"set k 0 0 x\r\na\r\n", vec![err(BAD_FORMAT), err(ERROR)]),
        case(
            b"set k 0 0 x noreply\r\na\r\nversion\r\n",
            vec![silent(), err(ERROR), version()],
        ),
        case(
            b"set k 0 0 noreply\r\na\r\nversion\r\n",
            vec![silent(), err(ERROR), version()],
        ),
        case(b"set k -1 0 1\r\na\r\n", vec![err(BAD_FORMAT), err(ERROR)]),
        case(b"set k 4294967295 0 1\r\na\r\n", vec![set(b"k", u32::MAX, 0, b"a")]),
        case(b"set k 4294967296 0 1\r\na\r\n", vec![set(b"k", 0, 0, b"a")]),
        case(
            b"set k 18446744073709551615 0 1\r\na\r\n",
            vec![set(b"k", u32::MAX, 0, b"a")],
        ),
        case(
            b"set k 18446744073709551616 0 1\r\na\r\n",
            vec![err(BAD_FORMAT), err(ERROR)],
        ),
        case(b"set k +5 0 1\r\na\r\n", vec![set(b"k", 5, 0, b"a")]),
        case(b"set k -0 0 1\r\na\r\n", vec![set(b"k", 0, 0, b"a")]),
        case(b"set k 5x 0 1\r\na\r\n", vec![err(BAD_FORMAT), err(ERROR)]),
        case(b"set k 5\t 0 1\r\na\r\n", vec![set(b"k", 5, 0, b"a")]),
        case(b"set k \t5 0 1\r\na\r\n", vec![set(b"k", 5, 0, b"a")]),
        case(
            b"set k 0 2147483647 1\r\na\r\n",
            vec![set(b"k", 0, i32::MAX as i64, b"a")],
        ),
        case(
            b"set k 0 2147483648 1\r\na\r\n",
            vec![set(b"k", 0, i32::MIN as i64, b"a")],
        ),
        case(
            b"set k 0 -2147483649 1\r\na\r\n",
            vec![set(b"k", 0, i32::MAX as i64, b"a")],
        ),
        case(b"set k 0 4294967297 1\r\na\r\n", vec![set(b"k", 0, 1, b"a")]),
        case(b"set k 0 9223372036854775807 1\r\na\r\n", vec![set(b"k", 0, -1, b"a")]),
        case(
            b"set k 0 9223372036854775808 1\r\na\r\n",
            vec![err(BAD_FORMAT), err(ERROR)],
        ),
        case(b"set k 0 x 1\r\na\r\n", vec![err(BAD_FORMAT), err(ERROR)]),
        case(b"set k 0 0 -1\r\na\r\n", vec![err(BAD_FORMAT), err(ERROR)]),
        case(b"set k 0 0 -1 noreply\r\na\r\n", vec![silent(), err(ERROR)]),
        case(b"set k 0 0 2147483646\r\na\r\n", vec![err(BAD_FORMAT), err(ERROR)]),
        case(b"set k 0 0 2147483648\r\na\r\n", vec![err(BAD_FORMAT), err(ERROR)]),
        case(b"set k 0 0 4294967297\r\na\r\n", vec![set(b"k", 0, 0, b"a")]),
        case(b"set k 0 0 4294967296\r\n\r\n", vec![set(b"k", 0, 0, b"")]),
        case(b"set k 0 0 +1\r\na\r\n", vec![set(b"k", 0, 0, b"a")]),
        case(b"set k 0 0 1\t\r\na\r\n", vec![set(b"k", 0, 0, b"a")]),
        case(
            &cat(&[b"set ", &k251, b" 0 0 1\r\na\r\n"]),
            vec![err(BAD_FORMAT), err(ERROR)],
        ),
        case(
            &cat(&[b"set ", &k251, b" 0 0 1 noreply\r\na\r\n"]),
            vec![silent(), err(ERROR)],
        ),
        case(
            &cat(&[b"set ", &k250, b" 0 0 1\r\na\r\n"]),
            vec![set(&k250, 0, 0, b"a")],
        ),
        case(b"set k\x01 0 0 1\r\na\r\n", vec![err(BAD_FORMAT), err(ERROR)]),
        // A data block must end in \r\n; its `bytes + 2` bytes are consumed anyway.
        case(
            b"set k 0 0 1\r\nab\r\nversion\r\n",
            vec![err(BAD_CHUNK), err(ERROR), version()],
        ),
        case(
            b"set k 0 0 1\r\naXY\r\nversion\r\n",
            vec![err(BAD_CHUNK), err(ERROR), version()],
        ),
        case(b"set k 0 0 1\r\na\nversion\r\n", vec![err(BAD_CHUNK), err(ERROR)]),
        case(b"set k 0 0 1\r\n\r\n\r\n", vec![err(BAD_CHUNK), err(ERROR)]),
        case(
            b"set k 0 0 1 noreply\r\nab\r\nversion\r\n",
            vec![silent(), err(ERROR), version()],
        ),
        case(
            b"set k 0 0 1\r\nXYZW\r\nget k\r\n",
            vec![err(BAD_CHUNK), err(ERROR), get(b"k")],
        ),
        case(b"add k 0 0 1\r\na\r\n", vec![store(Add, b"k", 0, 0, b"a", false)]),
        case(
            b"replace k 0 0 1\r\na\r\n",
            vec![store(Replace, b"k", 0, 0, b"a", false)],
        ),
        case(b"append k 0 0 1\r\na\r\n", vec![store(Append, b"k", 0, 0, b"a", false)]),
        case(
            b"prepend k 0 0 1\r\na\r\n",
            vec![store(Prepend, b"k", 0, 0, b"a", false)],
        ),
        case(
            b"prepend k 0 0 1 noreply\r\na\r\n",
            vec![store(Prepend, b"k", 0, 0, b"a", true)],
        ),
        case(b"cas k 0 0 1\r\na\r\n", vec![err(ERROR), err(ERROR)]),
        case(b"cas k 0 0 1 1\r\na\r\n", vec![store(Cas(1), b"k", 0, 0, b"a", false)]),
        case(b"cas k 0 0 1 x\r\na\r\n", vec![err(BAD_FORMAT), err(ERROR)]),
        case(b"cas k 0 0 1 -1\r\na\r\n", vec![err(BAD_FORMAT), err(ERROR)]),
        case(
            b"cas k 0 0 1 18446744073709551615\r\na\r\n",
            vec![store(Cas(u64::MAX), b"k", 0, 0, b"a", false)],
        ),
        case(
            b"cas k 0 0 1 18446744073709551616\r\na\r\n",
            vec![err(BAD_FORMAT), err(ERROR)],
        ),
        case(
            b"cas k 0 0 1 1 noreply\r\na\r\nversion\r\n",
            vec![store(Cas(1), b"k", 0, 0, b"a", true), version()],
        ),
        case(
            b"cas k 0 0 1 1 foo\r\na\r\n",
            vec![store(Cas(1), b"k", 0, 0, b"a", false)],
        ),
        case(b"cas k 0 0 1 1 noreply x\r\na\r\n", vec![err(ERROR), err(ERROR)]),
        // Too large for -I 1m: the reply comes after the line, `bytes + 2` are
        // swallowed whatever they are, and `set` (only) drops the old value.
        case(
            b"set k 0 0 2147483645\r\na\r\n",
            vec![swallow(TOO_LARGE, 2147483647, Some(b"k"))],
        ),
        case(
            &cat(&[b"set k 0 0 1048517\r\n", &big, b"\r\nversion\r\n"]),
            vec![swallow(TOO_LARGE, 1048519, Some(b"k")), version()],
        ),
        case(
            &cat(&[b"set k 0 0 1048517\r\n", &big, b"ZZversion\r\n"]),
            vec![swallow(TOO_LARGE, 1048519, Some(b"k")), version()],
        ),
        case(
            &cat(&[b"set k 0 0 1048517 noreply\r\n", &big, b"\r\nversion\r\n"]),
            vec![swallow(b"", 1048519, Some(b"k")), version()],
        ),
        case(
            &cat(&[b"add k 0 0 1048517\r\n", &big, b"\r\nget k\r\n"]),
            vec![swallow(TOO_LARGE, 1048519, None), get(b"k")],
        ),
        case(
            &cat(&[b"cas k 0 0 1048517 1\r\n", &big, b"\r\nget k\r\n"]),
            vec![swallow(TOO_LARGE, 1048519, None), get(b"k")],
        ),
        case(
            &cat(&[b"append k 0 0 1048517\r\n", &big, b"\r\n"]),
            vec![swallow(TOO_LARGE, 1048519, None)],
        ),
        case(
            &cat(&[b"set k 0 0 1048516\r\n", &big[1..], b"\r\n"]),
            vec![set(b"k", 0, 0, &big[1..])],
        ),
        case(
            &cat(&[b"set k 1 0 1048513\r\n", &big[4..], b"\r\n"]),
            vec![swallow(TOO_LARGE, 1048515, Some(b"k"))],
        ),
        case(
            &cat(&[b"set k 1 0 1048512\r\n", &big[5..], b"\r\n"]),
            vec![set(b"k", 1, 0, &big[5..])],
        ),
        case(
            &cat(&[b"set ", &k250, b" 0 0 1048268\r\n", &big[249..], b"\r\n"]),
            vec![swallow(TOO_LARGE, 1048270, Some(&k250))],
        ),
        case(
            &cat(&[b"set ", &k250, b" 7 0 1048263\r\n", &big[254..], b"\r\n"]),
            vec![store(Set, &k250, 7, 0, &big[254..], false)],
        ),
        // incr / decr.
        case(b"incr\r\n", vec![err(ERROR)]),
        case(b"incr k\r\n", vec![err(ERROR)]),
        case(b"incr k 1\r\n", vec![arith(Incr, b"k", 1, false)]),
        case(b"decr k 10\r\n", vec![arith(Decr, b"k", 10, false)]),
        case(b"incr k 1 noreply\r\n", vec![arith(Incr, b"k", 1, true)]),
        case(b"incr k x\r\n", vec![err(BAD_DELTA)]),
        case(b"incr k -1\r\n", vec![err(BAD_DELTA)]),
        case(
            b"incr k 18446744073709551615\r\n",
            vec![arith(Incr, b"k", u64::MAX, false)],
        ),
        case(b"incr k 18446744073709551616\r\n", vec![err(BAD_DELTA)]),
        case(b"incr k x noreply\r\nversion\r\n", vec![silent(), version()]),
        case(b"incr k noreply\r\nversion\r\n", vec![silent(), version()]),
        case(b"incr k 1 2\r\n", vec![arith(Incr, b"k", 1, false)]),
        case(b"incr k 1 2 3\r\n", vec![err(ERROR)]),
        case(&cat(&[b"incr ", &k251, b" 1\r\n"]), vec![err(BAD_FORMAT)]),
        case(&cat(&[b"incr ", &k251, b" x\r\n"]), vec![err(BAD_FORMAT)]),
        case(b"decr k -0\r\n", vec![arith(Decr, b"k", 0, false)]),
        case(b"incr k +1\r\n", vec![arith(Incr, b"k", 1, false)]),
        case(b"incr k 1\t\r\n", vec![arith(Incr, b"k", 1, false)]),
        // delete.
        case(b"delete\r\n", vec![err(ERROR)]),
        case(b"delete k\r\n", vec![delete(b"k", false)]),
        case(b"delete k 0\r\n", vec![delete(b"k", false)]),
        case(b"delete k noreply\r\n", vec![delete(b"k", true)]),
        case(b"delete k 0 noreply\r\n", vec![delete(b"k", true)]),
        case(b"delete k 1\r\n", vec![err(BAD_DELETE)]),
        case(b"delete k 00\r\n", vec![err(BAD_DELETE)]),
        case(b"delete k 0 0\r\n", vec![err(BAD_DELETE)]),
        case(b"delete k noreply 0\r\n", vec![err(BAD_DELETE)]),
        case(b"delete k 1 noreply\r\nversion\r\n", vec![silent(), version()]),
        case(b"delete k x y z\r\n", vec![err(ERROR)]),
        case(&cat(&[b"delete ", &k251, b"\r\n"]), vec![err(BAD_FORMAT)]),
        case(
            &cat(&[b"delete ", &k251, b" noreply\r\nversion\r\n"]),
            vec![silent(), version()],
        ),
        case(&cat(&[b"delete ", &k251, b" 1\r\n"]), vec![err(BAD_DELETE)]),
        // touch.
        case(b"touch\r\n", vec![err(ERROR)]),
        case(b"touch k\r\n", vec![err(ERROR)]),
        case(b"touch k 10\r\n", vec![touch(b"k", 10, false)]),
        case(b"touch k 10 noreply\r\n", vec![touch(b"k", 10, true)]),
        case(b"touch k 10 foo\r\n", vec![touch(b"k", 10, false)]),
        case(b"touch k x\r\n", vec![err(BAD_EXPTIME)]),
        case(b"touch k x noreply\r\nversion\r\n", vec![silent(), version()]),
        case(b"touch k 9223372036854775808\r\n", vec![err(BAD_EXPTIME)]),
        case(b"touch k 10 a b\r\n", vec![err(ERROR)]),
        case(&cat(&[b"touch ", &k251, b" 10\r\n"]), vec![err(BAD_FORMAT)]),
        // flush_all.
        case(b"flush_all\r\n", vec![flush(0, false)]),
        case(b"flush_all  \r\n", vec![flush(0, false)]),
        case(b"flush_all 10\r\n", vec![flush(10, false)]),
        case(b"flush_all -1\r\n", vec![flush(-1, false)]),
        case(b"flush_all noreply\r\n", vec![flush(0, true)]),
        case(b"flush_all 10 noreply\r\n", vec![flush(10, true)]),
        case(b"flush_all 10 junk\r\n", vec![flush(10, false)]),
        case(b"flush_all x\r\n", vec![err(BAD_EXPTIME)]),
        case(b"flush_all x noreply\r\nversion\r\n", vec![silent(), version()]),
        case(b"flush_all x junk\r\n", vec![err(BAD_EXPTIME)]),
        case(b"flush_all noreply junk\r\n", vec![err(BAD_EXPTIME)]),
        case(b"flush_all 9223372036854775808\r\n", vec![err(BAD_EXPTIME)]),
        case(b"flush_all 1 2 3\r\n", vec![err(ERROR)]),
        // version, verbosity, stats, quit.
        case(b"version\r\n", vec![version()]),
        case(b"version x y\r\n", vec![version()]),
        case(b"verbosity\r\n", vec![err(ERROR)]),
        case(b"verbosity 1\r\n", vec![Ev::Req(Request::Verbosity { noreply: false })]),
        case(
            b"verbosity 1\x00\r\n",
            vec![Ev::Req(Request::Verbosity { noreply: false })],
        ),
        case(
            b"verbosity 1 noreply\r\n",
            vec![Ev::Req(Request::Verbosity { noreply: true })],
        ),
        case(
            b"verbosity 1 2\r\n",
            vec![Ev::Req(Request::Verbosity { noreply: false })],
        ),
        case(b"verbosity 1 2 3\r\n", vec![err(ERROR)]),
        case(b"verbosity x\r\n", vec![err(BAD_FORMAT)]),
        case(b"verbosity -1\r\n", vec![err(BAD_FORMAT)]),
        case(b"verbosity noreply\r\nversion\r\n", vec![silent(), version()]),
        case(b"stats\r\n", vec![stats(b"")]),
        case(b"stats\x00\r\n", vec![stats(b"")]),
        case(b"stats items\r\n", vec![stats(b"items")]),
        case(b"stats items junk\r\n", vec![stats(b"items")]),
        case(b"stats  sizes  \r\n", vec![stats(b"sizes")]),
        // stats cachedump <class> <limit>: every reply observed on memcached 1.6.18.
        case(b"stats cachedump 1 1\r\n", vec![stats(b"cachedump 1 1")]),
        case(b"stats cachedump  0   0 \r\n", vec![stats(b"cachedump  0   0")]),
        case(b"stats cachedump 63 100 junk\r\n", vec![stats(b"cachedump 63 100")]),
        case(b"stats cachedump 01 +1\r\n", vec![stats(b"cachedump 01 +1")]),
        // Truncated to 32 bits: 4294967297 is class 1.
        case(
            b"stats cachedump 4294967297 1\r\n",
            vec![stats(b"cachedump 4294967297 1")],
        ),
        case(b"stats cachedump\r\n", vec![err(BAD_COMMAND_LINE)]),
        case(b"stats cachedump 1\r\n", vec![err(BAD_COMMAND_LINE)]),
        case(b"stats cachedump x y\r\n", vec![err(BAD_FORMAT)]),
        case(b"stats cachedump 1 1x\r\n", vec![err(BAD_FORMAT)]),
        case(b"stats cachedump -1 1\r\n", vec![err(BAD_FORMAT)]),
        case(b"stats cachedump 63 -1\r\n", vec![err(BAD_FORMAT)]),
        case(b"stats cachedump 64 1\r\n", vec![err(ILLEGAL_SLAB_ID)]),
        case(b"stats cachedump 100 1\r\n", vec![err(ILLEGAL_SLAB_ID)]),
        // cache_memlimit <MiB> [noreply].
        case(b"cache_memlimit 50\r\n", vec![memlimit(50, false)]),
        case(b"cache_memlimit  50\r\n", vec![memlimit(50, false)]),
        case(b"cache_memlimit +9\r\n", vec![memlimit(9, false)]),
        case(b"cache_memlimit 8\r\n", vec![memlimit(8, false)]),
        case(b"cache_memlimit 50 x\r\n", vec![memlimit(50, false)]),
        case(b"cache_memlimit 50 noreply\r\n", vec![memlimit(50, true)]),
        case(b"cache_memlimit 1000000000\r\n", vec![memlimit(1_000_000_000, false)]),
        case(b"cache_memlimit 4294967304\r\n", vec![memlimit(8, false)]),
        case(b"cache_memlimit\r\n", vec![err(ERROR)]),
        case(b"cache_memlimit 50 1 2\r\n", vec![err(ERROR)]),
        case(b"cache_memlimit x\r\n", vec![err(ERROR)]),
        case(b"cache_memlimit 50x\r\n", vec![err(ERROR)]),
        case(b"cache_memlimit -1\r\n", vec![err(ERROR)]),
        case(b"cache_memlimit 0x10\r\n", vec![err(ERROR)]),
        case(b"cache_memlimit 99999999999999999999\r\n", vec![err(ERROR)]),
        case(b"cache_memlimit 0\r\n", vec![err(MEMLIMIT_TOO_SMALL)]),
        case(b"cache_memlimit 7\r\n", vec![err(MEMLIMIT_TOO_SMALL)]),
        case(b"cache_memlimit 4294967296\r\n", vec![err(MEMLIMIT_TOO_SMALL)]),
        case(b"cache_memlimit 1000000001\r\n", vec![err(MEMLIMIT_NOT_BYTES)]),
        case(b"cache_memlimit 7 noreply\r\nversion\r\n", vec![silent(), version()]),
        case(b"cache_memlimit x noreply\r\nversion\r\n", vec![silent(), version()]),
        case(b"CACHE_MEMLIMIT 10\r\n", vec![err(ERROR)]),
        case(b"quit\r\n", vec![Ev::Req(Request::Quit)]),
        case(b"quit x\r\n", vec![Ev::Req(Request::Quit)]),
        // Pipelining.
        case(
            b"set a 0 0 1\r\n1\r\nget a b\r\nincr a 2\r\ndelete a\r\n",
            vec![
                set(b"a", 0, 0, b"1"),
                get(b"a b"),
                arith(Incr, b"a", 2, false),
                delete(b"a", false),
            ],
        ),
        // Long lines: more than 2048 bytes without a \n close the connection silently,
        // except `get `/`gets ` lines (after at most 100 spaces).
        case(&[b'x'; 2049], vec![close(b"")]),
        case(&cat(&[b"get a\r\nset ", &k3000]), vec![get(b"a"), close(b"")]),
        case(&cat(&[b"gat 1 ", &k3000]), vec![close(b"")]),
        case(&cat(&[b"mg ", &k3000]), vec![close(b"")]),
        case(&cat(&[b"getx ", &k3000]), vec![close(b"")]),
        case(&cat(&[&[b' '; 101][..], b"get ", &k3000]), vec![close(b"")]),
        case(
            &cat(&[b"get ", &k3000, b"\r\nversion\r\n"]),
            vec![err(BAD_FORMAT), version()],
        ),
        case(
            &cat(&[b"gets ", &k3000, b"\r\nversion\r\n"]),
            vec![err(BAD_FORMAT), version()],
        ),
        case(
            &cat(&[&[b' '; 100][..], b"get ", &k3000, b"\r\nversion\r\n"]),
            vec![err(BAD_FORMAT), version()],
        ),
        case(
            &cat(&[b"get a", &[b' '; 3000][..], b"\r\nversion\r\n"]),
            vec![get(b"a"), version()],
        ),
        case(
            &cat(&[b"get a ", &[0u8; 3000][..], b"\r\nversion\r\n"]),
            vec![get(b"a"), version()],
        ),
        // A complete line of up to 16384 bytes (with its \n) is processed when it
        // arrives whole; a longer one never fits memcached's buffer: silent close.
        Case {
            split_ok: false,
            ..case(
                &cat(&[b"set ", &k3000, b" 0 0 1\r\na\r\nversion\r\n"]),
                vec![err(BAD_FORMAT), err(ERROR), version()],
            )
        },
        Case {
            split_ok: false,
            ..case(
                &cat(&[&[b'x'; 3000][..], b"\r\nversion\r\n"]),
                vec![err(ERROR), version()],
            )
        },
        Case {
            split_ok: false,
            ..case(&cat(&[b"gat 1 ", &k3000, b"\r\n"]), vec![err(BAD_FORMAT)])
        },
        Case {
            split_ok: false,
            ..case(
                &cat(&[&[b'x'; 16382][..], b"\r\nversion\r\n"]),
                vec![err(ERROR), version()],
            )
        },
        Case {
            split_ok: false,
            ..case(&cat(&[&[b'x'; 16383][..], b"\n"]), vec![err(ERROR)])
        },
        case(&cat(&[&[b'x'; 16383][..], b"\r\nversion\r\n"]), vec![close(b"")]),
        case(&cat(&[&[b'x'; 16384][..], b"\n"]), vec![close(b"")]),
        case(&cat(&[&[b'x'; 40000][..], b"\r\n"]), vec![close(b"")]),
        // get lines are bounded by GET_LINE_MAX (memcached: unbounded).
        case(
            &cat(&[b"get ", &[b'k'; 200][..], &[b' '; GET_LINE_MAX - 206][..], b"\r\n"]),
            vec![get(&[b'k'; 200])],
        ),
        case(
            &cat(&[b"get ", &[b'k'; 200][..], &[b' '; GET_LINE_MAX - 205][..], b"\r\n"]),
            vec![close(LINE_TOO_LONG)],
        ),
        case(
            &cat(&[b"get ", &[b'k'; 200][..], &[b' '; GET_LINE_MAX][..]]),
            vec![close(LINE_TOO_LONG)],
        ),
    ];
    // Incomplete requests: nothing yet, the buffer kept.
    for input in [
        &b"get a"[..],
        b"set k 0 0 1\r\na\r",
        b"set k 0 0 1\r\n",
        b"set k 0 0 10\r\nabc",
        &[b'x'; 2048],
        b"",
    ] {
        t.push(Case {
            input: input.to_vec(),
            events: vec![],
            rest: input.to_vec(),
            split_ok: true,
        });
    }
    t
}

fn show(input: &[u8]) -> String {
    let s = String::from_utf8_lossy(&input[..input.len().min(80)]).into_owned();
    format!("{s:?} ({} bytes)", input.len())
}

#[test]
fn table_whole() {
    let limits = Limits::default();
    for c in cases() {
        let (events, rest) = run(&c.input, usize::MAX, &limits);
        assert_eq!(events, c.events, "input {}", show(&c.input));
        assert_eq!(rest, c.rest, "rest after {}", show(&c.input));
    }
}

/// Fed one byte at a time (in 4 KiB pieces for the megabyte inputs), every request
/// parses exactly as when fed whole.
#[test]
fn table_split() {
    let limits = Limits::default();
    for c in cases().into_iter().filter(|c| c.split_ok) {
        let chunk = if c.input.len() > 64 * 1024 { 4096 } else { 1 };
        let (events, rest) = run(&c.input, chunk, &limits);
        assert_eq!(events, c.events, "split input {}", show(&c.input));
        assert_eq!(rest, c.rest, "rest after split {}", show(&c.input));
    }
}

/// `Ok(None)` leaves the buffer exactly as it was.
#[test]
fn incomplete_leaves_buffer_untouched() {
    let limits = Limits::default();
    for c in cases().into_iter().filter(|c| c.split_ok && c.input.len() < 4096) {
        for n in 0..c.input.len() {
            let mut buf = BytesMut::from(&c.input[..n]);
            if let Ok(None) = parse_request(&mut buf, &limits) {
                assert_eq!(&buf[..], &c.input[..n], "prefix {}", show(&c.input[..n]));
            }
        }
    }
}

#[test]
fn values_and_keys_point_into_the_read_buffer() {
    let limits = Limits::default();
    let mut buf = BytesMut::with_capacity(1024);
    buf.extend_from_slice(b"set key 0 0 5\r\nhello\r\nget a bb ccc\r\ndelete key\r\n");
    let base = buf.as_ptr() as usize;
    let Ok(Some(Request::Store(s))) = parse_request(&mut buf, &limits) else {
        panic!("no store");
    };
    assert_eq!(s.key.as_ptr() as usize, base + 4);
    assert_eq!(s.value.as_ptr() as usize, base + 15);
    assert_eq!(&s.value[..], b"hello");
    let Ok(Some(Request::Get(g))) = parse_request(&mut buf, &limits) else {
        panic!("no get");
    };
    assert_eq!(g.keys.as_bytes().as_ptr() as usize, base + 26);
    let keys: Vec<Bytes> = g.keys.iter().collect();
    assert_eq!(keys, [b(b"a"), b(b"bb"), b(b"ccc")]);
    assert_eq!(keys[2].as_ptr() as usize, base + 31);
    let Ok(Some(Request::Delete { key, .. })) = parse_request(&mut buf, &limits) else {
        panic!("no delete");
    };
    assert_eq!(key.as_ptr() as usize, base + 43);
    assert!(buf.is_empty());
}

/// Meta commands go to `meta::parse_meta` with the line (without leading spaces or
/// line end) and the offset of what follows it.
#[test]
fn meta_commands_are_delegated() {
    let limits = Limits::default();
    for (input, line) in [
        (&b"mn\r\nversion\r\n"[..], &b"mn\r\nversion\r\n"[..]),
        (b"  mg key v\r\nversion\r\n", b"mg key v\r\nversion\r\n"),
        (b"ms key 1\r\na\r\nversion\r\n", b"ms key 1\r\na\r\nversion\r\n"),
        (b"md key\nversion\r\n", b"md key\nversion\r\n"),
        (b"ma key\r\nversion\r\n", b"ma key\r\nversion\r\n"),
        (b"me key\r\nversion\r\n", b"me key\r\nversion\r\n"),
    ] {
        let mut via_parser = BytesMut::from(input);
        let got = parse_request(&mut via_parser, &limits);
        let mut direct = BytesMut::from(line);
        let nl = line.iter().position(|&c| c == b'\n').unwrap();
        let end = if line[nl - 1] == b'\r' { nl - 1 } else { nl };
        let want = crate::text::meta::parse_meta(&mut direct, end, nl + 1, &limits).map(|m| m.map(Request::Meta));
        assert_eq!(got, want, "{}", show(input));
        assert_eq!(via_parser, direct, "{}", show(input));
    }
}

#[test]
fn item_size_threshold_matches_memcached() {
    // Observed with memcached 1.6.18: the largest storable value for -I 1m.
    let l = Limits::default();
    assert!(l.item_fits(1, 0, 1_048_516));
    assert!(!l.item_fits(1, 0, 1_048_517));
    assert!(l.item_fits(1, 1, 1_048_512));
    assert!(!l.item_fits(1, 1, 1_048_513));
    assert!(l.item_fits(2, 0, 1_048_515));
    assert!(l.item_fits(250, 0, 1_048_267));
    assert!(!l.item_fits(250, 0, 1_048_268));
    assert!(l.item_fits(250, 7, 1_048_263));
    let two = Limits {
        max_item_size: 2 * 1024 * 1024,
    };
    assert!(two.item_fits(1, 0, 2_097_092));
    assert!(!two.item_fits(1, 0, 2_097_093));
    assert!(!l.item_fits(usize::MAX, 0, usize::MAX));
}

/// Whatever the bytes, the parser neither panics nor loops: every call consumes
/// something or waits.
#[test]
fn hostile_bytes() {
    let limits = Limits { max_item_size: 4096 };
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let words: &[&[u8]] = &[
        b"get",
        b"gets",
        b"gat",
        b"set",
        b"cas",
        b"incr",
        b"delete",
        b"touch",
        b"flush_all",
        b"verbosity",
        b"stats",
        b"cachedump",
        b"cache_memlimit",
        b"noreply",
        b"0",
        b"1",
        b"-1",
        b"4294967296",
        b"99999999999999999999",
        b" ",
        b"  ",
        b"\r\n",
        b"\n",
        b"\r",
        b"\0",
        b"k",
        b"\t",
        b"x",
    ];
    for _ in 0..20_000 {
        let mut input = Vec::new();
        for _ in 0..rnd() % 12 {
            if rnd() % 4 == 0 {
                input.push(rnd() as u8);
            } else {
                input.extend_from_slice(words[(rnd() % words.len() as u64) as usize]);
            }
        }
        let (_, rest) = run(&input, (rnd() % 5 + 1) as usize, &limits);
        assert!(rest.len() <= input.len());
    }
}

/// `pending_store` names the storage command `parse_request` waits on, at every cut
/// between its line and the end of its data block, and the request it finishes is
/// the one `parse_request` gives for the whole input; it is `None` everywhere else.
#[test]
fn a_pending_store_finishes_as_the_parser_would() {
    let limits = Limits { max_item_size: 4096 };
    let inputs: [&[u8]; 6] = [
        b"set k 5 0 10\r\n0123456789\r\n",
        b"  add   kk 0 -1 3 noreply\r\nabc\r\n",
        b"cas k 1 2 4 77\r\nwxyz\r\n",
        b"append k 0 0 2\nxy\r\n",
        b"set k 0 0 3\r\nabcXY",
        b"set k\x000 0 0 3\r\nabc\r\n",
    ];
    for input in inputs {
        let mut whole = BytesMut::from(input);
        let expected = parse_request(&mut whole, &limits);
        let nl = input.iter().position(|&c| c == b'\n').unwrap();
        for cut in 0..input.len() {
            let buf = &input[..cut];
            let mut probe = BytesMut::from(buf);
            let waits = matches!(parse_request(&mut probe, &limits), Ok(None));
            let pending = pending_store(buf, &limits);
            let Some(p) = pending else {
                assert!(
                    cut <= nl || !waits || !matches!(expected, Ok(Some(Request::Store(_)))),
                    "{input:?} at {cut}"
                );
                continue;
            };
            assert!(waits && cut > nl, "{input:?} at {cut}");
            assert_eq!(p.line, nl + 1);
            let s = &p.store;
            let key = Bytes::copy_from_slice(&input[s.key.0..s.key.1]);
            let value = Bytes::copy_from_slice(&input[p.line..p.line + s.len]);
            let end = [input[p.line + s.len], input[p.line + s.len + 1]];
            let got = match s.finish(key, value, end) {
                Some(req) => Ok(Some(Request::Store(req))),
                None => Err(s.bad_chunk()),
            };
            assert_eq!(got, expected, "{input:?} at {cut}");
        }
    }
    // Not a storage command, or a value too large: nothing pending.
    assert_eq!(pending_store(b"get k\r\n", &limits), None);
    assert_eq!(pending_store(b"set k 0 0 5000\r\nab", &limits), None);
    assert_eq!(pending_store(b"set k 0 0 bad\r\nab", &limits), None);
}
