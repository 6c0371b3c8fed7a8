//! Read-through caching: on a miss, load from the [`Origin`] (the application's
//! database or service), store the result, return it.
//!
//! # Loading once
//! - **Within one process** concurrent calls for one key share one flight: the first
//!   caller does the work, the others wait for its result (success or error).
//!   Clones of a [`ReadThrough`] share flights.
//! - **Across processes** the cache itself arbitrates with memcached's meta leases.
//!   The flight's leader asks `mg <key> v f c N<lease ttl>`: on a miss the owner
//!   creates an empty placeholder and hands exactly one reader the win (`W`); that
//!   reader loads from the origin and writes back with `ms <key> ... C<cas>` using
//!   the placeholder's CAS unique. Everyone else sees the placeholder (`Z`) and waits
//!   briefly, re-reading, for the value to appear. A write-back that lost to a newer
//!   `set` (CAS changed: `EX`) or a `delete` (`NF`) changes nothing, so a slow loader
//!   never overwrites newer data. A loader whose origin fails or has no value deletes
//!   its placeholder (`md <key> C<cas>`, only if still its own) so the next reader
//!   tries again: errors are never cached.
//! - **Stale-while-revalidate**: a value marked stale with
//!   [`Client::invalidate`](crate::Client::invalidate) is served (`X`) to callers that
//!   allowed it ([`ReadThrough::allow_stale`]) while the one reader that won the
//!   revalidation reloads it in the background.
//! - A lease holder that dies leaves a placeholder behind; waiters give up after
//!   [`ReadThrough::lease_wait`], load themselves and write back with the
//!   placeholder's CAS (which fails harmlessly if anyone wrote in between).
//!
//! # When the cache is unreachable
//! If no owner of the key answers, the value comes straight from the origin and
//! nothing is cached: the application keeps working, a little slower. The cache gets
//! one `timeout` per call in all: the lease and, when the lease fails, the plain read
//! from the key's other owners share one deadline, so with every owner down or hung
//! (a frozen process accepts connections and never answers) the caller has the
//! origin's value after one timeout, and at once when the owners are already marked
//! down. Likewise before the client has found the cluster (built while no seed
//! answered).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ringcache_protocol::text::frame::Expect;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::client::{join_all, Client, Counters, Resend};
use crate::command::{self, check_key, exptime, Lookup, MetaWrite};
use crate::error::{Error, Result};

/// The error type an [`Origin`] returns: any error (`?` converts most).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where values come from on a miss: the application's database or service.
///
/// ```
/// use bytes::Bytes;
/// use ringcache_client::{BoxError, Origin};
///
/// struct Upper;
///
/// impl Origin for Upper {
///     async fn load(&self, key: &[u8]) -> Result<Option<Bytes>, BoxError> {
///         Ok(Some(Bytes::from(key.to_ascii_uppercase())))
///     }
/// }
/// ```
pub trait Origin: Send + Sync + 'static {
    /// The value of `key`, `None` if the origin has none (nothing is cached then).
    fn load(&self, key: &[u8]) -> impl Future<Output = Result<Option<Bytes>, BoxError>> + Send;

    /// The values of `keys`, in order. The default loads them one by one; override it
    /// to use one batched query.
    fn load_many(&self, keys: &[Bytes]) -> impl Future<Output = Result<Vec<Option<Bytes>>, BoxError>> + Send {
        async move {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(self.load(key).await?);
            }
            Ok(out)
        }
    }
}

type Outcome = Option<Result<Option<Bytes>>>;

/// Callers currently loading each key in this process.
type Flights = Mutex<HashMap<Bytes, watch::Receiver<Outcome>>>;

/// A [`Client`] bound to an [`Origin`]: [`ReadThrough::get_or_load`] and friends.
///
/// ```no_run
/// # use bytes::Bytes;
/// # use ringcache_client::{BoxError, Origin};
/// # struct Db;
/// # impl Origin for Db {
/// #     async fn load(&self, _key: &[u8]) -> Result<Option<Bytes>, BoxError> { Ok(None) }
/// # }
/// # async fn run() -> ringcache_client::Result<()> {
/// use std::time::Duration;
/// let client = ringcache_client::Client::builder().seeds(["127.0.0.1:11211"]).build().await?;
/// let users = client.read_through(Db).allow_stale(true);
/// let user = users.get_or_load("user:42", Duration::from_secs(300)).await?;
/// # Ok(()) }
/// ```
pub struct ReadThrough<O> {
    client: Client,
    origin: Arc<O>,
    flights: Arc<Flights>,
    allow_stale: bool,
    lease_ttl: Duration,
    lease_wait: Duration,
}

