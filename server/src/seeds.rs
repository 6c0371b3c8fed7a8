//! Seeds: the gossip addresses a node joins its cluster through (`--seed`).
//!
//! A seed is an address (`10.0.0.4:12211`, `[fd00::4]:12211`) or a DNS name with a
//! port (`ringcache-0.ringcache.cache.svc.cluster.local:12211`, `localhost:12211`).
//! Every address a name resolves to (its A and AAAA records, through the system
//! resolver: tokio's `lookup_host`, which calls `getaddrinfo`, so `/etc/hosts` and the
//! search domains of `/etc/resolv.conf` apply as for any program) is a seed. A
//! Kubernetes headless Service lists every pod of a StatefulSet under one name, so
//! the Service's name is the only seed a pod needs.
//!
//! Names are looked up when the node starts and again, every [`FIRST_RETRY`] backing
//! off to [`MAX_RETRY`], until the node has met the cluster: while it has no peer,
//! while a name has never resolved, or while some seed address is neither this node
//! nor a member it knows. Then a name is looked up every [`SETTLED_REFRESH`] only.
//! Looking again matters because DNS lags behind the pods: a pod that starts with its
//! peers finds a name that lists only some of them (or none, or only itself), and
//! two groups that each formed a cluster must still find each other once the name
//! lists them all. After every round of lookups the membership task announces this
//! node to every seed address that is not a member yet, so two clusters merge as soon
//! as one node of either finds a node of the other in DNS.
//!
//! [`Seeds`] is the state: the latest addresses of each name and when to look again.
//! It does no I/O: the membership task starts the lookups (through a [`Resolver`],
//! the system's or a test's) and feeds the answers back, so the schedule is tested
//! without DNS.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// How long after a round of lookups that left the node short of its seeds the next
/// round starts; the wait doubles after each such round up to [`MAX_RETRY`], and
/// starts again from here whenever a name's addresses change.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The longest wait between rounds while the node has not met every seed address.
pub const MAX_RETRY: Duration = Duration::from_secs(5);

/// How often names are looked up once the node has met every seed address: DNS may
/// list nodes this one has not heard of (two clusters that each formed while the name
/// listed only their half), and this bounds how long they stay apart.
pub const SETTLED_REFRESH: Duration = Duration::from_secs(30);

/// Consecutive failed lookups of one name between two warnings (the others are
/// logged at debug level): one every minute or so at [`MAX_RETRY`].
const WARN_EVERY: u32 = 12;

/// One `--seed`: a gossip address, or a DNS name and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seed {
    /// A gossip address, used as given.
    Addr(SocketAddr),
    /// A DNS name, looked up again while the node runs, and the gossip port.
    Name {
        /// The name to look up.
        host: String,
        /// The gossip port of every address it resolves to.
        port: u16,
    },
}

impl Seed {
    /// Whether this seed may be a node other than this one (whose gossip addresses
    /// are `me`): a name may list other nodes even if it lists only this one now.
    pub fn may_be_another_node(&self, me: &[SocketAddr]) -> bool {
        match self {
            Seed::Addr(a) => !me.contains(a),
            Seed::Name { .. } => true,
        }
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seed::Addr(a) => write!(f, "{a}"),
            Seed::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl FromStr for Seed {
    type Err = String;

    /// Parses `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`; the port is required (it is the
    /// seed's gossip port, which differs from its memcached port).
    fn from_str(s: &str) -> Result<Seed, String> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return match addr.port() {
                0 => Err(format!("`{s}`: port 0 is not a gossip port")),
                _ => Ok(Seed::Addr(addr)),
            };
        }
        if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            let example = match ip {
                IpAddr::V4(_) => format!("{ip}:12211"),
                IpAddr::V6(_) => format!("[{ip}]:12211"),
            };
            return Err(format!(
                "`{s}` has no port: give the seed's gossip port, e.g. {example}"
            ));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(format!(
                "`{s}` has no port: give HOST:PORT with the seed's gossip port, e.g. {s}:12211"
            ));
        };
        if host.contains("://") {
            return Err(format!("`{s}` is a URL: give HOST:PORT"));
        }
        if host.contains(':') || host.contains('[') || host.contains(']') {
            return Err(format!(
                "`{s}` is not an address: write an IPv6 address in brackets, [ADDRESS]:PORT"
            ));
        }
        let port = match port.parse::<u16>() {
            Ok(p) if port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(format!("`{s}`: `{port}` is not a port number")),
        };
        if port == 0 {
            return Err(format!("`{s}`: port 0 is not a gossip port"));
        }
        check_host_name(host).map_err(|why| format!("`{s}`: {why}"))?;
        Ok(Seed::Name {
            host: host.to_string(),
            port,
        })
    }
}

