//! One client connection: read → parse every complete request → execute → write once.
//!
//! Parsed keys and values are slices of the read buffer. Replies for a whole batch of
//! pipelined requests go into one output buffer that is written with one call. Memory
//! stays bounded for any client: the output buffer is flushed whenever it passes
//! [`FLUSH_AT`], and a client that does not read its replies blocks that flush, which
//! stops this loop from reading more.
//!
//! An idle connection holds no buffer: once a batch is answered and nothing of a next
//! request is buffered, both buffers go back to a small per-thread [`pool`], and the
//! connection waits for readability with none. A buffer that grew past its standard
//! size (a large value, a large reply) goes back to a separate, byte-bounded part of
//! the pool, from which the next large value or reply on that thread grows
//! ([`pool::grow`]) instead of mapping, faulting in and unmapping fresh memory each
//! time; past that bound it is freed. So buffers grow on demand and shrink back when
//! the connection goes quiet (as memcached's do, whose idle connections also give
//! their read buffers back to a per-thread cache). Nor does an idle connection hold
//! the batch's state: the task parks in a 128-byte future ([`serve`]), and each batch
//! is a boxed future made when bytes arrive ([`batch`]).
//!
//! A client's requests run one after another, each finished before the next starts,
//! so a client that pipelines `set k` then `get k` reads its own write, wherever `k`
//! lives. A connection that opens with an accepted `rc_peer` is a peer's: it is served
//! from then on by [`crate::peer_connection`], which runs requests concurrently. Every
//! other `rc_*` command answers `ERROR` here, like any unknown command.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use ringcache_protocol::text::peer::PeerRequest;
use ringcache_protocol::text::{
    parse_request, pending_store, response, Limits, PendingStore, Request, StoreLine, StoreMode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tracing::debug;

use crate::exec::{self, Flow};
use crate::node::{unix_now, Node};
use crate::router;
use crate::stats::Counters;
use crate::storage::Landing;

/// Capacity a read buffer is topped up to when it runs low.
const READ_BUF: usize = pool::SIZE;
/// Flush the output buffer before it grows past this many bytes.
const FLUSH_AT: usize = 256 * 1024;

/// Serves one client until it quits, breaks framing, or the node's connections are
/// stopped ([`Connections::stop`]).
///
/// The returned future is what an idle connection costs besides its socket, so it
/// holds only the socket and what must outlive a batch: the batch itself (buffers,
/// counters, parsing, routing) is a separately boxed future that exists only while
/// bytes are being answered (see [`batch`]). Not an `async fn`, whose arguments would
/// stay in the future next to the [`Conn`] built from them.
pub fn serve(node: Arc<Node>, sock: TcpStream) -> impl Future<Output = ()> + Send {
    let _ = sock.set_nodelay(true);
    let mut conn = Conn {
        node: Open::new(node),
        sock,
        swallow: 0,
    };
    async move {
        let (rbuf, out) = loop {
            // Idle: wait for readability or the stop, holding no buffer. Readiness
            // is polled through the socket's own waker slot, so the only waiter node
            // in this future is the stop's.
            let stop = IdleWait {
                stopped: conn.node.0.connections.stop[conn.shard()].notified(),
                conn: &conn,
            }
            .await;
            if stop {
                return;
            }
            // The first read, before a batch future exists, polled once: readiness was
            // just reported, so it reads at once. Through `poll_read`, which clears the
            // socket's readiness after a short read (the receive queue is drained), so
            // the next idle wait parks instead of waking at once to a read that finds
            // nothing: one `recvfrom` per request, not two. A wake-up with nothing to
            // read after all (pending: that read cleared the readiness) costs no batch.
            let mut rbuf = pool::take();
            let n = match conn.sock.read_buf(&mut rbuf).now_or_never() {
                Some(Ok(n)) if n > 0 => n,
                None => {
                    pool::give(rbuf);
                    continue;
                }
                Some(_) => {
                    pool::give(rbuf);
                    return;
                }
            };
            match Box::pin(batch(&mut conn, rbuf, n)).await {
                Next::Idle => {}
                Next::Close => return,
                Next::Peer(rbuf, out) => break (rbuf, out),
            }
        };
        peer(conn, rbuf, out).await;
    }
}

pin_project_lite::pin_project! {
    /// An idle connection's wait: for readability (polled through the socket's own
    /// waker slot, so no waiter node is kept here) or for the stop. A hand-written
    /// future, not a `select!`, to keep the connection's future small.
    struct IdleWait<'a> {
        conn: &'a Conn,
        #[pin]
        stopped: Notified<'a>,
    }
}

