//! One connection from a peer (opened with `rc_peer`): requests run concurrently, and
//! each is answered as soon as it is done, behind its request's tag.
//!
//! A peer connection carries requests from many of the sender's clients at once:
//! writes forwarded to this node as their primary, replications of writes this node
//! does not own, read repairs, hand-offs. They are independent of each other, and some
//! of them wait on other nodes (a forwarded write waits for its replicas). Run one at a
//! time, as a client's requests are, they would wait on each other across nodes: node
//! A's forwarded write waits for its replication to B while B's connection to A waits
//! on B's own forwarded write, which waits for its replication to A, queued behind
//! the first; nothing moves until the peer timeout. So every request starts as soon as
//! it is read (see [`MAX_IN_FLIGHT`] for the bound), and its reply is written as soon as
//! it is ready, behind `RI <id> <length>` (the request was tagged `rc_id <id>`; the sender
//! matches replies by id). A request that must wait never holds up the others on its
//! connection, nor their replies (answered in order, a finished replication's reply
//! would wait behind a forwarded write that waits on the other node, and the cycle
//! would be back): the cluster has no wait-for cycle whatever the load. An untagged
//! request (a person with telnet) is answered in order: it runs once everything before
//! it has been answered, and nothing after it is read until it is done.
//!
//! Ordering between requests is the sender's business: a client connection sends its
//! next request only after the previous one is answered (see `connection`), so one
//! client's requests never overtake each other here.
//!
//! `rc_ring <version>` fences the request that follows it: that request is read but
//! not run, and answered `SERVER_ERROR ring mismatch <this node's version>`, unless this
//! node's current ring has that version. The check happens when the request is read
//! (against the current ring, never an older copy). A replication (`rc_set`,
//! `rc_del`) is also checked after it is applied; if the ring changed meanwhile it is
//! answered `SERVER_ERROR ring changing` (applied, but the write must not be
//! acknowledged: the ring change's hand-off may have scanned the store before it
//! arrived, so the key's new owners may never get it).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use ringcache_protocol::text::peer::{encode_reply_tag, encode_ring_mismatch, PeerRequest};
use ringcache_protocol::text::{parse_request, Limits, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

use crate::cluster::RingView;
use crate::exec::{self, Flow};
use crate::node::{unix_now, Node};
use crate::router;
use crate::stats::Counters;

/// How many requests of one peer connection may wait on other nodes at once, at the
/// least; past it, the connection reads no more until some finish (the sender's
/// requests then wait in its queue). The limit is raised to the node's `-c`: a
/// sender's requests that wait here are its clients' (each client connection waits
/// for one request at a time, or one part of a multi-get per owner), so they never
/// reach the limit when nodes share `-c`, and a replication queued behind them is
/// always read. (Requests answered at once, as replications are, never count.)
pub const MAX_IN_FLIGHT: usize = 1024;
/// Initial capacity of the read buffer.
const READ_BUF: usize = 16 * 1024;
/// Write the replies gathered so far once they pass this many bytes.
const FLUSH_AT: usize = 256 * 1024;

/// A request's reply, with what it did to the counters.
struct Answer {
    out: BytesMut,
    counters: Counters,
    tag: Option<u64>,
    close: bool,
}

type Running = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// Serves a peer's connection until it closes, breaks framing, or `stop` resolves.
/// `rbuf` holds what was read after `rc_peer`; `out` what is still to be written.
pub async fn serve(
    node: Arc<Node>,
    sock: TcpStream,
    mut rbuf: BytesMut,
    mut out: BytesMut,
    stop: impl Future<Output = ()>,
) {
    let limits = Limits {
        max_item_size: node.settings.max_item_size,
    };
    let max_in_flight = MAX_IN_FLIGHT.max(node.settings.max_conns);
    let (mut rd, mut wr) = sock.into_split();
    let mut counters = Counters::default();
    let mut reader = Reader::default();
    let mut running: FuturesUnordered<Running> = FuturesUnordered::new();
    // An untagged request: it runs once everything before it has been answered.
    let mut barrier: Option<Running> = None;
    let mut closing = false;
    // Whether every complete request read so far has been started.
    let mut drained = true;
    tokio::pin!(stop);
    'conn: loop {
        // Start every complete request read so far.
        if !closing && barrier.is_none() && running.len() < max_in_flight {
            drained = false;
            let now = unix_now();
            let mut view = node.cluster.as_ref().map(|c| c.ring());
            if let (Some(cluster), Some(view)) = (&node.cluster, &view) {
                if view.ring.len() > 1 && !rbuf.is_empty() {
                    cluster.check_thawed(now);
                }
            }
            while running.len() < max_in_flight && out.len() < FLUSH_AT {
                let Some(step) = reader.next(&node, &mut view, &mut rbuf, &limits, now) else {
                    drained = true;
                    break;
                };
                let tagged = step.tag().is_some();
                let mut fut = match step {
                    Step::Run {
                        req,
                        tag,
                        fenced,
                        handoff,
                    } => start(node.clone(), view.clone(), req, tag, fenced, handoff, now),
                    Step::Answered { out, tag, close } => Box::pin(std::future::ready(Answer {
                        out,
                        counters: Counters::default(),
                        tag,
                        close,
                    })),
                };
                if !tagged {
                    barrier = Some(fut);
                    break;
                }
                // Most requests need no other node: answer them at once.
                match fut.as_mut().now_or_never() {
                    Some(answer) => {
                        if take(&node, answer, &mut out) {
                            closing = true;
                            break;
                        }
                    }
                    None => running.push(fut),
                }
            }
            if reader.broken {
                closing = true;
            }
        }
        // Every answer that is ready, in the order they finished.
        while let Some(Some(answer)) = running.next().now_or_never() {
            if take(&node, answer, &mut out) {
                closing = true;
            }
        }
        if running.is_empty() {
            if let Some(fut) = barrier.take() {
                let answer = fut.await;
                if take(&node, answer, &mut out) {
                    closing = true;
                }
                continue 'conn;
            }
        }
        if !out.is_empty() {
            if write(&mut wr, &mut out, &mut counters).await.is_err() {
                break 'conn;
            }
            node.stats.totals.absorb(&mut counters);
        }
        if closing && running.is_empty() && barrier.is_none() {
            break;
        }
        if !drained && !closing && barrier.is_none() && running.len() < max_in_flight {
            // Stopped early to write what was gathered: start the rest before waiting.
            continue;
        }
        if rbuf.capacity() - rbuf.len() < 1024 {
            rbuf.reserve(READ_BUF);
        }
        let may_read = !closing && barrier.is_none() && running.len() < max_in_flight;
        tokio::select! {
            r = rd.read_buf(&mut rbuf), if may_read => match r {
                Ok(0) | Err(_) => closing = true,
                Ok(n) => counters.bytes_read += n as u64,
            },
            answer = running.next(), if !running.is_empty() => {
                if let Some(answer) = answer {
                    if take(&node, answer, &mut out) {
                        closing = true;
                    }
                }
            }
            _ = &mut stop => break 'conn,
        }
    }
    let _ = wr.shutdown().await;
    node.stats.totals.absorb(&mut counters);
}

