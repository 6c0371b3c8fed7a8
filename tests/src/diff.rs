//! Differential testing: play the same raw bytes to a real memcached and to a target server
//! (ringcache, or a second memcached for the self-check) and compare the full replies.
//!
//! # Targets
//! A group runs against one of two targets ([`Via`]): one ringcache node, or node 1 of a
//! converged 3-node `--replicas 2` ringcache cluster ([`ClusterTarget`]), since a cluster
//! must be indistinguishable from one memcached. Through the cluster each case's key prefix
//! is chosen so that its keys' primaries are other nodes (see below): node 1 then forwards
//! the requests and relays the owners' replies, which is the path under test.
//!
//! # Cases
//! A [`Case`] is a name and a list of [`Step`]s: raw chunks to send (each its own write, so a
//! command can be split across many writes), pauses between them, and sync points. Before
//! sending, `$K` becomes the case's unique key prefix (`k017_`, [`PREFIX_LEN`] bytes),
//! `$B(TEXT)` becomes the base64 of prefix + TEXT and `$X(HEX)` the base64 of prefix + the
//! bytes HEX spells (for keys holding any byte, sent with the meta `b` flag), so cases
//! running at once on one server pair never share keys. Data blocks must not contain `$`.
//!
//! # Key prefixes
//! The prefix of case number `i` is one character, `i` in three digits, and `_`. Against one
//! node (and memcached) the character is `k`. Through a cluster the runner tries `k`, then
//! `a`..`z`, `A`..`Z`, `0`..`9`, and takes the first prefix under which none of the case's
//! keys (every `$K...` token up to a space or line end, every `$B(..)`/`$X(..)`) has node 1
//! as its primary, computed from node 1's `topology` reply as the smart client does; if
//! none of the 62 achieves that (cases with dozens of keys), the one with the fewest. The
//! length stays [`PREFIX_LEN`], so key-length cases keep working.
//!
//! # Knowing when a reply is complete
//! After the last step (and at every sync point) the runner sends the sentinel `mn\r\n`, which
//! memcached answers with `MN\r\n` once everything before it has been answered. A case may send
//! `mn` itself, so the runner counts: it reads until the reply holds as many `MN` lines as the
//! bytes sent hold `mn` lines (sentinels included) and ends with one. A sentinel that lands
//! inside an unfinished data block would be swallowed; the reference memcached then never
//! answers it, and the runner reports the case itself as malformed. Cases after which the
//! server closes the connection (`quit`, a line too long) finish by reading to end of stream
//! instead ([`Case::closes`]).
//!
//! # What is normalised
//! Only what legitimately differs between two correct servers: CAS unique numbers (each distinct
//! number is replaced by its order of first appearance in that server's transcript, so "same" and
//! "different" relations are still compared), the `VERSION` string, `STAT` values (and `STAT`
//! names that only one side reports, except the [`CORE_STATS`]; STAT lines are sorted), and the
//! numbers in `me` debug lines other than `cas=`. Data blocks (`VALUE`/`VA`) are copied verbatim.
//!
//! # Looking at the reference
//! With `RINGCACHE_DIFF_DUMP=DIR`, every group writes `DIR/<group>.txt` (through a cluster
//! `DIR/<group>_through_cluster.txt`): each case's request and memcached's normalised reply.
//! With `RINGCACHE_DIFF_SEQUENTIAL=1` every group plays its cases one at a time, which tells
//! a case that fails on its own from one hit by another case's damage (a desynchronised
//! peer connection, say); `RINGCACHE_DIFF_CASES=name,name` plays only the cases named (each
//! still with its own key prefix).
//!
//! # Markers
//! The runner appends lines such as `<<CLOSED>>` (server closed the connection) or
//! `<<TIMEOUT ...>>` to a transcript, so those outcomes are compared too.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use ringcache_protocol::text::frame::va_len;
use ringcache_protocol::text::value::parse_value_header;

use crate::cluster::{ClusterTarget, Placement};
use crate::process::{ServerKind, ServerProcess};
use crate::raw::{RawConn, ReadEnd};

/// Length of the per-case key prefix that replaces `$K` (`k` + 3 digits + `_`).
pub const PREFIX_LEN: usize = 5;
/// The sentinel request and the line that answers it.
const SENTINEL: &[u8] = b"mn\r\n";
/// How long the reference memcached may take to answer a sentinel (it takes milliseconds).
const REFERENCE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the target may take to answer a sentinel before the case counts as hung.
const TARGET_TIMEOUT: Duration = Duration::from_secs(2);
/// The same through a cluster: a forwarded request may wait for an owner for up to the
/// peer timeout (1 s) per hop, so a stalled hop is not mistaken for a hung case.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(4);
/// Cases of a parallel group run on this many connections at once.
const WORKERS: usize = 8;

/// Stats whose presence is compared even when the target lacks them.
pub const CORE_STATS: &[&str] = &[
    "pid",
    "uptime",
    "time",
    "version",
    "curr_connections",
    "total_connections",
    "cmd_get",
    "cmd_set",
    "get_hits",
    "get_misses",
    "curr_items",
    "total_items",
    "bytes",
    "limit_maxbytes",
    "threads",
];

