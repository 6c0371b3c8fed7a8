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
//! - [`cluster`]: this node's ring views, peers and the freeze guard; [`membership`]:
//!   the SWIM gossip task; [`seeds`]: seed names and their lookups; [`secret`]:
//!   sealing gossip under fresh nonces; [`quorum`]: whether this node's side may serve keys.
//! - [`router`]: where each request runs (here, on its owner, on every owner): one
//!   owner walk with fencing and failover, reads, writes and replication, repair.
//! - [`peers`]: the seam between the router and the sockets to other nodes;
//!   `testing` (feature `testing`): nodes wired together in one process through it.
//! - [`admin`]: the optional HTTP listener (`--admin-addr`): `/metrics`, `/healthz`,
//!   `/readyz`; [`forward_stats`]: per-peer forward counts and latencies it reports.
//! - [`sys`]: the libc calls (allocator tuning, CPU time, host name, returning freed
//!   pages), each behind a safe function: the crate's only `unsafe`.

pub mod admin;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod exec;
pub mod forward_stats;
mod health;
pub mod membership;
pub mod node;
pub mod peer_connection;
pub mod peers;
pub mod quorum;
pub mod router;
pub mod secret;
pub mod seeds;
pub mod server;
pub mod stats;
pub mod stats_report;
pub mod storage;
pub mod sys;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// What `version` answers (`VERSION 1.6.18`) and `stats` reports as `version`: the
/// memcached release whose protocol ringcache speaks, alone, as memcached sends it.
/// Clients read it: libmemcached parses the numbers to pick a feature set, and some
/// (emcache) split the line into exactly two words. ringcache's own version is in
/// `stats` as `ringcache_version` ([`RINGCACHE_VERSION`]).
pub const VERSION: &str = "1.6.18";

/// ringcache's own version, reported by `stats` as `ringcache_version`.
pub const RINGCACHE_VERSION: &str = env!("CARGO_PKG_VERSION");
