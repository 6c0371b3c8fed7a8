//! prometheus/memcached_exporter reads a node's `stats` without complaint.
//!
//! The exporter's parsing is reimplemented here from its source, rule for rule, and applied
//! to what a live server answers:
//!
//! - How it reads (the `github.com/grobie/gomemcache` fork, `statsFromAddr` and
//!   `statsSettingsFromAddr`): `stats`, `stats slabs` and `stats items` on one connection,
//!   each read line by line up to a line that is exactly `END\r\n` (a reply that never has
//!   one times the scrape out); a first line starting `CLIENT_ERROR ` fails the scrape. A
//!   line is split on single spaces; only a line of three parts whose first starts with
//!   `STAT` is kept, others are dropped without a word. Its name split on `:` is global (one part),
//!   a `stats slabs` class (two: `<class>:<field>`) or a `stats items` class (three:
//!   `items:<class>:<field>`); a class that is not an integer fails the scrape, so does a
//!   global name with one `:`. `stats settings` is read on its own: every line must have
//!   three or four parts, or the scrape fails. Values are `TrimSpace`d.
//! - What it parses (`pkg/exporter/exporter.go`, `parseStats`, `collectSlabMetrics`,
//!   `parseStatsSettings`): numbers with Go's `strconv.ParseFloat`; `rusage_user` and
//!   `rusage_system` as `seconds.microseconds` (two numbers around one `.`); booleans as
//!   exactly `yes` or `no`. A malformed value, a missing `cmd_set`, or a missing
//!   `cas_misses`/`cas_hits`/`cas_badval` makes it export `memcached_up 0`; so does a
//!   `stats slabs` class without `cmd_set`, `cas_hits` or `cas_badval`. It skips any
//!   other field that is missing, and with it that metric, silently (its early releases
//!   parsed every field unconditionally and logged an error for each missing one).
//!
//! "Without complaint" is checked strictly: a field the exporter reads must be present,
//! not just skipped (so every series a memcached dashboard plots exists), and a line
//! the reader would drop counts as a fault. Rules for fields memcached 1.6.18 itself
//! does not send are relaxed (`mem_requested` in a `stats slabs` class: 1.6 moved it to
//! `stats items`). The same rules run against a real memcached 1.6.18, before and after
//! traffic, so they are known to accept memcached; and against mutations of its replies,
//! so they are known to refuse what the exporter refuses.
//!
//! With `RINGCACHE_DIFF_AGAINST=memcached` the ringcache tests run against memcached.

use std::collections::BTreeMap;
use std::time::Duration;

use ringcache_tests::cluster::ClusterTarget;
use ringcache_tests::{RawConn, ReadEnd, ServerKind, ServerProcess};

const NODE_FLAGS: &[&str] = &["-m", "64", "-t", "2"];

/// The four replies one scrape reads.
#[derive(Clone, Debug)]
struct Raw {
    stats: String,
    slabs: String,
    items: String,
    settings: String,
}

/// What gomemcache hands the exporter.
#[derive(Debug, Default)]
struct Scrape {
    /// Global fields of `stats`, `stats slabs` and `stats items` (gomemcache merges them).
    stats: BTreeMap<String, String>,
    slabs: BTreeMap<i64, BTreeMap<String, String>>,
    items: BTreeMap<i64, BTreeMap<String, String>>,
    settings: BTreeMap<String, String>,
    /// Lines gomemcache dropped without a word (not `STAT name value`, or a name of
    /// more than three `:` parts): each a field the exporter never sees.
    dropped: Vec<String>,
}

/// Reads one reply as gomemcache does: up to a line that is exactly `END\r\n`.
fn read_reply(conn: &mut RawConn, cmd: &str) -> Result<String, String> {
    conn.send(cmd.as_bytes()).map_err(|e| format!("{cmd:?}: send: {e}"))?;
    let mut out = Vec::new();
    let end = conn.read_until(&mut out, Duration::from_secs(10), |b| {
        b == b"END\r\n" || b.ends_with(b"\r\nEND\r\n") || b.starts_with(b"CLIENT_ERROR ") && b.ends_with(b"\r\n")
    });
    let text = String::from_utf8_lossy(&out).into_owned();
    match end {
        ReadEnd::Done => Ok(text),
        other => Err(format!("{cmd:?}: no END line ({other:?}); got {text:?}")),
    }
}

