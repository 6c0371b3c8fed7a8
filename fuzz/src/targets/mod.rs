//! The fuzz targets, one module per decoder.

pub mod cluster;
pub mod gossip;
pub mod meta_response;
pub mod peer;
pub mod peer_reply;
pub mod request;
pub mod response;
pub mod seal;
pub mod store;
pub mod topology;

use crate::Target;

/// Every target, in the order `all` runs them.
pub fn all() -> Vec<Box<dyn Target>> {
    vec![
        Box::new(request::RequestTarget),
        Box::new(response::ResponseTarget),
        Box::new(meta_response::MetaResponseTarget),
        Box::new(topology::TopologyTarget),
        Box::new(gossip::GossipTarget),
        Box::new(seal::SealTarget::new()),
        Box::new(peer_reply::PeerReplyTarget),
        Box::new(peer::PeerTarget),
        Box::new(store::StoreTarget),
        Box::new(cluster::ClusterTarget),
    ]
}

/// Checks that `buf` is still the tail of the bytes fed so far (`fed`), `before` bytes
/// long before the call, and returns how many bytes the call consumed. Short buffers
/// are compared whole; long ones at both ends (comparing 64 KiB after every request
/// would make the run quadratic).
pub fn check_consumed(what: &str, fed: &[u8], before: usize, buf: &[u8]) -> Result<usize, String> {
    let len = buf.len();
    if len > before || len > fed.len() {
        return Err(format!("{what}: the buffer grew from {before} to {len} bytes"));
    }
    let tail = &fed[fed.len() - len..];
    let same = if len <= 1024 {
        buf == tail
    } else {
        buf[..32] == tail[..32] && buf[len - 32..] == tail[len - 32..]
    };
    if !same {
        return Err(format!("{what}: the buffer is not what is left of the input"));
    }
    Ok(before - len)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every input in `fuzz/regressions/<target>/` (findings of either engine, kept once
    /// fixed) passes its target.
    #[test]
    fn regression_inputs_pass() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
        let mut checked = 0;
        for target in super::all() {
            let Ok(files) = std::fs::read_dir(dir.join(target.name())) else {
                continue;
            };
            for file in files {
                let path = file.unwrap().path();
                let input = std::fs::read(&path).unwrap();
                if let Err(msg) = target.run(&input) {
                    panic!("{}: {msg}", path.display());
                }
                checked += 1;
            }
        }
        assert!(checked >= 2, "{checked} regression inputs found");
    }
}
