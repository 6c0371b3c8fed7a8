//! Command-line flags, named like memcached's where the meaning matches.

use std::net::{IpAddr, SocketAddr};

use clap::Parser;

use crate::seeds::Seed;

/// ringcache: a memcached-compatible cache node.
///
/// Speaks the memcached text protocol (classic and meta commands) on TCP; connect
/// with any memcached client, or `telnet 127.0.0.1 11211`.
#[derive(Debug, Clone, Parser)]
#[command(name = "ringcache", version, about, long_about = None, args_override_self = true)]
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

    /// Admin HTTP listener (IP:port), off unless given: GET /metrics, /healthz, /readyz.
    ///
    /// /metrics: Prometheus text format, memcached_exporter's names plus ringcache_*.
    /// /healthz: 200 while the process answers. /readyz: 200 once the node has
    /// joined, every peer has its ring, the hand-off is done and it is not draining
    /// (safe to restart the next node); 503 and the reason otherwise.
    #[arg(long = "admin-addr")]
    pub admin_addr: Option<SocketAddr>,

    /// Verbose logging (-v, -vv, -vvv); RUST_LOG overrides.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// This node's name: its identity on the ring. Must be unique in the cluster and
    /// kept across restarts. Default: the host name (a Kubernetes StatefulSet pod's
    /// name, stable across restarts), or node-<port> if the host has none (empty,
    /// `(none)` or `localhost`). Several nodes on one host need a name each.
    #[arg(long = "node-name", help_heading = "Cluster")]
    pub node_name: Option<String>,

    /// UDP address for gossip (SWIM). Default: the listen address, port + 1000.
    #[arg(long = "gossip-addr", help_heading = "Cluster")]
    pub gossip_addr: Option<SocketAddr>,

    /// Gossip address of a node to join through, as IP:PORT or HOST:PORT
    /// (repeatable). Every address a host name resolves to (A and AAAA records, e.g. a
    /// Kubernetes headless Service listing every pod) is a seed; names are looked up
    /// again until this node has met every address they list. This node's own address
    /// among the seeds is ignored.
    #[arg(long = "seed", value_name = "HOST:PORT", value_parser = clap::value_parser!(Seed), help_heading = "Cluster")]
    pub seeds: Vec<Seed>,

    /// The address peers and clients use to reach this node's memcached port, when it
    /// differs from --listen:--port (e.g. listening on 0.0.0.0).
    #[arg(long = "advertise-addr", help_heading = "Cluster")]
    pub advertise_addr: Option<SocketAddr>,

    /// How many distinct nodes hold each key (1 = no replication).
    #[arg(long = "replicas", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8), help_heading = "Cluster")]
    pub replicas: u32,

    /// Virtual nodes per node on the hash ring.
    #[arg(long = "vnodes", default_value_t = 160, value_parser = clap::value_parser!(u32).range(1..=4096), help_heading = "Cluster")]
    pub vnodes: u32,

    /// Gossip: how often each node probes a member (round robin), in milliseconds.
    /// A node that finds itself slow (late timers, probes it gave up on, suspicions of
    /// itself it had to refute) stretches this, the ack timeout and the suspicion
    /// timeouts by up to 9 times until it recovers (Lifeguard's local health).
    #[arg(long = "gossip-probe-ms", default_value_t = 200, help_heading = "Cluster")]
    pub gossip_probe_ms: u64,

    /// Gossip: how long a probe waits for its ack before asking other members to try,
    /// in milliseconds (the probe fails if nobody got an ack by the next probe).
    #[arg(long = "gossip-rtt-ms", default_value_t = 100, help_heading = "Cluster")]
    pub gossip_rtt_ms: u64,

    /// Gossip: how long a suspected node has to refute before it is declared down, at
    /// least, in milliseconds: the time once other members confirmed the suspicion.
    /// A crashed node is off every ring about 2 probe periods plus this after it died;
    /// a process that stands still (paused, frozen) longer than a probe period plus
    /// this may be declared down, and drops its data when it resumes.
    #[arg(long = "gossip-suspect-ms", default_value_t = 400, help_heading = "Cluster")]
    pub gossip_suspect_ms: u64,

    /// Gossip: how long a suspicion that no other member confirmed lasts, in
    /// milliseconds; it shrinks toward --gossip-suspect-ms as confirmations arrive
    /// (Lifeguard). At least --gossip-suspect-ms.
    #[arg(long = "gossip-suspect-max-ms", default_value_t = 1600, help_heading = "Cluster")]
    pub gossip_suspect_max_ms: u64,

    /// Shared cluster secret: authenticates and encrypts every gossip packet and
    /// authenticates peer connections. Every node must have the same one. Needed
    /// whenever gossip or the client port is reachable beyond loopback.
    #[arg(
        long = "gossip-key",
        env = "RINGCACHE_GOSSIP_KEY",
        hide_env_values = true,
        help_heading = "Cluster"
    )]
    pub gossip_key: Option<String>,

    /// How long a forwarded request waits for its owner, in milliseconds. A read that
    /// times out is a miss; a write gets SERVER_ERROR.
    #[arg(long = "peer-timeout-ms", default_value_t = 1000, help_heading = "Cluster")]
    pub peer_timeout_ms: u64,

    /// A node started with --seed refuses key commands (SERVER_ERROR joining the
    /// cluster) until it has met another member, and at most this long, in
    /// milliseconds; after that it serves as a cluster of one until peers appear.
    #[arg(long = "join-timeout-ms", default_value_t = 10_000, help_heading = "Cluster")]
    pub join_timeout_ms: u64,

    /// How fast a node hands items to their new owners after a ring change, in KiB per
    /// second (0: no limit). Each item counts its key and value plus 1 KiB for the work
    /// of the request itself, so the default (32 MiB/s) is at most 32,768 small items a
    /// second: a share of a 2-core node's capacity that leaves client requests served.
    #[arg(long = "handoff-rate-kb", default_value_t = 32 * 1024, help_heading = "Cluster")]
    pub handoff_rate_kb: u64,

    /// On SIGTERM or SIGINT the node stops accepting connections and reports not ready
    /// (/readyz), leaves the cluster, hands its items to their owners, lets open
    /// connections finish what they are doing, and exits 0: all within this many
    /// milliseconds, after which it exits anyway.
    #[arg(long = "drain-timeout-ms", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,
}

