//! Where each request runs: here, on its owner, or on every owner.
//!
//! - A key whose primary owner is this node runs here; a write is then applied to
//!   the key's other owners (replicas) before the client gets its answer, so with R
//!   owners the loss of R-1 nodes loses no acknowledged write.
//! - A key owned elsewhere is forwarded to its primary over a pooled, pipelined peer
//!   connection and the owner's reply is relayed byte for byte. A read whose primary
//!   fails (refused, broken, or silent past the peer timeout) fails over to the next
//!   owner, and becomes a miss when none answers (or, just after a ring change, when
//!   that owner cannot confirm it holds the newest version); a write whose primary
//!   fails gets `SERVER_ERROR owner unavailable`. Nothing waits longer than the peer
//!   timeout per owner tried.
//! - Multi-key `get`/`gets`/`gat`/`gats` are split by primary, the parts sent
//!   concurrently, and the values merged back in the client's key order.
//! - `flush_all` empties every node.
//! - Requests arriving on a peer connection run here and are never forwarded again
//!   (rings can disagree for a moment while gossip converges, and a request must not
//!   bounce between nodes), but a write there still goes to the other owners.
//!
//! Fencing: every forwarded request and every replication is preceded by `rc_ring
//! <this node's ring version>`, and the receiver runs it only if its own ring has that
//! version (it answers `SERVER_ERROR ring mismatch` otherwise, without running it).
//! So a write is acknowledged only when its primary and every replica placed the key
//! with the same ring, and a forwarded read is answered only by a node that agrees it
//! is the key's owner. Without this, while nodes adopt a new ring one after another,
//! a node still on the old ring would keep using an old primary while others used
//! the new one, and a read could miss a write acknowledged a moment before. A refused
//! forward waits for this node's ring to change (or a short pause, in case the owner
//! is the one behind), places the key again and retries, for at most
//! `FENCE_WAIT`; then the client gets `SERVER_ERROR ring changing` (a read: a
//! miss). A refused replication fails the write (not acknowledged). While rings agree
//! this costs one short line per forwarded request and no extra round trip. A write
//! is acknowledged only if the primary's ring is still the one it was placed with
//! once every owner applied it, and each replica's was when it applied it (see
//! `write::write_here`): the hand-off after a ring change then carries every
//! acknowledged write to the key's new owners.
//!
//! In the repair window after a ring change, a key that changed hands is repaired by
//! its primary before it is served, and a read of it that failed over (this node
//! answers although it is not the key's primary) is answered only after every other
//! owner has been heard from (see `repair::may_fail_over`), a miss otherwise; a key
//! whose primary (for a failover: whose owners) stayed put is served at once.
//!
//! # Layout
//! - [`context`]: [`Ctx`], what every routing step runs with.
//! - [`placement`]: whether a key runs here ([`placement::is_primary_here`]), and the
//!   one walk over a key's owners (fencing, retry, failover) every request takes.
//! - [`read`]: meta reads and `get`/`gets`/`gat`/`gats` of one key or many.
//! - [`write`]: writes on the primary, replication, `flush_all` everywhere.
//! - [`repair`]: read repair in the window after a ring change.

pub mod context;
pub mod placement;
pub mod read;
pub mod repair;
pub mod write;

use bytes::{BufMut, Bytes, BytesMut};
use ringcache_protocol::text::meta::{MetaCommand, MetaRequest};
use ringcache_protocol::text::peer::PeerRequest;
use ringcache_protocol::text::{GetKind, GetRequest, Request};

pub use context::Ctx;

use crate::cluster::RingView;
use crate::exec::{self, Flow};
use crate::node::Node;
use crate::stats::Counters;

pub use ringcache_protocol::text::response::{OWNER_UNAVAILABLE, REPLICA_UNAVAILABLE, RING_CHANGING};

/// Runs one request in `ctx` (from a client, or from a peer), appending its reply to
/// `out`.
pub async fn handle(ctx: &mut Ctx<'_>, req: Request, out: &mut BytesMut) -> Flow {
    let (node, now) = (ctx.node, ctx.now);
    let refusal = match ctx.from_peer {
        false => ctx.cluster.refuse_keys().filter(|_| uses_keys(&req)),
        // A peer's requests run while this node joins (the peer placed them here), but
        // not while its side has no quorum: what it holds may be stale (a read repair
        // would take it), and a replica there must not acknowledge.
        // Nor just after it dropped its store, while still on the ring it held then.
        true => ctx.cluster.refuse_peer_keys().filter(|_| {
            uses_keys(&req)
                || matches!(
                    req,
                    Request::Peer(PeerRequest::Get { .. } | PeerRequest::Set { .. } | PeerRequest::Del { .. })
                )
        }),
    };
    if let Some(refusal) = refusal {
        if !req.noreply() {
            out.put_slice(refusal);
        }
        return Flow::Continue;
    }
    if ctx.view.ring.len() <= 1 {
        // A cluster of one: every key is local and there is nobody to replicate to.
        return match req {
            Request::Get(get) => {
                read::local_get(ctx, &get, out).await;
                Flow::Continue
            }
            req => exec::execute(node, req, now, ctx.counters, out),
        };
    }
    match &req {
        Request::Get(get) => {
            if ctx.from_peer {
                read::local_get(ctx, get, out).await;
            } else {
                read::get(ctx, get, out).await;
            }
            Flow::Continue
        }
        Request::Store(s) => {
            let key = s.key.clone();
            write::write(ctx, req, key, out).await
        }
        Request::Delete { key, .. } | Request::Arith { key, .. } | Request::Touch { key, .. } => {
            let key = key.clone();
            write::write(ctx, req, key, out).await
        }
        Request::FlushAll { delay, .. } => {
            let delay = *delay;
            let flow = exec::execute(node, req, now, ctx.counters, out);
            if !ctx.from_peer {
                write::flush_everywhere(ctx.cluster, ctx.view, delay).await;
            }
            flow
        }
        Request::Meta(m) => match meta_route(m) {
            MetaRoute::Local => exec::execute(node, req, now, ctx.counters, out),
            MetaRoute::Read => {
                let key = m.key.clone();
                read::read(ctx, req, key, out).await
            }
            MetaRoute::Write => {
                let key = m.key.clone();
                write::write(ctx, req, key, out).await
            }
        },
        Request::Version
        | Request::Verbosity { .. }
        | Request::Stats { .. }
        | Request::CacheMemlimit { .. }
        | Request::Quit
        | Request::Topology
        | Request::Peer(_) => exec::execute(node, req, now, ctx.counters, out),
    }
}

