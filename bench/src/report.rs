//! From JSON result lines to the comparison: medians per scenario and side, ratios
//! B/A, two Markdown tables, two SVG bar charts, `results.json` and `README.md`.
//!
//! Sides are taken in the order they first appear in a scenario's lines: A is the
//! baseline (memcached, or the forwarding path in the cluster scenario), B the
//! subject, and every ratio is B/A. The replicated-write scenarios (10, 11) have four
//! sides: A = `replicas-1`, B = `replicas-2`, then `single` and `memcached` as
//! references, all four in their own table with error replies and slow requests. Medians are over the rounds of a side (with two
//! rounds, the mean of the two). Charts are hand-written SVG: each scenario's bars are
//! scaled to that scenario's largest value, since scenarios differ by orders of
//! magnitude, and every bar is labelled with its number.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::json;

use crate::config::ReportArgs;
use crate::result::RunResult;

/// Picks one number out of a run.
type Metric = fn(&RunResult) -> Option<f64>;

/// The runs of one side of one scenario, and their medians.
#[derive(Debug)]
struct Side {
    name: String,
    runs: Vec<RunResult>,
    errors: Vec<String>,
}

impl Side {
    fn median(&self, f: impl Fn(&RunResult) -> Option<f64>) -> Option<f64> {
        median(self.runs.iter().filter_map(f).collect())
    }
}

#[derive(Debug)]
struct Scenario {
    name: String,
    sides: Vec<Side>,
}

/// The middle value (mean of the two middle values for an even count).
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// Groups result lines by scenario and side, in order of first appearance.
fn group(runs: Vec<RunResult>) -> Vec<Scenario> {
    let mut out: Vec<Scenario> = Vec::new();
    for r in runs {
        let si = match out.iter().position(|s| s.name == r.scenario) {
            Some(i) => i,
            None => {
                out.push(Scenario {
                    name: r.scenario.clone(),
                    sides: Vec::new(),
                });
                out.len() - 1
            }
        };
        let sides = &mut out[si].sides;
        let di = match sides.iter().position(|d| d.name == r.side) {
            Some(i) => i,
            None => {
                sides.push(Side {
                    name: r.side.clone(),
                    runs: Vec::new(),
                    errors: Vec::new(),
                });
                sides.len() - 1
            }
        };
        match &r.error {
            Some(e) => sides[di].errors.push(e.clone()),
            None => sides[di].runs.push(r),
        }
    }
    out
}

/// Reads JSON lines; blank lines are skipped, anything else must parse.
fn read_results(text: &str) -> anyhow::Result<Vec<RunResult>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("results line {}", i + 1)))
        .collect()
}

/// The scenario-specific figure of merit besides throughput, if any.
fn extra_metric(s: &Scenario) -> Option<(&'static str, Metric)> {
    let any = |f: fn(&RunResult) -> bool| s.sides.iter().flat_map(|d| &d.runs).any(f);
    if any(|r| r.idle_connections.is_some()) {
        Some(("RSS MiB", |r| r.rss_kib.map(|k| k as f64 / 1024.0)))
    } else if any(|r| r.fill || r.value_max.is_some()) {
        Some(("items per MiB", |r| r.items_per_mib))
    } else if any(|r| r.read_through) {
        Some(("hit ratio", |r| r.hit_ratio))
    } else {
        None
    }
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a != 0.0 => Some(b / a),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("**{r:.2}**"))
}

/// A side's cell: its median, or why it has none.
fn cell(d: Option<&Side>, f: Metric) -> (Option<f64>, String) {
    let Some(d) = d else { return (None, "–".into()) };
    let v = d.median(f);
    if v.is_none() && !d.errors.is_empty() {
        return (None, "failed†".into());
    }
    (v, fmt_num(v))
}

/// Lists every side that had failed runs, with its distinct errors.
fn failures(scenarios: &[Scenario]) -> String {
    let mut t = String::new();
    for s in scenarios {
        for d in &s.sides {
            let mut seen: Vec<&String> = Vec::new();
            for e in &d.errors {
                if !seen.contains(&e) {
                    seen.push(e);
                }
            }
            for e in seen {
                let n = d.errors.iter().filter(|x| *x == e).count();
                let _ = writeln!(
                    t,
                    "- {} / {}: {n} of {} runs failed: {e}",
                    s.name,
                    d.name,
                    n + d.runs.len()
                );
            }
        }
    }
    if t.is_empty() {
        t
    } else {
        format!("† Failed runs:\n\n{t}")
    }
}

