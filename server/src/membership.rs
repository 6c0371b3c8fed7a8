//! Cluster membership by SWIM gossip (crate `foca`) over UDP.
//!
//! One task owns the `Foca` instance, its UDP socket and a timer heap: foca does no
//! I/O of its own (it says "send these bytes to X", "call me back in d"), so after
//! every call the task drains foca's `AccumulatingRuntime` and acts on it. Whenever
//! the set of active members changes, the task publishes a new [`ClusterView`] on a
//! `watch` channel; request handlers read the latest one with a cheap `Arc` clone and
//! never wait for this task.
//!
//! Identity ([`NodeId`]): name, gossip address, client address and an incarnation
//! that starts at the Unix time in milliseconds, so a restarted node wins over its
//! old identity at once. Identities that share a gossip address are the same member;
//! the larger incarnation wins. When the cluster declares this node down while it is
//! still running (it was cut off or frozen), foca renews the identity and rejoins;
//! when that happens while this node's side is a minority, it calls `on_declared_down`
//! *before* it serves again, so that data it holds from before (which may have been
//! overwritten or deleted elsewhere meanwhile) is dropped.
//!
//! Quorum (see [`crate::quorum`]): after every change the task counts the members it
//! sees up against those it remembers. A node whose side lost the majority refuses
//! key commands ([`Membership::in_quorum`]); when it regains it, it drops its store
//! (`on_declared_down`) before the new verdict is published. Only a node that has seen
//! a majority alive for a while declares a member down; a cut-off node holds its
//! verdicts, so at the heal the majority is not declared down and keeps its data,
//! while the cut-off node (declared down by the majority) rejoins and drops its own
//! (docs/ARCHITECTURE.md, "Quorum"). A node leaving on purpose sends a farewell
//! ([`ringcache_protocol::gossip::Farewell`], a foca custom broadcast) so the others
//! stop counting it, where a failed member stays counted.
//!
//! Seeds (see [`crate::seeds`]) are addresses or DNS names. The task looks the names
//! up (each lookup on a task of its own, so a slow resolver never holds up gossip)
//! until it has met every seed address, and after each round announces itself to
//! every seed address that is not a member yet: a node with no peers also announces
//! to all of them every [`ANNOUNCE_EVERY`]. So nodes that start at the same moment
//! find each other, and two clusters that formed apart (each node founded its own
//! after `--join-timeout-ms`, or DNS listed only half of them) merge as soon as a node
//! of one sees a node of the other among its seeds. Its own address among them is
//! ignored.
//!
//! Failure detection (see [`crate::health`]): foca asks for every timer through its
//! runtime, and the task schedules them stretched by this node's local health
//! (Lifeguard), times each suspicion itself (from `suspect_max_timeout` down to
//! `suspect_timeout` as other members confirm it) and reads each packet once more
//! ([`decode_packet`]) for what foca does not report: acks, probe requests and
//! suspicions of this node.
//!
//! What goes on the wire is `ringcache_protocol::gossip`: the packets (foca's
//! `Header` + updates, encoded by [`BincodeCodec`], at most [`MAX_PACKET`] bytes), the
//! identity type ([`NodeIdentity`]) and, with a cluster secret, the sealed envelope
//! each packet travels in (see [`crate::secret`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use foca::{AccumulatingRuntime, Config as FocaConfig, Foca, OwnedNotification, Timer};
use foca_rand::rngs::SmallRng;
use foca_rand::SeedableRng;
use ringcache_protocol::cluster::{MemberState, NodeId};
use ringcache_protocol::gossip::{
    decode_packet, unix_millis, BincodeCodec, ClusterKey, Farewell, NodeIdentity, MAX_PACKET,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::health::{expected_confirmations, Awareness, Start, Suspicions};
use crate::quorum::{Change, Count, Quorum};
use crate::seeds::{system_resolver, Resolver, Seed, Seeds};

/// How often a node with no peers re-announces itself to its seeds.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(500);

/// Gossip settings (from the command line).
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// This node's name (`--node-name`), unique in the cluster.
    pub name: String,
    /// UDP address to bind and advertise for gossip.
    pub gossip_addr: SocketAddr,
    /// The memcached address peers and clients use to reach this node.
    pub client_addr: SocketAddr,
    /// Nodes to join through: gossip addresses, or DNS names that list them.
    pub seeds: Vec<Seed>,
    /// How often each node probes one random member.
    pub probe_period: Duration,
    /// How long a probe waits for its ack before asking others to probe.
    pub probe_rtt: Duration,
    /// How long a suspect member has to refute before it is declared down, at least
    /// (once enough other members confirmed the suspicion; see [`crate::health`]).
    pub suspect_timeout: Duration,
    /// How long a suspicion nobody else confirmed lasts.
    pub suspect_max_timeout: Duration,
    /// The cluster secret: when set, every packet is sealed and unsealed with it.
    pub key: Option<Arc<ClusterKey>>,
}

/// The members this node currently sees as up (alive or suspect), itself included,
/// sorted by name.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// Changes whenever the member set (names, addresses, incarnations) changes; equal
    /// on every node that sees the same members.
    pub version: u64,
    /// This node's identity.
    pub me: NodeId,
    /// Every member in the view, this node included, with its state.
    pub members: Vec<(NodeId, MemberState)>,
}

impl ClusterView {
    /// The view the other members have once this node has left: the same members
    /// without it (so the same version they compute), with `me` no longer among them.
    pub fn without_me(&self) -> ClusterView {
        let others = self.members.iter().filter(|(id, _)| *id != self.me).cloned().collect();
        ClusterView::new(self.me.clone(), others)
    }

