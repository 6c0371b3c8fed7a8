//! Reads: a meta read, and `get`/`gets`/`gat`/`gats` of one key or many.
//!
//! Every key is placed by the one owner walk ([`Walk::place`]): run here when this node
//! is the key's primary (after a read repair in the window after a ring change), else
//! asked of its owners in order, primary first, a miss when none answers. A retrieval
//! of several keys sends one part per primary, concurrently, then continues the walk
//! of each key whose part failed (from the next owner) or was refused for a ring
//! mismatch (placed again), and merges the values back in the client's key order.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use bytes::{BufMut, Bytes, BytesMut};
use ringcache_protocol::ring::NodeIdx;
use ringcache_protocol::text::frame::Expect;
use ringcache_protocol::text::peer::is_ring_mismatch;
use ringcache_protocol::text::response;
use ringcache_protocol::text::value::{read_values, ValuesEnd};
use ringcache_protocol::text::{GetKind, GetRequest, Keys, Request};
use tokio::time::Instant;

use super::placement::{forward_read, is_primary_here, wire_for, Owners, Placed, Walk};
use super::repair::{may_fail_over, repair};
use super::write::{applied_state, replicate};
use super::Ctx;
use crate::cluster::{RingView, FENCE_WAIT};
use crate::exec::{self, Flow};
use crate::stats::Counters;

/// A single-key read (a meta get or debug): placed by the owner walk; a miss when no
/// owner answers, or when the rings do not agree by `FENCE_WAIT`.
pub async fn read(ctx: &mut Ctx<'_>, req: Request, key: Bytes, out: &mut BytesMut) -> Flow {
    let mut walk = Walk::new(ctx);
    let placed = walk.place(ctx, &key, Owners::All, 0, |v| wire_for(&req, v), Some).await;
    match placed {
        Placed::Here { failover } => {
            if ready_here(ctx, &walk.view, &key, failover).await {
                return exec::execute(ctx.node, req, ctx.now, ctx.counters, out);
            }
        }
        Placed::Reply(reply) => {
            out.put_slice(&reply);
            return Flow::Continue;
        }
        Placed::Unreachable | Placed::RingChanging => {}
    }
    // No owner answered: a miss, as the owner would have said it.
    ctx.counters.get_misses += 1;
    if let Request::Meta(m) = &req {
        if !m.flags.quiet() {
            out.put_slice(b"EN\r\n");
        }
    }
    Flow::Continue
}

/// Whether this node may serve `key` now that the walk placed it here: after a repair
/// as its primary (best effort), or, as a later owner (`failover`), only as
/// [`may_fail_over`] allows.
async fn ready_here(ctx: &Ctx<'_>, view: &RingView, key: &Bytes, failover: bool) -> bool {
    if failover {
        may_fail_over(ctx.node, ctx.cluster, view, key, ctx.now).await
    } else {
        repair(ctx.node, ctx.cluster, view, key, ctx.now).await;
        true
    }
}

/// A retrieval (`get`/`gets`/`gat`/`gats`) from a client on a cluster of several
/// nodes. One key takes the owner walk on its own; several are split by primary, the
/// parts sent concurrently (each the first step of its keys' walks), and the values
/// written in the client's key order.
pub async fn get(ctx: &mut Ctx<'_>, get: &GetRequest, out: &mut BytesMut) {
    let keys: Vec<Bytes> = get.keys.iter().collect();
    if let [key] = &keys[..] {
        if let Some(block) = get_one(ctx, get.kind, key, &mut Walk::new(ctx), 0).await {
            out.put_slice(&block);
        }
        out.put_slice(response::END);
        return;
    }
    let view = if ctx.view.version == ctx.cluster.ring_version() {
        ctx.view.clone()
    } else {
        ctx.cluster.ring()
    };
    let mut local = Vec::new();
    let mut remote: HashMap<NodeIdx, Vec<usize>> = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        match view.ring.primary(key) {
            Some(p) if !is_primary_here(&view, key) => remote.entry(p).or_default().push(i),
            _ => local.push(i),
        }
    }
    let cluster = ctx.cluster;
    // The remote parts run while the local keys are read.
    let parts = remote.into_iter().map(|(owner, idxs)| {
        let raw: Vec<&[u8]> = idxs.iter().map(|&i| &keys[i][..]).collect();
        let part = Request::Get(GetRequest {
            kind: get.kind,
            keys: Keys::new(Bytes::from(raw.join(&b' '))),
        });
        let (wire, _) = wire_for(&part, view.version);
        let view = &view;
        // Each key of the part has a later owner to continue its walk with when the
        // primary is slow (with --replicas 2 or more).
        let later = view.ring.replicas() > 1;
        async move {
            (
                idxs,
                forward_read(cluster, view, owner, wire, Expect::Values, later).await,
            )
        }
    });
    let parts = futures_util::future::join_all(parts);
    let mut blocks: Vec<Option<Bytes>> = vec![None; keys.len()];
    let local_reads = async {
        for &i in &local {
            blocks[i] = get_here(ctx, get.kind, &view, &keys[i], false).await;
        }
    };
    let (parts, ()) = tokio::join!(parts, local_reads);
    for (idxs, reply) in parts {
        if reply.as_ref().is_ok_and(|r| is_ring_mismatch(r)) {
            // The owner places keys differently: place each key again.
            let mut walk = Walk::until(view.clone(), Instant::now() + FENCE_WAIT);
            for i in idxs {
                blocks[i] = if walk.retry(ctx.cluster).await {
                    get_one(ctx, get.kind, &keys[i], &mut walk, 0).await
                } else {
                    count_remote_get(get.kind, false, ctx.counters);
                    None
                };
            }
            continue;
        }
        match reply.as_ref().ok().and_then(value_blocks) {
            Some(found) => {
                for i in idxs {
                    count_remote_get(get.kind, found.contains_key(&keys[i]), ctx.counters);
                    blocks[i] = found.get(&keys[i]).cloned();
                }
            }
            None => {
                // The primary failed (`forward` counted it, or an error line came
                // back): each of its keys goes on to its next owners.
                if reply.is_ok() {
                    ctx.cluster.stats.forward_errors.fetch_add(1, Relaxed);
                }
                for i in idxs {
                    let mut walk = Walk::until(view.clone(), Instant::now() + FENCE_WAIT);
                    blocks[i] = get_one(ctx, get.kind, &keys[i], &mut walk, 1).await;
                }
            }
        }
    }
    for block in blocks.into_iter().flatten() {
        out.put_slice(&block);
    }
    out.put_slice(response::END);
}