/// One scrape: `stats`, `stats slabs`, `stats items` on one connection, then `stats
/// settings` (the exporter asks for it separately).
fn fetch(p: &ServerProcess) -> Raw {
    let mut conn = p.connect();
    let mut get = |cmd: &str| read_reply(&mut conn, cmd).unwrap_or_else(|e| panic!("{}: {e}", p.kind().name()));
    Raw {
        stats: get("stats\r\n"),
        slabs: get("stats slabs\r\n"),
        items: get("stats items\r\n"),
        settings: get("stats settings\r\n"),
    }
}

/// Go's `bytes.TrimSpace`.
fn trim_space(s: &str) -> String {
    s.trim().to_string()
}

/// gomemcache's `statsFromAddr` over the three replies, then `statsSettingsFromAddr`.
fn parse(raw: &Raw) -> Result<Scrape, String> {
    let mut sc = Scrape::default();
    let replies = [
        ("stats", &raw.stats),
        ("stats slabs", &raw.slabs),
        ("stats items", &raw.items),
        ("stats settings", &raw.settings),
    ];
    for (cmd, reply) in replies {
        if reply.starts_with("CLIENT_ERROR ") {
            return Err(format!("{cmd}: {}", reply.trim_end()));
        }
        if reply != "END\r\n" && !reply.ends_with("\r\nEND\r\n") {
            return Err(format!(
                "{cmd}: no END line: the reader waits for one until its timeout"
            ));
        }
    }
    for (cmd, reply) in &replies[..3] {
        for line in reply.split_inclusive('\n') {
            if line == "END\r\n" {
                break;
            }
            let s: Vec<&str> = line.split(' ').collect();
            if s.len() != 3 || !s[0].starts_with("STAT") {
                sc.dropped.push(format!("{cmd}: {line:?}"));
                continue;
            }
            let f: Vec<&str> = s[1].split(':').collect();
            let value = trim_space(s[2]);
            match f.len() {
                1 => {
                    sc.stats.insert(s[1].to_string(), value);
                }
                2 => {
                    let class = go_parse_int(f[0]).ok_or_else(|| format!("{cmd}: class of {line:?} is no integer"))?;
                    sc.slabs.entry(class).or_default().insert(f[1].to_string(), value);
                }
                3 => {
                    let class = go_parse_int(f[1]).ok_or_else(|| format!("{cmd}: class of {line:?} is no integer"))?;
                    sc.items.entry(class).or_default().insert(f[2].to_string(), value);
                }
                _ => sc.dropped.push(format!("{cmd}: {line:?}")),
            }
        }
    }
    for line in raw.settings.split_inclusive('\n') {
        if line == "END\r\n" {
            break;
        }
        let s: Vec<&str> = line.split(' ').collect();
        match s.len() {
            3 => {
                sc.settings.insert(s[1].to_string(), trim_space(s[2]));
            }
            // gomemcache joins the third part with itself (sic).
            4 => {
                let v = trim_space(s[2]);
                sc.settings.insert(s[1].to_string(), format!("{v}-{v}"));
            }
            _ => return Err(format!("memcache: unexpected stats line format {line:?}")),
        }
    }
    Ok(sc)
}

/// Go's `strconv.ParseInt(s, 10, 64)`.
fn go_parse_int(s: &str) -> Option<i64> {
    s.parse().ok()
}

/// Go's `strconv.ParseFloat(s, 64)` for what a server may send: decimal with optional sign,
/// fraction and exponent, or `inf`/`infinity`/`nan`; out of range is an error. (Go also takes
/// hexadecimal floats and `_` separators after a base prefix; refusing those is stricter.)
fn go_parse_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity") {
        return Some(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if lower == "nan" && body.len() == s.len() {
        return Some(f64::NAN);
    }
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if int.len() + frac.len() == 0 || !digits(int) || !digits(frac) {
        return None;
    }
    if let Some(e) = exp {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !digits(e) {
            return None;
        }
    }
    let v: f64 = s.parse().ok()?;
    v.is_finite().then_some(v)
}

/// The exporter's `parseTimeval`, plus memcached's form: both parts digits, six after the dot.
fn timeval(v: &str) -> Result<f64, String> {
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() != 2 {
        return Err("exporter: failed parse a timeval value".into());
    }
    let (s, us) = (go_parse_float(parts[0]), go_parse_float(parts[1]));
    let (Some(s), Some(us)) = (s, us) else {
        return Err("exporter: failed parse a timeval value".into());
    };
    if !parts[0].bytes().all(|b| b.is_ascii_digit())
        || parts[1].len() != 6
        || !parts[1].bytes().all(|b| b.is_ascii_digit())
    {
        return Err("strict: not seconds.microseconds (%ld.%06ld) as memcached prints it".into());
    }
    Ok(s + us / 1e6)
}

