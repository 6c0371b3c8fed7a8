//! A ringcache cache node.
//!
//! # Layout
//! - [`config`]: command-line flags.
//! - [`server`]: the listener, connection limits and graceful shutdown.
//! - [`connection`]: the per-connection read → parse → execute → write loop.
//! - [`peer_connection`]: a peer's connection: requests run concurrently, replies in order.
//! - [`exec`]: what each command does and answers (classic in `exec`, meta in `exec::meta`).
//! - [`storage`]: the sharded, memory-bounded store with eviction and expiry.
//! - [`stats`] and [`stats_report`]: counters and the text of `stats`.
//! - [`node`]: the state shared by all connections.

pub mod cluster;
pub mod config;
pub mod connection;
pub mod exec;
pub mod membership;
pub mod node;
pub mod peer_connection;
pub mod router;
pub mod secret;
pub mod server;
pub mod stats;
pub mod stats_report;
pub mod storage;

/// What `version` answers: memcached's version line format, so clients that parse
/// it (libmemcached reads the numbers) see a memcached 1.6 feature set, followed by
/// ringcache's own version.
pub const VERSION_LINE: &str = concat!("1.6.18 ringcache-", env!("CARGO_PKG_VERSION"));

/// The `version` value in `stats` (one token, as memcached's).
pub const VERSION_STAT: &str = concat!("1.6.18-ringcache-", env!("CARGO_PKG_VERSION"));
