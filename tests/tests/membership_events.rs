//! Membership events under a paced read-through load (issue 12, "How it is checked").
//!
//! For each of `--replicas 1` and `--replicas 2`, and for each event (a join, a polite
//! leave, a crash, a freeze, a restart, a rolling restart of all three nodes), a fresh
//! 3-node cluster is prefilled with every key and then serves a paced load while the
//! event happens:
//!
//! - a fixed offered rate (`RINGCACHE_EVENTS_RATE`, default 2,000 ops/s) spread over
//!   [`THREADS`] threads, each on its own schedule (an op more than [`SHED_AFTER`] late
//!   is shed: offered but not served), Zipf 0.99 over `RINGCACHE_EVENTS_KEYS` keys
//!   (default 20,000);
//! - plain memcached text clients: raw TCP connections to every node the "operator"
//!   lists, one node per request, round robin. Like libmemcached's retry timeout, a
//!   thread skips a node for [`SKIP_FOR`] after it refused a connection or did not
//!   answer within the timeout (`RINGCACHE_EVENTS_TIMEOUT_MS`, default 1,000); a refused
//!   connect is retried on the next node, a timeout is an error;
//! - read-through: a read is a `get`; a miss (or an error) is an origin load, followed
//!   by a fill (`set` of the origin's current value). A write (5% of ops) bumps the
//!   origin's per-key sequence number and then `set`s the new value (70%) or `delete`s
//!   the key (30%). Values are `<key>#<seq>`: every hit says which write it came from.
//!
//! Correctness is asserted, speed is only reported. A fill and a write of one key are
//! serialised by a per-key lock in the test (an application's fill racing its own
//! writer would put an old value back by itself); each acknowledged `STORED`, `DELETED`
//! or `NOT_FOUND` raises the key's floor to the sequence number it carried. Then:
//!
//! - a stale read is a hit with a sequence number below the floor the key had when the
//!   read began (a miss is always allowed), unless that number belongs to a write whose
//!   outcome the client never learned (timed out or cut off: it may be applied late);
//!   those are counted apart;
//! - a value never written (a sequence number above the origin's) is a violation;
//! - a lost acknowledged write is what is stale in a sweep of every key through every
//!   node after the cluster settled (a miss is allowed: a cache may forget).
//!
//! Per event it prints, and writes as JSON under `target/membership-events/` (or
//! `RINGCACHE_EVENTS_OUT`), the extra origin loads (those beyond the baseline window's
//! rate, scaled to the event window's length), client-visible errors by kind, the
//! 1-second buckets whose served rate is under 90% of the offered rate, stale reads and
//! lost writes, and a 100 ms timeline (offered, served, origin loads, errors) for the
//! charts (`scripts/membership_events_chart.py`, `docs/bench/membership-events.md`).
//!
//! Windows: 1 s warm-up, a baseline window (`RINGCACHE_EVENTS_BASELINE_SECS`, default
//! 3), then the event window, from the event's start until `RINGCACHE_EVENTS_TAIL_SECS`
//! (default 3) after the cluster settled (every node sees the same ring and finished its
//! hand-off), and at least `RINGCACHE_EVENTS_WINDOW_SECS` (default 8) long.
//! `RINGCACHE_EVENTS_MEMCACHED=1` also runs every event on three memcached servers behind
//! a perfectly informed ketama client (a node leaves its ring the instant it stops or
//! freezes and comes back the instant it is up), for comparison; only reported (a thawed
//! memcached serves the items it held, stale ones included). `RINGCACHE_EVENTS=join,crash`
//! and `RINGCACHE_EVENTS_REPLICAS=2` pick a subset. Every loop is bounded in count and
//! time.
//!
//! An op is served when its first request (the `get`, or the write) got a non-error
//! answer within the timeout; a failed fill is an error of its own.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringcache_protocol::ring::{Ring, RingConfig};
use ringcache_tests::cluster::{parse_values, stat, TestCluster};
use ringcache_tests::{poll_until, RawConn, ReadEnd, ServerKind, ServerProcess, Signal};

/// Load threads (each paced at rate / THREADS).
const THREADS: usize = 16;
/// An op this late is shed (offered, never served).
const SHED_AFTER: Duration = Duration::from_secs(1);
/// A thread skips a node this long after it refused a connection or did not answer.
const SKIP_FOR: Duration = Duration::from_secs(1);
/// Timeline bucket.
const BUCKET: Duration = Duration::from_millis(100);
/// Share of ops that are writes, and of writes that are deletes.
const WRITE_RATIO: f64 = 0.05;
const DELETE_SHARE: f64 = 0.3;
/// Zipf exponent of the key popularity.
const ZIPF_S: f64 = 0.99;
/// The node every single-node event hits (n2; n1 is no different, but keep one).
const VICTIM: usize = 1;
/// How long a frozen node stays frozen.
const FREEZE: Duration = Duration::from_secs(2);
/// Bound on any wait for the cluster to settle.
const SETTLE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Join,
    Leave,
    Crash,
    Freeze,
    Restart,
    Rolling,
}

