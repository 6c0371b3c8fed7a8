//! The load loop: connections that write batches of requests and parse the replies.
//!
//! # Model
//! Each task owns one connection per target node (with `--direct`), or one
//! connection to one address of `--server` (task i to address i modulo their number,
//! round robin), and runs a closed loop: build a batch of `--pipeline` requests into
//! the connections' write buffers, write each buffer with one `write_all`, then read
//! until every reply of the batch is parsed. A request's latency is the time from the
//! batch's write to its reply being parsed, recorded in nanoseconds in an HDR
//! histogram (3 significant digits) owned by the task and merged at the end, so tasks
//! share nothing hot but a request budget counter (and, with `--unique-sets`, the
//! counter of fresh set keys). Requests at least `--slow-ms` slow are counted, and
//! error reply lines are counted by their text (an error path, so it may allocate).
//!
//! # Cost per request
//! No allocation in steady state: keys are formatted into reused buffers, the value
//! is one prebuilt block copied into the write buffer, replies are classified in place
//! by [`crate::reply::parse_reply`] and consumed from a `BytesMut` that is reused.
//!
//! # Phases
//! An optional prefill phase sets every key once on the same connections, in batches
//! of `--prefill-depth` (or `--pipeline`, if larger), its error replies counted apart
//! from the measured ones; then the measured phase runs for `--warmup + --duration` seconds or until `--requests`
//! measured requests (fill mode: until the server reports evictions). Requests issued
//! during the warm-up are neither counted nor timed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sizes::value_len_between;
use anyhow::{bail, Context};
use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use ringcache_protocol::ring::{Ring, RingConfig, RING_HASH_NAME};
use ringcache_protocol::text::Expect;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::{DistSpec, LoadArgs};
use crate::keys::{write_key, KeyDist};
use crate::probe;
use crate::reply::{parse_reply, Reply};
use crate::result::RunResult;

/// What the requests of a phase are.
struct Plan {
    /// Probability that a request is a get.
    get_ratio: f64,
    /// Keys per get.
    width: usize,
    /// Set a key after a get misses it.
    read_through: bool,
    keys: KeySource,
    /// `--unique-sets`: the next id of a set that writes a fresh key.
    fresh_sets: Option<AtomicU64>,
    /// Requests per batch per task.
    depth: usize,
    prefix: Vec<u8>,
    /// Value bytes (as many as the largest value), a prefix of which follows every set
    /// header.
    value: Vec<u8>,
    /// Value sizes: `value_size` for every key, or log-uniform per key up to `value_max`.
    value_size: usize,
    value_max: Option<usize>,
    reply_timeout: Duration,
    /// Measured requests at least this slow are counted in [`Tally::slow`].
    slow_ns: u64,
}

enum KeySource {
    Random(KeyDist),
    /// Ids handed out in order from a shared counter, up to `end` (exclusive).
    Sequential {
        next: AtomicU64,
        end: u64,
    },
}

/// When a phase ends, shared by its tasks.
struct Limits {
    /// Requests built before this instant are neither counted nor timed.
    warmup_end: Instant,
    deadline: Instant,
    /// Measured requests still allowed.
    budget: AtomicU64,
    /// Set to end the phase early (fill mode: evictions seen; any task's failure).
    stop: AtomicBool,
}

impl Plan {
    /// The size of key `id`'s value: fixed, or between `value_size` and `value_max`,
    /// log-uniform in a hash of `id`, so a key is always written with the same size.
    fn value_len(&self, id: u64) -> usize {
        let Some(max) = self.value_max else {
            return self.value_size;
        };
        value_len_between(self.value_size, max, id)
    }
}

impl Limits {
    fn claim(&self) -> bool {
        self.budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
            .is_ok()
    }
}

/// Sends each key to a connection: everything to connection 0 (a task's only one), or
/// to the key's primary owner on the ring.
enum Router {
    Single,
    Ring(Ring<String>),
}

impl Router {
    fn route(&self, key: &[u8]) -> usize {
        match self {
            Router::Single => 0,
            Router::Ring(ring) => ring.primary(key).map_or(0, |i| i.get()),
        }
    }
}