/// One thing a case does on its connection.
#[derive(Debug, Clone)]
pub enum Step {
    /// Write these bytes (after `$K`/`$B(..)` substitution) in one write.
    Send(Vec<u8>),
    /// Sync, then write these bytes with `$CAS` replaced by the last CAS number seen in the
    /// replies so far, `$CAS1` by that number plus one and `$PREVCAS` by that number minus one.
    SendCas(Vec<u8>),
    /// Substitute, then write the bytes as writes of `size` bytes with `pause` between them
    /// (one command split across many small writes).
    Split {
        /// The bytes (before substitution).
        bytes: Vec<u8>,
        /// Bytes per write.
        size: usize,
        /// Pause between writes.
        pause: Duration,
    },
    /// Wait this long before the next step.
    Pause(Duration),
    /// Send the sentinel and wait for everything so far to be answered.
    Sync,
}

/// How a case ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Send the sentinel and read until it is answered.
    Sentinel,
    /// The server is expected to close the connection: read to end of stream.
    Closed,
}

/// A named request script.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique name, shown in failures.
    pub name: String,
    /// What to do, in order.
    pub steps: Vec<Step>,
    /// How the case ends.
    pub finish: Finish,
    /// Where ringcache deliberately answers otherwise than memcached 1.6.18: why, and
    /// ringcache's exact reply (with `$K` substitution; the sentinel's `MN` included).
    pub divergence: Option<(&'static str, Vec<u8>)>,
    /// Where a ringcache cluster (through node 1) deliberately answers otherwise than
    /// memcached 1.6.18 and than one node: why, and the cluster's exact reply. Takes the
    /// place of [`Case::divergence`] through a cluster.
    pub cluster_divergence: Option<(&'static str, Vec<u8>)>,
}

impl Case {
    /// An empty case.
    pub fn new(name: impl Into<String>) -> Case {
        Case {
            name: name.into(),
            steps: Vec::new(),
            finish: Finish::Sentinel,
            divergence: None,
            cluster_divergence: None,
        }
    }

    /// Declares a deliberate difference from memcached 1.6.18: ringcache must answer
    /// exactly `ringcache_reply` instead of what memcached answers (the self-check,
    /// memcached against memcached, still compares the two memcacheds).
    pub fn diverges(mut self, why: &'static str, ringcache_reply: impl AsRef<[u8]>) -> Case {
        self.divergence = Some((why, ringcache_reply.as_ref().to_vec()));
        self
    }

    /// Declares a deliberate difference of a cluster from memcached 1.6.18 (and from one
    /// node): through a ringcache cluster the case must answer exactly `cluster_reply`.
    /// Each one is listed in docs/PROTOCOL.md ("Differences from one memcached").
    pub fn diverges_in_cluster(mut self, why: &'static str, cluster_reply: impl AsRef<[u8]>) -> Case {
        self.cluster_divergence = Some((why, cluster_reply.as_ref().to_vec()));
        self
    }

    /// Adds one write.
    pub fn send(mut self, bytes: impl AsRef<[u8]>) -> Case {
        self.steps.push(Step::Send(bytes.as_ref().to_vec()));
        self
    }

    /// Adds one write that uses `$CAS` / `$CAS1` (see [`Step::SendCas`]).
    pub fn send_cas(mut self, bytes: impl AsRef<[u8]>) -> Case {
        self.steps.push(Step::SendCas(bytes.as_ref().to_vec()));
        self
    }

    /// Adds a pause.
    pub fn pause_ms(mut self, ms: u64) -> Case {
        self.steps.push(Step::Pause(Duration::from_millis(ms)));
        self
    }

    /// Adds a sync point.
    pub fn sync(mut self) -> Case {
        self.steps.push(Step::Sync);
        self
    }

    /// Sends `bytes` (after substitution) as writes of `size` bytes with `pause_ms` between them.
    pub fn split(mut self, bytes: impl AsRef<[u8]>, size: usize, pause_ms: u64) -> Case {
        self.steps.push(Step::Split {
            bytes: bytes.as_ref().to_vec(),
            size: size.max(1),
            pause: Duration::from_millis(pause_ms),
        });
        self
    }

    /// Marks the case as one after which the server closes the connection.
    pub fn closes(mut self) -> Case {
        self.finish = Finish::Closed;
        self
    }
}

/// Cases that share one server pair started with the same flags.
#[derive(Debug, Clone)]
pub struct Group {
    /// Group name, shown in failures.
    pub name: &'static str,
    /// Flags for both servers (besides port and address).
    pub flags: Vec<&'static str>,
    /// The cases.
    pub cases: Vec<Case>,
    /// Whether the cases may run at once (they must then not touch each other's keys or
    /// global state such as `flush_all`).
    pub parallel: bool,
}

/// The first characters of key prefixes, in the order a cluster run tries them (`k`,
/// the only one used against a single node, first).
const PREFIX_FIRST: &[u8] = b"kabcdefghijlmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// The key prefix of case number `index` in its group, variant `attempt` (0 is `k017_`;
/// see "Key prefixes" above).
pub fn prefix(index: usize, attempt: usize) -> String {
    assert!(index < 1000, "a group holds at most 1000 cases");
    let first = PREFIX_FIRST[attempt % PREFIX_FIRST.len()] as char;
    format!("{first}{index:03}_")
}

/// Where a `$B(..)` or `$X(..)` placeholder starts in `rest`: its text and its length.
fn placeholder<'a>(rest: &'a [u8], open: &[u8]) -> Option<(&'a [u8], usize)> {
    let inner = rest.strip_prefix(open)?;
    let end = inner.iter().position(|&b| b == b')')?;
    Some((&inner[..end], open.len() + end + 1))
}