/// Global `stats` fields the exporter parses as numbers (besides the commands, below).
const GENERAL: &[&str] = &[
    "uptime",
    "time",
    "cmd_flush",
    "bytes",
    "limit_maxbytes",
    "curr_items",
    "total_items",
    "bytes_read",
    "bytes_written",
    "curr_connections",
    "total_connections",
    "rejected_connections",
    "conn_yields",
    "listen_disabled_num",
    "evictions",
    "reclaimed",
    "store_too_large",
    "store_no_memory",
    "lru_crawler_starts",
    "direct_reclaims",
    "crawler_items_checked",
    "crawler_reclaimed",
    "moves_to_cold",
    "moves_to_warm",
    "moves_within_lru",
    // From `stats slabs`, global part.
    "total_malloced",
    "accepting_conns",
];
/// The commands whose `<op>_hits` and `<op>_misses` become `memcached_commands_total`.
const OPS: &[&str] = &["get", "delete", "incr", "decr", "cas", "touch"];
/// Read only when `extstore_limit_maxbytes` is present.
const EXTSTORE: &[&str] = &[
    "extstore_compact_lost",
    "extstore_compact_rescues",
    "extstore_compact_skipped",
    "extstore_page_allocs",
    "extstore_page_evictions",
    "extstore_page_reclaims",
    "extstore_pages_free",
    "extstore_pages_used",
    "extstore_objects_evicted",
    "extstore_objects_read",
    "extstore_objects_written",
    "extstore_objects_used",
    "extstore_bytes_evicted",
    "extstore_bytes_written",
    "extstore_bytes_read",
    "extstore_bytes_used",
    "extstore_bytes_fragmented",
    "extstore_limit_maxbytes",
    "extstore_io_queue",
];
/// Read only when `proxy_backend_total` is present.
const PROXY: &[&str] = &[
    "proxy_conn_requests",
    "proxy_conn_errors",
    "proxy_conn_oom",
    "proxy_req_active",
    "proxy_config_reloads",
    "proxy_config_reload_fails",
    "proxy_config_cron_runs",
    "proxy_config_cron_fails",
    "proxy_backend_total",
    "proxy_backend_marked_bad",
    "proxy_backend_failed",
    "proxy_request_failed_depth",
    "round_robin_fallback",
    "unexpected_napi_ids",
];
/// Per `stats items` class, always read.
const ITEMS_REQUIRED: &[&str] = &[
    "number",
    "age",
    "hits_to_hot",
    "hits_to_warm",
    "hits_to_cold",
    "hits_to_temp",
];
/// Per `stats items` class, read when present.
const ITEMS_OPTIONAL: &[&str] = &[
    "crawler_reclaimed",
    "evicted",
    "evicted_nonzero",
    "evicted_time",
    "evicted_unfetched",
    "expired_unfetched",
    "outofmemory",
    "reclaimed",
    "store_too_large",
    "store_no_memory",
    "tailrepairs",
    "mem_requested",
    "moves_to_cold",
    "moves_to_warm",
    "moves_within_lru",
    "number_hot",
    "number_warm",
    "number_cold",
    "number_temp",
    "age_hot",
    "age_warm",
];
/// Per `stats slabs` class (the slab collector), always read.
const SLABS_REQUIRED: &[&str] = &[
    "get_hits",
    "delete_hits",
    "incr_hits",
    "decr_hits",
    "cas_hits",
    "touch_hits",
    "cas_badval",
    "cmd_set",
    "chunk_size",
    "chunks_per_page",
    "total_pages",
    "total_chunks",
    "used_chunks",
    "free_chunks",
    "free_chunks_end",
];
/// Read by the slab collector, but memcached 1.6 reports it under `stats items`.
const SLABS_OPTIONAL: &[&str] = &["mem_requested"];
/// `stats settings` read when `lru_crawler` is `yes`; the booleans are `yes`/`no`.
const LRU_SETTINGS: &[(&str, bool)] = &[
    ("lru_crawler", true),
    ("lru_crawler_sleep", false),
    ("lru_crawler_tocrawl", false),
    ("lru_maintainer_thread", true),
    ("hot_lru_pct", false),
    ("warm_lru_pct", false),
    ("hot_max_factor", false),
    ("warm_max_factor", false),
];

