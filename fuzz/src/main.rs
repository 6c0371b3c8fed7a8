//! `ringcache-fuzz`: runs the fuzz targets for a time budget, or replays saved inputs.
//!
//! ```text
//! ringcache-fuzz --target all --seconds 12 --seed 1      # what scripts/test.sh runs
//! ringcache-fuzz --target request --seconds 3600 --seed 7 --findings fuzz/findings
//! ringcache-fuzz --target request --repro fuzz/findings/request-seed7-exec123.bin
//! ringcache-fuzz --target all --export target/fuzz-seeds   # libFuzzer's starting corpora
//! ```
//!
//! Exits 1 when any finding was made (or a replayed input still fails), 0 otherwise.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ringcache_fuzz::runner::{capture_panics, check_one, fuzz, print};
use ringcache_fuzz::{show, targets, Target};

#[derive(Debug, Parser)]
#[command(about = "Structure-aware mutation fuzzing of ringcache's decoders (stable Rust).")]
struct Args {
    /// Target name, or `all` (request, response, meta_response, topology, gossip, seal, peer_reply, peer, store).
    #[arg(long, default_value = "all")]
    target: String,
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seed of the mutation generator; the same seed, build and budget replay the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop a target after this many executions (with `--seconds`, whichever comes first).
    #[arg(long, default_value_t = u64::MAX)]
    max_execs: u64,
    /// Directory where inputs that produce findings are saved.
    #[arg(long, default_value = "target/fuzz-findings")]
    findings: PathBuf,
    /// Replay these saved inputs through `--target` instead of fuzzing.
    #[arg(long, num_args = 1..)]
    repro: Vec<PathBuf>,
    /// Instead of fuzzing, write each chosen target's seed inputs to
    /// `<DIR>/corpus/<target>/` and its dictionary to `<DIR>/<target>.dict` (libFuzzer's
    /// format): the starting corpus of the libFuzzer targets in fuzz/libfuzzer.
    #[arg(long, value_name = "DIR")]
    export: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let all = targets::all();
    let chosen: Vec<&dyn Target> = all
        .iter()
        .map(AsRef::as_ref)
        .filter(|t| args.target == "all" || t.name() == args.target)
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = all.iter().map(|t| t.name()).collect();
        eprintln!("unknown target {:?}; targets: all, {}", args.target, names.join(", "));
        return ExitCode::from(2);
    }
    if let Some(dir) = &args.export {
        return match export(&chosen, dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{}: {e}", dir.display());
                ExitCode::from(2)
            }
        };
    }
    capture_panics();
    if !args.repro.is_empty() {
        return repro(&chosen, &args.repro);
    }
    let budget = Duration::from_secs_f64(args.seconds.max(0.0));
    let mut findings = 0;
    for target in chosen {
        let report = fuzz(target, args.seed, budget, args.max_execs, Some(&args.findings));
        print(&report);
        findings += report.findings.len();
    }
    if findings > 0 {
        println!("{findings} finding(s)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Writes the seeds and dictionaries of `targets` under `dir` (see `--export`).
fn export(targets: &[&dyn Target], dir: &Path) -> std::io::Result<()> {
    for target in targets {
        let corpus = dir.join("corpus").join(target.name());
        std::fs::create_dir_all(&corpus)?;
        for (i, seed) in target.seeds().iter().enumerate() {
            std::fs::write(corpus.join(format!("seed-{i}")), seed)?;
        }
        let mut dict = String::new();
        for token in target.dictionary() {
            dict.push('"');
            for &b in *token {
                match b {
                    0x20..=0x7e if b != b'"' && b != b'\\' => dict.push(char::from(b)),
                    _ => dict.push_str(&format!("\\x{b:02x}")),
                }
            }
            dict.push_str("\"\n");
        }
        std::fs::write(dir.join(format!("{}.dict", target.name())), dict)?;
    }
    Ok(())
}

fn repro(targets: &[&dyn Target], files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        let input = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        for target in targets {
            match check_one(*target, &input) {
                Ok(_) => println!("{} {}: ok", target.name(), file.display()),
                Err(msg) => {
                    failed = true;
                    println!(
                        "{} {}: FINDING: {msg}\n    input: {}",
                        target.name(),
                        file.display(),
                        show(&input)
                    );
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
