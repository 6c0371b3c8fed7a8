//! Per-key value sizes of `--value-max` (mixed sizes).
//!
//! Also compiled into the server's in-process eviction workload
//! (`server/src/storage/workload.rs` includes this file by path), so a trace there and
//! a `scripts/bench.sh` scenario give a key the same size. No dependencies.

/// `min * (max / min)^u` with `u` in [0, 1) from a hash (splitmix64) of `id`:
/// log-uniform between `min` and `max`, and always the same for an `id`.
pub(crate) fn value_len_between(min: usize, max: usize, id: u64) -> usize {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let u = (z >> 11) as f64 / (1u64 << 53) as f64;
    let min = min.max(1);
    let len = min as f64 * (max as f64 / min as f64).powf(u);
    (len as usize).clamp(min, max.max(min))
}
