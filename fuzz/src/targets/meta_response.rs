//! `meta_response`: the client's meta reply parser, `text::meta::parse_meta_response`,
//! and `text::frame::reply_len` (`Meta`, `MetaUntilNoop`) checked against it.
//!
//! Invariants:
//! - no panic; `Ok(None)` and errors leave the buffer untouched; every reply consumes
//!   bytes; no allocation over 4 KiB (a `VA` length is never allocated ahead);
//! - `VA` and only `VA` carries a value, at most `MAX_VALUE` bytes; the reply's rest
//!   never spans a line end;
//! - fed in random splits, the replies and the final error are those of the whole input;
//! - whenever the typed parser reads a reply, `reply_len(Meta)` frames the same bytes,
//!   and a run of replies ending in a bare `MN` is framed whole by
//!   `reply_len(MetaUntilNoop)`.

use bytes::BytesMut;
use ringcache_protocol::limits::MAX_REPLY_VALUE as MAX_VALUE;
use ringcache_protocol::text::frame::{self, reply_len};
use ringcache_protocol::text::meta::{parse_meta_response, MetaResponse, MetaResponseError, MetaStatus};

use crate::alloc::{check, measure};
use crate::mutate::{chunks, splits};
use crate::rng::{hash, Rng};
use crate::{Signature, Target};

/// The `meta_response` target (see the module doc).
pub struct MetaResponseTarget;

const ALLOC_MAX: usize = 4096;

const DICTIONARY: &[&[u8]] = &[
    b"HD",
    b"VA ",
    b"EN",
    b"NS",
    b"EX",
    b"NF",
    b"MN",
    b"ME ",
    b"ERROR",
    b"CLIENT_ERROR ",
    b"SERVER_ERROR ",
    b"\r\n",
    b"\n",
    b" ",
    b" c5",
    b" O123",
    b" k",
    b" W",
    b" Z",
    b" X",
    b" t-1",
    b" b",
];

impl Target for MetaResponseTarget {
    fn name(&self) -> &'static str {
        "meta_response"
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        DICTIONARY
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        [
            &b"HD\r\n"[..],
            b"HD c5 kczE= b O5\r\nMN\r\n",
            b"VA 3 O1 khk c3 f5 t100 s3 h0 l0\r\nabc\r\n",
            b"VA 0 c18 t30 s0 f0 W\r\n\r\n",
            b"VA 2\r\n10\r\nHD\r\n",
            b"VA 4\r\na\r\nb\r\n",
            b"EN\r\nEN O12 knokey\r\nNS c0\r\nEX kd1 O1\r\nNF\r\nMN\r\n",
            b"ME hk exp=-98 la=0 cas=3 fetch=yes cls=1 size=68\r\n",
            b"ERROR\r\nCLIENT_ERROR bad data chunk\r\nSERVER_ERROR object too large for cache\r\n",
            b"VA 1073741824 c1\r\n",
        ]
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect()
    }

    fn run(&self, input: &[u8]) -> Result<u64, String> {
        let mut sig = Signature::default();
        let mut rng = Rng::new(hash(input));
        let whole = drive(input, &[])?;
        for (r, _) in &whole.replies {
            sig.add(r.status as u64);
        }
        sig.add_str(&format!("{:?}", whole.error));
        let cuts = splits(&mut rng, input.len());
        let split = drive(input, &cuts)?;
        if (&split.replies, &split.error) != (&whole.replies, &whole.error) {
            return Err(format!(
                "split feeding (cuts {cuts:?}) differs: whole {} replies then {:?}, split {} replies then {:?}",
                whole.replies.len(),
                whole.error,
                split.replies.len(),
                split.error
            ));
        }
        cross_check_frame(input, &whole)?;
        Ok(sig.finish())
    }
}

#[derive(Debug)]
struct Run {
    replies: Vec<(MetaResponse, usize)>,
    error: Option<MetaResponseError>,
}

fn drive(input: &[u8], cuts: &[usize]) -> Result<Run, String> {
    let mut buf = BytesMut::new();
    let mut replies = Vec::new();
    let mut fed = 0;
    for chunk in chunks(input, cuts) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        for _ in 0..=input.len() + 1 {
            let before = buf.len();
            let (result, usage) = measure(|| parse_meta_response(&mut buf));
            check("parse_meta_response", usage, ALLOC_MAX, 16 * ALLOC_MAX)?;
            match result {
                Ok(Some(r)) => {
                    let used = crate::targets::check_consumed("parse_meta_response", &input[..fed], before, &buf)?;
                    if used == 0 {
                        return Err(format!("a reply consumed no bytes: {r:?}"));
                    }
                    if (r.status == MetaStatus::Va) != r.value.is_some() {
                        return Err(format!("value presence does not match the status: {r:?}"));
                    }
                    if r.value.as_ref().is_some_and(|v| v.len() > MAX_VALUE) || r.rest.contains(&b'\n') {
                        return Err(format!("accepted {r:?}"));
                    }
                    replies.push((r, used));
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

fn cross_check_frame(input: &[u8], run: &Run) -> Result<(), String> {
    let Some((_, first)) = run.replies.first() else {
        return Ok(());
    };
    let framed = reply_len(input, frame::Expect::Meta);
    if framed != Ok(Some(*first)) {
        return Err(format!(
            "the typed parser reads a {first}-byte reply, reply_len(Meta) says {framed:?}"
        ));
    }
    // Replies up to the first bare `MN`.
    let mut pos = 0;
    for (r, used) in &run.replies {
        pos += used;
        // A bare `MN\r\n` (the typed parser also reads `MN junk` as `MN`; a relay does
        // not need to, since ringcache and memcached send it bare).
        if r.status == MetaStatus::Mn && input[pos - used..pos] == *b"MN\r\n" {
            let framed = reply_len(input, frame::Expect::MetaUntilNoop);
            if framed != Ok(Some(pos)) {
                return Err(format!(
                    "the typed parser reads {pos} bytes up to MN, reply_len(MetaUntilNoop) says {framed:?}"
                ));
            }
            break;
        }
    }
    Ok(())
}
