//! The cluster secret (`--gossip-key`) on the wire: sealed gossip packets and the proof
//! that opens a peer connection.
//!
//! From the secret two independent 32-byte keys are derived, each the SHA-256 of a
//! label, a zero byte and the secret:
//! - gossip (label `ringcache gossip key`): every UDP packet is
//!   `nonce (12 bytes) || ChaCha20-Poly1305(packet)` with the associated data
//!   `ringcache-gossip-v1` ([`ClusterKey::seal`], [`ClusterKey::open`]). The nonce must
//!   never repeat under a key: the sender draws it at random for each packet (that
//!   draw is the caller's, so that this crate does no I/O).
//! - peers (label `ringcache peer key`): a node opens each peer connection with
//!   `rc_peer <name> <unix seconds> <hex HMAC-SHA256(peer key, name || " " || seconds)>`
//!   (lowercase hex, 64 digits; [`ClusterKey::peer_proof`]); the receiver accepts a
//!   proof at most [`PROOF_MAX_AGE`] old (or early) and in constant time
//!   ([`ClusterKey::check_peer_proof`]).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How far a peer proof's timestamp may be from the receiver's clock, in seconds.
pub const PROOF_MAX_AGE: u64 = 120;

/// Associated data of every sealed gossip packet (the format's version).
const GOSSIP_AAD: &[u8] = b"ringcache-gossip-v1";
/// Bytes of the nonce that starts a sealed packet.
pub const NONCE_LEN: usize = 12;
/// Bytes a sealed packet adds: the nonce and the Poly1305 tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + 16;

/// Keys derived from the cluster secret.
pub struct ClusterKey {
    gossip: ChaCha20Poly1305,
    peer: [u8; 32],
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

fn derive(label: &[u8], secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    h.update([0]);
    h.update(secret);
    h.finalize().into()
}

impl ClusterKey {
    /// Derives the keys from the secret as given on the command line.
    pub fn from_secret(secret: &str) -> ClusterKey {
        let gossip = derive(b"ringcache gossip key", secret.as_bytes());
        ClusterKey {
            gossip: ChaCha20Poly1305::new(Key::from_slice(&gossip)),
            peer: derive(b"ringcache peer key", secret.as_bytes()),
        }
    }

    /// Encrypts and authenticates one gossip packet under `nonce`, which must never
    /// be used again with this key (draw it at random for each packet).
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], packet: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(packet.len() + SEAL_OVERHEAD);
        out.extend_from_slice(nonce);
        // Encryption of an in-memory buffer cannot fail (only absurd lengths could).
        if let Ok(ct) = self.gossip.encrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: packet,
                aad: GOSSIP_AAD,
            },
        ) {
            out.extend_from_slice(&ct);
        }
        out
    }

    /// Opens a sealed packet; `None` if it was not sealed with this key (or altered).
    pub fn open(&self, data: &[u8]) -> Option<Vec<u8>> {
        if data.len() < SEAL_OVERHEAD {
            return None;
        }
        let (nonce, ct) = data.split_at(NONCE_LEN);
        self.gossip
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: GOSSIP_AAD,
                },
            )
            .ok()
    }

    fn mac(&self, name: &[u8], secs: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.peer).expect("HMAC takes keys of any length");
        mac.update(name);
        mac.update(b" ");
        mac.update(secs.to_string().as_bytes());
        mac
    }

    /// The proof a node named `name` sends in `rc_peer` at Unix time `secs`, as hex.
    pub fn peer_proof(&self, name: &[u8], secs: u64) -> String {
        self.mac(name, secs)
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `proof` (hex) is valid for `name` at `secs`, and `secs` is within
    /// [`PROOF_MAX_AGE`] of `now`. Compares in constant time.
    pub fn check_peer_proof(&self, name: &[u8], secs: u64, proof: &[u8], now: u64) -> bool {
        if now.abs_diff(secs) > PROOF_MAX_AGE || proof.len() != 64 {
            return false;
        }
        let mut raw = [0u8; 32];
        for (i, pair) in proof.chunks(2).enumerate() {
            let Some(byte) = std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
            else {
                return false;
            };
            raw[i] = byte;
        }
        self.mac(name, secs).verify_slice(&raw).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &[u8; NONCE_LEN] = b"0123456789ab";

    #[test]
    fn sealed_packets_open_only_with_the_same_secret() {
        let a = ClusterKey::from_secret("correct horse");
        let b = ClusterKey::from_secret("battery staple");
        let sealed = a.seal(NONCE, b"hello gossip");
        assert_eq!(sealed.len(), 12 + SEAL_OVERHEAD);
        assert_eq!(a.open(&sealed).as_deref(), Some(&b"hello gossip"[..]));
        assert_eq!(b.open(&sealed), None);
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert_eq!(a.open(&tampered), None, "bit flipped in byte {i}");
        }
        for cut in 0..sealed.len() {
            assert_eq!(a.open(&sealed[..cut]), None, "cut at {cut}");
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(a.open(&longer), None);
        assert_eq!(a.open(b"short"), None);
        // The nonce is the packet's: another nonce, other bytes.
        assert_ne!(
            a.seal(b"ba9876543210", b"x")[NONCE_LEN..],
            a.seal(NONCE, b"x")[NONCE_LEN..]
        );
        assert_eq!(a.open(&a.seal(NONCE, b"")).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn peer_proofs_check_name_time_and_secret() {
        let a = ClusterKey::from_secret("s");
        let now = 1_800_000_000;
        let proof = a.peer_proof(b"n1", now);
        assert!(a.check_peer_proof(b"n1", now, proof.as_bytes(), now + 5));
        assert!(a.check_peer_proof(b"n1", now, proof.as_bytes(), now - PROOF_MAX_AGE));
        assert!(!a.check_peer_proof(b"n2", now, proof.as_bytes(), now));
        assert!(!a.check_peer_proof(b"n1", now + 1, proof.as_bytes(), now));
        assert!(!a.check_peer_proof(b"n1", now, proof.as_bytes(), now + PROOF_MAX_AGE + 1));
        assert!(!ClusterKey::from_secret("t").check_peer_proof(b"n1", now, proof.as_bytes(), now));
        assert!(!a.check_peer_proof(b"n1", now, b"zz", now));
        assert!(!a.check_peer_proof(b"n1", now, &[b'g'; 64], now));
        assert!(a.check_peer_proof(b"n1", now, proof.to_uppercase().as_bytes(), now));
    }

    /// The wire format, byte for byte: a packet sealed under a fixed nonce, and a peer
    /// proof, both from a fixed secret. These bytes must never change (they also match
    /// an independent computation with Python's `cryptography` and `hmac`).
    #[test]
    fn golden_sealed_packet_and_peer_proof() {
        let key = ClusterKey::from_secret("golden secret");
        let sealed = key.seal(NONCE, b"hello gossip");
        let hex: String = sealed.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "30313233343536373839616287caadc187d7e9459bfec285f2b8e0c29312912cc18260c84a90a9b1"
        );
        assert_eq!(key.open(&sealed).as_deref(), Some(&b"hello gossip"[..]));
        assert_eq!(
            key.peer_proof(b"node-1", 1_800_000_000),
            "0f3f6b7e173771ffb08bcfcde3296540a18be4f5b4dcbd14d0139b1745b4f97c"
        );
    }
}