/// The bytes a `$X(..)` placeholder's hex digits spell.
fn unhex(hex: &[u8]) -> Vec<u8> {
    let digit = |c: u8| {
        (c as char)
            .to_digit(16)
            .unwrap_or_else(|| panic!("bad hex digit in $X({})", escape(hex))) as u8
    };
    assert!(
        hex.len().is_multiple_of(2),
        "odd number of hex digits in $X({})",
        escape(hex)
    );
    hex.chunks(2).map(|p| digit(p[0]) << 4 | digit(p[1])).collect()
}

/// One key-naming placeholder at the start of `rest`: the key's bytes after the prefix,
/// and the placeholder's length.
fn key_placeholder(rest: &[u8]) -> Option<(Vec<u8>, usize)> {
    if let Some((text, len)) = placeholder(rest, b"$B(") {
        return Some((text.to_vec(), len));
    }
    if let Some((hex, len)) = placeholder(rest, b"$X(") {
        return Some((unhex(hex), len));
    }
    None
}

/// Replaces `$K` (the case's key prefix), `$B(TEXT)` (base64 of prefix + TEXT) and
/// `$X(HEX)` (base64 of prefix + the bytes HEX spells) in `bytes`.
pub fn substitute(bytes: &[u8], prefix: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let rest = &bytes[i..];
            if rest.starts_with(b"$K") {
                out.extend_from_slice(prefix.as_bytes());
                i += 2;
                continue;
            }
            if let Some((tail, len)) = key_placeholder(rest) {
                let mut key = prefix.as_bytes().to_vec();
                key.extend_from_slice(&tail);
                out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(key).as_bytes());
                i += len;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The distinct keys a case names under `prefix`: each `$K` with what follows it up to a
/// space, tab or line end, and the decoded key of each `$B(..)` / `$X(..)`. (Keys split
/// across writes are seen only in part; placement only needs most keys right.)
pub fn case_keys(case: &Case, prefix: &str) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    for step in &case.steps {
        let bytes = match step {
            Step::Send(b) | Step::SendCas(b) | Step::Split { bytes: b, .. } => b,
            Step::Pause(_) | Step::Sync => continue,
        };
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            let mut key = prefix.as_bytes().to_vec();
            if let Some(tail) = rest.strip_prefix(b"$K") {
                let end = tail
                    .iter()
                    .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                    .unwrap_or(tail.len());
                key.extend_from_slice(&tail[..end]);
                keys.push(key);
                i += 2 + end;
            } else if let Some((tail, len)) = key_placeholder(rest) {
                key.extend_from_slice(&tail);
                keys.push(key);
                i += len;
            } else {
                i += 1;
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// How a case's keys fall on the cluster under the prefix chosen for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpread {
    /// Distinct keys the case names.
    pub keys: usize,
    /// Of those, the ones whose primary is the node the case talks to.
    pub primary_here: usize,
    /// Of those, the ones the node the case talks to holds at all (primary or replica).
    pub owned_here: usize,
}

/// The prefix of case `index`: `k...` without a placement; through a cluster the first
/// candidate under which no key's primary is the node talked to (else the one with the
/// fewest such keys), with how its keys fall.
pub fn choose_prefix(case: &Case, index: usize, placement: Option<&Placement>) -> (String, Option<KeySpread>) {
    choose_prefix_besides(case, index, placement, None)
}

/// [`choose_prefix`] with one prefix ruled out (the one a first try used, so a second
/// try of the case starts from keys no server has seen).
fn choose_prefix_besides(
    case: &Case,
    index: usize,
    placement: Option<&Placement>,
    besides: Option<&str>,
) -> (String, Option<KeySpread>) {
    let Some(placement) = placement else {
        let first = (0..PREFIX_FIRST.len())
            .map(|attempt| prefix(index, attempt))
            .find(|p| Some(p.as_str()) != besides);
        return (first.expect("more than one candidate"), None);
    };
    let spread = |p: &str| {
        let keys = case_keys(case, p);
        KeySpread {
            keys: keys.len(),
            primary_here: keys.iter().filter(|k| placement.is_primary_here(k)).count(),
            owned_here: keys.iter().filter(|k| placement.owns_here(k)).count(),
        }
    };
    let mut best: Option<(String, KeySpread)> = None;
    for attempt in 0..PREFIX_FIRST.len() {
        let p = prefix(index, attempt);
        if Some(p.as_str()) == besides {
            continue;
        }
        let s = spread(&p);
        if best.as_ref().is_none_or(|(_, b)| s.primary_here < b.primary_here) {
            best = Some((p, s));
        }
        if s.primary_here == 0 {
            break;
        }
    }
    let (p, s) = best.expect("at least one candidate");
    (p, Some(s))
}

/// Number of lines in `bytes` that are exactly `mn` (with `\r\n` or `\n` ends).
fn count_lines(bytes: &[u8], word: &[u8]) -> usize {
    bytes
        .split(|&b| b == b'\n')
        .rev()
        .skip(1) // the text after the last '\n' is not a finished line
        .filter(|l| l.strip_suffix(b"\r").unwrap_or(l) == word)
        .count()
}

/// The last CAS number in a raw transcript: the 5th token of a `VALUE` line or a `c<digits>`
/// token of a meta reply line.
pub fn last_cas(raw: &[u8]) -> Option<u64> {
    let mut last = None;
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let toks: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        match toks.first().copied() {
            Some(b"VALUE") if toks.len() == 5 => last = parse_u64(toks[4]).or(last),
            Some(t) if META_REPLIES.contains(&t) => {
                for tok in &toks[1..] {
                    if let Some(n) = tok.strip_prefix(b"c").and_then(parse_u64) {
                        last = Some(n);
                    }
                }
            }
            _ => {}
        }
    }
    last
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// First tokens of meta-command reply lines whose flags may carry a CAS (`c123`).
const META_REPLIES: &[&[u8]] = &[b"HD", b"VA", b"EN", b"NF", b"NS", b"EX"];

/// Plays `case` on a fresh connection to `addr`; returns the raw transcript with markers.
pub fn play(case: &Case, prefix: &str, addr: SocketAddr, timeout: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut conn = match RawConn::connect(addr) {
        Ok(c) => c,
        Err(e) => {
            out.extend_from_slice(format!("<<CONNECT FAILED: {e}>>\r\n").as_bytes());
            return out;
        }
    };
    let mut sent: Vec<u8> = Vec::new();
    let mut unsynced = false;

    // Returns false when the case must stop (the marker is already in `out`).
    let sync = |conn: &mut RawConn, out: &mut Vec<u8>, sent: &mut Vec<u8>| -> bool {
        if !send(conn, out, sent, SENTINEL) {
            return false;
        }
        let want = count_lines(sent, b"mn");
        let end = conn.read_until(out, timeout, |b| {
            b.ends_with(b"MN\r\n") && count_lines(b, b"MN") >= want
        });
        match end {
            ReadEnd::Done => true,
            ReadEnd::Closed => {
                out.extend_from_slice(b"<<CLOSED>>\r\n");
                false
            }
            ReadEnd::Idle | ReadEnd::Timeout => {
                out.extend_from_slice(format!("<<TIMEOUT: no MN for the sentinel within {timeout:?}>>\r\n").as_bytes());
                false
            }
        }
    };

    for step in &case.steps {
        match step {
            Step::Send(b) => {
                if !send(&mut conn, &mut out, &mut sent, &substitute(b, prefix)) {
                    return out;
                }
                unsynced = true;
            }
            Step::SendCas(b) => {
                if unsynced && !sync(&mut conn, &mut out, &mut sent) {
                    return out;
                }
                let cas = match last_cas(&out) {
                    Some(c) => c,
                    None => {
                        out.extend_from_slice(b"<<NO CAS IN THE REPLIES SO FAR>>\r\n");
                        0
                    }
                };
                let text = String::from_utf8_lossy(&substitute(b, prefix))
                    .replace("$CAS1", &(cas.wrapping_add(1)).to_string())
                    .replace("$PREVCAS", &(cas.wrapping_sub(1)).to_string())
                    .replace("$CAS", &cas.to_string());
                if !send(&mut conn, &mut out, &mut sent, text.as_bytes()) {
                    return out;
                }
                unsynced = true;
            }
            Step::Split { bytes, size, pause } => {
                let b = substitute(bytes, prefix);
                for (i, chunk) in b.chunks(*size).enumerate() {
                    if i > 0 {
                        std::thread::sleep(*pause);
                    }
                    if !send(&mut conn, &mut out, &mut sent, chunk) {
                        return out;
                    }
                }
                unsynced = true;
            }
            Step::Pause(d) => std::thread::sleep(*d),
            Step::Sync => {
                if !sync(&mut conn, &mut out, &mut sent) {
                    return out;
                }
                unsynced = false;
            }
        }
    }
    match case.finish {
        Finish::Sentinel => {
            sync(&mut conn, &mut out, &mut sent);
        }
        Finish::Closed => match conn.read_to_eof(&mut out, timeout) {
            ReadEnd::Closed => out.extend_from_slice(b"<<CLOSED>>\r\n"),
            _ => out.extend_from_slice(format!("<<TIMEOUT: connection still open after {timeout:?}>>\r\n").as_bytes()),
        },
    }
    out
}

/// Sends `bytes`; on failure (the server closed) drains what the server said and marks the close.
fn send(conn: &mut RawConn, out: &mut Vec<u8>, sent: &mut Vec<u8>, bytes: &[u8]) -> bool {
    sent.extend_from_slice(bytes);
    match conn.send(bytes) {
        Ok(()) => true,
        Err(_) => {
            conn.read_to_eof(out, Duration::from_secs(1));
            out.extend_from_slice(b"<<CLOSED>>\r\n");
            false
        }
    }
}

/// Splits a transcript into normalised lines (each with its terminator); data blocks are
/// separate verbatim items.
pub fn normalise(raw: &[u8]) -> Vec<Vec<u8>> {
    let mut cas_ids: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut lines = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        let Some(eol) = memfind(&raw[pos..], b"\r\n") else {
            lines.push(raw[pos..].to_vec());
            break;
        };
        let line = &raw[pos..pos + eol];
        let mut norm = normalise_line(line, &mut cas_ids);
        norm.extend_from_slice(b"\r\n");
        lines.push(norm);
        pos += eol + 2;
        if let Some(n) = data_len(line) {
            let end = pos.saturating_add(n).saturating_add(2).min(raw.len());
            lines.push(raw[pos..end].to_vec());
            pos = end;
        }
    }
    lines
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Length of the data block that follows a `VALUE k f n [cas]` or `VA n ...` line, as
/// `protocol`'s readers of those lines see it.
fn data_len(line: &[u8]) -> Option<usize> {
    if let Some(rest) = line.strip_prefix(b"VA ") {
        return va_len(rest).ok();
    }
    usize::try_from(parse_value_header(line).ok()?.len).ok()
}

fn cas_id(tok: &[u8], ids: &mut HashMap<Vec<u8>, usize>) -> Vec<u8> {
    let next = ids.len() + 1;
    let id = *ids.entry(tok.to_vec()).or_insert(next);
    format!("<cas{id}>").into_bytes()
}

fn normalise_line(line: &[u8], cas_ids: &mut HashMap<Vec<u8>, usize>) -> Vec<u8> {
    let toks: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let mut out: Vec<Vec<u8>> = toks.iter().map(|t| t.to_vec()).collect();
    match toks[0] {
        b"VERSION" => return b"VERSION <version>".to_vec(),
        b"STAT" if toks.len() >= 3 => return [b"STAT ", toks[1], b" <value>"].concat(),
        b"VALUE" if toks.len() == 5 && parse_u64(toks[4]).is_some() => out[4] = cas_id(toks[4], cas_ids),
        b"ME" => {
            for (i, tok) in toks.iter().enumerate().skip(2) {
                if let Some(eq) = tok.iter().position(|&b| b == b'=') {
                    let (k, v) = (&tok[..eq], &tok[eq + 1..]);
                    let numeric = !v.is_empty() && v.iter().all(|&b| b.is_ascii_digit() || b == b'-');
                    if k == b"cas" && parse_u64(v).is_some() {
                        out[i] = [b"cas=".as_slice(), &cas_id(v, cas_ids)].concat();
                    } else if numeric {
                        out[i] = [k, b"=#"].concat();
                    }
                }
            }
        }
        t if META_REPLIES.contains(&t) => {
            for (i, tok) in toks.iter().enumerate().skip(1) {
                if let Some(n) = tok.strip_prefix(b"c").filter(|n| parse_u64(n).is_some()) {
                    out[i] = [b"c".as_slice(), &cas_id(n, cas_ids)].concat();
                }
            }
        }
        _ => {}
    }
    out.join(&b' ')
}

fn stat_name(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"STAT ")?;
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Drops STAT lines whose names only one side reports (keeping [`CORE_STATS`]) and sorts each
/// run of STAT lines, in both transcripts.
pub fn align_stats(a: &mut Vec<Vec<u8>>, b: &mut Vec<Vec<u8>>) {
    let names =
        |v: &Vec<Vec<u8>>| -> HashSet<Vec<u8>> { v.iter().filter_map(|l| stat_name(l)).map(<[u8]>::to_vec).collect() };
    let (na, nb) = (names(a), names(b));
    let keep = |l: &Vec<u8>| match stat_name(l) {
        None => true,
        Some(n) => (na.contains(n) && nb.contains(n)) || CORE_STATS.iter().any(|c| c.as_bytes() == n),
    };
    for v in [a, b] {
        v.retain(keep);
        let mut i = 0;
        while i < v.len() {
            if stat_name(&v[i]).is_some() {
                let start = i;
                while i < v.len() && stat_name(&v[i]).is_some() {
                    i += 1;
                }
                v[start..i].sort();
            } else {
                i += 1;
            }
        }
    }
}

/// Makes bytes readable: printable ASCII as is, `\r`, `\n`, `\t` and others escaped; long
/// text is cut in the middle.
pub fn escape(bytes: &[u8]) -> String {
    const MAX: usize = 240;
    let (shown, cut) = if bytes.len() > MAX {
        (&bytes[..MAX], bytes.len() - MAX)
    } else {
        (bytes, 0)
    };
    let mut s = String::new();
    for &b in shown {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if cut > 0 {
        s.push_str(&format!("…(+{cut} bytes)"));
    }
    s
}

/// The request of a case, readable: one row per sent line, steps marked.
pub fn render_request(case: &Case, prefix: &str) -> String {
    let mut s = String::new();
    let mut row = String::new();
    let flush = |row: &mut String, s: &mut String| {
        if !row.is_empty() {
            s.push_str("    ");
            s.push_str(row);
            s.push('\n');
            row.clear();
        }
    };
    for step in &case.steps {
        match step {
            Step::Send(b) | Step::SendCas(b) => {
                let b = substitute(b, prefix);
                if !row.is_empty() {
                    row.push('|');
                }
                if matches!(step, Step::SendCas(_)) {
                    row.push_str("<with $CAS>");
                }
                for line in b.split_inclusive(|&c| c == b'\n') {
                    row.push_str(&escape(line));
                    if line.ends_with(b"\n") {
                        flush(&mut row, &mut s);
                    }
                }
            }
            Step::Split { bytes, size, pause } => {
                flush(&mut row, &mut s);
                row.push_str(&format!(
                    "<the next bytes go as writes of {size} bytes, {}ms apart>",
                    pause.as_millis()
                ));
                flush(&mut row, &mut s);
                for line in substitute(bytes, prefix).split_inclusive(|&c| c == b'\n') {
                    row.push_str(&escape(line));
                    if line.ends_with(b"\n") {
                        flush(&mut row, &mut s);
                    }
                }
                flush(&mut row, &mut s);
                row.push_str("<end of split writes>");
                flush(&mut row, &mut s);
            }
            Step::Pause(d) => {
                row.push_str(&format!("<pause {}ms>", d.as_millis()));
            }
            Step::Sync => {
                flush(&mut row, &mut s);
                row.push_str("<sync: mn\\r\\n>");
                flush(&mut row, &mut s);
            }
        }
    }
    flush(&mut row, &mut s);
    s.push_str(match case.finish {
        Finish::Sentinel => "    <end: mn\\r\\n, read until MN>\n",
        Finish::Closed => "    <end: read until the server closes>\n",
    });
    s
}

fn render_lines(lines: &[Vec<u8>], other: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for (i, l) in lines.iter().enumerate() {
        let mark = if other.get(i) == Some(l) { ' ' } else { '!' };
        s.push_str(&format!("  {mark}{i:3} {}\n", escape(l)));
    }
    if lines.is_empty() {
        s.push_str("    (nothing)\n");
    }
    s
}

/// One case whose replies differ, or whose reference run was itself broken.
#[derive(Debug)]
pub struct Mismatch {
    /// The case's name.
    pub case: String,
    /// Readable report.
    pub report: String,
}

/// Where a group's cases are played besides the reference memcached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// One node ([`ServerKind::target`]).
    Node,
    /// Node 1 of a 3-node `--replicas 2` cluster ([`ClusterTarget`]).
    Cluster,
}

impl Via {
    /// How the test names this target (`diff_storage`, `diff_storage_through_cluster`).
    pub fn suffix(self) -> &'static str {
        match self {
            Via::Node => "",
            Via::Cluster => "_through_cluster",
        }
    }
}

/// The server a case is compared on.
pub struct Target<'a> {
    /// Its client address.
    pub addr: SocketAddr,
    /// What it runs.
    pub kind: ServerKind,
    /// One node or through a cluster.
    pub via: Via,
    /// Key placement seen from the node talked to (through a ringcache cluster only).
    pub placement: Option<&'a Placement>,
    /// For reports.
    pub describe: String,
}