/// A number the exporter parses: present (strictly), ParseFloat, and a count or size.
fn number(bad: &mut Vec<String>, m: &BTreeMap<String, String>, key: &str, required: bool, at: &str) -> Option<f64> {
    match m.get(key) {
        None => {
            if required {
                bad.push(format!("strict: {at}{key} is missing (its series would be absent)"));
            }
            None
        }
        Some(v) => match go_parse_float(v) {
            None => {
                bad.push(format!("exporter: failed to parse {at}{key} {v:?} (memcached_up 0)"));
                None
            }
            Some(x) if x < 0.0 || !x.is_finite() => {
                bad.push(format!("strict: {at}{key} {v:?} is not a count or size"));
                Some(x)
            }
            Some(x) => Some(x),
        },
    }
}

/// Applies the exporter's rules; returns every complaint (none: `memcached_up 1`, every
/// series there, nothing logged).
fn complaints(sc: &Scrape) -> Vec<String> {
    let mut bad: Vec<String> = sc
        .dropped
        .iter()
        .map(|d| format!("strict: line dropped by the reader: {d}"))
        .collect();
    let s = &sc.stats;
    if !s.contains_key("version") {
        bad.push("strict: version is missing (memcached_version has an empty label)".into());
    }
    for op in OPS {
        number(&mut bad, s, &format!("{op}_hits"), true, "");
        number(&mut bad, s, &format!("{op}_misses"), true, "");
    }
    number(&mut bad, s, "cas_badval", true, "");
    for key in GENERAL {
        number(&mut bad, s, key, true, "");
    }
    // `memcached_commands_total{command="set"}` is cmd_set minus the CAS commands.
    let set = s.get("cmd_set").and_then(|v| go_parse_float(v));
    let cas: Option<Vec<f64>> = ["cas_misses", "cas_hits", "cas_badval"]
        .iter()
        .map(|k| s.get(*k).and_then(|v| go_parse_float(v)))
        .collect();
    match (set, cas) {
        (None, _) => bad.push(format!(
            "exporter: failed to parse set: cmd_set {:?} (memcached_up 0)",
            s.get("cmd_set")
        )),
        (Some(_), None) => {
            bad.push("exporter: failed to parse cas: cas_misses/cas_hits/cas_badval (memcached_up 0)".into())
        }
        (Some(set), Some(cas)) if set < cas.iter().sum::<f64>() => bad.push(format!(
            "strict: cmd_set {set} counts fewer than the CAS commands {cas:?}: set total < 0"
        )),
        _ => {}
    }
    for key in ["rusage_user", "rusage_system"] {
        match s.get(key).map(|v| (v, timeval(v))) {
            None => bad.push(format!("strict: {key} is missing")),
            Some((v, Err(e))) => bad.push(format!("{e}: {key} {v:?}")),
            Some(_) => {}
        }
    }
    for (signal, keys) in [("extstore_limit_maxbytes", EXTSTORE), ("proxy_backend_total", PROXY)] {
        if s.contains_key(signal) {
            for key in keys {
                number(&mut bad, s, key, false, "");
            }
        }
    }
    for (class, u) in &sc.items {
        let at = format!("items:{class}:");
        for key in ITEMS_REQUIRED {
            number(&mut bad, u, key, true, &at);
        }
        for key in ITEMS_OPTIONAL {
            number(&mut bad, u, key, false, &at);
        }
    }
    for (class, v) in &sc.slabs {
        let at = format!("{class}:");
        for key in SLABS_REQUIRED {
            number(&mut bad, v, key, true, &at);
        }
        for key in SLABS_OPTIONAL {
            number(&mut bad, v, key, false, &at);
        }
        if !v.contains_key("cmd_set") || !v.contains_key("cas_hits") || !v.contains_key("cas_badval") {
            bad.push(format!(
                "exporter: slab class {class} lacks cmd_set/cas_hits/cas_badval (memcached_up 0)"
            ));
        }
    }
    let st = &sc.settings;
    number(&mut bad, st, "maxconns", true, "settings ");
    if st.get("lru_crawler").map(String::as_str) == Some("yes") {
        for (key, boolean) in LRU_SETTINGS {
            if *boolean {
                match st.get(*key).map(String::as_str) {
                    Some("yes" | "no") => {}
                    None => bad.push(format!("strict: settings {key} is missing")),
                    Some(v) => bad.push(format!("exporter: failed parse a bool value: settings {key} {v:?}")),
                }
            } else {
                number(&mut bad, st, key, true, "settings ");
            }
        }
    }
    bad
}