impl Future for IdleWait<'_> {
    /// Whether the connection is to end.
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = self.project();
        if this.conn.node.0.connections.stopping.load(Acquire) {
            return Poll::Ready(true);
        }
        if let Poll::Ready(r) = this.conn.sock.poll_read_ready(cx) {
            return Poll::Ready(r.is_err());
        }
        this.stopped.poll(cx).map(|()| true)
    }
}

/// The rest of a connection that opened with an accepted `rc_peer`, served by
/// [`crate::peer_connection`]. Boxed: the peer loop's state is large and only peer
/// connections need it, so it is not part of every client connection's task.
fn peer(conn: Conn, rbuf: BytesMut, out: BytesMut) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let shard = conn.shard();
    let Conn { node: open, sock, .. } = conn;
    Box::pin(async move {
        let node = open.0.clone();
        let stopping = {
            let node = node.clone();
            async move { node.connections.stopped(shard).await }
        };
        crate::peer_connection::serve(node, sock, rbuf, out, stopping).await;
        // Counted open until here.
        drop(open);
    })
}

/// Shards of the stop's waiter list (idle connections wait on one each, so threads do
/// not contend for one lock on every idle wait).
const STOP_SHARDS: usize = 8;

/// A node's client connections: tells them to end after their current batch (at a
/// drain), and counts those still open, so that the listener can wait for them
/// without keeping anything per connection.
#[derive(Debug, Default)]
pub struct Connections {
    stopping: AtomicBool,
    stop: [Notify; STOP_SHARDS],
    open: AtomicUsize,
    closed: Notify,
}

impl Connections {
    /// Tells every connection to end: an idle one at once, a busy one after its batch.
    pub fn stop(&self) {
        self.stopping.store(true, Release);
        for n in &self.stop {
            n.notify_waiters();
        }
    }

    /// Connections not yet ended.
    pub fn open(&self) -> usize {
        self.open.load(Acquire)
    }

    /// Completes once no connection is open.
    pub async fn all_closed(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            closed.await;
        }
    }

    /// Completes once [`Connections::stop`] has been called.
    async fn stopped(&self, shard: usize) {
        loop {
            let stopped = self.stop[shard].notified();
            tokio::pin!(stopped);
            stopped.as_mut().enable();
            if self.stopping.load(Acquire) {
                return;
            }
            stopped.await;
        }
    }
}

/// A connection's node, holding the connection open in [`Connections::open`] and
/// `curr_connections` until dropped.
struct Open(Arc<Node>);

impl Open {
    fn new(node: Arc<Node>) -> Self {
        node.connections.open.fetch_add(1, AcqRel);
        Open(node)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.stats.curr_connections.fetch_sub(1, Relaxed);
        let conns = &self.0.connections;
        if conns.open.fetch_sub(1, AcqRel) == 1 {
            conns.closed.notify_waiters();
        }
    }
}

/// What a connection keeps between batches.
struct Conn {
    node: Open,
    sock: TcpStream,
    /// Bytes still to discard from a refused data block (they may arrive after the
    /// connection went idle).
    swallow: u64,
}

impl Conn {
    /// The stop's waiter list this connection waits on.
    fn shard(&self) -> usize {
        self.sock.as_raw_fd() as usize % STOP_SHARDS
    }
}

/// How a batch ended.
enum Next {
    /// Everything read was answered and no partial request is buffered.
    Idle,
    /// The client quit, broke framing, went away, or the node is shutting down.
    Close,
    /// An accepted `rc_peer`: the rest of the connection is a peer's (its buffers, with
    /// the `OK` still to write, go to [`crate::peer_connection`]).
    Peer(BytesMut, BytesMut),
}