/// Plays `case` (number `index` of `group`) on both servers and compares. Also returns the
/// case's request and the reference's normalised reply, readable (for `RINGCACHE_DIFF_DUMP`).
pub fn check_case(
    group: &str,
    index: usize,
    case: &Case,
    reference: SocketAddr,
    target: &Target<'_>,
) -> (Option<Mismatch>, String) {
    let (first, dump, prefix) = check_case_with(group, index, case, reference, target, None);
    let Some(first) = first else {
        return (None, dump);
    };
    // Once more on fresh keys: a case about TTLs reads a clock that can tick between
    // two of its commands (`t100` becomes `t99`), on either server; a real divergence
    // differs both times. The report shows both tries.
    let (second, dump, _) = check_case_with(group, index, case, reference, target, Some(&prefix));
    match second {
        None => (None, dump),
        Some(second) => (
            Some(Mismatch {
                case: second.case,
                report: format!(
                    "{}  (and on a second try with fresh keys:)\n{}",
                    first.report, second.report
                ),
            }),
            dump,
        ),
    }
}

/// One try of [`check_case`], with the key prefix it used.
fn check_case_with(
    group: &str,
    index: usize,
    case: &Case,
    reference: SocketAddr,
    target: &Target<'_>,
    besides: Option<&str>,
) -> (Option<Mismatch>, String, String) {
    let (prefix, spread) = choose_prefix_besides(case, index, target.placement, besides);
    let timeout = match target.via {
        Via::Node => TARGET_TIMEOUT,
        Via::Cluster => CLUSTER_TIMEOUT,
    };
    let raw_ref = play(case, &prefix, reference, REFERENCE_TIMEOUT);
    let raw_tgt = play(case, &prefix, target.addr, timeout);
    let mut a = normalise(&raw_ref);
    let mut b = normalise(&raw_tgt);
    align_stats(&mut a, &mut b);
    let divergence = match target.via {
        Via::Cluster => case.cluster_divergence.as_ref().or(case.divergence.as_ref()),
        Via::Node => case.divergence.as_ref(),
    };
    if let (Some((why, expected)), ServerKind::Ringcache) = (divergence, target.kind) {
        // Compare ringcache with its documented reply instead of memcached's.
        a = normalise(&substitute(expected, &prefix));
        if a == b {
            return (
                None,
                format!("--- case `{}`: deliberate divergence ({why})\n", case.name),
                prefix,
            );
        }
    }
    let malformed = raw_ref.windows(10).any(|w| w == b"<<TIMEOUT:") || raw_ref.windows(9).any(|w| w == b"<<NO CAS ");
    let dump = format!(
        "--- case `{}` ---\n  request:\n{}  memcached replied (normalised):\n{}",
        case.name,
        render_request(case, &prefix),
        render_lines(&a, &a)
    );
    if a == b && !malformed {
        return (None, dump, prefix);
    }
    let mut report = format!("--- case `{}` (group `{group}`, key prefix {prefix}) ---\n", case.name);
    report.push_str(&format!("  target: {}\n", target.describe));
    if let Some(s) = spread {
        report.push_str(&format!(
            "  keys: {} named; primary on the node talked to: {}; held there at all: {}\n",
            s.keys, s.primary_here, s.owned_here
        ));
    }
    if let Some((why, _)) = divergence.filter(|_| target.kind == ServerKind::Ringcache) {
        report.push_str(&format!(
            "  (a documented divergence: {why}; the expected reply below is ringcache's documented one)\n"
        ));
    }
    if malformed {
        report.push_str("  THE REFERENCE MEMCACHED DID NOT COMPLETE THIS CASE: the case itself is malformed\n");
    }
    report.push_str("  request:\n");
    report.push_str(&render_request(case, &prefix));
    report.push_str(
        "  expected (memcached's reply normalised, or the documented divergence; ! marks lines that differ):\n",
    );
    report.push_str(&render_lines(&a, &b));
    report.push_str(&format!("  target ({}) replied (normalised):\n", target.describe));
    report.push_str(&render_lines(&b, &a));
    (
        Some(Mismatch {
            case: case.name.clone(),
            report,
        }),
        dump,
        prefix,
    )
}

