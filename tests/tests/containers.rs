//! The cluster in containers: `deploy/compose/compose.yaml` run with the `ringcache:dev`
//! image (`deploy/image/build.sh`, which `scripts/test.sh` runs first when Docker answers),
//! driven through the faults a cluster meets where it lives, one at a time, under a
//! read/write load:
//!
//! 1. `up`: three nodes started at the same moment, finding each other through Docker's
//!    DNS (the service name is their only seed), form one cluster;
//! 2. scale to five (`up --scale`);
//! 3. scale down to three: `docker stop` (SIGTERM, the graceful drain) of two nodes, one
//!    after the other;
//! 4. a rolling restart of the three (`docker restart`), each node ready (`/readyz`)
//!    and the whole cluster settled before the next;
//! 5. a freeze: `docker pause` of one node for a few seconds, then `unpause`;
//! 6. a partition: `docker network disconnect` of one node from the compose network,
//!    then `connect` again (same address, same DNS alias).
//!
//! Four client threads set and get a bounded key space (each thread its own keys,
//! values are per-key sequence numbers) through every node's memcached port, reached
//! from the host at the containers' own addresses on the network the test creates.
//!
//! Asserted: after each step the running nodes form one cluster (same members, same ring
//! version, by `topology`; at the end by `/metrics` too) and are all ready; a node just
//! started or restarted reports ready only once its ring holds the nodes that were
//! already there, and at least one was seen answering 503 first (20 000 fixed keys make
//! its share take a moment to arrive); a drained node exits 0 having left politely; no
//! read ever returns a value older than the last write acknowledged before it began (a
//! miss is allowed), other than one whose write went unanswered (as with one memcached,
//! a `set` still buffered in a frozen node's socket when the client gave up runs when
//! the node thaws, and is then the newest value); and after each step every key's last
//! acknowledged write (or such a later-applied one) is readable, the fixed keys included
//! (never rewritten, so a loss cannot hide behind a newer write).
//!
//! The partition step differs: the clients stop using the cut-off node until the
//! cluster is whole again (it cannot be reached, and it refuses key commands once it
//! sees no majority: `tests/tests/partition.rs`). When the partition heals, only the
//! cut-off node drops its data (the majority declared it down; it never declared the
//! majority down: docs/ARCHITECTURE.md, "Quorum"), so no acknowledged write may be lost
//! there either, unless [`PARTITION_HEAL_LOSS_ALLOWED`] says so.
//!
//! Reported per step: client-visible errors by reply, reads, misses of keys that had an
//! acknowledged write, seconds to ready, whether `/readyz` answered 503 first.
//!
//! Skipped, with a message, when Docker (the daemon or Compose) is not available or the
//! image is missing. The compose project is `ringcache-ct-<pid>`; it is removed (`down`,
//! after `unpause`) when the test ends, passed or failed, and a later run removes the
//! projects of runs whose process no longer exists. Load threads stop after the steps,
//! and in any case after [`LOAD_LIMIT`].

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringcache_protocol::cluster::Topology;
use ringcache_tests::cluster::{get_all, parse_values, set_all};
use ringcache_tests::http::http_request;
use ringcache_tests::tools::{find_command, run_bounded, workspace_root};
use ringcache_tests::{poll_until, RawConn, ReadEnd};

const SERVICE: &str = "ringcache";
const PROJECT_PREFIX: &str = "ringcache-ct-";
const THREADS: usize = 4;
const KEYS_PER_THREAD: usize = 50;
/// Keys written once, after the cluster formed, and never again: the load rewrites its
/// own keys all the time, which would hide a loss. 20 000 of 200 bytes (4 MB, twice with
/// `--replicas 2`) also make a hand-off take long enough to see `/readyz` say 503.
const FIXED_KEYS: usize = 20_000;
const FIXED_VALUE_LEN: usize = 200;
/// Between two operations of one client thread: about 200 operations a second each,
/// a load that leaves the two CPUs of a CI machine to the five nodes and to gossip.
const OP_PAUSE: Duration = Duration::from_millis(5);
/// How long one client request may wait for its reply (a frozen node never answers).
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a step may take to settle (one ring, every node ready).
const SETTLE: Duration = Duration::from_secs(60);
/// The load threads stop after this whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(420);
/// How long every docker command may take.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);
/// Whether healing the partition may lose acknowledged writes (misses, never older
/// values). It did while the cut-off node declared the majority down and every node
/// dropped its data at the heal; now only a node that sees a majority alive declares a
/// member down, and the majority keeps its data.
const PARTITION_HEAL_LOSS_ALLOWED: bool = false;
/// The freeze and the partition last this long: longer than failure detection (a
/// suspect is declared down after 1.5 s).
const FAULT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------
// Docker and Compose
// ---------------------------------------------------------------------------------

fn docker(args: &[&str]) -> Result<String, String> {
    let ran = run_bounded(Command::new("docker").args(args), DOCKER_TIMEOUT);
    if ran.status.success() {
        Ok(ran.stdout)
    } else {
        Err(format!("docker {}: {}", args.join(" "), ran.stderr.trim()))
    }
}

/// `docker compose` (v2) or `docker-compose` (v1), with the project and file.
struct Compose {
    program: Vec<String>,
    project: String,
    file: PathBuf,
    env: Vec<(String, String)>,
}

