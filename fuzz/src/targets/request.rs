//! `request`: the server's incremental request parser, `text::parse_request`, driven
//! the way `server/src/connection.rs` drives it (parse every complete request, honour
//! `swallow` and `close`), under memcached's default `-I 1m` and a small `-I 600`.
//!
//! Invariants:
//! - no panic; every `Ok(Some)` consumes bytes; `Ok(None)` leaves the buffer as it was
//!   (except for spaces before a meta command's name, which it may drop); after a
//!   hang-up the buffer is empty; an error reply is empty or one `\r\n`-ended line;
//! - no allocation over 4 KiB plus the bytes buffered while parsing (a length field is
//!   never allocated ahead);
//! - classic and peer keys are 1..=250 bytes without control characters or spaces;
//!   meta keys are at most 250 bytes (decoded or not) and hold no space, `\n` or NUL —
//!   control characters are allowed there as memcached 1.6.18 allows them (see
//!   `docs/FUZZING.md`);
//! - every request re-encodes (`Request::encode`) to bytes that parse back, whole and
//!   alone, to an equal request (get key lists and meta flag tokens compared as
//!   sequences: `get a  b` re-encodes as `get a b`);
//! - fed in random splits, the input gives the same requests, errors and leftover as
//!   fed whole, except for the documented case where the split run hangs up because
//!   more than 2048 bytes were buffered without a `\n` (memcached's rule, which depends
//!   on how a long line arrives).

use bytes::{Buf, Bytes, BytesMut};
use ringcache_protocol::text::meta::{MetaCommand, MetaRequest};
use ringcache_protocol::text::parse::LINE_WITHOUT_NEWLINE_MAX;
use ringcache_protocol::text::peer::PeerRequest;
use ringcache_protocol::text::{parse_request, GetKind, GetRequest, Keys, Limits, ParseError, Request, KEY_MAX_LEN};

use crate::alloc::{check, measure};
use crate::mutate::{chunks, splits};
use crate::rng::{hash, Rng};
use crate::{show, Signature, Target};

/// The `request` target (see the module doc).
pub struct RequestTarget;

const LIMITS: [Limits; 2] = [
    Limits {
        max_item_size: 1024 * 1024,
    },
    Limits { max_item_size: 600 },
];

/// The largest single allocation a parse call may make beyond the bytes it was given:
/// copying what arrived is allowed (`rc_*` copies its tokens), allocating what a
/// length field announces is not.
const ALLOC_MAX: usize = 4096;

const DICTIONARY: &[&[u8]] = &[
    b"get ",
    b"gets ",
    b"gat ",
    b"gats ",
    b"bget ",
    b"set ",
    b"add ",
    b"replace ",
    b"append ",
    b"prepend ",
    b"cas ",
    b"delete ",
    b"incr ",
    b"decr ",
    b"touch ",
    b"flush_all",
    b"version",
    b"verbosity ",
    b"stats",
    b" cachedump ",
    b"cache_memlimit ",
    b"quit",
    b"shutdown",
    b"topology",
    b"mg ",
    b"ms ",
    b"md ",
    b"ma ",
    b"mn",
    b"me ",
    b"rc_peer ",
    b"rc_set ",
    b"rc_del ",
    b"rc_get ",
    b"rc_ring ",
    b"rc_id ",
    b" noreply",
    b"\r\n",
    b"\n",
    b" ",
    b" b",
    b" q",
    b" v",
    b" k",
    b" O",
    b" T",
    b" N",
    b" MA",
    b" ME",
    b" C",
    b" E",
    b" D",
    b" J",
    b" F",
    b" Mx",
    b" HTTP/1.1",
    b"GET / HTTP/1.1\r\n",
    b"\x00",
    b"\x7f",
];