const EVENTS: [Event; 6] = [
    Event::Join,
    Event::Leave,
    Event::Crash,
    Event::Freeze,
    Event::Restart,
    Event::Rolling,
];

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Join => "join",
            Event::Leave => "leave",
            Event::Crash => "crash",
            Event::Freeze => "freeze",
            Event::Restart => "restart",
            Event::Rolling => "rolling",
        }
    }
}

struct Config {
    rate: f64,
    keys: usize,
    timeout: Duration,
    warm: Duration,
    baseline: Duration,
    tail: Duration,
    /// The shortest event window (the same for every event, so windows compare).
    window: Duration,
    events: Vec<Event>,
    replicas: Vec<u32>,
    /// Also run every event on memcached behind a perfectly informed ketama client.
    memcached: bool,
    out: PathBuf,
}

fn env_num(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

impl Config {
    fn from_env() -> Config {
        let events = match std::env::var("RINGCACHE_EVENTS") {
            Ok(list) => list
                .split(',')
                .map(|n| {
                    *EVENTS
                        .iter()
                        .find(|e| e.name() == n.trim())
                        .unwrap_or_else(|| panic!("unknown event {n:?} in RINGCACHE_EVENTS"))
                })
                .collect(),
            Err(_) => EVENTS.to_vec(),
        };
        let replicas = match std::env::var("RINGCACHE_EVENTS_REPLICAS") {
            Ok(list) => list
                .split(',')
                .filter(|r| !r.trim().is_empty())
                .map(|r| r.trim().parse().expect("RINGCACHE_EVENTS_REPLICAS: numbers"))
                .collect(),
            Err(_) => vec![1, 2],
        };
        let out = std::env::var_os("RINGCACHE_EVENTS_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/membership-events"));
        Config {
            rate: env_num("RINGCACHE_EVENTS_RATE", 2000.0),
            keys: env_num("RINGCACHE_EVENTS_KEYS", 20_000.0) as usize,
            timeout: Duration::from_millis(env_num("RINGCACHE_EVENTS_TIMEOUT_MS", 1000.0) as u64),
            warm: Duration::from_secs(1),
            baseline: Duration::from_secs_f64(env_num("RINGCACHE_EVENTS_BASELINE_SECS", 3.0)),
            tail: Duration::from_secs_f64(env_num("RINGCACHE_EVENTS_TAIL_SECS", 3.0)),
            window: Duration::from_secs_f64(env_num("RINGCACHE_EVENTS_WINDOW_SECS", 8.0)),
            events,
            replicas,
            memcached: std::env::var("RINGCACHE_EVENTS_MEMCACHED").is_ok_and(|v| v == "1"),
            out,
        }
    }
}

/// The cumulative Zipf distribution over `n` ranks (rank 0 the most popular).
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (1..=n)
        .map(|r| {
            acc += 1.0 / (r as f64).powf(s);
            acc
        })
        .collect();
    for c in &mut cdf {
        *c /= acc;
    }
    cdf
}

fn key_name(i: usize) -> String {
    format!("ev:{i}")
}

fn value_of(key: &str, seq: u64) -> String {
    format!("{key}#{seq}")
}

/// The origin's and the checker's view of one key.
#[derive(Default)]
struct KeyState {
    /// The origin's current sequence number (0: the prefilled value).
    origin: u64,
    /// The highest sequence number an acknowledged cache write carried.
    floor: u64,
    /// Sequence numbers of cache writes whose outcome the client never learned.
    doubt: Vec<u64>,
    /// The acknowledged write that set the floor: what it was and when it was acknowledged.
    floor_by: Option<(&'static str, SocketAddr, Instant)>,
}

impl KeyState {
    fn floor_by(&self, t0: Instant) -> String {
        match self.floor_by {
            Some((what, addr, at)) => format!("{what} acknowledged by {addr} at {:?}", at.duration_since(t0)),
            None => "the prefill".to_string(),
        }
    }
}

#[derive(Default)]
struct Slot {
    /// Serialises a key's writes and fills (held across their requests).
    io: Mutex<()>,
    state: Mutex<KeyState>,
}

struct Shared {
    slots: Vec<Slot>,
    cdf: Vec<f64>,
    /// The nodes the clients are configured with (the "operator" edits it).
    servers: RwLock<Vec<SocketAddr>>,
    /// memcached mode: the ketama ring every client uses, updated the instant a node
    /// goes or comes (a perfectly informed client); `None` for ringcache.
    ketama: Option<RwLock<Ring<String>>>,
    stop: AtomicBool,
    t0: Instant,
    rate: f64,
    timeout: Duration,
    /// What the event did when (for the report and for failure messages).
    steps: Mutex<Vec<String>>,
}

impl Shared {
    fn step(&self, what: String) {
        self.steps
            .lock()
            .unwrap()
            .push(format!("{:.2}s {what}", self.t0.elapsed().as_secs_f64()));
    }
}

#[derive(Default, Clone, Copy)]
struct Bucket {
    offered: u32,
    served: u32,
    shed: u32,
    origin_loads: u32,
    errors: u32,
}

/// What one load thread saw.
#[derive(Default)]
struct Log {
    buckets: Vec<Bucket>,
    /// (ms since t0, kind) of every client-visible error.
    errors: Vec<(u64, String)>,
    /// (ms since t0) of connects refused and retried on the next node.
    redirects: Vec<u64>,
    stale: Vec<String>,
    violations: Vec<String>,
    late_in_doubt: u64,
    reads: u64,
    hits: u64,
    acked_writes: u64,
}

impl Log {
    fn bucket(&mut self, at: Instant, t0: Instant) -> &mut Bucket {
        let i = (at.saturating_duration_since(t0).as_millis() / BUCKET.as_millis()) as usize;
        if self.buckets.len() <= i {
            self.buckets.resize(i + 1, Bucket::default());
        }
        &mut self.buckets[i]
    }