/// One key of a retrieval, by the owner walk from its `first`'th owner: its `VALUE`
/// block, `None` on a miss (also when no owner answers or the rings do not agree in
/// time). Counts the lookup as a local one would be counted.
async fn get_one(ctx: &mut Ctx<'_>, kind: GetKind, key: &Bytes, walk: &mut Walk, first: usize) -> Option<Bytes> {
    let req = Request::Get(GetRequest {
        kind,
        keys: Keys::new(key.clone()),
    });
    let read = |reply: Bytes| value_blocks(&reply).map(|mut found| found.remove(key));
    match walk
        .place(ctx, key, Owners::All, first, |v| wire_for(&req, v), read)
        .await
    {
        Placed::Here { failover } => {
            let view = walk.view.clone();
            get_here(ctx, kind, &view, key, failover).await
        }
        Placed::Reply(found) => {
            count_remote_get(kind, found.is_some(), ctx.counters);
            found
        }
        Placed::Unreachable | Placed::RingChanging => {
            count_remote_get(kind, false, ctx.counters);
            None
        }
    }
}

/// Reads one key of a retrieval here, once [`ready_here`] allows (a miss otherwise):
/// its `VALUE` block, `None` on a miss. A touching retrieval's new expiry goes to the
/// other owners; one that does not reach them all still answers.
async fn get_here(ctx: &mut Ctx<'_>, kind: GetKind, view: &RingView, key: &Bytes, failover: bool) -> Option<Bytes> {
    if !ready_here(ctx, view, key, failover).await {
        count_remote_get(kind, false, ctx.counters);
        return None;
    }
    let mut block = BytesMut::new();
    exec::retrieve_one(ctx.node, kind, key, ctx.now, ctx.counters, &mut block);
    if is_touching(kind) {
        let applied = applied_state(ctx.node, key, ctx.now);
        let _ = replicate(ctx.cluster, view, key, &applied).await;
    }
    (!block.is_empty()).then(|| block.freeze())
}

/// Runs a retrieval here (for a peer, or on a cluster of one); a touching one
/// (`gat`/`gats`) then updates the replicas. A key this node is not the primary of
/// reached it by failover, and is served as [`may_fail_over`] allows.
pub async fn local_get(ctx: &mut Ctx<'_>, get: &GetRequest, out: &mut BytesMut) {
    let view = ctx.view.clone();
    for key in get.keys.iter() {
        let failover = !is_primary_here(&view, &key);
        if !ready_here(ctx, &view, &key, failover).await {
            count_remote_get(get.kind, false, ctx.counters);
            continue;
        }
        exec::retrieve_one(ctx.node, get.kind, &key, ctx.now, ctx.counters, out);
        if is_touching(get.kind) {
            // A touch that did not reach every owner still answers with the value.
            let applied = applied_state(ctx.node, &key, ctx.now);
            let _ = replicate(ctx.cluster, &view, &key, &applied).await;
        }
    }
    out.put_slice(response::END);
}

fn is_touching(kind: GetKind) -> bool {
    matches!(kind, GetKind::Gat { .. } | GetKind::Gats { .. })
}

/// Counts a key answered by another node (or not at all) the way a local lookup
/// would count.
fn count_remote_get(kind: GetKind, hit: bool, c: &mut Counters) {
    c.cmd_get += 1;
    match (is_touching(kind), hit) {
        (false, true) => c.get_hits += 1,
        (false, false) => c.get_misses += 1,
        (true, true) => c.touch_hits += 1,
        (true, false) => c.touch_misses += 1,
    }
}

/// Splits a retrieval reply into its `VALUE` blocks by key (the first block of a key
/// that comes twice); `None` if the reply is an error line, incomplete or malformed.
///
/// The reply is read with the protocol's one VALUE reader
/// ([`ringcache_protocol::text::value::read_values`]); each block handed back is the
/// owner's bytes as they came (a slice of `reply`), relayed without encoding it again.
pub fn value_blocks(reply: &Bytes) -> Option<HashMap<Bytes, Bytes>> {
    let mut found = HashMap::new();
    match read_values(reply, |block| {
        found
            .entry(reply.slice_ref(block.key))
            .or_insert_with(|| reply.slice_ref(block.raw));
    }) {
        Ok(Some((ValuesEnd::End, _))) => Some(found),
        _ => None,
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