impl Target for RequestTarget {
    fn name(&self) -> &'static str {
        "request"
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        DICTIONARY
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let k250 = "k".repeat(250);
        let texts: Vec<String> = vec![
            "get a\r\n".into(),
            "get a b  c\r\n".into(),
            "gets a b\r\n".into(),
            "gat 10 a b\r\n".into(),
            "gats -1 a\r\n".into(),
            "set k 5 100 3\r\nabc\r\n".into(),
            "set k 0 0 3 noreply\r\nabc\r\n".into(),
            "add k 0 0 0\r\n\r\n".into(),
            "replace k 4294967295 -1 2\r\nab\r\n".into(),
            "append k 0 0 1\r\nx\r\n".into(),
            "prepend k 0 0 1\r\nx\r\n".into(),
            "cas k 0 0 1 42\r\nx\r\n".into(),
            "cas k 0 0 1 42 noreply\r\nx\r\n".into(),
            "delete k\r\n".into(),
            "delete k 0 noreply\r\n".into(),
            "incr k 1\r\n".into(),
            "decr k 18446744073709551615 noreply\r\n".into(),
            "touch k 10\r\n".into(),
            "flush_all\r\n".into(),
            "flush_all 10 noreply\r\n".into(),
            "version\r\n".into(),
            "verbosity 1\r\n".into(),
            "stats\r\n".into(),
            "stats items\r\n".into(),
            "stats cachedump 1 10\r\n".into(),
            "cache_memlimit 64 noreply\r\n".into(),
            "quit\r\n".into(),
            "topology\r\n".into(),
            "mn\r\n".into(),
            "mg k v f t c s k O123 q\r\n".into(),
            "mg a2V5 b v k\r\n".into(),
            "ms k 3 T30 F5 C7 MA I q\r\nabc\r\n".into(),
            "ms a2V5 2 b\r\nab\r\n".into(),
            "md k q C5 I T30 x\r\n".into(),
            "ma k D5 J10 N30 MD v\r\n".into(),
            "me k\r\n".into(),
            "me a2V5 b\r\n".into(),
            "rc_peer node-1\r\n".into(),
            "rc_set k 0 0 7 3\r\nabc\r\n".into(),
            "rc_del k 7\r\n".into(),
            "rc_get k\r\n".into(),
            "rc_ring 18446744073709551615\r\nrc_set k 0 0 7 3\r\nabc\r\n".into(),
            "rc_id 7\r\nrc_set aGFzIHNwYWNl 0 0 7 3 b\r\nabc\r\n".into(),
            "rc_get AA== b\r\nrc_del DQo= 9 b\r\n".into(),
            format!("get {k250}\r\n"),
            format!("set {k250} 0 0 1\r\nx\r\n"),
            "set k 0 0 -1\r\n".into(),
            "set k 0 0 4294967295\r\nget k\r\n".into(),
            "set k 0 0 2000\r\n".into(),
            "get k\nset k 0 0 1\nx\r\n".into(),
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            "   get a\r\n".into(),
            "  mg k v\r\n".into(),
        ];
        texts.into_iter().map(String::into_bytes).collect()
    }

    fn run(&self, input: &[u8]) -> Result<u64, String> {
        let mut sig = Signature::default();
        let mut rng = Rng::new(hash(input));
        for limits in &LIMITS {
            let whole = drive(input, &[], limits, true)?;
            for e in &whole.events {
                sig.add_str(e.kind());
            }
            sig.add(whole.closed_at.is_some() as u64);
            let cuts = splits(&mut rng, input.len());
            let split = drive(input, &cuts, limits, false)?;
            compare(input, &whole, &split, &cuts)?;
        }
        Ok(sig.finish())
    }
}

/// What the parser produced for one request or error.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Request(Request),
    Error(ParseError),
}

impl Event {
    fn kind(&self) -> &'static str {
        match self {
            Event::Request(r) => match r {
                Request::Get(_) => "get",
                Request::Store(_) => "store",
                Request::Delete { .. } => "delete",
                Request::Arith { .. } => "arith",
                Request::Touch { .. } => "touch",
                Request::FlushAll { .. } => "flush",
                Request::Version => "version",
                Request::Verbosity { .. } => "verbosity",
                Request::Stats { .. } => "stats",
                Request::CacheMemlimit { .. } => "cache_memlimit",
                Request::Quit => "quit",
                Request::Meta(m) => match m.command {
                    MetaCommand::Get => "mg",
                    MetaCommand::Set => "ms",
                    MetaCommand::Delete => "md",
                    MetaCommand::Arithmetic => "ma",
                    MetaCommand::NoOp => "mn",
                    MetaCommand::Debug => "me",
                },
                Request::Topology => "topology",
                Request::Peer(_) => "peer",
            },
            Event::Error(e) => std::str::from_utf8(e.reply).unwrap_or("error"),
        }
    }
}