impl<O> Clone for ReadThrough<O> {
    fn clone(&self) -> Self {
        ReadThrough {
            client: self.client.clone(),
            origin: Arc::clone(&self.origin),
            flights: Arc::clone(&self.flights),
            allow_stale: self.allow_stale,
            lease_ttl: self.lease_ttl,
            lease_wait: self.lease_wait,
        }
    }
}

impl Client {
    /// Binds `origin` to this client for read-through; see [`ReadThrough`].
    ///
    /// ```no_run
    /// # use bytes::Bytes;
    /// # use ringcache_client::{BoxError, Origin};
    /// # struct Db;
    /// # impl Origin for Db {
    /// #     async fn load(&self, _key: &[u8]) -> Result<Option<Bytes>, BoxError> { Ok(None) }
    /// # }
    /// # async fn run(client: ringcache_client::Client) {
    /// let cache = client.read_through(Db);
    /// # }
    /// ```
    pub fn read_through<O: Origin>(&self, origin: O) -> ReadThrough<O> {
        ReadThrough::new(self.clone(), origin)
    }
}

impl<O: Origin> ReadThrough<O> {
    /// Binds `origin` to `client`, with stale values not allowed, a 10 s lease and
    /// a 2 s wait for another process's load.
    ///
    /// ```no_run
    /// # use bytes::Bytes;
    /// # use ringcache_client::{BoxError, Origin, ReadThrough};
    /// # struct Db;
    /// # impl Origin for Db {
    /// #     async fn load(&self, _key: &[u8]) -> Result<Option<Bytes>, BoxError> { Ok(None) }
    /// # }
    /// # async fn run(client: ringcache_client::Client) {
    /// let cache = ReadThrough::new(client, Db);
    /// # }
    /// ```
    pub fn new(client: Client, origin: O) -> ReadThrough<O> {
        ReadThrough {
            client,
            origin: Arc::new(origin),
            flights: Arc::default(),
            allow_stale: false,
            lease_ttl: Duration::from_secs(10),
            lease_wait: Duration::from_secs(2),
        }
    }

    /// Whether a value marked stale may be returned while another reader (or a
    /// background task of this one) reloads it (default false: wait for the fresh
    /// value).
    ///
    /// ```no_run
    /// # use bytes::Bytes;
    /// # use ringcache_client::{BoxError, Origin};
    /// # struct Db;
    /// # impl Origin for Db {
    /// #     async fn load(&self, _key: &[u8]) -> Result<Option<Bytes>, BoxError> { Ok(None) }
    /// # }
    /// # async fn run(client: ringcache_client::Client) {
    /// let cache = client.read_through(Db).allow_stale(true);
    /// # }
    /// ```
    pub fn allow_stale(mut self, allow: bool) -> Self {
        self.allow_stale = allow;
        self
    }