/// A request awaiting its reply.
#[derive(Clone, Copy)]
enum Inflight {
    Get { keys: u32, id: u64 },
    Set,
}

/// One TCP connection with its reused buffers.
struct Conn {
    /// host:port, for error messages.
    addr: String,
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    inflight: VecDeque<Inflight>,
}

impl Conn {
    async fn open(addr: &str, limit: Duration) -> anyhow::Result<Conn> {
        Ok(Conn {
            addr: addr.to_string(),
            stream: probe::connect(addr, limit).await?,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: Vec::with_capacity(64 * 1024),
            inflight: VecDeque::with_capacity(256),
        })
    }
}

/// Distinct error reply lines a run keeps (one more counts the rest).
const MAX_ERROR_LINES: usize = 16;

/// What one task measured.
struct Tally {
    hist: Histogram<u64>,
    requests: u64,
    gets: u64,
    get_keys: u64,
    hits: u64,
    sets: u64,
    not_stored: u64,
    errors: u64,
    /// Requests that took at least [`Plan::slow_ns`].
    slow: u64,
    /// Error reply lines and their counts, see [`Tally::error_reply`].
    error_replies: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> anyhow::Result<Tally> {
        Ok(Tally {
            // 1 ns .. 100 s at 3 significant digits.
            hist: Histogram::new_with_bounds(1, 100_000_000_000, 3)?,
            requests: 0,
            gets: 0,
            get_keys: 0,
            hits: 0,
            sets: 0,
            not_stored: 0,
            errors: 0,
            slow: 0,
            error_replies: BTreeMap::new(),
        })
    }

    /// Counts an error reply line (`ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`):
    /// at most [`MAX_ERROR_LINES`] distinct lines, then under `(other)`.
    fn error_reply(&mut self, reply: &[u8]) {
        self.errors += 1;
        let line = String::from_utf8_lossy(reply.strip_suffix(b"\r\n").unwrap_or(reply));
        let known = self.error_replies.contains_key(line.as_ref());
        let key = if known || self.error_replies.len() < MAX_ERROR_LINES {
            line.into_owned()
        } else {
            "(other)".to_string()
        };
        *self.error_replies.entry(key).or_default() += 1;
    }

    fn merge(&mut self, o: &Tally) -> anyhow::Result<()> {
        self.hist.add(&o.hist)?;
        self.requests += o.requests;
        self.gets += o.gets;
        self.get_keys += o.get_keys;
        self.hits += o.hits;
        self.sets += o.sets;
        self.not_stored += o.not_stored;
        self.errors += o.errors;
        self.slow += o.slow;
        for (line, n) in &o.error_replies {
            *self.error_replies.entry(line.clone()).or_default() += n;
        }
        Ok(())
    }
}

/// A task's connections and its private state, carried from phase to phase.
struct Worker {
    conns: Vec<Conn>,
    rng: SmallRng,
    /// Keys that missed under read-through, to be set next.
    pending_sets: VecDeque<u64>,
    /// (connection, key id) of the get being built.
    scratch: Vec<(usize, u64)>,
    key: Vec<u8>,
}

impl Worker {
    /// Runs `plan` until `limits` end it; returns what it measured.
    async fn run(&mut self, plan: &Plan, limits: &Limits, router: &Router) -> anyhow::Result<Tally> {
        let mut tally = Tally::new()?;
        loop {
            let now = Instant::now();
            if now >= limits.deadline || limits.stop.load(Ordering::Relaxed) {
                break;
            }
            let measuring = now >= limits.warmup_end;
            let (built, exhausted) = self.build_batch(plan, limits, router, measuring);
            if built == 0 {
                break;
            }
            let t0 = Instant::now();
            for c in &mut self.conns {
                if !c.wbuf.is_empty() {
                    c.stream
                        .write_all(&c.wbuf)
                        .await
                        .with_context(|| format!("writing requests to {}", c.addr))?;
                    c.wbuf.clear();
                }
            }
            for i in 0..self.conns.len() {
                self.collect(i, plan, t0, measuring, &mut tally).await?;
            }
            if exhausted {
                break;
            }
        }
        Ok(tally)
    }

