//! Which keys a run touches, and how they are spelled on the wire.
//!
//! Keys are numbered `0..n` and written as `<prefix><decimal id>` into a caller's
//! buffer (no allocation per request). Popularity is uniform or Zipf: id `r - 1` is
//! the key of popularity rank `r`, so key 0 is the hottest.
//!
//! Zipf sampling uses `rand_distr::Zipf` (rejection-inversion, Hörmann & Derflinger
//! 1996): O(1) set-up and O(1) expected time per sample for any key count, where the
//! YCSB-style sampler needs an O(n) zeta sum at start and a table-based sampler O(n)
//! memory. Writing our own would buy nothing but a second implementation to verify.

use rand::Rng;
use rand_distr::{Distribution, Zipf};

/// How key ids are drawn.
#[derive(Debug, Clone)]
pub(crate) enum KeyDist {
    /// Every id in `0..n` equally likely.
    Uniform { n: u64 },
    /// P(rank r) ∝ 1 / r^s over ranks `1..=n`; id = rank − 1.
    Zipf { n: u64, zipf: Zipf<f64> },
}

impl KeyDist {
    /// Uniform over `n ≥ 1` keys.
    pub(crate) fn uniform(n: u64) -> anyhow::Result<Self> {
        anyhow::ensure!(n >= 1, "key count must be at least 1");
        Ok(KeyDist::Uniform { n })
    }

    /// Zipf with exponent `s ≥ 0` over `n ≥ 1` keys (`s = 0` is uniform).
    pub(crate) fn zipf(n: u64, s: f64) -> anyhow::Result<Self> {
        anyhow::ensure!(n >= 1, "key count must be at least 1");
        anyhow::ensure!(
            s.is_finite() && s >= 0.0,
            "Zipf exponent must be finite and >= 0, got {s}"
        );
        let zipf = Zipf::new(n, s).map_err(|e| anyhow::anyhow!("Zipf({n}, {s}): {e:?}"))?;
        Ok(KeyDist::Zipf { n, zipf })
    }

    /// The number of distinct keys.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        match self {
            KeyDist::Uniform { n } | KeyDist::Zipf { n, .. } => *n,
        }
    }

    /// Draws one key id in `0..len()`.
    pub(crate) fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        match self {
            KeyDist::Uniform { n } => rng.gen_range(0..*n),
            KeyDist::Zipf { n, zipf } => {
                // The sample is an integer-valued float in [1, n]; clamp guards rounding.
                let rank = zipf.sample(rng) as u64;
                rank.clamp(1, *n) - 1
            }
        }
    }
}

/// Appends `<prefix><id>` to `out`.
pub(crate) fn write_key(out: &mut Vec<u8>, prefix: &[u8], id: u64) {
    out.extend_from_slice(prefix);
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(num.format(id).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn counts(dist: &KeyDist, draws: usize, seed: u64) -> Vec<u64> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut c = vec![0u64; dist.len() as usize];
        for _ in 0..draws {
            c[dist.sample(&mut rng) as usize] += 1;
        }
        c
    }

    /// Generalised harmonic number H(n, s) = sum_{k=1..n} k^-s.
    fn harmonic(n: u64, s: f64) -> f64 {
        (1..=n).map(|k| (k as f64).powf(-s)).sum()
    }

    #[test]
    fn zipf_matches_its_probability_mass() {
        let (n, s, draws) = (1000u64, 0.99, 400_000usize);
        let dist = KeyDist::zipf(n, s).unwrap();
        let c = counts(&dist, draws, 7);
        let h = harmonic(n, s);
        // The head ranks each get enough draws for a tight relative bound (>= ~8k draws
        // for rank 10: 3% is more than 4 standard deviations).
        for rank in [1u64, 2, 3, 10] {
            let expect = draws as f64 * (rank as f64).powf(-s) / h;
            let got = c[(rank - 1) as usize] as f64;
            assert!(
                (got - expect).abs() / expect < 0.03,
                "rank {rank}: got {got}, expected {expect:.0}"
            );
        }
        // Mass of the top 10% of keys, a sum over many ranks, within 1%.
        let top: u64 = c[..100].iter().sum();
        let expect = harmonic(100, s) / h;
        let got = top as f64 / draws as f64;
        assert!((got - expect).abs() < 0.01, "top-10% mass {got:.4} vs {expect:.4}");
        // Popularity falls with rank.
        assert!(c[0] > c[1] && c[1] > c[9] && c[9] > c[99] && c[99] > c[999]);
    }

    #[test]
    fn zipf_zero_exponent_and_uniform_are_flat() {
        for dist in [KeyDist::uniform(10).unwrap(), KeyDist::zipf(10, 0.0).unwrap()] {
            let c = counts(&dist, 100_000, 3);
            for (id, &k) in c.iter().enumerate() {
                assert!((9_000..11_000).contains(&k), "{dist:?}: id {id} drawn {k} times");
            }
        }
    }

    #[test]
    fn samples_stay_in_range_and_are_reproducible() {
        let dist = KeyDist::zipf(3, 1.5).unwrap();
        assert_eq!(counts(&dist, 10_000, 11), counts(&dist, 10_000, 11));
        assert_eq!(counts(&dist, 10_000, 11).iter().sum::<u64>(), 10_000);
        let one = KeyDist::zipf(1, 0.99).unwrap();
        assert!(counts(&one, 100, 1) == vec![100]);
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(KeyDist::uniform(0).is_err());
        assert!(KeyDist::zipf(0, 1.0).is_err());
        assert!(KeyDist::zipf(10, -0.5).is_err());
        assert!(KeyDist::zipf(10, f64::NAN).is_err());
    }

    #[test]
    fn keys_are_prefix_and_decimal() {
        let mut out = b"get ".to_vec();
        write_key(&mut out, b"key:", 0);
        out.push(b' ');
        write_key(&mut out, b"k", 18_446_744_073_709_551_615);
        assert_eq!(out, b"get key:0 k18446744073709551615");
    }
}