/// One table row per scenario: each metric as A, B, B/A.
fn table(scenarios: &[Scenario], metrics: &[(&str, Metric)], extra: bool) -> String {
    let mut t = String::from("| scenario | A → B | runs |");
    let mut rule = String::from("|---|---|---|");
    for (name, _) in metrics {
        let _ = write!(t, " {name} A | {name} B | B/A |");
        rule.push_str("---:|---:|---:|");
    }
    if extra {
        t.push_str(" metric | A | B | B/A |");
        rule.push_str("---|---:|---:|---:|");
    }
    t.push('\n');
    t.push_str(&rule);
    t.push('\n');
    for s in scenarios {
        let (a, b) = (s.sides.first(), s.sides.get(1));
        let name = |d: Option<&Side>| d.map_or("–".to_string(), |d| d.name.clone());
        let runs = |d: Option<&Side>| d.map_or(0, |d| d.runs.len() + d.errors.len());
        let _ = write!(
            t,
            "| {} | {} → {} | {}+{} |",
            s.name,
            name(a),
            name(b),
            runs(a),
            runs(b)
        );
        for (_, f) in metrics {
            let (va, ca) = cell(a, *f);
            let (vb, cb) = cell(b, *f);
            let _ = write!(t, " {ca} | {cb} | {} |", fmt_ratio(ratio(va, vb)));
        }
        if extra {
            match extra_metric(s) {
                Some((label, f)) => {
                    let (va, ca) = cell(a, f);
                    let (vb, cb) = cell(b, f);
                    let _ = write!(t, " {label} | {ca} | {cb} | {} |", fmt_ratio(ratio(va, vb)));
                }
                None => t.push_str(" | | | |"),
            }
        }
        t.push('\n');
    }
    t
}

fn throughput_table(s: &[Scenario]) -> String {
    table(
        s,
        &[
            ("ops/s", (|r| Some(r.ops_per_s)) as Metric),
            ("server CPU µs/op", |r| r.server_cpu_us_per_op),
        ],
        true,
    )
}

fn latency_table(s: &[Scenario]) -> String {
    table(
        s,
        &[
            ("p50 µs", (|r| Some(r.p50_us)) as Metric),
            ("p99 µs", |r| Some(r.p99_us)),
            ("p99.9 µs", |r| Some(r.p999_us)),
        ],
        false,
    )
}

/// A bar of a chart: label, value (none: the run failed), colour.
type Bar = (String, Option<f64>, &'static str);

const COLORS: [&str; 4] = ["#4e79a7", "#f28e2b", "#a0cbe8", "#ffbe7d"];

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Horizontal grouped bars, each group scaled to its own largest value.
fn bar_chart(title: &str, note: &str, groups: &[(String, Vec<Bar>)]) -> String {
    const W: f64 = 820.0;
    const LABEL: f64 = 230.0;
    const BAR_W: f64 = 460.0;
    const BAR_H: f64 = 16.0;
    const GAP: f64 = 14.0;
    let height = 70.0
        + groups
            .iter()
            .map(|(_, b)| b.len() as f64 * (BAR_H + 3.0) + GAP)
            .sum::<f64>();
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="16" font-weight="bold">{}</text>"#,
        xml_escape(title)
    );
    let _ = writeln!(s, r##"<text x="10" y="42" fill="#555">{}</text>"##, xml_escape(note));
    let mut y = 60.0;
    for (name, bars) in groups {
        let max = bars.iter().filter_map(|b| b.1).fold(0.0f64, f64::max);
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.0}" font-weight="bold">{}</text>"#,
            y + 12.0,
            xml_escape(name)
        );
        y += 18.0;
        for (label, value, color) in bars {
            let len = match value {
                Some(v) if max > 0.0 => (v / max * BAR_W).max(1.0),
                _ => 0.0,
            };
            let _ = writeln!(
                s,
                r##"<text x="{:.0}" y="{:.0}" text-anchor="end" fill="#333">{}</text>"##,
                LABEL - 6.0,
                y + BAR_H - 4.0,
                xml_escape(label)
            );
            let _ = writeln!(
                s,
                r#"<rect x="{LABEL}" y="{y:.0}" width="{len:.1}" height="{BAR_H}" fill="{color}"/>"#
            );
            let text = value.map_or("failed".to_string(), |v| fmt_num(Some(v)));
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.0}">{}</text>"#,
                LABEL + len + 4.0,
                y + BAR_H - 4.0,
                text
            );
            y += BAR_H + 3.0;
        }
        y += GAP;
    }
    s.push_str("</svg>\n");
    s
}

fn throughput_chart(scenarios: &[Scenario]) -> String {
    let groups: Vec<(String, Vec<Bar>)> = scenarios
        .iter()
        .map(|s| {
            let bars = s
                .sides
                .iter()
                .zip(COLORS)
                .map(|(d, c)| (format!("{} ops/s", d.name), d.median(|r| Some(r.ops_per_s)), c))
                .collect();
            (s.name.clone(), bars)
        })
        .collect();
    bar_chart(
        "Throughput (median ops/s, higher is better)",
        "Each scenario scaled to its own maximum.",
        &groups,
    )
}

