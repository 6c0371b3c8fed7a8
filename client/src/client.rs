//! [`Client`]: the cache API, routing to owners, failover, and the background tasks
//! that keep the view of the cluster current.
//!
//! # Routing
//! - A read goes to the key's owners in ring order, skipping nodes marked down; the
//!   first answer wins. When no owner answers, the read is a miss (counted in
//!   [`ClientStats::unreachable`]), so an application that falls back to its database
//!   on a miss keeps working while the cache is away.
//! - A write goes to the first owner not marked down (the primary while it is up)
//!   and is sent once: a write whose reply was lost may have been applied, and
//!   resending an `incr` would apply it twice. Only a failure to connect (nothing
//!   sent) moves it to the next owner, which forwards it to the primary of its own
//!   ring. A write nobody takes fails.
//! - `SERVER_ERROR ring changing` (the node and its peers disagree on the ring for a
//!   moment, during a membership change; nothing was acknowledged) is resent after
//!   a short pause ([`RING_CHANGING_BACKOFF`]), placed with the client's ring of
//!   then: reads (a miss if the ring is still changing after the last pause) and
//!   writes that can be applied twice ([`Resend`]).
//! - Every request to a node, whatever its kind, keeps the node's health (see
//!   `view`): a reply is success; a refused or broken connection or a timeout is a
//!   failure, and `tko_threshold` failures in a row mark the node down.
//!
//! # Without the cluster
//! When no seed answers at build time, the client starts with an empty view (every
//! read a miss, every write [`Error::NoNode`]) and the refresh keeps asking the
//! seeds; the first topology it gets is installed like any other.
//! - `get_many` splits its keys by owner and asks the owners concurrently, one
//!   pipelined batch each; the keys of an owner that fails move to their next owner.
//!
//! # Background
//! With seeds, one task re-reads `topology` every `refresh_interval` (and at once
//! after a failure) from a live member or a seed, and installs a new view when the
//! version changes. One task per node marked down probes it. Both hold only a weak
//! reference: dropping the last [`Client`] clone stops them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock, Weak};
use std::task::Poll;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use ringcache_protocol::cluster::Topology;
use ringcache_protocol::text::frame::Expect;
use ringcache_protocol::text::{ArithOp, Request};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::Instrument;

use crate::builder::ClientBuilder;
use crate::command::{self, check_key, exptime, Item, Lookup, MetaWrite, StoreKind, StoreOutcome};
use crate::conn::NodeConn;
use crate::error::{Error, Result};
use crate::metrics::ClientMetrics;
use crate::view::{Node, View};

/// Timeouts and intervals, fixed at build time.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub pool_size: usize,
    pub refresh_interval: Duration,
    pub tko_threshold: u32,
    pub probe_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            pool_size: 2,
            refresh_interval: Duration::from_millis(500),
            tko_threshold: 3,
            probe_interval: Duration::from_millis(500),
        }
    }
}

/// The pauses before each resend of a request a node answered with `SERVER_ERROR
/// ring changing` (its ring and its peers' disagree for a moment, during a
/// membership change; nothing was acknowledged): four resends within about 0.2 s,
/// after which the reply stands (a write fails with it, a read is a miss).
pub(crate) const RING_CHANGING_BACKOFF: [Duration; 4] = [
    Duration::from_millis(5),
    Duration::from_millis(20),
    Duration::from_millis(50),
    Duration::from_millis(100),
];

/// Whether a write may be sent again after `SERVER_ERROR ring changing`.
///
/// The reply does not say whether the write was applied somewhere before it was
/// refused, so only writes whose second application leaves the same item are
/// resent (`set`, `replace`, `delete`, `touch`, meta writes with a CAS, leases);
/// `add`, `cas`, `append`, `prepend`, `incr` and `decr` get the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resend {
    /// Resend after `SERVER_ERROR ring changing`.
    RingChanging,
    /// Sent once; the caller gets the reply.
    Never,
}

/// How one request to one node went.
enum Attempt {
    /// Nothing was sent (no connection, or no time left): another owner may take it.
    NotSent(Error),
    /// Sent: the reply, or why none came (it may have been applied).
    Sent(Result<Bytes>),
}

/// What the client has done since it was built; see [`Client::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Keys read and found.
    pub hits: u64,
    /// Keys read and not found (including unreachable ones).
    pub misses: u64,
    /// Keys read as misses because no owner could be reached.
    pub unreachable: u64,
    /// Requests sent to an owner after the primary (it was down or failed).
    pub failovers: u64,
    /// Times a node was marked down (TKO).
    pub marked_down: u64,
    /// New topology versions installed.
    pub topology_changes: u64,
    /// Calls into an origin (read-through); a batch (`load_many`) is one.
    pub origin_loads: u64,
    /// Read-through calls that shared another caller's load in this process
    /// (single-flight) instead of asking the cache themselves.
    pub coalesced: u64,
    /// Origin loads that failed (nothing cached).
    pub origin_errors: u64,
    /// Read-through calls that waited for another process's load (a lease held
    /// elsewhere).
    pub lease_waits: u64,
    /// Stale values returned while a refresh ran (stale-while-revalidate).
    pub stale_served: u64,
    /// Loaded values written back to the cache.
    pub writebacks: u64,
    /// Write-backs refused because a newer write or a delete came first.
    pub writebacks_refused: u64,
    /// Requests sent again after a node answered `SERVER_ERROR ring changing`.
    pub ring_changing_retries: u64,
}