impl Compose {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program[0]);
        cmd.args(&self.program[1..])
            .args(["-p", &self.project, "-f"])
            .arg(&self.file)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let ran = run_bounded(&mut self.command(args), DOCKER_TIMEOUT);
        if ran.status.success() {
            Ok(ran.stdout)
        } else {
            Err(format!("compose {}: {}{}", args.join(" "), ran.stdout, ran.stderr))
        }
    }
}

/// The Compose command to use, or why the test cannot run here.
fn docker_environment(image: &str) -> Result<Vec<String>, String> {
    if find_command("docker").is_none() {
        return Err("docker is not installed".into());
    }
    docker(&["info", "--format", "{{.ServerVersion}}"])
        .map_err(|e| format!("the Docker daemon does not answer ({e})"))?;
    docker(&["image", "inspect", "--format", "{{.Id}}", image])
        .map_err(|_| format!("the image {image} is missing (build it with deploy/image/build.sh)"))?;
    for program in [vec!["docker", "compose"], vec!["docker-compose"]] {
        let mut cmd = Command::new(program[0]);
        cmd.args(&program[1..]).arg("version");
        if find_command(program[0]).is_some() && run_bounded(&mut cmd, DOCKER_TIMEOUT).status.success() {
            return Ok(program.iter().map(|s| s.to_string()).collect());
        }
    }
    Err("neither `docker compose` nor `docker-compose` is installed".into())
}

/// Removes the projects left by earlier runs that were killed before they could clean
/// up (their process is gone).
fn remove_abandoned_projects(program: &[String]) {
    let Ok(out) = docker(&[
        "ps",
        "-a",
        "--filter",
        "label=com.docker.compose.project",
        "--format",
        "{{.Label \"com.docker.compose.project\"}}",
    ]) else {
        return;
    };
    let mut seen = std::collections::BTreeSet::new();
    for project in out.lines().filter(|p| p.starts_with(PROJECT_PREFIX)) {
        let Ok(pid) = project[PROJECT_PREFIX.len()..].parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists() || !seen.insert(project)
        {
            continue;
        }
        println!("removing {project}, left by an earlier run");
        let c = Compose {
            program: program.to_vec(),
            project: project.to_string(),
            file: compose_file(),
            env: Vec::new(),
        };
        unpause_all(project);
        let _ = c.run(&["down", "--volumes", "--remove-orphans", "--timeout", "1"]);
    }
}

fn compose_file() -> PathBuf {
    workspace_root().join("deploy/compose/compose.yaml")
}

fn unpause_all(project: &str) {
    let filter = format!("label=com.docker.compose.project={project}");
    if let Ok(out) = docker(&["ps", "-q", "--filter", &filter, "--filter", "status=paused"]) {
        for id in out.split_whitespace() {
            let _ = docker(&["unpause", id]);
        }
    }
}

/// The compose project; `down` on drop (passed or failed), after printing the nodes'
/// logs if the test is failing.
struct Project {
    compose: Compose,
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if std::thread::panicking() {
                print_logs(&self.compose.project);
            }
            unpause_all(&self.compose.project);
            match self
                .compose
                .run(&["down", "--volumes", "--remove-orphans", "--timeout", "2"])
            {
                Ok(_) => println!("removed compose project {}", self.compose.project),
                Err(e) => eprintln!("cleaning up: {e}"),
            }
        }));
    }
}

fn print_logs(project: &str) {
    let filter = format!("label=com.docker.compose.project={project}");
    let Ok(ids) = docker(&["ps", "-aq", "--filter", &filter]) else {
        return;
    };
    for id in ids.split_whitespace() {
        let name =
            docker(&["inspect", "-f", "{{.Name}} {{.Config.Hostname}} {{.State.Status}}", id]).unwrap_or_default();
        println!("---- logs of {} ----", name.trim());
        println!("{}", logs(id, Some(80)));
    }
}

/// A container's log (the node writes to stderr; `docker logs` replays both streams).
fn logs(id: &str, tail: Option<usize>) -> String {
    let tail = tail.map_or("all".to_string(), |n| n.to_string());
    let ran = run_bounded(
        Command::new("docker").args(["logs", "--tail", &tail, id]),
        DOCKER_TIMEOUT,
    );
    format!("{}{}", ran.stdout, ran.stderr)
}

// ---------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------

/// One container of the service.
#[derive(Clone, Debug)]
struct Node {
    id: String,
    /// The container's name (`<project>_ringcache_<n>` or `<project>-ringcache-<n>`).
    container: String,
    /// The host name: the node's name on the ring.
    name: String,
    number: u32,
    ip: IpAddr,
    network: String,
}

impl Node {
    fn mc(&self) -> SocketAddr {
        SocketAddr::new(self.ip, 11211)
    }

    fn admin(&self) -> SocketAddr {
        SocketAddr::new(self.ip, 9100)
    }
}

fn inspect(id: &str) -> Result<Node, String> {
    let out = docker(&[
        "inspect",
        "-f",
        "{{.Id}}|{{.Name}}|{{.Config.Hostname}}|{{index .Config.Labels \"com.docker.compose.container-number\"}}|{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{$v.IPAddress}};{{end}}",
        id,
    ])?;
    let f: Vec<&str> = out.trim().split('|').collect();
    let [id, container, name, number, networks] = f[..] else {
        return Err(format!("unexpected inspect output {out:?}"));
    };
    let (network, ip) = networks
        .split(';')
        .find_map(|n| n.split_once(' ').filter(|(_, ip)| !ip.is_empty()))
        .ok_or_else(|| format!("{container} has no network address ({networks:?})"))?;
    Ok(Node {
        id: id.to_string(),
        container: container.trim_start_matches('/').to_string(),
        name: name.to_string(),
        number: number.parse().map_err(|_| format!("container number {number:?}"))?,
        ip: ip.parse().map_err(|e| format!("address {ip:?}: {e}"))?,
        network: network.to_string(),
    })
}

