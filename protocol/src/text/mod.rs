//! The memcached text protocol as memcached 1.6 speaks it.
//!
//! # Layout
//! - [`request`]: the typed requests ([`Request`]) and the limits a parser enforces.
//! - [`parse`]: the incremental request parser: [`parse_request`] takes whatever the
//!   socket delivered and returns one request, "incomplete", or memcached's error line.
//! - [`meta`]: the meta commands (`mg`, `ms`, `md`, `ma`, `mn`, `me`): their flags,
//!   parser and response encoders.
//! - [`num`]: every decimal number the protocol reads (memcached's `safe_strto*`
//!   for requests, strict digits for replies and peer lines).
//! - [`frame`]: where one reply ends in a stream of replies (for pipelining and relaying).
//! - [`value`]: the one reader of `VALUE` blocks (header, block, a whole retrieval
//!   reply up to `END`), used by every reader of retrieval replies.
//! - [`response`]: encoders for every classic response and a response parser for clients.
//!
//! Keys and values in parsed requests are `Bytes` slices of the connection's read
//! buffer: nothing is copied on the way in.

pub mod encode;
pub mod frame;
pub mod meta;
pub mod num;
pub mod parse;
pub mod peer;
pub mod request;
pub mod response;
pub mod value;

pub use frame::Expect;
pub use parse::{parse_request, pending_store, ParseError, PendingStore, StoreLine};
pub use request::*;