    fn error(&mut self, t0: Instant, kind: String) {
        let now = Instant::now();
        self.bucket(now, t0).errors += 1;
        self.errors.push((now.duration_since(t0).as_millis() as u64, kind));
    }
}

/// How a request ended.
enum Outcome {
    /// A reply (possibly an error line), from the node at this address.
    Reply(Vec<u8>, SocketAddr),
    /// No answer: the outcome is unknown (kind: `timeout`, `closed`, `no node`).
    NoAnswer(&'static str),
}

/// One thread's plain memcached client: a connection per node, round robin.
struct PlainClient {
    conns: HashMap<SocketAddr, RawConn>,
    skip_until: HashMap<SocketAddr, Instant>,
    next: usize,
}

fn line_done(b: &[u8]) -> bool {
    b.ends_with(b"\r\n")
}

fn get_done(b: &[u8]) -> bool {
    b.ends_with(b"END\r\n") || (b.ends_with(b"\r\n") && is_error_line(b))
}

fn is_error_line(b: &[u8]) -> bool {
    b.starts_with(b"SERVER_ERROR") || b.starts_with(b"CLIENT_ERROR") || b.starts_with(b"ERROR")
}

impl PlainClient {
    fn new() -> PlainClient {
        PlainClient {
            conns: HashMap::new(),
            skip_until: HashMap::new(),
            next: 0,
        }
    }

    fn request(&mut self, sh: &Shared, log: &mut Log, key: &str, req: &[u8], done: fn(&[u8]) -> bool) -> Outcome {
        if let Some(ring) = &sh.ketama {
            let addr = ketama_owner(&ring.read().unwrap(), key);
            return self
                .send_to(sh, log, addr, req, done)
                .unwrap_or(Outcome::NoAnswer("connection refused"));
        }
        let servers = sh.servers.read().unwrap().clone();
        if servers.is_empty() {
            return Outcome::NoAnswer("no node");
        }
        let now = Instant::now();
        // Round robin over the listed nodes not being skipped; all skipped: any.
        let mut order: Vec<SocketAddr> = (0..servers.len())
            .map(|i| servers[(self.next + i) % servers.len()])
            .filter(|a| self.skip_until.get(a).is_none_or(|t| *t <= now))
            .collect();
        self.next = self.next.wrapping_add(1);
        if order.is_empty() {
            order.push(servers[self.next % servers.len()]);
        }
        for addr in order {
            if let Some(outcome) = self.send_to(sh, log, addr, req, done) {
                return outcome;
            }
        }
        Outcome::NoAnswer("connection refused")
    }

    /// One request to `addr`; `None` if it refused the connection.
    fn send_to(
        &mut self,
        sh: &Shared,
        log: &mut Log,
        addr: SocketAddr,
        req: &[u8],
        done: fn(&[u8]) -> bool,
    ) -> Option<Outcome> {
        let conn = match self.conns.entry(addr) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => match RawConn::connect(addr) {
                Ok(c) => e.insert(c),
                Err(_) => {
                    self.skip_until.insert(addr, Instant::now() + SKIP_FOR);
                    log.redirects.push(sh.t0.elapsed().as_millis() as u64);
                    return None;
                }
            },
        };
        if conn.send(req).is_err() {
            self.conns.remove(&addr);
            self.skip_until.insert(addr, Instant::now() + SKIP_FOR);
            return Some(Outcome::NoAnswer("closed"));
        }
        let mut out = Vec::new();
        Some(match conn.read_until(&mut out, sh.timeout, done) {
            ReadEnd::Done => Outcome::Reply(out, addr),
            end => {
                self.conns.remove(&addr);
                self.skip_until.insert(addr, Instant::now() + SKIP_FOR);
                Outcome::NoAnswer(if end == ReadEnd::Timeout { "timeout" } else { "closed" })
            }
        })
    }
}

/// The ketama owner of `key` (ring members are named by their address).
fn ketama_owner(ring: &Ring<String>, key: &str) -> SocketAddr {
    let idx = ring.primary(key.as_bytes()).expect("a ring with members");
    ring.node(idx)
        .expect("an index of the ring")
        .parse()
        .expect("an address")
}

fn ketama_ring(addrs: &[SocketAddr]) -> Ring<String> {
    let config = RingConfig {
        vnodes: RingConfig::default().vnodes,
        replicas: 1,
    };
    Ring::new(addrs.iter().map(|a| a.to_string()), config, 0).expect("a ring")
}

fn error_kind(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).trim_end().to_string()
}

