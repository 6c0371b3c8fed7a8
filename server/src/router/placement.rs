//! Where a key runs, and the one walk over its owners that every request takes.
//!
//! [`is_primary_here`] is the one answer to "does this key run here": the connection's
//! fast path for retrievals ([`super::runs_here`]) and every routing decision ask it.
//!
//! [`Walk::place`] walks a key's owners in ring order, primary first: it answers
//! [`Placed::Here`] when this node is the owner to run it (the primary, or the next
//! owner once those before it failed), sends it to the owner otherwise (fenced with the
//! ring version it was placed with, through [`forward`]), fails over to the next owner
//! when one cannot answer (reads only: a write whose primary fails is not
//! acknowledged), and when an owner refuses it for a ring mismatch waits for the next
//! ring ([`Cluster::next_ring`]) and places the key again, until [`FENCE_WAIT`] has
//! passed. Writes, single-key reads, one-key and multi-key retrievals all go through
//! it; a multi-key retrieval only batches the first step (one part per primary) and
//! continues each key's walk from there when its part fails.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ringcache_client::Error as ClientError;
use ringcache_protocol::ring::NodeIdx;
use ringcache_protocol::text::frame::Expect;
use ringcache_protocol::text::peer::{is_ring_mismatch, PeerRequest};
use ringcache_protocol::text::Request;
use tokio::time::Instant;

use super::Ctx;
use crate::cluster::{Cluster, RingView, FENCE_WAIT, READ_HEDGE};
use crate::forward_stats::Outcome;

/// Whether `key` runs here under `view`: on a cluster of one (or none), and when this
/// node is the key's primary owner.
pub fn is_primary_here(view: &RingView, key: &[u8]) -> bool {
    view.ring.len() <= 1 || view.ring.primary(key).is_none_or(|p| Some(p) == view.me)
}

/// Which owners a request may be sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// Only the primary: it decides a write's outcome, and a write it did not take is
    /// not acknowledged.
    Primary,
    /// The primary, then each next owner in turn when those before it failed (reads).
    All,
}

/// Where a walk placed a request.
#[derive(Debug)]
pub enum Placed<R> {
    /// Run it here, placed with [`Walk::view`]. `failover` when this node is not the
    /// key's primary: the owners before it failed (see `repair::may_fail_over`).
    Here {
        /// This node is not the key's primary: the owners before it failed.
        failover: bool,
    },
    /// An owner answered; what the walk's reader made of its reply.
    Reply(R),
    /// No owner it may ask could answer.
    Unreachable,
    /// The owners kept refusing it for a ring mismatch until [`FENCE_WAIT`] passed.
    RingChanging,
}

/// One request's walk over its key's owners: the ring it is placed with now, and until
/// when it may wait for the rings to agree.
pub struct Walk {
    /// The ring the request is placed with (the latest ring after a retry).
    pub view: Arc<RingView>,
    deadline: Instant,
    /// Whether the last owner that failed could not be reached (refused, reset, closed,
    /// silent, or dropped from the ring) rather than answering out of step: only then
    /// may the membership's verdict on it be worth waiting for.
    pub unreachable: bool,
}

impl Walk {
    /// A walk starting from the request's ring, allowed [`FENCE_WAIT`] from now.
    pub fn new(ctx: &Ctx<'_>) -> Walk {
        Walk::until(ctx.view.clone(), Instant::now() + FENCE_WAIT)
    }

    /// A walk starting from `view` that may retry until `deadline`.
    pub fn until(view: Arc<RingView>, deadline: Instant) -> Walk {
        Walk {
            view,
            deadline,
            unreachable: false,
        }
    }

    /// Places `key` and asks its owners, in order from the `first`'th (`0`: the
    /// primary; `1` when the caller already asked the primary and it failed), until one
    /// answers with a reply `read` accepts. `wire` gives the bytes to send (fenced with
    /// the version it is given) and their reply shape. A reply `read` refuses (`None`:
    /// not what the request asks for) counts as a failed owner.
    ///
    /// A client's request is placed with the node's current ring, not the batch's if
    /// that one is out of date; a peer's runs here (it is never forwarded again).
    pub async fn place<R>(
        &mut self,
        ctx: &Ctx<'_>,
        key: &[u8],
        owners: Owners,
        mut first: usize,
        wire: impl Fn(u64) -> (Bytes, Expect),
        read: impl Fn(Bytes) -> Option<R>,
    ) -> Placed<R> {
        let cluster = ctx.cluster;
        'placed: loop {
            if ctx.from_peer {
                // A peer's read reaches a later owner only when the owners before it
                // failed: it is a failover read here too.
                let failover = !is_primary_here(&self.view, key);
                return Placed::Here { failover };
            }
            if self.view.version != cluster.ring_version() {
                self.view = cluster.ring();
                // The owners asked before were placed with the old ring.
                first = 0;
            }
            if is_primary_here(&self.view, key) {
                return Placed::Here { failover: false };
            }
            let (bytes, expect) = wire(self.view.version);
            let ring_owners = self.view.ring.owners(key);
            for (i, owner) in ring_owners.iter().enumerate().skip(first) {
                if i > 0 {
                    if owners == Owners::Primary {
                        break;
                    }
                    // The owners before this one failed.
                    cluster.stats.read_failovers.fetch_add(1, Relaxed);
                }
                if Some(*owner) == self.view.me {
                    return Placed::Here { failover: true };
                }
                if owners == Owners::All && i + 1 < ring_owners.len() && self.view.is_suspect(*owner) {
                    // The membership suspects it (it missed its probes: crashed, frozen, or
                    // cut off): ask the next owner rather than wait out a peer timeout.
                    // The read is then a failover read, under the same rules.
                    continue;
                }
                let sent = match owners {
                    Owners::All => {
                        let later = i + 1 < ring_owners.len();
                        forward_read(cluster, &self.view, *owner, bytes.clone(), expect, later).await
                    }
                    Owners::Primary => forward_write(cluster, &self.view, *owner, bytes.clone(), expect).await,
                };
                match sent {
                    Ok(reply) if is_ring_mismatch(&reply) => {
                        if self.retry(cluster).await {
                            first = 0;
                            continue 'placed;
                        }
                        return Placed::RingChanging;
                    }
                    Ok(reply) => match read(reply) {
                        Some(r) => return Placed::Reply(r),
                        // An error line where values were expected: the owner failed.
                        None => {
                            cluster.stats.forward_errors.fetch_add(1, Relaxed);
                            self.unreachable = false;
                        }
                    },
                    Err(e) => self.unreachable = e.is_unavailable(),
                }
            }
            return Placed::Unreachable;
        }
    }

    /// After an owner refused the request for a ring mismatch (or the ring changed
    /// under a write about to run here): waits for this node's next ring (see
    /// [`Cluster::next_ring`]) and places with it; false once the deadline has passed.
    pub async fn retry(&mut self, cluster: &Cluster) -> bool {
        match cluster.next_ring(&self.view, self.deadline).await {
            Some(next) => {
                self.view = next;
                true
            }
            None => false,
        }
    }
}