/// One batch: from the first bytes after an idle wait (`n` of them, read into `rbuf`)
/// until every complete request read is answered and nothing of a next one is
/// buffered. Its buffers come from the [`pool`] and go back to it when it ends.
///
/// Not an `async fn`, which would keep its arguments twice in the future (as
/// arguments and as the locals they move into): at 1,056 bytes the boxed future was
/// just past the largest block glibc's per-thread cache serves, so every request took
/// malloc's and free's slow paths (about 300 instructions). The `async move` block
/// captures them once (`a_batch_future_fits_mallocs_thread_cache`).
#[allow(clippy::manual_async_fn)]
fn batch(conn: &mut Conn, mut rbuf: BytesMut, n: usize) -> impl Future<Output = Next> + Send + '_ {
    async move {
        let mut out = pool::take();
        let mut counters = Counters::default();
        let next = answer(conn, &mut rbuf, n, &mut out, &mut counters).await;
        match next {
            // Counted already, before its replies went out.
            Next::Idle => {}
            Next::Close => conn.node.0.stats.totals.absorb(&mut counters),
            Next::Peer(..) => {
                conn.node.0.stats.totals.absorb(&mut counters);
                // The peer loop keeps the buffers (`answer` moved them into `next`).
                pool::forget(2);
                return next;
            }
        }
        pool::give(rbuf);
        pool::give(out);
        next
    }
}

/// Answers the `n` bytes just read into `rbuf`, reading more while a request is
/// incomplete, until the connection is idle again or ends.
async fn answer(
    conn: &mut Conn,
    rbuf: &mut BytesMut,
    mut n: usize,
    out: &mut BytesMut,
    counters: &mut Counters,
) -> Next {
    let shard = conn.shard();
    let Conn { node, sock, swallow } = conn;
    let node: &Node = &node.0;
    let limits = Limits {
        max_item_size: node.settings.max_item_size,
    };
    loop {
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
            if *swallow > 0 {
                let d = (*swallow).min(rbuf.len() as u64);
                rbuf.advance(d as usize);
                *swallow -= d;
                if *swallow > 0 {
                    break;
                }
            }
            let mut parsed = parse_request(rbuf, &limits);
            // A big value's line is in: read the value straight into the store (the
            // boxed future only when it will).
            if let Some(landing) = matches!(parsed, Ok(None))
                .then(|| landing(node, rbuf, &limits))
                .flatten()
            {
                match Box::pin(land(node, sock, rbuf, out, counters, landing, shard)).await {
                    Landed::Done => continue,
                    Landed::Close => return Next::Close,
                    Landed::Route(req) => parsed = Ok(Some(req)),
                    Landed::Err(e) => parsed = Err(e),
                }
            }
            match parsed {
                Ok(Some(Request::Get(get))) if router::runs_here(node, view.as_deref(), &get) => {
                    let mut keys = get.keys.iter().peekable();
                    let mut ended = false;
                    while let Some(key) = keys.next() {
                        let last = keys.peek().is_none();
                        let direct = exec::Direct {
                            sock,
                            last,
                            // No request follows in the buffer: this reply ends the
                            // batch's, and the batch would write it next anyway.
                            ends_batch: last && rbuf.is_empty(),
                        };
                        ended = exec::retrieve_one_to(node, get.kind, &key, now, counters, out, Some(direct));
                        if out.len() >= FLUSH_AT && flush(sock, out, counters).await.is_err() {
                            return Next::Close;
                        }
                    }
                    if !ended {
                        out.put_slice(response::END);
                    }
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
                        out.put_slice(response::OK);
                        return Next::Peer(std::mem::take(rbuf), std::mem::take(out));
                    } else {
                        counters.auth_errors += 1;
                        out.put_slice(b"CLIENT_ERROR authentication failed\r\n");
                    }
                }
                Ok(Some(Request::Peer(_))) => out.put_slice(response::ERROR),
                Ok(Some(req)) => {
                    let flow = match (&node.cluster, &view) {
                        // Boxed: routing's state (a forward, a replication) is most
                        // of a batch's future. Local gets, the common request, do not
                        // come here.
                        (Some(cluster), Some(view)) if !router::runs_locally(cluster, view, &req) => {
                            let mut ctx = router::Ctx::new(node, cluster, view, false, now, counters);
                            Box::pin(router::handle(&mut ctx, req, out)).await
                        }
                        // No cluster, or a cluster of one that would run `req` here
                        // anyway: no routing future to box.
                        _ => exec::execute(node, req, now, counters, out),
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
                                let mut ctx = router::Ctx::new(node, cluster, view, false, now, counters);
                                Box::pin(router::unlink(&mut ctx, key)).await;
                            }
                            _ => {
                                node.store.with(&key, now, |slot| slot.remove());
                            }
                        }
                    }
                    *swallow = e.swallow;
                    if e.close {
                        close = true;
                        break;
                    }
                }
            }
            if out.len() >= FLUSH_AT && flush(sock, out, counters).await.is_err() {
                return Next::Close;
            }
        }
        // Counted before the replies go out: a client that reads them and then asks
        // `stats` on another connection sees its requests counted.
        counters.bytes_written += out.len() as u64;
        node.stats.totals.absorb(counters);
        if write_out(sock, out).await.is_err() || close {
            return Next::Close;
        }
        if rbuf.is_empty() {
            return Next::Idle;
        }
        // Part of a request: read the rest. Doubling once past the standard size (a
        // large value arriving in many reads costs O(n) copies, not O(n^2)), from a
        // pooled grown buffer when one fits.
        if rbuf.capacity() - rbuf.len() < 1024 {
            let need = READ_BUF.max(rbuf.len());
            pool::grow(rbuf, need);
        }
        n = tokio::select! {
            r = sock.read_buf(rbuf) => match r {
                Ok(0) | Err(_) => return Next::Close,
                Ok(n) => n,
            },
            () = node.connections.stopped(shard) => return Next::Close,
        };
    }
}