    /// How long a lease placeholder lives if its holder never writes back (default
    /// 10 s). Longer than the slowest origin load.
    ///
    /// ```no_run
    /// # use bytes::Bytes;
    /// # use ringcache_client::{BoxError, Origin};
    /// # struct Db;
    /// # impl Origin for Db {
    /// #     async fn load(&self, _key: &[u8]) -> Result<Option<Bytes>, BoxError> { Ok(None) }
    /// # }
    /// # async fn run(client: ringcache_client::Client) {
    /// use std::time::Duration;
    /// let cache = client.read_through(Db).lease_ttl(Duration::from_secs(30));
    /// # }
    /// ```
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// How long to wait for another process's load before loading ourselves
    /// (default 2 s).
    ///
    /// ```no_run
    /// # use bytes::Bytes;
    /// # use ringcache_client::{BoxError, Origin};
    /// # struct Db;
    /// # impl Origin for Db {
    /// #     async fn load(&self, _key: &[u8]) -> Result<Option<Bytes>, BoxError> { Ok(None) }
    /// # }
    /// # async fn run(client: ringcache_client::Client) {
    /// use std::time::Duration;
    /// let cache = client.read_through(Db).lease_wait(Duration::from_millis(500));
    /// # }
    /// ```
    pub fn lease_wait(mut self, wait: Duration) -> Self {
        self.lease_wait = wait;
        self
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The origin.
    pub fn origin(&self) -> &O {
        &self.origin
    }

    /// The value of `key`: from the cache, or loaded from the origin on a miss and
    /// cached for `ttl` (`Duration::ZERO`: no expiry). `None` if the origin has none.
    ///
    /// Concurrent calls for one key load it once (see the module docs); an origin
    /// error reaches every caller that shared the load and is not cached.
    ///
    /// ```no_run
    /// # use bytes::Bytes;
    /// # use ringcache_client::{BoxError, Origin};
    /// # struct Db;
    /// # impl Origin for Db {
    /// #     async fn load(&self, _key: &[u8]) -> Result<Option<Bytes>, BoxError> { Ok(None) }
    /// # }
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// use std::time::Duration;
    /// let cache = client.read_through(Db);
    /// match cache.get_or_load("user:42", Duration::from_secs(300)).await? {
    ///     Some(user) => println!("{} bytes", user.len()),
    ///     None => println!("no such user"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get_or_load(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        check_key(key)?;
        let span = tracing::debug_span!("ringcache.get_or_load", key = %String::from_utf8_lossy(key));
        self.shared(key, ttl).instrument(span).await
    }

