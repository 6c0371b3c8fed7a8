//! `cluster`: random request streams through an in-process 3-node cluster
//! (`--replicas 2`) against one node, `ringcache_server::testing::Differential`.
//!
//! The input decodes to operations (`testing::Op::decode`: four bytes each pick a
//! command, a key of eight, a value, flags, an expiry, the node to send it to, or time
//! passing). Each input runs on a fresh cluster and model under tokio's paused clock,
//! so it is deterministic and replays exactly.
//!
//! Invariant: every reply through any node of the cluster is byte for byte the one
//! node's reply (placement, forwarding, replication, multi-get splitting and merging,
//! read repair are invisible to a client).

use ringcache_server::testing::{Differential, Op};

use crate::{Signature, Target};

/// The `cluster` target (see the module doc).
pub struct ClusterTarget;

impl Target for ClusterTarget {
    fn name(&self) -> &'static str {
        "cluster"
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"\x00\x01\x02\x00",
            b"\x06\x01\x00\x01",
            b"\x08\x09\x03\x02",
            b"\x11\x00\x06\x00",
        ]
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        vec![
            // set, get through each node, multi-get, delete, time passing.
            b"\x00\x01\x07\x00\x06\x01\x00\x01\x06\x01\x00\x02\x08\x09\x00\x00\x09\x01\x00\x01\x11\x00\x06\x00".to_vec(),
            // incr/decr, touch with a TTL, meta commands, expiry.
            b"\x0a\x02\x05\x00\x0b\x02\x03\x01\x0c\x02\x04\x02\x0d\x02\x01\x00\x0e\x02\x00\x01\x11\x00\x05\x00\x0e\x02\x00\x02".to_vec(),
            b"\x0f\x03\x06\x01\x02\x03\x05\x02\x03\x03\x04\x00\x04\x03\x03\x01\x05\x03\x02\x02\x10\x03\x00\x00".to_vec(),
        ]
    }

    fn run(&self, input: &[u8]) -> Result<u64, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .map_err(|e| format!("cannot build a runtime: {e}"))?;
        rt.block_on(async {
            let diff = Differential::start(3, 2).await;
            let mut sig = Signature::default();
            for op in Op::decode(input) {
                let reply = diff.step(&op).await?;
                // Which command answered how (its first reply word).
                if let Op::Request { bytes, .. } = &op {
                    let word = |b: &[u8]| b.split(|&c| c == b' ').next().map(<[u8]>::to_vec).unwrap_or_default();
                    sig.add(crate::rng::hash(&word(bytes)));
                    sig.add(crate::rng::hash(&word(&reply)));
                }
            }
            Ok(sig.finish())
        })
    }
}