/// The least value [`land`] reads into the store: a smaller one is in the read buffer
/// at once or nearly (and a store's segments are rarely smaller).
const LAND_MIN: usize = 16 * 1024;

/// What [`land`] did.
enum Landed {
    /// Read the value into the store and ran the request; its reply is in `out`.
    Done,
    /// The client went away, or the node stops.
    Close,
    /// Read the value, but the request is no longer this node's alone to run (the
    /// ring changed meanwhile): here it is, with the value, to route as any other.
    Route(Request),
    /// The value was not followed by `\r\n`.
    Err(ringcache_protocol::text::ParseError),
}

/// A big value whose line [`land`] reads past: the line's length, the line, the key,
/// and the chunks the value goes into.
type Pending<'a> = (usize, StoreLine, Bytes, Landing<'a>);

/// When `rbuf` holds the whole line of a storage command with a big value still to
/// come, and this node would store it itself (no cluster, or a cluster of one that
/// serves keys): the chunks of the store it will live in, for [`land`]. `None`, at the
/// cost of a look at the line, for anything else.
fn landing<'a>(node: &'a Node, rbuf: &BytesMut, limits: &Limits) -> Option<Pending<'a>> {
    let PendingStore { line, store } = pending_store(rbuf, limits)?;
    if store.len < LAND_MIN || matches!(store.mode, StoreMode::Append | StoreMode::Prepend) || !runs_all_here(node) {
        return None;
    }
    let now = unix_now();
    let key = Bytes::copy_from_slice(&rbuf[store.key.0..store.key.1]);
    let exptime = crate::storage::absolute_expiry(store.exptime, now);
    let landing = node.store.land(&key, store.len, store.flags, exptime, now)?;
    Some((line, store, key, landing))
}

/// Reads a big value straight into the chunks of the store it will live in
/// ([`landing`]), as memcached reads a value into the item it allocated from the line,
/// so a big `set` needs no read buffer of its size and no copy out of one. Replies
/// already in `out` are sent first, since the client may wait for them. Boxed by the
/// caller: its state is not part of every batch's.
async fn land(
    node: &Node,
    sock: &mut TcpStream,
    rbuf: &mut BytesMut,
    out: &mut BytesMut,
    counters: &mut Counters,
    (line, p, key, mut landing): Pending<'_>,
    shard: usize,
) -> Landed {
    rbuf.advance(line);
    while !landing.is_full() && !rbuf.is_empty() {
        let spare = landing.spare();
        let n = spare.len().min(rbuf.len());
        spare[..n].copy_from_slice(&rbuf[..n]);
        rbuf.advance(n);
        landing.advance(n);
    }
    if flush(sock, out, counters).await.is_err() {
        return Landed::Close;
    }
    while !landing.is_full() {
        let n = tokio::select! {
            r = sock.read(landing.spare()) => match r {
                Ok(0) | Err(_) => return Landed::Close,
                Ok(n) => n,
            },
            () = node.connections.stopped(shard) => return Landed::Close,
        };
        counters.bytes_read += n as u64;
        landing.advance(n);
    }
    while rbuf.len() < 2 {
        if rbuf.capacity() - rbuf.len() < 64 {
            pool::grow(rbuf, READ_BUF);
        }
        let n = tokio::select! {
            r = sock.read_buf(rbuf) => match r {
                Ok(0) | Err(_) => return Landed::Close,
                Ok(n) => n,
            },
            () = node.connections.stopped(shard) => return Landed::Close,
        };
        counters.bytes_read += n as u64;
    }
    let end = [rbuf[0], rbuf[1]];
    rbuf.advance(2);
    match p.finish(key, Bytes::new(), end) {
        None => Landed::Err(p.bad_chunk()),
        Some(req) if runs_all_here(node) => {
            exec::execute_landed(node, req, &mut landing, unix_now(), counters, out);
            Landed::Done
        }
        Some(mut req) => {
            req.value = landing.to_bytes();
            Landed::Route(Request::Store(req))
        }
    }
}