/// A `set` or `delete` (or fill) of `key` carrying `seq`; records the outcome in the
/// key's state. Returns whether it was acknowledged.
#[allow(clippy::too_many_arguments)]
fn write(
    sh: &Shared,
    client: &mut PlainClient,
    log: &mut Log,
    slot: &Slot,
    key: &str,
    seq: u64,
    delete: bool,
    what: &'static str,
) -> bool {
    let req = if delete {
        format!("delete {key}\r\n")
    } else {
        let v = value_of(key, seq);
        format!("set {key} 0 0 {}\r\n{v}\r\n", v.len())
    };
    match client.request(sh, log, key, req.as_bytes(), line_done) {
        Outcome::Reply(r, addr) => {
            let ok: &[&[u8]] = if delete {
                &[b"DELETED\r\n", b"NOT_FOUND\r\n"]
            } else {
                &[b"STORED\r\n"]
            };
            if ok.contains(&r.as_slice()) {
                let mut st = slot.state.lock().unwrap();
                if seq >= st.floor {
                    st.floor = seq;
                    let what = match (what, r.as_slice()) {
                        ("delete", b"NOT_FOUND\r\n") => "delete (NOT_FOUND)",
                        _ => what,
                    };
                    st.floor_by = Some((what, addr, Instant::now()));
                }
                true
            } else {
                log.error(
                    sh.t0,
                    format!("{} {}", if delete { "delete" } else { "set" }, error_kind(&r)),
                );
                false
            }
        }
        Outcome::NoAnswer(kind) => {
            slot.state.lock().unwrap().doubt.push(seq);
            log.error(sh.t0, format!("{}: {kind}", if delete { "delete" } else { "set" }));
            false
        }
    }
}

/// A miss (or a failed get): load from the origin, then fill unless a write or another
/// fill of the key is under way.
fn origin_load(sh: &Shared, client: &mut PlainClient, log: &mut Log, idx: usize, key: &str) {
    log.bucket(Instant::now(), sh.t0).origin_loads += 1;
    let slot = &sh.slots[idx];
    let Ok(_io) = slot.io.try_lock() else { return };
    let seq = slot.state.lock().unwrap().origin;
    write(sh, client, log, slot, key, seq, false, "fill");
}

fn read(sh: &Shared, client: &mut PlainClient, log: &mut Log, idx: usize) -> bool {
    let key = key_name(idx);
    let slot = &sh.slots[idx];
    let began = Instant::now();
    let floor = slot.state.lock().unwrap().floor;
    let req = format!("get {key}\r\n");
    let (reply, addr) = match client.request(sh, log, &key, req.as_bytes(), get_done) {
        Outcome::Reply(r, _) if is_error_line(&r) => {
            log.error(sh.t0, format!("get {}", error_kind(&r)));
            origin_load(sh, client, log, idx, &key);
            return false;
        }
        Outcome::Reply(r, a) => (r, a),
        Outcome::NoAnswer(kind) => {
            log.error(sh.t0, format!("get: {kind}"));
            origin_load(sh, client, log, idx, &key);
            return false;
        }
    };
    log.reads += 1;
    let Some(values) = parse_values(&reply) else {
        log.violations
            .push(format!("{key}: malformed reply {:?}", String::from_utf8_lossy(&reply)));
        return false;
    };
    let Some((_, v)) = values.first() else {
        origin_load(sh, client, log, idx, &key);
        return true;
    };
    log.hits += 1;
    let seq = v.strip_prefix(&format!("{key}#")).and_then(|s| s.parse::<u64>().ok());
    let st = slot.state.lock().unwrap();
    match seq {
        None => log
            .violations
            .push(format!("{key}: never-written value {v:?} from {addr}")),
        Some(s) if s > st.origin => log.violations.push(format!(
            "{key}: value {s} from {addr} was never written (origin {})",
            st.origin
        )),
        Some(s) if s < floor && st.doubt.contains(&s) => log.late_in_doubt += 1,
        Some(s) if s < floor => log.stale.push(format!(
            "{key}: value {s} from {addr} at {:?}, {floor} was acknowledged before the read ({})",
            began.duration_since(sh.t0),
            st.floor_by(sh.t0)
        )),
        Some(_) => {}
    }
    true
}