/// Answers `wire` (one request, with its `rc_ring` fence if any, untagged) as a peer
/// connection to `node` would, without a socket: the fence is checked, the request
/// runs, and a replication is checked again after it is applied. The in-process peers
/// of `crate::testing` deliver requests through this.
#[cfg(any(test, feature = "testing"))]
pub async fn answer(node: Arc<Node>, wire: bytes::Bytes, now: u32) -> BytesMut {
    let limits = Limits {
        max_item_size: node.settings.max_item_size,
    };
    let mut rbuf = BytesMut::from(&wire[..]);
    let mut view = node.cluster.as_ref().map(|c| c.ring());
    let mut reader = Reader::default();
    let mut out = BytesMut::new();
    while let Some(step) = reader.next(&node, &mut view, &mut rbuf, &limits, now) {
        let answer = match step {
            Step::Run {
                req,
                tag,
                fenced,
                handoff,
            } => start(node.clone(), view.clone(), req, tag, fenced, handoff, now).await,
            Step::Answered { out, tag, close } => Answer {
                out,
                counters: Counters::default(),
                tag,
                close,
            },
        };
        let close = answer.close;
        out.put_slice(&answer.out);
        let mut counters = answer.counters;
        node.stats.totals.absorb(&mut counters);
        if close {
            break;
        }
    }
    out
}

/// Appends an answer (behind its tag) to `out`; true if the connection must close
/// after it.
fn take(node: &Node, mut answer: Answer, out: &mut BytesMut) -> bool {
    if let Some(id) = answer.tag {
        encode_reply_tag(id, answer.out.len(), out);
    }
    out.put_slice(&answer.out);
    node.stats.totals.absorb(&mut answer.counters);
    answer.close
}

async fn write(wr: &mut OwnedWriteHalf, out: &mut BytesMut, c: &mut Counters) -> std::io::Result<()> {
    wr.write_all(out).await?;
    c.bytes_written += out.len() as u64;
    out.clear();
    Ok(())
}