/// The running containers of the service, by container number.
fn running(project: &str) -> Vec<Node> {
    let out = docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        &format!("label=com.docker.compose.service={SERVICE}"),
        "--filter",
        "status=running",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let mut nodes: Vec<Node> = out
        .split_whitespace()
        .map(|id| inspect(id).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    nodes.sort_by_key(|n| n.number);
    nodes
}

fn topology(addr: SocketAddr) -> Option<Topology> {
    let mut conn = RawConn::connect(addr).ok()?;
    conn.send(b"topology\r\n").ok()?;
    let mut out = Vec::new();
    conn.read_until_suffix(&mut out, b"END\r\n", Duration::from_secs(2));
    Topology::parse(&out).ok().flatten().map(|(t, _)| t)
}

fn member_names(t: &Topology) -> Vec<String> {
    let mut names: Vec<String> = t.members.iter().map(|m| m.name.clone()).collect();
    names.sort();
    names
}

fn readyz(node: &Node) -> Option<u16> {
    http_request(node.admin(), "GET", "/readyz", Duration::from_secs(1))
        .ok()
        .map(|r| r.status)
}

/// Every node sees exactly `nodes` with one ring version, and all are ready.
fn settled(nodes: &[Node]) -> Result<u64, String> {
    let mut want: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    want.sort();
    let mut version = None;
    for n in nodes {
        let t = topology(n.mc()).ok_or_else(|| format!("{} ({}) answers no topology", n.container, n.name))?;
        let names = member_names(&t);
        if names != want {
            return Err(format!("{} sees {names:?}, not {want:?}", n.name));
        }
        if version.is_some_and(|v| v != t.version) {
            return Err(format!(
                "{} is on ring {}, another node on {version:?}",
                n.name, t.version
            ));
        }
        version = Some(t.version);
        match readyz(n) {
            Some(200) => {}
            other => return Err(format!("{} /readyz: {other:?}", n.name)),
        }
    }
    version.ok_or_else(|| "no nodes".to_string())
}

/// Waits until `nodes` form one ready cluster; panics (with the nodes' logs, printed by
/// the project's drop) after [`SETTLE`].
fn settle(nodes: &[Node], what: &str) -> Duration {
    let start = Instant::now();
    let mut last = String::new();
    let ok = poll_until(SETTLE, Duration::from_millis(100), || match settled(nodes) {
        Ok(_) => true,
        Err(e) => {
            last = e;
            false
        }
    });
    assert!(ok, "{what}: the cluster did not settle within {SETTLE:?}: {last}");
    start.elapsed()
}

/// What a node's `/readyz` said from the moment it was (re)started until it was ready.
#[derive(Debug, Default)]
struct ReadyWatch {
    /// Polls with no HTTP answer (not listening yet).
    silent: u32,
    /// 503 answers before the first 200.
    not_ready: u32,
    /// Time to the first 200.
    ready_after: Option<Duration>,
    /// The node's members right after its first 200.
    members_at_ready: Vec<String>,
}

fn watch_ready(node: &Node, since: Instant, timeout: Duration) -> ReadyWatch {
    let mut w = ReadyWatch::default();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match readyz(node) {
            None => w.silent += 1,
            Some(200) => {
                w.ready_after = Some(since.elapsed());
                w.members_at_ready = topology(node.mc()).map(|t| member_names(&t)).unwrap_or_default();
                break;
            }
            Some(_) => w.not_ready += 1,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    w
}

/// Checks that a node's first 200 came with a ring holding `expected` (the nodes that
/// were there already, and itself).
fn check_ready(report: &mut StepReport, node: &Node, w: &ReadyWatch, expected: &[String]) {
    let Some(after) = w.ready_after else {
        report
            .failures
            .push(format!("{} never reported ready ({w:?})", node.name));
        return;
    };
    let missing: Vec<&String> = expected.iter().filter(|e| !w.members_at_ready.contains(e)).collect();
    if !missing.is_empty() {
        report.failures.push(format!(
            "{} reported ready with a ring of {:?}, without {missing:?}",
            node.name, w.members_at_ready
        ));
    }
    report.ready.push(format!(
        "{} ready after {:.2}s ({} polls unanswered, {} answered 503)",
        node.name,
        after.as_secs_f64(),
        w.silent,
        w.not_ready
    ));
    report.saw_503 |= w.not_ready > 0;
}

// ---------------------------------------------------------------------------------
// The load
// ---------------------------------------------------------------------------------

#[derive(Default, Clone)]
struct KeyState {
    /// Highest sequence number sent (acknowledged or not).
    attempted: u64,
    /// Highest acknowledged sequence number.
    acked: u64,
    acked_at: Option<Instant>,
    /// Writes sent whose outcome the client never learned (no reply, an error): as
    /// with one memcached, such a write may still be applied later, after writes
    /// acknowledged since (a `set` buffered in a frozen node's socket runs when it
    /// thaws), and is then the newest value. Reading one is not stale.
    unknown: Vec<u64>,
}

impl KeyState {
    /// Whether `seq` may be the key's value now: acknowledged-or-later, or a write of
    /// unknown outcome.
    fn may_read(&self, seq: u64, acked: u64) -> bool {
        seq >= acked || self.unknown.contains(&seq)
    }
}

/// What the clients saw during one step.
#[derive(Default, Clone)]
struct Tally {
    writes: u64,
    acked: u64,
    write_errors: BTreeMap<String, u64>,
    reads: u64,
    hits: u64,
    /// Misses of keys that had an acknowledged write.
    misses: u64,
    read_errors: BTreeMap<String, u64>,
}

struct Load {
    keys: Vec<Mutex<KeyState>>,
    /// The nodes the clients use (a load balancer's endpoints).
    rotation: RwLock<Vec<SocketAddr>>,
    step: AtomicUsize,
    tallies: Mutex<Vec<Tally>>,
    /// Stale reads and values never written.
    violations: Mutex<Vec<String>>,
    stop: AtomicBool,
}

fn key(i: usize) -> String {
    format!("ct:{i}")
}

/// One request over a cached connection; an error drops the connection.
fn exchange(
    conns: &mut HashMap<SocketAddr, RawConn>,
    addr: SocketAddr,
    req: &[u8],
    done: fn(&[u8]) -> bool,
) -> Result<Vec<u8>, String> {
    let c = match conns.entry(addr) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(RawConn::connect(addr).map_err(|e| format!("connect: {}", e.kind()))?)
        }
    };
    if let Err(e) = c.send(req) {
        conns.remove(&addr);
        return Err(format!("send: {}", e.kind()));
    }
    let mut out = Vec::new();
    match c.read_until(&mut out, REPLY_TIMEOUT, done) {
        ReadEnd::Done => Ok(out),
        end => {
            conns.remove(&addr);
            Err(format!("no reply ({end:?})"))
        }
    }
}

