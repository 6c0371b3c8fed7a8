//! Response encoder and parser tests.

use bytes::{Bytes, BytesMut};

use super::*;

fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

fn value(key: &[u8], flags: u32, cas: Option<u64>, data: &[u8]) -> Response {
    Response::Value(Value {
        key: b(key),
        flags,
        cas,
        data: b(data),
    })
}

/// Every reply shape, its exact bytes, and a request kind it answers.
fn table() -> Vec<(Response, &'static [u8], Expect)> {
    vec![
        (value(b"k", 0, None, b"abc"), b"VALUE k 0 3\r\nabc\r\n", Expect::Values),
        (
            value(b"key", 4294967295, Some(18446744073709551615), b"a\r\nb"),
            b"VALUE key 4294967295 4 18446744073709551615\r\na\r\nb\r\n",
            Expect::Values,
        ),
        (value(b"e", 1, Some(0), b""), b"VALUE e 1 0 0\r\n\r\n", Expect::Values),
        (Response::End, b"END\r\n", Expect::Values),
        (Response::Stored, b"STORED\r\n", Expect::Stored),
        (Response::NotStored, b"NOT_STORED\r\n", Expect::Stored),
        (Response::Exists, b"EXISTS\r\n", Expect::Stored),
        (Response::NotFound, b"NOT_FOUND\r\n", Expect::Stored),
        (Response::Deleted, b"DELETED\r\n", Expect::Deleted),
        (Response::NotFound, b"NOT_FOUND\r\n", Expect::Deleted),
        (Response::Touched, b"TOUCHED\r\n", Expect::Touched),
        (Response::Number(0), b"0\r\n", Expect::Number),
        (Response::Number(u64::MAX), b"18446744073709551615\r\n", Expect::Number),
        (Response::NotFound, b"NOT_FOUND\r\n", Expect::Number),
        (Response::Ok, b"OK\r\n", Expect::Ok),
        (Response::Reset, b"RESET\r\n", Expect::Lines),
        (Response::Ok, b"OK\r\n", Expect::Lines),
        (
            Response::Stat {
                name: b(b"pid"),
                value: b(b"9245"),
            },
            b"STAT pid 9245\r\n",
            Expect::Lines,
        ),
        (
            Response::Stat {
                name: b(b"libevent"),
                value: b(b"2.1.12-stable with spaces"),
            },
            b"STAT libevent 2.1.12-stable with spaces\r\n",
            Expect::Lines,
        ),
        (Response::End, b"END\r\n", Expect::Lines),
        (Response::Version(b(b"1.6.18")), b"VERSION 1.6.18\r\n", Expect::Version),
        (Response::Error, b"ERROR\r\n", Expect::Stored),
        (
            Response::ClientError(b(b"bad data chunk")),
            b"CLIENT_ERROR bad data chunk\r\n",
            Expect::Stored,
        ),
        (
            Response::ServerError(b(b"object too large for cache")),
            b"SERVER_ERROR object too large for cache\r\n",
            Expect::Stored,
        ),
        (
            Response::ClientError(b(b"invalid numeric delta argument")),
            b"CLIENT_ERROR invalid numeric delta argument\r\n",
            Expect::Values,
        ),
    ]
}

fn parse_all(input: &[u8], expect: Expect, chunk: usize) -> Result<Vec<Response>, ResponseError> {
    let limits = Limits::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        while let Some(r) = parse_response(&mut buf, expect, &limits)? {
            out.push(r);
        }
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    Ok(out)
}

#[test]
fn encode_exact_bytes() {
    for (resp, bytes, _) in table() {
        let mut out = BytesMut::new();
        resp.encode(&mut out);
        assert_eq!(&out[..], bytes, "{resp:?}");
    }
}

#[test]
fn round_trip_whole_and_byte_by_byte() {
    for (resp, bytes, expect) in table() {
        for e in [expect, Expect::Any] {
            assert_eq!(parse_all(bytes, e, usize::MAX), Ok(vec![resp.clone()]), "{resp:?}");
            assert_eq!(parse_all(bytes, e, 1), Ok(vec![resp.clone()]), "{resp:?} split");
        }
    }
}

#[test]
fn multi_value_reply_in_one_stream() {
    let mut out = BytesMut::new();
    write_value(&mut out, b"a", 1, b"one", Some(7));
    write_value(&mut out, b"b", 2, b"two\r\n", Some(8));
    out.extend_from_slice(END);
    let want = vec![
        value(b"a", 1, Some(7), b"one"),
        value(b"b", 2, Some(8), b"two\r\n"),
        Response::End,
    ];
    assert_eq!(parse_all(&out, Expect::Values, usize::MAX), Ok(want.clone()));
    assert_eq!(parse_all(&out, Expect::Values, 1), Ok(want.clone()));
    assert_eq!(parse_all(&out, Expect::Values, 3), Ok(want));
}

#[test]
fn stats_reply_stream() {
    let mut out = BytesMut::new();
    write_stat(&mut out, "pid", 1);
    write_stat(&mut out, "version", "1.6.18");
    out.extend_from_slice(END);
    let got = parse_all(&out, Expect::Lines, 1).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[1],
        Response::Stat {
            name: b(b"version"),
            value: b(b"1.6.18")
        }
    );
}

#[test]
fn value_data_points_into_the_buffer() {
    let mut buf = BytesMut::from(&b"VALUE key 0 5\r\nhello\r\nEND\r\n"[..]);
    let base = buf.as_ptr() as usize;
    let Ok(Some(Response::Value(v))) = parse_response(&mut buf, Expect::Values, &Limits::default()) else {
        panic!("no value");
    };
    assert_eq!(v.key.as_ptr() as usize, base + 6);
    assert_eq!(v.data.as_ptr() as usize, base + 15);
    assert_eq!(&buf[..], b"END\r\n");
}