/// The live counters behind [`ClientStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub unreachable: AtomicU64,
    pub failovers: AtomicU64,
    pub marked_down: AtomicU64,
    pub topology_changes: AtomicU64,
    pub origin_loads: AtomicU64,
    pub coalesced: AtomicU64,
    pub origin_errors: AtomicU64,
    pub lease_waits: AtomicU64,
    pub stale_served: AtomicU64,
    pub writebacks: AtomicU64,
    pub writebacks_refused: AtomicU64,
    pub ring_changing_retries: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ClientStats {
        ClientStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            unreachable: self.unreachable.load(Relaxed),
            failovers: self.failovers.load(Relaxed),
            marked_down: self.marked_down.load(Relaxed),
            topology_changes: self.topology_changes.load(Relaxed),
            origin_loads: self.origin_loads.load(Relaxed),
            coalesced: self.coalesced.load(Relaxed),
            origin_errors: self.origin_errors.load(Relaxed),
            lease_waits: self.lease_waits.load(Relaxed),
            stale_served: self.stale_served.load(Relaxed),
            writebacks: self.writebacks.load(Relaxed),
            writebacks_refused: self.writebacks_refused.load(Relaxed),
            ring_changing_retries: self.ring_changing_retries.load(Relaxed),
        }
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// One cluster member as the client sees it; see [`Client::nodes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's name on the ring.
    pub name: String,
    /// Where the client reaches it.
    pub addr: SocketAddr,
    /// Whether the client has marked it down (TKO) and is probing it.
    pub down: bool,
}

pub(crate) struct Inner {
    pub settings: Settings,
    view: RwLock<Arc<View>>,
    /// Seed addresses, asked when no member answers `topology`. Empty for a fixed
    /// server list (which is never refreshed).
    seeds: Vec<SocketAddr>,
    /// Wakes the refresh task early (after a failure).
    refresh_now: Arc<Notify>,
    /// Which member to ask for the topology next (round-robin).
    refresh_turn: AtomicUsize,
    pub stats: Counters,
}

/// A client for a ringcache cluster (or a fixed list of memcached servers).
///
/// Cheap to clone: clones share connections, the view of the cluster and the
/// background tasks, which stop when the last clone is dropped. Keys are bytes
/// (`&str`, `String`, `&[u8]`, `Vec<u8>`, `Bytes` all work), values are [`Bytes`].
///
/// ```no_run
/// # async fn run() -> ringcache_client::Result<()> {
/// use std::time::Duration;
/// let client = ringcache_client::Client::builder().seeds(["127.0.0.1:11211"]).build().await?;
/// client.set("greeting", "hello", Duration::from_secs(60)).await?;
/// assert_eq!(client.get("greeting").await?.as_deref(), Some(&b"hello"[..]));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let view = self.inner.view();
        f.debug_struct("Client")
            .field("version", &view.version)
            .field("nodes", &view.nodes.iter().map(|n| &*n.name).collect::<Vec<_>>())
            .finish()
    }
}

/// Shows a key in spans and logs (lossy UTF-8).
struct KeyText<'a>(&'a [u8]);

impl std::fmt::Display for KeyText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}

impl Client {
    /// A builder; see [`ClientBuilder`].
    ///
    /// ```
    /// let builder = ringcache_client::Client::builder().servers(["127.0.0.1:11211"]);
    /// # drop(builder);
    /// ```
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Wraps a first view and starts the background refresh (with seeds).
    pub(crate) fn start(settings: Settings, view: View, seeds: Vec<SocketAddr>) -> Client {
        let refresh_now = Arc::new(Notify::new());
        let dynamic = !seeds.is_empty();
        let inner = Arc::new(Inner {
            settings,
            view: RwLock::new(Arc::new(view)),
            seeds,
            refresh_now: refresh_now.clone(),
            refresh_turn: AtomicUsize::new(0),
            stats: Counters::default(),
        });
        if dynamic {
            tokio::spawn(refresh_loop(
                Arc::downgrade(&inner),
                refresh_now,
                inner.settings.refresh_interval,
            ));
        }
        Client { inner }
    }