/// Starts one request as a future that owns everything it needs.
fn start(
    node: Arc<Node>,
    view: Option<Arc<RingView>>,
    req: Request,
    tag: Option<u64>,
    fenced: Option<u64>,
    handoff: bool,
    now: u32,
) -> Running {
    Box::pin(async move {
        let mut out = BytesMut::new();
        let mut counters = Counters::default();
        let replication = matches!(req, Request::Peer(PeerRequest::Set { .. } | PeerRequest::Del { .. }));
        if let (Request::Peer(PeerRequest::Set { key, value, .. }), true) = (&req, handoff || fenced.is_none()) {
            // A hand-off's item comes behind `rc_ring <v> handoff` (`Cluster::hand_off`;
            // an unfenced one is a hand-off too, as older nodes sent them); a
            // replication behind a plain `rc_ring` (`router::write::replicate`).
            counters.handoff_items_received += 1;
            counters.handoff_bytes_received += (key.len() + value.len()) as u64;
        }
        let flow = match (&node.cluster, &view) {
            (Some(cluster), Some(view)) => {
                let mut ctx = router::Ctx::new(&node, cluster, view, true, now, &mut counters);
                let flow = router::handle(&mut ctx, req, &mut out).await;
                if let (true, Some(want)) = (replication, fenced) {
                    if cluster.ring_version() != want {
                        // Applied, but the ring changed around it: not to be acknowledged.
                        cluster.stats.ring_mismatches.fetch_add(1, Relaxed);
                        out.clear();
                        out.put_slice(router::RING_CHANGING);
                    }
                }
                flow
            }
            _ => exec::execute(&node, req, now, &mut counters, &mut out),
        };
        Answer {
            out,
            counters,
            tag,
            close: flow == Flow::Close,
        }
    })
}

/// What the reader found next on the connection. (Not boxed: one lives at a time,
/// and it is moved straight into the request's future.)
#[allow(clippy::large_enum_variant)]
enum Step {
    /// A request to run (fenced with this ring version, if it was).
    Run {
        req: Request,
        tag: Option<u64>,
        fenced: Option<u64>,
        /// An item handed off after a ring change (`rc_ring <v> handoff`).
        handoff: bool,
    },
    /// A request answered without running anything: a refusal or a parse error.
    Answered {
        out: BytesMut,
        tag: Option<u64>,
        close: bool,
    },
}

impl Step {
    fn tag(&self) -> Option<u64> {
        match self {
            Step::Run { tag, .. } | Step::Answered { tag, .. } => *tag,
        }
    }
}

/// Splits a peer connection's byte stream into requests, with the `rc_id` and
/// `rc_ring` prefixes that apply to each.
#[derive(Default)]
struct Reader {
    /// Bytes still to discard from a refused data block.
    swallow: u64,
    /// From `rc_id`: the tag of the next request's reply.
    tag: Option<u64>,
    /// From `rc_ring`: the ring version the sender placed the next request with.
    fence: Option<u64>,
    /// From `rc_ring <v> handoff`: the next request is a hand-off's item.
    handoff: bool,
    /// Framing is lost (a parse error that closes the connection).
    broken: bool,
}

impl Reader {
    /// The next request in `rbuf`, `None` until one is complete.
    fn next(
        &mut self,
        node: &Node,
        view: &mut Option<Arc<RingView>>,
        rbuf: &mut BytesMut,
        limits: &Limits,
        now: u32,
    ) -> Option<Step> {
        loop {
            if self.broken {
                return None;
            }
            if self.swallow > 0 {
                let d = self.swallow.min(rbuf.len() as u64);
                rbuf.advance(d as usize);
                self.swallow -= d;
                if self.swallow > 0 {
                    return None;
                }
            }
            let parsed = parse_request(rbuf, limits);
            match parsed {
                Ok(None) => return None,
                Ok(Some(Request::Peer(PeerRequest::Id { id }))) => self.tag = Some(id),
                Ok(Some(Request::Peer(PeerRequest::Ring { version, handoff }))) => {
                    self.fence = Some(version);
                    self.handoff = handoff;
                }
                Ok(Some(req)) => {
                    let tag = self.tag.take();
                    let fenced = self.fence.take();
                    let handoff = std::mem::take(&mut self.handoff);
                    if let Some(want) = fenced {
                        if !same_ring(node, view, want) {
                            return Some(self.refuse(node, tag));
                        }
                    }
                    return Some(Step::Run {
                        req,
                        tag,
                        fenced,
                        handoff,
                    });
                }
                Err(e) => {
                    let tag = self.tag.take();
                    self.handoff = false;
                    self.swallow = e.swallow;
                    self.broken = e.close;
                    if let Some(want) = self.fence.take() {
                        if !same_ring(node, view, want) {
                            return Some(self.refuse(node, tag));
                        }
                    }
                    if let Some(key) = &e.unlink {
                        node.store.with(key, now, |slot| slot.remove());
                    }
                    let mut out = BytesMut::new();
                    out.put_slice(e.reply);
                    return Some(Step::Answered {
                        out,
                        tag,
                        close: e.close,
                    });
                }
            }
        }
    }

