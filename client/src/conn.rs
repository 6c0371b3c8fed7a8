//! A pipelined connection to one node.
//!
//! Many tasks share one TCP stream: a request is queued with the shape of reply it
//! expects, a writer task writes everything queued with one `write_all`, and a reader
//! task splits the reply stream with [`reply_len`] and hands each reply, in order, to
//! the request that is first in line (memcached answers in order). Replies are the
//! raw bytes, so a node relaying a peer's answer passes them on unchanged.
//!
//! A request that times out closes the connection: the reply it was waiting for may
//! still come, and matching by position would hand it to the next request.
//!
//! On a connection to a peer (see [`NodeConn::tag_replies`]) each request goes behind
//! `rc_id <n>` with a sequence number, and the peer answers each as soon as it is done,
//! behind `RI <n> <length>` (`ringcache_protocol::text::peer`), in whatever order: a
//! reply is handed to the request with its id once it is checked to be one whole
//! reply of the shape that request expects. A tag no request is waiting for, or a
//! reply that does not fit, closes the connection and fails every request in flight
//! on it. Whatever a peer sends, no reply reaches a request it
//! does not answer.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use ringcache_protocol::text::frame::{reply_fits, reply_len, Expect, FrameError};
use ringcache_protocol::text::peer::{parse_reply_tag, PeerRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// How many requests may wait to be written before senders wait.
const QUEUE: usize = 1024;

struct Pending {
    request: Bytes,
    expect: Expect,
    /// Sent behind `rc_id` (see [`NodeConn::tag_replies`]).
    tagged: bool,
    reply: oneshot::Sender<Result<Bytes>>,
}

/// A request written and waiting for its reply.
struct InFlight {
    expect: Expect,
    reply: oneshot::Sender<Result<Bytes>>,
}

/// The requests written and not yet answered.
#[derive(Default)]
struct Waiting {
    /// Untagged, answered in order.
    in_order: VecDeque<InFlight>,
    /// Tagged (`rc_id`), answered in any order behind `RI <id> <length>`.
    by_id: HashMap<u64, InFlight>,
    next_id: u64,
}

impl Waiting {
    fn drain(&mut self) -> impl Iterator<Item = InFlight> + '_ {
        self.in_order.drain(..).chain(self.by_id.drain().map(|(_, f)| f))
    }
}

/// One pipelined connection. Cheap to clone; all clones share the stream.
#[derive(Clone)]
pub struct NodeConn {
    addr: SocketAddr,
    queue: mpsc::Sender<Pending>,
    closed: Arc<AtomicBool>,
    tagged: Arc<AtomicBool>,
}

impl NodeConn {
    /// Connects within `timeout`.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<NodeConn> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(Error::Io { addr, source }),
            Err(_) => return Err(Error::Timeout(timeout)),
        };
        let _ = stream.set_nodelay(true);
        Ok(NodeConn::from_stream(addr, stream))
    }

    /// Wraps a connected stream (for instance one that has already authenticated).
    pub fn from_stream(addr: SocketAddr, stream: TcpStream) -> NodeConn {
        let (queue, rx) = mpsc::channel(QUEUE);
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(run(addr, stream, rx, closed.clone()));
        NodeConn {
            addr,
            queue,
            closed,
            tagged: Arc::new(AtomicBool::new(false)),
        }
    }

    /// From now on, sends every request behind `rc_id <sequence number>` and requires
    /// its reply to be followed by the matching `RI` line (only a ringcache node that
    /// accepted this connection as a peer's, with `rc_peer`, answers that way).
    pub fn tag_replies(&self) {
        self.tagged.store(true, Ordering::Relaxed);
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the connection has failed or been closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed) || self.queue.is_closed()
    }

    /// Sends one request (complete, with its data block) and returns the raw bytes of
    /// its reply, which has the shape `expect`.
    pub async fn request(&self, request: Bytes, expect: Expect, timeout: Duration) -> Result<Bytes> {
        let (tx, rx) = oneshot::channel();
        let pending = Pending {
            request,
            expect,
            tagged: self.tagged.load(Ordering::Relaxed),
            reply: tx,
        };
        let work = async {
            self.queue.send(pending).await.map_err(|_| Error::Closed)?;
            rx.await.map_err(|_| Error::Closed)?
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => {
                self.close();
                Err(Error::Timeout(timeout))
            }
        }
    }

    /// Closes the connection; requests in flight fail with [`Error::Closed`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

