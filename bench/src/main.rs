//! `ringcache-bench`: a load generator for memcached-protocol servers and the report
//! of a side-by-side comparison (see `scripts/bench.sh` and `docs/bench/`).
//!
//! # Layout
//! - [`config`] — flags.
//! - [`load`] — the pipelined load loop and the summary of a run.
//! - [`reply`] — allocation-free classification of replies.
//! - [`keys`] — key ids, their popularity (uniform, Zipf) and spelling.
//! - [`probe`] — `stats`, `topology` and `/proc` CPU time, outside the load.
//! - [`result`] — the JSON line of one run.
//! - [`report`] — medians, ratios, the table and the SVG charts.
#![forbid(unsafe_code)]

mod config;
mod keys;
mod load;
mod probe;
mod reply;
mod report;
mod result;
mod sizes;

use std::process::ExitCode;

use clap::Parser;

use crate::config::{Cli, Command, LoadArgs};
use crate::result::RunResult;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Load(args) => load_command(&args),
        Command::Report(args) => match report::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ringcache-bench report: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs one load and prints its JSON line, also when it fails (with `error` set), so
/// a script collecting lines sees every run.
fn load_command(args: &LoadArgs) -> ExitCode {
    let mut result = RunResult {
        scenario: args.scenario.clone(),
        side: args.side.clone(),
        round: args.round,
        server: args.server.clone(),
        direct: args.direct,
        connections: args.connections,
        pipeline: args.pipeline,
        keys: args.keys,
        dist: args.dist.to_string(),
        value_size: args.value_size,
        value_max: args.value_max,
        get_ratio: args.get_ratio,
        multiget: args.multiget,
        read_through: args.read_through,
        fill: args.fill,
        unique_sets: args.unique_sets,
        slow_ms: args.slow_ms,
        ..RunResult::default()
    };
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(load::run(args, &mut result)));
    let code = match outcome {
        Ok(()) => {
            eprintln!("{}", report::summary_line(&result));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringcache-bench load: {e:#}");
            result.error = Some(format!("{e:#}"));
            ExitCode::FAILURE
        }
    };
    match serde_json::to_string(&result) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("ringcache-bench load: cannot encode results: {e}"),
    }
    code
}