/// Checks that `host` is a DNS name: dot-separated labels of 1 to 63 letters, digits,
/// `-` (not first or last) or `_`, at most 253 characters, an optional final dot, and
/// not all digits in the last label (so `10.0.0.256` is refused, not looked up).
fn check_host_name(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("no host name before the port".into());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return Err(format!("`{host}` is not a host name (1 to 253 characters)"));
    }
    for label in name.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("`{host}` is neither an IP address nor a host name"));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("`{host}` is neither an IP address nor a host name"));
    }
    Ok(())
}

/// A pending lookup: every address of one name.
pub type Lookup = BoxFuture<'static, io::Result<Vec<SocketAddr>>>;

/// Looks up a name and port (the system resolver, or a test's).
pub type Resolver = Arc<dyn Fn(&str, u16) -> Lookup + Send + Sync>;

/// The system resolver: tokio's `lookup_host` (`getaddrinfo` on a blocking thread),
/// every A and AAAA record of the name.
pub fn system_resolver() -> Resolver {
    Arc::new(|host, port| {
        let host = host.to_string();
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) })
    })
}

/// One seed name and what it last resolved to.
struct Name {
    host: String,
    port: u16,
    /// The addresses of the last lookup that gave any (a failed lookup keeps them: a
    /// DNS hiccup must not make the node forget its seeds).
    addrs: Vec<SocketAddr>,
    /// Whether any lookup has given an address yet.
    resolved: bool,
    /// Failed lookups since the last one that gave an address.
    failures: u32,
}

/// The seeds of one node and when to look their names up again.
pub struct Seeds {
    fixed: Vec<SocketAddr>,
    names: Vec<Name>,
    /// Whether the gossip socket can send to IPv6 addresses (it is bound to one). An
    /// IPv4 socket cannot, so a name's IPv6 addresses (`localhost` is often both
    /// 127.0.0.1 and ::1) are left out rather than counted as seeds never met.
    ipv6: bool,
    /// The wait after the next round that leaves the node short of its seeds.
    backoff: Duration,
    next: Instant,
}

impl Seeds {
    /// The seeds of a node whose gossip socket is bound to `local`; the first round
    /// of lookups is due at `now`.
    pub fn new(seeds: &[Seed], local: SocketAddr, now: Instant) -> Seeds {
        let mut fixed = Vec::new();
        let mut names = Vec::new();
        for seed in seeds {
            match seed {
                Seed::Addr(a) if !fixed.contains(a) => fixed.push(*a),
                Seed::Addr(_) => {}
                Seed::Name { host, port } => names.push(Name {
                    host: host.clone(),
                    port: *port,
                    addrs: Vec::new(),
                    resolved: false,
                    failures: 0,
                }),
            }
        }
        Seeds {
            fixed,
            names,
            ipv6: local.is_ipv6(),
            backoff: FIRST_RETRY,
            next: now,
        }
    }

    /// Whether the node was given no seeds at all (it founds its own cluster).
    pub fn is_empty(&self) -> bool {
        self.fixed.is_empty() && self.names.is_empty()
    }

