//! Read repair: in the window after a ring change, a key's owner asks the key's other
//! owners (under the current ring and the rings of the window) for their version and
//! keeps the newest, so it never serves a version older than one another owner holds.
//!
//! Only keys that changed hands in the window pay for it. A key whose primary was the
//! same node (same incarnation) under every ring of the window is served by its
//! primary at once ([`repair`] does nothing): every write of it acknowledged in the
//! window went through that node. A read that failed over to a later owner is served at
//! once when the key's owners were the same under every ring of the window (that owner
//! applied every such write); otherwise it is answered only if every other owner was
//! heard from ([`may_fail_over`]), and is a miss if not. `docs/ARCHITECTURE.md` ("After
//! a ring change") gives the argument.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use bytes::{Bytes, BytesMut};
use ringcache_protocol::cluster::NodeId;
use ringcache_protocol::text::frame::Expect;
use ringcache_protocol::text::peer::{parse_peer_value, PeerRequest, PeerValue};

use crate::cluster::{Cluster, RingView};
use crate::node::Node;
use crate::storage::Item;

/// Whether this node, as `key`'s primary under `view`, must repair it before serving it:
/// inside the repair window ([`Cluster::repairing`]), and only if the key's primary was
/// not this same node under every ring of the window ([`RingView::primary_moved`]).
pub fn needs_repair(cluster: &Cluster, view: &RingView, key: &[u8]) -> bool {
    cluster.repairing() && view.primary_moved(key)
}

/// When [`needs_repair`]: fetches `key` from its other owners and keeps the newest
/// version here (larger CAS wins, as for `rc_set`), so the primary never serves a
/// version older than one another owner holds.
///
/// A key whose primary stayed put needs none. Every acknowledged write is executed by
/// the key's primary under the ring it was placed with, while that node's ring is that
/// ring, before it is acknowledged (fencing, `write::write_here`). This node was the
/// primary under each ring it adopted in the window, and under the one before it, which
/// it had held for a whole window (so everything acknowledged before that had reached
/// it, the argument outside the window): so it executed every write acknowledged under
/// any of them. A write acknowledged under a ring it never adopted either had it as an
/// owner (impossible: an owner must be on the write's ring to apply it) or was placed
/// on nodes it never saw (see `docs/ARCHITECTURE.md` for that limit, which the full
/// repair shares).
pub async fn repair(node: &Node, cluster: &Cluster, view: &RingView, key: &Bytes, now: u32) {
    if needs_repair(cluster, view, key) {
        cluster.stats.repair_round_trips.fetch_add(1, Relaxed);
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
/// so it must hear from every other owner, under this ring and the rings of the
/// window, and keep the newest version before it answers: if one of them does not
/// answer, the version it may hold (acknowledged, and perhaps nowhere else alive) is
/// unknown, and the read is a miss rather than a possibly stale value.
///
/// Unless the key's owners were the same nodes (same incarnations) under this ring and
/// every ring of the window ([`RingView::owners_moved`]): then this node was an owner
/// under each of them, and a write acknowledged under any of them was applied by every
/// owner of its ring, this node included, before it was acknowledged. It holds every
/// acknowledged write of the key, as outside the window, and answers at once.
pub async fn may_fail_over(node: &Node, cluster: &Cluster, view: &RingView, key: &Bytes, now: u32) -> bool {
    if !cluster.repairing() || !view.owners_moved(key) {
        return true;
    }
    cluster.stats.repair_round_trips.fetch_add(1, Relaxed);
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

/// Asks the owners of `key` other than this node (under `view`'s ring and the rings of
/// its window; `skip` left out) for their version and keeps the newest here. Returns whether
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
        // Given up when the ring drops that owner (it failed), rather than waiting out
        // the peer timeout: the request this repair is for places itself again.
        let member = view.ring.nodes().iter().find(|id| id.client == addr).cloned();
        let dropped = member.map(|id| cluster.until_dropped_owned(id));
        tasks.push(tokio::spawn(async move {
            match dropped {
                Some(dropped) => tokio::select! {
                    r = ask => r,
                    () = dropped => Err(ringcache_client::Error::Closed),
                },
                None => ask.await,
            }
        }));
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
/// ring, and with `with_window` also its owners under the rings of the repair window
/// that are still members (the others are gone: asking them would only wait for a
/// timeout). This node is left out by name: under an earlier ring it may have had
/// another incarnation.
pub fn owner_addrs(view: &RingView, key: &[u8], with_window: bool) -> Vec<SocketAddr> {
    let me = view.me.and_then(|m| view.ring.node(m));
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let mut add = |id: &NodeId| {
        if me.is_none_or(|me| me.name != id.name) && !addrs.contains(&id.client) {
            addrs.push(id.client);
        }
    };
    for o in view.ring.owners(key).iter() {
        if let Some(id) = view.ring.node(*o) {
            add(id);
        }
    }
    if with_window {
        for earlier in &view.window {
            for o in earlier.owners(key).iter() {
                if let Some(id) = earlier
                    .node(*o)
                    .filter(|id| view.ring.index_of(id.name.as_bytes()).is_some())
                {
                    add(id);
                }
            }
        }
    }
    addrs
}
