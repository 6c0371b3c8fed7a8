//! `seal`: the cluster secret's gossip envelope, `ringcache_protocol::gossip::ClusterKey`
//! (`open`, and `seal` for the round trip), fed sealed packets altered the way someone
//! on the path without the secret could alter them: flipped bits, cuts, extensions,
//! splices of two packets, nonces swapped.
//!
//! Invariants:
//! - no panic; `open` allocates no more than the input's length (and some slack);
//! - a packet opens only if it is, byte for byte, one this target sealed (a seed), and
//!   then to exactly what was sealed: every alteration is refused, never accepted with
//!   other contents; a seed always opens;
//! - any input, sealed under a nonce derived from its bytes, is `SEAL_OVERHEAD` longer
//!   and opens to itself; with one bit flipped (where derives from the input too), one
//!   byte cut off or one added, or under another secret, it does not open.

use std::collections::HashMap;

use ringcache_protocol::gossip::{ClusterKey, NONCE_LEN, SEAL_OVERHEAD};

use crate::alloc::{check, measure};
use crate::rng::{hash, Rng};
use crate::targets::gossip::GossipTarget;
use crate::{Signature, Target};

/// The `seal` target (see the module doc): the secrets it seals under, and its seeds.
pub struct SealTarget {
    key: ClusterKey,
    other: ClusterKey,
    /// The packets this target sealed (its seeds), and what each holds.
    sealed: HashMap<Vec<u8>, Vec<u8>>,
}

const DICTIONARY: &[&[u8]] = &[b"\x00", b"\xff", b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"];

fn nonce(rng: &mut Rng) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    n[8..].copy_from_slice(&rng.next_u64().to_le_bytes()[..4]);
    n
}

impl SealTarget {
    /// Seals the gossip target's seeds (and a few more packets) under a fixed secret.
    pub fn new() -> SealTarget {
        let key = ClusterKey::from_secret("fuzz secret");
        let mut plain: Vec<Vec<u8>> = GossipTarget.seeds();
        plain.extend([Vec::new(), b"x".to_vec(), vec![0xa5; 1400]]);
        let mut rng = Rng::new(7);
        let sealed = plain.into_iter().map(|p| (key.seal(&nonce(&mut rng), &p), p)).collect();
        SealTarget {
            key,
            other: ClusterKey::from_secret("fuzz secret 2"),
            sealed,
        }
    }
}

impl Default for SealTarget {
    fn default() -> Self {
        SealTarget::new()
    }
}

impl Target for SealTarget {
    fn name(&self) -> &'static str {
        "seal"
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        DICTIONARY
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut seeds: Vec<Vec<u8>> = self.sealed.keys().cloned().collect();
        seeds.sort();
        seeds
    }

    fn run(&self, input: &[u8]) -> Result<u64, String> {
        let mut sig = Signature::default();
        let (opened, usage) = measure(|| self.key.open(input));
        check("ClusterKey::open", usage, input.len() + 256, 2 * input.len() + 1024)?;
        sig.add(opened.is_some() as u64);
        sig.add((input.len() < SEAL_OVERHEAD) as u64);
        match (&opened, self.sealed.get(input)) {
            (Some(got), Some(want)) if got == want => {}
            (Some(got), Some(want)) => {
                return Err(format!(
                    "a sealed packet opened to other bytes: {} instead of {}",
                    crate::show(got),
                    crate::show(want)
                ))
            }
            (Some(got), None) => {
                return Err(format!(
                    "accepted a packet that was never sealed, opening to {}",
                    crate::show(got)
                ))
            }
            (None, Some(_)) => return Err("refused a packet sealed with its key".into()),
            (None, None) => {}
        }

        // The input as a packet to seal.
        let mut rng = Rng::new(hash(input));
        let sealed = self.key.seal(&nonce(&mut rng), input);
        if sealed.len() != input.len() + SEAL_OVERHEAD {
            return Err(format!("sealed {} bytes into {}", input.len(), sealed.len()));
        }
        if self.key.open(&sealed).as_deref() != Some(input) {
            return Err("a packet sealed here does not open to itself".into());
        }
        let mut flipped = sealed.clone();
        let bit = rng.below(flipped.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        if self.key.open(&flipped).is_some() {
            return Err(format!("accepted a sealed packet with bit {bit} flipped"));
        }
        if self.key.open(&sealed[..sealed.len() - 1]).is_some() {
            return Err("accepted a sealed packet cut short by one byte".into());
        }
        let mut longer = sealed.clone();
        longer.push(rng.next_u64() as u8);
        if self.key.open(&longer).is_some() {
            return Err("accepted a sealed packet with a byte added".into());
        }
        if self.other.open(&sealed).is_some() {
            return Err("a packet sealed under one secret opened under another".into());
        }
        Ok(sig.finish())
    }
}
