//! Writes: run on the key's primary, which decides the outcome and then applies its
//! resulting state of the key to the other owners (replication) before the client is
//! answered; and `flush_all`, which empties every node.

use std::sync::atomic::Ordering::Relaxed;

use bytes::{BufMut, Bytes, BytesMut};
use ringcache_protocol::text::frame::Expect;
use ringcache_protocol::text::peer::{encode_ring_mismatch, is_ring_mismatch, PeerRequest};
use ringcache_protocol::text::Request;

use super::placement::{put_fence, wire_for, Owners, Placed, Walk};
use super::repair::{owner_addrs, repair};
use super::{Ctx, OWNER_UNAVAILABLE, REPLICA_UNAVAILABLE, RING_CHANGING};
use crate::cluster::{Cluster, RingView};
use crate::exec::{self, Flow};
use crate::node::Node;

/// A single-key write: run here if this node is the primary (or the request came from
/// a peer), else forward to the primary, fenced with this node's ring version. If the
/// primary's ring differs it refuses without running the write; the write is then
/// placed again (with this node's ring once it changes) until `FENCE_WAIT` passes.
pub async fn write(ctx: &mut Ctx<'_>, req: Request, key: Bytes, out: &mut BytesMut) -> Flow {
    let noreply = req.noreply();
    let mut walk = Walk::new(ctx);
    let mut req = req;
    loop {
        let placed = walk
            .place(ctx, &key, Owners::Primary, 0, |v| wire_for(&req, v), Some)
            .await;
        let reply: &[u8] = match placed {
            Placed::Here { .. } => match write_here(ctx, &walk.view, req, &key, out).await {
                Ok(flow) => return flow,
                Err(_) if ctx.from_peer => {
                    // Not run: the sender places the write again.
                    encode_ring_mismatch(ctx.cluster.ring_version(), out);
                    return Flow::Continue;
                }
                Err(back) => {
                    if walk.retry(ctx.cluster).await {
                        req = back;
                        continue;
                    }
                    RING_CHANGING
                }
            },
            Placed::Reply(reply) => {
                if !noreply {
                    out.put_slice(&reply);
                }
                return Flow::Continue;
            }
            Placed::Unreachable => OWNER_UNAVAILABLE,
            Placed::RingChanging => RING_CHANGING,
        };
        if !noreply {
            out.put_slice(reply);
        }
        return Flow::Continue;
    }
}

/// Runs a write on this node as the key's primary (or for the peer that sent it) and
/// applies the result to the key's other owners; the client's answer is replaced by a
/// refusal when an owner did not take it. Gives the request back, not run, if this
/// node's ring is no longer `view` when it is about to run (the repair before it
/// waits on other nodes).
///
/// The ring is looked at again once the write is applied everywhere: if it changed
/// meanwhile, the write is not acknowledged ([`RING_CHANGING`]). A ring change
/// publishes the new ring and then hands every item to its new owners; a write
/// applied after that scan (placed with the old ring, which a batch or a repair can
/// hold on to for a while) would never reach the new owners, and once the old
/// primary fails or the key is purged here, reads would return the version before
/// it. The replicas make the same check (see `peer_connection`).
pub async fn write_here(
    ctx: &mut Ctx<'_>,
    view: &RingView,
    req: Request,
    key: &Bytes,
    out: &mut BytesMut,
) -> Result<Flow, Request> {
    let (node, cluster, now) = (ctx.node, ctx.cluster, ctx.now);
    repair(node, cluster, view, key, now).await;
    if cluster.ring_version() != view.version {
        cluster.stats.fence_retries.fetch_add(1, Relaxed);
        return Err(req);
    }
    let noreply = req.noreply();
    let before = out.len();
    let flow = exec::execute(node, req, now, ctx.counters, out);
    let mut outcome = replicate(node, cluster, view, key, now).await;
    if outcome.is_ok() && cluster.ring_version() != view.version {
        cluster.stats.fence_refusals.fetch_add(1, Relaxed);
        outcome = Err(RING_CHANGING);
    }
    if let Err(refusal) = outcome {
        // Applied here, but not on every owner: not acknowledged. (A later read may
        // still see it, as it may see any write whose answer was lost.)
        out.truncate(before);
        if !noreply {
            out.put_slice(refusal);
        }
    }
    Ok(flow)
}

