//! The ringcache client: a smart, async client for a ringcache cluster (or any fleet
//! of memcached servers), with read-through caching.
//!
//! It learns the cluster's members and ring parameters from any node (`topology`),
//! places keys with the same consistent-hash ring as the nodes
//! ([`ringcache_protocol::ring`]) and talks straight to each key's owner over a few
//! pipelined connections per node: no forwarding hop. It follows membership changes
//! in the background, marks a node down after a few failed requests of any kind (a
//! frozen node that accepts connections and never answers included) and probes it
//! back, fails reads over to the key's other owners, resends requests a node refused
//! because its ring was changing, and treats an unreachable cache as a miss so that a
//! read-through keeps answering from the origin (within one timeout when every owner
//! is down or hung). It can be built while the cache is down: it keeps looking for
//! the cluster in the background and uses it once a seed answers.
//!
//! ```no_run
//! # async fn run() -> ringcache_client::Result<()> {
//! use std::time::Duration;
//! use ringcache_client::Client;
//!
//! let client = Client::builder().seeds(["127.0.0.1:11211"]).build().await?;
//! client.set("user:42", "Ada", Duration::from_secs(300)).await?;
//! let name = client.get("user:42").await?;
//! let both = client.get_many(&["user:42", "user:43"]).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`Client`] (`client`): the cache API, routing, failover and the background
//!   topology refresh; [`ClientBuilder`] (`builder`) configures it.
//! - [`ReadThrough`] and [`Origin`] (`read_through`): `get_or_load` with single-flight
//!   within a process and meta leases across processes.
//! - `view`: the ring, a pool per node and each node's health (TKO).
//! - `command`: the requests sent and the replies accepted, without I/O.
//! - [`conn`]: one pipelined connection to one node (requests matched to replies in
//!   order), with timeouts. The server reuses it to forward requests to peers.
//! - [`pool`]: a few such connections per node.
//! - [`error`]: the one error type.
//! - `metrics`: [`ClientMetrics`], the client's counters named for Prometheus.
//! - `codec` (feature `serde`): typed values as JSON.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod client;
#[cfg(feature = "serde")]
mod codec;
mod command;
pub mod conn;
pub mod error;
mod metrics;
pub mod pool;
mod read_through;
mod view;

pub use builder::ClientBuilder;
pub use client::{Client, ClientStats, NodeInfo};
pub use command::{Item, StoreKind, StoreOutcome};
pub use error::{Error, OriginError, Result};
pub use metrics::{ClientMetrics, MetricKind, Sample};
pub use read_through::{BoxError, Origin, ReadThrough};