fn line_done(b: &[u8]) -> bool {
    b.ends_with(b"\r\n")
}

fn get_done(b: &[u8]) -> bool {
    b.ends_with(b"END\r\n") || ((b.starts_with(b"SERVER_ERROR") || b.starts_with(b"CLIENT_ERROR")) && line_done(b))
}

fn client(load: Arc<Load>, t: usize) {
    let mut rng = StdRng::seed_from_u64(0xc0de + t as u64);
    let mut conns = HashMap::new();
    let deadline = Instant::now() + LOAD_LIMIT;
    while !load.stop.load(Relaxed) && Instant::now() < deadline {
        std::thread::sleep(OP_PAUSE);
        let addrs = load.rotation.read().unwrap().clone();
        if addrs.is_empty() {
            continue;
        }
        let addr = addrs[rng.gen_range(0..addrs.len())];
        let k = t * KEYS_PER_THREAD + rng.gen_range(0..KEYS_PER_THREAD);
        let step = load.step.load(Relaxed);
        let mut tally = Tally::default();
        if rng.gen_bool(0.5) {
            let seq = {
                let mut s = load.keys[k].lock().unwrap();
                s.attempted += 1;
                s.attempted
            };
            let value = seq.to_string();
            let req = format!("set {} 0 0 {}\r\n{value}\r\n", key(k), value.len());
            tally.writes += 1;
            match exchange(&mut conns, addr, req.as_bytes(), line_done) {
                Ok(r) if r == b"STORED\r\n" => {
                    let mut s = load.keys[k].lock().unwrap();
                    if seq > s.acked {
                        s.acked = seq;
                        s.acked_at = Some(Instant::now());
                    }
                    tally.acked += 1;
                }
                Ok(r) => {
                    let why = String::from_utf8_lossy(&r).trim_end().to_string();
                    tally.write_errors.insert(why, 1);
                    load.keys[k].lock().unwrap().unknown.push(seq);
                }
                Err(e) => {
                    // A refused connection sent nothing; anything else may have.
                    if !e.starts_with("connect") {
                        load.keys[k].lock().unwrap().unknown.push(seq);
                    }
                    tally.write_errors.insert(e, 1);
                }
            }
        } else {
            // Each key has one writer, this thread: nothing is acknowledged during the read.
            let before = load.keys[k].lock().unwrap().acked;
            let began = Instant::now();
            tally.reads += 1;
            match exchange(&mut conns, addr, format!("get {}\r\n", key(k)).as_bytes(), get_done) {
                Err(e) => {
                    tally.read_errors.insert(e, 1);
                }
                Ok(r) if !r.starts_with(b"VALUE") && !r.starts_with(b"END") => {
                    let why = String::from_utf8_lossy(&r).trim_end().to_string();
                    tally.read_errors.insert(why, 1);
                }
                Ok(r) => match parse_values(&r).as_deref() {
                    None => violation(&load, format!("malformed reply {:?}", String::from_utf8_lossy(&r))),
                    Some([]) => tally.misses += u64::from(before > 0),
                    Some([(_, v), ..]) => {
                        tally.hits += 1;
                        let parsed = v.parse::<u64>();
                        let fine = parsed.as_ref().is_ok_and(|&seq| {
                            let state = load.keys[k].lock().unwrap();
                            state.may_read(seq, before) && seq >= 1 && seq <= state.attempted
                        });
                        match parsed {
                            Ok(_) if fine => {}
                            Ok(seq) if seq < before => violation(
                                &load,
                                format!(
                                    "stale read: {} = {seq} through {addr} at step {step}, {before} was acknowledged before the read began ({:?} ago)",
                                    key(k),
                                    began.elapsed()
                                ),
                            ),
                            _ => violation(&load, format!("{} = {v:?} through {addr}: never written", key(k))),
                        }
                    }
                },
            }
        }
        merge(&mut load.tallies.lock().unwrap()[step], &tally);
    }
}

