//! The shared cluster secret (`--gossip-key`): authenticates and encrypts gossip, and
//! authenticates the connections nodes open to each other.
//!
//! The format, which every node must agree on, is `ringcache_protocol::gossip::seal`:
//! the two keys derived from the secret, the sealed gossip envelope
//! (`nonce || ChaCha20-Poly1305(packet)`) and the `rc_peer` proof (HMAC-SHA256 of the
//! name and the Unix time). What is this node's own is here:
//! - every packet it sends is sealed under a fresh nonce from the operating system's
//!   random source ([`seal`]); a packet that fails to open is dropped and counted
//!   (`gossip_auth_failures`), foca never sees it (see `membership`);
//! - a peer connection whose `rc_peer` proof does not check is answered
//!   `CLIENT_ERROR authentication failed`, so it never becomes a peer connection (and
//!   `rc_set`/`rc_del` stay `ERROR` on it; see `connection`).
//!
//! Without a secret, nothing is encrypted and any connection may call itself a peer:
//! the trust model of memcached itself, fit only for loopback or a private network.

use rand::RngCore;
use ringcache_protocol::gossip::NONCE_LEN;

pub use ringcache_protocol::gossip::ClusterKey;

/// Encrypts and authenticates one gossip packet, under a nonce drawn at random.
pub fn seal(key: &ClusterKey, packet: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    key.seal(&nonce, packet)
}

#[cfg(test)]
mod tests {
    use ringcache_protocol::gossip::SEAL_OVERHEAD;

    use super::*;

    #[test]
    fn packets_seal_under_fresh_nonces_and_open_with_the_same_secret() {
        let a = ClusterKey::from_secret("correct horse");
        let sealed = seal(&a, b"hello gossip");
        assert_eq!(sealed.len(), 12 + SEAL_OVERHEAD);
        assert_eq!(a.open(&sealed).as_deref(), Some(&b"hello gossip"[..]));
        assert_eq!(ClusterKey::from_secret("battery staple").open(&sealed), None);
        // A fresh nonce every time: equal packets seal differently.
        let (x, y) = (seal(&a, b"x"), seal(&a, b"x"));
        assert_ne!(x[..NONCE_LEN], y[..NONCE_LEN]);
        assert_ne!(x, y);
    }
}