    /// Encodes up to `plan.depth` requests; returns how many, and whether the phase's
    /// request budget or key sequence ran out.
    fn build_batch(&mut self, plan: &Plan, limits: &Limits, router: &Router, measuring: bool) -> (usize, bool) {
        let mut built = 0;
        while built < plan.depth {
            if measuring && !limits.claim() {
                return (built, true);
            }
            if let Some(id) = self.pending_sets.pop_front() {
                self.encode_set(plan, router, id);
            } else if plan.get_ratio > 0.0 && (plan.get_ratio >= 1.0 || self.rng.gen::<f64>() < plan.get_ratio) {
                let Some(()) = self.encode_get(plan, router) else {
                    return (built, true);
                };
            } else {
                let id = match &plan.fresh_sets {
                    Some(next) => next.fetch_add(1, Ordering::Relaxed),
                    None => match self.next_id(plan) {
                        Some(id) => id,
                        None => return (built, true),
                    },
                };
                self.encode_set(plan, router, id);
            }
            built += 1;
        }
        (built, false)
    }

    fn next_id(&mut self, plan: &Plan) -> Option<u64> {
        match &plan.keys {
            KeySource::Random(d) => Some(d.sample(&mut self.rng)),
            KeySource::Sequential { next, end } => {
                let id = next.fetch_add(1, Ordering::Relaxed);
                (id < *end).then_some(id)
            }
        }
    }

    fn encode_set(&mut self, plan: &Plan, router: &Router, id: u64) {
        self.key.clear();
        write_key(&mut self.key, &plan.prefix, id);
        let c = &mut self.conns[router.route(&self.key)];
        c.wbuf.extend_from_slice(b"set ");
        c.wbuf.extend_from_slice(&self.key);
        c.wbuf.extend_from_slice(b" 0 0 ");
        let len = plan.value_len(id);
        let mut n = itoa::Buffer::new();
        c.wbuf.extend_from_slice(n.format(len).as_bytes());
        c.wbuf.extend_from_slice(b"\r\n");
        c.wbuf.extend_from_slice(&plan.value[..len]);
        c.wbuf.extend_from_slice(b"\r\n");
        c.inflight.push_back(Inflight::Set);
    }

    /// One `get` line per connection that owns any of the `width` keys drawn.
    fn encode_get(&mut self, plan: &Plan, router: &Router) -> Option<()> {
        self.scratch.clear();
        for _ in 0..plan.width {
            let id = self.next_id(plan)?;
            self.key.clear();
            write_key(&mut self.key, &plan.prefix, id);
            self.scratch.push((router.route(&self.key), id));
        }
        for ci in 0..self.conns.len() {
            let mut count = 0u32;
            let mut last = 0;
            for &(owner, id) in &self.scratch {
                if owner != ci {
                    continue;
                }
                let c = &mut self.conns[ci];
                c.wbuf.extend_from_slice(if count == 0 { b"get " } else { b" " });
                write_key(&mut c.wbuf, &plan.prefix, id);
                count += 1;
                last = id;
            }
            if count > 0 {
                let c = &mut self.conns[ci];
                c.wbuf.extend_from_slice(b"\r\n");
                c.inflight.push_back(Inflight::Get { keys: count, id: last });
            }
        }
        Some(())
    }

