//! `response`: the client's classic reply parser, `text::response::parse_response`,
//! for every `Expect`, under `-I 1m` and a small `-I 100`; and `text::frame::reply_len`
//! (how a relaying node frames the same bytes) checked against it.
//!
//! Invariants:
//! - no panic; `Ok(None)` and errors leave the buffer untouched; every reply consumes
//!   bytes; no allocation over 4 KiB (a `VALUE` length is never allocated ahead);
//! - a `VALUE` key is at most 250 bytes and its data within `-I`;
//! - every reply re-encodes (`Response::encode`) to bytes that parse back, under the
//!   same expectation, to an equal reply;
//! - fed in random splits, the replies and the final error are those of the whole input;
//! - whenever the typed parser reads a whole reply (the `VALUE`s and `END` of a
//!   retrieval, the `STAT`s and `END` of `stats`, a single line otherwise),
//!   `reply_len` frames exactly the same bytes; `reply_len` never claims more bytes
//!   than it was given, and frames a reply only once all of it is there.

use bytes::BytesMut;
use ringcache_protocol::text::frame::{self, reply_len};
use ringcache_protocol::text::response::{parse_response, Response, ResponseError};
use ringcache_protocol::text::Expect;
use ringcache_protocol::text::{Limits, KEY_MAX_LEN};

use crate::alloc::{check, measure};
use crate::mutate::{chunks, splits};
use crate::rng::{hash, Rng};
use crate::{show, Signature, Target};

/// The `response` target (see the module doc).
pub struct ResponseTarget;

const EXPECTS: [Expect; 9] = [
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

const LIMITS: [Limits; 2] = [
    Limits {
        max_item_size: 1024 * 1024,
    },
    Limits { max_item_size: 100 },
];

const ALLOC_MAX: usize = 4096;

const DICTIONARY: &[&[u8]] = &[
    b"VALUE ",
    b"END\r\n",
    b"STORED\r\n",
    b"NOT_STORED\r\n",
    b"EXISTS\r\n",
    b"NOT_FOUND\r\n",
    b"DELETED\r\n",
    b"TOUCHED\r\n",
    b"OK\r\n",
    b"RESET\r\n",
    b"ERROR\r\n",
    b"ERROR: x\r\n",
    b"CLIENT_ERROR ",
    b"SERVER_ERROR ",
    b"VERSION ",
    b"STAT ",
    b"\r\n",
    b"\n",
    b" ",
    b"TOPOLOGY ",
    b"MEMBER ",
];

impl Target for ResponseTarget {
    fn name(&self) -> &'static str {
        "response"
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        DICTIONARY
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let k250 = "k".repeat(250);
        [
            "VALUE a 0 1\r\nx\r\nEND\r\n".to_string(),
            "VALUE a 5 3 99\r\n\r\n\n\r\nVALUE b 0 0\r\n\r\nEND\r\n".into(),
            format!("VALUE {k250} 4294967295 2 18446744073709551615\r\nab\r\nEND\r\n"),
            "END\r\n".into(),
            "STORED\r\nNOT_STORED\r\nEXISTS\r\nNOT_FOUND\r\n".into(),
            "DELETED\r\nNOT_FOUND\r\n".into(),
            "42\r\n18446744073709551615\r\nNOT_FOUND\r\n".into(),
            "TOUCHED\r\n".into(),
            "STAT pid 1\r\nSTAT version 1.6.18\r\nSTAT x a b c\r\nEND\r\n".into(),
            "RESET\r\nOK\r\n".into(),
            "VERSION 1.6.18\r\n".into(),
            "ERROR\r\nERROR: shutdown not enabled\r\n".into(),
            "CLIENT_ERROR bad command line format\r\n".into(),
            "SERVER_ERROR object too large for cache\r\n".into(),
            "VALUE a 0 200\r\n".into(),
        ]
        .into_iter()
        .map(String::into_bytes)
        .collect()
    }

    fn run(&self, input: &[u8]) -> Result<u64, String> {
        let mut sig = Signature::default();
        let mut rng = Rng::new(hash(input));
        for limits in &LIMITS {
            for expect in EXPECTS {
                let whole = drive(input, &[], expect, limits, true)?;
                sig.add(whole.replies.len().min(4) as u64);
                sig.add_str(&format!("{expect:?}{:?}", whole.error));
                let cuts = splits(&mut rng, input.len());
                let split = drive(input, &cuts, expect, limits, false)?;
                if (&split.replies, &split.error) != (&whole.replies, &whole.error) {
                    return Err(format!(
                        "split feeding (cuts {cuts:?}, {expect:?}) differs: whole {} replies then {:?}, split {} \
                         replies then {:?}",
                        whole.replies.len(),
                        whole.error,
                        split.replies.len(),
                        split.error
                    ));
                }
                if limits.max_item_size == LIMITS[0].max_item_size {
                    cross_check_frame(input, expect, &whole)?;
                }
            }
        }
        Ok(sig.finish())
    }
}