fn merge(into: &mut Tally, t: &Tally) {
    into.writes += t.writes;
    into.acked += t.acked;
    into.reads += t.reads;
    into.hits += t.hits;
    into.misses += t.misses;
    for (k, v) in &t.write_errors {
        *into.write_errors.entry(k.clone()).or_default() += v;
    }
    for (k, v) in &t.read_errors {
        *into.read_errors.entry(k.clone()).or_default() += v;
    }
}

fn violation(load: &Load, what: String) {
    let mut v = load.violations.lock().unwrap();
    if v.len() < 100 {
        v.push(what);
    }
}

/// Reads every key with an acknowledged write through `nodes` (in turn). `Err` for
/// keys whose last acknowledged value is not there: a miss, or an older value (a stale
/// read, also recorded as a violation). With `misses_allowed_before`, a miss of a key
/// whose last acknowledged write came before that instant is counted, not an error.
fn check_acknowledged(load: &Load, nodes: &[Node], misses_allowed_before: Option<Instant>) -> AckCheck {
    let mut check = AckCheck::default();
    let mut conns = HashMap::new();
    for k in 0..load.keys.len() {
        let before = load.keys[k].lock().unwrap().clone();
        if before.acked == 0 {
            continue;
        }
        check.keys += 1;
        let mut reply = Err(String::new());
        for attempt in 0..nodes.len().max(3) {
            let addr = nodes[(k + attempt) % nodes.len()].mc();
            reply = exchange(&mut conns, addr, format!("get {}\r\n", key(k)).as_bytes(), get_done);
            if reply
                .as_ref()
                .is_ok_and(|r| r.starts_with(b"VALUE") || r.starts_with(b"END"))
            {
                break;
            }
        }
        let got = reply
            .as_deref()
            .ok()
            .and_then(parse_values)
            .map(|v| v.first().map(|(_, v)| v.parse::<u64>().unwrap_or(0)));
        match got {
            Some(Some(seq)) if before.may_read(seq, before.acked) => {}
            Some(Some(seq)) => {
                let what = format!("{} = {seq}, {} was acknowledged", key(k), before.acked);
                violation(load, format!("stale read after settling: {what}"));
                check.lost.push(what);
            }
            Some(None) if misses_allowed_before.is_some_and(|t| before.acked_at.is_some_and(|a| a < t)) => {
                check.dropped += 1;
            }
            Some(None) => check
                .lost
                .push(format!("{}: miss, {} was acknowledged", key(k), before.acked)),
            None => check.lost.push(format!("{}: no answer ({reply:?})", key(k))),
        }
    }
    check
}

fn fixed_items() -> Vec<(String, String)> {
    (0..FIXED_KEYS)
        .map(|i| {
            let v = format!("{i}:");
            (
                format!("ct:fixed:{i}"),
                format!("{v}{}", "x".repeat(FIXED_VALUE_LEN - v.len())),
            )
        })
        .collect()
}

/// Reads the fixed keys through `nodes` (a part through each); `Err` lists those not
/// read back as written. With `misses_allowed`, misses are counted, not errors.
fn check_fixed(nodes: &[Node], misses_allowed: bool, check: &mut AckCheck) {
    let items = fixed_items();
    let part = items.len().div_ceil(nodes.len());
    for (node, items) in nodes.iter().zip(items.chunks(part)) {
        let keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
        let Ok(mut conn) = RawConn::connect(node.mc()) else {
            check.lost.push(format!("fixed keys: cannot connect to {}", node.name));
            continue;
        };
        for ((k, v), got) in items.iter().zip(get_all(&mut conn, &keys, 100)) {
            check.fixed += 1;
            match got {
                Some(g) if g == *v => {}
                None if misses_allowed => check.dropped += 1,
                other => check.lost.push(format!("{k} through {}: {other:?}", node.name)),
            }
        }
    }
}

#[derive(Default, Debug)]
struct AckCheck {
    /// Fixed keys read.
    fixed: usize,
    keys: usize,
    lost: Vec<String>,
    /// Misses where the documented partition loss allows them.
    dropped: usize,
}

// ---------------------------------------------------------------------------------
// Steps and their report
// ---------------------------------------------------------------------------------

#[derive(Default)]
struct StepReport {
    name: String,
    seconds: f64,
    settle_seconds: f64,
    ready: Vec<String>,
    saw_503: bool,
    ack_check: Option<AckCheck>,
    notes: Vec<String>,
    failures: Vec<String>,
}