    /// Every seed address: the fixed ones and the latest of each name, without
    /// repeats.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        let mut out = self.fixed.clone();
        for a in self.names.iter().flat_map(|n| &n.addrs) {
            if !out.contains(a) {
                out.push(*a);
            }
        }
        out
    }

    /// The names to look up, by index (for [`Seeds::resolved`]).
    pub fn names(&self) -> impl Iterator<Item = (usize, &str, u16)> {
        self.names.iter().enumerate().map(|(i, n)| (i, n.host.as_str(), n.port))
    }

    /// Whether every name has resolved at least once.
    pub fn all_resolved(&self) -> bool {
        self.names.iter().all(|n| n.resolved)
    }

    /// When the next round of lookups is due.
    pub fn next_round(&self) -> Instant {
        self.next
    }

    /// Records the answer to the lookup of name `i`; returns whether its addresses
    /// changed.
    pub fn resolved(&mut self, i: usize, answer: io::Result<Vec<SocketAddr>>) -> bool {
        let ipv6 = self.ipv6;
        let Some(name) = self.names.get_mut(i) else {
            return false;
        };
        let seed = format!("{}:{}", name.host, name.port);
        let answer = answer.and_then(|all| {
            let mut usable: Vec<SocketAddr> = Vec::new();
            for a in all.into_iter().filter(|a| ipv6 || a.is_ipv4()) {
                if !usable.contains(&a) {
                    usable.push(a);
                }
            }
            usable.sort();
            match usable.is_empty() {
                true => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no address this node can reach (an IPv4 gossip socket cannot reach IPv6 seeds)",
                )),
                false => Ok(usable),
            }
        });
        match answer {
            Ok(addrs) => {
                let changed = addrs != name.addrs;
                if changed || name.failures > 0 {
                    info!(%seed, ?addrs, "seed name resolved");
                }
                name.addrs = addrs;
                name.resolved = true;
                name.failures = 0;
                changed
            }
            Err(e) => {
                name.failures += 1;
                let failures = name.failures;
                if failures == 1 || failures % WARN_EVERY == 0 {
                    warn!(%seed, error = %e, failures, "seed name does not resolve; retrying");
                } else {
                    debug!(%seed, error = %e, failures, "seed name does not resolve; retrying");
                }
                false
            }
        }
    }

    /// After a round (all of its lookups answered): schedules the next one. `settled`:
    /// the node has peers and has met every seed address, so looking often is no
    /// longer needed; `changed`: some name's addresses changed in this round.
    pub fn round_done(&mut self, settled: bool, changed: bool, now: Instant) {
        if settled {
            self.backoff = FIRST_RETRY;
            self.next = now + SETTLED_REFRESH;
            return;
        }
        if changed {
            self.backoff = FIRST_RETRY;
        }
        self.next = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_RETRY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(s: &str) -> Result<Seed, String> {
        s.parse()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_names_with_a_port_are_seeds() {
        assert_eq!(seed("10.0.0.4:12211"), Ok(Seed::Addr(addr("10.0.0.4:12211"))));
        assert_eq!(seed("[fd00::4]:12211"), Ok(Seed::Addr(addr("[fd00::4]:12211"))));
        for (s, host, port) in [
            ("localhost:12211", "localhost", 12211),
            (
                "ringcache-0.ringcache.cache.svc.cluster.local:1",
                "ringcache-0.ringcache.cache.svc.cluster.local",
                1,
            ),
            (
                "ringcache.cache.svc.cluster.local.:65535",
                "ringcache.cache.svc.cluster.local.",
                65535,
            ),
            ("_gossip.x-1.example:7", "_gossip.x-1.example", 7),
            ("10.0.0.host:7", "10.0.0.host", 7),
        ] {
            assert_eq!(
                seed(s),
                Ok(Seed::Name {
                    host: host.into(),
                    port
                }),
                "{s}"
            );
            assert_eq!(seed(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn a_seed_without_a_port_or_with_a_bad_host_is_refused_with_the_reason() {
        for (s, why) in [
            ("cache-a", "has no port"),
            (
                "10.0.0.4",
                "has no port: give the seed's gossip port, e.g. 10.0.0.4:12211",
            ),
            ("fd00::4", "[fd00::4]:12211"),
            ("[fd00::4]", "[fd00::4]:12211"),
            ("fd00::4::12211", "brackets"),
            ("cache-a:", "is not a port number"),
            ("cache-a:x", "is not a port number"),
            ("cache-a:+5", "is not a port number"),
            ("cache-a:70000", "is not a port number"),
            ("cache-a:0", "port 0"),
            ("10.0.0.4:0", "port 0"),
            (":12211", "no host name"),
            ("10.0.0.256:12211", "neither an IP address nor a host name"),
            ("-a.example:1", "neither"),
            ("a..example:1", "neither"),
            ("a b:1", "neither"),
            ("a_b.example.:1:2", "brackets"),
            ("http://a:1", "is a URL"),
        ] {
            match seed(s) {
                Err(e) => assert!(e.contains(why), "{s}: {e}"),
                Ok(got) => panic!("{s} parsed as {got:?}"),
            }
        }
        let long = format!("{}.example:1", "a".repeat(64));
        assert!(seed(&long).is_err());
        let many = format!("{}:1", ["abcdefghi"; 26].join("."));
        assert!(many.len() > 253 && seed(&many).is_err());
    }

    #[test]
    fn only_a_name_or_another_address_may_be_another_node() {
        let me = [addr("127.0.0.1:12211")];
        assert!(!seed("127.0.0.1:12211").unwrap().may_be_another_node(&me));
        assert!(seed("127.0.0.1:12212").unwrap().may_be_another_node(&me));
        assert!(seed("localhost:12211").unwrap().may_be_another_node(&me));
    }

    #[test]
    fn an_ipv4_node_leaves_out_ipv6_addresses_and_keeps_the_last_answer_on_failure() {
        let now = Instant::now();
        let seeds = [
            seed("127.0.0.1:5").unwrap(),
            seed("localhost:7").unwrap(),
            seed("127.0.0.1:5").unwrap(),
        ];
        let mut s = Seeds::new(&seeds, addr("127.0.0.1:1"), now);
        assert_eq!(s.addrs(), [addr("127.0.0.1:5")]);
        assert!(!s.all_resolved());
        assert_eq!(s.names().collect::<Vec<_>>(), [(0, "localhost", 7)]);
        assert!(s.resolved(0, Ok(vec![addr("[::1]:7"), addr("127.0.0.1:7"), addr("127.0.0.1:7")])));
        assert!(s.all_resolved());
        assert_eq!(s.addrs(), [addr("127.0.0.1:5"), addr("127.0.0.1:7")]);
        assert!(!s.resolved(0, Err(io::Error::other("timeout"))));
        assert_eq!(s.addrs(), [addr("127.0.0.1:5"), addr("127.0.0.1:7")]);
        // Only IPv6 addresses: nothing this node can reach, a failure.
        assert!(!s.resolved(0, Ok(vec![addr("[::1]:7")])));
        assert_eq!(s.addrs(), [addr("127.0.0.1:5"), addr("127.0.0.1:7")]);
        assert!(s.resolved(0, Ok(vec![addr("127.0.0.2:7")])));
        assert_eq!(s.addrs(), [addr("127.0.0.1:5"), addr("127.0.0.2:7")]);

        let mut v6 = Seeds::new(&seeds, addr("[::1]:1"), now);
        assert!(v6.resolved(0, Ok(vec![addr("[::1]:7"), addr("127.0.0.1:7")])));
        assert_eq!(v6.addrs().len(), 3);
    }

    #[test]
    fn rounds_back_off_until_settled_and_start_over_when_a_name_changes() {
        let t0 = Instant::now();
        let mut s = Seeds::new(&[seed("localhost:7").unwrap()], addr("127.0.0.1:1"), t0);
        assert_eq!(s.next_round(), t0);
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..5 {
            s.round_done(false, false, now);
            waits.push(s.next_round() - now);
            now = s.next_round();
        }
        let secs = |n| Duration::from_secs(n);
        assert_eq!(waits, [secs(1), secs(2), secs(4), secs(5), secs(5)]);
        s.round_done(false, true, now);
        assert_eq!(s.next_round() - now, FIRST_RETRY);
        s.round_done(true, false, now);
        assert_eq!(s.next_round() - now, SETTLED_REFRESH);
        s.round_done(false, false, now);
        assert_eq!(s.next_round() - now, FIRST_RETRY);
    }
}