/// One run over the input.
#[derive(Debug)]
struct Run {
    events: Vec<Event>,
    /// The input offset of the buffer's start when the parser hung up, if it did.
    closed_at: Option<usize>,
    /// Bytes left unparsed, and bytes still to swallow, at the end.
    leftover: usize,
    pending_swallow: u64,
}

/// Feeds `input` cut at `cuts` to the parser as the connection loop does.
fn drive(input: &[u8], cuts: &[usize], limits: &Limits, deep: bool) -> Result<Run, String> {
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    let mut swallow = 0u64;
    let mut events = Vec::new();
    for chunk in chunks(input, cuts) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        // Each pass consumes bytes or stops: bounded by the input length.
        for _ in 0..=input.len() + 1 {
            if swallow > 0 {
                let d = swallow.min(buf.len() as u64);
                buf.advance(d as usize);
                swallow -= d;
                if swallow > 0 {
                    break;
                }
            }
            let offset = fed - buf.len();
            let before = buf.len();
            let (result, usage) = measure(|| parse_request(&mut buf, limits));
            check("parse_request", usage, ALLOC_MAX + before, 64 * (ALLOC_MAX + before))
                .map_err(|e| format!("{e} at offset {offset}"))?;
            match result {
                Ok(Some(req)) => {
                    let consumed = crate::targets::check_consumed("parse_request", &input[..fed], before, &buf)?;
                    if consumed == 0 {
                        return Err(format!("a request consumed no bytes: {req:?}"));
                    }
                    check_keys(&req)?;
                    if deep {
                        round_trip(&req, limits)?;
                    }
                    events.push(Event::Request(normalize(&req)));
                }
                Ok(None) => {
                    let dropped = crate::targets::check_consumed("incomplete", &input[..fed], before, &buf)?;
                    let gone = &input[offset..offset + dropped];
                    if gone.iter().any(|&b| b != b' ') {
                        return Err(format!("\"incomplete\" dropped non-space bytes {}", show(gone)));
                    }
                    break;
                }
                Err(e) => {
                    crate::targets::check_consumed("error", &input[..fed], before, &buf)?;
                    let r = e.reply;
                    if !r.is_empty() && (!r.ends_with(b"\r\n") || r.iter().filter(|&&b| b == b'\n').count() != 1) {
                        return Err(format!("error reply is not one line: {}", show(r)));
                    }
                    if e.close {
                        if !buf.is_empty() {
                            return Err("hung up but left bytes in the buffer".into());
                        }
                        events.push(Event::Error(e));
                        return Ok(Run {
                            events,
                            closed_at: Some(offset),
                            leftover: 0,
                            pending_swallow: 0,
                        });
                    }
                    swallow = e.swallow;
                    events.push(Event::Error(e));
                }
            }
        }
    }
    Ok(Run {
        events,
        closed_at: None,
        leftover: buf.len(),
        pending_swallow: swallow,
    })
}

/// Whole and split runs must agree (see the module documentation for the exception).
fn compare(input: &[u8], whole: &Run, split: &Run, cuts: &[usize]) -> Result<(), String> {
    let same = whole.events == split.events
        && whole.closed_at == split.closed_at
        && whole.leftover == split.leftover
        && whole.pending_swallow == split.pending_swallow;
    if same {
        return Ok(());
    }
    // The split run may hang up on a line that had no `\n` within 2048 buffered bytes.
    if let Some(at) = split.closed_at {
        let n = split.events.len() - 1;
        let window = &input[at..input.len().min(at + LINE_WITHOUT_NEWLINE_MAX + 1)];
        let silent = matches!(&split.events[n], Event::Error(e) if e.reply.is_empty());
        if silent
            && window.len() > LINE_WITHOUT_NEWLINE_MAX
            && !window.contains(&b'\n')
            && whole.events.get(..n) == Some(&split.events[..n])
        {
            return Ok(());
        }
    }
    let first = whole.events.iter().zip(&split.events).position(|(a, b)| a != b);
    Err(format!(
        "split feeding differs from whole feeding (cuts {cuts:?}): first difference at event {first:?}; \
         whole {} events (closed at {:?}, leftover {}, swallow {}), split {} events (closed at {:?}, leftover {}, \
         swallow {}); whole {:?} vs split {:?}",
        whole.events.len(),
        whole.closed_at,
        whole.leftover,
        whole.pending_swallow,
        split.events.len(),
        split.closed_at,
        split.leftover,
        split.pending_swallow,
        first.map(|i| &whole.events[i]),
        first.map(|i| &split.events[i]),
    ))
}