fn load_thread(sh: Arc<Shared>, t: usize, deadline: Instant) -> Log {
    let mut log = Log::default();
    let mut rng = StdRng::seed_from_u64(0xe7e7 + t as u64);
    let mut client = PlainClient::new();
    let period = Duration::from_secs_f64(THREADS as f64 / sh.rate);
    let mut next = sh.t0 + period.mul_f64(t as f64 / THREADS as f64);
    while !sh.stop.load(Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if next > now {
            std::thread::sleep(next - now);
        }
        let scheduled = next;
        next += period;
        log.bucket(scheduled, sh.t0).offered += 1;
        if Instant::now().saturating_duration_since(scheduled) > SHED_AFTER {
            log.bucket(scheduled, sh.t0).shed += 1;
            continue;
        }
        let u: f64 = rng.gen();
        let idx = sh.cdf.partition_point(|c| *c < u).min(sh.cdf.len() - 1);
        let served = if rng.gen_bool(WRITE_RATIO) {
            let slot = &sh.slots[idx];
            let _io = slot.io.lock().unwrap();
            let seq = {
                let mut st = slot.state.lock().unwrap();
                st.origin += 1;
                st.origin
            };
            let delete = rng.gen_bool(DELETE_SHARE);
            let what = if delete { "delete" } else { "set" };
            let ok = write(&sh, &mut client, &mut log, slot, &key_name(idx), seq, delete, what);
            log.acked_writes += ok as u64;
            ok
        } else {
            read(&sh, &mut client, &mut log, idx)
        };
        if served {
            log.bucket(Instant::now(), sh.t0).served += 1;
        }
    }
    log
}

/// Every live node sees the same ring of the live nodes and finished its hand-off.
fn settled(c: &mut TestCluster) -> bool {
    if !c.converged() {
        return false;
    }
    c.live().iter().all(|&i| {
        let p = &c.nodes[i].process;
        let ring = stat(p, "cluster_ring_version");
        ring.is_some() && ring == stat(p, "cluster_handoff_version")
    })
}

fn wait_settled(c: &mut TestCluster, sh: &Shared) {
    let ok = poll_until(SETTLE, Duration::from_millis(20), || settled(c));
    assert!(ok, "the cluster did not settle within {SETTLE:?}: {}", c.describe());
    sh.step(format!("settled: {}", c.describe()));
}

/// Every key under the address that takes it: its ketama owner for memcached, else
/// `through` (ringcache: any node routes).
fn owned_groups(
    ketama: Option<&RwLock<Ring<String>>>,
    keys: usize,
    through: &[SocketAddr],
) -> Vec<(SocketAddr, Vec<usize>)> {
    let mut groups: BTreeMap<SocketAddr, Vec<usize>> = BTreeMap::new();
    for i in 0..keys {
        let addr = match ketama {
            Some(ring) => ketama_owner(&ring.read().unwrap(), &key_name(i)),
            None => through[0],
        };
        groups.entry(addr).or_default().push(i);
    }
    groups.into_iter().collect()
}

fn without(sh: &Shared, addr: SocketAddr) {
    sh.servers.write().unwrap().retain(|a| *a != addr);
}

fn with(sh: &Shared, addr: SocketAddr) {
    let mut s = sh.servers.write().unwrap();
    if !s.contains(&addr) {
        s.push(addr);
    }
}

/// Plays `event` on the cluster (returns once its steps are done and the cluster
/// settled), editing the clients' server list as an operator (or load balancer) would:
/// a node joins the list once it is on every ring, leaves it before a polite stop; a
/// crashed or frozen node stays listed (the clients find out by themselves).
fn play(event: Event, c: &mut TestCluster, sh: &Shared) {
    let v = VICTIM;
    match event {
        Event::Join => {
            sh.step(format!("n{} starts", c.nodes.len() + 1));
            c.add();
            wait_settled(c, sh);
            let addr = c.nodes.last().expect("just added").process.addr();
            sh.step(format!("{addr} joins the clients' list"));
            with(sh, addr);
        }
        Event::Leave => {
            without(sh, c.nodes[v].process.addr());
            stop_politely(c, v, sh);
            wait_settled(c, sh);
        }
        Event::Crash => {
            sh.step(format!("SIGKILL n{}", v + 1));
            c.nodes[v].process.signal(Signal::Kill);
            c.nodes[v].process.wait_exit(Duration::from_secs(5));
            wait_settled(c, sh);
        }
        Event::Freeze => {
            sh.step(format!("SIGSTOP n{}", v + 1));
            c.nodes[v].process.signal(Signal::Stop);
            std::thread::sleep(FREEZE);
            sh.step(format!("SIGCONT n{}", v + 1));
            c.nodes[v].process.signal(Signal::Cont);
            wait_settled(c, sh);
        }
        Event::Restart => {
            sh.step(format!("SIGKILL n{} and start it again", v + 1));
            c.restart(v);
            sh.step(format!("n{} accepts connections", v + 1));
            wait_settled(c, sh);
        }
        Event::Rolling => {
            for i in 0..c.nodes.len() {
                let addr = c.nodes[i].process.addr();
                without(sh, addr);
                stop_politely(c, i, sh);
                c.restart(i);
                sh.step(format!("n{} started again, accepts connections", i + 1));
                wait_settled(c, sh);
                with(sh, addr);
            }
        }
    }
}

fn stop_politely(c: &mut TestCluster, i: usize, sh: &Shared) {
    sh.step(format!("n{} off the clients' list, SIGTERM", i + 1));
    c.nodes[i].process.signal(Signal::Term);
    let status = c.nodes[i].process.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "n{} after SIGTERM: {status:?}",
        i + 1
    );
    sh.step(format!("n{} exited", i + 1));
}

