//! [`ClientBuilder`]: where the client finds the cluster, and its timeouts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ringcache_protocol::ring::{RingConfig, DEFAULT_VNODES};

use crate::client::{Client, Settings};
use crate::error::{Error, Result};
use crate::view::View;

/// Configures and builds a [`Client`].
///
/// Give either `seeds` (ringcache nodes: the client downloads the topology from the
/// first that answers and follows membership changes) or `servers` (a fixed list of
/// plain memcached servers, placed on the same ring under their `host:port` names).
///
/// ```no_run
/// # async fn run() -> ringcache_client::Result<()> {
/// use std::time::Duration;
/// let client = ringcache_client::Client::builder()
///     .seeds(["127.0.0.1:11211", "127.0.0.1:11212"])
///     .timeout(Duration::from_millis(500))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    seeds: Vec<String>,
    servers: Vec<String>,
    settings: Settings,
    ring: RingConfig,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            seeds: Vec::new(),
            servers: Vec::new(),
            settings: Settings::default(),
            ring: RingConfig {
                vnodes: DEFAULT_VNODES,
                replicas: 1,
            },
        }
    }
}

impl ClientBuilder {
    /// ringcache nodes to learn the topology from (`host:port`); any one that answers
    /// is enough. The client then talks to every member directly.
    pub fn seeds<S: ToString>(mut self, seeds: impl IntoIterator<Item = S>) -> Self {
        self.seeds = seeds.into_iter().map(|s| s.to_string()).collect();
        self
    }

    /// A fixed list of memcached servers (`host:port`), for fleets without a
    /// `topology` command. Keys are placed on the same ring as ringcache's, the node
    /// names being the strings given here.
    pub fn servers<S: ToString>(mut self, servers: impl IntoIterator<Item = S>) -> Self {
        self.servers = servers.into_iter().map(|s| s.to_string()).collect();
        self
    }

    /// How long one request may wait for its reply (default 1 s). A read tries each
    /// owner in turn, so it waits at most this long per owner.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// How long opening a connection may take (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Pipelined connections per node (default 2).
    pub fn connections_per_node(mut self, n: usize) -> Self {
        self.settings.pool_size = n.max(1);
        self
    }

    /// How often the topology is re-read from the cluster (default 500 ms). A failed
    /// request also triggers a refresh.
    pub fn refresh_interval(mut self, every: Duration) -> Self {
        self.settings.refresh_interval = every;
        self
    }

    /// Failures in a row after which a node is marked down (default 3, at least 1).
    ///
    /// Every request counts, whatever its kind (reads, writes, leases and
    /// write-backs of a read-through, batches, the topology refresh): a refused or
    /// broken connection, or no reply within `timeout` (a node that still accepts
    /// connections but never answers, like a frozen process, fails this way). Any
    /// reply, an error line included, resets the count. A node marked down is
    /// skipped at once: reads go to the key's next owner, writes to the next owner
    /// or fail with [`Error::NoNode`], and a read-through answers from its origin.
    pub fn tko_threshold(mut self, failures: u32) -> Self {
        self.settings.tko_threshold = failures.max(1);
        self
    }

    /// How often a node marked down is probed (default 500 ms): one background
    /// task per such node sends it `version` on a fresh connection (bounded by the
    /// timeouts) and puts it back in service at the first answer.
    pub fn probe_interval(mut self, every: Duration) -> Self {
        self.settings.probe_interval = every;
        self
    }

    /// Owners per key for a fixed server list (default 1): reads fail over along
    /// them. Ignored with `seeds`, where the cluster says.
    pub fn replicas(mut self, replicas: u32) -> Self {
        self.ring.replicas = replicas;
        self
    }

    /// Virtual nodes per server for a fixed server list (default 160). Ignored with
    /// `seeds`.
    pub fn vnodes(mut self, vnodes: u32) -> Self {
        self.ring.vnodes = vnodes;
        self
    }

    /// Resolves the addresses and, with seeds, downloads the topology (asking every
    /// seed at once and taking the first answer).
    ///
    /// Succeeds when no seed answers (the cache is down, or not up yet, while the
    /// application starts): the client then starts with no nodes and keeps asking
    /// the seeds every `refresh_interval`. Meanwhile reads are misses, writes fail
    /// with [`Error::NoNode`], and [`ReadThrough::get_or_load`](crate::ReadThrough::get_or_load)
    /// answers from the origin; the client uses the cluster from the first refresh
    /// after a seed answers ([`Client::nodes`] is empty until then).
    ///
    /// Fails with [`Error::Config`] when neither or both of seeds and servers are
    /// given or an address does not resolve, and with [`Error::Topology`] when a
    /// seed answers but not with a usable topology (it is not a ringcache node, or
    /// places keys with another hash).
    pub async fn build(self) -> Result<Client> {
        let s = self.settings.clone();
        match (self.seeds.is_empty(), self.servers.is_empty()) {
            (true, true) => Err(Error::Config("give seeds or servers".into())),
            (false, false) => Err(Error::Config("give seeds or servers, not both".into())),
            (true, false) => {
                let mut members = Vec::with_capacity(self.servers.len());
                for name in &self.servers {
                    members.push((Arc::from(name.as_str()), resolve(name).await?));
                }
                let view = View::build(members, self.ring, 0, None, s.pool_size, s.connect_timeout)
                    .map_err(|e| Error::Config(e.to_string()))?;
                Ok(Client::start(s, view, Vec::new()))
            }
            (false, true) => {
                let mut seeds = Vec::with_capacity(self.seeds.len());
                for name in &self.seeds {
                    seeds.push(resolve(name).await?);
                }
                let view = match crate::client::first_topology(&s, &seeds).await {
                    Ok(view) => view,
                    Err(e) if e.is_unavailable() => {
                        tracing::warn!(error = %e, "no seed gave a topology; starting without the cache, looking for it in the background");
                        View::empty()?
                    }
                    Err(e) => return Err(e),
                };
                Ok(Client::start(s, view, seeds))
            }
        }
    }
}

async fn resolve(name: &str) -> Result<SocketAddr> {
    let mut addrs = tokio::net::lookup_host(name)
        .await
        .map_err(|e| Error::Config(format!("{name}: {e}")))?;
    addrs.next().ok_or_else(|| Error::Config(format!("{name}: no address")))
}
