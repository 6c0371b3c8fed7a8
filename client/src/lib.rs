//! The ringcache client library.
//!
//! # Layout
//! - [`conn`]: one pipelined connection to one node (requests matched to replies in
//!   order), with timeouts. The server reuses it to forward requests to peers.
//! - [`pool`]: a few such connections per node.
//! - [`error`]: the one error type.
#![forbid(unsafe_code)]

pub mod conn;
pub mod error;
pub mod pool;

pub use error::{Error, Result};
