//! Helpers for the integration tests: start real servers on free ports, talk raw bytes to
//! them, compare them with memcached, and find the external tools the tests drive.
//!
//! # Layout
//! - [`process`]: [`ServerProcess`] (a ringcache or memcached child on a free 127.0.0.1 port,
//!   bounded start, signals, restart, killed on drop), [`free_port`], [`poll_until`].
//! - [`raw`]: [`RawConn`], a blocking client that sends exact bytes and reads with deadlines.
//! - [`http`]: [`http::http_get`], one HTTP/1.1 request to the admin listener.
//! - [`diff`]: the differential runner (cases of raw chunks played to memcached and to the
//!   target; replies normalised only where two correct servers may differ).
//! - [`sys`]: the harness's libc calls (effective uid, signals), its only `unsafe`.
//! - [`tools`]: locating `python3`, libmemcached's tools, memcached; a missing one fails with
//!   the command that installs it.
//!
//! # Environment
//! - `RINGCACHE_BIN`: the ringcache binary (default: `target/<profile>/ringcache`).
//! - `MEMCACHED_BIN`: the memcached binary (default: `memcached` on `PATH`).
//! - `RINGCACHE_DIFF_AGAINST=memcached`: the harness self-check; every test that targets a
//!   ringcache node (or a cluster, [`cluster::ClusterTarget`]) starts memcached instead, so
//!   the differential suite compares two memcached processes and the client suites run
//!   against memcached. All must pass.

pub mod cluster;
pub mod diff;
pub mod http;
pub mod process;
pub mod raw;
pub mod sys;
pub mod tools;

pub use process::{free_port, free_udp_port, poll_until, ServerKind, ServerProcess, Signal};
pub use raw::{RawConn, ReadEnd};

/// A two-thread tokio runtime for tests that drive the async client from a plain
/// `#[test]`.
pub fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