/// Drops `key` from every owner, as memcached drops a key whose new value was refused
/// (too large): the old value must not outlive a write the client believes replaced
/// it. Runs as a quiet `delete` placed like any other (its statistics are the owner's).
pub async fn unlink(ctx: &mut Ctx<'_>, key: Bytes) {
    let req = Request::Delete { key, noreply: true };
    let mut counters = Counters::default();
    let mut quiet = Ctx::new(ctx.node, ctx.cluster, ctx.view, ctx.from_peer, ctx.now, &mut counters);
    handle(&mut quiet, req, &mut BytesMut::new()).await;
}

/// Whether a client's retrieval can run entirely here, key by key straight into the
/// connection's output (so a huge multi-get never builds a huge reply): on a node
/// without a cluster or a cluster of one, and when this node is the primary of every
/// key ([`placement::is_primary_here`]) and none needs a read repair first
/// ([`repair::needs_repair`]: in the repair window, a key that changed hands), and the
/// command does not touch (which would have to update the replicas).
pub fn runs_here(node: &Node, view: Option<&RingView>, get: &GetRequest) -> bool {
    let (Some(cluster), Some(view)) = (&node.cluster, view) else {
        return true;
    };
    if matches!(get.kind, GetKind::Gat { .. } | GetKind::Gats { .. }) {
        return false;
    }
    if cluster.refuse_keys().is_some() {
        return false;
    }
    if view.ring.len() <= 1 {
        return true;
    }
    let repairing = cluster.repairing();
    get.keys
        .iter()
        .all(|k| placement::is_primary_here(view, &k) && !(repairing && view.primary_moved(&k)))
}

/// Whether [`handle`] would run a client's `req` straight through
/// [`exec::execute`], with nothing to await: a cluster of one that does not refuse
/// the request, and not a retrieval (which [`handle`] runs as `read::local_get`). The
/// connection then calls [`exec::execute`] itself and skips boxing [`handle`]'s
/// future, an allocation and a copy of its state for every such request.
pub fn runs_locally(cluster: &crate::cluster::Cluster, view: &RingView, req: &Request) -> bool {
    !matches!(req, Request::Get(_))
        && if uses_keys(req) {
            keys_run_here(cluster, view)
        } else {
            view.ring.len() <= 1
        }
}

/// Whether this node runs every key command itself, with nothing to route: a cluster
/// of one that does not refuse keys.
pub fn keys_run_here(cluster: &crate::cluster::Cluster, view: &RingView) -> bool {
    view.ring.len() <= 1 && cluster.refuse_keys().is_none()
}

/// Whether `req` reads or changes items (which a node still joining must refuse).
fn uses_keys(req: &Request) -> bool {
    match req {
        Request::Get(_)
        | Request::Store(_)
        | Request::Delete { .. }
        | Request::Arith { .. }
        | Request::Touch { .. }
        | Request::FlushAll { .. } => true,
        Request::Meta(m) => m.command != MetaCommand::NoOp,
        Request::Version
        | Request::Verbosity { .. }
        | Request::Stats { .. }
        | Request::CacheMemlimit { .. }
        | Request::Quit
        | Request::Topology
        | Request::Peer(_) => false,
    }
}

/// How a meta command is routed.
enum MetaRoute {
    /// `mn`: answered here.
    Local,
    /// Reads: `mg` without flags that change the item, `me`.
    Read,
    /// Everything that may change the item.
    Write,
}

fn meta_route(m: &MetaRequest) -> MetaRoute {
    match m.command {
        MetaCommand::NoOp => MetaRoute::Local,
        MetaCommand::Debug => MetaRoute::Read,
        // N creates, T touches, R and the lease flags hand out a win token: all are
        // decided by the primary and must reach the replicas.
        MetaCommand::Get if ![b'N', b'T', b'R', b'E'].iter().any(|&f| m.flags.has(f)) => MetaRoute::Read,
        MetaCommand::Get | MetaCommand::Set | MetaCommand::Delete | MetaCommand::Arithmetic => MetaRoute::Write,
    }
}

#[cfg(test)]
mod tests;