    /// The view of `members` (sorted here; its version is a hash of their identities)
    /// as `me` sees it.
    pub fn new(me: NodeId, mut members: Vec<(NodeId, MemberState)>) -> ClusterView {
        members.sort_by(|a, b| a.0.name.cmp(&b.0.name).then(a.0.incarnation.cmp(&b.0.incarnation)));
        let mut h = Vec::new();
        for (id, _) in &members {
            h.extend_from_slice(id.name.as_bytes());
            h.push(0);
            h.extend_from_slice(id.client.to_string().as_bytes());
            h.push(0);
            h.extend_from_slice(&id.incarnation.to_le_bytes());
        }
        ClusterView {
            version: xxhash_rust::xxh3::xxh3_64(&h),
            me,
            members,
        }
    }
}

/// Counters of the gossip layer, for `stats`.
#[derive(Debug, Default)]
pub struct GossipStats {
    /// Gossip packets received.
    pub packets_in: AtomicU64,
    /// Gossip packets sent.
    pub packets_out: AtomicU64,
    /// Packets foca rejected (undecodable or not for this cluster).
    pub packets_bad: AtomicU64,
    /// Packets dropped because they failed authentication with the cluster secret.
    pub auth_failures: AtomicU64,
    /// Times this node rejoined the cluster after being declared down.
    pub rejoins: AtomicU64,
    /// Members this node saw declared down (by itself or by others' gossip).
    pub members_down: AtomicU64,
    /// Suspicions this node raised (its probe of a member failed).
    pub suspicions: AtomicU64,
    /// Independent confirmations of its suspicions (other members that asked it to
    /// probe a member, their own probe having failed).
    pub confirmations: AtomicU64,
    /// This node's local health score (0 = healthy; see [`crate::health::Awareness`]).
    pub awareness: AtomicU64,
    /// Suspicions that ran out while this node did not see a settled majority alive,
    /// held back instead of declaring the member down (see `Task::handle_timer`).
    pub verdicts_held: AtomicU64,
    /// This node's quorum count, `up << 32 | known` (see [`crate::quorum`]).
    quorum: AtomicU64,
}

impl GossipStats {
    /// How many of the members this node counts are up on its side.
    pub fn quorum(&self) -> Count {
        let q = self.quorum.load(Relaxed);
        Count {
            up: (q >> 32) as usize,
            known: (q & 0xffff_ffff) as usize,
        }
    }

    fn set_quorum(&self, c: Count) {
        self.quorum
            .store(((c.up as u64) << 32) | (c.known as u64 & 0xffff_ffff), Relaxed);
    }
}

/// Handle to the membership task.
pub struct Membership {
    view: watch::Receiver<Arc<ClusterView>>,
    cmds: mpsc::Sender<Command>,
    /// Gossip counters, shared with `stats`.
    pub stats: Arc<GossipStats>,
    /// The address the gossip socket is bound to.
    pub local_addr: SocketAddr,
}

enum Command {
    Leave(oneshot::Sender<()>),
}

/// Called when what this node holds may be stale: it regained a majority after being
/// in a minority, or the cluster declared it down while its side was a minority (or
/// it cannot rejoin). Runs before the node may serve again.
pub type OnDeclaredDown = Arc<dyn Fn() + Send + Sync>;

/// The farewells foca hands over as custom broadcasts, kept until the task reads them.
struct Farewells {
    /// Shared with the task (foca owns the handler and has no accessor for it).
    heard: Arc<std::sync::Mutex<Vec<Farewell>>>,
    seen: std::collections::HashSet<Farewell>,
}

impl foca::BroadcastHandler<NodeIdentity> for Farewells {
    type Key = Farewell;
    type Error = ringcache_protocol::gossip::CodecError;

    fn receive_item(&mut self, data: &[u8], _sender: Option<&NodeIdentity>) -> Result<Option<Farewell>, Self::Error> {
        let f = Farewell::decode(data)?;
        // Pass each farewell on once; a node keeps at most a few thousand in memory.
        if self.seen.len() > 4096 {
            self.seen.clear();
        }
        if self.seen.insert(f.clone()) {
            self.heard.lock().unwrap_or_else(|e| e.into_inner()).push(f.clone());
            Ok(Some(f))
        } else {
            Ok(None)
        }
    }
}

impl Membership {
    /// Binds the gossip socket and starts the membership task; seed names are looked
    /// up with the system resolver.
    pub async fn start(cfg: GossipConfig, on_declared_down: OnDeclaredDown) -> io::Result<Membership> {
        Membership::start_with(cfg, on_declared_down, system_resolver()).await
    }

