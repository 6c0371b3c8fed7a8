//! The fuzzing loop: run a target's seeds, then mutated inputs until the time budget or
//! the execution cap is spent; collect findings (an invariant broken, a panic, an input
//! slower than [`SLOW_INPUT`]) and save each one so that `--repro` replays it.

use std::cell::RefCell;
use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::mutate::mutate;
use crate::rng::Rng;
use crate::{show, Target};

/// One input taking longer than this is a finding (a hang, or quadratic work).
pub const SLOW_INPUT: Duration = Duration::from_secs(2);
/// The grown corpus stops growing here (memory and pick quality).
const CORPUS_MAX: usize = 4096;
/// Inputs longer than this run but do not join the corpus: mutations of long inputs
/// are slow and rarely reach new states (the long-line rules need one long run, which
/// a single mutation adds).
const CORPUS_INPUT_MAX: usize = 4096;
/// Distinct findings kept per target; one bug tends to show up many times.
const FINDINGS_MAX: usize = 10;

/// What broke, on which input.
#[derive(Debug, Clone)]
pub struct Finding {
    /// What the target reported (a broken invariant or a panic's message).
    pub message: String,
    /// The input that broke it.
    pub input: Vec<u8>,
    /// Where the input was saved, if a directory was given.
    pub saved: Option<PathBuf>,
}

/// The outcome of one target's run.
#[derive(Debug)]
pub struct Report {
    /// The target's name.
    pub target: &'static str,
    /// The seed of the mutation stream (a rerun with it repeats the run).
    pub seed: u64,
    /// Inputs run.
    pub executions: u64,
    /// Corpus size at the end: the seeds plus the inputs that reached a new outcome.
    pub corpus: usize,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Distinct findings, at most `FINDINGS_MAX`.
    pub findings: Vec<Finding>,
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Routes panic messages to [`check_one`] instead of stderr (a target panicking is a
/// finding, reported with its input).
pub fn capture_panics() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string();
        let _ = LAST_PANIC.try_with(|p| *p.borrow_mut() = Some(msg));
    }));
}

/// Runs one input through `target`, turning panics and slowness into findings.
pub fn check_one(target: &dyn Target, input: &[u8]) -> Result<u64, String> {
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| target.run(input)));
    let took = start.elapsed();
    let result = match result {
        Ok(r) => r,
        Err(_) => {
            let msg = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "panic".to_string());
            Err(format!("panicked: {msg}"))
        }
    };
    if result.is_ok() && took > SLOW_INPUT {
        return Err(format!("took {took:?} (bound {SLOW_INPUT:?})"));
    }
    result
}

/// Fuzzes `target` for `budget` (or `max_execs` inputs, whichever ends first).
pub fn fuzz(target: &dyn Target, seed: u64, budget: Duration, max_execs: u64, save_dir: Option<&Path>) -> Report {
    let start = Instant::now();
    let mut rng = Rng::new(seed ^ crate::rng::hash(target.name().as_bytes()));
    let mut corpus = target.seeds();
    let mut signatures = HashSet::new();
    let mut findings: Vec<Finding> = Vec::new();
    let mut seen_messages = HashSet::new();
    let mut executions = 0u64;
    let seeds = corpus.len();
    while executions < max_execs && findings.len() < FINDINGS_MAX {
        // The seeds run first, unmutated; then the clock decides.
        let input = if (executions as usize) < seeds {
            corpus[executions as usize].clone()
        } else {
            if start.elapsed() >= budget {
                break;
            }
            mutate(&mut rng, &corpus, target.dictionary())
        };
        executions += 1;
        match check_one(target, &input) {
            Ok(sig) => {
                if signatures.insert(sig)
                    && corpus.len() < CORPUS_MAX
                    && input.len() <= CORPUS_INPUT_MAX
                    && (executions as usize) > seeds
                {
                    corpus.push(input);
                }
            }
            Err(message) => {
                // One report per distinct message (numbers stripped, so that the same
                // bug at another offset does not count twice).
                let key: String = message.chars().filter(|c| !c.is_ascii_digit()).take(120).collect();
                if seen_messages.insert(key) {
                    let saved = save_dir.and_then(|d| save(d, target.name(), seed, executions, &input));
                    findings.push(Finding { message, input, saved });
                }
            }
        }
    }
    Report {
        target: target.name(),
        seed,
        executions,
        corpus: corpus.len(),
        elapsed: start.elapsed(),
        findings,
    }
}

fn save(dir: &Path, target: &str, seed: u64, exec: u64, input: &[u8]) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let path = dir.join(format!("{target}-seed{seed}-exec{exec}.bin"));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

/// Prints a report in the form `scripts/test.sh` and humans read.
pub fn print(report: &Report) {
    println!(
        "{:<14} seed {:<6} {:>9} executions in {:>5.1}s ({:>7.0}/s), corpus {:>4}, findings {}",
        report.target,
        report.seed,
        report.executions,
        report.elapsed.as_secs_f64(),
        report.executions as f64 / report.elapsed.as_secs_f64().max(1e-9),
        report.corpus,
        report.findings.len()
    );
    for f in &report.findings {
        println!("  FINDING [{}]: {}", report.target, f.message);
        println!("    input: {}", show(&f.input));
        if let Some(p) = &f.saved {
            println!(
                "    saved: {} (replay: ringcache-fuzz --target {} --repro {})",
                p.display(),
                report.target,
                p.display()
            );
        }
    }
}
