//! The client's one error type.
//!
//! Every fallible call of the crate returns [`Error`]. [`Error::is_unavailable`] tells
//! "the node could not be reached" (the client fails over, marks nodes down, and
//! treats reads as misses) from "the node answered something we did not want" (which
//! reaches the caller).

use std::sync::Arc;
use std::time::Duration;

/// The error an [`Origin`](crate::Origin) returns: any error type, shared so that every
/// caller waiting on one load gets it.
pub type OriginError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not connect, or the socket failed; the connection is closed.
    #[error("i/o error talking to {addr}: {source}")]
    Io {
        /// The node's address.
        addr: std::net::SocketAddr,
        /// What the socket said.
        #[source]
        source: std::io::Error,
    },
    /// No reply within the timeout; the connection that carried the request is
    /// closed (its later replies could no longer be matched to requests).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection closed before the reply arrived.
    #[error("connection closed")]
    Closed,
    /// The server sent bytes that are not a memcached reply (or not one that answers
    /// the request sent).
    #[error("malformed reply: {0}")]
    Protocol(String),
    /// The server answered with an error line (`ERROR`, `CLIENT_ERROR ...`,
    /// `SERVER_ERROR ...`).
    #[error("server error: {0}")]
    Server(String),
    /// The key cannot be sent (empty, longer than 250 bytes, or with spaces or
    /// control characters).
    #[error("invalid key")]
    InvalidKey,
    /// No node could serve the request: every owner of the key is marked down or
    /// failed.
    #[error("no node available")]
    NoNode,
    /// The builder was given nothing to connect to, or an address that does not
    /// resolve.
    #[error("configuration: {0}")]
    Config(String),
    /// A seed answered `topology` without a usable view (a malformed reply, as from
    /// a plain memcached, or a placement hash this client does not implement).
    #[error("topology: {0}")]
    Topology(String),
    /// The origin failed to load a value. Nothing was cached.
    #[error("origin: {0}")]
    Origin(OriginError),
    /// A typed value could not be encoded or decoded (feature `serde`).
    #[error("codec: {0}")]
    Codec(String),
}

impl Error {
    /// Whether the failure says the node is unreachable (as opposed to an answer).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Io { .. } | Error::Timeout(_) | Error::Closed | Error::NoNode => true,
            Error::Protocol(_)
            | Error::Server(_)
            | Error::InvalidKey
            | Error::Config(_)
            | Error::Topology(_)
            | Error::Origin(_)
            | Error::Codec(_) => false,
        }
    }
}

/// A copy for every caller that shared one request (single-flight). An `io::Error`
/// is not `Clone`: the copy keeps its kind and message.
impl Clone for Error {
    fn clone(&self) -> Self {
        match self {
            Error::Io { addr, source } => Error::Io {
                addr: *addr,
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Timeout(d) => Error::Timeout(*d),
            Error::Closed => Error::Closed,
            Error::Protocol(m) => Error::Protocol(m.clone()),
            Error::Server(m) => Error::Server(m.clone()),
            Error::InvalidKey => Error::InvalidKey,
            Error::NoNode => Error::NoNode,
            Error::Config(m) => Error::Config(m.clone()),
            Error::Topology(m) => Error::Topology(m.clone()),
            Error::Origin(e) => Error::Origin(e.clone()),
            Error::Codec(m) => Error::Codec(m.clone()),
        }
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_errors_are_the_reachability_ones() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let io = Error::Io {
            addr,
            source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
        };
        assert!(io.is_unavailable());
        assert!(Error::Timeout(Duration::from_secs(1)).is_unavailable());
        assert!(Error::NoNode.is_unavailable());
        assert!(!Error::Server("SERVER_ERROR out of memory".into()).is_unavailable());
        assert!(!Error::InvalidKey.is_unavailable());
        let copy = io.clone();
        assert!(matches!(copy, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused));
    }
}