    /// [`Membership::start`] with seed names looked up by `resolver`.
    pub async fn start_with(
        cfg: GossipConfig,
        on_declared_down: OnDeclaredDown,
        resolver: Resolver,
    ) -> io::Result<Membership> {
        let socket = UdpSocket::bind(cfg.gossip_addr).await?;
        let local_addr = socket.local_addr()?;
        let me = NodeId {
            name: cfg.name.clone(),
            gossip: local_addr,
            client: cfg.client_addr,
            incarnation: unix_millis(),
        };
        let (view_tx, view) = watch::channel(Arc::new(ClusterView::new(
            me.clone(),
            vec![(me.clone(), MemberState::Alive)],
        )));
        let (cmds, cmds_rx) = mpsc::channel(4);
        let stats = Arc::new(GossipStats::default());
        stats.set_quorum(Count { up: 1, known: 1 });
        let farewells = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = Task {
            farewells: farewells.clone(),
            suspects: 0,
            quorum: Quorum::new(&me.name),
            majority_since: Some(Instant::now()),
            held: HashSet::new(),
            suspect_since: HashMap::new(),
            serve_grace: cfg.suspect_timeout,
            lapse: None,
            verdict_hold: cfg.probe_period * 2 + cfg.suspect_timeout,
            recheck: cfg.probe_period,
            foca: Foca::with_custom_broadcast(
                NodeIdentity(me),
                foca_config(&cfg),
                SmallRng::seed_from_u64(unix_millis() ^ u64::from(std::process::id())),
                BincodeCodec,
                Farewells {
                    heard: farewells,
                    seen: Default::default(),
                },
            ),
            runtime: AccumulatingRuntime::new(),
            socket,
            timers: Timers::default(),
            awareness: Awareness::default(),
            suspicions: Suspicions::new(cfg.suspect_timeout, cfg.suspect_max_timeout),
            lag_limit: cfg.probe_rtt / 2,
            acked_by: None,
            suspected_as: None,
            seeds: Seeds::new(&cfg.seeds, local_addr, Instant::now()),
            resolver,
            lookups: JoinSet::new(),
            round_changed: false,
            key: cfg.key.clone(),
            view_tx,
            stats: stats.clone(),
            on_declared_down,
            leaving: false,
        };
        tokio::spawn(task.run(cmds_rx));
        Ok(Membership {
            view,
            cmds,
            stats,
            local_addr,
        })
    }

    /// A membership without gossip: the views are whatever the caller publishes on
    /// the returned sender (`members`, this node included, each alive). For tests that
    /// run several nodes in one process (`crate::testing`); a `leave` is acknowledged
    /// at once and changes nothing.
    #[cfg(any(test, feature = "testing"))]
    pub fn scripted(me: NodeId, local_addr: SocketAddr) -> (Membership, watch::Sender<Arc<ClusterView>>) {
        let alone = vec![(me.clone(), MemberState::Alive)];
        let (view_tx, view) = watch::channel(Arc::new(ClusterView::new(me, alone)));
        let (cmds, mut cmds_rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(Command::Leave(done)) = cmds_rx.recv().await {
                let _ = done.send(());
            }
        });
        // A scripted membership is always in quorum: its tests place keys, and the
        // quorum rule has tests of its own (`crate::quorum`, tests/tests/partition.rs).
        let stats = Arc::new(GossipStats::default());
        stats.set_quorum(Count { up: 1, known: 1 });
        let membership = Membership {
            view,
            cmds,
            stats,
            local_addr,
        };
        (membership, view_tx)
    }

    /// The latest view (a cheap `Arc` clone; never waits for the gossip task).
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.borrow().clone()
    }

    /// Whether this node's side holds a majority of the members it counts (see
    /// [`crate::quorum`]). A node that is not must not serve keys: it may be the
    /// cut-off side of a partition.
    pub fn in_quorum(&self) -> bool {
        self.stats.quorum().in_quorum()
    }

    /// Whether the membership task still runs (it only ends if it failed: a node
    /// whose gossip stopped is cut off from its cluster; `/healthz` reports it).
    pub fn running(&self) -> bool {
        !self.cmds.is_closed()
    }

    /// A receiver that wakes on every new view.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.clone()
    }

    /// Tells the cluster this node is leaving, so peers drop it at once instead of
    /// waiting out failure detection. Returns once the goodbye has been sent.
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Command::Leave(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        }
    }
}

fn foca_config(cfg: &GossipConfig) -> FocaConfig {
    let mut c = FocaConfig::new_lan(std::num::NonZeroU32::new(16).expect("nonzero"));
    c.probe_period = cfg.probe_period;
    c.probe_rtt = cfg.probe_rtt;
    // The membership task replaces this with its own timeout (between
    // `suspect_timeout` and `suspect_max_timeout`, see `crate::health`).
    c.suspect_to_down_after = cfg.suspect_max_timeout;
    c.max_packet_size = NonZeroUsize::new(MAX_PACKET).expect("nonzero");
    c.max_transmissions = NonZeroU8::new(10).expect("nonzero");
    // Remember down members long enough that stale gossip cannot revive them.
    c.remove_down_after = Some(Duration::from_secs(60));
    c.periodic_gossip = Some(foca::PeriodicParams {
        frequency: Duration::from_millis(100),
        num_members: NonZeroUsize::new(3).expect("nonzero"),
    });
    c.periodic_announce = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(5),
        num_members: NonZeroUsize::new(1).expect("nonzero"),
    });
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(2),
        num_members: NonZeroUsize::new(2).expect("nonzero"),
    });
    c
}

/// foca's timers, due at an instant, in order.
#[derive(Default)]
struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    events: HashMap<u64, Timer<NodeIdentity>>,
    seq: u64,
}