/// Applies this node's current state of `key` to the key's other owners, fenced with
/// this node's ring version, and waits (bounded by the peer timeout) until they have
/// it. On failure, the reply the client gets instead of the write's own:
/// [`RING_CHANGING`] if an owner's ring differs (it refused the application),
/// [`REPLICA_UNAVAILABLE`] if an owner could not be reached or did not answer in time.
pub async fn replicate(
    node: &Node,
    cluster: &Cluster,
    view: &RingView,
    key: &Bytes,
    now: u32,
) -> Result<(), &'static [u8]> {
    let targets = owner_addrs(view, key, false);
    if targets.is_empty() {
        return Ok(());
    }
    let state = node.store.with(key, now, |slot| {
        slot.get().map(|i| (i.value.clone(), i.flags, i.exptime, i.cas))
    });
    let cmd = match state {
        Some((value, flags, exptime, cas)) => PeerRequest::Set {
            key: key.clone(),
            flags,
            exptime,
            cas,
            value,
        },
        None => PeerRequest::Del {
            key: key.clone(),
            cas: node.store.next_cas(),
        },
    };
    let mut wire = BytesMut::new();
    put_fence(view.version, &mut wire);
    cmd.encode(&mut wire);
    let wire = wire.freeze();
    let mut tasks = Vec::with_capacity(targets.len());
    for addr in targets {
        let apply = cluster
            .peer(addr)
            .request(wire.clone(), Expect::Line, cluster.peer_timeout);
        tasks.push(tokio::spawn(apply));
    }
    let mut outcome = Ok(());
    for t in tasks {
        match t.await {
            // Refused (ring mismatch), or applied just as the owner's ring changed.
            Ok(Ok(reply)) if is_ring_mismatch(&reply) || reply.starts_with(RING_CHANGING) => {
                cluster.stats.replication_errors.fetch_add(1, Relaxed);
                cluster.stats.fence_refusals.fetch_add(1, Relaxed);
                outcome = Err(RING_CHANGING);
            }
            // STORED or DELETED, or NOT_STORED / NOT_FOUND when the owner already holds
            // something newer: either way it has applied what it must.
            Ok(Ok(reply)) if !reply.starts_with(b"SERVER_ERROR") && !reply.starts_with(b"ERROR") => {
                cluster.stats.replicated.fetch_add(1, Relaxed);
            }
            _ => {
                cluster.stats.replication_errors.fetch_add(1, Relaxed);
                if outcome.is_ok() {
                    outcome = Err(REPLICA_UNAVAILABLE);
                }
            }
        }
    }
    outcome
}

/// Sends `flush_all <delay>` to every other member, concurrently, bounded by the peer
/// timeout.
pub async fn flush_everywhere(cluster: &Cluster, view: &RingView, delay: i64) {
    let mut wire = BytesMut::new();
    Request::FlushAll { delay, noreply: false }.encode_with(&mut wire, false);
    let wire = wire.freeze();
    let mut tasks = Vec::new();
    for (i, id) in view.ring.nodes().iter().enumerate() {
        if view.me.map(|m| m.get()) == Some(i) {
            continue;
        }
        let flush = cluster
            .peer(id.client)
            .request(wire.clone(), Expect::Line, cluster.peer_timeout);
        tasks.push(tokio::spawn(flush));
    }
    for t in tasks {
        if !matches!(t.await, Ok(Ok(_))) {
            cluster.stats.forward_errors.fetch_add(1, Relaxed);
        }
    }
}
