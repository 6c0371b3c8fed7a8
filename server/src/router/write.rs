//! Writes: run on the key's primary, which decides the outcome and then applies its
//! resulting state of the key to the other owners (replication) before the client is
//! answered; and `flush_all`, which empties every node.

use std::sync::atomic::Ordering::Relaxed;

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use ringcache_protocol::text::frame::Expect;
use ringcache_protocol::text::meta::{MetaCommand, MetaMode};
use ringcache_protocol::text::peer::{encode_ring_mismatch, is_ring_mismatch, PeerRequest};
use ringcache_protocol::text::{Request, StoreMode};
use tokio::time::Instant;

use super::placement::{put_fence, wire_for, Owners, Placed, Walk};
use super::repair::{owner_addrs, repair};
use super::{Ctx, OWNER_UNAVAILABLE, REPLICA_UNAVAILABLE, RING_CHANGING};
use crate::cluster::{Cluster, RingView, FENCE_WAIT};
use crate::exec::{self, Flow};
use crate::node::Node;
use crate::stats::Counters;

/// A single-key write: run here if this node is the primary (or the request came from
/// a peer), else forward to the primary, fenced with this node's ring version. If the
/// primary's ring differs it refuses without running the write; the write is then
/// placed again (with this node's ring once it changes) until `FENCE_WAIT` passes.
///
/// When the primary cannot be reached, a write that may safely run twice
/// ([`may_run_twice`]: it may have run there before the primary failed) waits for the
/// membership's verdict ([`Cluster::verdict_wait`]): once the ring drops the primary,
/// the write is placed again and runs on the key's next owner; a primary that answers
/// again takes it itself. Other writes are refused with [`OWNER_UNAVAILABLE`], as a
/// client could not tell whether they ran.
pub async fn write(ctx: &mut Ctx<'_>, req: Request, key: Bytes, out: &mut BytesMut) -> Flow {
    let noreply = req.noreply();
    let mut walk = Walk::new(ctx);
    let verdict_by = Instant::now() + ctx.cluster.verdict_wait;
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
            Placed::Unreachable if walk.unreachable && may_run_twice(&req) => {
                ctx.cluster.stats.verdict_waits.fetch_add(1, Relaxed);
                match ctx.cluster.next_ring(&walk.view, verdict_by).await {
                    Some(next) => {
                        walk = Walk::until(next, Instant::now() + FENCE_WAIT);
                        continue;
                    }
                    None => OWNER_UNAVAILABLE,
                }
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

/// Whether running `req` a second time leaves what running it once leaves (the same
/// value, or the key gone): a write sent to a primary that then failed may or may not
/// have run there (and reached the other owners), so only these are placed again.
/// `set`, `delete`, `touch`, and meta sets and deletes without a CAS to compare;
/// not `add`, `replace`, `append`, `prepend`, `cas`, `incr` or `decr`.
pub fn may_run_twice(req: &Request) -> bool {
    match req {
        Request::Store(s) => s.mode == StoreMode::Set,
        Request::Delete { .. } | Request::Touch { .. } => true,
        Request::Meta(m) => match m.command {
            MetaCommand::Set => m.flags.compare_cas.is_none() && matches!(m.flags.mode, None | Some(MetaMode::Set)),
            MetaCommand::Delete => m.flags.compare_cas.is_none(),
            _ => false,
        },
        _ => false,
    }
}

/// Runs a write on this node as the key's primary (or for the peer that sent it) and
/// applies the result to the key's other owners ([`settle`]); the client's answer is
/// replaced by a refusal when they did not all take it. Gives the request back, not
/// run, if this node's ring is no longer `view` when it is about to run (the repair
/// before it waits on other nodes).
pub async fn write_here(
    ctx: &mut Ctx<'_>,
    view: &Arc<RingView>,
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
    if cluster.ring_revoked() {
        // The store was dropped while the repair waited (see `Cluster::drop_store`).
        if !noreply {
            out.put_slice(crate::cluster::STORE_DROPPED);
        }
        return Ok(Flow::Continue);
    }
    let before = out.len();
    let flow = exec::execute(node, req, now, ctx.counters, out);
    let applied = applied_state(node, key, now);
    if let Err(refusal) = settle(node, cluster, view.clone(), key, &applied, now).await {
        // Applied here, but not on every owner: not acknowledged. (A later read may
        // still see it, as it may see any write whose answer was lost.)
        out.truncate(before);
        if !noreply {
            out.put_slice(refusal);
        }
    }
    Ok(flow)
}

/// This node's state of `key` as the application to send the other owners: an
/// `rc_set` of the item, or an `rc_del` with a fresh CAS unique when there is none.
/// Taken once, right after the write ran: what is sent later (under a later ring,
/// after this node may have purged the key) is still what the write left.
pub fn applied_state(node: &Node, key: &Bytes, now: u32) -> PeerRequest {
    let state = node.store.with(key, now, |slot| {
        slot.get().map(|i| (i.value.clone(), i.flags, i.exptime, i.cas))
    });
    match state {
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
    }
}

/// Applies `applied` (see [`applied_state`]) to the key's other owners under `view`,
/// and again under each later ring, until every owner under the ring of the moment
/// has it: then the write may be acknowledged.
///
/// The ring is looked at again once the write is applied everywhere: a ring change
/// publishes the new ring and then hands every item to its new owners, and a write
/// applied here after that scan would not reach them; so under a new ring the state
/// is applied to the new ring's owners too. An owner that cannot be reached (or whose
/// ring disagrees) is tried again until the membership's verdict
/// ([`Cluster::verdict_wait`]): either it answers, or the ring drops it (a node
/// declared down comes back empty, see `membership`) and the ring without it is
/// settled instead. Past that, the refusal: [`REPLICA_UNAVAILABLE`] (an owner could
/// not be reached) or [`RING_CHANGING`] (an owner's ring kept disagreeing).
///
/// Settling under a later ring is what the client could do itself by retrying the
/// write once the ring changed, except that the state sent is the one this write left
/// (a retry would run `incr` twice); owners keep the newer of two versions by CAS
/// unique, so a version that arrives late never replaces a newer one.
pub async fn settle(
    node: &Node,
    cluster: &Cluster,
    view: Arc<RingView>,
    key: &Bytes,
    applied: &PeerRequest,
    now: u32,
) -> Result<(), &'static [u8]> {
    let deadline = Instant::now() + cluster.verdict_wait;
    let me = view.me.and_then(|m| view.ring.node(m)).cloned();
    let resets = cluster.stats.resets.load(Relaxed);
    let first = view.version;
    let mut view = view;
    loop {
        // Only as the member that ran the write: a node the others declared down comes
        // back under a new incarnation, and whatever it held then (this write
        // included) is dropped, not sent out under the new identity with a CAS
        // unique that could order above writes acknowledged without it meanwhile.
        // (Under its old identity, fencing keeps it out: no owner that declared it
        // down shares a ring with it.)
        if view.me.and_then(|m| view.ring.node(m)) != me.as_ref() || cluster.stats.resets.load(Relaxed) != resets {
            return Err(REPLICA_UNAVAILABLE);
        }
        if view.version != first && view.me.is_some_and(|m| view.ring.is_owner(key, m)) {
            // An owner under this ring too: hold the state here as well (a ring between
            // may have taken the key away from this node, and its purge with it).
            apply_here(node, applied, now);
        }
        // A ring change while the owners apply it: go on under the new ring at once
        // (every owner there gets the state again; a late reply from an owner of this
        // ring changes nothing), rather than wait out an owner that failed.
        let outcome = tokio::select! {
            outcome = replicate(cluster, &view, key, applied) => outcome,
            () = cluster.until_ring_changes(view.version) => Err(Refused::RingChanging),
        };
        let refusal = match outcome {
            Ok(()) if cluster.ring_version() == view.version => return Ok(()),
            Ok(()) => {
                cluster.stats.fence_refusals.fetch_add(1, Relaxed);
                RING_CHANGING
            }
            // An owner answered out of step, or with an error: no verdict will change that.
            Err(Refused::Failed) => return Err(REPLICA_UNAVAILABLE),
            Err(Refused::Unreachable) => REPLICA_UNAVAILABLE,
            Err(Refused::RingChanging) => RING_CHANGING,
        };
        cluster.stats.verdict_waits.fetch_add(1, Relaxed);
        match cluster.next_ring(&view, deadline).await {
            Some(next) => view = next,
            None => return Err(refusal),
        }
    }
}

/// Applies `applied` (an `rc_set` or `rc_del`, see [`applied_state`]) to this node's
/// store as a peer's would be: the newer version by CAS unique wins.
fn apply_here(node: &Node, applied: &PeerRequest, now: u32) {
    let mut out = BytesMut::new();
    let req = Request::Peer(applied.clone());
    exec::execute(node, req, now, &mut Counters::default(), &mut out);
}

/// Why an application did not reach every owner ([`replicate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// An owner's ring differs: it refused the application.
    RingChanging,
    /// An owner could not be reached, or did not answer in time.
    Unreachable,
    /// An owner answered, but with an error or out of step.
    Failed,
}