/// Sends a write to its primary `owner`: as [`forward`], but the primary may take up
/// to the membership's verdict on an unreachable replica on top of the peer timeout
/// (`write::settle`), so that much longer is allowed; and if this node's ring drops
/// the primary meanwhile (it failed), the forward is given up at once (an error), so
/// the write is placed again without it rather than waiting out the timeout.
async fn forward_write(
    cluster: &Cluster,
    view: &RingView,
    owner: NodeIdx,
    wire: Bytes,
    expect: Expect,
) -> Result<Bytes, ClientError> {
    let id = view.ring.node(owner).ok_or(ClientError::NoNode)?;
    let timeout = cluster.peer_timeout + cluster.verdict_wait;
    tokio::select! {
        r = forward_within(cluster, view, owner, wire, expect, timeout) => r,
        () = cluster.until_dropped(id) => {
            cluster.stats.forward_errors.fetch_add(1, Relaxed);
            Err(ClientError::Closed)
        }
    }
}

/// Sends a read to `owner`: as [`forward`], but when a `later` owner could answer
/// instead, only [`READ_HEDGE`] is allowed before the read is given up on this one
/// (counted in `cluster_read_hedges`) so the caller asks the next.
pub async fn forward_read(
    cluster: &Cluster,
    view: &RingView,
    owner: NodeIdx,
    wire: Bytes,
    expect: Expect,
    later: bool,
) -> Result<Bytes, ClientError> {
    if !later {
        return forward(cluster, view, owner, wire, expect).await;
    }
    let result = forward_within(cluster, view, owner, wire, expect, READ_HEDGE.min(cluster.peer_timeout)).await;
    if matches!(result, Err(ClientError::Timeout(_))) {
        cluster.stats.read_hedges.fetch_add(1, Relaxed);
    }
    result
}

/// Sends `wire` to `owner` and returns its reply. Every request forwarded to an owner
/// goes through here: it is counted (`cluster_forwarded`, and its failure as an error
/// or a timeout) and timed per peer (`ringcache_forward_duration_seconds`).
pub async fn forward(
    cluster: &Cluster,
    view: &RingView,
    owner: NodeIdx,
    wire: Bytes,
    expect: Expect,
) -> Result<Bytes, ClientError> {
    forward_within(cluster, view, owner, wire, expect, cluster.peer_timeout).await
}

/// [`forward`] with a timeout of its own.
async fn forward_within(
    cluster: &Cluster,
    view: &RingView,
    owner: NodeIdx,
    wire: Bytes,
    expect: Expect,
    timeout: Duration,
) -> Result<Bytes, ClientError> {
    let id = view.ring.node(owner).ok_or(ClientError::NoNode)?;
    cluster.stats.forwarded.fetch_add(1, Relaxed);
    let started = Instant::now();
    let result = cluster.peer(id.client).request(wire, expect, timeout).await;
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
    cluster.forwards.peer(&id.name).observe(started.elapsed(), outcome);
    result
}

/// Appends `rc_ring <version>`: the owner runs the request that follows only if its
/// ring has the same version (see `ringcache_protocol::text::peer`).
pub fn put_fence(version: u64, wire: &mut BytesMut) {
    PeerRequest::Ring {
        version,
        handoff: false,
    }
    .encode(wire);
}

/// The bytes to send an owner for `req` placed with ring `version` (fenced with it),
/// and the reply shape. `noreply` is cleared (the reply decides what to relay); a
/// quiet meta command keeps its `q`, so the owner's own quiet-mode rules decide what
/// the client sees (its reply may be empty: a peer's reply comes with its length).
pub fn wire_for(req: &Request, version: u64) -> (Bytes, Expect) {
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
            let expect = match req {
                Request::Get(_) => Expect::Values,
                Request::Stats { .. } | Request::Topology => Expect::Lines,
                _ => Expect::Line,
            };
            (wire.freeze(), expect)
        }
    }
}