    /// The value of `key`, `None` on a miss.
    ///
    /// A lease placeholder (another reader is loading the key) and a value marked
    /// stale with [`Client::invalidate`] read as misses. When no owner of the key can
    /// be reached the read is a miss too (see [`ClientStats::unreachable`]).
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// if let Some(v) = client.get("user:42").await? {
    ///     println!("{} bytes", v.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        Ok(self.gets(key).await?.map(|item| item.value))
    }

    /// The value of `key` with its flags and CAS unique (for [`Client::cas`]).
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// use std::time::Duration;
    /// if let Some(item) = client.gets("counter").await? {
    ///     let next = format!("{}!", String::from_utf8_lossy(&item.value));
    ///     client.cas("counter", next, Duration::ZERO, item.cas).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn gets(&self, key: impl AsRef<[u8]>) -> Result<Option<Item>> {
        let key = key.as_ref();
        check_key(key)?;
        let span = tracing::debug_span!("ringcache.get", key = %KeyText(key));
        async {
            let mut wire = BytesMut::new();
            command::meta_get(&mut wire, key, None);
            let item = match self.inner.read(key, wire.freeze(), Expect::Meta).await? {
                Some(reply) => self.inner.plain(key, command::decode_lookup(&reply)?).await,
                None => None,
            };
            self.inner.count_read(item.is_some());
            Ok(item)
        }
        .instrument(span)
        .await
    }

    /// The values of `keys`, in the same order (`None` for a miss).
    ///
    /// Keys are grouped by owner; each owner gets one pipelined batch, all owners at
    /// once. Keys whose owners are all unreachable are misses.
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// let values = client.get_many(&["a", "b", "c"]).await?;
    /// assert_eq!(values.len(), 3);
    /// # Ok(()) }
    /// ```
    pub async fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Bytes>>> {
        self.get_many_until(keys, None).await
    }

    /// [`Client::get_many`], giving up on the cache at `until` (misses then).
    pub(crate) async fn get_many_until<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        until: Option<Instant>,
    ) -> Result<Vec<Option<Bytes>>> {
        for k in keys {
            check_key(k.as_ref())?;
        }
        let span = tracing::debug_span!("ringcache.get_many", keys = keys.len());
        async {
            let lookups = self.inner.lookup_many(keys, until).await?;
            let values = lookups.into_iter().zip(keys).map(|(l, k)| async move {
                let v = match l {
                    Some(l) => self.inner.plain(k.as_ref(), l).await.map(|i| i.value),
                    None => None,
                };
                self.inner.count_read(v.is_some());
                v
            });
            Ok(join_all(values.collect()).await)
        }
        .instrument(span)
        .await
    }

    /// Stores `value` under `key` for `ttl` (`Duration::ZERO`: no expiry).
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// use std::time::Duration;
    /// client.set("session:1", vec![1u8, 2, 3], Duration::from_secs(3600)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set(&self, key: impl AsRef<[u8]>, value: impl Into<Bytes>, ttl: Duration) -> Result<()> {
        match self.store(StoreKind::Set, key, value, ttl, 0).await? {
            StoreOutcome::Stored => Ok(()),
            other => Err(Error::Protocol(format!("set answered {other:?}"))),
        }
    }

    /// Stores `value` only if `key` has no value; true if stored.
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// use std::time::Duration;
    /// let first = client.add("lock:job", "me", Duration::from_secs(30)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn add(&self, key: impl AsRef<[u8]>, value: impl Into<Bytes>, ttl: Duration) -> Result<bool> {
        Ok(self.store(StoreKind::Add, key, value, ttl, 0).await?.is_stored())
    }

    /// Stores `value` only if `key` has a value; true if stored.
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// use std::time::Duration;
    /// let replaced = client.replace("config", "v2", Duration::ZERO).await?;
    /// # Ok(()) }
    /// ```
    pub async fn replace(&self, key: impl AsRef<[u8]>, value: impl Into<Bytes>, ttl: Duration) -> Result<bool> {
        Ok(self.store(StoreKind::Replace, key, value, ttl, 0).await?.is_stored())
    }

    /// Stores `value` only if nobody wrote `key` since [`Client::gets`] returned
    /// `cas`: [`StoreOutcome::Exists`] if someone did, [`StoreOutcome::NotFound`] if the
    /// key is gone.
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// use std::time::Duration;
    /// use ringcache_client::StoreOutcome;
    /// if let Some(item) = client.gets("k").await? {
    ///     let outcome = client.cas("k", "new", Duration::ZERO, item.cas).await?;
    ///     assert!(matches!(outcome, StoreOutcome::Stored | StoreOutcome::Exists | StoreOutcome::NotFound));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn cas(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        ttl: Duration,
        cas: u64,
    ) -> Result<StoreOutcome> {
        self.store(StoreKind::Cas(cas), key, value, ttl, 0).await
    }

    /// Any store command, with client `flags` (returned by [`Client::gets`]).
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// use std::time::Duration;
    /// use ringcache_client::{StoreKind, StoreOutcome};
    /// let outcome = client.store(StoreKind::Set, "k", "v", Duration::from_secs(10), 7).await?;
    /// assert_eq!(outcome, StoreOutcome::Stored);
    /// # Ok(()) }
    /// ```
    pub async fn store(
        &self,
        kind: StoreKind,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        ttl: Duration,
        flags: u32,
    ) -> Result<StoreOutcome> {
        let key = key.as_ref();
        check_key(key)?;
        let value = value.into();
        let span = tracing::debug_span!("ringcache.store", key = %KeyText(key), kind = ?kind, len = value.len());
        async {
            let mut wire = BytesMut::new();
            command::store(&mut wire, kind, Bytes::copy_from_slice(key), value, exptime(ttl), flags);
            let resend = match kind {
                StoreKind::Set | StoreKind::Replace => Resend::RingChanging,
                StoreKind::Add | StoreKind::Append | StoreKind::Prepend | StoreKind::Cas(_) => Resend::Never,
            };
            let reply = self
                .inner
                .write_until(key, wire.freeze(), Expect::Line, resend, None)
                .await?;
            command::decode_store(&reply)
        }
        .instrument(span)
        .await
    }

    /// Deletes `key`; true if it had a value.
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// client.delete("session:1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        check_key(key)?;
        let span = tracing::debug_span!("ringcache.delete", key = %KeyText(key));
        async {
            let wire = encode(&Request::Delete {
                key: Bytes::copy_from_slice(key),
                noreply: false,
            });
            let reply = self.inner.write(key, wire, Expect::Line).await?;
            command::decode_delete(&reply)
        }
        .instrument(span)
        .await
    }

    /// Marks `key`'s value stale instead of deleting it (`md <key> I`): plain reads
    /// miss it from now on, and the next read-through revalidates it, handing the
    /// stale value to callers that allow it meanwhile. True if it had a value.
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// client.invalidate("user:42").await?;
    /// # Ok(()) }
    /// ```
    pub async fn invalidate(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        check_key(key)?;
        let span = tracing::debug_span!("ringcache.invalidate", key = %KeyText(key));
        async {
            let mut wire = BytesMut::new();
            command::meta_delete(&mut wire, key, None, true);
            let reply = self.inner.write(key, wire.freeze(), Expect::Meta).await?;
            Ok(command::decode_meta_write(&reply)? == MetaWrite::Done)
        }
        .instrument(span)
        .await
    }

    /// Adds `delta` to the decimal number stored under `key`; the new value, or
    /// `None` if the key has no value.
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// use std::time::Duration;
    /// client.add("hits", "0", Duration::ZERO).await?;
    /// let n = client.incr("hits", 1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn incr(&self, key: impl AsRef<[u8]>, delta: u64) -> Result<Option<u64>> {
        self.arith(ArithOp::Incr, key.as_ref(), delta).await
    }

    /// Subtracts `delta` (stopping at 0); the new value, or `None` if the key has no
    /// value.
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// let left = client.decr("stock:7", 1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn decr(&self, key: impl AsRef<[u8]>, delta: u64) -> Result<Option<u64>> {
        self.arith(ArithOp::Decr, key.as_ref(), delta).await
    }

    async fn arith(&self, op: ArithOp, key: &[u8], delta: u64) -> Result<Option<u64>> {
        check_key(key)?;
        let span = tracing::debug_span!("ringcache.arith", key = %KeyText(key), op = ?op);
        async {
            let wire = encode(&Request::Arith {
                op,
                key: Bytes::copy_from_slice(key),
                delta,
                noreply: false,
            });
            let reply = self
                .inner
                .write_until(key, wire, Expect::Line, Resend::Never, None)
                .await?;
            command::decode_arith(&reply)
        }
        .instrument(span)
        .await
    }

    /// Sets `key`'s TTL without reading it; true if it has a value.
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// use std::time::Duration;
    /// client.touch("session:1", Duration::from_secs(3600)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn touch(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<bool> {
        let key = key.as_ref();
        check_key(key)?;
        let span = tracing::debug_span!("ringcache.touch", key = %KeyText(key));
        async {
            let wire = encode(&Request::Touch {
                key: Bytes::copy_from_slice(key),
                exptime: exptime(ttl),
                noreply: false,
            });
            let reply = self.inner.write(key, wire, Expect::Line).await?;
            command::decode_touch(&reply)
        }
        .instrument(span)
        .await
    }

    /// Reads `key` and sets its TTL in one request (`mg <key> v f c T<ttl>`).
    ///
    /// It changes the item, so it goes to the primary like a write; when no owner can
    /// be reached it is a miss, like a read.
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// use std::time::Duration;
    /// let v = client.get_and_touch("session:1", Duration::from_secs(3600)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_and_touch(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        check_key(key)?;
        let span = tracing::debug_span!("ringcache.get_and_touch", key = %KeyText(key));
        async {
            let mut wire = BytesMut::new();
            command::meta_get(&mut wire, key, Some((b'T', exptime(ttl))));
            let value = match self.inner.write(key, wire.freeze(), Expect::Meta).await {
                Ok(reply) => self
                    .inner
                    .plain(key, command::decode_lookup(&reply)?)
                    .await
                    .map(|i| i.value),
                Err(e) if e.is_unavailable() => {
                    Counters::add(&self.inner.stats.unreachable);
                    None
                }
                Err(e) => return Err(e),
            };
            self.inner.count_read(value.is_some());
            Ok(value)
        }
        .instrument(span)
        .await
    }

    /// The owners of `key`, primary first, as the client places it now.
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) {
    /// let primary = &client.owners("user:42")[0];
    /// println!("user:42 lives on {} ({})", primary.name, primary.addr);
    /// # }
    /// ```
    pub fn owners(&self, key: impl AsRef<[u8]>) -> Vec<NodeInfo> {
        let view = self.inner.view();
        view.ring
            .owners(key.as_ref())
            .iter()
            .filter_map(|&i| view.node(i))
            .map(|n| node_info(n))
            .collect()
    }

    /// Every node of the current view, in ring (name) order.
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) {
    /// for node in client.nodes() {
    ///     println!("{} {} down={}", node.name, node.addr, node.down);
    /// }
    /// # }
    /// ```
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.inner.view().nodes.iter().map(|n| node_info(n)).collect()
    }

    /// The topology version the client places keys with (0 for a fixed server list).
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) {
    /// println!("topology v{}", client.topology_version());
    /// # }
    /// ```
    pub fn topology_version(&self) -> u64 {
        self.inner.view().version
    }

    /// Counters of what this client (and its clones) did.
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) {
    /// let s = client.stats();
    /// println!("hits {} misses {} origin loads {}", s.hits, s.misses, s.origin_loads);
    /// # }
    /// ```
    pub fn stats(&self) -> ClientStats {
        self.inner.stats.snapshot()
    }

    /// [`Client::stats`] and the client's view of the cluster, named for Prometheus,
    /// for the application to export with its own metrics (see [`ClientMetrics`]).
    ///
    /// ```no_run
    /// # async fn run(client: ringcache_client::Client) {
    /// let mut page = String::new();
    /// client.metrics().write_prometheus(&mut page, None);
    /// # }
    /// ```
    pub fn metrics(&self) -> ClientMetrics {
        let view = self.inner.view();
        ClientMetrics {
            stats: self.stats(),
            topology_version: view.version,
            nodes: view.nodes.len(),
            nodes_down: view.nodes.iter().filter(|n| n.is_down()).count(),
        }
    }
}