/// Outcome of a group.
#[derive(Debug)]
pub struct GroupOutcome {
    /// How many cases ran.
    pub cases: usize,
    /// The failures, in case order.
    pub mismatches: Vec<Mismatch>,
    /// Through a ringcache cluster: how the keys of all the cases fell (summed).
    pub keys: Option<KeySpread>,
}

/// Starts a memcached and the target (one [`ServerKind::target`] node, or a
/// [`ClusterTarget`]) with the group's flags and checks every case.
pub fn run_group(group: &Group, via: Via) -> GroupOutcome {
    let reference = ServerProcess::start(ServerKind::Memcached, &group.flags);
    let (node, cluster) = match via {
        Via::Node => (Some(ServerProcess::start(ServerKind::target(), &group.flags)), None),
        Via::Cluster => (None, Some(ClusterTarget::start(&group.flags))),
    };
    let target = match (&node, &cluster) {
        (Some(n), _) => Target {
            addr: n.addr(),
            kind: n.kind(),
            via,
            placement: None,
            describe: format!("one {} node", n.kind().name()),
        },
        (None, Some(c)) => Target {
            addr: c.addr(),
            kind: c.kind(),
            via,
            placement: c.placement(),
            describe: c.describe(),
        },
        (None, None) => unreachable!("one of the two was started"),
    };
    let (ra, ta) = (reference.addr(), &target);
    let results: Mutex<Vec<(usize, Option<Mismatch>, String)>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    // Only the cases RINGCACHE_DIFF_CASES names, if it is set (each keeps its number,
    // hence its key prefix).
    let only: Option<Vec<String>> = std::env::var("RINGCACHE_DIFF_CASES").ok().map(|v| {
        v.split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect()
    });
    let selected = |case: &Case| only.as_ref().is_none_or(|names| names.contains(&case.name));
    let ran = group.cases.iter().filter(|c| selected(c)).count();
    let one_at_a_time = std::env::var_os("RINGCACHE_DIFF_SEQUENTIAL").is_some_and(|v| v == "1");
    let workers = if group.parallel && !one_at_a_time {
        WORKERS.min(group.cases.len()).max(1)
    } else {
        1
    };
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = group.cases.get(i) else { break };
                if !selected(case) {
                    continue;
                }
                let (m, dump) = check_case(group.name, i, case, ra, ta);
                results.lock().unwrap_or_else(|e| e.into_inner()).push((i, m, dump));
            });
        }
    });
    let mut r = results.into_inner().unwrap_or_else(|e| e.into_inner());
    r.sort_by_key(|(i, _, _)| *i);
    if let Some(dir) = std::env::var_os("RINGCACHE_DIFF_DUMP") {
        let text: String = r.iter().map(|(_, _, d)| d.as_str()).collect();
        let path = std::path::Path::new(&dir).join(format!("{}{}.txt", group.name, via.suffix()));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    let keys = target.placement.map(|_| {
        let mut sum = KeySpread {
            keys: 0,
            primary_here: 0,
            owned_here: 0,
        };
        for (i, case) in group.cases.iter().enumerate().filter(|(_, c)| selected(c)) {
            if let (_, Some(s)) = choose_prefix(case, i, target.placement) {
                sum.keys += s.keys;
                sum.primary_here += s.primary_here;
                sum.owned_here += s.owned_here;
            }
        }
        sum
    });
    GroupOutcome {
        cases: ran,
        mismatches: r.into_iter().filter_map(|(_, m, _)| m).collect(),
        keys,
    }
}

