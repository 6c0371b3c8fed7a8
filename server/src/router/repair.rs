//! Read repair: in the window after a ring change, a key's owner asks the key's other
//! owners (under the new ring and the previous one) for their version and keeps the
//! newest, so it never serves a version older than one another owner holds.
//!
//! A primary's own repair is best effort (every write acknowledged under the current
//! ring went through it). A read that failed over to this node has lost the primary, so
//! inside the window it is answered only if every other owner was heard from
//! ([`may_fail_over`]); otherwise it is a miss.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use bytes::{Bytes, BytesMut};
use ringcache_protocol::cluster::NodeId;
use ringcache_protocol::text::frame::Expect;
use ringcache_protocol::text::peer::{parse_peer_value, PeerRequest, PeerValue};

use crate::cluster::{Cluster, RingView};
use crate::node::Node;
use crate::storage::Item;

/// In the window after a ring change ([`Cluster::repairing`]), fetches `key` from its
/// other owners and keeps the newest version here (larger CAS wins, as for `rc_set`),
/// so the primary never serves a version older than one another owner holds.
pub async fn repair(node: &Node, cluster: &Cluster, view: &RingView, key: &Bytes, now: u32) {
    if cluster.repairing() {
        repair_from(node, cluster, view, key, now, None).await;
    }
}

/// Whether this node may answer a read of `key` although it is not the key's primary
/// under `view` (the primary failed, and the read failed over to this owner); the
/// read is a miss otherwise.
///
/// Outside the repair window this owner holds every acknowledged write of the key: a
/// write is acknowledged only once every owner under the ring of the moment applied it
/// (fencing), and the hand-off of an earlier ring change has long completed. Inside
/// the window the hand-off may still be on its way, and the repair that a primary
/// would make is best effort (an owner that does not answer is skipped), which is
/// safe only while the primary itself serves. A failover read has lost the primary,
/// so it must hear from every other owner, under this ring and the previous one,
/// and keep the newest version before it answers: if one of them does not answer,
/// the version it may hold (acknowledged, and perhaps nowhere else alive) is
/// unknown, and the read is a miss rather than a possibly stale value.
pub async fn may_fail_over(node: &Node, cluster: &Cluster, view: &RingView, key: &Bytes, now: u32) -> bool {
    if !cluster.repairing() {
        return true;
    }
    let failed = view
        .ring
        .primary(key)
        .and_then(|p| view.ring.node(p))
        .map(|id| id.client);
    let complete = repair_from(node, cluster, view, key, now, failed).await;
    if !complete {
        cluster.stats.failover_refusals.fetch_add(1, Relaxed);
    }
    complete
}

/// Asks the owners of `key` other than this node (under `view`'s ring and the previous
/// one; `skip` left out) for their version and keeps the newest here. Returns whether
/// every owner asked answered (a miss is an answer).
async fn repair_from(
    node: &Node,
    cluster: &Cluster,
    view: &RingView,
    key: &Bytes,
    now: u32,
    skip: Option<SocketAddr>,
) -> bool {
    let mut wire = BytesMut::new();
    PeerRequest::Get { key: key.clone() }.encode(&mut wire);
    let wire = wire.freeze();
    let mut tasks = Vec::new();
    for addr in owner_addrs(view, key, true) {
        if Some(addr) == skip {
            continue;
        }
        let ask = cluster
            .peer(addr)
            .request(wire.clone(), Expect::Values, cluster.peer_timeout);
        tasks.push(tokio::spawn(ask));
    }
    let mut complete = true;
    let mut newest: Option<PeerValue> = None;
    for t in tasks {
        let Ok(Ok(reply)) = t.await else {
            complete = false;
            continue;
        };
        match parse_peer_value(&reply, key) {
            Ok(Some(found)) => {
                if newest.as_ref().is_none_or(|n| found.cas > n.cas) {
                    newest = Some(found);
                }
            }
            Ok(None) => {}
            Err(_) => complete = false,
        }
    }
    let Some(PeerValue {
        value,
        flags,
        cas,
        exptime,
    }) = newest
    else {
        return complete;
    };
    if node
        .store
        .keep_newer(key, Item::new(value, flags, exptime, cas, now), now)
    {
        cluster.stats.repaired.fetch_add(1, Relaxed);
    }
    complete
}

/// The client addresses of `key`'s owners other than this node under the current
/// ring, and with `with_previous` also its owners under the previous ring that are
/// still members (the others are gone: asking them would only wait for a timeout).
pub fn owner_addrs(view: &RingView, key: &[u8], with_previous: bool) -> Vec<SocketAddr> {
    let me = view.me.and_then(|m| view.ring.node(m));
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let mut add = |id: &NodeId| {
        if Some(id) != me && !addrs.contains(&id.client) {
            addrs.push(id.client);
        }
    };
    for o in view.ring.owners(key).iter() {
        if let Some(id) = view.ring.node(*o) {
            add(id);
        }
    }
    if let (true, Some(previous)) = (with_previous, &view.previous) {
        for o in previous.owners(key).iter() {
            if let Some(id) = previous
                .node(*o)
                .filter(|id| view.ring.index_of(id.name.as_bytes()).is_some())
            {
                add(id);
            }
        }
    }
    addrs
}
