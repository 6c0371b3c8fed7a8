//! libFuzzer entry for the `cluster` target: the input's meaning and the invariants
//! checked are in `ringcache_fuzz::targets` (fuzz/src/targets); a finding panics,
//! which libFuzzer reports as a crash and saves under `artifacts/cluster/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcache_fuzz::check_or_panic("cluster", data));
