//! One client connection: read → parse every complete request → execute → write once.
//!
//! The read buffer is reused for the connection's life; parsed keys and values are
//! slices of it. Replies for a whole batch of pipelined requests go into one output
//! buffer that is written with one call. Memory stays bounded for any client: the
//! output buffer is flushed whenever it passes [`FLUSH_AT`], and a client that does
//! not read its replies blocks that flush, which stops this loop from reading more.
//!
//! A client's requests run one after another, each finished before the next starts,
//! so a client that pipelines `set k` then `get k` reads its own write, wherever `k`
//! lives. A connection that opens with an accepted `rc_peer` is a peer's: it is served
//! from then on by [`crate::peer_connection`], which runs requests concurrently. Every
//! other `rc_*` command answers `ERROR` here, like any unknown command.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use ringcache_protocol::text::peer::PeerRequest;
use ringcache_protocol::text::{parse_request, response, Limits, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::debug;

use crate::exec::{self, Flow};
use crate::node::{unix_now, Node};
use crate::router;
use crate::stats::Counters;

/// Initial capacity of the read buffer.
const READ_BUF: usize = 16 * 1024;
/// Flush the output buffer before it grows past this many bytes.
const FLUSH_AT: usize = 256 * 1024;

/// Serves one client until it quits, breaks framing, or the node shuts down.
pub async fn serve(node: Arc<Node>, mut sock: TcpStream, mut shutdown: watch::Receiver<bool>) {
    let _ = sock.set_nodelay(true);
    let limits = Limits {
        max_item_size: node.settings.max_item_size,
    };
    let mut rbuf = BytesMut::with_capacity(READ_BUF);
    let mut out = BytesMut::with_capacity(READ_BUF);
    let mut counters = Counters::default();
    // Bytes still to discard from a refused data block.
    let mut swallow: u64 = 0;
    // Set by an accepted `rc_peer`: the rest of the connection is a peer's.
    let mut from_peer = false;
    // One shutdown future for the connection's life, not a new one per read.
    let stopping = async move {
        let _ = shutdown.changed().await;
    };
    tokio::pin!(stopping);
    'conn: loop {
        if rbuf.capacity() - rbuf.len() < 1024 {
            rbuf.reserve(READ_BUF);
        }
        let n = tokio::select! {
            r = sock.read_buf(&mut rbuf) => match r {
                Ok(0) | Err(_) => break 'conn,
                Ok(n) => n,
            },
            _ = &mut stopping => break 'conn,
        };
        counters.bytes_read += n as u64;
        let now = unix_now();
        // One look at the ring per batch (an `Arc` clone), not per request.
        let view = node.cluster.as_ref().map(|c| c.ring());
        if let (Some(cluster), Some(view)) = (&node.cluster, &view) {
            if view.ring.len() > 1 {
                cluster.check_thawed(now);
            }
        }
        let mut close = false;
        loop {
            if swallow > 0 {
                let d = swallow.min(rbuf.len() as u64);
                rbuf.advance(d as usize);
                swallow -= d;
                if swallow > 0 {
                    break;
                }
            }
            let parsed = parse_request(&mut rbuf, &limits);
            match parsed {
                Ok(Some(Request::Get(get))) if router::runs_here(&node, view.as_deref(), &get) => {
                    for key in get.keys.iter() {
                        exec::retrieve_one(&node, get.kind, &key, now, &mut counters, &mut out);
                        if out.len() >= FLUSH_AT && flush(&mut sock, &mut out, &mut counters).await.is_err() {
                            break 'conn;
                        }
                    }
                    out.put_slice(response::END);
                }
                Ok(Some(Request::Peer(PeerRequest::Hello { name, proof }))) => {
                    let key = node.cluster.as_ref().and_then(|c| c.key.as_ref());
                    let trusted = match (key, &proof) {
                        (None, _) => true,
                        (Some(key), Some((secs, mac))) => key.check_peer_proof(&name, *secs, mac, u64::from(now)),
                        (Some(_), None) => false,
                    };
                    if trusted {
                        debug!(peer = %String::from_utf8_lossy(&name), "peer connection");
                        from_peer = true;
                        out.put_slice(response::OK);
                        break 'conn;
                    } else {
                        counters.auth_errors += 1;
                        out.put_slice(b"CLIENT_ERROR authentication failed\r\n");
                    }
                }
                Ok(Some(Request::Peer(_))) => out.put_slice(response::ERROR),
                Ok(Some(req)) => {
                    let flow = match (&node.cluster, &view) {
                        (Some(cluster), Some(view)) => {
                            let mut ctx = router::Ctx::new(&node, cluster, view, false, now, &mut counters);
                            router::handle(&mut ctx, req, &mut out).await
                        }
                        _ => exec::execute(&node, req, now, &mut counters, &mut out),
                    };
                    if flow == Flow::Close {
                        close = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    out.put_slice(e.reply);
                    if let Some(key) = e.unlink.clone() {
                        match (&node.cluster, &view) {
                            (Some(cluster), Some(view)) if view.ring.len() > 1 => {
                                let mut ctx = router::Ctx::new(&node, cluster, view, false, now, &mut counters);
                                router::unlink(&mut ctx, key).await;
                            }
                            _ => {
                                node.store.with(&key, now, |slot| slot.remove());
                            }
                        }
                    }
                    swallow = e.swallow;
                    if e.close {
                        close = true;
                        break;
                    }
                }
            }
            if out.len() >= FLUSH_AT && flush(&mut sock, &mut out, &mut counters).await.is_err() {
                break 'conn;
            }
        }
        if flush(&mut sock, &mut out, &mut counters).await.is_err() || close {
            break;
        }
        node.stats.totals.absorb(&mut counters);
    }
    node.stats.totals.absorb(&mut counters);
    if from_peer {
        crate::peer_connection::serve(node.clone(), sock, rbuf, out, stopping).await;
    }
    node.stats.curr_connections.fetch_sub(1, Relaxed);
}

async fn flush(sock: &mut TcpStream, out: &mut BytesMut, c: &mut Counters) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    sock.write_all(out).await?;
    c.bytes_written += out.len() as u64;
    out.clear();
    Ok(())
}