impl Timers {
    /// Schedules `timer` at `at`; returns its handle.
    fn push(&mut self, at: Instant, timer: Timer<NodeIdentity>) -> u64 {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, timer);
        self.seq
    }

    /// Drops the timer `seq` (its heap entry is skipped when it comes up).
    fn cancel(&mut self, seq: u64) {
        self.events.remove(&seq);
    }

    /// Moves the timer `seq` to `at`; returns its new handle.
    fn reschedule(&mut self, seq: u64, at: Instant) -> Option<u64> {
        let timer = self.events.remove(&seq)?;
        Some(self.push(at, timer))
    }

    fn next_due(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, seq))) = self.heap.peek() {
            if self.events.contains_key(seq) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// The next timer due by `now`: when it was due, its handle and the timer.
    fn pop_due(&mut self, now: Instant) -> Option<(Instant, u64, Timer<NodeIdentity>)> {
        while let Some(Reverse((at, seq))) = self.heap.peek().copied() {
            if at > now {
                return None;
            }
            self.heap.pop();
            if let Some(timer) = self.events.remove(&seq) {
                return Some((at, seq, timer));
            }
        }
        None
    }
}

struct Task {
    foca: Foca<NodeIdentity, BincodeCodec, SmallRng, Farewells>,
    quorum: Quorum,
    /// Since when this node has seen a majority of its cluster alive, suspects not
    /// counted (`None` while it does not, and from a rejoin until the next view): only
    /// a node that has for `verdict_hold` declares a member down.
    majority_since: Option<Instant>,
    /// Suspects whose suspicion ran out while this node could not declare them down
    /// (re-raised when they speak again, so they refute). They no longer count as up
    /// already: a suspicion lasts at least `serve_grace`.
    held: HashSet<NodeId>,
    /// When each current suspect was first seen suspect here.
    suspect_since: HashMap<NodeId, Instant>,
    /// How long a suspect still counts as up for the quorum (`--gossip-suspect-ms`).
    serve_grace: Duration,
    /// When the next suspect stops counting as up: recount then.
    lapse: Option<Instant>,
    /// How long a majority must have been seen before this node's verdicts count.
    verdict_hold: Duration,
    /// When a held verdict is looked at again.
    recheck: Duration,
    /// A digest of the members foca suspects now, to republish when it changes.
    suspects: u64,
    farewells: Arc<std::sync::Mutex<Vec<Farewell>>>,
    runtime: AccumulatingRuntime<NodeIdentity>,
    socket: UdpSocket,
    timers: Timers,
    /// This node's own health (Lifeguard): stretches its probe and suspicion timers.
    awareness: Awareness,
    /// This node's suspicions and their confirmations.
    suspicions: Suspicions,
    /// A timer firing later than this means the process is starved (event-loop lag).
    lag_limit: Duration,
    /// The member whose direct `Ack` arrived since the current probe started.
    acked_by: Option<SocketAddr>,
    /// The last suspicion of this node (identity incarnation, SWIM incarnation) that
    /// counted against its health: foca refutes each one once.
    suspected_as: Option<(u64, u16)>,
    seeds: Seeds,
    resolver: Resolver,
    /// The lookups of the current round of seed names: (name index, answer).
    lookups: JoinSet<(usize, io::Result<Vec<SocketAddr>>)>,
    /// Whether a name's addresses changed in the current round.
    round_changed: bool,
    key: Option<Arc<ClusterKey>>,
    view_tx: watch::Sender<Arc<ClusterView>>,
    stats: Arc<GossipStats>,
    on_declared_down: OnDeclaredDown,
    /// Set when this node leaves on purpose: foca then reports it defunct, which is
    /// the goodbye, not a failure (no warning, and the data stays for the hand-off).
    leaving: bool,
}