fn latency_chart(scenarios: &[Scenario]) -> String {
    let groups: Vec<(String, Vec<Bar>)> = scenarios
        .iter()
        .map(|s| {
            let mut bars = Vec::new();
            for (q, f) in [
                ("p50", (|r: &RunResult| Some(r.p50_us)) as Metric),
                ("p99", |r| Some(r.p99_us)),
            ] {
                for (i, d) in s.sides.iter().enumerate() {
                    let color = COLORS[(i % 2) + if q == "p99" { 0 } else { 2 }];
                    bars.push((format!("{} {q} µs", d.name), d.median(f), color));
                }
            }
            (s.name.clone(), bars)
        })
        .collect();
    bar_chart(
        "Latency (median of runs' p50 and p99, µs, lower is better)",
        "Each scenario scaled to its own maximum.",
        &groups,
    )
}

/// One row of the targets table: what is measured, the value, the goal, and whether
/// the value meets it (`None` when the value is missing).
struct Target {
    what: String,
    value: Option<f64>,
    unit: &'static str,
    goal: String,
    met: Option<bool>,
}

/// The scenario whose name starts with `prefix` (scenario numbers: "1-", "8-").
fn scenario<'a>(scenarios: &'a [Scenario], prefix: &str) -> Option<&'a Scenario> {
    scenarios.iter().find(|s| s.name.starts_with(prefix))
}

/// Side `i`'s median of `f` in the scenario starting with `prefix`.
fn side_median(scenarios: &[Scenario], prefix: &str, i: usize, f: Metric) -> Option<f64> {
    scenario(scenarios, prefix)?.sides.get(i)?.median(f)
}

/// Issue 6's targets, checked against the medians of the scenarios that ran: B/A
/// ratios for the side-by-side scenarios (1-6), and for the cluster the cost of the
/// extra hop (8) and of direct routing against one node (9); for replicated writes,
/// the rate of `--replicas 2` sets against `--replicas 1` (10) and no error reply (10,
/// 11).
fn targets(scenarios: &[Scenario]) -> Vec<Target> {
    let mut out = Vec::new();
    let b_over_a = |prefix: &str, f: Metric| {
        ratio(
            side_median(scenarios, prefix, 0, f),
            side_median(scenarios, prefix, 1, f),
        )
    };
    let mut push = |what: String, value: Option<f64>, unit, goal: String, ok: fn(f64) -> bool| {
        let met = value.map(ok);
        out.push(Target {
            what,
            value,
            unit,
            goal,
            met,
        });
    };
    for n in ["1-", "2-", "3-", "4-"] {
        let Some(s) = scenario(scenarios, n) else { continue };
        push(
            format!("{} throughput, B/A", s.name),
            b_over_a(n, |r| Some(r.ops_per_s)),
            "x",
            ">= 1.0 (aim 1.2)".into(),
            |v| v >= 1.0,
        );
        push(
            format!("{} p99 latency, B/A", s.name),
            b_over_a(n, |r| Some(r.p99_us)),
            "x",
            "<= 1.0".into(),
            |v| v <= 1.0,
        );
    }
    if let Some(s) = scenario(scenarios, "5-") {
        push(
            format!("{} items per MiB, B/A", s.name),
            b_over_a("5-", |r| r.items_per_mib),
            "x",
            ">= 1.25 (aim 1.5)".into(),
            |v| v >= 1.25,
        );
    }
    if let Some(s) = scenario(scenarios, "6-") {
        push(
            format!("{} miss ratio, B/A", s.name),
            b_over_a("6-", |r| r.hit_ratio.map(|h| 1.0 - h)),
            "x",
            "<= 0.9 (aim 0.85)".into(),
            |v| v <= 0.9,
        );
    }
    if let Some(s) = scenario(scenarios, "8-") {
        // Sides: direct, forward. One request at a time, so a direct p50 is one
        // loopback round trip through a node, and the hop may add at most that.
        let p50 = |r: &RunResult| Some(r.p50_us);
        let direct = side_median(scenarios, "8-", 0, p50);
        let forward = side_median(scenarios, "8-", 1, p50);
        let extra = forward.zip(direct).map(|(f, d)| f - d);
        let met = extra.zip(direct).map(|(e, d)| e <= d);
        out.push(Target {
            what: format!("{}: forward p50 - direct p50", s.name),
            value: extra,
            unit: " µs",
            goal: format!("<= one round trip (direct p50, {} µs)", fmt_num(direct)),
            met,
        });
    }
    if let Some(s) = scenario(scenarios, "9-") {
        out.push(Target {
            what: format!("{}: direct p50 / single-node p50", s.name),
            value: b_over_a("9-", |r| Some(r.p50_us)),
            unit: "x",
            goal: "<= 1.1 (matches)".into(),
            met: b_over_a("9-", |r| Some(r.p50_us)).map(|v| v <= 1.1),
        });
    }
    if let Some(s) = scenario(scenarios, "10-") {
        let ops = |name: &str| s.sides.iter().find(|d| d.name == name)?.median(|r| Some(r.ops_per_s));
        let value = ratio(ops("replicas-1"), ops("replicas-2"));
        out.push(Target {
            what: format!("{}: replicas-2 ops/s / replicas-1 ops/s", s.name),
            value,
            unit: "x",
            goal: ">= 0.5".into(),
            met: value.map(|v| v >= 0.5),
        });
    }
    for s in REPLICATED.iter().filter_map(|p| scenario(scenarios, p)) {
        let runs = s.sides.iter().flat_map(|d| &d.runs);
        let errors = runs.clone().map(|r| r.errors + r.prefill_errors).sum::<u64>();
        let failed: usize = s.sides.iter().map(|d| d.errors.len()).sum();
        let value = (runs.count() > 0).then_some(errors as f64);
        let mut what = format!("{}: error replies, all sides and runs", s.name);
        if failed > 0 {
            let _ = write!(what, " ({failed} runs failed)");
        }
        out.push(Target {
            what,
            value,
            unit: "",
            goal: "0, and no run failed".into(),
            met: value.map(|v| v == 0.0 && failed == 0),
        });
    }
    out.extend(issue15_targets(scenarios));
    out
}