    /// Reads connection `i` until all its in-flight replies are parsed.
    async fn collect(
        &mut self,
        i: usize,
        plan: &Plan,
        t0: Instant,
        measuring: bool,
        t: &mut Tally,
    ) -> anyhow::Result<()> {
        let c = &mut self.conns[i];
        while let Some(&req) = c.inflight.front() {
            let expect = match req {
                Inflight::Get { .. } => Expect::Values,
                Inflight::Set => Expect::Stored,
            };
            let parsed = parse_reply(&c.rbuf, expect).with_context(|| format!("reply from {}", c.addr))?;
            let Some((reply, used)) = parsed else {
                // Large values: read in big steps, not the few bytes `read_buf` reserves
                // in a full buffer.
                if c.rbuf.capacity() - c.rbuf.len() < 16 * 1024 {
                    c.rbuf.reserve(64 * 1024);
                }
                let n = timeout(plan.reply_timeout, c.stream.read_buf(&mut c.rbuf))
                    .await
                    .map_err(|_| anyhow::anyhow!("no reply from {} within {:?}", c.addr, plan.reply_timeout))?
                    .with_context(|| format!("reading replies from {}", c.addr))?;
                if n == 0 {
                    bail!(
                        "{} closed the connection with {} requests unanswered",
                        c.addr,
                        c.inflight.len()
                    );
                }
                continue;
            };
            if measuring && reply == Reply::Error {
                // An error reply is one line, so it is all of `used`.
                t.error_reply(&c.rbuf[..used]);
            }
            c.rbuf.advance(used);
            c.inflight.pop_front();
            if plan.read_through {
                if let (Inflight::Get { id, .. }, Reply::Values { hits: 0 }) = (req, reply) {
                    self.pending_sets.push_back(id);
                }
            }
            if !measuring {
                continue;
            }
            let ns = t0.elapsed().as_nanos().try_into().unwrap_or(u64::MAX).max(1);
            t.hist.saturating_record(ns);
            t.slow += u64::from(ns >= plan.slow_ns);
            t.requests += 1;
            match (req, reply) {
                (Inflight::Get { keys, .. }, reply) => {
                    t.gets += 1;
                    t.get_keys += u64::from(keys);
                    match reply {
                        Reply::Values { hits } => t.hits += u64::from(hits),
                        Reply::Error => {}
                        Reply::Stored | Reply::NotStored | Reply::Other => {
                            bail!("a get was answered with a storage reply")
                        }
                    }
                }
                (Inflight::Set, reply) => {
                    t.sets += 1;
                    match reply {
                        Reply::Stored => {}
                        Reply::NotStored => t.not_stored += 1,
                        Reply::Error => {}
                        Reply::Values { .. } | Reply::Other => bail!("a set was answered with VALUE/END"),
                    }
                }
            }
        }
        Ok(())
    }
}