    /// [`ReadThrough::get_or_load`] for many keys: one `get_many`, then leases for
    /// the misses, one [`Origin::load_many`] for the keys this caller won (and those
    /// no owner answered for: not cached), and the single-key path for keys another
    /// caller is loading. The batch read and the leases share one `timeout`.
    ///
    /// ```no_run
    /// # use bytes::Bytes;
    /// # use ringcache_client::{BoxError, Origin};
    /// # struct Db;
    /// # impl Origin for Db {
    /// #     async fn load(&self, _key: &[u8]) -> Result<Option<Bytes>, BoxError> { Ok(None) }
    /// # }
    /// # async fn run(client: ringcache_client::Client) -> ringcache_client::Result<()> {
    /// use std::time::Duration;
    /// let cache = client.read_through(Db);
    /// let users = cache.get_many_or_load(&["user:1", "user:2"], Duration::from_secs(300)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_many_or_load<K: AsRef<[u8]>>(&self, keys: &[K], ttl: Duration) -> Result<Vec<Option<Bytes>>> {
        // As for one key, the cache gets one timeout in all (the batch read and the
        // leases); keys it could not answer for in time come from the origin,
        // uncached.
        let until = Instant::now() + self.client.inner.settings.timeout;
        let mut out = self.client.get_many_until(keys, Some(until)).await?;
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
        if missing.is_empty() {
            return Ok(out);
        }
        let span = tracing::debug_span!("ringcache.get_many_or_load", missing = missing.len());
        async {
            let leases = join_all(
                missing
                    .iter()
                    .map(|&i| self.lease(keys[i].as_ref(), Some(until)))
                    .collect(),
            )
            .await;
            // Keys to load: with the lease's CAS to write back with, or `None` when no
            // owner answered in time (loaded, not cached).
            let mut won: Vec<(usize, Option<u64>)> = Vec::new();
            let mut single: Vec<usize> = Vec::new();
            for (&i, lease) in missing.iter().zip(leases) {
                match lease {
                    Ok(Lookup::Hit(item)) => out[i] = Some(item.value),
                    Ok(Lookup::Placeholder { cas, won: true }) => won.push((i, Some(cas))),
                    Ok(Lookup::Stale { item, won: true }) if !self.allow_stale => won.push((i, Some(item.cas))),
                    Err(e) if e.is_unavailable() => won.push((i, None)),
                    // Another caller's load, a stale value, no lease, or no cache:
                    // the single-key path knows each case.
                    Ok(_) | Err(_) => single.push(i),
                }
            }
            if !won.is_empty() {
                let batch: Vec<Bytes> = won
                    .iter()
                    .map(|&(i, _)| Bytes::copy_from_slice(keys[i].as_ref()))
                    .collect();
                Counters::add(&self.client.inner.stats.origin_loads);
                match self.origin.load_many(&batch).await {
                    Ok(values) if values.len() == batch.len() => {
                        let writes = won.iter().zip(&batch).zip(values).map(|((&(i, cas), key), value)| {
                            out[i] = value.clone();
                            async move {
                                match (cas, value) {
                                    (Some(cas), Some(v)) => self.write_back(key, &v, ttl, cas).await,
                                    (Some(cas), None) => self.release(key, cas).await,
                                    (None, _) => {}
                                }
                            }
                        });
                        join_all(writes.collect()).await;
                    }
                    other => {
                        let err = match other {
                            Ok(values) => Error::Origin(Arc::from(BoxError::from(format!(
                                "load_many returned {} values for {} keys",
                                values.len(),
                                batch.len()
                            )))),
                            Err(e) => Error::Origin(Arc::from(e)),
                        };
                        Counters::add(&self.client.inner.stats.origin_errors);
                        let releases = won
                            .iter()
                            .zip(&batch)
                            .filter_map(|(&(_, cas), key)| Some(self.release(key, cas?)));
                        join_all(releases.collect()).await;
                        return Err(err);
                    }
                }
            }
            let rest = join_all(
                single
                    .iter()
                    .map(|&i| self.get_or_load(keys[i].as_ref(), ttl))
                    .collect(),
            )
            .await;
            for (&i, v) in single.iter().zip(rest) {
                out[i] = v?;
            }
            Ok(out)
        }
        .instrument(span)
        .await
    }

    /// Single-flight: one caller per key and process runs [`Self::through`]; the
    /// others get a copy of its result.
    async fn shared(&self, key: &[u8], ttl: Duration) -> Result<Option<Bytes>> {
        loop {
            let (tx, rx) = {
                let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
                match flights.get(key) {
                    Some(rx) => (None, rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        flights.insert(Bytes::copy_from_slice(key), rx.clone());
                        (Some(tx), rx)
                    }
                }
            };
            let Some(tx) = tx else {
                Counters::add(&self.client.inner.stats.coalesced);
                let mut rx = rx;
                match rx.wait_for(Option::is_some).await {
                    Ok(outcome) => {
                        if let Some(result) = outcome.as_ref() {
                            return result.clone();
                        }
                    }
                    // The leader was cancelled before it finished: lead ourselves.
                    Err(_) => continue,
                }
                continue;
            };
            let guard = FlightGuard {
                flights: &self.flights,
                key,
                rx,
            };
            let result = self.through(key, ttl).await;
            let _ = tx.send(Some(result.clone()));
            drop(guard);
            return result;
        }
    }

    /// `mg <key> v f c N<lease ttl>` at the key's primary, given up at `until`.
    async fn lease(&self, key: &[u8], until: Option<Instant>) -> Result<Lookup> {
        check_key(key)?;
        let lease_secs = i64::try_from(self.lease_ttl.as_secs()).unwrap_or(i64::MAX);
        let mut wire = BytesMut::new();
        command::meta_get(&mut wire, key, Some((b'N', lease_secs)));
        let reply = self
            .client
            .inner
            .write_until(key, wire.freeze(), Expect::Meta, Resend::RingChanging, until)
            .await?;
        command::decode_lookup(&reply)
    }

    /// The read-through itself: a lease read, then load, wait or serve stale.
    async fn through(&self, key: &[u8], ttl: Duration) -> Result<Option<Bytes>> {
        let stats = &self.client.inner.stats;
        let deadline = Instant::now() + self.lease_wait;
        let mut pause = Duration::from_millis(5);
        let mut waited = false;
        loop {
            // The cache gets one `timeout` per try, the lease and the plain read
            // after a failed lease together: with every owner down or frozen the
            // caller has the origin's value after one timeout, not two.
            let until = Instant::now() + self.client.inner.settings.timeout;
            let held = match self.lease(key, Some(until)).await {
                Ok(Lookup::Hit(item)) => {
                    Counters::add(&stats.hits);
                    return Ok(Some(item.value));
                }
                // A node that does not vivify: load, cache nothing.
                Ok(Lookup::Miss) => {
                    Counters::add(&stats.misses);
                    return self.load(key).await;
                }
                Ok(Lookup::Placeholder { cas, won: true }) => {
                    Counters::add(&stats.misses);
                    return self.load_and_write(key, ttl, cas, true).await;
                }
                Ok(Lookup::Stale { item, won: true }) if self.allow_stale => {
                    Counters::add(&stats.stale_served);
                    let this = self.clone();
                    let key = Bytes::copy_from_slice(key);
                    tokio::spawn(async move {
                        let _ = this.load_and_write(&key, ttl, item.cas, false).await;
                    });
                    return Ok(Some(item.value));
                }
                Ok(Lookup::Stale { item, won: true }) => {
                    Counters::add(&stats.misses);
                    return self.load_and_write(key, ttl, item.cas, false).await;
                }
                Ok(Lookup::Stale { item, won: false }) if self.allow_stale => {
                    Counters::add(&stats.stale_served);
                    return Ok(Some(item.value));
                }
                Ok(Lookup::Stale { item, won: false }) => item.cas,
                Ok(Lookup::Placeholder { cas, won: false }) => cas,
                Err(e) => {
                    tracing::debug!(error = %e, "no lease; plain read");
                    return self.degraded(key, until).await;
                }
            };
            // Another caller holds the lease: wait for its write-back.
            if !waited {
                Counters::add(&stats.lease_waits);
                waited = true;
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::debug!("lease holder too slow; loading");
                Counters::add(&stats.misses);
                return self.load_and_write(key, ttl, held, false).await;
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// No lease could be taken (the primary is unreachable, or answered an error):
    /// read from any owner until `until`, else load from the origin without caching.
    async fn degraded(&self, key: &[u8], until: Instant) -> Result<Option<Bytes>> {
        let inner = &self.client.inner;
        let mut wire = BytesMut::new();
        command::meta_get(&mut wire, key, None);
        let item = match inner.read_until(key, wire.freeze(), Expect::Meta, Some(until)).await {
            Ok(Some(reply)) => match command::decode_lookup(&reply) {
                Ok(lookup) => inner.plain(key, lookup).await,
                Err(_) => None,
            },
            Ok(None) | Err(_) => None,
        };
        inner.count_read(item.is_some());
        match item {
            Some(item) => Ok(Some(item.value)),
            None => self.load(key).await,
        }
    }

    async fn load(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let stats = &self.client.inner.stats;
        Counters::add(&stats.origin_loads);
        self.origin.load(key).await.map_err(|e| {
            Counters::add(&stats.origin_errors);
            Error::Origin(Arc::from(e))
        })
    }

    /// Loads `key` and writes it back with the lease's `cas`; without a value (or on
    /// an error) deletes our placeholder if `release`.
    async fn load_and_write(&self, key: &[u8], ttl: Duration, cas: u64, release: bool) -> Result<Option<Bytes>> {
        match self.load(key).await {
            Ok(Some(value)) => {
                self.write_back(key, &value, ttl, cas).await;
                Ok(Some(value))
            }
            other => {
                if release {
                    self.release(key, cas).await;
                }
                other
            }
        }
    }

    /// `ms <key> ... C<cas>`: stored only if nobody wrote or deleted since the lease.
    async fn write_back(&self, key: &[u8], value: &Bytes, ttl: Duration, cas: u64) {
        let stats = &self.client.inner.stats;
        let mut wire = BytesMut::new();
        command::meta_set_cas(&mut wire, key, value, exptime(ttl), 0, cas);
        let reply = self.client.inner.write(key, wire.freeze(), Expect::Meta).await;
        match reply.and_then(|r| command::decode_meta_write(&r)) {
            Ok(MetaWrite::Done) => Counters::add(&stats.writebacks),
            Ok(MetaWrite::Refused) => {
                tracing::debug!("write-back lost to a newer write or delete");
                Counters::add(&stats.writebacks_refused);
            }
            Err(e) => tracing::debug!(error = %e, "write-back failed"),
        }
    }

    /// `md <key> C<cas>`: removes our placeholder, not anything written since.
    async fn release(&self, key: &[u8], cas: u64) {
        let mut wire = BytesMut::new();
        command::meta_delete(&mut wire, key, Some(cas), false);
        if let Err(e) = self.client.inner.write(key, wire.freeze(), Expect::Meta).await {
            tracing::debug!(error = %e, "releasing the lease failed");
        }
    }
}

/// Removes a flight from the map when its leader finishes or is cancelled.
struct FlightGuard<'a> {
    flights: &'a Flights,
    key: &'a [u8],
    rx: watch::Receiver<Outcome>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if flights.get(self.key).is_some_and(|rx| rx.same_channel(&self.rx)) {
            flights.remove(self.key);
        }
    }
}