fn print_step(r: &StepReport, t: &Tally) {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "== {}: {:.1}s, settled {:.2}s after the action",
        r.name, r.seconds, r.settle_seconds
    );
    let errors = |m: &BTreeMap<String, u64>| {
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{v} x {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let _ = writeln!(
        s,
        "   writes {} (acknowledged {}), errors: {}",
        t.writes,
        t.acked,
        errors(&t.write_errors)
    );
    let _ = writeln!(
        s,
        "   reads {} (hits {}, misses of acknowledged keys {}), errors: {}",
        t.reads,
        t.hits,
        t.misses,
        errors(&t.read_errors)
    );
    for line in r.ready.iter().chain(&r.notes) {
        let _ = writeln!(s, "   {line}");
    }
    if let Some(c) = &r.ack_check {
        let _ = writeln!(
            s,
            "   after settling: {} load keys with an acknowledged write and {} fixed keys, {} not readable{}",
            c.keys,
            c.fixed,
            c.lost.len(),
            if c.dropped > 0 {
                format!(", {} dropped at the partition's heal (documented)", c.dropped)
            } else {
                String::new()
            }
        );
    }
    for f in &r.failures {
        let _ = writeln!(s, "   FAILED: {f}");
    }
    print!("{s}");
}

struct Run {
    project: Project,
    load: Arc<Load>,
    nodes: Vec<Node>,
    reports: Vec<StepReport>,
    step_started: Instant,
}

impl Run {
    fn begin(&mut self, name: &str) {
        self.load.tallies.lock().unwrap().push(Tally::default());
        self.load.step.store(self.reports.len(), Relaxed);
        self.reports.push(StepReport {
            name: name.to_string(),
            ..StepReport::default()
        });
        self.step_started = Instant::now();
    }

    fn report(&mut self) -> &mut StepReport {
        self.reports.last_mut().expect("a step")
    }

    fn settle(&mut self, since: Instant) {
        let what = self.report().name.clone();
        settle(&self.nodes, &what);
        self.report().settle_seconds = since.elapsed().as_secs_f64();
    }

    /// Lets the load run `d` on the settled cluster, checks every acknowledged key and
    /// prints the step.
    fn end(&mut self, d: Duration, misses_allowed_before: Option<Instant>) {
        std::thread::sleep(d);
        let mut check = check_acknowledged(&self.load, &self.nodes, misses_allowed_before);
        check_fixed(&self.nodes, misses_allowed_before.is_some(), &mut check);
        let elapsed = self.step_started.elapsed().as_secs_f64();
        let r = self.report();
        if !check.lost.is_empty() {
            r.failures.push(format!(
                "{} acknowledged writes not readable: {:?}",
                check.lost.len(),
                &check.lost[..check.lost.len().min(10)]
            ));
        }
        r.ack_check = Some(check);
        r.seconds = elapsed;
        let tally = self.load.tallies.lock().unwrap().last().cloned().unwrap_or_default();
        print_step(self.reports.last().expect("a step"), &tally);
    }

    fn set_rotation(&self) {
        *self.load.rotation.write().unwrap() = self.nodes.iter().map(Node::mc).collect();
    }

    fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Watches the (re)started `node` until ready and checks its ring then held
    /// `expected`.
    fn watch(&mut self, node: &Node, since: Instant, expected: &[String]) {
        let w = watch_ready(node, since, SETTLE);
        check_ready(self.report(), node, &w, expected);
    }

    /// Records what the node's `/readyz` says until it is ready with every node on its
    /// ring (after a freeze or a partition, where a first 200 may come from before the
    /// node noticed).
    fn observe(&mut self, node: &Node, since: Instant) {
        let mut codes: Vec<String> = Vec::new();
        let names = self.names();
        let ok = poll_until(SETTLE, Duration::from_millis(20), || {
            let code = readyz(node).map_or("-".to_string(), |c| c.to_string());
            if codes.last() != Some(&code) {
                codes.push(code.clone());
            }
            code == "200" && topology(node.mc()).is_some_and(|t| member_names(&t).len() == names.len())
        });
        let took = since.elapsed().as_secs_f64();
        let r = self.report();
        r.saw_503 |= codes.iter().any(|c| c == "503");
        r.ready.push(format!(
            "{}: /readyz answered {} (- = no answer); ready with every node after {took:.2}s",
            node.name,
            codes.join(" -> ")
        ));
        if !ok {
            r.failures
                .push(format!("{} not ready with every node on its ring", node.name));
        }
    }

    /// After a restart or a reconnect: the node keeps its address.
    fn same_address(&mut self, i: usize) {
        let now = inspect(&self.nodes[i].id).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            now.ip, self.nodes[i].ip,
            "{} came back with another address: Docker gave its old one away",
            self.nodes[i].container
        );
    }
}