/// Runs a group against one [`ServerKind::target`] node and panics with every failing
/// case's report.
pub fn assert_group(group: &Group) {
    assert_group_via(group, Via::Node);
}

/// Runs a group through node 1 of a 3-node `--replicas 2` cluster (see [`ClusterTarget`])
/// and panics with every failing case's report.
pub fn assert_group_through_cluster(group: &Group) {
    assert_group_via(group, Via::Cluster);
}

/// Runs a group against `via` and panics with every failing case's report.
pub fn assert_group_via(group: &Group, via: Via) {
    let kind = ServerKind::target().name();
    let what = match via {
        Via::Node => format!("one {kind} node"),
        Via::Cluster => format!("a {kind} cluster (through node 1)"),
    };
    let outcome = run_group(group, via);
    if let Some(k) = outcome.keys {
        println!(
            "group `{}`: of the {} keys its cases name, {} have node 1 as their primary and {} more are held there as a replica",
            group.name,
            k.keys,
            k.primary_here,
            k.owned_here - k.primary_here
        );
    }
    let n = outcome.mismatches.len();
    if n == 0 {
        println!(
            "group `{}`: {} cases, {what} matches memcached on all",
            group.name, outcome.cases
        );
        return;
    }
    let mut all = String::new();
    for m in &outcome.mismatches {
        all.push_str(&m.report);
    }
    eprintln!("{all}");
    let names: Vec<&str> = outcome.mismatches.iter().map(|m| m.case.as_str()).collect();
    panic!(
        "group `{}` (flags {:?}): {n} of {} cases differ between memcached and {what} (reports above): {}",
        group.name,
        group.flags,
        outcome.cases,
        names.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution() {
        assert_eq!(substitute(b"get $Ka $Kb\r\n", "k001_"), b"get k001_a k001_b\r\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode("k001_x");
        assert_eq!(
            substitute(b"mg $B(x) b v\r\n", "k001_"),
            format!("mg {b64} b v\r\n").into_bytes()
        );
        assert_eq!(substitute(b"$Z $B(", "k001_"), b"$Z $B(");
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"k001_x\x00\xff y");
        assert_eq!(
            substitute(b"mg $X(7800ff2079) b\r\n", "k001_"),
            format!("mg {b64} b\r\n").into_bytes()
        );
    }

    #[test]
    fn prefixes_keep_their_length() {
        assert_eq!(prefix(17, 0), "k017_");
        assert_eq!(prefix(17, 1), "a017_");
        let all: HashSet<String> = (0..PREFIX_FIRST.len()).map(|a| prefix(999, a)).collect();
        assert_eq!(all.len(), PREFIX_FIRST.len(), "every attempt is a distinct prefix");
        assert!(all.iter().all(|p| p.len() == PREFIX_LEN));
    }

    #[test]
    fn keys_of_a_case() {
        let case = Case::new("c")
            .send("set $Ka 0 0 1\r\nx\r\nget $Ka $Kb\tz\r\n")
            .sync()
            .send("mg $B(c) b\r\nmg $X(0a) b\r\n");
        let keys = case_keys(&case, "k001_");
        let want: Vec<Vec<u8>> = vec![
            b"k001_\n".to_vec(),
            b"k001_a".to_vec(),
            b"k001_b".to_vec(),
            b"k001_c".to_vec(),
        ];
        assert_eq!(keys, want);
    }

    #[test]
    fn counting_sentinel_lines() {
        assert_eq!(count_lines(b"mn\r\nget a\r\nmn\nmn", b"mn"), 2);
        assert_eq!(count_lines(b"MN\r\n", b"MN"), 1);
        assert_eq!(count_lines(b"MNX\r\n", b"MN"), 0);
    }

    #[test]
    fn cas_numbers_keep_their_relations() {
        let a = normalise(b"VALUE k 0 1 77\r\nx\r\nEND\r\nHD c77\r\nVA 1 c80 f0\r\ny\r\n");
        let b = normalise(b"VALUE k 0 1 3\r\nx\r\nEND\r\nHD c3\r\nVA 1 c9 f0\r\ny\r\n");
        assert_eq!(a, b);
        assert_eq!(a[0], b"VALUE k 0 1 <cas1>\r\n");
        assert_eq!(a[4], b"VA 1 c<cas2> f0\r\n");
        let c = normalise(b"VALUE k 0 1 3\r\nx\r\nEND\r\nHD c4\r\nVA 1 c9 f0\r\ny\r\n");
        assert_ne!(a, c, "a CAS that changed where the reference's did not must show");
    }

    #[test]
    fn data_blocks_are_verbatim() {
        let lines = normalise(b"VALUE k 0 11 5\r\nVERSION 1.2\r\nEND\r\n");
        assert_eq!(lines[1], b"VERSION 1.2\r\n");
        assert_eq!(lines[2], b"END\r\n");
        assert_eq!(normalise(b"VERSION 1.6.18\r\n")[0], b"VERSION <version>\r\n");
    }

    #[test]
    fn me_lines() {
        let l = normalise(b"ME k exp=-1 la=12 cas=5 fetch=no cls=1 size=63\r\n");
        assert_eq!(l[0], b"ME k exp=# la=# cas=<cas1> fetch=no cls=# size=#\r\n");
    }

    #[test]
    fn stats_alignment() {
        let mut a = normalise(b"STAT pid 1\r\nSTAT only_a 2\r\nSTAT both 3\r\nEND\r\n");
        let mut b = normalise(b"STAT both 9\r\nSTAT only_b 2\r\nEND\r\n");
        align_stats(&mut a, &mut b);
        assert_eq!(
            a,
            vec![
                b"STAT both <value>\r\n".to_vec(),
                b"STAT pid <value>\r\n".to_vec(),
                b"END\r\n".to_vec()
            ]
        );
        assert_eq!(b, vec![b"STAT both <value>\r\n".to_vec(), b"END\r\n".to_vec()]);
        assert_ne!(a, b, "a missing core stat must show");
    }

    #[test]
    fn last_cas_finds_classic_and_meta() {
        assert_eq!(last_cas(b"VALUE a 0 1 41\r\nx\r\nEND\r\n"), Some(41));
        assert_eq!(last_cas(b"VALUE a 0 1 41\r\nx\r\nEND\r\nHD c42 t-1\r\n"), Some(42));
        assert_eq!(last_cas(b"STORED\r\n"), None);
    }
}