#[derive(Debug)]
struct Run {
    /// Each reply with the bytes it consumed.
    replies: Vec<(Response, usize)>,
    error: Option<ResponseError>,
}

fn drive(input: &[u8], cuts: &[usize], expect: Expect, limits: &Limits, deep: bool) -> Result<Run, String> {
    let mut buf = BytesMut::new();
    let mut replies = Vec::new();
    let mut fed = 0;
    for chunk in chunks(input, cuts) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        for _ in 0..=input.len() + 1 {
            let before = buf.len();
            let (result, usage) = measure(|| parse_response(&mut buf, expect, limits));
            check("parse_response", usage, ALLOC_MAX, 16 * ALLOC_MAX)?;
            match result {
                Ok(Some(resp)) => {
                    let used = crate::targets::check_consumed("parse_response", &input[..fed], before, &buf)?;
                    if used == 0 {
                        return Err(format!("a reply consumed no bytes: {resp:?}"));
                    }
                    if let Response::Value(v) = &resp {
                        if v.key.len() > KEY_MAX_LEN || v.data.len() > limits.max_item_size {
                            return Err(format!(
                                "accepted a VALUE with a {}-byte key and {} bytes of data",
                                v.key.len(),
                                v.data.len()
                            ));
                        }
                    }
                    if deep {
                        round_trip(&resp, expect, limits)?;
                    }
                    replies.push((resp, used));
                }
                Ok(None) => {
                    if crate::targets::check_consumed("incomplete", &input[..fed], before, &buf)? != 0 {
                        return Err("\"incomplete\" consumed bytes".into());
                    }
                    break;
                }
                Err(e) => {
                    if crate::targets::check_consumed("error", &input[..fed], before, &buf)? != 0 {
                        return Err(format!("error {e:?} consumed bytes"));
                    }
                    return Ok(Run {
                        replies,
                        error: Some(e),
                    });
                }
            }
        }
    }
    Ok(Run { replies, error: None })
}

fn round_trip(resp: &Response, expect: Expect, limits: &Limits) -> Result<(), String> {
    let mut wire = BytesMut::new();
    resp.encode(&mut wire);
    let encoded = wire.clone();
    match parse_response(&mut wire, expect, limits) {
        Ok(Some(r)) if wire.is_empty() && r == *resp => Ok(()),
        other => Err(format!(
            "re-encoding does not parse back: {resp:?} encoded as {} parsed as {other:?}",
            show(&encoded)
        )),
    }
}

/// The typed parser's first complete reply must be what `reply_len` frames.
fn cross_check_frame(input: &[u8], expect: Expect, run: &Run) -> Result<(), String> {
    use Response as R;
    let shape = match expect {
        Expect::Values => frame::Expect::Values,
        Expect::Lines => frame::Expect::Lines,
        Expect::Any => return Ok(()),
        _ => frame::Expect::Line,
    };
    // Where the typed parser says the first reply ends.
    let mut end = None;
    let mut pos = 0;
    for (resp, used) in &run.replies {
        pos += used;
        let last = match shape {
            frame::Expect::Values => !matches!(resp, R::Value(_)),
            frame::Expect::Lines => !matches!(resp, R::Stat { .. }),
            _ => true,
        };
        if last {
            end = Some(pos);
            break;
        }
    }
    let framed = reply_len(input, shape);
    if let Ok(Some(n)) = framed {
        if n > input.len() {
            return Err(format!("reply_len claims {n} bytes of {}", input.len()));
        }
        if let Ok(Some(m)) = reply_len(&input[..n - 1], shape) {
            return Err(format!(
                "reply_len frames {m} bytes of a {n}-byte reply cut short by one"
            ));
        }
    }
    match end {
        Some(n) if framed != Ok(Some(n)) => Err(format!(
            "{expect:?}: the typed parser reads a {n}-byte reply, reply_len({shape:?}) says {framed:?}"
        )),
        _ => Ok(()),
    }
}