/// Whether this node runs every key command itself, now: no cluster, or a cluster
/// of one that serves keys ([`router::keys_run_here`]).
fn runs_all_here(node: &Node) -> bool {
    node.cluster
        .as_ref()
        .is_none_or(|cluster| router::keys_run_here(cluster, &cluster.ring()))
}

/// Writes `out` mid-batch, counting its bytes.
async fn flush(sock: &mut TcpStream, out: &mut BytesMut, c: &mut Counters) -> std::io::Result<()> {
    c.bytes_written += out.len() as u64;
    write_out(sock, out).await
}

/// Writes `out` and empties it (its bytes are counted by the caller).
async fn write_out(sock: &mut TcpStream, out: &mut BytesMut) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    sock.write_all(out).await?;
    out.clear();
    Ok(())
}

/// Connection buffers between uses, per thread (tasks may move between threads; a
/// buffer goes back to whichever thread its connection is on).
///
/// A thread serves one connection at a time, so a few pooled buffers cover any
/// number of connections; at most [`KEEP`] standard ones (of [`SIZE`]) are kept.
/// Buffers that grew for a large value or reply are kept apart, up to [`BIG_KEEP`]
/// bytes in all and [`BIG_MAX`] each, and handed out only by [`grow`]: a large
/// allocation is its own mapping (see `main.rs`), so without them every large `get`
/// or `set` mapped, page-faulted in and unmapped a buffer of the value's size (most
/// of the server's CPU in bench scenario 14). Anything else is freed.
pub(crate) mod pool {
    use std::cell::{Cell, RefCell};

    use bytes::{Bytes, BytesMut};

    /// Capacity of a pooled buffer (memcached's read buffers are 16 KiB too).
    pub(crate) const SIZE: usize = 16 * 1024;
    /// Standard buffers kept per thread.
    const KEEP: usize = 32;
    /// Bytes of grown buffers kept per thread: a few replies or requests of the
    /// largest value `-I` allows by default (1 MiB).
    pub(crate) const BIG_KEEP: usize = 4 * 1024 * 1024;
    /// The largest grown buffer kept.
    const BIG_MAX: usize = 2 * 1024 * 1024;

    thread_local! {
        static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
        /// Grown buffers, as plain vectors (empty, so their capacity is the whole
        /// allocation), and their bytes.
        static BIG: RefCell<(Vec<Vec<u8>>, usize)> = const { RefCell::new((Vec::new(), 0)) };
        /// Buffers this thread handed out minus those given back (may go negative on
        /// one thread and positive on another when tasks move; sums to the buffers
        /// connections hold).
        static LENT: Cell<isize> = const { Cell::new(0) };
    }

    /// An empty buffer of [`SIZE`] bytes.
    pub(crate) fn take() -> BytesMut {
        LENT.with(|l| l.set(l.get() + 1));
        FREE.with(|f| f.borrow_mut().pop())
            .unwrap_or_else(|| BytesMut::with_capacity(SIZE))
    }

    /// Returns a buffer from [`take`]. A buffer still holding bytes or still shared
    /// with a parsed request is freed instead of kept, as is a grown one past the
    /// bounds above.
    pub(crate) fn give(b: BytesMut) {
        LENT.with(|l| l.set(l.get() - 1));
        keep(b);
    }

    fn keep(mut b: BytesMut) {
        if !b.is_empty() {
            return;
        }
        // `try_reclaim` makes the whole allocation writable again when nothing else
        // refers to it, without allocating.
        if b.capacity() <= 2 * SIZE && b.try_reclaim(SIZE) && b.capacity() <= 2 * SIZE {
            FREE.with(|f| {
                let mut f = f.borrow_mut();
                if f.len() < KEEP {
                    f.push(b);
                }
            });
            return;
        }
        // A grown buffer: kept whole if nothing else refers to it (`try_reclaim`
        // fails on a shared one; the conversion then takes the allocation as is).
        if b.capacity() > BIG_MAX || !b.try_reclaim(1) {
            return;
        }
        let v = Vec::from(b);
        let cap = v.capacity();
        if cap <= 2 * SIZE || cap > BIG_MAX {
            return;
        }
        BIG.with(|big| {
            let (list, bytes) = &mut *big.borrow_mut();
            if *bytes + cap <= BIG_KEEP {
                *bytes += cap;
                list.push(v);
            }
        });
    }