/// Issue 15's targets (memory density, hit ratio, CPU per request, threads,
/// connections), each a B/A ratio of medians (B = ringcache, A = memcached).
fn issue15_targets(scenarios: &[Scenario]) -> Vec<Target> {
    let b_over_a = |prefix: &str, f: Metric| {
        ratio(
            side_median(scenarios, prefix, 0, f),
            side_median(scenarios, prefix, 1, f),
        )
    };
    let mut out = Vec::new();
    let mut push = |prefix: &str, what: &str, f: Metric, goal: &str, ok: fn(f64) -> bool| {
        let Some(s) = scenario(scenarios, prefix) else { return };
        let value = b_over_a(prefix, f);
        out.push(Target {
            what: format!("{}: {what}, B/A", s.name),
            value,
            unit: "x",
            goal: goal.into(),
            met: value.map(ok),
        });
    };
    push("5-", "items per MiB of -m", |r| r.items_per_mib, ">= 1.6", |v| v >= 1.6);
    push(
        "5-",
        "items per MiB of RSS",
        |r| r.items_per_rss_mib,
        ">= 1.5",
        |v| v >= 1.5,
    );
    push(
        "6-",
        "miss ratio",
        |r| r.hit_ratio.map(|h| 1.0 - h),
        "<= 0.85",
        |v| v <= 0.85,
    );
    push(
        "1-",
        "server CPU per request (-t 1)",
        |r| r.server_cpu_us_per_op,
        "<= 0.85",
        |v| v <= 0.85,
    );
    push(
        "12-",
        "server CPU per request (-t 2)",
        |r| r.server_cpu_us_per_op,
        "<= 0.85",
        |v| v <= 0.85,
    );
    push(
        "12-",
        "throughput (-t 2)",
        |r| Some(r.ops_per_s),
        ">= 1.1",
        |v| v >= 1.1,
    );
    push(
        "13-",
        "RSS with the idle connections open",
        |r| r.rss_kib.map(|k| k as f64),
        "<= 1.0",
        |v| v <= 1.0,
    );
    push(
        "13-",
        "RSS growth from opening the idle connections",
        |r| Some(r.rss_kib? as f64 - r.rss_before_kib? as f64),
        "<= 1.0",
        |v| v <= 1.0,
    );
    push(
        "14-",
        "items per MiB of -m",
        |r| r.items_per_mib,
        ">= 1.2",
        |v| v >= 1.2,
    );
    push("14-", "throughput", |r| Some(r.ops_per_s), ">= 1.0", |v| v >= 1.0);
    // p99 in every memcached-vs-ringcache scenario that measures latency.
    let worst = ["1-", "2-", "3-", "4-", "5-", "6-", "12-", "14-"]
        .iter()
        .filter_map(|p| Some((scenario(scenarios, p)?, b_over_a(p, |r| Some(r.p99_us))?)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((s, v)) = worst {
        out.push(Target {
            what: format!("p99 latency, the worst B/A of scenarios 1-6, 12, 14 ({})", s.name),
            value: Some(v),
            unit: "x",
            goal: "<= 1.0".into(),
            met: Some(v <= 1.0),
        });
    }
    out
}

/// The scenarios (by number prefix) that get the replicated-writes table.
const REPLICATED: [&str; 2] = ["10-", "11-"];

/// Every side of the replicated-write scenarios: medians of throughput and latency
/// percentiles, the largest latency of any run, and totals of error replies and of
/// slow requests over the runs; then which error replies came.
fn replicated_table(scenarios: &[Scenario]) -> String {
    let chosen: Vec<&Scenario> = REPLICATED.iter().filter_map(|p| scenario(scenarios, p)).collect();
    let slow_ms = chosen
        .iter()
        .flat_map(|s| &s.sides)
        .flat_map(|d| &d.runs)
        .map(|r| r.slow_ms)
        .next();
    let Some(slow_ms) = slow_ms else {
        return String::new();
    };
    let mut t = format!(
        "| scenario | side | runs | ops/s | p50 µs | p99 µs | max µs | requests | error replies | waited >= {slow_ms} ms |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    let mut lines = String::new();
    for s in chosen {
        for d in &s.sides {
            let runs = if d.errors.is_empty() {
                d.runs.len().to_string()
            } else {
                format!("{} (+{} failed†)", d.runs.len(), d.errors.len())
            };
            let max = d
                .runs
                .iter()
                .map(|r| r.max_us)
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
            let sum = |f: fn(&RunResult) -> u64| d.runs.iter().map(f).sum::<u64>();
            let mut errors = sum(|r| r.errors).to_string();
            let prefill = sum(|r| r.prefill_errors);
            if prefill > 0 {
                let _ = write!(errors, " (+{prefill} in prefill)");
            }
            let mut seen: std::collections::BTreeMap<&str, u64> = Default::default();
            for (line, n) in d.runs.iter().flat_map(|r| &r.error_replies) {
                *seen.entry(line).or_default() += n;
            }
            if !seen.is_empty() {
                let each: Vec<String> = seen.iter().map(|(l, n)| format!("{n} × `{l}`")).collect();
                let _ = writeln!(lines, "- {} / {}: {}", s.name, d.name, each.join(", "));
            }
            let _ = writeln!(
                t,
                "| {} | {} | {runs} | {} | {} | {} | {} | {} | {} | {} |",
                s.name,
                d.name,
                fmt_num(d.median(|r| Some(r.ops_per_s))),
                fmt_num(d.median(|r| Some(r.p50_us))),
                fmt_num(d.median(|r| Some(r.p99_us))),
                fmt_num(max),
                sum(|r| r.requests),
                errors,
                sum(|r| r.slow),
            );
        }
    }
    if !lines.is_empty() {
        let _ = write!(t, "\nError replies (measured window):\n\n{lines}");
    }
    t
}

const REPLICATED_NOTE: &str = "\
replicas-1 and replicas-2: three ringcache nodes started with `--replicas 1` or `--replicas 2`, \
the connections spread round robin over them (so about two thirds of the keys are forwarded to \
their owner, and with two replicas every set is also applied on a second node before its reply); \
single: one ringcache node; memcached: one memcached. ops/s, p50 and p99 are medians over the \
runs, max is the largest latency of any run, requests, error replies (`ERROR`, `CLIENT_ERROR`, \
`SERVER_ERROR`) and slow requests are totals over the runs. ringcache's default peer timeout is \
1 s, so a request that waited about that long most likely waited for a peer that never answered \
in time.";

fn targets_table(scenarios: &[Scenario]) -> String {
    let rows = targets(scenarios);
    if rows.is_empty() {
        return String::new();
    }
    let mut t = String::from("| target | measured | goal | met |\n|---|---:|---|---|\n");
    for r in rows {
        let value = r.value.map_or("–".to_string(), |v| {
            if r.unit.is_empty() && v.fract() == 0.0 {
                format!("{v:.0}") // a count
            } else {
                format!("{}{}", fmt_num(Some(v)), r.unit)
            }
        });
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(t, "| {} | {value} | {} | {met} |", r.what, r.goal);
    }
    t
}

const METHOD: &str = "\
Each scenario runs against both sides in alternation (A B A B …), each run on a fresh server \
process started with the same `-m` and `-t`, the servers pinned to one core and the load \
generator to another with `taskset` when the machine has at least two. Latency is measured \
from writing a request's batch to parsing its reply (HDR histogram, 3 significant digits). \
Server CPU µs/op is the server process's utime+stime (from `/proc/<pid>/stat`) over the \
measured window divided by the requests completed in it: on a small machine the load \
generator saturates its own core first, so this is the fairer efficiency comparison. \
Numbers are medians over the rounds; ratios are B/A (for throughput and items/MiB higher is \
better for B, for latency and CPU lower is).";

/// Prints the tables; with `--out`, also writes results.json, the charts and README.md.
pub(crate) fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.results).with_context(|| format!("reading {}", args.results.display()))?;
    let runs = read_results(&text)?;
    anyhow::ensure!(!runs.is_empty(), "{} holds no results", args.results.display());
    let scenarios = group(runs);
    let tput = throughput_table(&scenarios);
    let lat = latency_table(&scenarios);
    let failed = failures(&scenarios);
    let goals = targets_table(&scenarios);
    let mut replicated = replicated_table(&scenarios);
    if !replicated.is_empty() {
        replicated = format!("## Replicated writes\n\n{REPLICATED_NOTE}\n\n{replicated}\n");
    }
    println!("{tput}\n{lat}\n{replicated}{failed}\n{goals}");
    let Some(out) = &args.out else { return Ok(()) };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let write = |name: &str, body: &str| -> anyhow::Result<()> {
        let p: &Path = out.as_ref();
        std::fs::write(p.join(name), body).with_context(|| format!("writing {}", p.join(name).display()))
    };
    write("throughput.svg", &throughput_chart(&scenarios))?;
    write("latency.svg", &latency_chart(&scenarios))?;
    let json = json!({
        "command": args.command,
        "note": args.note,
        "scenarios": scenarios.iter().map(|s| json!({
            "scenario": s.name,
            "sides": s.sides.iter().map(|d| json!({
                "side": d.name,
                "median": {
                    "ops_per_s": d.median(|r| Some(r.ops_per_s)),
                    "p50_us": d.median(|r| Some(r.p50_us)),
                    "p99_us": d.median(|r| Some(r.p99_us)),
                    "p999_us": d.median(|r| Some(r.p999_us)),
                    "server_cpu_us_per_op": d.median(|r| r.server_cpu_us_per_op),
                    "hit_ratio": d.median(|r| r.hit_ratio),
                    "items_per_mib": d.median(|r| r.items_per_mib),
                    "items_per_rss_mib": d.median(|r| r.items_per_rss_mib),
                    "rss_kib": d.median(|r| r.rss_kib.map(|k| k as f64)),
                    "rss_before_kib": d.median(|r| r.rss_before_kib.map(|k| k as f64)),
                },
                "total": {
                    "requests": d.runs.iter().map(|r| r.requests).sum::<u64>(),
                    "error_replies": d.runs.iter().map(|r| r.errors).sum::<u64>(),
                    "slow": d.runs.iter().map(|r| r.slow).sum::<u64>(),
                },
                "errors": d.errors,
                "runs": d.runs,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    write("results.json", &serde_json::to_string_pretty(&json)?)?;
    let readme = format!(
        "# Benchmarks\n\nGenerated by `ringcache-bench report` from the runs of:\n\n```sh\n{}\n```\n\n{}\n\n\
         ## Targets\n\n{goals}\n## Throughput and server CPU per request\n\n{tput}\n## Latency\n\n{lat}\n{replicated}{failed}\n\
         ![throughput](throughput.svg)\n\n![latency](latency.svg)\n\n## Method\n\n{METHOD}\n\n\
         Every run is in `results.json` (one object per run, with its flags).\n",
        args.command, args.note
    );
    write("README.md", &readme)?;
    eprintln!(
        "wrote {}/{{README.md,results.json,throughput.svg,latency.svg}}",
        out.display()
    );
    Ok(())
}

/// One human-readable line per run, for stderr.
pub(crate) fn summary_line(r: &RunResult) -> String {
    let mut s = format!(
        "{} {} r{}: {:.0} ops/s over {:.1} s, p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs",
        r.scenario, r.side, r.round, r.ops_per_s, r.duration_s, r.p50_us, r.p99_us, r.p999_us
    );
    if let Some(h) = r.hit_ratio {
        let _ = write!(s, ", hit ratio {h:.4}");
    }
    if let Some(c) = r.server_cpu_us_per_op {
        let _ = write!(s, ", server {c:.2} CPU-µs/op");
    }
    if let Some(c) = r.client_cpu_us_per_op {
        let _ = write!(s, ", generator {c:.2} CPU-µs/op");
    }
    if let (Some(items), Some(per)) = (r.curr_items, r.items_per_mib) {
        let _ = write!(s, ", {items} items = {per:.0} per MiB");
    }
    if let Some(per) = r.items_per_rss_mib {
        let _ = write!(s, " ({per:.0} per MiB of RSS)");
    }
    if let Some(rss) = r.rss_kib {
        let _ = write!(s, ", server RSS {:.1} MiB", rss as f64 / 1024.0);
    }
    if let (Some(n), Some(before)) = (r.idle_connections, r.rss_before_kib) {
        let _ = write!(
            s,
            " with {n} idle connections ({:.1} MiB before)",
            before as f64 / 1024.0
        );
    }
    if r.errors > 0 {
        let _ = write!(s, ", {} error replies", r.errors);
        for (line, n) in &r.error_replies {
            let _ = write!(s, " ({n}x {line:?})");
        }
    }
    if r.prefill_errors > 0 {
        let _ = write!(s, ", {} error replies in the prefill", r.prefill_errors);
    }
    if r.slow > 0 {
        let _ = write!(
            s,
            ", {} requests took >= {} ms (max {:.0} µs)",
            r.slow, r.slow_ms, r.max_us
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scenario: &str, side: &str, ops: f64, p99: f64) -> RunResult {
        RunResult {
            scenario: scenario.into(),
            side: side.into(),
            ops_per_s: ops,
            p99_us: p99,
            server_cpu_us_per_op: Some(ops / 1e4),
            ..RunResult::default()
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0]), Some(3.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(vec![5.0, 1.0, 3.0, f64::NAN]), Some(3.0));
    }

    #[test]
    fn table_has_medians_ratios_and_failures() {
        let mut failed = run("s2", "ringcache", 0.0, 0.0);
        failed.error = Some("no reply within 5s | x".into());
        let lines = [
            run("s1", "memcached", 100.0, 10.0),
            run("s1", "ringcache", 150.0, 30.0),
            run("s1", "memcached", 300.0, 20.0),
            run("s1", "ringcache", 250.0, 10.0),
            run("s2", "memcached", 10.0, 1.0),
            failed,
        ];
        let text: String = lines
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n\n")
            .collect();
        let scenarios = group(read_results(&text).unwrap());
        assert_eq!(scenarios.len(), 2);
        let t = throughput_table(&scenarios);
        // s1: medians 200 and 200 ops/s, ratio 1.00; CPU 0.020 vs 0.020.
        assert!(
            t.contains("| s1 | memcached → ringcache | 2+2 | 200.0 | 200.0 | **1.00** |"),
            "{t}"
        );
        assert!(t.contains("| failed† |"), "{t}");
        let f = failures(&scenarios);
        assert!(
            f.contains("- s2 / ringcache: 1 of 1 runs failed: no reply within 5s | x"),
            "{f}"
        );
        let l = latency_table(&scenarios);
        assert!(l.contains("| 15.0 | 20.0 | **1.33** |"), "{l}");
        let svg = throughput_chart(&scenarios);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(">failed<"));
        assert!(read_results("{not json").is_err());
    }

    #[test]
    fn targets_are_checked_against_medians() {
        let mut lines = vec![
            run("1-get", "memcached", 100.0, 10.0),
            run("1-get", "ringcache", 120.0, 12.0),
        ];
        for (side, hit) in [("memcached", 0.8), ("ringcache", 0.83)] {
            let mut r = run("6-hit", side, 1.0, 1.0);
            r.read_through = true;
            r.hit_ratio = Some(hit);
            lines.push(r);
        }
        for (side, p50) in [("direct", 80.0), ("forward", 150.0)] {
            let mut r = run("8-hop", side, 1.0, 1.0);
            r.p50_us = p50;
            lines.push(r);
        }
        let scenarios = group(lines);
        let t = targets_table(&scenarios);
        assert!(
            t.contains("| 1-get throughput, B/A | 1.20x | >= 1.0 (aim 1.2) | yes |"),
            "{t}"
        );
        assert!(
            t.contains("| 1-get p99 latency, B/A | 1.20x | <= 1.0 | **no** |"),
            "{t}"
        );
        // Miss ratios 0.17 / 0.2 = 0.85.
        assert!(
            t.contains("| 6-hit miss ratio, B/A | 0.85") && t.contains("aim 0.85) | yes |"),
            "{t}"
        );
        assert!(
            t.contains("| 8-hop: forward p50 - direct p50 | 70.0 µs | <= one round trip (direct p50, 80.0 µs) | yes |"),
            "{t}"
        );
        assert!(!t.contains("items per MiB"), "scenarios that did not run have no rows");
    }

    #[test]
    fn replicated_writes_have_their_table_and_targets() {
        let mut lines = Vec::new();
        for round in 0..2 {
            for (side, ops, errors, slow) in [
                ("replicas-1", 40_000.0, 0, 0),
                ("replicas-2", 100.0 + round as f64 * 20.0, 3, 50),
                ("single", 50_000.0, 0, 0),
                ("memcached", 45_000.0, 0, 0),
            ] {
                let mut r = run("10-replicated-sets", side, ops, 1000.0);
                r.requests = 1000;
                r.errors = errors;
                if errors > 0 {
                    r.error_replies.insert("SERVER_ERROR owner unavailable".into(), errors);
                }
                r.slow = slow;
                r.slow_ms = 900;
                r.max_us = 1_000_000.0 + round as f64;
                lines.push(r);
            }
        }
        for side in ["replicas-1", "replicas-2"] {
            let mut r = run("11-replicated-mix", side, 1.0, 1.0);
            r.slow_ms = 900;
            lines.push(r);
        }
        let mut failed = run("11-replicated-mix", "replicas-2", 0.0, 0.0);
        failed.error = Some("no reply within 5s".into());
        lines.push(failed);
        let scenarios = group(lines);
        let t = replicated_table(&scenarios);
        assert!(
            t.contains("| 10-replicated-sets | replicas-2 | 2 | 110.0 | 0.000 | 1000 | 1000001 | 2000 | 6 | 100 |"),
            "{t}"
        );
        assert!(t.contains("| 10-replicated-sets | memcached | 2 | 45000 |"), "{t}");
        assert!(t.contains("| 11-replicated-mix | replicas-2 | 1 (+1 failed†) |"), "{t}");
        assert!(t.contains("waited >= 900 ms"), "{t}");
        assert!(
            t.contains("- 10-replicated-sets / replicas-2: 6 × `SERVER_ERROR owner unavailable`"),
            "{t}"
        );
        let g = targets_table(&scenarios);
        assert!(
            g.contains("| 10-replicated-sets: replicas-2 ops/s / replicas-1 ops/s | 0.003x | >= 0.5 | **no** |"),
            "{g}"
        );
        assert!(
            g.contains("| 10-replicated-sets: error replies, all sides and runs | 6 | 0, and no run failed | **no** |"),
            "{g}"
        );
        assert!(
            g.contains(
                "| 11-replicated-mix: error replies, all sides and runs (1 runs failed) | 0 | 0, and no run failed | **no** |"
            ),
            "{g}"
        );
        // A-B table: replicas-1 → replicas-2.
        assert!(
            throughput_table(&scenarios).contains("| 10-replicated-sets | replicas-1 → replicas-2 | 2+2 |"),
            "table"
        );
        assert!(replicated_table(&group(vec![run("1-get", "memcached", 1.0, 1.0)])).is_empty());
    }

    #[test]
    fn issue15_targets_have_a_row_each() {
        let mut lines = Vec::new();
        for (side, cpu, ops, rss, items) in [
            ("memcached", 5.0, 100.0, 40_000, 10.0),
            ("ringcache", 4.0, 120.0, 30_000, 13.0),
        ] {
            let p99 = if side == "ringcache" { 11.0 } else { 10.0 };
            let mut r = run("12-get-heavy-t2", side, ops, p99);
            r.server_cpu_us_per_op = Some(cpu);
            lines.push(r);
            let mut r = run("13-idle-conns", side, 0.0, 0.0);
            r.idle_connections = Some(10_000);
            r.rss_kib = Some(rss);
            r.rss_before_kib = Some(rss - 20_000);
            lines.push(r);
            let mut r = run("14-large-values", side, ops, 10.0);
            r.value_max = Some(1 << 19);
            r.items_per_mib = Some(items);
            lines.push(r);
        }
        let scenarios = group(lines);
        let t = targets_table(&scenarios);
        for row in [
            "| 12-get-heavy-t2: server CPU per request (-t 2), B/A | 0.800x | <= 0.85 | yes |",
            "| 12-get-heavy-t2: throughput (-t 2), B/A | 1.20x | >= 1.1 | yes |",
            "| 13-idle-conns: RSS with the idle connections open, B/A | 0.750x | <= 1.0 | yes |",
            "| 13-idle-conns: RSS growth from opening the idle connections, B/A | 1.00x | <= 1.0 | yes |",
            "| 14-large-values: items per MiB of -m, B/A | 1.30x | >= 1.2 | yes |",
            "| p99 latency, the worst B/A of scenarios 1-6, 12, 14 (12-get-heavy-t2) | 1.10x | <= 1.0 | **no** |",
        ] {
            assert!(t.contains(row), "{row} missing from\n{t}");
        }
        let tp = throughput_table(&scenarios);
        assert!(tp.contains("| RSS MiB | 39.1 | 29.3 | **0.75** |"), "{tp}");
    }

    #[test]
    fn svg_escapes_labels() {
        let svg = bar_chart(
            "a<b",
            "",
            &[("x&y".into(), vec![("\"q\"".into(), Some(1.0), COLORS[0])])],
        );
        assert!(svg.contains("a&lt;b") && svg.contains("x&amp;y") && svg.contains("&quot;q&quot;"));
    }
}
