//! The JSON line one `load` run prints, and that `report` reads back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Results of one run. A failed run carries `error` and whatever labels it had.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RunResult {
    /// Labels given with `--scenario`, `--side`, `--round`.
    pub scenario: String,
    pub side: String,
    pub round: u32,
    /// The workload, as configured.
    pub server: String,
    pub direct: bool,
    pub nodes: usize,
    pub connections: usize,
    pub pipeline: usize,
    pub keys: u64,
    pub dist: String,
    pub value_size: usize,
    /// `--value-max`: values sized from `value_size` up to this, per key.
    pub value_max: Option<usize>,
    pub get_ratio: f64,
    pub multiget: usize,
    pub read_through: bool,
    pub fill: bool,
    /// The measured window: seconds, completed requests, requests per second.
    pub duration_s: f64,
    pub requests: u64,
    pub ops_per_s: f64,
    /// get requests, keys asked for in them, keys found; `hits / get_keys`.
    pub gets: u64,
    pub get_keys: u64,
    pub hits: u64,
    pub hit_ratio: Option<f64>,
    /// set requests; those answered NOT_STORED/EXISTS/NOT_FOUND; ERROR/CLIENT_ERROR/SERVER_ERROR replies.
    pub sets: u64,
    pub not_stored: u64,
    pub errors: u64,
    /// How many times each error reply line came (at most 16 distinct lines; the rest
    /// are counted under `(other)`).
    pub error_replies: BTreeMap<String, u64>,
    /// Error replies to the prefill's sets (not part of the measured window).
    pub prefill_errors: u64,
    /// Measured requests that took at least `slow_ms` milliseconds.
    pub slow: u64,
    pub slow_ms: u64,
    /// Sets wrote keys never written before (`--unique-sets`).
    pub unique_sets: bool,
    /// Latency from writing a request's batch to parsing its reply, microseconds.
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    /// CPU microseconds per measured request: of the `--server-pid` processes, and of
    /// the generator itself.
    pub server_cpu_us_per_op: Option<f64>,
    pub client_cpu_us_per_op: Option<f64>,
    /// Fill mode: the server's stats once eviction started.
    pub curr_items: Option<u64>,
    pub evictions: Option<u64>,
    pub limit_maxbytes: Option<u64>,
    pub items_per_mib: Option<f64>,
    /// Resident memory of the `--server-pid` processes (summed), KiB: at the end of the
    /// run, and (idle mode) before the connections were opened.
    pub rss_kib: Option<u64>,
    pub rss_before_kib: Option<u64>,
    /// `curr_items` per MiB of the server's RSS at the end (with `items_per_mib`).
    pub items_per_rss_mib: Option<f64>,
    /// Idle mode: the connections held open.
    pub idle_connections: Option<usize>,
    /// Why the run failed, if it did.
    pub error: Option<String>,
}
