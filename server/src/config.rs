//! Command-line flags, named like memcached's where the meaning matches.

use clap::Parser;

/// ringcache: a memcached-compatible cache node.
///
/// Speaks the memcached text protocol (classic and meta commands) on TCP; connect
/// with any memcached client, or `telnet 127.0.0.1 11211`.
#[derive(Debug, Clone, Parser)]
#[command(name = "ringcache", version, about, long_about = None)]
pub struct Config {
    /// TCP port to listen on.
    #[arg(short = 'p', long = "port", default_value_t = 11211)]
    pub port: u16,

    /// Interface to listen on. The default keeps the cache off the network; use
    /// 0.0.0.0 only on a trusted network.
    #[arg(short = 'l', long = "listen", default_value = "127.0.0.1")]
    pub listen: String,

    /// Item memory in megabytes: a hard budget on keys, values and per-item
    /// overhead; storing past it evicts.
    #[arg(short = 'm', long = "memory-limit", default_value_t = 64)]
    pub memory_limit: u64,

    /// Max simultaneous connections; further ones get
    /// `ERROR Too many open connections` and are closed.
    #[arg(short = 'c', long = "max-conns", default_value_t = 1024)]
    pub max_conns: usize,

    /// Max item size, in bytes or with a k/m suffix (default 1m).
    #[arg(short = 'I', long = "max-item-size", default_value = "1m", value_parser = parse_size)]
    pub max_item_size: usize,

    /// Number of worker threads.
    #[arg(short = 't', long = "threads", default_value_t = 4)]
    pub threads: usize,

    /// Verbose logging (-v, -vv, -vvv); RUST_LOG overrides.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Parses `1048576`, `512k`, `1m` (memcached's `-I` syntax).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1024),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    let n: usize = num.parse().map_err(|_| format!("invalid size: {s}"))?;
    let size = n.checked_mul(mult).ok_or_else(|| format!("size too large: {s}"))?;
    if !(1024..=1024 * 1024 * 1024).contains(&size) {
        return Err(format!("item size must be between 1k and 1024m, got {s}"));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert!(parse_size("12").is_err());
        assert!(parse_size("x").is_err());
    }
}