/// Parses and checks one scrape; panics with every complaint and the replies.
fn assert_exporter_reads(raw: &Raw, what: &str) -> Scrape {
    let sc = parse(raw).unwrap_or_else(|e| panic!("{what}: the exporter's reader fails: {e}\n{raw:#?}"));
    let bad = complaints(&sc);
    assert!(
        bad.is_empty(),
        "{what}: the exporter would complain:\n  {}\n{raw:#?}",
        bad.join("\n  ")
    );
    sc
}

/// The exporter's `memcached_commands_total` series from one scrape.
fn commands(sc: &Scrape) -> BTreeMap<String, f64> {
    let n = |k: &str| go_parse_float(&sc.stats[k]).expect(k);
    let mut m = BTreeMap::new();
    for op in OPS {
        m.insert(format!("{op} hit"), n(&format!("{op}_hits")));
        m.insert(format!("{op} miss"), n(&format!("{op}_misses")));
    }
    m.insert("cas badval".into(), n("cas_badval"));
    m.insert("flush hit".into(), n("cmd_flush"));
    m.insert(
        "set hit".into(),
        n("cmd_set") - n("cas_misses") - n("cas_hits") - n("cas_badval"),
    );
    m
}

/// Sends `script` followed by `mn` and reads every reply up to the `MN`.
fn run(conn: &mut RawConn, script: &str) -> String {
    String::from_utf8_lossy(&conn.request(format!("{script}mn\r\n").as_bytes(), b"MN\r\n")).into_owned()
}

/// Traffic that moves every counter the exporter turns into `memcached_commands_total`,
/// with keys prefixed by `p` (each a hit and a miss, a CAS hit, a bad CAS value, a flush).
fn traffic(conn: &mut RawConn, p: &str) {
    run(
        conn,
        &format!(
            "set {p}a 0 0 1\r\n1\r\nset {p}b 0 0 5\r\nhello\r\nadd {p}b 0 0 1\r\nx\r\n\
             get {p}a {p}b {p}none\r\nincr {p}a 5\r\ndecr {p}a 2\r\nincr {p}none 1\r\ndecr {p}none 1\r\n\
             touch {p}b 100\r\ntouch {p}none 100\r\ncas {p}none 0 0 1 1\r\nx\r\n\
             delete {p}a\r\ndelete {p}none\r\nappend {p}b 0 0 1\r\n!\r\n"
        ),
    );
    let gets = run(conn, &format!("gets {p}b\r\n"));
    let unique = gets
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(4))
        .unwrap_or_else(|| panic!("gets {p}b: {gets:?}"));
    let reply = run(
        conn,
        &format!("cas {p}b 0 0 2 {unique}\r\nhi\r\ncas {p}b 0 0 2 {unique}\r\nho\r\n"),
    );
    assert!(reply.starts_with("STORED\r\nEXISTS\r\n"), "cas: {reply:?}");
    let reply = run(conn, &format!("flush_all\r\nset {p}c 0 0 1\r\nz\r\nget {p}c\r\n"));
    assert!(
        reply.starts_with("OK\r\nSTORED\r\nVALUE"),
        "flush_all, set, get: {reply:?}"
    );
}

fn replace_line(reply: &str, from: &str, to: &str) -> String {
    assert!(reply.contains(from), "{from:?} not in {reply:?}");
    reply.replacen(from, to, 1)
}