/// Sets every key to its origin value (sequence 0), each group of keys through its
/// address, pipelined.
fn prefill(groups: &[(SocketAddr, Vec<usize>)]) {
    for (addr, keys) in groups {
        let mut conn = RawConn::connect(*addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let items: Vec<(String, String)> = keys
            .iter()
            .map(|&i| {
                let k = key_name(i);
                let v = value_of(&k, 0);
                (k, v)
            })
            .collect();
        let bad = ringcache_tests::cluster::set_all(&mut conn, &items);
        assert!(bad.is_empty(), "prefill: {:?}", &bad[..bad.len().min(5)]);
    }
}

/// After the load: each group of keys through its address (for ringcache every key
/// through every live node, for memcached each key through its owner). A hit below the
/// floor is a lost acknowledged write; a miss is counted, not blamed.
fn sweep(groups: &[(SocketAddr, Vec<usize>)], sh: &Shared) -> (Vec<String>, u64, u64) {
    let mut lost = Vec::new();
    let (mut misses, mut checked) = (0, 0);
    for (addr, keys) in groups {
        let mut conn = RawConn::connect(*addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        for batch in keys.chunks(100) {
            let names: Vec<String> = batch.iter().map(|&i| key_name(i)).collect();
            let reply = conn.request(format!("get {}\r\n", names.join(" ")).as_bytes(), b"END\r\n");
            let found = parse_values(&reply).unwrap_or_else(|| panic!("bad reply from {addr}"));
            for (&i, name) in batch.iter().zip(&names) {
                let st = sh.slots[i].state.lock().unwrap();
                checked += 1;
                let got = found.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
                let Some(v) = got else {
                    misses += 1;
                    continue;
                };
                let seq = v.strip_prefix(&format!("{name}#")).and_then(|s| s.parse::<u64>().ok());
                match seq {
                    Some(s) if s >= st.floor && s <= st.origin => {}
                    Some(s) if s < st.floor && st.doubt.contains(&s) => {}
                    _ => lost.push(format!(
                        "{name} through {addr}: {v:?}, acknowledged {} (origin {}; {})",
                        st.floor,
                        st.origin,
                        st.floor_by(sh.t0)
                    )),
                }
            }
        }
    }
    (lost, misses, checked)
}

/// What the load runs against.
enum Target {
    Ringcache(TestCluster),
    /// memcached servers (a perfectly informed ketama client picks one per key).
    Memcached(Vec<ServerProcess>),
}

fn start_memcached() -> ServerProcess {
    ServerProcess::start(ServerKind::Memcached, &["-m", "64", "-t", "2"])
}

/// The event on memcached: the clients' ketama ring loses a node the instant it goes
/// and gets it back the instant it is up again (what no real client achieves).
fn play_memcached(event: Event, mc: &mut Vec<ServerProcess>, sh: &Shared) {
    let v = VICTIM;
    let mut members: Vec<SocketAddr> = mc.iter().map(|p| p.addr()).collect();
    let set_ring = |members: &[SocketAddr], what: String| {
        *sh.ketama.as_ref().expect("memcached mode").write().unwrap() = ketama_ring(members);
        sh.step(what);
    };
    match event {
        Event::Join => {
            mc.push(start_memcached());
            members.push(mc[3].addr());
            set_ring(&members, "memcached 4 started, on the ring".into());
        }
        Event::Leave | Event::Crash => {
            let addr = members.remove(v);
            set_ring(&members, format!("{addr} off the ring"));
            let sig = if event == Event::Leave {
                Signal::Term
            } else {
                Signal::Kill
            };
            mc[v].signal(sig);
            mc[v].wait_exit(Duration::from_secs(10));
            sh.step(format!("{addr} exited after {sig:?}"));
        }
        Event::Freeze => {
            let addr = members.remove(v);
            set_ring(&members, format!("{addr} off the ring, SIGSTOP"));
            mc[v].signal(Signal::Stop);
            std::thread::sleep(FREEZE);
            mc[v].signal(Signal::Cont);
            members.push(addr);
            set_ring(
                &members,
                format!("SIGCONT {addr}, back on the ring (with its old items)"),
            );
        }
        Event::Restart => restart_memcached(mc, v, &mut members, &set_ring),
        Event::Rolling => {
            for i in 0..mc.len() {
                restart_memcached(mc, i, &mut members, &set_ring);
            }
        }
    }
}

fn restart_memcached(
    mc: &mut [ServerProcess],
    i: usize,
    members: &mut Vec<SocketAddr>,
    set_ring: &dyn Fn(&[SocketAddr], String),
) {
    let addr = mc[i].addr();
    members.retain(|a| *a != addr);
    set_ring(members, format!("{addr} off the ring, restarts"));
    mc[i].restart();
    members.push(addr);
    set_ring(members, format!("{addr} back on the ring (empty)"));
}

/// The figures of one run.
struct Report {
    name: String,
    json: String,
    steps: Vec<String>,
    stale: Vec<String>,
    lost: Vec<String>,
    violations: Vec<String>,
    summary: String,
}

fn run(cfg: &Config, replicas: u32, event: Event, memcached: bool) -> Report {
    let mut target = if memcached {
        Target::Memcached((0..3).map(|_| start_memcached()).collect())
    } else {
        Target::Ringcache(TestCluster::start(3, replicas, &[]))
    };
    let addrs: Vec<SocketAddr> = match &target {
        Target::Ringcache(c) => c.nodes.iter().map(|n| n.process.addr()).collect(),
        Target::Memcached(mc) => mc.iter().map(|p| p.addr()).collect(),
    };
    let ketama = memcached.then(|| RwLock::new(ketama_ring(&addrs)));
    prefill(&owned_groups(ketama.as_ref(), cfg.keys, &addrs[..1]));
    let sh = Arc::new(Shared {
        slots: (0..cfg.keys).map(|_| Slot::default()).collect(),
        cdf: zipf_cdf(cfg.keys, ZIPF_S),
        servers: RwLock::new(addrs.clone()),
        ketama,
        stop: AtomicBool::new(false),
        t0: Instant::now(),
        rate: cfg.rate,
        timeout: cfg.timeout,
        steps: Mutex::new(Vec::new()),
    });
    for (i, a) in addrs.iter().enumerate() {
        sh.step(format!("n{} is {a}", i + 1));
    }
    // Bound on the load whatever happens: the event's own waits are bounded too.
    let deadline = Instant::now() + cfg.warm + cfg.baseline + cfg.tail + Duration::from_secs(240);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let sh = sh.clone();
            std::thread::spawn(move || load_thread(sh, t, deadline))
        })
        .collect();
    std::thread::sleep(cfg.warm + cfg.baseline);
    let event_start = sh.t0.elapsed();
    match &mut target {
        Target::Ringcache(c) => play(event, c, &sh),
        Target::Memcached(mc) => play_memcached(event, mc, &sh),
    }
    let event_end = sh.t0.elapsed();
    std::thread::sleep(cfg.tail.max((event_start + cfg.window).saturating_sub(event_end)));
    let window_end = sh.t0.elapsed();
    sh.stop.store(true, Relaxed);
    let logs: Vec<Log> = threads.into_iter().map(|t| t.join().expect("load thread")).collect();
    let groups = match &mut target {
        Target::Ringcache(c) => {
            wait_settled(c, &sh);
            let live = c.live();
            let all: Vec<usize> = (0..cfg.keys).collect();
            live.iter().map(|&i| (c.nodes[i].process.addr(), all.clone())).collect()
        }
        Target::Memcached(_) => owned_groups(sh.ketama.as_ref(), cfg.keys, &[]),
    };
    let (lost, sweep_misses, sweep_checked) = sweep(&groups, &sh);

    // Merge.
    let n = logs.iter().map(|l| l.buckets.len()).max().unwrap_or(0);
    let mut buckets = vec![Bucket::default(); n];
    for l in &logs {
        for (b, x) in buckets.iter_mut().zip(&l.buckets) {
            b.offered += x.offered;
            b.served += x.served;
            b.shed += x.shed;
            b.origin_loads += x.origin_loads;
            b.errors += x.errors;
        }
    }
    let idx = |d: Duration| (d.as_millis() / BUCKET.as_millis()) as usize;
    let sum = |from: usize, to: usize, f: fn(&Bucket) -> u32| -> u64 {
        buckets[from.min(n)..to.min(n)].iter().map(|b| f(b) as u64).sum()
    };
    let (b0, b1) = (idx(cfg.warm), idx(cfg.warm + cfg.baseline));
    let (e0, e1) = (idx(event_start), idx(window_end));
    let base_loads = sum(b0, b1, |b| b.origin_loads);
    let event_loads = sum(e0, e1, |b| b.origin_loads);
    let expected = base_loads as f64 * (e1 - e0) as f64 / (b1 - b0) as f64;
    let extra = event_loads as f64 - expected;
    let event_ops = sum(e0, e1, |b| b.offered);
    let base_errors = sum(b0, b1, |b| b.errors);
    // Whole seconds from the event's start: served under 90% of offered (the rate).
    let per_sec = (1000 / BUCKET.as_millis()) as usize;
    let mut low_secs = Vec::new();
    let mut s = e0;
    while s + per_sec <= e1.min(n) {
        let served = sum(s, s + per_sec, |b| b.served);
        if (served as f64) < 0.9 * cfg.rate {
            low_secs.push((s - e0) / per_sec);
        }
        s += per_sec;
    }
    let (em0, em1) = (event_start.as_millis() as u64, window_end.as_millis() as u64);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for l in &logs {
        for (at, kind) in &l.errors {
            if (em0..em1).contains(at) {
                *errors.entry(kind.clone()).or_default() += 1;
            }
        }
    }
    let redirects: u64 = logs
        .iter()
        .map(|l| l.redirects.iter().filter(|t| (em0..em1).contains(t)).count() as u64)
        .sum();
    let event_errors: u64 = errors.values().sum();
    let stale: Vec<String> = logs.iter().flat_map(|l| l.stale.iter().cloned()).collect();
    let violations: Vec<String> = logs.iter().flat_map(|l| l.violations.iter().cloned()).collect();
    let late_in_doubt: u64 = logs.iter().map(|l| l.late_in_doubt).sum();
    let reads: u64 = logs.iter().map(|l| l.reads).sum();
    let hits: u64 = logs.iter().map(|l| l.hits).sum();
    let acked: u64 = logs.iter().map(|l| l.acked_writes).sum();

    let name = if memcached {
        format!("memcached-{}", event.name())
    } else {
        format!("r{replicas}-{}", event.name())
    };
    let summary = format!(
        "{name}: event {:.1}s (settled after {:.1}s), window {:.1}s, {event_ops} ops offered; \
         origin loads {event_loads} vs {expected:.0} expected => extra {extra:.0}; \
         errors {event_errors} ({:.2}%) {errors:?}; refused connects retried elsewhere {redirects}; \
         seconds under 90%: {} {low_secs:?}; stale {}, late in-doubt {late_in_doubt}, lost {}; \
         sweep misses {sweep_misses}/{sweep_checked}; baseline errors {base_errors}; \
         reads {reads} hits {hits} acked writes {acked}",
        event_start.as_secs_f64(),
        (event_end - event_start).as_secs_f64(),
        (window_end - event_start).as_secs_f64(),
        100.0 * event_errors as f64 / event_ops.max(1) as f64,
        low_secs.len(),
        stale.len(),
        lost.len(),
    );

    let mut json = String::new();
    let _ = write!(
        json,
        "{{\"name\":\"{name}\",\"event\":\"{}\",\"target\":\"{}\",\"replicas\":{replicas},\"rate\":{},\"keys\":{},\
         \"timeout_ms\":{},\"bucket_ms\":{},\"baseline_start_s\":{:.3},\"event_start_s\":{:.3},\
         \"event_end_s\":{:.3},\"window_end_s\":{:.3},\"offered_in_window\":{event_ops},\
         \"origin_loads_in_window\":{event_loads},\"origin_loads_expected\":{expected:.1},\
         \"extra_origin_loads\":{extra:.1},\"errors_in_window\":{event_errors},\"errors\":{{",
        event.name(),
        if memcached { "memcached+ketama" } else { "ringcache" },
        cfg.rate,
        cfg.keys,
        cfg.timeout.as_millis(),
        BUCKET.as_millis(),
        cfg.warm.as_secs_f64(),
        event_start.as_secs_f64(),
        event_end.as_secs_f64(),
        window_end.as_secs_f64(),
    );
    let errs: Vec<String> = errors
        .iter()
        .map(|(k, v)| format!("\"{}\":{v}", k.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    let _ = write!(
        json,
        "{}}},\"redirects\":{redirects},\"seconds_under_90\":{},\"low_seconds\":{low_secs:?},\
         \"stale_reads\":{},\"late_in_doubt_reads\":{late_in_doubt},\"lost_acknowledged\":{},\
         \"sweep_misses\":{sweep_misses},\"sweep_checked\":{sweep_checked},\"reads\":{reads},\
         \"hits\":{hits},\"acked_writes\":{acked},\"timeline\":[",
        errs.join(","),
        low_secs.len(),
        stale.len(),
        lost.len(),
    );
    let rows: Vec<String> = buckets
        .iter()
        .map(|b| {
            format!(
                "[{},{},{},{},{}]",
                b.offered, b.served, b.shed, b.origin_loads, b.errors
            )
        })
        .collect();
    let steps = sh.steps.lock().unwrap().clone();
    let quoted: Vec<String> = steps
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    let _ = write!(json, "{}],\"steps\":[{}]}}", rows.join(","), quoted.join(","));
    Report {
        name,
        json,
        steps,
        stale,
        lost,
        violations,
        summary,
    }
}

#[test]
fn membership_events_under_read_through_load_serve_nothing_stale() {
    let cfg = Config::from_env();
    std::fs::create_dir_all(&cfg.out).expect("create the output directory");
    let mut failures = Vec::new();
    let mut setups: Vec<(u32, bool)> = cfg.replicas.iter().map(|&r| (r, false)).collect();
    if cfg.memcached {
        setups.push((1, true));
    }
    for &(replicas, memcached) in &setups {
        for &event in &cfg.events {
            let r = run(&cfg, replicas, event, memcached);
            println!("{}", r.summary);
            for step in &r.steps {
                println!("    {step}");
            }
            let path = cfg.out.join(format!("{}.json", r.name));
            std::fs::write(&path, &r.json).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            if memcached {
                // Not ringcache's: a frozen memcached comes back with old items, for one.
                continue;
            }
            for (what, list) in [
                ("stale read", &r.stale),
                ("lost write", &r.lost),
                ("violation", &r.violations),
            ] {
                for w in list.iter().take(10) {
                    failures.push(format!("{} {what}: {w}", r.name));
                }
            }
            if !(r.stale.is_empty() && r.lost.is_empty() && r.violations.is_empty()) {
                failures.push(format!("{} steps:\n  {}", r.name, r.steps.join("\n  ")));
            }
        }
    }
    println!("figures written to {}", cfg.out.display());
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
