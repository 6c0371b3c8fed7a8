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
//! [`FENCE_WAIT`]; then the client gets `SERVER_ERROR ring changing` (a read: a
//! miss). A refused replication fails the write (not acknowledged). While rings agree
//! this costs one short line per forwarded request and no extra round trip. A write
//! is acknowledged only if the primary's ring is still the one it was placed with
//! once every owner applied it, and each replica's was when it applied it (see
//! [`write_here`]): the hand-off after a ring change then carries every
//! acknowledged write to the key's new owners.
//!
//! A read that failed over (this node answers although it is not the key's primary)
//! is answered within the repair window only after every other owner has been heard
//! from (see [`may_fail_over`]); otherwise it is a miss.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use ringcache_client::Error as ClientError;
use ringcache_protocol::cluster::NodeId;
use ringcache_protocol::ring::NodeIdx;
use ringcache_protocol::text::frame::Expect;
use ringcache_protocol::text::meta::{MetaCommand, MetaRequest};
use ringcache_protocol::text::peer::{
    encode_ring_mismatch, is_ring_mismatch, parse_peer_value, PeerRequest, PeerValue,
};
use ringcache_protocol::text::{response, GetKind, GetRequest, Keys, Request};
use tokio::time::Instant;

use crate::cluster::{Cluster, RingView, FENCE_WAIT};
use crate::exec::{self, Flow};
use crate::forward_stats::Outcome;
use crate::node::Node;
use crate::stats::Counters;
use crate::storage::Item;

/// The reply to a write whose owner cannot be reached.
pub const OWNER_UNAVAILABLE: &[u8] = b"SERVER_ERROR owner unavailable\r\n";

/// The reply to a request that could not be placed because this node and the key's
/// owners disagree on the ring, and did not agree again within [`FENCE_WAIT`] (or, for
/// a write, because an owner refused its application for that reason). Nothing was
/// acknowledged; the client may retry.
pub const RING_CHANGING: &[u8] = b"SERVER_ERROR ring changing\r\n";

/// The reply to a write the primary applied but could not apply on every live owner.
pub const REPLICA_UNAVAILABLE: &[u8] = b"SERVER_ERROR replica unavailable\r\n";

/// Runs one request from a client (`from_peer` false) or a peer (`from_peer` true),
/// placing keys with `view` (the connection takes the current ring once per batch).
#[allow(clippy::too_many_arguments)]
pub async fn handle(
    node: &Node,
    cluster: &Cluster,
    view: &Arc<RingView>,
    req: Request,
    from_peer: bool,
    now: u32,
    c: &mut Counters,
    out: &mut BytesMut,
) -> Flow {
    let refusal = match from_peer {
        false => cluster.refuse_keys().filter(|_| uses_keys(&req)),
        // A peer's requests run while this node joins (the peer placed them here), but
        // not while its side has no quorum: what it holds may be stale (a read repair
        // would take it), and a replica there must not acknowledge.
        true => (!cluster.membership.in_quorum()
            && (uses_keys(&req)
                || matches!(
                    req,
                    Request::Peer(PeerRequest::Get { .. } | PeerRequest::Set { .. } | PeerRequest::Del { .. })
                )))
        .then_some(crate::cluster::NO_QUORUM),
    };
    if let Some(refusal) = refusal {
        if !req.noreply() {
            out.put_slice(refusal);
        }
        return Flow::Continue;
    }
    if view.ring.len() <= 1 {
        // A cluster of one: every key is local and there is nobody to replicate to.
        return match req {
            Request::Get(get) => {
                local_get(node, cluster, view, &get, now, c, out).await;
                Flow::Continue
            }
            req => exec::execute(node, req, now, c, out),
        };
    }
    match &req {
        Request::Get(get) => {
            let get = get.clone();
            if from_peer || view.ring.len() <= 1 {
                local_get(node, cluster, view, &get, now, c, out).await;
            } else {
                multi_get(node, cluster, view, get, now, c, out).await;
            }
            Flow::Continue
        }
        Request::Store(s) => {
            let key = s.key.clone();
            write(node, cluster, view, req, key, from_peer, now, c, out).await
        }
        Request::Delete { key, .. } | Request::Arith { key, .. } | Request::Touch { key, .. } => {
            let key = key.clone();
            write(node, cluster, view, req, key, from_peer, now, c, out).await
        }
        Request::FlushAll { delay, .. } => {
            let delay = *delay;
            let flow = exec::execute(node, req, now, c, out);
            if !from_peer {
                flush_everywhere(cluster, view, delay).await;
            }
            flow
        }
        Request::Meta(m) => match meta_route(m) {
            MetaRoute::Local => exec::execute(node, req, now, c, out),
            MetaRoute::Read => {
                let key = m.key.clone();
                read(node, cluster, view, req, key, from_peer, now, c, out).await
            }
            MetaRoute::Write => {
                let key = m.key.clone();
                write(node, cluster, view, req, key, from_peer, now, c, out).await
            }
        },
        Request::Version
        | Request::Verbosity { .. }
        | Request::Stats { .. }
        | Request::CacheMemlimit { .. }
        | Request::Quit
        | Request::Topology
        | Request::Peer(_) => exec::execute(node, req, now, c, out),
    }
}