    /// Makes room for `need` more bytes in `b` (a buffer from [`take`], or any other):
    /// from the smallest pooled grown buffer that holds `b`'s bytes and `need` more,
    /// into which they are copied (the buffer it replaces goes back to the pool), or
    /// else by reserving as usual.
    pub(crate) fn grow(b: &mut BytesMut, need: usize) {
        if b.capacity() - b.len() >= need {
            return;
        }
        let want = b.len().saturating_add(need);
        let found = BIG.with(|big| {
            let (list, bytes) = &mut *big.borrow_mut();
            let i = (0..list.len())
                .filter(|&i| list[i].capacity() >= want)
                .min_by_key(|&i| list[i].capacity())?;
            let v = list.swap_remove(i);
            *bytes -= v.capacity();
            Some(v)
        });
        match found {
            Some(v) => {
                // Zero-copy: an empty vector becomes a buffer of its whole capacity.
                let mut grown = BytesMut::from(Bytes::from(v));
                grown.extend_from_slice(b);
                let mut old = std::mem::replace(b, grown);
                old.clear();
                keep(old);
            }
            None => b.reserve(need),
        }
    }

    /// `n` buffers from [`take`] that leave the pool's accounting for good (a peer
    /// connection keeps its buffers).
    pub(crate) fn forget(n: isize) {
        LENT.with(|l| l.set(l.get() - n));
    }

    /// Buffers handed out and not given back, on this thread.
    #[cfg(test)]
    pub(crate) fn lent() -> isize {
        LENT.with(Cell::get)
    }

    /// Buffers pooled on this thread, and the largest capacity among them.
    #[cfg(test)]
    pub(crate) fn pooled() -> (usize, usize) {
        FREE.with(|f| {
            let f = f.borrow();
            (f.len(), f.iter().map(BytesMut::capacity).max().unwrap_or(0))
        })
    }

    /// Grown buffers pooled on this thread, and their bytes.
    #[cfg(test)]
    pub(crate) fn pooled_big() -> (usize, usize) {
        BIG.with(|b| {
            let b = b.borrow();
            (b.0.len(), b.1)
        })
    }
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