fn node_info(n: &Node) -> NodeInfo {
    NodeInfo {
        name: n.name.to_string(),
        addr: n.addr,
        down: n.is_down(),
    }
}

fn encode(req: &Request) -> Bytes {
    let mut wire = BytesMut::new();
    req.encode_with(&mut wire, false);
    wire.freeze()
}

impl Inner {
    /// The current view (a cheap clone; the lock is released at once).
    pub(crate) fn view(&self) -> Arc<View> {
        match self.view.read() {
            Ok(v) => Arc::clone(&v),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn install(&self, view: View) {
        let view = Arc::new(view);
        match self.view.write() {
            Ok(mut v) => *v = view,
            Err(poisoned) => *poisoned.into_inner() = view,
        }
    }

    pub(crate) fn count_read(&self, hit: bool) {
        Counters::add(if hit { &self.stats.hits } else { &self.stats.misses });
    }

    /// Sends one request to `node`, keeping its health.
    async fn send(self: &Arc<Self>, node: &Arc<Node>, wire: Bytes, expect: Expect) -> Result<Bytes> {
        match self.attempt(node, wire, expect, None, false).await {
            Attempt::NotSent(e) => Err(e),
            Attempt::Sent(r) => r,
        }
    }

    /// Sends one request to `node`: a connection (opened within `connect_timeout`),
    /// then the reply (within `timeout`), neither past `until`. Keeps the node's
    /// health: whatever the request (read, write, lease, batch), a reply counts as
    /// success and a refused or broken connection or a timeout (a node that accepts
    /// connections but never answers, as a frozen process does) as a failure.
    /// `failover`: the node is not the key's primary (counted once sent).
    async fn attempt(
        self: &Arc<Self>,
        node: &Arc<Node>,
        wire: Bytes,
        expect: Expect,
        until: Option<Instant>,
        failover: bool,
    ) -> Attempt {
        let left = |u: Instant| u.saturating_duration_since(Instant::now());
        if let Some(u) = until {
            if left(u).is_zero() {
                // The caller's budget is spent: not the node's fault.
                return Attempt::NotSent(Error::Timeout(Duration::ZERO));
            }
        }
        let conn = match until {
            Some(u) => tokio::time::timeout_at(u, node.pool.conn())
                .await
                .unwrap_or_else(|_| Err(Error::Timeout(self.settings.connect_timeout))),
            None => node.pool.conn().await,
        };
        // A connection is not an answer (a frozen process's kernel still accepts
        // them): only a failure is recorded here.
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                self.failed(node, &e);
                return Attempt::NotSent(e);
            }
        };
        let timeout = match until {
            Some(u) => self.settings.timeout.min(left(u)),
            None => self.settings.timeout,
        };
        if timeout.is_zero() {
            return Attempt::NotSent(Error::Timeout(Duration::ZERO));
        }
        if failover {
            Counters::add(&self.stats.failovers);
        }
        let result = conn.request(wire, expect, timeout).await;
        match &result {
            Ok(_) => node.succeeded(),
            Err(e) => self.failed(node, e),
        }
        Attempt::Sent(result)
    }