/// Drops `key` from every owner, as memcached drops a key whose new value was refused
/// (too large): the old value must not outlive a write the client believes replaced
/// it. Runs as a quiet `delete` placed like any other (its statistics are the owner's).
pub async fn unlink(node: &Node, cluster: &Cluster, view: &Arc<RingView>, key: Bytes, now: u32) {
    let req = Request::Delete { key, noreply: true };
    let mut scratch = BytesMut::new();
    handle(
        node,
        cluster,
        view,
        req,
        false,
        now,
        &mut Counters::default(),
        &mut scratch,
    )
    .await;
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

/// A single-key write: run here if this node is the primary (or the request came from
/// a peer), else forward to the primary, fenced with this node's ring version. If the
/// primary's ring differs it refuses without running the write; the write is then
/// placed again (with this node's ring once it changes) until [`FENCE_WAIT`] passes.
#[allow(clippy::too_many_arguments)]
async fn write(
    node: &Node,
    cluster: &Cluster,
    view: &Arc<RingView>,
    req: Request,
    key: Bytes,
    from_peer: bool,
    now: u32,
    c: &mut Counters,
    out: &mut BytesMut,
) -> Flow {
    let noreply = req.noreply();
    let deadline = Instant::now() + FENCE_WAIT;
    let mut view = view.clone();
    let mut req = req;
    loop {
        if !from_peer && view.version != cluster.ring_version() {
            // The batch's ring is out of date: place with the current one.
            view = cluster.ring();
        }
        let primary = view.ring.primary(&key);
        let Some(owner) = primary.filter(|p| !from_peer && Some(*p) != view.me) else {
            match write_here(node, cluster, &view, req, &key, now, c, out).await {
                Ok(flow) => return flow,
                Err(_) if from_peer => {
                    // Not run: the sender places the write again.
                    encode_ring_mismatch(cluster.ring_version(), out);
                    return Flow::Continue;
                }
                Err(back) => match cluster.next_ring(&view, deadline).await {
                    Some(next) => {
                        req = back;
                        view = next;
                        continue;
                    }
                    None => {
                        if !noreply {
                            out.put_slice(RING_CHANGING);
                        }
                        return Flow::Continue;
                    }
                },
            }
        };
        let (wire, expect) = wire_for(&req, view.version);
        let reply = match forward(cluster, &view, owner, wire, expect).await {
            Ok(reply) if is_ring_mismatch(&reply) => match cluster.next_ring(&view, deadline).await {
                Some(next) => {
                    view = next;
                    continue;
                }
                None => RING_CHANGING,
            },
            Ok(reply) => {
                if !noreply {
                    out.put_slice(&reply);
                }
                return Flow::Continue;
            }
            Err(_) => OWNER_UNAVAILABLE,
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
/// it. The replicas make the same check (see `connection`).
#[allow(clippy::too_many_arguments)]
async fn write_here(
    node: &Node,
    cluster: &Cluster,
    view: &RingView,
    req: Request,
    key: &Bytes,
    now: u32,
    c: &mut Counters,
    out: &mut BytesMut,
) -> Result<Flow, Request> {
    repair(node, cluster, view, key, now).await;
    if cluster.ring_version() != view.version {
        cluster.stats.fence_retries.fetch_add(1, Relaxed);
        return Err(req);
    }
    let noreply = req.noreply();
    let before = out.len();
    let flow = exec::execute(node, req, now, c, out);
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

/// A single-key read (a meta get or debug): run here if this node owns the key (or
/// the request came from a peer), else ask the owners in order, primary first; a miss
/// when none answers. Owners are asked with this node's ring version; one whose ring
/// differs refuses, and the read is placed again as a write is (see [`write`]), and
/// becomes a miss when the rings do not agree by [`FENCE_WAIT`].
#[allow(clippy::too_many_arguments)]
async fn read(
    node: &Node,
    cluster: &Cluster,
    view: &Arc<RingView>,
    req: Request,
    key: Bytes,
    from_peer: bool,
    now: u32,
    c: &mut Counters,
    out: &mut BytesMut,
) -> Flow {
    let deadline = Instant::now() + FENCE_WAIT;
    let mut view = view.clone();
    'placed: loop {
        let owners = view.ring.owners(&key);
        if from_peer || owners.is_empty() || owners.primary() == view.me {
            repair(node, cluster, &view, &key, now).await;
            return exec::execute(node, req, now, c, out);
        }
        let (wire, expect) = wire_for(&req, view.version);
        for (i, owner) in owners.iter().enumerate() {
            if Some(*owner) == view.me {
                // The owners before this one failed.
                if !may_fail_over(node, cluster, &view, &key, now).await {
                    break 'placed;
                }
                return exec::execute(node, req, now, c, out);
            }
            if i > 0 {
                cluster.stats.read_failovers.fetch_add(1, Relaxed);
            }
            match forward(cluster, &view, *owner, wire.clone(), expect).await {
                Ok(reply) if is_ring_mismatch(&reply) => match cluster.next_ring(&view, deadline).await {
                    Some(next) => {
                        view = next;
                        continue 'placed;
                    }
                    None => break 'placed,
                },
                Ok(reply) => {
                    out.put_slice(&reply);
                    return Flow::Continue;
                }
                Err(_) => {}
            }
        }
        break;
    }
    // No owner answered: a miss, as the owner would have said it.
    c.get_misses += 1;
    if let Request::Meta(m) = &req {
        if !m.flags.quiet() {
            out.put_slice(b"EN\r\n");
        }
    }
    Flow::Continue
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

/// Appends `rc_ring <version>`: the owner runs the request that follows only if its
/// ring has the same version (see `ringcache_protocol::text::peer`).
fn put_fence(version: u64, wire: &mut BytesMut) {
    PeerRequest::Ring { version }.encode(wire);
}

/// The bytes to send an owner for `req` placed with ring `version` (fenced with it),
/// and the reply shape. `noreply` is cleared (the reply decides what to relay); a
/// quiet meta command keeps its `q`, so the owner's own quiet-mode rules decide what
/// the client sees (its reply may be empty: a peer's reply comes with its length).
fn wire_for(req: &Request, version: u64) -> (Bytes, Expect) {
    let mut wire = BytesMut::new();
    put_fence(version, &mut wire);
    match req {
        Request::Meta(m) => {
            // As parsed, `q` included.
            m.encode(&mut wire);
            let expect = if m.flags.quiet() {
                Expect::MetaQuiet
            } else {
                Expect::Meta
            };
            (wire.freeze(), expect)
        }
        _ => {
            req.encode_with(&mut wire, false);
            (wire.freeze(), expect_of(req))
        }
    }
}

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
        let pool = cluster.peer(addr);
        let (wire, timeout) = (wire.clone(), cluster.peer_timeout);
        tasks.push(tokio::spawn(async move {
            pool.request(wire, Expect::Values, timeout).await
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
/// ring, and with `with_previous` also its owners under the previous ring that are
/// still members (the others are gone: asking them would only wait for a timeout).
fn owner_addrs(view: &RingView, key: &[u8], with_previous: bool) -> Vec<SocketAddr> {
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
        let pool = cluster.peer(addr);
        let wire = wire.clone();
        let timeout = cluster.peer_timeout;
        tasks.push(tokio::spawn(
            async move { pool.request(wire, Expect::Line, timeout).await },
        ));
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

/// Sends `wire` to `owner` and returns its reply.
async fn forward(
    cluster: &Cluster,
    view: &RingView,
    owner: NodeIdx,
    wire: Bytes,
    expect: Expect,
) -> Result<Bytes, ClientError> {
    let id = view.ring.node(owner).ok_or(ClientError::NoNode)?;
    cluster.stats.forwarded.fetch_add(1, Relaxed);
    let started = Instant::now();
    let result = cluster
        .peer(id.client)
        .request(wire, expect, cluster.peer_timeout)
        .await;
    let outcome = match &result {
        Err(ClientError::Timeout(_)) => {
            cluster.stats.forward_timeouts.fetch_add(1, Relaxed);
            Outcome::TimedOut
        }
        Err(_) => {
            cluster.stats.forward_errors.fetch_add(1, Relaxed);
            Outcome::Failed
        }
        Ok(_) => Outcome::Replied,
    };
    // The one place forwards are timed (`/metrics`: ringcache_forward_duration_seconds).
    cluster.forwards.peer(&id.name).observe(started.elapsed(), outcome);
    result
}

fn expect_of(req: &Request) -> Expect {
    match req {
        Request::Get(_) => Expect::Values,
        Request::Stats { .. } | Request::Topology => Expect::Lines,
        Request::Meta(_) => Expect::Meta,
        _ => Expect::Line,
    }
}

/// Runs a retrieval here; a touching one (`gat`/`gats`) then updates the replicas.
async fn local_get(
    node: &Node,
    cluster: &Cluster,
    view: &RingView,
    get: &GetRequest,
    now: u32,
    c: &mut Counters,
    out: &mut BytesMut,
) {
    for key in get.keys.iter() {
        if view.ring.len() > 1 && view.ring.primary(&key) != view.me {
            // A peer's read failed over to this owner.
            if !may_fail_over(node, cluster, view, &key, now).await {
                count_remote_get(get.kind, false, c);
                continue;
            }
        } else {
            repair(node, cluster, view, &key, now).await;
        }
        exec::retrieve_one(node, get.kind, &key, now, c, out);
        if is_touching(get.kind) {
            // A touch that did not reach every owner still answers with the value.
            let _ = replicate(node, cluster, view, &key, now).await;
        }
    }
    out.put_slice(response::END);
}

fn is_touching(kind: GetKind) -> bool {
    matches!(kind, GetKind::Gat { .. } | GetKind::Gats { .. })
}

/// Splits a multi-key retrieval by primary owner, runs the parts concurrently, and
/// writes the values in the client's key order.
async fn multi_get(
    node: &Node,
    cluster: &Cluster,
    view: &Arc<RingView>,
    get: GetRequest,
    now: u32,
    c: &mut Counters,
    out: &mut BytesMut,
) {
    let keys: Vec<Bytes> = get.keys.iter().collect();
    let mut local = Vec::new();
    let mut remote: HashMap<NodeIdx, Vec<usize>> = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        match view.ring.primary(key) {
            Some(p) if Some(p) != view.me => remote.entry(p).or_default().push(i),
            _ => local.push(i),
        }
    }
    if remote.is_empty() {
        local_get(node, cluster, view, &get, now, c, out).await;
        return;
    }
    // Start the remote parts first so they run while the local keys are read.
    let mut parts = Vec::with_capacity(remote.len());
    for (owner, idxs) in remote {
        let raw: Vec<&[u8]> = idxs.iter().map(|&i| &keys[i][..]).collect();
        let part = Request::Get(GetRequest {
            kind: get.kind,
            keys: Keys::new(Bytes::from(raw.join(&b' '))),
        });
        let (wire, _) = wire_for(&part, view.version);
        let Some(id) = view.ring.node(owner) else { continue };
        let pool = cluster.peer(id.client);
        let timeout = cluster.peer_timeout;
        cluster.stats.forwarded.fetch_add(1, Relaxed);
        let task = tokio::spawn(async move { pool.request(wire, Expect::Values, timeout).await });
        parts.push((idxs, task));
    }
    let mut blocks: Vec<Option<Bytes>> = vec![None; keys.len()];
    for i in local {
        repair(node, cluster, view, &keys[i], now).await;
        blocks[i] = read_here(node, cluster, view, get.kind, &keys[i], now, c).await;
    }
    for (idxs, task) in parts {
        let reply = match task.await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Closed),
        };
        if reply.as_ref().is_ok_and(|r| is_ring_mismatch(r)) {
            // The owner places keys differently: place each key again.
            let deadline = Instant::now() + FENCE_WAIT;
            for i in idxs {
                blocks[i] = get_again(node, cluster, view, get.kind, &keys[i], now, c, deadline).await;
            }
            continue;
        }
        match reply.ok().and_then(|r| value_blocks(&r)) {
            Some(found) => {
                for i in idxs {
                    count_remote_get(get.kind, found.contains_key(&keys[i]), c);
                    blocks[i] = found.get(&keys[i]).cloned();
                }
            }
            None => {
                cluster.stats.forward_errors.fetch_add(1, Relaxed);
                // The primary failed: read each of its keys from the next owners.
                for i in idxs {
                    blocks[i] = failover_get(node, cluster, view, get.kind, &keys[i], now).await;
                    count_remote_get(get.kind, blocks[i].is_some(), c);
                }
            }
        }
    }
    for block in blocks.into_iter().flatten() {
        out.put_slice(&block);
    }
    out.put_slice(response::END);
}

/// Counts a key answered by another node the way a local lookup would count.
fn count_remote_get(kind: GetKind, hit: bool, c: &mut Counters) {
    c.cmd_get += 1;
    match (is_touching(kind), hit) {
        (false, true) => c.get_hits += 1,
        (false, false) => c.get_misses += 1,
        (true, true) => c.touch_hits += 1,
        (true, false) => c.touch_misses += 1,
    }
}

/// Reads one key of a retrieval here (the caller has repaired it or checked
/// [`may_fail_over`]): its `VALUE` block, `None` on a miss. A touching retrieval's new
/// expiry goes to the other owners; one that does not reach them all still answers.
#[allow(clippy::too_many_arguments)]
async fn read_here(
    node: &Node,
    cluster: &Cluster,
    view: &RingView,
    kind: GetKind,
    key: &Bytes,
    now: u32,
    c: &mut Counters,
) -> Option<Bytes> {
    let mut block = BytesMut::new();
    exec::retrieve_one(node, kind, key, now, c, &mut block);
    if is_touching(kind) {
        let _ = replicate(node, cluster, view, key, now).await;
    }
    (!block.is_empty()).then(|| block.freeze())
}

/// Reads one key from its owners after the primary, first answer wins; `None` (a
/// miss) when none answers. This node, if it is the next owner, answers only as
/// [`may_fail_over`] allows.
async fn failover_get(
    node: &Node,
    cluster: &Cluster,
    view: &RingView,
    kind: GetKind,
    key: &Bytes,
    now: u32,
) -> Option<Bytes> {
    let owners = view.ring.owners(key);
    let req = Request::Get(GetRequest {
        kind,
        keys: Keys::new(key.clone()),
    });
    // An owner whose ring differs answers with an error line: no value, next owner.
    let (wire, _) = wire_for(&req, view.version);
    for owner in owners.iter().skip(1) {
        cluster.stats.read_failovers.fetch_add(1, Relaxed);
        if Some(*owner) == view.me {
            if !may_fail_over(node, cluster, view, key, now).await {
                return None;
            }
            // The caller counts the lookup.
            return read_here(node, cluster, view, kind, key, now, &mut Counters::default()).await;
        }
        if let Ok(reply) = forward(cluster, view, *owner, wire.clone(), Expect::Values).await {
            if let Some(found) = value_blocks(&reply) {
                return found.get(key).cloned();
            }
        }
    }
    None
}

/// One key of a retrieval whose owner refused it because its ring differs from
/// `view`: waits for this node's ring to change (or a short pause), places the key
/// again and reads it here (if this node is now its primary) or from its owners in
/// order, until the rings agree or `deadline` passes; `None` (a miss) then, or when no
/// owner answers. Counts the lookup like a local one.
#[allow(clippy::too_many_arguments)]
async fn get_again(
    node: &Node,
    cluster: &Cluster,
    view: &Arc<RingView>,
    kind: GetKind,
    key: &Bytes,
    now: u32,
    c: &mut Counters,
    deadline: Instant,
) -> Option<Bytes> {
    let mut view = view.clone();
    let req = Request::Get(GetRequest {
        kind,
        keys: Keys::new(key.clone()),
    });
    'placed: while let Some(next) = cluster.next_ring(&view, deadline).await {
        view = next;
        let owners = view.ring.owners(key);
        let (wire, _) = wire_for(&req, view.version);
        for (i, owner) in owners.iter().enumerate() {
            if Some(*owner) == view.me {
                if i == 0 {
                    repair(node, cluster, &view, key, now).await;
                } else if !may_fail_over(node, cluster, &view, key, now).await {
                    break 'placed;
                }
                return read_here(node, cluster, &view, kind, key, now, c).await;
            }
            match forward(cluster, &view, *owner, wire.clone(), Expect::Values).await {
                Ok(reply) if is_ring_mismatch(&reply) => continue 'placed,
                Ok(reply) => {
                    let found = value_blocks(&reply).and_then(|mut f| f.remove(key));
                    count_remote_get(kind, found.is_some(), c);
                    return found;
                }
                Err(_) => cluster.stats.read_failovers.fetch_add(1, Relaxed),
            };
        }
        break;
    }
    count_remote_get(kind, false, c);
    None
}

/// Splits a retrieval reply into its `VALUE` blocks by key; `None` if the reply is an
/// error line or malformed.
///
/// It slices the blocks out of the reply rather than decoding them with
/// `text::response::parse_response` and encoding them again: the owner's bytes are
/// relayed as they are, without a copy.
pub fn value_blocks(reply: &Bytes) -> Option<HashMap<Bytes, Bytes>> {
    let mut found = HashMap::new();
    let mut pos = 0;
    loop {
        let rest = &reply[pos..];
        let nl = memchr::memchr(b'\n', rest)?;
        let line = &rest[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"END" {
            return Some(found);
        }
        let header = line.strip_prefix(b"VALUE ")?;
        let mut fields = header.split(|&b| b == b' ');
        let key = fields.next()?;
        let len: usize = std::str::from_utf8(fields.nth(1)?).ok()?.parse().ok()?;
        let end = pos + nl + 1 + len + 2;
        if end > reply.len() {
            return None;
        }
        let key = reply.slice_ref(key);
        found.entry(key).or_insert_with(|| reply.slice(pos..end));
        pos = end;
    }
}

/// Sends `flush_all <delay>` to every other member, concurrently, bounded by the peer
/// timeout.
async fn flush_everywhere(cluster: &Cluster, view: &RingView, delay: i64) {
    let mut wire = BytesMut::new();
    Request::FlushAll { delay, noreply: false }.encode_with(&mut wire, false);
    let wire = wire.freeze();
    let mut tasks = Vec::new();
    for (i, id) in view.ring.nodes().iter().enumerate() {
        if view.me.map(|m| m.get()) == Some(i) {
            continue;
        }
        let pool = cluster.peer(id.client);
        let wire = wire.clone();
        let timeout = cluster.peer_timeout;
        tasks.push(tokio::spawn(
            async move { pool.request(wire, Expect::Line, timeout).await },
        ));
    }
    for t in tasks {
        if !matches!(t.await, Ok(Ok(_))) {
            cluster.stats.forward_errors.fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_value_blocks_by_key() {
        let reply = Bytes::from_static(b"VALUE a 0 1\r\nx\r\nVALUE b 5 3 77\r\n\r\n\n\r\nEND\r\n");
        let found = value_blocks(&reply).unwrap();
        assert_eq!(
            found[&Bytes::from_static(b"a")],
            Bytes::from_static(b"VALUE a 0 1\r\nx\r\n")
        );
        assert_eq!(
            found[&Bytes::from_static(b"b")],
            Bytes::from_static(b"VALUE b 5 3 77\r\n\r\n\n\r\n")
        );
        assert!(value_blocks(&Bytes::from_static(b"SERVER_ERROR x\r\n")).is_none());
        assert!(value_blocks(&Bytes::from_static(b"VALUE a 0 9\r\nx\r\nEND\r\n")).is_none());
        assert_eq!(value_blocks(&Bytes::from_static(b"END\r\n")).map(|f| f.len()), Some(0));
    }
}