/// Applies `applied` to `key`'s owners other than this node under `view`, fenced with
/// its ring version, and waits (bounded by the peer timeout) until they have it.
pub async fn replicate(cluster: &Cluster, view: &RingView, key: &Bytes, applied: &PeerRequest) -> Result<(), Refused> {
    let targets = owner_addrs(view, key, false);
    if targets.is_empty() {
        return Ok(());
    }
    let mut wire = BytesMut::new();
    put_fence(view.version, &mut wire);
    applied.encode(&mut wire);
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
                outcome = Err(Refused::RingChanging);
            }
            // STORED or DELETED, or NOT_STORED / NOT_FOUND when the owner already holds
            // something newer: either way it has applied what it must.
            Ok(Ok(reply)) if !reply.starts_with(b"SERVER_ERROR") && !reply.starts_with(b"ERROR") => {
                cluster.stats.replicated.fetch_add(1, Relaxed);
            }
            failed => {
                cluster.stats.replication_errors.fetch_add(1, Relaxed);
                let why = match failed {
                    Ok(Err(e)) if e.is_unavailable() => Refused::Unreachable,
                    _ => Refused::Failed,
                };
                // The worst reason wins: a failure no verdict will mend, then an
                // unreachable owner, then a ring change.
                if outcome.is_ok() || why == Refused::Failed || outcome == Err(Refused::RingChanging) {
                    outcome = Err(why);
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