#[test]
fn a_containerised_cluster_scales_rolls_freezes_and_heals_under_load() {
    let image = std::env::var("RINGCACHE_IMAGE").unwrap_or_else(|_| "ringcache:dev".to_string());
    let program = match docker_environment(&image) {
        Ok(p) => p,
        Err(why) => {
            println!("SKIPPED: the containerised cluster test needs Docker: {why}");
            eprintln!("SKIPPED: the containerised cluster test needs Docker: {why}");
            return;
        }
    };
    remove_abandoned_projects(&program);
    let mut rng = StdRng::from_entropy();
    let gossip_key: String = (0..32).map(|_| format!("{:x}", rng.gen_range(0..16))).collect();
    let project = Project {
        compose: Compose {
            program,
            project: format!("{PROJECT_PREFIX}{}", std::process::id()),
            file: compose_file(),
            env: vec![
                ("RINGCACHE_IMAGE".into(), image.clone()),
                ("RINGCACHE_GOSSIP_KEY".into(), gossip_key),
                ("RINGCACHE_REPLICAS".into(), "2".into()),
            ],
        },
    };
    let load = Arc::new(Load {
        keys: (0..THREADS * KEYS_PER_THREAD).map(|_| Mutex::default()).collect(),
        rotation: RwLock::new(Vec::new()),
        step: AtomicUsize::new(0),
        tallies: Mutex::new(Vec::new()),
        violations: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
    });
    let mut run = Run {
        project,
        load: load.clone(),
        nodes: Vec::new(),
        reports: Vec::new(),
        step_started: Instant::now(),
    };
    let project_name = run.project.compose.project.clone();
    println!("compose project {project_name}, image {image}");

    // --- 1. three nodes started together form one cluster ---
    run.begin("up: 3 nodes");
    let t = Instant::now();
    run.project.compose.run(&["up", "-d"]).unwrap_or_else(|e| panic!("{e}"));
    run.nodes = running(&project_name);
    assert_eq!(run.nodes.len(), 3, "compose started {:?}", run.nodes);
    let reachable = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
        std::net::TcpStream::connect_timeout(&run.nodes[0].mc(), Duration::from_millis(500)).is_ok()
    });
    assert!(
        reachable,
        "{} does not answer at {}: this test reaches the containers at their own addresses, \
         so it must run on the Docker host (not in a container beside it)",
        run.nodes[0].container,
        run.nodes[0].mc()
    );
    run.settle(t);
    let ready = run.report().settle_seconds;
    run.report().ready.push(format!(
        "3 nodes started together: one cluster, all ready after {ready:.2}s"
    ));
    run.set_rotation();
    let mut conn = RawConn::connect(run.nodes[0].mc()).expect("connect");
    let refused = set_all(&mut conn, &fixed_items());
    assert!(
        refused.is_empty(),
        "writing the fixed keys: {:?}",
        &refused[..refused.len().min(5)]
    );
    run.report().notes.push(format!("{FIXED_KEYS} fixed keys written"));
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            let load = load.clone();
            std::thread::spawn(move || client(load, t))
        })
        .collect();
    run.end(Duration::from_secs(3), None);

    // --- 2. scale to five ---
    run.begin("scale to 5");
    let before = run.names();
    let t = Instant::now();
    run.project
        .compose
        .run(&["up", "-d", "--no-recreate", "--scale", &format!("{SERVICE}=5")])
        .unwrap_or_else(|e| panic!("{e}"));
    let all = running(&project_name);
    let new: Vec<Node> = all.iter().filter(|n| !before.contains(&n.name)).cloned().collect();
    assert_eq!(new.len(), 2, "scaling to 5 started {new:?}");
    let watchers: Vec<_> = new
        .iter()
        .map(|n| {
            let n = n.clone();
            std::thread::spawn(move || {
                let w = watch_ready(&n, t, SETTLE);
                (n, w)
            })
        })
        .collect();
    for h in watchers {
        let (n, w) = h.join().expect("watcher");
        let mut expected = before.clone();
        expected.push(n.name.clone());
        check_ready(run.report(), &n, &w, &expected);
    }
    run.nodes = all;
    run.settle(t);
    run.set_rotation();
    run.end(Duration::from_secs(2), None);

    // --- 3. scale down to three: SIGTERM (the graceful drain), one node at a time ---
    run.begin("scale down to 3 (docker stop)");
    for _ in 0..2 {
        let victim = run.nodes.pop().expect("a node");
        let t = Instant::now();
        docker(&["stop", "--time", "15", &victim.id]).unwrap_or_else(|e| panic!("{e}"));
        let drained = t.elapsed();
        run.set_rotation();
        let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", &victim.id]).unwrap_or_default();
        let log = logs(&victim.id, None);
        let after_stop = log.split_once("shutting down").map_or("", |(_, rest)| rest);
        let r = run.report();
        r.notes.push(format!(
            "{} stopped (SIGTERM) in {:.2}s, exit code {}",
            victim.name,
            drained.as_secs_f64(),
            code.trim()
        ));
        if code.trim() != "0" {
            r.failures
                .push(format!("{} exited {} after SIGTERM", victim.name, code.trim()));
        }
        if !after_stop.contains("left the cluster") || after_stop.contains(" WARN ") {
            r.failures
                .push(format!("{} did not stop politely:\n{after_stop}", victim.name));
        }
        run.settle(t);
    }
    run.end(Duration::from_secs(2), None);

    // --- 4. a rolling restart: each node ready, and the cluster settled, before the next ---
    run.begin("rolling restart of 3");
    for i in 0..run.nodes.len() {
        let node = run.nodes[i].clone();
        let t = Instant::now();
        docker(&["restart", "--time", "15", &node.id]).unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        run.report().notes.push(format!(
            "{} restarted: stop and start took {:.2}s",
            node.name,
            t.elapsed().as_secs_f64()
        ));
        run.same_address(i);
        let names = run.names();
        run.watch(&node, started, &names);
        run.settle(t);
        // Readiness means "safe to restart the next node": nothing acknowledged is
        // missing now.
        let mut check = check_acknowledged(&load, &run.nodes, None);
        check_fixed(&run.nodes, false, &mut check);
        if !check.lost.is_empty() {
            run.report().failures.push(format!(
                "after restarting {} and waiting for /readyz, {} acknowledged writes are not readable: {:?}",
                node.name,
                check.lost.len(),
                &check.lost[..check.lost.len().min(10)]
            ));
        }
    }
    run.end(Duration::from_secs(2), None);

    // --- 5. a freeze: one node paused longer than failure detection ---
    run.begin("freeze (docker pause)");
    let node = run.nodes[1].clone();
    let t = Instant::now();
    docker(&["pause", &node.id]).unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(FAULT);
    docker(&["unpause", &node.id]).unwrap_or_else(|e| panic!("{e}"));
    let resumed = Instant::now();
    run.report()
        .notes
        .push(format!("{} paused for {:.1}s", node.name, t.elapsed().as_secs_f64()));
    // Not asserted: the node may answer before it notices it stood still.
    run.observe(&node, resumed);
    run.settle(resumed);
    run.end(Duration::from_secs(2), None);

    // --- 6. a partition: one node cut off from the network, then back ---
    run.begin("partition (docker network disconnect)");
    let i = 2;
    let node = run.nodes[i].clone();
    let t = Instant::now();
    // The clients stop using the node while it is cut off and until the cluster is
    // whole again. A node cut off serves as a cluster of one (both sides of a partition
    // do; tests/tests/partition.rs covers what it serves): its /readyz stays 200, it
    // acknowledges writes no other node sees and that it drops when it learns it was
    // declared down. This step measures what the partition does to the rest.
    *load.rotation.write().unwrap() = run.nodes.iter().filter(|n| n.id != node.id).map(Node::mc).collect();
    docker(&["network", "disconnect", &node.network, &node.id]).unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(FAULT);
    // Back with the service's DNS alias (and the container's own, as compose gives them).
    let short_id = &node.id[..12];
    docker(&[
        "network",
        "connect",
        "--alias",
        SERVICE,
        "--alias",
        short_id,
        &node.network,
        &node.id,
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let healed = Instant::now();
    run.report()
        .notes
        .push(format!("{} cut off for {:.1}s", node.name, t.elapsed().as_secs_f64()));
    run.same_address(i);
    // Not asserted: a node cut off serves as a cluster of one (both sides of a
    // partition do), so it may be ready before it meets the others again.
    run.observe(&node, healed);
    run.settle(healed);
    let whole = Instant::now();
    run.set_rotation();
    run.end(Duration::from_secs(2), PARTITION_HEAL_LOSS_ALLOWED.then_some(whole));

    // --- after the heal: the load goes on; every write acknowledged since is kept ---
    run.begin("after the heal");
    std::thread::sleep(Duration::from_secs(3));
    load.stop.store(true, Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    run.settle(Instant::now());
    run.end(Duration::ZERO, PARTITION_HEAL_LOSS_ALLOWED.then_some(whole));

    // One cluster by /metrics too: every node counts the same alive members and one ring.
    let mut versions = std::collections::BTreeSet::new();
    for n in &run.nodes {
        let m = http_request(n.admin(), "GET", "/metrics", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{} /metrics: {e}", n.name));
        let alive = m
            .body
            .lines()
            .find(|l| l.starts_with("ringcache_cluster_members{") && l.contains("state=\"alive\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        assert_eq!(alive, Some(3.0), "{} /metrics alive members", n.name);
        let ring = m
            .body
            .lines()
            .find(|l| l.starts_with("ringcache_ring_info{"))
            .map(|l| l.to_string());
        versions.insert(ring.unwrap_or_else(|| panic!("{} /metrics has no ringcache_ring_info", n.name)));
        let counter = |name: &str| {
            m.body
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .unwrap_or("?")
                .to_string()
        };
        println!(
            "{}: gossip rejoins {}, resets {}, hand-off items received {}",
            n.name,
            counter("ringcache_gossip_rejoins_total"),
            counter("ringcache_resets_total"),
            counter("ringcache_handoff_items_received_total")
        );
    }
    assert_eq!(
        versions.len(),
        1,
        "the nodes' /metrics show several rings: {versions:?}"
    );

    // --- verdict ---
    let totals = load.tallies.lock().unwrap().iter().fold(Tally::default(), |mut a, t| {
        merge(&mut a, t);
        a
    });
    println!(
        "in all: {} writes ({} acknowledged), {} reads ({} hits, {} misses of acknowledged keys)",
        totals.writes, totals.acked, totals.reads, totals.hits, totals.misses
    );
    let violations = load.violations.lock().unwrap().clone();
    let failures: Vec<String> = run
        .reports
        .iter()
        .flat_map(|r| r.failures.iter().map(move |f| format!("{}: {f}", r.name)))
        .collect();
    assert!(
        violations.is_empty(),
        "{} stale or wrong reads: {violations:#?}",
        violations.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    // Started and restarted nodes: each was checked to be ready only with the others on
    // its ring; at least one must also have been seen not ready while its share arrived.
    let watched = ["scale to 5", "rolling restart of 3"];
    assert!(
        run.reports
            .iter()
            .any(|r| watched.contains(&r.name.as_str()) && r.saw_503),
        "no started or restarted node was ever seen answering 503: each was ready at its first answer"
    );
    assert!(
        totals.acked > 1000,
        "too little load to mean anything: {} acknowledged",
        totals.acked
    );
    assert!(totals.hits > 1000, "too few hits to mean anything: {}", totals.hits);
}
