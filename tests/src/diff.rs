//! Differential testing: play the same raw bytes to a real memcached and to a target server
//! (ringcache, or a second memcached for the self-check) and compare the full replies.
//!
//! # Cases
//! A [`Case`] is a name and a list of [`Step`]s: raw chunks to send (each its own write, so a
//! command can be split across many writes), pauses between them, and sync points. Before
//! sending, `$K` becomes the case's unique key prefix (`k017_`, [`PREFIX_LEN`] bytes) and
//! `$B(TEXT)` becomes the base64 of prefix + TEXT, so cases running at once on one server
//! pair never share keys. Data blocks must not contain `$`.
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
//! With `RINGCACHE_DIFF_DUMP=DIR`, every group writes `DIR/<group>.txt`: each case's request
//! and memcached's normalised reply.
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
}

impl Case {
    /// An empty case.
    pub fn new(name: impl Into<String>) -> Case {
        Case {
            name: name.into(),
            steps: Vec::new(),
            finish: Finish::Sentinel,
            divergence: None,
        }
    }

    /// Declares a deliberate difference from memcached 1.6.18: ringcache must answer
    /// exactly `ringcache_reply` instead of what memcached answers (the self-check,
    /// memcached against memcached, still compares the two memcacheds).
    pub fn diverges(mut self, why: &'static str, ringcache_reply: impl AsRef<[u8]>) -> Case {
        self.divergence = Some((why, ringcache_reply.as_ref().to_vec()));
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

/// The key prefix of case number `index` in its group.
pub fn prefix(index: usize) -> String {
    assert!(index < 1000, "a group holds at most 1000 cases");
    format!("k{index:03}_")
}

/// Replaces `$K` (the case's key prefix) and `$B(TEXT)` (base64 of prefix + TEXT) in `bytes`.
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
            if rest.starts_with(b"$B(") {
                if let Some(end) = rest.iter().position(|&b| b == b')') {
                    let mut key = prefix.as_bytes().to_vec();
                    key.extend_from_slice(&rest[3..end]);
                    out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(key).as_bytes());
                    i += end + 1;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
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

/// Length of the data block that follows a `VALUE k f n [cas]` or `VA n ...` line.
fn data_len(line: &[u8]) -> Option<usize> {
    let toks: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let n = match toks.first().copied()? {
        b"VALUE" if toks.len() >= 4 => toks[3],
        b"VA" if toks.len() >= 2 => toks[1],
        _ => return None,
    };
    parse_u64(n).map(|n| n as usize)
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
    /// Readable report.
    pub report: String,
}

/// Plays `case` (number `index` of `group`) on both servers and compares. Also returns the
/// case's request and the reference's normalised reply, readable (for `RINGCACHE_DIFF_DUMP`).
pub fn check_case(
    group: &str,
    index: usize,
    case: &Case,
    reference: SocketAddr,
    target: (SocketAddr, ServerKind),
) -> (Option<Mismatch>, String) {
    let prefix = prefix(index);
    let raw_ref = play(case, &prefix, reference, REFERENCE_TIMEOUT);
    let raw_tgt = play(case, &prefix, target.0, TARGET_TIMEOUT);
    let mut a = normalise(&raw_ref);
    let mut b = normalise(&raw_tgt);
    align_stats(&mut a, &mut b);
    if let (Some((why, expected)), ServerKind::Ringcache) = (&case.divergence, target.1) {
        // Compare ringcache with its documented reply instead of memcached's.
        a = normalise(&substitute(expected, &prefix));
        if a == b {
            return (
                None,
                format!("--- case `{}`: deliberate divergence ({why})\n", case.name),
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
        return (None, dump);
    }
    let mut report = format!("--- case `{}` (group `{group}`, key prefix {prefix}) ---\n", case.name);
    if malformed {
        report.push_str("  THE REFERENCE MEMCACHED DID NOT COMPLETE THIS CASE: the case itself is malformed\n");
    }
    report.push_str("  request:\n");
    report.push_str(&render_request(case, &prefix));
    report.push_str("  reference memcached replied (normalised; ! marks lines that differ):\n");
    report.push_str(&render_lines(&a, &b));
    report.push_str(&format!("  target {} replied (normalised):\n", target.1.name()));
    report.push_str(&render_lines(&b, &a));
    (Some(Mismatch { report }), dump)
}

/// Outcome of a group.
#[derive(Debug)]
pub struct GroupOutcome {
    /// How many cases ran.
    pub cases: usize,
    /// The failures, in case order.
    pub mismatches: Vec<Mismatch>,
}

/// Starts a memcached and a `target` server with the group's flags and checks every case.
pub fn run_group(group: &Group, target: ServerKind) -> GroupOutcome {
    let reference = ServerProcess::start(ServerKind::Memcached, &group.flags);
    let tgt = ServerProcess::start(target, &group.flags);
    let (ra, ta) = (reference.addr(), (tgt.addr(), target));
    let results: Mutex<Vec<(usize, Option<Mismatch>, String)>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let workers = if group.parallel {
        WORKERS.min(group.cases.len()).max(1)
    } else {
        1
    };
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = group.cases.get(i) else { break };
                let (m, dump) = check_case(group.name, i, case, ra, ta);
                results.lock().unwrap_or_else(|e| e.into_inner()).push((i, m, dump));
            });
        }
    });
    let mut r = results.into_inner().unwrap_or_else(|e| e.into_inner());
    r.sort_by_key(|(i, _, _)| *i);
    if let Some(dir) = std::env::var_os("RINGCACHE_DIFF_DUMP") {
        let text: String = r.iter().map(|(_, _, d)| d.as_str()).collect();
        let path = std::path::Path::new(&dir).join(format!("{}.txt", group.name));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    GroupOutcome {
        cases: group.cases.len(),
        mismatches: r.into_iter().filter_map(|(_, m, _)| m).collect(),
    }
}

/// Runs a group against [`ServerKind::target`] and panics with every failing case's report.
pub fn assert_group(group: &Group) {
    let target = ServerKind::target();
    let outcome = run_group(group, target);
    let n = outcome.mismatches.len();
    if n == 0 {
        println!(
            "group `{}`: {} cases, {} matches memcached on all",
            group.name,
            outcome.cases,
            target.name()
        );
        return;
    }
    let mut all = String::new();
    for m in &outcome.mismatches {
        all.push_str(&m.report);
    }
    eprintln!("{all}");
    panic!(
        "group `{}` (flags {:?}): {n} of {} cases differ between memcached and {} (reports above)",
        group.name,
        group.flags,
        outcome.cases,
        target.name()
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
