//! A small pool of pipelined connections to one node.
//!
//! Each connection already carries many requests at once; a few of them spread the
//! work over the node's threads. Requests pick a connection round-robin; a closed one
//! is replaced on next use.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ringcache_protocol::text::frame::Expect;

use crate::conn::NodeConn;
use crate::error::{Error, Result};

/// Connections to one node.
pub struct NodePool {
    addr: SocketAddr,
    slots: Box<[Mutex<Option<NodeConn>>]>,
    next: AtomicUsize,
    connect_timeout: Duration,
    /// Makes the request sent first on every new connection; the reply must be `OK`
    /// (a node marks, and authenticates, its connections to peers this way). The
    /// requests after it are tagged ([`NodeConn::tag_replies`]).
    hello: Option<Arc<dyn Fn() -> Bytes + Send + Sync>>,
}

impl NodePool {
    /// A pool of `size` connections (opened lazily) to `addr`.
    pub fn new(addr: SocketAddr, size: usize, connect_timeout: Duration) -> NodePool {
        NodePool {
            addr,
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            connect_timeout,
            hello: None,
        }
    }

    /// Sends `hello` as the first request of every new connection and requires `OK`.
    pub fn with_hello(self, hello: Bytes) -> NodePool {
        self.with_hello_fn(Arc::new(move || hello.clone()))
    }

    /// Like [`NodePool::with_hello`], with the request made afresh for each connection
    /// (for one that carries a timestamp).
    pub fn with_hello_fn(mut self, hello: Arc<dyn Fn() -> Bytes + Send + Sync>) -> NodePool {
        self.hello = Some(hello);
        self
    }

    /// The node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A live connection, opening one if its slot is empty or closed.
    pub async fn conn(&self) -> Result<NodeConn> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        if let Some(c) = self.slots[i].lock().map(|s| s.clone()).unwrap_or(None) {
            if !c.is_closed() {
                return Ok(c);
            }
        }
        let c = NodeConn::connect(self.addr, self.connect_timeout).await?;
        if let Some(hello) = &self.hello {
            let reply = c.request(hello(), Expect::Line, self.connect_timeout).await?;
            if &reply[..] != b"OK\r\n" {
                c.close();
                return Err(Error::Server(String::from_utf8_lossy(&reply).trim_end().to_string()));
            }
            // A peer connection: every later reply is checked against its request's tag.
            c.tag_replies();
        }
        if let Ok(mut slot) = self.slots[i].lock() {
            *slot = Some(c.clone());
        }
        Ok(c)
    }

    /// Sends one request on a pooled connection; see [`NodeConn::request`].
    pub async fn request(&self, request: Bytes, expect: Expect, timeout: Duration) -> Result<Bytes> {
        let conn = self.conn().await?;
        conn.request(request, expect, timeout).await
    }

    /// Closes every connection (after a node has been declared down).
    pub fn close_all(&self) {
        for slot in self.slots.iter() {
            if let Ok(mut s) = slot.lock() {
                if let Some(c) = s.take() {
                    c.close();
                }
            }
        }
    }
}
