//! `topology`: the client's decoder of the `topology` reply, `cluster::Topology::parse`.
//!
//! Invariants:
//! - no panic; the bytes it says it used are within the input and end with `END`'s line;
//! - allocation proportional to the input (a member count of 2^64 is never allocated);
//! - a decoded view re-encodes (`Topology::encode`) to bytes that decode to an equal
//!   view using all of them;
//! - a reply cut anywhere before its end is "incomplete", never a different view; the
//!   used prefix alone decodes to the same view.

use ringcache_protocol::cluster::Topology;

use crate::alloc::{check, measure};
use crate::rng::{hash, Rng};
use crate::{show, Signature, Target};

/// The `topology` target (see the module doc).
pub struct TopologyTarget;

const DICTIONARY: &[&[u8]] = &[
    b"TOPOLOGY ",
    b"MEMBER ",
    b"END\r\n",
    b"END\n",
    b"\r\n",
    b" ",
    b" alive",
    b" suspect",
    b" dead",
    b"xxh3-64",
    b"127.0.0.1:11211",
    b"[::1]:11211",
    b"300.0.0.1:1",
    b"\xff",
    b"\xc3\xa9",
];

impl Target for TopologyTarget {
    fn name(&self) -> &'static str {
        "topology"
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        DICTIONARY
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        [
            &b"TOPOLOGY 42 xxh3-64 160 2 2\r\nMEMBER node-1 127.0.0.1:11211 alive\r\nMEMBER node-2 127.0.0.1:11212 suspect\r\nEND\r\n"[..],
            b"TOPOLOGY 0 xxh3-64 1 1 0\r\nEND\r\n",
            b"TOPOLOGY 18446744073709551615 xxh3-64 4294967295 4294967295 1\r\nMEMBER n [::1]:65535 alive\r\nEND\r\nEXTRA",
            b"TOPOLOGY 1 xxh3-64 160 1 3\r\nMEMBER a 10.0.0.1:1 alive\r\nMEMBER b 10.0.0.2:2 alive\r\nMEMBER c 10.0.0.3:3 suspect\r\nEND\r\n",
        ]
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect()
    }

    fn run(&self, input: &[u8]) -> Result<u64, String> {
        let mut sig = Signature::default();
        let (result, usage) = measure(|| Topology::parse(input));
        check(
            "Topology::parse",
            usage,
            64 * input.len() + 4096,
            256 * input.len() + 65536,
        )?;
        sig.add_str(&match &result {
            Ok(Some((t, _))) => format!("ok {}", t.members.len().min(3)),
            Ok(None) => "none".into(),
            Err(e) => e.0.split(' ').next().unwrap_or("").to_string(),
        });
        let Ok(Some((topo, used))) = result else {
            return Ok(sig.finish());
        };
        if used == 0 || used > input.len() || !input[..used].ends_with(b"END\n") && !input[..used].ends_with(b"END\r\n")
        {
            return Err(format!(
                "used {used} of {} bytes: {}",
                input.len(),
                show(&input[..used.min(input.len())])
            ));
        }
        let mut wire = Vec::new();
        topo.encode(&mut wire);
        match Topology::parse(&wire) {
            Ok(Some((back, n))) if back == topo && n == wire.len() => {}
            other => {
                return Err(format!(
                    "re-encoding does not decode back: {topo:?} encoded as {} decoded as {other:?}",
                    show(&wire)
                ))
            }
        }
        if Topology::parse(&input[..used]) != Ok(Some((topo.clone(), used))) {
            return Err("the used prefix alone decodes differently".into());
        }
        let mut rng = Rng::new(hash(input));
        for _ in 0..4 {
            let cut = rng.below(used);
            let part = Topology::parse(&input[..cut]);
            if part != Ok(None) {
                return Err(format!("a reply cut at {cut} of {used} bytes decodes as {part:?}"));
            }
        }
        Ok(sig.finish())
    }
}