    /// A node serving one client connection on this (current-thread) runtime, so the
    /// connection's buffers come from and go back to this thread's pool.
    async fn one_conn() -> TcpStream {
        let node = Arc::new(build_local_node(&Config::parse_from(["ringcache"])));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (sock, _) = l.accept().await.unwrap();
            serve(node, sock).await;
        });
        TcpStream::connect(addr).await.unwrap()
    }

    /// Reads until the reply ends with `end` (bounded by a timeout).
    async fn read_until(s: &mut TcpStream, end: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), async {
            while !got.ends_with(end) {
                let mut chunk = vec![0u8; 64 * 1024];
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed after {} bytes", got.len());
                got.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("reply");
        got
    }

    /// Lets the server task run until it holds `n` buffers (bounded: a connection
    /// that never gets there fails the test, however fast it is).
    async fn settle_to(n: isize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while pool::lent() != n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn settle() {
        settle_to(0).await;
    }

    /// Sends a `set` of a 300 KiB value and a `get` of it in one write, far larger than
    /// a standard buffer either way; returns the value and the replies.
    async fn big_set_and_get(c: &mut TcpStream) -> (Vec<u8>, Vec<u8>) {
        let value = vec![b'v'; 300 * 1024];
        let mut req = format!("set big 0 0 {}\r\n", value.len()).into_bytes();
        req.extend_from_slice(&value);
        req.extend_from_slice(b"\r\nget big\r\n");
        c.write_all(&req).await.unwrap();
        let reply = read_until(c, b"END\r\n").await;
        (value, reply)
    }

    #[tokio::test]
    async fn an_idle_connection_holds_no_buffer_after_a_burst() {
        let mut c = one_conn().await;
        let (value, reply) = big_set_and_get(&mut c).await;
        assert!(reply.starts_with(b"STORED\r\nVALUE big 0 307200\r\n"));
        assert_eq!(reply.len(), 8 + 20 + value.len() + 2 + 5);
        settle().await;
        assert_eq!(pool::lent(), 0, "the idle connection still holds its buffers");
        let (pooled, largest) = pool::pooled();
        assert!(pooled <= 2, "{pooled} buffers pooled for one connection");
        assert!(largest <= 2 * pool::SIZE, "a grown buffer ({largest} bytes) was pooled");
        // The connection still works, and ends up holding nothing again.
        c.write_all(b"get big\r\n").await.unwrap();
        let again = read_until(&mut c, b"END\r\n").await;
        assert_eq!(again.len(), 20 + value.len() + 2 + 5);
        settle().await;
        assert_eq!(pool::lent(), 0);
    }

    /// A read buffer grown for a large request is kept (bounded) and the next large
    /// request on the thread grows into it, instead of a fresh allocation each time.
    /// (`append` is read into the buffer: a big `set` is read into the store, see
    /// `a_big_value_is_read_into_the_store`.)
    #[tokio::test]
    async fn a_grown_buffer_is_pooled_within_its_bound_and_reused() {
        let mut c = one_conn().await;
        let append = |n: usize| {
            let mut req = format!("append big 0 0 {n}\r\n").into_bytes();
            req.extend_from_slice(&vec![b'a'; n]);
            req.extend_from_slice(b"\r\n");
            req
        };
        c.write_all(b"set big 0 0 1\r\nv\r\n").await.unwrap();
        read_until(&mut c, b"STORED\r\n").await;
        c.write_all(&append(300 * 1024)).await.unwrap();
        read_until(&mut c, b"STORED\r\n").await;
        settle().await;
        let (n, bytes) = pool::pooled_big();
        assert!(n >= 1, "no grown buffer kept");
        assert!(bytes <= pool::BIG_KEEP);
        for _ in 0..3 {
            c.write_all(&append(100 * 1024)).await.unwrap();
            read_until(&mut c, b"STORED\r\n").await;
            settle().await;
            assert_eq!(pool::pooled_big(), (n, bytes), "the kept buffer was not the one reused");
        }
    }

    /// A big value is read straight into the store: no read buffer grows for it,
    /// whatever part of it came with its line, and pipelined requests around it are
    /// answered in order; a value not followed by `\r\n` is refused as memcached
    /// refuses it, and the connection goes on.
    #[tokio::test]
    async fn a_big_value_is_read_into_the_store() {
        let mut c = one_conn().await;
        settle().await;
        let grown = pool::pooled_big();
        let value: Vec<u8> = (0..700 * 1024).map(|i| (i % 253) as u8).collect();
        for split in [0, 10, 20 * 1024, 300 * 1024, value.len(), value.len() + 1] {
            let mut req = b"set s 0 0 1\r\nx\r\n".to_vec();
            req.extend_from_slice(format!("set big{split} 3 0 {}\r\n", value.len()).as_bytes());
            let at = req.len() + split;
            req.extend_from_slice(&value);
            req.extend_from_slice(format!("\r\nget s\r\nget big{split}\r\n").as_bytes());
            c.write_all(&req[..at]).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            c.write_all(&req[at..]).await.unwrap();
            let mut want = format!(
                "STORED\r\nSTORED\r\nVALUE s 0 1\r\nx\r\nEND\r\nVALUE big{split} 3 {}\r\n",
                value.len()
            )
            .into_bytes();
            want.extend_from_slice(&value);
            want.extend_from_slice(b"\r\nEND\r\n");
            let mut got = vec![0; want.len()];
            tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut got))
                .await
                .expect("replies")
                .unwrap();
            assert!(got == want, "replies through split {split}");
        }
        settle().await;
        assert_eq!(pool::pooled_big(), grown, "a read buffer grew for a big set");
        assert_eq!(pool::lent(), 0);
        // Not followed by \r\n: refused once its bytes are in, and the next request runs.
        let mut req = format!("set bad 0 0 {}\r\n", value.len()).into_bytes();
        req.extend_from_slice(&value);
        req.extend_from_slice(b"XYget bad\r\n");
        c.write_all(&req).await.unwrap();
        let reply = read_until(&mut c, b"END\r\n").await;
        assert_eq!(reply, b"CLIENT_ERROR bad data chunk\r\nEND\r\n");
    }

    /// A value long enough to go from the store straight to the socket
    /// (`exec::DIRECT_VALUE`) keeps its place among pipelined replies, whatever part
    /// of it the socket takes at once, with its flags and its CAS for `gets`.
    #[tokio::test]
    async fn a_value_sent_from_the_store_keeps_its_place_among_the_replies() {
        let mut c = one_conn().await;
        let value: Vec<u8> = (0..600 * 1024).map(|i| (i % 251) as u8).collect();
        let mut req = format!("set big 5 0 {}\r\n", value.len()).into_bytes();
        req.extend_from_slice(&value);
        req.extend_from_slice(b"\r\nset s 0 0 1\r\nx\r\nget s big s\r\nget big\r\ngets big\r\nget s\r\n");
        let block = |head: &[u8]| {
            let mut b = head.to_vec();
            b.extend_from_slice(&value);
            b.extend_from_slice(b"\r\n");
            b
        };
        let small = b"VALUE s 0 1\r\nx\r\n".to_vec();
        let mut expected = b"STORED\r\nSTORED\r\n".to_vec();
        for part in [
            small.clone(),
            block(b"VALUE big 5 614400\r\n"),
            small.clone(),
            b"END\r\n".to_vec(),
            block(b"VALUE big 5 614400\r\n"),
            b"END\r\n".to_vec(),
        ] {
            expected.extend_from_slice(&part);
        }
        let (r, w) = c.split();
        let mut r = r;
        let mut w = w;
        let ((), got) = tokio::join!(async { w.write_all(&req).await.unwrap() }, async {
            let mut got = vec![0; expected.len()];
            tokio::time::timeout(Duration::from_secs(10), r.read_exact(&mut got))
                .await
                .expect("replies in time")
                .unwrap();
            got
        });
        assert!(got == expected, "replies out of order or altered");
        // `gets` carries the CAS unique; then `get s` ends the pipeline.
        let rest = read_until(&mut c, b"VALUE s 0 1\r\nx\r\nEND\r\n").await;
        let head_end = rest.iter().position(|&b| b == b'\n').unwrap() + 1;
        let head = std::str::from_utf8(&rest[..head_end]).unwrap();
        assert!(
            head.starts_with("VALUE big 5 614400 ") && head.ends_with("\r\n"),
            "{head}"
        );
        assert!(rest[head_end..].starts_with(&value[..4096]));
        assert_eq!(rest.len(), head_end + value.len() + 2 + 5 + small.len() + 5);
    }

    /// What an idle connection costs besides its socket is its task: the future it
    /// parks in holds the socket, its node and an idle wait, and the batch (buffers,
    /// parsing, routing, the peer loop) is boxed apart, so that tokio's task cell (the
    /// future plus about 104 bytes, in 128-byte steps) stays at 256 bytes.
    #[tokio::test]
    async fn a_connection_task_is_small() {
        let node = Arc::new(build_local_node(&Config::parse_from(["ringcache"])));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let task = serve(node, s);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 152, "a connection's future is {size} bytes");
    }

    /// A batch's future is boxed once per batch (once per request without
    /// pipelining): it must stay within the largest block glibc's per-thread cache
    /// serves (1,032 bytes), or every request pays malloc's and free's slow paths.
    #[tokio::test]
    async fn a_batch_future_fits_mallocs_thread_cache() {
        let node = Arc::new(build_local_node(&Config::parse_from(["ringcache"])));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sock = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let mut conn = Conn {
            node: Open::new(node),
            sock,
            swallow: 0,
        };
        let size = std::mem::size_of_val(&batch(&mut conn, BytesMut::new(), 0));
        assert!(size <= 1032, "a batch's future is {size} bytes");
    }

    #[tokio::test]
    async fn a_partial_request_keeps_its_bytes_across_waits() {
        let mut c = one_conn().await;
        c.write_all(b"set k 0 0 10\r\n01234").await.unwrap();
        settle_to(2).await;
        // Half a request is buffered: the connection holds its buffers meanwhile.
        assert_eq!(pool::lent(), 2);
        c.write_all(b"56789\r\nget k\r\n").await.unwrap();
        let reply = read_until(&mut c, b"END\r\n").await;
        assert_eq!(reply, b"STORED\r\nVALUE k 0 10\r\n0123456789\r\nEND\r\n");
        settle().await;
        assert_eq!(pool::lent(), 0);
    }
}