#[test]
fn the_rules_accept_memcached_and_refuse_what_the_exporter_refuses() {
    let mc = ServerProcess::memcached(NODE_FLAGS);
    let empty = fetch(&mc);
    let sc = assert_exporter_reads(&empty, "a fresh memcached");
    assert!(
        sc.items.is_empty() && sc.slabs.is_empty(),
        "a fresh memcached lists no class: {sc:#?}"
    );
    let mut conn = mc.connect();
    traffic(&mut conn, "k");
    let raw = fetch(&mc);
    let sc = assert_exporter_reads(&raw, "memcached after traffic");
    // The per-class rules ran: memcached lists the class its items are in.
    assert!(!sc.items.is_empty() && !sc.slabs.is_empty(), "{raw:#?}");
    assert_eq!(sc.settings.get("lru_crawler").map(String::as_str), Some("yes"));

    // Each mutation is something the exporter refuses (or a series it would lose); the
    // rules must say so.
    let stat = |reply: &str, name: &str| -> String {
        reply
            .split_inclusive('\n')
            .find(|l| l.starts_with(&format!("STAT {name} ")))
            .unwrap_or_else(|| panic!("no STAT {name} in {reply:?}"))
            .to_string()
    };
    let class = *sc.slabs.keys().next().expect("a slab class");
    type Mutation = Box<dyn Fn(&mut Raw)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("cmd_set missing", {
            let l = stat(&raw.stats, "cmd_set");
            Box::new(move |r| r.stats = replace_line(&r.stats, &l, ""))
        }),
        ("cas_badval missing", {
            let l = stat(&raw.stats, "cas_badval");
            Box::new(move |r| r.stats = replace_line(&r.stats, &l, ""))
        }),
        ("get_hits not a number", {
            let l = stat(&raw.stats, "get_hits");
            Box::new(move |r| r.stats = replace_line(&r.stats, &l, "STAT get_hits many\r\n"))
        }),
        ("rusage_user in whole seconds", {
            let l = stat(&raw.stats, "rusage_user");
            Box::new(move |r| r.stats = replace_line(&r.stats, &l, "STAT rusage_user 12\r\n"))
        }),
        ("rusage_system in seconds as a float", {
            let l = stat(&raw.stats, "rusage_system");
            Box::new(move |r| r.stats = replace_line(&r.stats, &l, "STAT rusage_system 0.5\r\n"))
        }),
        ("accepting_conns missing", {
            let l = stat(&raw.stats, "accepting_conns");
            Box::new(move |r| r.stats = replace_line(&r.stats, &l, ""))
        }),
        (
            "a global name with a colon",
            Box::new(|r| r.stats = format!("STAT ring:share 1\r\n{}", r.stats)),
        ),
        ("a value with a space", {
            let l = stat(&raw.stats, "curr_items");
            Box::new(move |r| r.stats = replace_line(&r.stats, &l, "STAT curr_items 2 items\r\n"))
        }),
        ("a negative counter", {
            let l = stat(&raw.stats, "evictions");
            Box::new(move |r| r.stats = replace_line(&r.stats, &l, "STAT evictions -1\r\n"))
        }),
        ("cmd_set below the CAS commands", {
            let l = stat(&raw.stats, "cmd_set");
            Box::new(move |r| r.stats = replace_line(&r.stats, &l, "STAT cmd_set 0\r\n"))
        }),
        ("a slab class without cmd_set", {
            let l = stat(&raw.slabs, &format!("{class}:cmd_set"));
            Box::new(move |r| r.slabs = replace_line(&r.slabs, &l, ""))
        }),
        ("a slab class with only used_chunks", {
            Box::new(|r| r.slabs = format!("STAT 63:used_chunks 1\r\n{}", r.slabs))
        }),
        ("a slab class that is no number", {
            Box::new(|r| r.slabs = format!("STAT all:used_chunks 1\r\n{}", r.slabs))
        }),
        ("an items class without hits_to_hot", {
            let l = stat(&raw.items, &format!("items:{class}:hits_to_hot"));
            Box::new(move |r| r.items = replace_line(&r.items, &l, ""))
        }),
        ("an items class with only a number", {
            Box::new(|r| r.items = format!("STAT items:63:number 1\r\n{}", r.items))
        }),
        (
            "a stats items reply with no END",
            Box::new(|r| r.items = "ERROR\r\n".into()),
        ),
        ("stats settings without maxconns", {
            let l = stat(&raw.settings, "maxconns");
            Box::new(move |r| r.settings = replace_line(&r.settings, &l, ""))
        }),
        ("a settings line of five words", {
            Box::new(|r| r.settings = format!("STAT logger to standard error\r\n{}", r.settings))
        }),
        ("a boolean as 1", {
            let l = stat(&raw.settings, "lru_maintainer_thread");
            Box::new(move |r| r.settings = replace_line(&r.settings, &l, "STAT lru_maintainer_thread 1\r\n"))
        }),
        ("the crawler on without its settings", {
            let l = stat(&raw.settings, "hot_lru_pct");
            Box::new(move |r| r.settings = replace_line(&r.settings, &l, ""))
        }),
    ];
    for (what, mutate) in cases {
        let mut bent = raw.clone();
        mutate(&mut bent);
        let refused = match parse(&bent) {
            Err(_) => true,
            Ok(sc) => !complaints(&sc).is_empty(),
        };
        assert!(
            refused,
            "{what}: the rules accept what the exporter would not:\n{bent:#?}"
        );
    }
}

