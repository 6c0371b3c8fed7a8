//! How this node talks to its peers: one seam, [`Peers`], between the code that decides
//! what to send (the router, the hand-off, readiness, the round-trip probe) and the
//! sockets that carry it.
//!
//! A node runs with [`PeerPools`]: per peer a small pool of pipelined, tagged
//! connections (`ringcache_client::pool::NodePool`), each opened with `rc_peer` and the
//! cluster secret's proof. Tests run with an in-process implementation
//! (`crate::testing`) that hands each request straight to another node's peer
//! connection logic, or fails it the way a network does (refused, silent until the
//! timeout), so the router's fencing and failover run in one process under paused
//! time.
//!
//! A request is the wire bytes (`rc_id` is added by the connection), the reply shape it
//! expects and the timeout; the reply is the peer's bytes, already checked to be one
//! whole reply of that shape.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ringcache_client::pool::NodePool;
use ringcache_client::Error as ClientError;
use ringcache_protocol::text::frame::Expect;
use ringcache_protocol::text::peer::PeerRequest;

use crate::secret::ClusterKey;

/// A peer's reply, or why there is none.
pub type PeerReply = Pin<Box<dyn Future<Output = Result<Bytes, ClientError>> + Send + 'static>>;

/// Sends requests to the peers serving clients at given addresses.
pub trait Peers: Send + Sync {
    /// Sends `wire` to the peer at `addr` and resolves to its reply (of shape
    /// `expect`), or to [`ClientError::Timeout`] when none came within `timeout`, or
    /// to another error when the peer cannot be reached. The future owns what it
    /// needs: dropping it abandons the request, not the connection's other requests.
    fn request(&self, addr: SocketAddr, wire: Bytes, expect: Expect, timeout: Duration) -> PeerReply;
}

/// One peer, as [`crate::cluster::Cluster::peer`] hands it out.
#[derive(Clone)]
pub struct Peer {
    peers: Arc<dyn Peers>,
    addr: SocketAddr,
}

impl Peer {
    pub(crate) fn new(peers: Arc<dyn Peers>, addr: SocketAddr) -> Peer {
        Peer { peers, addr }
    }

    /// See [`Peers::request`].
    pub fn request(&self, wire: Bytes, expect: Expect, timeout: Duration) -> PeerReply {
        self.peers.request(self.addr, wire, expect, timeout)
    }
}

/// Connections kept open to each peer.
pub const PEER_POOL: usize = 2;

/// The real peers: a pool of connections per peer address, opened on first use.
pub struct PeerPools {
    pools: Mutex<HashMap<SocketAddr, Arc<NodePool>>>,
    /// This node's name, sent in `rc_peer`.
    name: Bytes,
    /// The cluster secret, if any: each new connection proves it knows it.
    key: Option<Arc<ClusterKey>>,
    /// How long a connection attempt may take.
    connect_timeout: Duration,
}

impl PeerPools {
    /// Pools for node `name`, proving `key` (if any) on each connection it opens.
    pub fn new(name: &str, key: Option<Arc<ClusterKey>>, connect_timeout: Duration) -> PeerPools {
        PeerPools {
            pools: Mutex::new(HashMap::new()),
            name: Bytes::from(name.to_string()),
            key,
            connect_timeout,
        }
    }

    /// The pool of connections to the peer serving clients at `addr`.
    fn pool(&self, addr: SocketAddr) -> Arc<NodePool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .entry(addr)
            .or_insert_with(|| {
                let name = self.name.clone();
                let key = self.key.clone();
                let hello = move || {
                    let proof = key.as_ref().map(|k| {
                        let secs = u64::from(crate::node::unix_now());
                        (secs, Bytes::from(k.peer_proof(&name, secs)))
                    });
                    let mut wire = BytesMut::new();
                    PeerRequest::Hello {
                        name: name.clone(),
                        proof,
                    }
                    .encode(&mut wire);
                    wire.freeze()
                };
                Arc::new(NodePool::new(addr, PEER_POOL, self.connect_timeout).with_hello_fn(Arc::new(hello)))
            })
            .clone()
    }
}

impl Peers for PeerPools {
    fn request(&self, addr: SocketAddr, wire: Bytes, expect: Expect, timeout: Duration) -> PeerReply {
        let pool = self.pool(addr);
        Box::pin(async move { pool.request(wire, expect, timeout).await })
    }
}