fn classic_key(what: &str, key: &[u8]) -> Result<(), String> {
    if key.is_empty() || key.len() > KEY_MAX_LEN || key.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(format!("{what} accepted a bad key {}", show(key)));
    }
    Ok(())
}

fn check_keys(req: &Request) -> Result<(), String> {
    match req {
        Request::Get(g) => {
            // `gat <exptime>` without keys is answered `END`, as memcached does.
            let touch = matches!(g.kind, GetKind::Gat { .. } | GetKind::Gats { .. });
            if !touch && g.keys.iter().next().is_none() {
                return Err(format!("a retrieval without keys: {req:?}"));
            }
            g.keys.iter().try_for_each(|k| classic_key("get", &k))
        }
        Request::Store(s) => classic_key("store", &s.key),
        Request::Delete { key, .. } | Request::Arith { key, .. } | Request::Touch { key, .. } => {
            classic_key("delete/arith/touch", key)
        }
        // Peer keys may hold any byte (base64 on the wire), but never none or too many.
        Request::Peer(PeerRequest::Set { key, .. } | PeerRequest::Del { key, .. } | PeerRequest::Get { key }) => {
            if key.is_empty() || key.len() > KEY_MAX_LEN {
                return Err(format!("rc_* accepted a bad key {}", show(key)));
            }
            Ok(())
        }
        Request::Meta(m) => meta_key(m),
        Request::Peer(PeerRequest::Hello { .. } | PeerRequest::Ring { .. } | PeerRequest::Id { .. })
        | Request::FlushAll { .. }
        | Request::Version
        | Request::Verbosity { .. }
        | Request::Stats { .. }
        | Request::CacheMemlimit { .. }
        | Request::Quit
        | Request::Topology => Ok(()),
    }
}

fn meta_key(m: &MetaRequest) -> Result<(), String> {
    if m.command == MetaCommand::NoOp {
        return Ok(());
    }
    let k = &m.key;
    let binary = m.flags.base64_key();
    if k.len() > KEY_MAX_LEN || (!binary && (k.is_empty() || k.iter().any(|&b| matches!(b, b' ' | b'\n' | 0)))) {
        return Err(format!("meta command accepted a bad key {}", show(k)));
    }
    Ok(())
}

/// Get key lists and meta flag tokens as single-space separated sequences: requests
/// that differ only in how many spaces separated their tokens are the same request.
fn normalize(req: &Request) -> Request {
    let join = |parts: Vec<&[u8]>| Bytes::from(parts.join(&b' '));
    match req {
        Request::Get(g) => Request::Get(GetRequest {
            kind: g.kind,
            keys: Keys::new(join(
                g.keys
                    .as_bytes()
                    .split(|&b| b == b' ')
                    .filter(|k| !k.is_empty())
                    .collect(),
            )),
        }),
        Request::Meta(m) => {
            let mut m = m.clone();
            m.tokens = join(m.tokens.split(|&b| b == b' ').filter(|t| !t.is_empty()).collect());
            Request::Meta(m)
        }
        other => other.clone(),
    }
}

fn round_trip(req: &Request, limits: &Limits) -> Result<(), String> {
    let mut wire = BytesMut::new();
    req.encode(&mut wire);
    let encoded = wire.clone();
    let back = parse_request(&mut wire, limits);
    match back {
        Ok(Some(r)) if wire.is_empty() && normalize(&r) == normalize(req) => Ok(()),
        other => Err(format!(
            "re-encoding does not parse back: {req:?} encoded as {} parsed as {other:?} leaving {} bytes",
            show(&encoded),
            wire.len()
        )),
    }
}
