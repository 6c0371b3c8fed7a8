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

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ringcache_protocol::text::frame::{reply_len, Expect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// How many requests may wait to be written before senders wait.
const QUEUE: usize = 1024;

struct Pending {
    request: Bytes,
    expect: Expect,
    reply: oneshot::Sender<Result<Bytes>>,
}

/// One pipelined connection. Cheap to clone; all clones share the stream.
#[derive(Clone)]
pub struct NodeConn {
    addr: SocketAddr,
    queue: mpsc::Sender<Pending>,
    closed: Arc<AtomicBool>,
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
        NodeConn { addr, queue, closed }
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
    let mut inflight: VecDeque<(Expect, oneshot::Sender<Result<Bytes>>)> = VecDeque::new();
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
                wbuf.extend_from_slice(&p.request);
                inflight.push_back((p.expect, p.reply));
                // Take everything else already queued, then write once.
                while let Ok(p) = rx.try_recv() {
                    wbuf.extend_from_slice(&p.request);
                    inflight.push_back((p.expect, p.reply));
                }
                if let Err(source) = wr.write_all(&wbuf).await {
                    break Error::Io { addr, source };
                }
                wbuf.clear();
            }
            r = rd.read_buf(&mut rbuf), if !inflight.is_empty() => {
                match r {
                    Ok(0) => break Error::Closed,
                    Err(source) => break Error::Io { addr, source },
                    Ok(_) => {}
                }
                let mut broken = None;
                while let Some((expect, _)) = inflight.front() {
                    match reply_len(&rbuf, *expect) {
                        Ok(Some(n)) => {
                            let reply = rbuf.split_to(n).freeze();
                            if let Some((_, tx)) = inflight.pop_front() {
                                let _ = tx.send(Ok(reply));
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            broken = Some(Error::Protocol(e.to_string()));
                            break;
                        }
                    }
                }
                if let Some(e) = broken {
                    break e;
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
    for (_, tx) in inflight.drain(..) {
        let _ = tx.send(Err(fail(&failure)));
    }
    while let Ok(p) = rx.try_recv() {
        let _ = p.reply.send(Err(fail(&failure)));
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

    #[tokio::test]
    async fn connect_to_nothing_fails_fast() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(NodeConn::connect(addr, Duration::from_secs(1)).await.is_err());
    }
}