    /// The answer to a request fenced with a ring this node does not have: read, not
    /// run (closing the connection after it if its framing was lost).
    fn refuse(&self, node: &Node, tag: Option<u64>) -> Step {
        let mut out = BytesMut::new();
        if let Some(cluster) = &node.cluster {
            cluster.stats.ring_mismatches.fetch_add(1, Relaxed);
            encode_ring_mismatch(cluster.ring_version(), &mut out);
        }
        Step::Answered {
            out,
            tag,
            close: self.broken,
        }
    }
}

/// Whether this node's current ring has version `want`. The batch's `view` may be
/// older (the ring can change while a batch is read); when it differs from the current
/// ring, the current one replaces it for the rest of the batch.
fn same_ring(node: &Node, view: &mut Option<Arc<RingView>>, want: u64) -> bool {
    let Some(cluster) = &node.cluster else {
        return false;
    };
    if view.as_ref().is_some_and(|v| v.version == want) && cluster.ring_version() == want {
        return true;
    }
    let now = cluster.ring();
    let same = now.version == want;
    *view = Some(now);
    same
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::config::Config;
    use crate::server::build_local_node;

    /// A node without peers serving one connection on a free port.
    async fn node_conn() -> TcpStream {
        let node = Arc::new(build_local_node(&Config::parse_from(["ringcache"])));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (sock, _) = l.accept().await.unwrap();
            crate::connection::serve(node, sock).await;
        });
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"rc_peer test\r\n").await.unwrap();
        let mut ok = [0u8; 4];
        s.read_exact(&mut ok).await.unwrap();
        assert_eq!(&ok, b"OK\r\n");
        s
    }

    /// Reads until `want` bytes have arrived (bounded).
    async fn read_n(s: &mut TcpStream, want: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        while got.len() < want {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
                .await
                .expect("the node stopped answering")
                .unwrap();
            assert!(n > 0, "closed after {} of {want} bytes", got.len());
            got.extend_from_slice(&chunk[..n]);
        }
        got
    }

    /// A batch whose replies pass the flush threshold, sent in one write: every
    /// request is answered (the loop writes part of the replies, then goes on with the
    /// requests still buffered instead of waiting for more input).
    #[tokio::test]
    async fn a_batch_larger_than_one_flush_is_answered_whole() {
        let mut s = node_conn().await;
        let value = "v".repeat(1000);
        let n = 600;
        let mut batch = String::new();
        let mut want = String::new();
        for i in 0..n {
            batch.push_str(&format!("rc_id {i}\r\nset k{i} 0 0 {}\r\n{value}\r\n", value.len()));
            want.push_str(&format!("RI {i} 8\r\nSTORED\r\n"));
        }
        for i in 0..n {
            batch.push_str(&format!("rc_id {}\r\nget k{i}\r\n", n + i));
            let reply = format!("VALUE k{i} 0 {}\r\n{value}\r\nEND\r\n", value.len());
            want.push_str(&format!("RI {} {}\r\n{reply}", n + i, reply.len()));
        }
        assert!(want.len() > 2 * FLUSH_AT);
        s.write_all(batch.as_bytes()).await.unwrap();
        let got = read_n(&mut s, want.len()).await;
        assert_eq!(String::from_utf8_lossy(&got), want);
    }

    /// Untagged requests on a peer connection are answered in order, without tags;
    /// tagged ones carry their id and length, refusals and parse errors included.
    #[tokio::test]
    async fn tags_lengths_and_untagged_requests() {
        let mut s = node_conn().await;
        s.write_all(
            b"set a 0 0 1\r\nx\r\nrc_id 7\r\nget a\r\nrc_id 8\r\nbogus\r\nrc_id 9\r\nmg a q\r\nmg zz q\r\nmn\r\n",
        )
        .await
        .unwrap();
        let want = "STORED\r\nRI 7 21\r\nVALUE a 0 1\r\nx\r\nEND\r\nRI 8 7\r\nERROR\r\nRI 9 4\r\nHD\r\nMN\r\n";
        let got = read_n(&mut s, want.len()).await;
        assert_eq!(String::from_utf8_lossy(&got), want);
        // A quiet miss answers nothing: an empty tagged reply.
        s.write_all(b"rc_id 10\r\nmg zz q\r\n").await.unwrap();
        let want = "RI 10 0\r\n";
        assert_eq!(String::from_utf8_lossy(&read_n(&mut s, want.len()).await), want);
    }
}