/// Runs `plan` on every worker at once; gives the workers back with the merged tally.
async fn phase(
    workers: Vec<Worker>,
    plan: Arc<Plan>,
    limits: Arc<Limits>,
    router: Arc<Router>,
) -> anyhow::Result<(Vec<Worker>, Tally)> {
    let mut handles = Vec::with_capacity(workers.len());
    for mut w in workers {
        let (plan, limits, router) = (plan.clone(), limits.clone(), router.clone());
        handles.push(tokio::spawn(async move {
            let r = w.run(&plan, &limits, &router).await;
            if r.is_err() {
                limits.stop.store(true, Ordering::Relaxed);
            }
            (w, r)
        }));
    }
    let mut total = Tally::new()?;
    let mut back = Vec::with_capacity(handles.len());
    let mut first_err = None;
    for h in handles {
        let (w, r) = h.await.context("load task panicked")?;
        match r {
            Ok(t) => total.merge(&t)?,
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
        back.push(w);
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok((back, total)),
    }
}

/// Where requests go: the node addresses, in connection order, and the router. With
/// [`Router::Single`], the addresses of `--server`, which tasks take in turn.
async fn targets(args: &LoadArgs, limit: Duration) -> anyhow::Result<(Vec<String>, Router)> {
    if !args.direct {
        return Ok((args.servers().into_iter().map(String::from).collect(), Router::Single));
    }
    let topo = probe::topology(&args.server, limit)
        .await
        .context("fetching the cluster topology")?;
    if topo.hash != RING_HASH_NAME {
        bail!(
            "cluster hashes keys with {:?}; this client places keys with {RING_HASH_NAME}",
            topo.hash
        );
    }
    let names: Vec<String> = topo.members.iter().map(|m| m.name.clone()).collect();
    let config = RingConfig {
        vnodes: topo.vnodes,
        replicas: topo.replicas,
    };
    let ring = Ring::new(names, config, topo.version).map_err(|e| anyhow::anyhow!("building the ring: {e}"))?;
    if ring.is_empty() {
        bail!("topology of {} lists no members", args.server);
    }
    let mut addrs = Vec::with_capacity(ring.len());
    for name in ring.nodes() {
        let m = topo
            .members
            .iter()
            .find(|m| &m.name == name)
            .context("ring node missing from topology")?;
        addrs.push(m.client.to_string());
    }
    Ok((addrs, Router::Ring(ring)))
}

/// Polls `stats` until evictions > 0, then stops the phase.
async fn watch_evictions(addr: String, limits: Arc<Limits>, limit: Duration) -> anyhow::Result<()> {
    let mut stream = probe::connect(&addr, limit).await?;
    while Instant::now() < limits.deadline && !limits.stop.load(Ordering::Relaxed) {
        let s = probe::stats(&mut stream, limit).await?;
        if probe::stat_u64(&s, "evictions")? > 0 {
            limits.stop.store(true, Ordering::Relaxed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn cpu_sum(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter().map(|&p| probe::cpu_ticks(p)).sum()
}

fn rss_sum(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter().map(|&p| probe::rss_kib(p)).sum()
}

/// Idle mode: `--connections` connections, each used once (a set and a get of a
/// `--value-size` value, all of one key, so the server has had to buffer a request and
/// a reply on it but stores one item) and then left idle for `--duration` seconds; the server's RSS before the
/// connections and at the end. Connections open one at a time, each request
/// bounded by the reply timeout.
async fn idle(args: &LoadArgs, result: &mut RunResult, limit: Duration) -> anyhow::Result<()> {
    result.rss_before_kib = Some(rss_sum(&args.server_pids)?);
    let started = Instant::now();
    let mut value = vec![b'x'; args.value_size];
    value.extend_from_slice(b"\r\n");
    let mut held = Vec::with_capacity(args.connections);
    let mut rbuf = BytesMut::with_capacity(args.value_size + 4096);
    let mut req = Vec::with_capacity(args.value_size + 128);
    for i in 0..args.connections {
        let mut stream = probe::connect(&args.server, limit)
            .await
            .with_context(|| format!("opening idle connection {} of {}", i + 1, args.connections))?;
        req.clear();
        let mut key = Vec::with_capacity(32);
        // One key for all: the store holds one item, so RSS growth is the connections'.
        write_key(&mut key, args.key_prefix.as_bytes(), 0);
        for part in [
            &b"set "[..],
            &key,
            b" 0 0 ",
            itoa::Buffer::new().format(args.value_size).as_bytes(),
            b"\r\n",
            &value,
            b"get ",
            &key,
            b"\r\n",
        ] {
            req.extend_from_slice(part);
        }
        let exchange = async {
            stream.write_all(&req).await?;
            rbuf.clear();
            let mut replies = 0;
            while replies < 2 {
                let expect = if replies == 0 { Expect::Stored } else { Expect::Values };
                match parse_reply(&rbuf, expect)? {
                    Some((Reply::Error, _)) => bail!(
                        "error reply: {:?}",
                        String::from_utf8_lossy(&rbuf[..rbuf.len().min(120)])
                    ),
                    Some((_, used)) => {
                        rbuf.advance(used);
                        replies += 1;
                    }
                    None => {
                        if stream.read_buf(&mut rbuf).await? == 0 {
                            bail!("connection closed");
                        }
                    }
                }
            }
            anyhow::Ok(())
        };
        timeout(limit, exchange)
            .await
            .map_err(|_| anyhow::anyhow!("no reply within {limit:?}"))?
            .with_context(|| format!("idle connection {} of {}", i + 1, args.connections))?;
        held.push(stream);
    }
    let setup = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    result.rss_kib = Some(rss_sum(&args.server_pids)?);
    result.idle_connections = Some(held.len());
    result.requests = 2 * held.len() as u64;
    result.sets = held.len() as u64;
    result.gets = held.len() as u64;
    result.duration_s = setup;
    drop(held);
    Ok(())
}

/// Runs the whole load described by `args` and summarizes it.
pub(crate) async fn run(args: &LoadArgs, result: &mut RunResult) -> anyhow::Result<()> {
    args.validate()?;
    let limit = Duration::from_millis(args.timeout_ms);
    if args.idle {
        return idle(args, result, limit).await;
    }
    let (addrs, router) = targets(args, limit).await?;
    result.nodes = addrs.len();
    let router = Arc::new(router);

    let mut workers = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let mine = match *router {
            Router::Single => std::slice::from_ref(&addrs[i % addrs.len()]),
            Router::Ring(_) => &addrs[..],
        };
        let mut conns = Vec::with_capacity(mine.len());
        for a in mine {
            conns.push(Conn::open(a, limit).await?);
        }
        workers.push(Worker {
            conns,
            rng: SmallRng::seed_from_u64(args.seed.wrapping_add(i as u64)),
            pending_sets: VecDeque::new(),
            scratch: Vec::with_capacity(args.multiget),
            key: Vec::with_capacity(64),
        });
    }
    let value = vec![b'x'; args.value_max.unwrap_or(args.value_size).max(args.value_size)];
    let base = |keys, get_ratio, depth| Plan {
        get_ratio,
        width: args.multiget,
        read_through: args.read_through && !args.fill,
        keys,
        fresh_sets: None,
        depth,
        prefix: args.key_prefix.as_bytes().to_vec(),
        value: value.clone(),
        value_size: args.value_size,
        value_max: args.value_max,
        reply_timeout: limit,
        slow_ns: args.slow_ms.saturating_mul(1_000_000),
    };

    if args.prefill && !args.fill {
        let plan = base(
            KeySource::Sequential {
                next: AtomicU64::new(0),
                end: args.keys,
            },
            0.0,
            args.pipeline.max(args.prefill_depth),
        );
        let now = Instant::now();
        let limits = Limits {
            warmup_end: now,
            deadline: now + Duration::from_secs(300),
            budget: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
        };
        let (w, t) = phase(workers, Arc::new(plan), Arc::new(limits), router.clone())
            .await
            .context("prefill")?;
        workers = w;
        result.prefill_errors = t.errors;
        if t.requests < args.keys {
            bail!("prefill stopped after {} of {} keys", t.requests, args.keys);
        }
    }

    let plan = if args.fill {
        base(
            KeySource::Sequential {
                next: AtomicU64::new(0),
                end: u64::MAX,
            },
            0.0,
            args.pipeline,
        )
    } else {
        let dist = match args.dist {
            DistSpec::Uniform => KeyDist::uniform(args.keys)?,
            DistSpec::Zipf(s) => KeyDist::zipf(args.keys, s)?,
        };
        Plan {
            fresh_sets: args.unique_sets.then(|| AtomicU64::new(args.keys)),
            ..base(KeySource::Random(dist), args.get_ratio, args.pipeline)
        }
    };
    let plan = Arc::new(plan);
    if args.warmup_requests > 0 {
        let start = Instant::now();
        // A warm-up by count, with the measured phase's plan (its key draws go on
        // from where the warm-up's stopped).
        const WARMUP_BOUND: Duration = Duration::from_secs(600);
        let limits = Limits {
            warmup_end: start,
            deadline: start + WARMUP_BOUND,
            budget: AtomicU64::new(args.warmup_requests),
            stop: AtomicBool::new(false),
        };
        let (w, t) = phase(workers, plan.clone(), Arc::new(limits), router.clone())
            .await
            .context("warm-up")?;
        workers = w;
        if t.requests < args.warmup_requests {
            bail!(
                "the warm-up made {} of {} requests in {} s",
                t.requests,
                args.warmup_requests,
                WARMUP_BOUND.as_secs()
            );
        }
    }
    let start = Instant::now();
    let warmup_end = start + Duration::from_secs_f64(args.warmup);
    let limits = Arc::new(Limits {
        warmup_end,
        deadline: warmup_end + Duration::from_secs_f64(args.duration),
        budget: AtomicU64::new(args.requests),
        stop: AtomicBool::new(false),
    });
    let watcher = args
        .fill
        .then(|| tokio::spawn(watch_evictions(args.server.clone(), limits.clone(), limit)));
    let running = tokio::spawn(phase(workers, plan, limits.clone(), router));
    tokio::time::sleep_until(warmup_end.into()).await;
    let cpu0 = (cpu_sum(&args.server_pids)?, probe::own_cpu_ticks()?);
    let measured_from = Instant::now();
    let outcome = running.await.context("load phase panicked")?;
    let elapsed = measured_from.elapsed().as_secs_f64();
    let cpu1 = (cpu_sum(&args.server_pids)?, probe::own_cpu_ticks()?);
    let (_workers, t) = outcome?;
    if let Some(w) = watcher {
        w.await
            .context("stats watcher panicked")?
            .context("watching evictions")?;
    }

    result.duration_s = elapsed;
    result.requests = t.requests;
    result.ops_per_s = t.requests as f64 / elapsed.max(1e-9);
    result.gets = t.gets;
    result.get_keys = t.get_keys;
    result.hits = t.hits;
    result.hit_ratio = (t.get_keys > 0).then(|| t.hits as f64 / t.get_keys as f64);
    result.sets = t.sets;
    result.not_stored = t.not_stored;
    result.errors = t.errors;
    result.slow = t.slow;
    result.error_replies = t.error_replies;
    let us = |ns: u64| ns as f64 / 1000.0;
    result.p50_us = us(t.hist.value_at_quantile(0.50));
    result.p99_us = us(t.hist.value_at_quantile(0.99));
    result.p999_us = us(t.hist.value_at_quantile(0.999));
    result.max_us = us(t.hist.max());
    result.mean_us = t.hist.mean() / 1000.0;
    let per_op = |ticks: u64| ticks as f64 * 1e6 / args.clk_tck as f64 / t.requests.max(1) as f64;
    if !args.server_pids.is_empty() {
        result.server_cpu_us_per_op = Some(per_op(cpu1.0.saturating_sub(cpu0.0)));
    }
    result.client_cpu_us_per_op = Some(per_op(cpu1.1.saturating_sub(cpu0.1)));

    if !args.server_pids.is_empty() {
        result.rss_kib = Some(rss_sum(&args.server_pids)?);
    }
    if args.count_items && !args.fill {
        let mut stream = probe::connect(&args.server, limit).await?;
        let s = probe::stats(&mut stream, limit).await?;
        let (items, maxbytes) = (
            probe::stat_u64(&s, "curr_items")?,
            probe::stat_u64(&s, "limit_maxbytes")?,
        );
        result.curr_items = Some(items);
        result.evictions = Some(probe::stat_u64(&s, "evictions")?);
        result.limit_maxbytes = Some(maxbytes);
        result.items_per_mib = (maxbytes > 0).then(|| items as f64 / (maxbytes as f64 / 1048576.0));
        result.items_per_rss_mib = result.rss_kib.map(|k| items as f64 / (k.max(1) as f64 / 1024.0));
    }
    if args.fill {
        let mut stream = probe::connect(&args.server, limit).await?;
        let s = probe::stats(&mut stream, limit).await?;
        let (items, evictions, maxbytes) = (
            probe::stat_u64(&s, "curr_items")?,
            probe::stat_u64(&s, "evictions")?,
            probe::stat_u64(&s, "limit_maxbytes")?,
        );
        result.curr_items = Some(items);
        result.evictions = Some(evictions);
        result.limit_maxbytes = Some(maxbytes);
        if evictions == 0 {
            bail!(
                "fill ran {elapsed:.1} s ({} sets) without the server reporting evictions; raise --duration",
                t.sets
            );
        }
        if maxbytes == 0 {
            bail!("server reports limit_maxbytes 0");
        }
        result.items_per_mib = Some(items as f64 / (maxbytes as f64 / 1048576.0));
        result.items_per_rss_mib = result.rss_kib.map(|k| items as f64 / (k.max(1) as f64 / 1024.0));
    }
    if t.requests == 0 {
        bail!("no request completed in the measured window");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_value_sizes_are_fixed_per_key_and_log_uniform() {
        let (min, max) = (10 * 1024, 512 * 1024);
        let mut sizes: Vec<usize> = (0..10_000).map(|id| value_len_between(min, max, id)).collect();
        assert!(sizes.iter().all(|&n| (min..=max).contains(&n)));
        assert_eq!(value_len_between(min, max, 77), value_len_between(min, max, 77));
        sizes.sort_unstable();
        // Log-uniform: the median is near the geometric mean (~72 KiB), far below the
        // arithmetic midpoint (261 KiB).
        let median = sizes[sizes.len() / 2] as f64;
        let geo = ((min * max) as f64).sqrt();
        assert!(
            (median / geo - 1.0).abs() < 0.1,
            "median {median}, geometric mean {geo}"
        );
        assert_eq!(value_len_between(100, 100, 5), 100);
    }
}