async fn run(addr: SocketAddr, stream: TcpStream, mut rx: mpsc::Receiver<Pending>, closed: Arc<AtomicBool>) {
    let (mut rd, mut wr) = stream.into_split();
    let mut waiting = Waiting::default();
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut wbuf = BytesMut::with_capacity(16 * 1024);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let failure = loop {
        if closed.load(Ordering::Relaxed) {
            break Error::Closed;
        }
        tokio::select! {
            p = rx.recv() => {
                let Some(p) = p else { break Error::Closed };
                queue_request(p, &mut wbuf, &mut waiting);
                // Take everything else already queued, then write once.
                while let Ok(p) = rx.try_recv() {
                    queue_request(p, &mut wbuf, &mut waiting);
                }
                if let Err(source) = wr.write_all(&wbuf).await {
                    break Error::Io { addr, source };
                }
                wbuf.clear();
            }
            // Read even with nothing in flight: a node that closes the connection (it
            // stopped or restarted) is noticed at once, so the pool replaces the
            // connection before a request is lost on it; and bytes nobody asked for
            // are out of step.
            r = rd.read_buf(&mut rbuf) => {
                match r {
                    Ok(0) => break Error::Closed,
                    Err(source) => break Error::Io { addr, source },
                    Ok(_) => {}
                }
                if let Err(e) = hand_out_replies(&mut rbuf, &mut waiting) {
                    let at = &rbuf[..rbuf.len().min(120)];
                    tracing::warn!(%addr, error = %e, at = %at.escape_ascii(), "reply out of step: closing the connection");
                    break Error::Protocol(e.to_string());
                }
                if rbuf.is_empty() {
                    rbuf.clear();
                } else if rbuf.capacity() - rbuf.len() < 4096 {
                    rbuf.reserve(16 * 1024);
                }
            }
            _ = tick.tick() => {}
        }
    };
    closed.store(true, Ordering::Relaxed);
    rx.close();
    let fail = |e: &Error| match e {
        Error::Io { addr, source } => Error::Io {
            addr: *addr,
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        Error::Protocol(m) => Error::Protocol(m.clone()),
        _ => Error::Closed,
    };
    for f in waiting.drain() {
        let _ = f.reply.send(Err(fail(&failure)));
    }
    while let Ok(p) = rx.try_recv() {
        let _ = p.reply.send(Err(fail(&failure)));
    }
}

/// Appends a request (behind its `rc_id` if tagged) to the write buffer.
fn queue_request(p: Pending, wbuf: &mut BytesMut, waiting: &mut Waiting) {
    let f = InFlight {
        expect: p.expect,
        reply: p.reply,
    };
    if p.tagged {
        let id = waiting.next_id;
        waiting.next_id += 1;
        PeerRequest::Id { id }.encode(wbuf);
        waiting.by_id.insert(id, f);
    } else {
        waiting.in_order.push_back(f);
    }
    wbuf.extend_from_slice(&p.request);
}

/// Hands every complete reply at the front of `rbuf` to its request. An error means
/// the stream no longer lines up with the requests: the connection must close.
fn hand_out_replies(rbuf: &mut BytesMut, waiting: &mut Waiting) -> std::result::Result<(), FrameError> {
    loop {
        if let Some(front) = waiting.in_order.front() {
            let Some(n) = reply_len(rbuf, front.expect)? else {
                return Ok(());
            };
            let reply = rbuf.split_to(n).freeze();
            if let Some(f) = waiting.in_order.pop_front() {
                let _ = f.reply.send(Ok(reply));
            }
            continue;
        }
        if rbuf.is_empty() {
            return Ok(());
        }
        let Some(tag) = parse_reply_tag(rbuf)? else {
            return Ok(());
        };
        let expect = waiting.by_id.get(&tag.id).ok_or(FrameError::OutOfStep)?.expect;
        if rbuf.len() < tag.line_len + tag.len {
            rbuf.reserve(tag.line_len + tag.len - rbuf.len());
            return Ok(());
        }
        rbuf.advance(tag.line_len);
        let reply = rbuf.split_to(tag.len).freeze();
        if !reply_fits(&reply, expect) {
            return Err(FrameError::OutOfStep);
        }
        if let Some(f) = waiting.by_id.remove(&tag.id) {
            let _ = f.reply.send(Ok(reply));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A fake node that answers each `get` line with a value and everything else with
    /// STORED, in order, in odd chunk sizes.
    async fn fake_node() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            loop {
                let n = match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                let mut out = Vec::new();
                while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    if line.starts_with(b"get ") {
                        let key = &line[4..line.len() - 2];
                        out.extend_from_slice(b"VALUE ");
                        out.extend_from_slice(key);
                        out.extend_from_slice(b" 0 3\r\nabc\r\nEND\r\n");
                    } else if line.starts_with(b"hang") {
                        // never answer
                    } else {
                        out.extend_from_slice(b"STORED\r\n");
                    }
                }
                for piece in out.chunks(7) {
                    if s.write_all(piece).await.is_err() {
                        return;
                    }
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn pipelined_requests_get_their_own_replies() {
        let addr = fake_node().await;
        let conn = NodeConn::connect(addr, Duration::from_secs(1)).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let conn = conn.clone();
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    let r = conn
                        .request(
                            Bytes::from(format!("get k{i}\r\n")),
                            Expect::Values,
                            Duration::from_secs(5),
                        )
                        .await
                        .unwrap();
                    assert_eq!(r, Bytes::from(format!("VALUE k{i} 0 3\r\nabc\r\nEND\r\n")));
                } else {
                    let r = conn
                        .request(
                            Bytes::from_static(b"touch x 0\r\n"),
                            Expect::Line,
                            Duration::from_secs(5),
                        )
                        .await
                        .unwrap();
                    assert_eq!(r, Bytes::from_static(b"STORED\r\n"));
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }

    /// How a [`fake_peer`] answers.
    #[derive(Clone, Copy)]
    enum Peer {
        /// Every batch's replies, tagged, in reverse order.
        Reversed,
        /// Correct replies, then after `n` of them one whose tag nobody sent.
        UnknownTagAfter(usize),
        /// Correct replies, then after `n` of them an untagged line.
        UntaggedAfter(usize),
        /// Correct replies, then after `n` of them one of the right length for its
        /// request but of the wrong shape (and the real one after it).
        WrongShapeAfter(usize),
    }

    /// A fake node reading `rc_id <n>` + `get <key>` pairs and answering each with the
    /// key's value behind `RI <n> <length>`, as `how` says.
    async fn fake_peer(how: Peer) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let mut answered = 0;
            let mut tag = None;
            loop {
                let n = match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                let mut replies = Vec::new();
                while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    let line = String::from_utf8(line).unwrap();
                    let line = line.trim_end();
                    if let Some(id) = line.strip_prefix("rc_id ") {
                        tag = Some(id.to_string());
                    } else if let Some(key) = line.strip_prefix("get ") {
                        let id = tag.take().expect("every request is tagged");
                        let reply = format!("VALUE {key} 0 {}\r\n{key}\r\nEND\r\n", key.len());
                        replies.push(format!("RI {id} {}\r\n{reply}", reply.len()));
                    }
                }
                if let Peer::Reversed = how {
                    replies.reverse();
                }
                let mut out = String::new();
                for r in replies {
                    answered += 1;
                    match how {
                        Peer::UnknownTagAfter(n) if answered == n => out.push_str("RI 999999 5\r\nEND\r\n"),
                        Peer::UntaggedAfter(n) if answered == n => out.push_str("END\r\n"),
                        // A tag that a request is waiting for, with a reply that is not
                        // a retrieval's.
                        Peer::WrongShapeAfter(n) if answered == n => {
                            let id = r.split(' ').nth(1).unwrap_or("0").to_string();
                            out.push_str(&format!("RI {id} 8\r\nSTORED\r\n"));
                        }
                        _ => {}
                    }
                    out.push_str(&r);
                }
                if s.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        addr
    }

    /// 300 concurrent requests on one tagged connection; each either gets exactly its
    /// own value or an error.
    async fn run_tagged(how: Peer) -> (usize, usize, bool) {
        let addr = fake_peer(how).await;
        let conn = NodeConn::connect(addr, Duration::from_secs(1)).await.unwrap();
        conn.tag_replies();
        let mut tasks = Vec::new();
        for i in 0..300 {
            let conn = conn.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("k{i}");
                let r = conn
                    .request(
                        Bytes::from(format!("get {key}\r\n")),
                        Expect::Values,
                        Duration::from_secs(5),
                    )
                    .await;
                if let Ok(r) = &r {
                    let want = format!("VALUE {key} 0 {}\r\n{key}\r\nEND\r\n", key.len());
                    assert_eq!(String::from_utf8_lossy(r), want, "a reply reached the wrong request");
                }
                r.is_ok()
            }));
        }
        let (mut ok, mut failed) = (0, 0);
        for t in tasks {
            if t.await.unwrap() {
                ok += 1;
            } else {
                failed += 1;
            }
        }
        (ok, failed, conn.is_closed())
    }

    #[tokio::test]
    async fn tagged_replies_in_any_order_reach_their_own_requests() {
        let (ok, failed, closed) = run_tagged(Peer::Reversed).await;
        assert_eq!((ok, failed, closed), (300, 0, false));
    }

    #[tokio::test]
    async fn a_reply_out_of_step_closes_the_connection_and_fails_only_what_was_in_flight() {
        for how in [
            Peer::UnknownTagAfter(40),
            Peer::UntaggedAfter(40),
            Peer::WrongShapeAfter(40),
        ] {
            let (ok, failed, closed) = run_tagged(how).await;
            assert!(closed, "the connection stays open after a reply out of step");
            assert!(ok >= 39, "only {ok} answered before the bad reply");
            assert!(failed > 0, "nothing failed");
            assert_eq!(ok + failed, 300);
        }
    }

    #[tokio::test]
    async fn a_timeout_closes_the_connection() {
        let addr = fake_node().await;
        let conn = NodeConn::connect(addr, Duration::from_secs(1)).await.unwrap();
        let r = conn
            .request(
                Bytes::from_static(b"hang\r\n"),
                Expect::Line,
                Duration::from_millis(100),
            )
            .await;
        assert!(matches!(r, Err(Error::Timeout(_))));
        assert!(conn.is_closed());
        let r = conn
            .request(Bytes::from_static(b"x\r\n"), Expect::Line, Duration::from_millis(500))
            .await;
        assert!(r.is_err());
    }

    /// A node that goes away while the connection is idle: the connection is closed
    /// before anyone sends on it (a pool then opens a fresh one instead of losing the
    /// next request on a dead one).
    #[tokio::test]
    async fn a_peer_that_closes_while_idle_closes_the_connection_at_once() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = tokio::spawn(async move { l.accept().await.unwrap().0 });
        let conn = NodeConn::connect(addr, Duration::from_secs(1)).await.unwrap();
        drop(accepted.await.unwrap());
        let closed = async {
            while !conn.is_closed() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), closed)
            .await
            .expect("the connection still looks open after its peer closed it");
    }

    /// Bytes no request asked for mean the stream is out of step: closed.
    #[tokio::test]
    async fn unsolicited_bytes_close_the_connection() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"STORED\r\n").await.unwrap();
            // Keep the socket open: only the bytes may close the connection.
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let conn = NodeConn::connect(addr, Duration::from_secs(1)).await.unwrap();
        let closed = async {
            while !conn.is_closed() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), closed)
            .await
            .expect("unsolicited bytes were taken");
        server.abort();
    }

    #[tokio::test]
    async fn connect_to_nothing_fails_fast() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(NodeConn::connect(addr, Duration::from_secs(1)).await.is_err());
    }
}
