//! Everything two ringcache processes must agree on byte for byte, and no I/O.
//!
//! # Layout
//! - [`text`]: the memcached text protocol (classic and meta commands): an
//!   incremental request parser over `BytesMut`, typed requests, response
//!   encoders for the server and a response parser for clients.
//! - [`ring`]: key placement on a consistent-hash ring with virtual nodes.
//! - [`cluster`]: node identity and the topology view clients download.
//! - [`limits`]: every bound on what a peer may send (key, line and value lengths).
//! - [`gossip`]: the membership packets nodes exchange over UDP (foca's codec and
//!   identity), and the cluster secret's sealed envelope and peer proof.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod gossip;
pub mod limits;
pub mod ring;
pub mod text;
