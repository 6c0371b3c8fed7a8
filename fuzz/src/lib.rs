//! Fuzz targets for ringcache, and a stable-toolchain runner for them.
//!
//! Each [`Target`] gives an input's meaning and the invariants to check. Two engines
//! run the same targets:
//! - this crate's binary: a coverage-less, structure-aware mutation fuzzer run as an
//!   ordinary program: a seeded generator ([`rng`]), a corpus of valid inputs per
//!   target that [`mutate`] edits the way hostile peers do, and, for feedback, an
//!   *outcome signature* per input (which results, errors and request kinds it
//!   produced): an input with a new signature joins the corpus. Quick, deterministic
//!   for a seed, no extra tool: CI's smoke test.
//! - libFuzzer, coverage-guided, through `cargo fuzz` and the thin wrappers in
//!   `fuzz/libfuzzer/`, which call [`check_or_panic`].
//!
//! Every target checks invariants, not only "no panic" (see each module):
//! - no panic and no hang (every call makes progress; each input is timed);
//! - consumed byte counts never exceed the input, and "incomplete" leaves it untouched;
//! - the same bytes fed whole and in arbitrary splits give the same results;
//! - whatever is decoded re-encodes to bytes that decode to an equal value;
//! - decoders reject absurd sizes instead of allocating them ([`alloc`] measures);
//! - requests never carry a key over 250 bytes or one with control characters;
//! - the store agrees with a model of its last writes and keeps within its memory limit.
//!
//! # Layout
//! - [`runner`]: the loop (time budget, seed, corpus, findings);
//! - [`targets`]: `request`, `response`, `meta_response`, `topology`, `gossip`, `seal`,
//!   `peer_reply`, `peer`, `store`;
//! - [`input`]: reads structured values off an input (`peer`, `store`);
//! - [`mutate`], [`rng`], [`alloc`]: the machinery.

pub mod alloc;
pub mod input;
pub mod mutate;
pub mod rng;
pub mod runner;
pub mod targets;

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// One fuzz target: a decoder and the invariants it must keep.
pub trait Target {
    /// The name used on the command line and in finding files.
    fn name(&self) -> &'static str;
    /// Valid inputs the corpus starts from (each must pass [`Target::run`]).
    fn seeds(&self) -> Vec<Vec<u8>>;
    /// Tokens the mutator inserts.
    fn dictionary(&self) -> &'static [&'static [u8]];
    /// Checks one input. `Ok` carries the input's outcome signature; `Err` is a finding.
    /// Deterministic: everything random here derives from the input's bytes.
    fn run(&self, input: &[u8]) -> Result<u64, String>;
}

/// Runs `data` through the target named `name` and panics on a finding: the entry
/// point of the coverage-guided libFuzzer targets in `fuzz/libfuzzer/` (libFuzzer
/// reports the panic as a crash and saves the input). The targets are built once per
/// thread.
pub fn check_or_panic(name: &str, data: &[u8]) {
    thread_local! {
        static ALL: Vec<Box<dyn Target>> = targets::all();
    }
    ALL.with(|all| {
        let target = all
            .iter()
            .find(|t| t.name() == name)
            .unwrap_or_else(|| panic!("no fuzz target named {name}"));
        if let Err(msg) = target.run(data) {
            panic!("{name}: {msg}\n    input: {}", show(data));
        }
    });
}

/// Builds an outcome signature.
#[derive(Debug, Clone, Copy)]
pub struct Signature(u64);

impl Default for Signature {
    fn default() -> Self {
        Signature(0xcbf2_9ce4_8422_2325)
    }
}

impl Signature {
    /// Mixes one outcome into the signature (FNV-1a over 64-bit words).
    pub fn add(&mut self, tag: u64) {
        self.0 = (self.0 ^ tag).wrapping_mul(0x0100_0000_01b3);
    }

    /// Mixes in a string, by its hash.
    pub fn add_str(&mut self, s: &str) {
        self.add(rng::hash(s.as_bytes()));
    }

    /// The signature of everything added, in order.
    pub fn finish(self) -> u64 {
        self.0
    }
}

/// Shows bytes as an escaped string, shortened in the middle when long.
pub fn show(bytes: &[u8]) -> String {
    const MAX: usize = 400;
    let esc = |b: &[u8]| b.escape_ascii().to_string();
    if bytes.len() <= MAX {
        return format!("\"{}\"", esc(bytes));
    }
    format!(
        "\"{}\" ... ({} bytes) ... \"{}\"",
        esc(&bytes[..MAX / 2]),
        bytes.len() - MAX,
        esc(&bytes[bytes.len() - MAX / 2..])
    )
}