#[test]
fn incomplete_is_untouched() {
    let full = b"VALUE k 0 3\r\nabc\r\n";
    for n in 0..full.len() {
        let mut buf = BytesMut::from(&full[..n]);
        assert_eq!(parse_response(&mut buf, Expect::Values, &Limits::default()), Ok(None));
        assert_eq!(&buf[..], &full[..n]);
    }
}

#[test]
fn unexpected_and_malformed_replies() {
    let limits = Limits::default();
    let cases: &[(&[u8], Expect, ResponseError)] = &[
        (b"STORED\r\n", Expect::Values, ResponseError::Unexpected("STORED")),
        (
            b"VALUE k 0 1\r\na\r\n",
            Expect::Stored,
            ResponseError::Unexpected("VALUE"),
        ),
        (b"12\r\n", Expect::Stored, ResponseError::Unexpected("a number")),
        (b"DELETED\r\n", Expect::Touched, ResponseError::Unexpected("DELETED")),
        (b"STAT a b\r\n", Expect::Values, ResponseError::Unexpected("STAT")),
        (b"VERSION 1\r\n", Expect::Ok, ResponseError::Unexpected("VERSION")),
        (b"END\r\n", Expect::Version, ResponseError::Unexpected("END")),
        (b"STORED\n", Expect::Stored, ResponseError::BadLineEnd),
        (b"\n", Expect::Any, ResponseError::BadLineEnd),
        (b"\r\n", Expect::Any, ResponseError::Malformed),
        (b"stored\r\n", Expect::Any, ResponseError::Malformed),
        (b"-1\r\n", Expect::Number, ResponseError::Malformed),
        (b"18446744073709551616\r\n", Expect::Number, ResponseError::Malformed),
        (b"VALUE k 0\r\n", Expect::Values, ResponseError::Malformed),
        (b"VALUE k x 1\r\n", Expect::Values, ResponseError::Malformed),
        (b"VALUE k 4294967296 1\r\n", Expect::Values, ResponseError::Malformed),
        (b"VALUE k 0 -1\r\n", Expect::Values, ResponseError::Malformed),
        (b"VALUE k 0 1 2 3\r\n", Expect::Values, ResponseError::Malformed),
        (b"VALUE k 0 1 x\r\n", Expect::Values, ResponseError::Malformed),
        (
            b"VALUE k 0 1048577\r\n",
            Expect::Values,
            ResponseError::ValueTooLarge(1048577),
        ),
        (
            b"VALUE k 0 99999999999999999999\r\n",
            Expect::Values,
            ResponseError::Malformed,
        ),
        (b"VALUE k 0 1\r\nab\r\n", Expect::Values, ResponseError::BadDataChunk),
        (b"STAT \r\n", Expect::Lines, ResponseError::Malformed),
    ];
    for (input, expect, want) in cases {
        let mut buf = BytesMut::from(*input);
        assert_eq!(
            parse_response(&mut buf, *expect, &limits),
            Err(want.clone()),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(&buf[..], *input, "error leaves the buffer as it was");
    }
    let long = vec![b'x'; crate::limits::MAX_REPLY_LINE + 2];
    let mut buf = BytesMut::from(&long[..]);
    assert_eq!(
        parse_response(&mut buf, Expect::Any, &limits),
        Err(ResponseError::LineTooLong)
    );
    let mut buf = BytesMut::from(&long[..long.len() - 1]);
    assert_eq!(parse_response(&mut buf, Expect::Any, &limits), Ok(None));
    // Error lines answer any request, with or without a message.
    for (input, want) in [
        (&b"ERROR\r\n"[..], Response::Error),
        (b"ERROR: shutdown not enabled\r\n", Response::Error),
        (b"CLIENT_ERROR\r\n", Response::ClientError(Bytes::new())),
        (
            b"SERVER_ERROR out of memory\r\n",
            Response::ServerError(b(b"out of memory")),
        ),
    ] {
        let mut buf = BytesMut::from(input);
        assert_eq!(parse_response(&mut buf, Expect::Version, &limits), Ok(Some(want)));
    }
}

#[test]
fn hostile_bytes_never_panic() {
    let limits = Limits { max_item_size: 4096 };
    let mut seed = 0x243f6a8885a308d3u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let words: &[&[u8]] = &[
        b"VALUE",
        b"STAT",
        b"END",
        b"VERSION",
        b"CLIENT_ERROR",
        b"SERVER_ERROR",
        b"ERROR",
        b" ",
        b"\r\n",
        b"\n",
        b"\r",
        b"0",
        b"1",
        b"3",
        b"4294967296",
        b"99999999999999999999",
        b"k",
        b"STORED",
    ];
    let expects = [
        Expect::Values,
        Expect::Stored,
        Expect::Deleted,
        Expect::Number,
        Expect::Touched,
        Expect::Lines,
        Expect::Version,
        Expect::Ok,
        Expect::Any,
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
        let expect = expects[(rnd() % expects.len() as u64) as usize];
        let mut buf = BytesMut::from(&input[..]);
        while let Ok(Some(_)) = parse_response(&mut buf, expect, &limits) {}
    }
}

#[test]
fn a_value_block_written_in_parts_is_the_whole_block() {
    let mut whole = BytesMut::new();
    write_value(&mut whole, b"k", 3, b"data", Some(9));
    let mut parts = BytesMut::new();
    write_value_head(&mut parts, b"k", 3, 4, Some(9));
    parts.extend_from_slice(b"data");
    parts.extend_from_slice(VALUE_END);
    assert_eq!(whole, parts);
    assert_eq!(VALUE_END_LAST, [VALUE_END, END].concat());
}