impl Config {
    /// The address this node's memcached port is reached at.
    pub fn client_addr(&self) -> Result<SocketAddr, String> {
        if let Some(a) = self.advertise_addr {
            return Ok(a);
        }
        let ip: IpAddr = self
            .listen
            .parse()
            .map_err(|_| format!("--listen {} is not an IP address; give --advertise-addr", self.listen))?;
        Ok(SocketAddr::new(ip, self.port))
    }

    /// The gossip address: --gossip-addr, or the listen address with port + 1000.
    pub fn gossip_addr(&self) -> Result<SocketAddr, String> {
        if let Some(a) = self.gossip_addr {
            return Ok(a);
        }
        let client = self.client_addr()?;
        let port = self
            .port
            .checked_add(1000)
            .ok_or("--port too large to derive --gossip-addr")?;
        let ip = self.listen.parse().unwrap_or(client.ip());
        Ok(SocketAddr::new(ip, port))
    }

    /// The node name: --node-name, else the host name, else node-<port>.
    pub fn node_name(&self) -> String {
        self.node_name
            .clone()
            .or_else(host_name)
            .unwrap_or_else(|| format!("node-{}", self.port))
    }
}

/// This host's name (`gethostname`), unless it has none worth naming a node by: empty,
/// the kernel's `(none)`, or `localhost` (which every unnamed host shares).
fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    if !crate::sys::host_name(&mut buf) {
        return None;
    }
    usable_host_name(&buf)
}

/// The name in `gethostname`'s buffer (up to the first NUL), if it names a node.
fn usable_host_name(buf: &[u8]) -> Option<String> {
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..len]).ok()?.trim();
    match name {
        "" | "(none)" | "localhost" | "localhost.localdomain" => None,
        _ => Some(name.to_string()),
    }
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
    // memcached's ceiling for `-I`, which is also the largest value any reader of
    // replies accepts.
    if !(1024..=ringcache_protocol::limits::MAX_REPLY_VALUE).contains(&size) {
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

    #[test]
    fn repeated_seeds_add_up_and_other_flags_take_the_last_value() {
        let c = Config::parse_from([
            "ringcache",
            "--seed",
            "127.0.0.1:1",
            "--seed",
            "127.0.0.1:2",
            "--gossip-key",
            "a",
            "--gossip-key",
            "b",
            "-p",
            "1",
            "-p",
            "2",
        ]);
        assert_eq!(
            c.seeds,
            [
                Seed::Addr("127.0.0.1:1".parse().unwrap()),
                Seed::Addr("127.0.0.1:2".parse().unwrap())
            ]
        );
        assert_eq!(c.gossip_key.as_deref(), Some("b"));
        assert_eq!(c.port, 2);
    }

    #[test]
    fn seeds_are_addresses_or_host_names_with_a_port() {
        let c = Config::parse_from([
            "ringcache",
            "--seed",
            "10.0.0.4:12211",
            "--seed",
            "ringcache.cache.svc.cluster.local:12211",
            "--seed",
            "[::1]:12211",
        ]);
        assert_eq!(
            c.seeds,
            [
                Seed::Addr("10.0.0.4:12211".parse().unwrap()),
                Seed::Name {
                    host: "ringcache.cache.svc.cluster.local".into(),
                    port: 12211
                },
                Seed::Addr("[::1]:12211".parse().unwrap()),
            ]
        );
        for (bad, why) in [
            ("ringcache-0.ringcache", "has no port"),
            ("10.0.0.4", "has no port"),
            ("ringcache:gossip", "is not a port number"),
            ("10.0.0.300:12211", "neither an IP address nor a host name"),
        ] {
            let e = Config::try_parse_from(["ringcache", "--seed", bad]).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("--seed") && text.contains(why), "{bad}: {text}");
        }
    }

    #[test]
    fn the_node_name_defaults_to_the_host_name_or_the_port() {
        let named = Config::parse_from(["ringcache", "--node-name", "cache-a"]);
        assert_eq!(named.node_name(), "cache-a");
        let unnamed = Config::parse_from(["ringcache", "-p", "11311"]);
        let want = host_name().unwrap_or_else(|| "node-11311".into());
        assert_eq!(unnamed.node_name(), want);

        assert_eq!(usable_host_name(b"ringcache-2\0\0\0").as_deref(), Some("ringcache-2"));
        assert_eq!(usable_host_name(b"ringcache-2").as_deref(), Some("ringcache-2"));
        for none in [&b"\0junk"[..], b"(none)\0", b"localhost\0", b"\xff\xfe\0"] {
            assert_eq!(usable_host_name(none), None, "{none:?}");
        }
    }
}