impl Task {
    async fn run(mut self, mut cmds: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut announce = tokio::time::interval(ANNOUNCE_EVERY);
        loop {
            let next = self
                .timers
                .next_due()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let round_due = !self.seeds.is_empty() && self.lookups.is_empty();
            let next_round = self.seeds.next_round();
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        self.stats.packets_in.fetch_add(1, Relaxed);
                        let opened;
                        let packet = match &self.key {
                            Some(key) => match key.open(&buf[..n]) {
                                Some(p) => {
                                    opened = p;
                                    &opened[..]
                                }
                                None => {
                                    self.stats.auth_failures.fetch_add(1, Relaxed);
                                    debug!(%from, "gossip packet failed authentication");
                                    continue;
                                }
                            },
                            None => &buf[..n],
                        };
                        self.inspect(packet);
                        if let Err(e) = self.foca.handle_data(packet, &mut self.runtime) {
                            self.stats.packets_bad.fetch_add(1, Relaxed);
                            debug!(%from, error = %e, "gossip packet rejected");
                        }
                    }
                    Err(e) => debug!(error = %e, "gossip recv failed"),
                },
                _ = tokio::time::sleep_until(next) => {
                    let now = Instant::now();
                    let mut late = false;
                    while let Some((due, seq, timer)) = self.timers.pop_due(now) {
                        late |= now.saturating_duration_since(due) > self.lag_limit;
                        self.handle_timer(seq, timer);
                    }
                    if late {
                        // This process runs late (CPU-starved, paused): its own
                        // verdicts on others deserve less trust.
                        self.awareness.apply(1);
                    }
                }
                _ = tokio::time::sleep_until(self.lapse.unwrap_or(next)), if self.lapse.is_some() => {
                    self.lapse = None;
                    let members = self.members();
                    self.recount(&members);
                }
                _ = announce.tick() => {
                    if self.foca.num_members() == 0 {
                        for seed in self.unmet_seeds() {
                            let _ = self.foca.announce(seed_identity(seed), &mut self.runtime);
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_round), if round_due => {
                    for (i, host, port) in self.seeds.names() {
                        let lookup = (self.resolver)(host, port);
                        self.lookups.spawn(async move { (i, lookup.await) });
                    }
                    if self.lookups.is_empty() {
                        // Addresses only: nothing to look up, announce to those not met.
                        self.round_done();
                    }
                }
                Some(done) = self.lookups.join_next(), if !self.lookups.is_empty() => {
                    match done {
                        Ok((i, answer)) => self.round_changed |= self.seeds.resolved(i, answer),
                        Err(e) => debug!(error = %e, "seed lookup task failed"),
                    }
                    if self.lookups.is_empty() {
                        self.round_done();
                    }
                }
                cmd = cmds.recv() => match cmd {
                    Some(Command::Leave(done)) => {
                        self.leaving = true;
                        let me = &self.foca.identity().0;
                        let farewell = Farewell {
                            name: me.name.clone(),
                            incarnation: me.incarnation,
                        };
                        match farewell.encode() {
                            Ok(b) => {
                                if let Err(e) = self.foca.add_broadcast(&b) {
                                    warn!(error = %e, "sending a farewell");
                                }
                            }
                            Err(e) => warn!(error = %e, "encoding a farewell"),
                        }
                        if let Err(e) = self.foca.leave_cluster(&mut self.runtime) {
                            warn!(error = %e, "leaving the cluster");
                        }
                        self.drain().await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
            }
            self.drain().await;
        }
    }

    /// Hands a due timer to foca, with what Lifeguard learns from it.
    fn handle_timer(&mut self, seq: u64, timer: Timer<NodeIdentity>) {
        match &timer {
            Timer::ProbeRandomMember(_) => {
                // A new probe starts; a failure of the last one shows in `schedule`
                // (foca schedules the suspicion).
                self.acked_by = None;
            }
            Timer::SendIndirectProbe { probed_id, .. } if self.acked_by == Some(probed_id.0.gossip) => {
                // Answered in time: this node keeps up.
                self.awareness.apply(-1);
            }
            Timer::ChangeSuspectToDown {
                member_id, incarnation, ..
            } => {
                let suspect = member_id.0.gossip;
                // foca 2.0.0 checks that the suspect has not refuted (its incarnation is
                // still the one suspected) before declaring it down, but then sends it
                // `TurnUndead` whether or not it did: a member that refuted in time is
                // told it is down anyway and rejoins with a new identity (its ring
                // entry changes and it drops its data). So a suspicion that no longer
                // holds never reaches foca.
                let holds = self.foca.iter_members().any(|m| {
                    m.id() == member_id && m.incarnation() == *incarnation && m.state() == foca::State::Suspect
                });
                if !holds {
                    self.suspicions.fired(suspect, seq);
                    return;
                }
                // Only a node that sees a majority of its cluster alive, and has for a
                // while, declares a member down. A node cut off from most of the cluster
                // suspects all of them; were it to declare them down, its verdicts would
                // reach the majority at the heal and take majority members off their
                // peers' rings (each then drops its data when it rejoins). Held, the
                // suspicion stays a suspicion: the suspect refutes it at the heal. The
                // "for a while" covers the heal itself, when refutations arrive one
                // member at a time (docs/ARCHITECTURE.md, "Quorum").
                let now = Instant::now();
                let settled = self
                    .majority_since
                    .is_some_and(|since| now.saturating_duration_since(since) >= self.verdict_hold);
                if !settled {
                    // It stopped counting as up `serve_grace` into the suspicion
                    // (`recount`); no suspicion runs out sooner.
                    if self.held.insert(member_id.0.clone()) {
                        self.stats.verdicts_held.fetch_add(1, Relaxed);
                        info!(member = ?member_id, quorum = ?self.quorum.count(), "suspicion ran out without a settled majority alive here: held, not declared down");
                    }
                    let seq = self.timers.push(now + self.recheck, timer);
                    self.suspicions.scheduled(suspect, seq);
                    return;
                }
                self.suspicions.fired(suspect, seq);
            }
            _ => {}
        }
        if let Err(e) = self.foca.handle_timer(timer, &mut self.runtime) {
            debug!(error = %e, "gossip timer");
        }
        // Scheduled now, with the health as it stands (a probe's ack timeout and its
        // period are stretched alike, as foca's probe cycle requires).
        self.schedule();
    }

    /// Reads what foca does not report from a packet it is about to handle: direct
    /// acks (a probe answered), requests to probe a member (another member's direct
    /// probe of it failed: a confirmation of a suspicion) and suspicions of this node
    /// (it will have to refute them: a sign it is slow).
    fn inspect(&mut self, packet: &[u8]) {
        let Ok((header, updates)) = decode_packet(packet) else {
            return;
        };
        match &header.message {
            foca::Message::Ack(_) => self.acked_by = Some(header.src.0.gossip),
            foca::Message::PingReq { target, .. } => {
                let now = Instant::now();
                let (new, moved) = self.suspicions.confirm(target.0.gossip, header.src.0.gossip, now);
                if new {
                    self.stats.confirmations.fetch_add(1, Relaxed);
                }
                if let Some((seq, due)) = moved {
                    if let Some(seq) = self.timers.reschedule(seq, due) {
                        self.suspicions.scheduled(target.0.gossip, seq);
                    }
                }
            }
            _ => {}
        }
        // A member whose verdict this node holds has just spoken to it: it is alive and
        // reachable again (the heal of a partition). foca clears a suspicion only when
        // the suspect refutes it, and the suspect may never have heard of it (the
        // updates were sent while the link was down). So the suspicion is raised once
        // more, one incarnation above the one the member runs, and gossiped: the member
        // hears it and refutes, and then counts as up again.
        let unaware = self.held.contains(&header.src.0)
            && self.foca.iter_members().any(|m| {
                m.id() == &header.src && m.state() == foca::State::Suspect && m.incarnation() == header.src_incarnation
            });
        if unaware {
            let again = foca::Member::new(
                header.src.clone(),
                header.src_incarnation.saturating_add(1),
                foca::State::Suspect,
            );
            debug!(member = ?header.src, "a member whose verdict is held answered: asking it to refute");
            if let Err(e) = self.foca.apply_many(std::iter::once(again), true, &mut self.runtime) {
                debug!(error = %e, "re-raising a held suspicion");
            }
        }
        let me = self.foca.identity();
        for m in &updates {
            if m.state() == foca::State::Suspect && m.id() == me {
                let seen = Some((me.0.incarnation, m.incarnation()));
                if self.suspected_as < seen {
                    self.suspected_as = seen;
                    debug!(incarnation = m.incarnation(), "suspected by the cluster; refuting");
                    self.awareness.apply(1);
                }
            }
        }
    }

    /// Takes the timers foca asked for into the queue: probe timers stretched by this
    /// node's health, a suspicion timed by `crate::health` (its first ask means this
    /// node's probe failed), the rest as asked.
    fn schedule(&mut self) {
        let now = Instant::now();
        let stretch = self.awareness.score() + 1;
        let mut probe_failed = false;
        while let Some((after, timer)) = self.runtime.to_schedule() {
            match &timer {
                Timer::ProbeRandomMember(_) | Timer::SendIndirectProbe { .. } => {
                    self.timers.push(now + self.awareness.scale(after), timer);
                }
                Timer::ChangeSuspectToDown {
                    member_id, incarnation, ..
                } => {
                    probe_failed = true;
                    let suspect = member_id.0.gossip;
                    let key = xxhash_rust::xxh3::xxh3_64(member_id.0.name.as_bytes())
                        ^ member_id.0.incarnation.rotate_left(16)
                        ^ u64::from(*incarnation);
                    let k = expected_confirmations(self.foca.num_members());
                    match self.suspicions.start(suspect, key, now, stretch, k) {
                        Start::Duplicate => {}
                        Start::New { due, replaces } => {
                            if let Some(old) = replaces {
                                self.timers.cancel(old);
                            }
                            self.stats.suspicions.fetch_add(1, Relaxed);
                            debug!(member = ?member_id, timeout = ?due.saturating_duration_since(now), "suspect");
                            let seq = self.timers.push(due, timer);
                            self.suspicions.scheduled(suspect, seq);
                        }
                    }
                }
                _ => {
                    self.timers.push(now + after, timer);
                }
            }
        }
        if probe_failed {
            self.awareness.apply(1);
        }
        self.stats.awareness.store(u64::from(self.awareness.score()), Relaxed);
    }

    /// The seed addresses that are neither this node nor a member it knows.
    fn unmet_seeds(&self) -> Vec<SocketAddr> {
        // The identity's gossip address is the socket's bound address.
        let me = self.foca.identity().0.gossip;
        let mut unmet = self.seeds.addrs();
        unmet.retain(|a| *a != me && !self.foca.iter_members().any(|m| m.id().0.gossip == *a));
        unmet
    }

    /// After a round of seed lookups: announces this node to every seed address it has
    /// not met (two clusters that formed apart merge through this), and schedules the
    /// next round: soon while some seed is unmet or a name has never resolved, rarely
    /// once the node has met them all.
    fn round_done(&mut self) {
        let unmet = self.unmet_seeds();
        for seed in &unmet {
            let _ = self.foca.announce(seed_identity(*seed), &mut self.runtime);
        }
        let settled = self.foca.num_members() > 0 && unmet.is_empty() && self.seeds.all_resolved();
        let changed = std::mem::take(&mut self.round_changed);
        self.seeds.round_done(settled, changed, Instant::now());
        if !unmet.is_empty() {
            debug!(
                ?unmet,
                members = self.foca.num_members(),
                "announced to seeds not met yet"
            );
        }
    }

    /// Acts on everything foca asked for during the last call.
    async fn drain(&mut self) {
        let mut changed = false;
        while let Some((dst, data)) = self.runtime.to_send() {
            self.stats.packets_out.fetch_add(1, Relaxed);
            let sealed;
            let data: &[u8] = match &self.key {
                Some(key) => {
                    sealed = crate::secret::seal(key, &data);
                    &sealed
                }
                None => &data,
            };
            if let Err(e) = self.socket.send_to(data, dst.0.gossip).await {
                debug!(to = %dst.0.gossip, error = %e, "gossip send failed");
            }
        }
        self.schedule();
        while let Some(n) = self.runtime.to_notify() {
            match n {
                OwnedNotification::MemberUp(id) => {
                    info!(member = ?id, "member up");
                    changed = true;
                }
                OwnedNotification::MemberDown(id) => {
                    self.stats.members_down.fetch_add(1, Relaxed);
                    info!(member = ?id, "member down");
                    changed = true;
                }
                OwnedNotification::Rename(old, new) => {
                    info!(?old, ?new, "member restarted");
                    changed = true;
                }
                OwnedNotification::Rejoin(id) => {
                    self.stats.rejoins.fetch_add(1, Relaxed);
                    // Whatever side it was on, a node declared down drops its data. A
                    // verdict the minority gossiped reaches the majority at the heal and
                    // can take a majority member off its peers' rings for a moment;
                    // writes acknowledged then went to the other owners only, with
                    // versions that need not order above what this node holds, so a
                    // copy kept here could later win over them (a stale read; seen in
                    // the containers test). See docs/ARCHITECTURE.md, "Quorum".
                    if self.quorum.in_quorum() {
                        warn!(identity = ?id, quorum = ?self.quorum.count(), "declared down (this side holds a majority); dropping local data and rejoining");
                    } else {
                        warn!(identity = ?id, quorum = ?self.quorum.count(), "the cluster declared this node down while its side was a minority; dropping local data and rejoining");
                    }
                    (self.on_declared_down)();
                    // A new member now: its verdicts on others wait until it has seen
                    // a majority alive for a while again.
                    self.majority_since = None;
                    changed = true;
                }
                OwnedNotification::Defunct if self.leaving => {
                    info!("left the cluster");
                }
                OwnedNotification::Defunct => {
                    warn!("declared down and unable to rejoin");
                    (self.on_declared_down)();
                    changed = true;
                }
                OwnedNotification::Active | OwnedNotification::Idle => changed = true,
            }
        }
        let heard = std::mem::take(&mut *self.farewells.lock().unwrap_or_else(|e| e.into_inner()));
        for f in heard {
            info!(member = %f.name, "member left on purpose (farewell)");
            self.quorum.farewell(&f.name, f.incarnation);
            changed = true;
        }
        // foca says nothing when a member becomes suspect or refutes it; readiness
        // wants to know (a suspect does not hold the healthy majority back).
        let suspects = self
            .foca
            .iter_members()
            .filter(|m| m.state() == foca::State::Suspect)
            .fold(0u64, |h, m| {
                h ^ xxhash_rust::xxh3::xxh3_64(m.id().0.name.as_bytes()).wrapping_add(m.id().0.incarnation)
            });
        if suspects != self.suspects {
            self.suspects = suspects;
            changed = true;
        }
        if changed {
            self.publish();
        }
    }

    /// Every member with its state, this node included.
    fn members(&self) -> Vec<(NodeId, MemberState)> {
        let mut members: Vec<(NodeId, MemberState)> = self
            .foca
            .iter_members()
            .map(|m| {
                let state = match m.state() {
                    foca::State::Suspect => MemberState::Suspect,
                    foca::State::Alive | foca::State::Down => MemberState::Alive,
                };
                (m.id().0.clone(), state)
            })
            .collect();
        members.push((self.foca.identity().0.clone(), MemberState::Alive));
        members
    }

    /// Counts the members up for the quorum, acts on a lost or regained majority, and
    /// publishes the count.
    ///
    /// A suspect counts as up for `serve_grace` from when it was first suspected here
    /// (a suspicion refuted in time, here or at a heal, changes nothing), which is no
    /// longer than any suspicion lasts, so one whose verdict is held (`handle_timer`) is
    /// never counted. So a node cut off from the rest stops
    /// serving keys about `serve_grace` after it suspects the last of them, not after
    /// its own (health-stretched) suspicions run out: the majority may drop it from its
    /// ring and acknowledge writes without it from about a probe period plus the
    /// minimum suspicion after the cut.
    fn recount(&mut self, members: &[(NodeId, MemberState)]) {
        let now = Instant::now();
        self.held
            .retain(|id| members.iter().any(|(m, st)| m == id && *st == MemberState::Suspect));
        self.suspect_since
            .retain(|id, _| members.iter().any(|(m, st)| m == id && *st == MemberState::Suspect));
        for (id, st) in members {
            if *st == MemberState::Suspect {
                self.suspect_since.entry(id.clone()).or_insert(now);
            }
        }
        self.lapse = None;
        let mut up: Vec<(&str, u64)> = Vec::with_capacity(members.len());
        for (id, st) in members {
            let counted = match st {
                MemberState::Alive => true,
                MemberState::Suspect => {
                    let until = self
                        .suspect_since
                        .get(id)
                        .map_or(now, |since| *since + self.serve_grace);
                    if until > now {
                        self.lapse = Some(self.lapse.map_or(until, |l| l.min(until)));
                    }
                    until > now
                }
            };
            if counted {
                up.push((id.name.as_str(), id.incarnation));
            }
        }
        match self.quorum.observe(up.iter().copied()) {
            Change::Same => {}
            Change::Lost => warn!(
                quorum = ?self.quorum.count(),
                "this side of the cluster lost its majority; refusing key commands until it is back"
            ),
            Change::Regained => {
                warn!(quorum = ?self.quorum.count(), "this side holds a majority again; dropping local data (the majority may have changed it meanwhile)");
                (self.on_declared_down)();
            }
        }
        // Published after the store was dropped, so a node never serves stale data
        // under a regained quorum.
        self.stats.set_quorum(self.quorum.count());
        let alive = members
            .iter()
            .filter(|(_, st)| *st == MemberState::Alive)
            .map(|(id, _)| id.name.as_str());
        if !self.quorum.majority_of_known(alive) {
            self.majority_since = None;
        } else if self.majority_since.is_none() {
            self.majority_since = Some(now);
        }
    }

    fn publish(&mut self) {
        let me = self.foca.identity().0.clone();
        let members = self.members();
        self.recount(&members);
        let view = ClusterView::new(me, members);
        if view.version != self.view_tx.borrow().version {
            info!(
                version = view.version,
                members = view.members.len(),
                "membership changed"
            );
        }
        self.view_tx.send_replace(Arc::new(view));
    }
}

/// A stand-in identity for a seed we know only by address: the seed answers our
/// announce with its real identity, which replaces this one (same address, larger
/// incarnation).
fn seed_identity(addr: SocketAddr) -> NodeIdentity {
    NodeIdentity(NodeId {
        name: String::new(),
        gossip: addr,
        client: addr,
        incarnation: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, seeds: Vec<SocketAddr>) -> GossipConfig {
        GossipConfig {
            name: name.into(),
            gossip_addr: "127.0.0.1:0".parse().unwrap(),
            client_addr: "127.0.0.1:1".parse().unwrap(),
            seeds: seeds.into_iter().map(Seed::Addr).collect(),
            probe_period: Duration::from_millis(300),
            probe_rtt: Duration::from_millis(150),
            suspect_timeout: Duration::from_millis(900),
            suspect_max_timeout: Duration::from_millis(1800),
            key: None,
        }
    }

    async fn wait_for(m: &Membership, what: impl Fn(&ClusterView) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if what(&m.view()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    fn names(v: &ClusterView) -> Vec<String> {
        v.members.iter().map(|(id, _)| id.name.clone()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_find_each_other_through_a_seed_and_see_a_leave() {
        let noop: OnDeclaredDown = Arc::new(|| {});
        let a = Membership::start(cfg("a", vec![]), noop.clone()).await.unwrap();
        let b = Membership::start(cfg("b", vec![a.local_addr]), noop.clone())
            .await
            .unwrap();
        let c = Membership::start(cfg("c", vec![a.local_addr]), noop.clone())
            .await
            .unwrap();
        for m in [&a, &b, &c] {
            assert!(wait_for(m, |v| v.members.len() == 3).await, "{:?}", names(&m.view()));
        }
        let versions: Vec<u64> = [&a, &b, &c].iter().map(|m| m.view().version).collect();
        assert!(versions.iter().all(|v| *v == versions[0]), "{versions:?}");
        assert_eq!(names(&a.view()), ["a", "b", "c"]);

        let left_at = Instant::now();
        c.leave().await;
        for m in [&a, &b] {
            assert!(wait_for(m, |v| v.members.len() == 2).await);
        }
        assert!(
            left_at.elapsed() < Duration::from_secs(1),
            "took {:?}",
            left_at.elapsed()
        );
        assert_ne!(a.view().version, versions[0]);
        // c said farewell: the others no longer count it (a failure would still count).
        for m in [&a, &b] {
            assert!(
                wait_for(m, |_| m.stats.quorum() == Count { up: 2, known: 2 }).await,
                "{:?}",
                m.stats.quorum()
            );
        }
    }

    /// A resolver whose answer for every name the test sets: `None` fails the lookup.
    fn test_resolver(answer: Arc<std::sync::Mutex<Option<Vec<SocketAddr>>>>) -> Resolver {
        Arc::new(move |_host, _port| {
            let answer = answer.lock().unwrap().clone();
            Box::pin(async move { answer.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such name")) })
        })
    }

    fn name_seed() -> Seed {
        Seed::Name {
            host: "ringcache.test".into(),
            port: 1,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_clusters_that_formed_apart_merge_once_the_seed_name_lists_them_all() {
        let noop: OnDeclaredDown = Arc::new(|| {});
        let answer = Arc::new(std::sync::Mutex::new(None));
        let start = |name: &'static str, seeds: Vec<Seed>| {
            let mut c = cfg(name, vec![]);
            c.seeds = seeds;
            Membership::start_with(c, noop.clone(), test_resolver(answer.clone()))
        };
        // The name lists nobody yet: a and c each found a cluster, b joins a, d joins c.
        let a = start("a", vec![name_seed()]).await.unwrap();
        let c = start("c", vec![name_seed()]).await.unwrap();
        let b = start("b", vec![Seed::Addr(a.local_addr), name_seed()]).await.unwrap();
        let d = start("d", vec![Seed::Addr(c.local_addr), name_seed()]).await.unwrap();
        for (m, want) in [(&a, ["a", "b"]), (&b, ["a", "b"]), (&c, ["c", "d"]), (&d, ["c", "d"])] {
            assert!(wait_for(m, |v| names(v) == want).await, "{:?}", names(&m.view()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            names(&a.view()),
            ["a", "b"],
            "the halves must not meet before DNS lists them"
        );

        *answer.lock().unwrap() = Some(vec![a.local_addr, b.local_addr, c.local_addr, d.local_addr]);
        let all = [&a, &b, &c, &d];
        for m in all {
            assert!(wait_for(m, |v| v.members.len() == 4).await, "{:?}", names(&m.view()));
        }
        assert!(
            wait_for(&a, |v| all.iter().all(|m| m.view().version == v.version)).await,
            "one ring version everywhere"
        );
        assert_eq!(names(&d.view()), ["a", "b", "c", "d"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_whose_seed_name_lists_only_itself_sends_nothing() {
        let noop: OnDeclaredDown = Arc::new(|| {});
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let me = socket.local_addr().unwrap();
        drop(socket);
        let mut c = cfg("a", vec![]);
        c.gossip_addr = me;
        c.seeds = vec![name_seed(), Seed::Addr(me)];
        let answer = Arc::new(std::sync::Mutex::new(Some(vec![me, "[::1]:9".parse().unwrap()])));
        let a = Membership::start_with(c, noop, test_resolver(answer)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(a.stats.packets_out.load(Relaxed), 0);
        assert_eq!(names(&a.view()), ["a"]);
    }
}
