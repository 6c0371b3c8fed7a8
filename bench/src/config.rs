//! Command-line flags of `ringcache-bench`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Load generator for memcached-protocol servers, and the report of a comparison.
#[derive(Debug, Parser)]
#[command(name = "ringcache-bench", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Drive one server (or cluster) and print one JSON line of results on stdout.
    Load(LoadArgs),
    /// Read JSON result lines, print the comparison table, write charts and README.
    Report(ReportArgs),
}

/// Key popularity: `uniform`, `zipf` (exponent 0.99) or `zipf:<exponent>`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum DistSpec {
    Uniform,
    Zipf(f64),
}

impl std::str::FromStr for DistSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(DistSpec::Uniform),
            "zipf" => Ok(DistSpec::Zipf(0.99)),
            _ => {
                let exp = s
                    .strip_prefix("zipf:")
                    .ok_or_else(|| format!("expected uniform, zipf or zipf:<s>, got {s}"))?;
                let v: f64 = exp.parse().map_err(|_| format!("bad Zipf exponent {exp}"))?;
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!("Zipf exponent must be >= 0, got {v}"));
                }
                Ok(DistSpec::Zipf(v))
            }
        }
    }
}

impl std::fmt::Display for DistSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DistSpec::Uniform => f.write_str("uniform"),
            DistSpec::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct LoadArgs {
    /// Server address (host:port), or a comma-separated list of them: connection i
    /// then goes to address i modulo the list's length (round robin). With --direct or
    /// --fill, exactly one address (with --direct, any one node of the cluster).
    #[arg(short = 's', long, default_value = "127.0.0.1:11211")]
    pub server: String,
    /// Fetch the cluster topology from --server and send every key straight to its
    /// primary owner (ringcache's placement), instead of everything to --server.
    #[arg(long)]
    pub direct: bool,
    /// Concurrent connections (with --direct: connection sets, one connection per node).
    #[arg(short = 'c', long, default_value_t = 50)]
    pub connections: usize,
    /// Requests written back to back per connection before reading their replies.
    #[arg(short = 'd', long, default_value_t = 1)]
    pub pipeline: usize,
    /// Distinct keys (ignored by --fill, which writes fresh keys until eviction).
    #[arg(short = 'k', long, default_value_t = 100_000)]
    pub keys: u64,
    /// Key popularity: uniform, zipf (s = 0.99) or zipf:<s>.
    #[arg(long, default_value = "uniform")]
    pub dist: DistSpec,
    /// Bytes per value written by set (with --value-max, the smallest value).
    #[arg(short = 'v', long, default_value_t = 100)]
    pub value_size: usize,
    /// Mixed value sizes: key i's value has a size between --value-size and this,
    /// log-uniform and fixed per key (a hash of its id), so a key is always set to the
    /// same size and small values outnumber large ones.
    #[arg(long)]
    pub value_max: Option<usize>,
    /// Fraction of requests that are gets (the rest are sets), 0..=1.
    #[arg(short = 'g', long, default_value_t = 0.9)]
    pub get_ratio: f64,
    /// Keys per get request (multi-get width).
    #[arg(short = 'w', long, default_value_t = 1)]
    pub multiget: usize,
    /// Read-through: every get that misses is followed by a set of that key (the
    /// set counts as a request). Needs --multiget 1.
    #[arg(long)]
    pub read_through: bool,
    /// Every set writes a key never written before (ids from --keys up, drawn from one
    /// counter shared by all connections), so no set overwrites; gets still draw from
    /// the --keys key space.
    #[arg(long)]
    pub unique_sets: bool,
    /// Set every key once before measuring, so gets can hit.
    #[arg(long)]
    pub prefill: bool,
    /// Requests per batch per connection in the prefill (or --pipeline, if larger).
    #[arg(long, default_value_t = 32)]
    pub prefill_depth: usize,
    /// Fill mode: set distinct keys until the server's `stats` shows evictions > 0,
    /// then report curr_items and items per MiB of limit_maxbytes.
    #[arg(long)]
    pub fill: bool,
    /// After the load, read the server's `stats` and report curr_items, evictions and
    /// items per MiB of limit_maxbytes (as --fill does, without stopping at the first
    /// eviction).
    #[arg(long)]
    pub count_items: bool,
    /// Idle mode: open --connections connections, send one set and one get of a
    /// --value-size value on each (all of the same key), then leave them all idle for --duration seconds and
    /// report the server's RSS (VmRSS of --server-pid) before connecting and at the end.
    #[arg(long)]
    pub idle: bool,
    /// Measured seconds (after --warmup). Every run is bounded by this.
    #[arg(short = 'D', long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring starts (not counted anywhere).
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Requests of load before measuring starts (after --warmup's seconds; not counted
    /// anywhere): a warm-up by count, so a cache fills whatever the machine's speed.
    /// Bounded by 600 s: a warm-up that has not made this many by then fails the run.
    #[arg(long, default_value_t = 0)]
    pub warmup_requests: u64,
    /// Stop after this many measured requests (whichever of this and --duration comes first).
    #[arg(short = 'n', long, default_value_t = 1_000_000_000)]
    pub requests: u64,
    /// Seed of the per-connection RNGs (connection i uses seed + i).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Tokio worker threads of the generator.
    #[arg(short = 't', long, default_value_t = 1)]
    pub threads: usize,
    /// Key spelling: <prefix><decimal id>.
    #[arg(long, default_value = "key:")]
    pub key_prefix: String,
    /// A server process to charge CPU time to (repeat for a cluster): reports server
    /// CPU microseconds per request over the measured window, from /proc/<pid>/stat.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    pub clk_tck: u64,
    /// How long to wait for a reply (or a connection) before failing the run, in ms.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Measured requests whose latency is at least this many milliseconds are counted
    /// as slow (ringcache's default peer timeout is 1000 ms).
    #[arg(long, default_value_t = 900)]
    pub slow_ms: u64,
    /// Free-form labels copied into the JSON line (used by `report`).
    #[arg(long, default_value = "")]
    pub scenario: String,
    #[arg(long, default_value = "")]
    pub side: String,
    #[arg(long, default_value_t = 0)]
    pub round: u32,
}

impl LoadArgs {
    /// The addresses of --server, in order.
    pub(crate) fn servers(&self) -> Vec<&str> {
        self.server.split(',').map(str::trim).collect()
    }

    /// Rejects combinations that cannot run, before any connection is made.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        use anyhow::ensure;
        ensure!(self.connections >= 1, "--connections must be >= 1");
        let servers = self.servers();
        ensure!(
            servers.iter().all(|s| !s.is_empty()),
            "--server: empty address in {:?}",
            self.server
        );
        ensure!(
            servers.len() == 1 || !(self.direct || self.fill),
            "--direct and --fill take one --server address"
        );
        ensure!(
            !(self.unique_sets && self.fill),
            "--fill already writes fresh keys; drop --unique-sets"
        );
        ensure!((1..=4096).contains(&self.pipeline), "--pipeline must be in 1..=4096");
        ensure!(
            (1..=4096).contains(&self.prefill_depth),
            "--prefill-depth must be in 1..=4096"
        );
        ensure!(self.keys >= 1, "--keys must be >= 1");
        ensure!(self.value_size <= 1 << 20, "--value-size must be <= 1 MiB");
        if let Some(max) = self.value_max {
            ensure!(
                (self.value_size.max(1)..=1 << 20).contains(&max),
                "--value-max must be in --value-size..=1 MiB (and --value-size >= 1)"
            );
        }
        ensure!(
            !self.idle || (!self.fill && !self.direct && !self.prefill && self.servers().len() == 1),
            "--idle takes one --server and no --fill, --direct or --prefill"
        );
        ensure!(!self.idle || !self.server_pids.is_empty(), "--idle needs --server-pid");
        ensure!((0.0..=1.0).contains(&self.get_ratio), "--get-ratio must be in 0..=1");
        ensure!((1..=100).contains(&self.multiget), "--multiget must be in 1..=100");
        ensure!(
            !self.read_through || self.multiget == 1,
            "--read-through needs --multiget 1"
        );
        ensure!(
            self.duration > 0.0 && self.duration <= 3600.0,
            "--duration must be in (0, 3600] s"
        );
        ensure!((0.0..=3600.0).contains(&self.warmup), "--warmup must be in [0, 3600] s");
        ensure!(
            self.warmup_requests == 0 || (!self.fill && !self.idle),
            "--warmup-requests takes no --fill or --idle"
        );
        ensure!(self.threads >= 1, "--threads must be >= 1");
        ensure!(self.clk_tck >= 1, "--clk-tck must be >= 1");
        ensure!(
            self.key_prefix.len() <= 200 && !self.key_prefix.contains(char::is_whitespace),
            "bad --key-prefix"
        );
        Ok(())
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ReportArgs {
    /// JSON-lines file written by `load` runs (one line per run).
    pub results: PathBuf,
    /// Directory for results.json, throughput.svg, latency.svg and README.md.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The command that produced the results, quoted in README.md.
    #[arg(long, default_value = "scripts/bench.sh")]
    pub command: String,
    /// A note for README.md (machine, pinning, self-check, ...).
    #[arg(long, default_value = "")]
    pub note: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dist_spec_parses() {
        assert_eq!("uniform".parse::<DistSpec>(), Ok(DistSpec::Uniform));
        assert_eq!("zipf".parse::<DistSpec>(), Ok(DistSpec::Zipf(0.99)));
        assert_eq!("zipf:1.2".parse::<DistSpec>(), Ok(DistSpec::Zipf(1.2)));
        assert!("zipf:-1".parse::<DistSpec>().is_err());
        assert!("zipf:x".parse::<DistSpec>().is_err());
        assert!("normal".parse::<DistSpec>().is_err());
    }

    #[test]
    fn validation_rejects_unrunnable_flags() {
        let base = Cli::parse_from(["b", "load"]);
        let Command::Load(args) = base.command else {
            panic!("parsed as load")
        };
        assert!(args.validate().is_ok());
        let bad = |f: &dyn Fn(&mut LoadArgs)| {
            let mut a = args.clone();
            f(&mut a);
            a.validate().is_err()
        };
        assert!(bad(&|a| a.connections = 0));
        assert!(bad(&|a| a.get_ratio = 1.5));
        assert!(bad(&|a| {
            a.read_through = true;
            a.multiget = 2;
        }));
        assert!(bad(&|a| a.duration = 0.0));
        assert!(bad(&|a| a.key_prefix = "a b".into()));
        assert!(bad(&|a| a.server = "127.0.0.1:1,".into()));
        assert!(bad(&|a| a.value_max = Some(50)));
        assert!(bad(&|a| a.idle = true));
        assert!(!bad(&|a| a.value_max = Some(1 << 20)));
        assert!(!bad(&|a| a.warmup_requests = 1000));
        assert!(bad(&|a| {
            a.warmup_requests = 1000;
            a.fill = true;
        }));
        assert!(bad(&|a| {
            a.server = "127.0.0.1:1,127.0.0.1:2".into();
            a.direct = true;
        }));
        let mut spread = args.clone();
        spread.server = "127.0.0.1:1, 127.0.0.1:2".into();
        assert!(spread.validate().is_ok());
        assert_eq!(spread.servers(), ["127.0.0.1:1", "127.0.0.1:2"]);
    }
}