    /// Records a failed request to `node`: an unavailable error counts towards
    /// marking it down (and asks for a topology refresh); any other error is an
    /// answer, so the node is reachable.
    fn failed(self: &Arc<Self>, node: &Arc<Node>, e: &Error) {
        if !e.is_unavailable() {
            node.succeeded();
            return;
        }
        tracing::debug!(node = %node.name, error = %e, "request failed");
        if node.failed(self.settings.tko_threshold) {
            tracing::warn!(node = %node.name, addr = %node.addr, "marking node down");
            Counters::add(&self.stats.marked_down);
            node.pool.close_all();
            tokio::spawn(probe(Arc::downgrade(self), Arc::clone(node)));
        }
        self.refresh_now.notify_one();
    }

    /// After a `SERVER_ERROR ring changing` reply: the pause before sending the
    /// request again, or `None` when the retries (or the caller's budget) are spent.
    /// Asks for a topology refresh either way: the client's ring may be the old one.
    fn ring_changing_pause(&self, retries: &mut usize, until: Option<Instant>) -> Option<Duration> {
        self.refresh_now.notify_one();
        let pause = *RING_CHANGING_BACKOFF.get(*retries)?;
        if until.is_some_and(|u| Instant::now() + pause >= u) {
            return None;
        }
        *retries += 1;
        Counters::add(&self.stats.ring_changing_retries);
        tracing::debug!(?pause, "ring changing; retrying");
        Some(pause)
    }

    /// What a plain read returns for a lookup: only a current value.
    ///
    /// The first fetch of a stale item wins its revalidation (`X W`) whether it asked
    /// for a lease or not. A plain read cannot revalidate (it has no origin), so it
    /// hands the win back with `md <key> C<cas> I`, which keeps the item stale and
    /// lets the next reader win, unless someone wrote the key meanwhile (then the
    /// CAS no longer matches and nothing changes).
    pub(crate) async fn plain(self: &Arc<Self>, key: &[u8], lookup: Lookup) -> Option<Item> {
        if let Lookup::Stale { item, won: true } = &lookup {
            let mut wire = BytesMut::new();
            command::meta_delete(&mut wire, key, Some(item.cas), true);
            if let Err(e) = self.write(key, wire.freeze(), Expect::Meta).await {
                tracing::debug!(error = %e, "could not hand back a revalidation win");
            }
        }
        lookup.into_value()
    }

    /// A read: the owners in order, skipping nodes marked down; `None` when none
    /// answers.
    pub(crate) async fn read(self: &Arc<Self>, key: &[u8], wire: Bytes, expect: Expect) -> Result<Option<Bytes>> {
        self.read_until(key, wire, expect, None).await
    }

