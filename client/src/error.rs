//! The client's one error type.

use std::time::Duration;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not connect, or the socket failed; the connection is closed.
    #[error("i/o error talking to {addr}: {source}")]
    Io {
        addr: std::net::SocketAddr,
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
    /// The server sent bytes that are not a memcached reply.
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
    /// No node could serve the request.
    #[error("no node available")]
    NoNode,
}

impl Error {
    /// Whether the failure says the node is unreachable (as opposed to an answer).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::Io { .. } | Error::Timeout(_) | Error::Closed | Error::NoNode
        )
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