#[test]
fn a_node_is_read_without_complaint_and_counts_as_memcached_does() {
    let node = ServerProcess::start(ServerKind::target(), NODE_FLAGS);
    let what = format!("a fresh {} node", node.kind().name());
    let sc = assert_exporter_reads(&fetch(&node), &what);
    assert_eq!(sc.stats.get("version").map(String::as_str), Some("1.6.18"));
    let mc = ServerProcess::memcached(NODE_FLAGS);

    let mut conn = node.connect();
    traffic(&mut conn, "k");
    let raw = fetch(&node);
    let sc = assert_exporter_reads(&raw, &format!("{} after traffic", node.kind().name()));
    let mut mconn = mc.connect();
    traffic(&mut mconn, "k");
    let reference = parse(&fetch(&mc)).expect("memcached");
    // The same requests give the same `memcached_commands_total` series. (Not the same
    // `curr_items`: memcached still counts the items `flush_all` hid until it meets them.)
    assert_eq!(commands(&sc), commands(&reference), "{raw:#?}");
    for key in [
        "bytes_read",
        "bytes_written",
        "total_connections",
        "total_items",
        "curr_items",
        "bytes",
        "total_malloced",
    ] {
        let v = go_parse_float(&sc.stats[key]).unwrap();
        assert!(v > 0.0, "{key} did not move: {raw:#?}");
    }
    let settings_maxconns = go_parse_float(&sc.settings["maxconns"]).unwrap();
    assert_eq!(settings_maxconns, go_parse_float(&sc.stats["max_connections"]).unwrap());
}

#[test]
fn a_node_that_evicts_counts_its_direct_reclaims() {
    // ringcache evicts on the thread that stores, which memcached counts as a direct
    // reclaim; `memcached_direct_reclaims_total` moves with `memcached_items_evicted_total`.
    let node = ServerProcess::start(ServerKind::target(), &["-m", "8", "-t", "2"]);
    let mut conn = node.connect();
    let value = "v".repeat(100 * 1024);
    for batch in 0..20 {
        let mut script = String::new();
        for i in 0..10 {
            script.push_str(&format!("set big{batch}_{i} 0 0 {}\r\n{value}\r\n", value.len()));
        }
        let reply = run(&mut conn, &script);
        assert_eq!(reply.matches("STORED\r\n").count(), 10, "{reply:?}");
    }
    let sc = assert_exporter_reads(&fetch(&node), "a node that evicted");
    let n = |k: &str| go_parse_float(&sc.stats[k]).unwrap();
    assert!(n("evictions") > 0.0, "20 MB into 8 MB evicted nothing: {:?}", sc.stats);
    // (memcached's LRU maintainer thread may do its evicting for it.)
    if node.kind() == ServerKind::Ringcache {
        assert!(n("direct_reclaims") > 0.0, "{:?}", sc.stats);
    }
}

#[test]
fn every_node_of_a_cluster_is_read_without_complaint() {
    let cluster = ClusterTarget::start(&[]);
    let what = cluster.describe();
    for i in 0..cluster.addrs().len() {
        assert_exporter_reads(&fetch(cluster.process(i)), &format!("{what}, node {}, fresh", i + 1));
    }
    // Keys on every node, relayed and replicated: each node's counters move.
    let mut conn = RawConn::connect(cluster.addr()).expect("connect to node 1");
    for i in 0..20 {
        traffic(&mut conn, &format!("c{i}_"));
    }
    for i in 0..cluster.addrs().len() {
        let sc = assert_exporter_reads(
            &fetch(cluster.process(i)),
            &format!("{what}, node {}, after traffic", i + 1),
        );
        // Every node owns some of the keys (in the self-check only node 1 had traffic).
        if i == 0 || cluster.kind() == ServerKind::Ringcache {
            let sets = go_parse_float(&sc.stats["cmd_set"]).unwrap();
            assert!(sets > 0.0, "node {} ran no set: {:?}", i + 1, sc.stats);
        }
    }
}