    /// [`Inner::read`], giving up at `until` (a miss then). A node that answers
    /// `SERVER_ERROR ring changing` is asked again after a short pause (see
    /// [`RING_CHANGING_BACKOFF`]); if it still does, the read is a miss.
    pub(crate) async fn read_until(
        self: &Arc<Self>,
        key: &[u8],
        wire: Bytes,
        expect: Expect,
        until: Option<Instant>,
    ) -> Result<Option<Bytes>> {
        let mut retries = 0;
        'placed: loop {
            let view = self.view();
            let owners = view.ring.owners(key);
            for (pos, &idx) in owners.iter().enumerate() {
                let Some(node) = view.node(idx) else { continue };
                if node.is_down() {
                    continue;
                }
                let reply = match self.attempt(node, wire.clone(), expect, until, pos > 0).await {
                    Attempt::NotSent(e) => Err(e),
                    Attempt::Sent(r) => r,
                };
                match reply {
                    Ok(reply) if command::is_ring_changing(&reply) => {
                        match self.ring_changing_pause(&mut retries, until) {
                            Some(pause) => {
                                tokio::time::sleep(pause).await;
                                continue 'placed;
                            }
                            None => {
                                tracing::debug!(key = %KeyText(key), "ring still changing; a miss");
                                return Ok(None);
                            }
                        }
                    }
                    Ok(reply) => return Ok(Some(reply)),
                    Err(e) if e.is_unavailable() => continue,
                    Err(e) => return Err(e),
                }
            }
            tracing::debug!(key = %KeyText(key), "no owner reachable; a miss");
            Counters::add(&self.stats.unreachable);
            return Ok(None);
        }
    }

    /// A write that may be sent again after `SERVER_ERROR ring changing`; see
    /// [`Inner::write_until`].
    pub(crate) async fn write(self: &Arc<Self>, key: &[u8], wire: Bytes, expect: Expect) -> Result<Bytes> {
        self.write_until(key, wire, expect, Resend::RingChanging, None).await
    }

    /// A write: the first owner not marked down that accepts a connection; sent once,
    /// except that a reply of `SERVER_ERROR ring changing` (the write was not
    /// acknowledged) sends it again after a short pause when `resend` allows, placed
    /// with the client's ring of then. Gives up at `until`.
    pub(crate) async fn write_until(
        self: &Arc<Self>,
        key: &[u8],
        wire: Bytes,
        expect: Expect,
        resend: Resend,
        until: Option<Instant>,
    ) -> Result<Bytes> {
        let mut retries = 0;
        'placed: loop {
            let view = self.view();
            let owners = view.ring.owners(key);
            for (pos, &idx) in owners.iter().enumerate() {
                let Some(node) = view.node(idx) else { continue };
                if node.is_down() {
                    continue;
                }
                match self.attempt(node, wire.clone(), expect, until, pos > 0).await {
                    // Nothing sent: the next owner may take it (it forwards it to
                    // the primary of its own ring).
                    Attempt::NotSent(e) if e.is_unavailable() => continue,
                    Attempt::NotSent(e) => return Err(e),
                    Attempt::Sent(Ok(reply)) if resend == Resend::RingChanging && command::is_ring_changing(&reply) => {
                        match self.ring_changing_pause(&mut retries, until) {
                            Some(pause) => {
                                tokio::time::sleep(pause).await;
                                continue 'placed;
                            }
                            None => return Ok(reply),
                        }
                    }
                    Attempt::Sent(r) => return r,
                }
            }
            return Err(Error::NoNode);
        }
    }

    /// `mg` for every key, grouped by owner, the groups concurrently; `None` for a
    /// key no owner answered for.
    pub(crate) async fn lookup_many<K: AsRef<[u8]>>(
        self: &Arc<Self>,
        keys: &[K],
        until: Option<Instant>,
    ) -> Result<Vec<Option<Lookup>>> {
        let view = self.view();
        let owners: Vec<_> = keys.iter().map(|k| view.ring.owners(k.as_ref())).collect();
        let mut out: Vec<Option<Lookup>> = vec![None; keys.len()];
        // Where in its owner list each key tries next.
        let mut next = vec![0usize; keys.len()];
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        while !pending.is_empty() {
            let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
            for &i in &pending {
                let up = (next[i]..owners[i].len()).find(|&p| view.node(owners[i][p]).is_some_and(|n| !n.is_down()));
                let Some(p) = up else {
                    Counters::add(&self.stats.unreachable);
                    continue;
                };
                if p > 0 {
                    Counters::add(&self.stats.failovers);
                }
                next[i] = p;
                let node = owners[i][p].get();
                match groups.iter_mut().find(|(n, _)| *n == node) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((node, vec![i])),
                }
            }
            pending.clear();
            let requests = groups.into_iter().filter_map(|(node, members)| {
                let node = Arc::clone(view.nodes.get(node)?);
                let mut wire = BytesMut::new();
                for &i in &members {
                    command::meta_get(&mut wire, keys[i].as_ref(), None);
                }
                wire.put_slice(b"mn\r\n");
                Some(async move {
                    let reply = match self
                        .attempt(&node, wire.freeze(), Expect::MetaUntilNoop, until, false)
                        .await
                    {
                        Attempt::NotSent(e) => Err(e),
                        Attempt::Sent(r) => r,
                    };
                    let lookups = reply.and_then(|r| command::decode_lookups(&r, members.len()));
                    (members, lookups)
                })
            });
            for (members, lookups) in join_all(requests.collect()).await {
                match lookups {
                    Ok(lookups) => {
                        for (i, l) in members.into_iter().zip(lookups) {
                            out[i] = Some(l);
                        }
                    }
                    Err(e) if e.is_unavailable() => {
                        for i in members {
                            next[i] += 1;
                            pending.push(i);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// Asks members (round-robin, skipping nodes marked down), then the seeds, for
    /// the topology, and installs it if its version is new.
    async fn refresh(self: &Arc<Self>) -> Result<()> {
        let view = self.view();
        let live: Vec<&Arc<Node>> = view.nodes.iter().filter(|n| !n.is_down()).collect();
        let turn = self.refresh_turn.fetch_add(1, Relaxed);
        let mut last = Error::NoNode;
        for k in 0..live.len() {
            let node = live[(turn + k) % live.len()];
            let reply = self
                .send(node, Bytes::from_static(b"topology\r\n"), Expect::Lines)
                .await;
            match reply.and_then(|r| parse_topology(&r)) {
                Ok(topo) => return self.apply(&view, &topo),
                Err(e) => last = e,
            }
        }
        let seeds: Vec<SocketAddr> = self
            .seeds
            .iter()
            .copied()
            .filter(|&seed| !live.iter().any(|n| n.addr == seed))
            .collect();
        if seeds.is_empty() {
            return Err(last);
        }
        let topo = ask_seeds(&self.settings, &seeds).await?;
        self.apply(&view, &topo)
    }

    fn apply(&self, view: &View, topo: &Topology) -> Result<()> {
        if topo.version == view.version {
            return Ok(());
        }
        let s = &self.settings;
        let next = View::from_topology(topo, Some(view), s.pool_size, s.connect_timeout)?;
        tracing::info!(
            version = topo.version,
            members = topo.members.len(),
            "new cluster topology"
        );
        Counters::add(&self.stats.topology_changes);
        self.install(next);
        Ok(())
    }
}

/// Runs `futures` concurrently on the current task; their outputs in order.
pub(crate) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => done = false,
                }
            }
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

fn parse_topology(reply: &[u8]) -> Result<Topology> {
    if !reply.starts_with(b"TOPOLOGY ") {
        let line = String::from_utf8_lossy(reply);
        return Err(Error::Topology(format!("no topology: {}", line.trim_end())));
    }
    match Topology::parse(reply) {
        Ok(Some((topo, _))) => Ok(topo),
        Ok(None) => Err(Error::Topology("truncated topology".into())),
        Err(e) => Err(Error::Topology(e.to_string())),
    }
}

/// Asks `addr` for the topology over a connection of its own.
async fn fetch_topology(s: &Settings, addr: SocketAddr) -> Result<Topology> {
    let conn = NodeConn::connect(addr, s.connect_timeout).await?;
    let reply = conn
        .request(Bytes::from_static(b"topology\r\n"), Expect::Lines, s.timeout)
        .await;
    conn.close();
    parse_topology(&reply?)
}

/// The first view: the topology of the first seed to give one; see [`ask_seeds`].
///
/// Fails with [`Error::Topology`] if a seed answered with something unusable (not a
/// ringcache node, or another placement hash), else with the last seed's
/// unavailable error when none answered.
pub(crate) async fn first_topology(s: &Settings, seeds: &[SocketAddr]) -> Result<View> {
    let topo = ask_seeds(s, seeds).await?;
    View::from_topology(&topo, None, s.pool_size, s.connect_timeout)
}

/// The topology of the first seed to give one, all seeds asked at once (so the wait
/// is one seed's timeouts however many seeds are silent). The error prefers a
/// seed's unusable answer ([`Error::Topology`]) to unavailable ones.
async fn ask_seeds(s: &Settings, seeds: &[SocketAddr]) -> Result<Topology> {
    let mut asks: Vec<Pin<Box<_>>> = seeds
        .iter()
        .map(|&seed| Box::pin(async move { (seed, fetch_topology(s, seed).await) }))
        .collect();
    let mut last = Error::NoNode;
    let first = std::future::poll_fn(|cx| {
        let mut i = 0;
        while i < asks.len() {
            match asks[i].as_mut().poll(cx) {
                Poll::Ready((_, Ok(topo))) => return Poll::Ready(Some(topo)),
                Poll::Ready((seed, Err(e))) => {
                    tracing::debug!(%seed, error = %e, "seed gave no topology");
                    if !matches!(last, Error::Topology(_)) {
                        last = e;
                    }
                    drop(asks.swap_remove(i));
                }
                Poll::Pending => i += 1,
            }
        }
        if asks.is_empty() {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    })
    .await;
    first.ok_or(last)
}

/// Re-reads the topology every `every`, or sooner when asked, until the client is
/// dropped.
async fn refresh_loop(inner: Weak<Inner>, wake: Arc<Notify>, every: Duration) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = wake.notified() => {
                // Let a burst of failures ask only once.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let Some(inner) = inner.upgrade() else { return };
        if let Err(e) = inner.refresh().await {
            tracing::debug!(error = %e, "topology refresh failed");
        }
    }
}

/// Probes a node marked down every `probe_interval` until it answers `version` (or
/// leaves the view, or the client is dropped), then puts it back in service.
async fn probe(inner: Weak<Inner>, node: Arc<Node>) {
    loop {
        let (every, timeout, connect_timeout) = match inner.upgrade() {
            Some(i) => (
                i.settings.probe_interval,
                i.settings.timeout,
                i.settings.connect_timeout,
            ),
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(client) = inner.upgrade() else { return };
        if !client.view().contains(&node) {
            node.revive();
            return;
        }
        drop(client);
        let Ok(conn) = NodeConn::connect(node.addr, connect_timeout).await else {
            continue;
        };
        let reply = conn
            .request(Bytes::from_static(b"version\r\n"), Expect::Line, timeout)
            .await;
        conn.close();
        if reply.is_ok_and(|r| command::decode_version(&r).is_ok()) {
            tracing::info!(node = %node.name, addr = %node.addr, "node answers again");
            node.revive();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn join_all_keeps_order_and_runs_concurrently() {
        let start = tokio::time::Instant::now();
        let futs: Vec<_> = (0..5u64)
            .map(|i| async move {
                tokio::time::sleep(Duration::from_millis(50 * (5 - i))).await;
                i
            })
            .collect();
        assert_eq!(join_all(futs).await, vec![0, 1, 2, 3, 4]);
        // Paused (virtual) time: sequential would take 750 ms, concurrent 250 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(250));
    }

    use std::collections::VecDeque;
    use std::sync::Mutex;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// A listening socket nobody accepts from: connections complete (the kernel
    /// queues them) and requests are never answered, as with a frozen process.
    fn silent_node() -> (std::net::TcpListener, String) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        (l, addr)
    }

    /// Answers every request line (a store's data line is skipped) with the next
    /// line of `script`, or with `VERSION 1` for `version`, and with `fallback`
    /// once the script is used up.
    async fn scripted_node(script: Vec<&'static [u8]>, fallback: &'static [u8]) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let script = Arc::clone(&script);
                tokio::spawn(async move {
                    let (rd, mut wr) = s.into_split();
                    let mut lines = BufReader::new(rd).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line.starts_with("set ") && lines.next_line().await.ok().flatten().is_none() {
                            return;
                        }
                        let reply: &[u8] = if line == "version" {
                            b"VERSION 1\r\n"
                        } else {
                            script.lock().unwrap().pop_front().unwrap_or(fallback)
                        };
                        if wr.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    struct Echo;

    impl crate::Origin for Echo {
        async fn load(&self, key: &[u8]) -> std::result::Result<Option<Bytes>, crate::BoxError> {
            Ok(Some(Bytes::copy_from_slice(key)))
        }
    }

    #[tokio::test]
    async fn a_silent_node_is_marked_down_by_writes_deletes_and_invalidations() {
        let (listener, addr) = silent_node();
        let client = Client::builder()
            .servers([&addr])
            .timeout(Duration::from_millis(100))
            .connect_timeout(Duration::from_millis(100))
            .tko_threshold(3)
            .probe_interval(Duration::from_millis(50))
            .build()
            .await
            .unwrap();
        let ttl = Duration::ZERO;
        assert!(client.set("k", "v", ttl).await.unwrap_err().is_unavailable());
        assert!(client.delete("k").await.unwrap_err().is_unavailable());
        assert_eq!(client.metrics().nodes_down, 0, "two failures are below the threshold");
        assert!(client.invalidate("k").await.unwrap_err().is_unavailable());
        let m = client.metrics();
        assert_eq!((m.nodes_down, m.stats.marked_down), (1, 1), "{m:?}");
        // Skipped from now on: nothing is sent, so nothing waits.
        assert!(matches!(client.set("k", "v", ttl).await, Err(Error::NoNode)));
        assert!(matches!(client.incr("n", 1).await, Err(Error::NoNode)));
        assert_eq!(client.get("k").await.unwrap(), None);
        let cache = client.read_through(Echo);
        assert_eq!(cache.get_or_load("k", ttl).await.unwrap().as_deref(), Some(&b"k"[..]));
        assert_eq!(client.stats().marked_down, 1, "marked down once, probed since");

        // The node answers again: the probe puts it back in service.
        listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (rd, mut wr) = s.into_split();
                    let mut lines = BufReader::new(rd).lines();
                    while let Ok(Some(_)) = lines.next_line().await {
                        if wr.write_all(b"VERSION 1\r\n").await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        for _ in 0..500 {
            if client.metrics().nodes_down == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the probe never put the node back: {:?}", client.nodes());
    }

    #[tokio::test]
    async fn get_or_load_with_every_owner_silent_waits_one_timeout() {
        let (_a, a) = silent_node();
        let (_b, b) = silent_node();
        let timeout = Duration::from_secs(1);
        let client = Client::builder()
            .servers([&a, &b])
            .replicas(2)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .await
            .unwrap();
        let cache = client.read_through(Echo);
        let start = std::time::Instant::now();
        let v = cache.get_or_load("cold", Duration::ZERO).await.unwrap();
        let took = start.elapsed();
        assert_eq!(v.as_deref(), Some(&b"cold"[..]));
        // The lease waited the one timeout; the plain read after it had no time
        // left. (It used to wait a timeout more per owner: two at least.)
        assert!(took < timeout * 2, "took {took:?}");
        assert_eq!(client.stats().origin_loads, 1);
    }

    #[tokio::test]
    async fn get_many_or_load_with_every_owner_silent_waits_one_timeout() {
        let (_a, a) = silent_node();
        let (_b, b) = silent_node();
        let timeout = Duration::from_secs(1);
        let client = Client::builder()
            .servers([&a, &b])
            .replicas(2)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .await
            .unwrap();
        let cache = client.read_through(Echo);
        let keys = ["k1", "k2", "k3", "k4"];
        let start = std::time::Instant::now();
        let got = cache.get_many_or_load(&keys, Duration::ZERO).await.unwrap();
        let took = start.elapsed();
        let want: Vec<Option<Bytes>> = keys.iter().map(|k| Some(Bytes::from(*k))).collect();
        assert_eq!(got, want);
        // The batch read waited the one timeout; the leases had no time left. (It
        // used to wait a timeout per owner for the batch, then more for the leases.)
        assert!(took < timeout * 2, "took {took:?}");
        assert_eq!(client.stats().origin_loads, 1, "one batched load");
    }

    #[tokio::test]
    async fn ring_changing_is_retried_for_reads_and_idempotent_writes_only() {
        let changing: &'static [u8] = b"SERVER_ERROR ring changing\r\n";
        let addr = scripted_node(
            vec![changing, changing, b"STORED\r\n", changing, b"EN\r\n", changing],
            changing,
        )
        .await;
        let client = Client::builder().servers([&addr]).build().await.unwrap();
        client.set("k", "v", Duration::ZERO).await.unwrap();
        assert_eq!(client.stats().ring_changing_retries, 2);
        assert_eq!(client.get("k").await.unwrap(), None);
        assert_eq!(client.stats().ring_changing_retries, 3);
        // An incr might have been applied before the refusal: not resent.
        let e = client.incr("n", 1).await.unwrap_err();
        assert!(matches!(&e, Error::Server(m) if m.contains("ring changing")), "{e:?}");
        assert_eq!(client.stats().ring_changing_retries, 3);
        // A write the ring refuses for longer: retried a bounded number of times.
        let e = client.set("k", "v", Duration::ZERO).await.unwrap_err();
        assert!(matches!(&e, Error::Server(m) if m.contains("ring changing")), "{e:?}");
        assert_eq!(
            client.stats().ring_changing_retries,
            3 + RING_CHANGING_BACKOFF.len() as u64
        );
        assert_eq!(client.metrics().nodes_down, 0, "an answer is not a failure");
    }

    #[tokio::test]
    async fn a_client_builds_without_a_live_seed_and_finds_the_cluster_later() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let seed = format!("127.0.0.1:{port}");
        let client = Client::builder()
            .seeds([&seed])
            .refresh_interval(Duration::from_millis(20))
            .build()
            .await
            .unwrap();
        assert!(client.nodes().is_empty());
        assert_eq!(client.get("k").await.unwrap(), None);
        assert!(matches!(client.set("k", "v", Duration::ZERO).await, Err(Error::NoNode)));
        let cache = client.read_through(Echo);
        assert_eq!(
            cache.get_or_load("k", Duration::ZERO).await.unwrap().as_deref(),
            Some(&b"k"[..])
        );

        // The seed comes up: it describes a cluster of itself.
        let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let topology = format!(
            "TOPOLOGY 7 {} 160 1 1\r\nMEMBER a {seed} alive\r\nEND\r\n",
            ringcache_protocol::ring::ring_hash_name()
        );
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let topology = topology.clone();
                tokio::spawn(async move {
                    let (rd, mut wr) = s.into_split();
                    let mut lines = BufReader::new(rd).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let reply = if line == "topology" {
                            topology.as_str()
                        } else {
                            "EN\r\n"
                        };
                        if wr.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        for _ in 0..500 {
            if client.nodes().len() == 1 {
                assert_eq!(client.topology_version(), 7);
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the client never found the seed");
    }

    #[test]
    fn topology_replies() {
        let ok = b"TOPOLOGY 7 xxh3-64 160 2 1\r\nMEMBER a 127.0.0.1:1 alive\r\nEND\r\n";
        assert_eq!(parse_topology(ok).unwrap().version, 7);
        assert!(matches!(parse_topology(b"ERROR\r\n"), Err(Error::Topology(_))));
        assert!(parse_topology(b"TOPOLOGY x\r\nEND\r\n").is_err());
    }
}
