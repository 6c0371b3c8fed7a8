//! This node's place in the cluster: the current ring, the connections to peers, and
//! the counters behind the `cluster_*` stats.
//!
//! A task follows the membership views published by [`crate::membership`]; for each
//! new member set it builds a [`Ring`] and publishes a [`RingView`] that request
//! handlers read without waiting (an `Arc` clone out of a `watch` channel). After a
//! change it drops every local item whose key this node no longer owns: a copy left
//! from a range held only for a while would otherwise be served as current after a
//! later change hands the range back, although newer writes went elsewhere meanwhile.
//!
//! A node started with seeds is *joining* until it first sees another member (see
//! [`Cluster::joining`]): until then its ring holds only itself, and it refuses key
//! commands rather than act as a cluster of one. Requests a peer refused because the
//! rings differ wait here for the next ring ([`Cluster::next_ring`], bounded by
//! [`FENCE_WAIT`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ringcache_protocol::cluster::{MemberState, NodeId, Topology, TopologyMember};
use ringcache_protocol::ring::{key_hash, ring_hash_name, NodeIdx, Ring, RingConfig, MAX_REPLICAS};
use ringcache_protocol::text::frame::Expect;
use ringcache_protocol::text::peer::{is_ring_mismatch, PeerRequest};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::forward_stats::ForwardStats;
use crate::membership::{ClusterView, GossipConfig, Membership, OnDeclaredDown};
use crate::peers::{Peer, PeerPools, Peers, PEER_POOL};
use crate::secret::ClusterKey;
use crate::storage::{Store, MAX_HEAT};

/// How long after a ring change this node repairs reads (see [`Cluster::repairing`]).
const REPAIR_WINDOW: Duration = Duration::from_secs(5);

/// At most this many earlier rings are kept in a [`RingView::window`]; a window with
/// more ring changes treats every key as moved.
pub const MAX_WINDOW_RINGS: usize = 16;

/// How often a repair window held open past [`REPAIR_WINDOW`] asks the peers whether
/// their hand-off is done (see [`Cluster::hold_window`]).
const HOLD_POLL: Duration = Duration::from_millis(250);

/// How many times a hand-off application refused for a ring mismatch is sent again,
/// [`FENCE_PAUSE`] apart (about two seconds: an owner adopts a ring within a gossip
/// round of this node).
const HANDOFF_FENCE_TRIES: u32 = 40;

/// Hand-off applications in flight at once.
const HANDOFF_IN_FLIGHT: usize = 64;

/// How long a request whose owner refused it for a ring mismatch may wait for the
/// rings to agree (re-placing it whenever this node's ring changes) before the client
/// is refused. Rings agree again within one gossip round or one failure detection.
pub const FENCE_WAIT: Duration = Duration::from_secs(1);

/// How long a read forwarded to an owner waits for it when a later owner could answer
/// instead (`--replicas` 2 or more): past this the owner counts as failed and the read
/// fails over. A frozen or overloaded owner (still accepting connections, answering
/// nothing) then costs a read this long, not the peer timeout, during the few hundred
/// milliseconds before the membership suspects it (reads skip a suspect at once). A
/// forward on an idle LAN takes tens of microseconds, and the bench's slowest under
/// load a few milliseconds.
pub const READ_HEDGE: Duration = Duration::from_millis(100);

/// How long to wait for this node's ring to change before trying a refused request
/// again anyway (the owner's ring may be the one that was behind).
const FENCE_PAUSE: Duration = Duration::from_millis(50);

/// The ring as this node sees it now.
pub struct RingView {
    /// The membership version the ring was built from (also `ring.epoch()`).
    pub version: u64,
    /// The ring: which nodes own which keys.
    pub ring: Ring<NodeId>,
    /// Per ring node (same index): alive or suspect.
    pub states: Vec<MemberState>,
    /// This node's index on the ring.
    pub me: Option<NodeIdx>,
    /// The rings this node placed keys with before this one, within the repair window
    /// (see [`Cluster::repairing`]), oldest first: the first is the ring in effect when
    /// the window opened, the last the one just before this ring. Nodes that have not
    /// yet adopted this ring still route by one of them, and an item written under one
    /// of them may still be on its way here by hand-off. Empty outside a window (and
    /// for a ring built on leaving).
    pub window: Vec<Arc<Ring<NodeId>>>,
    /// Whether rings were left out of [`RingView::window`] (more than
    /// [`MAX_WINDOW_RINGS`] changes in one window): every key is then treated as moved.
    pub window_truncated: bool,
}

impl RingView {
    fn build(view: &ClusterView, config: RingConfig) -> RingView {
        let ids: Vec<NodeId> = view.members.iter().map(|(id, _)| id.clone()).collect();
        let ring = Ring::new(ids, config, view.version).unwrap_or_else(|e| {
            // Only a duplicate name can fail here (the config was validated at start).
            warn!(error = %e, "cannot build the ring from the current members; serving alone");
            Ring::new([view.me.clone()], config, view.version).unwrap_or_default()
        });
        let states = ring
            .nodes()
            .iter()
            .map(|n| {
                view.members
                    .iter()
                    .find(|(id, _)| id == n)
                    .map(|(_, s)| *s)
                    .unwrap_or(MemberState::Alive)
            })
            .collect();
        let me = ring.index_of(view.me.name.as_bytes());
        RingView {
            version: view.version,
            ring,
            states,
            me,
            window: Vec::new(),
            window_truncated: false,
        }
    }

    /// Whether `key`'s primary was not the same node, same incarnation, under this ring
    /// and every ring of [`RingView::window`] (`true` when the window is empty or
    /// truncated: nothing is known). A key whose primary stayed put served every write
    /// acknowledged in the window itself, and needs no read repair (see
    /// `router::repair`).
    pub fn primary_moved(&self, key: &[u8]) -> bool {
        if self.window.is_empty() || self.window_truncated {
            return true;
        }
        let hash = key_hash(key);
        let now = self.ring.primary_of_hash(hash).and_then(|p| self.ring.node(p));
        now.is_none()
            || self
                .window
                .iter()
                .any(|r| r.primary_of_hash(hash).and_then(|p| r.node(p)) != now)
    }

    /// Whether `key`'s owners (as a set of nodes, same incarnations) were not the same
    /// under this ring and every ring of [`RingView::window`] (`true` when the window
    /// is empty or truncated). Every owner of a key whose owners stayed put applied
    /// every write acknowledged in the window (see `router::repair::may_fail_over`).
    pub fn owners_moved(&self, key: &[u8]) -> bool {
        if self.window.is_empty() || self.window_truncated {
            return true;
        }
        let hash = key_hash(key);
        let mut idx = [NodeIdx::default(); MAX_REPLICAS];
        let n = self.ring.owners_of_hash_into(hash, &mut idx);
        let now: Vec<&NodeId> = idx[..n].iter().filter_map(|o| self.ring.node(*o)).collect();
        if now.len() != n || n == 0 {
            return true;
        }
        self.window.iter().any(|r| {
            let mut before = [NodeIdx::default(); MAX_REPLICAS];
            let m = r.owners_of_hash_into(hash, &mut before);
            m != n
                || before[..m]
                    .iter()
                    .any(|o| r.node(*o).is_none_or(|id| !now.contains(&id)))
        })
    }

    /// Whether the membership suspects the node at `idx` (it missed its probes and has
    /// not refuted yet).
    pub fn is_suspect(&self, idx: NodeIdx) -> bool {
        self.states.get(idx.get()) == Some(&MemberState::Suspect)
    }

    /// The topology clients download.
    pub fn topology(&self) -> Topology {
        Topology {
            version: self.version,
            hash: ring_hash_name().to_string(),
            vnodes: self.ring.vnodes(),
            replicas: self.ring.replicas(),
            members: self
                .ring
                .nodes()
                .iter()
                .zip(&self.states)
                .map(|(id, state)| TopologyMember {
                    name: id.name.clone(),
                    client: id.client,
                    state: *state,
                })
                .collect(),
        }
    }

    /// This node's share of the hash circle as primary.
    pub fn my_share(&self) -> f64 {
        self.me.map(|me| self.ring.share(me)).unwrap_or(0.0)
    }
}

/// Counters of forwarding and replication (`stats`: `cluster_*`).
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Requests (or parts of a multi-key get) sent on to their owner.
    pub forwarded: AtomicU64,
    /// Forwarded requests whose owner failed (connection refused or broken).
    pub forward_errors: AtomicU64,
    /// Forwarded requests whose owner did not answer in time.
    pub forward_timeouts: AtomicU64,
    /// Reads answered by a later owner because an earlier one failed.
    pub read_failovers: AtomicU64,
    /// Reads given up on an owner that had not answered within [`READ_HEDGE`], to ask
    /// the next owner (also counted in `forward_timeouts`).
    pub read_hedges: AtomicU64,
    /// Failover reads answered with a miss because, in the repair window, an owner
    /// other than the failed primary did not answer (see `router::repair::may_fail_over`).
    pub failover_refusals: AtomicU64,
    /// Writes applied to a replica.
    pub replicated: AtomicU64,
    /// Replica applications that failed or timed out.
    pub replication_errors: AtomicU64,
    /// Items dropped because a ring change took their key away from this node.
    pub purged_items: AtomicU64,
    /// Items sent to owners they newly had after a ring change.
    pub handed_off: AtomicU64,
    /// Their keys' and values' bytes.
    pub handed_off_bytes: AtomicU64,
    /// Reads that found a newer version on another owner and took it (read repair).
    pub repaired: AtomicU64,
    /// Requests that asked a key's other owners for their version before being served
    /// here (in the repair window, for a key that changed hands: `router::repair`).
    pub repair_round_trips: AtomicU64,
    /// Times the whole store was dropped because it may be stale: this node regained a
    /// majority after being cut off from it, was declared down while in a minority, or
    /// was frozen (see `crate::quorum`).
    pub resets: AtomicU64,
    /// Fenced requests from peers refused here because their ring differed (`rc_ring`).
    pub ring_mismatches: AtomicU64,
    /// Requests this node placed again after an owner refused them for a ring mismatch.
    pub fence_retries: AtomicU64,
    /// Client requests refused because the rings did not agree in time
    /// ([`FENCE_WAIT`]), or a replica refused a write's application.
    pub fence_refusals: AtomicU64,
    /// Times a write waited for the membership's verdict on an owner it could not reach
    /// (see `router::write::settle`), one per wait of up to [`FENCE_PAUSE`] or a ring
    /// change.
    pub verdict_waits: AtomicU64,
}

/// Cluster settings from the command line.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Membership and gossip settings.
    pub gossip: GossipConfig,
    /// Ring parameters (virtual nodes, replicas).
    pub ring: RingConfig,
    /// How long a request to a peer may take (`--peer-timeout-ms`).
    pub peer_timeout: Duration,
    /// How long a node started with seeds refuses key commands while no peer has
    /// answered it, before it gives up waiting and serves as a cluster of one (see
    /// [`Cluster::joining`]). Joining through a live seed takes one gossip round trip;
    /// this only bounds the wait when every seed is unreachable.
    pub join_timeout: Duration,
    /// The hand-off's budget in bytes per second, each item counted as its key and
    /// value plus [`HANDOFF_ITEM_COST`] (0: no limit; `--handoff-rate-kb`).
    pub handoff_rate: u64,
}

/// What one handed-off item costs the budget on top of its key and value: the work of
/// one request on the sender and the receiver, as bytes.
pub const HANDOFF_ITEM_COST: u64 = 1024;

/// Paces a hand-off to a budget of bytes per second (a token bucket without burst
/// beyond one batch): each batch waits until the time the batches before it may take
/// at the budget has passed since the hand-off started.
#[derive(Debug)]
pub struct HandoffPace {
    rate: u64,
    started: tokio::time::Instant,
    spent: u64,
}

impl HandoffPace {
    /// A pace of `rate` bytes per second (0: no limit), starting now.
    pub fn new(rate: u64) -> HandoffPace {
        HandoffPace {
            rate,
            started: tokio::time::Instant::now(),
            spent: 0,
        }
    }

    /// Waits until a batch that costs `cost` may go, and books it. The first batch goes
    /// at once; the `n`th waits until the `n - 1` before it would have taken at the
    /// budget.
    pub async fn admit(&mut self, cost: u64) {
        if self.rate > 0 && self.spent > 0 {
            let due = self.started + Duration::from_secs_f64(self.spent as f64 / self.rate as f64);
            tokio::time::sleep_until(due).await;
        }
        self.spent += cost;
    }
}

/// Notices that this process was frozen (SIGSTOP, a VM pause) for longer than the
/// cluster takes to declare a node down.
///
/// A thread of its own beats every [`FreezeGuard::BEAT`]. Whoever first finds the last
/// beat older than the detection time, that thread itself as it wakes or a request
/// handler that runs before it, knows the whole process stood still, so the cluster
/// may have declared it down and moved on, with writes and deletes going to other
/// owners meanwhile; the store is dropped before anything is served, as a node that
/// was declared down must. The beat thread's own check matters: after SIGCONT it often
/// runs before any request, and a request handler would then see a fresh beat. Every
/// caller that finds the gap waits until the drop is done ([`FreezeGuard::after_freeze`]).
/// (Gossip tells the node it was declared down a moment later, and the rejoin drops the
/// store again: see `crate::membership`.) The drop also revokes the ring the node was
/// frozen on, so requests that waited in its sockets do not run ([`Cluster::drop_store`]).
pub struct FreezeGuard {
    started: std::time::Instant,
    /// Milliseconds since `started` at the last beat.
    beat: AtomicU64,
    /// A gap larger than this (ms) means frozen.
    limit_ms: u64,
    /// What the beat thread does before each beat (set once the cluster exists): looks
    /// for the gap, as a request handler does.
    on_thaw: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Held while the store is dropped after a freeze: whoever else finds the gap
    /// meanwhile waits for the drop (see [`FreezeGuard::after_freeze`]).
    dropping: std::sync::Mutex<()>,
}

impl FreezeGuard {
    /// How often the beat thread beats.
    pub const BEAT: Duration = Duration::from_millis(100);

    fn start(limit: Duration) -> Arc<FreezeGuard> {
        let guard = Arc::new(FreezeGuard {
            started: std::time::Instant::now(),
            beat: AtomicU64::new(0),
            limit_ms: limit.as_millis() as u64,
            on_thaw: std::sync::OnceLock::new(),
            dropping: std::sync::Mutex::new(()),
        });
        let weak = Arc::downgrade(&guard);
        let _ = std::thread::Builder::new().name("freeze-guard".into()).spawn(move || {
            while let Some(g) = weak.upgrade() {
                if let Some(on_thaw) = g.on_thaw.get() {
                    on_thaw();
                }
                g.beat.fetch_max(g.elapsed_ms(), Relaxed);
                drop(g);
                std::thread::sleep(FreezeGuard::BEAT);
            }
        });
        guard
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether the last beat is older than the detection time: the process stood
    /// still (or the gap was not handled yet).
    fn gap(&self) -> bool {
        self.elapsed_ms().saturating_sub(self.beat.load(Relaxed)) > self.limit_ms
    }

    /// After a freeze, runs `drop` once, before any caller returns: the first caller to
    /// find the gap drops the store under a lock and only then beats; every other
    /// caller that finds the gap meanwhile (request handlers on other threads, the beat
    /// thread) waits for it, so no request is served from a store half dropped. (The
    /// drop takes every shard in turn; before, the beat moved on as the first caller
    /// began dropping, and a request on another thread read an item from a shard not
    /// dropped yet: a stale read after a freeze in the containerised test.) Returns
    /// whether this call ran `drop`.
    pub fn after_freeze(&self, drop: impl FnOnce()) -> bool {
        if !self.gap() {
            return false;
        }
        let _dropping = self.dropping.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.gap() {
            // Another caller dropped the store meanwhile.
            return false;
        }
        drop();
        self.beat.fetch_max(self.elapsed_ms(), Relaxed);
        true
    }
}

/// The node's cluster state.
pub struct Cluster {
    /// The gossip task's handle: the current members and its counters.
    pub membership: Membership,
    ring: watch::Receiver<Arc<RingView>>,
    /// How requests reach other nodes: pooled connections, or in-process peers in tests.
    peers: Arc<dyn Peers>,
    /// How long a request to a peer may take.
    pub peer_timeout: Duration,
    /// How long a write waits for an owner it cannot reach to answer again or to be
    /// dropped from the ring ([`Cluster::verdict_wait_for`]).
    pub verdict_wait: Duration,
    /// Cluster counters for `stats` and `/metrics`.
    pub stats: Arc<ClusterStats>,
    freeze: Arc<FreezeGuard>,
    store: Arc<Store>,
    /// The cluster secret, if any: peer connections must prove they know it.
    pub key: Option<Arc<ClusterKey>>,
    /// The clock of the repair window: tokio's, so a test with paused time controls it.
    clock: tokio::time::Instant,
    /// Milliseconds since `clock` at the last ring change, plus one (0 = never).
    changed_at: AtomicU64,
    /// The ring version the repair window is held open for past [`REPAIR_WINDOW`],
    /// until every peer has reported its hand-off of that ring finished (0: none); see
    /// [`Cluster::repairing`].
    held_for: AtomicU64,
    /// False from the start of a node with seeds until it first sees another member
    /// (or the join timeout passes): see [`Cluster::joining`].
    joined: AtomicBool,
    /// Hand-offs running now (0 or 1: ring changes are followed one at a time); see
    /// [`Cluster::handoff_in_progress`].
    handoffs_running: AtomicU64,
    /// The ring version whose hand-off this node has finished; see
    /// [`Cluster::handoff_version`].
    handoff_version: AtomicU64,
    /// Per-peer counts and latencies of forwarded requests (`router::placement::forward`).
    pub forwards: ForwardStats,
    /// Publishes this node's ring (the task that follows membership holds the other
    /// sender); [`Cluster::leave`] publishes the ring without this node through it.
    ring_tx: watch::Sender<Arc<RingView>>,
    ring_config: RingConfig,
    /// The hand-off's budget, bytes per second (0: none); see [`HandoffPace`].
    handoff_rate: u64,
    /// Set (before the store is emptied) by every drop of the store: the ring version
    /// in force then, and until when (ms since `clock`) it stays revoked; see
    /// [`Cluster::drop_store`]. `dropped` says whether to look at it at all.
    revoked: std::sync::Mutex<Option<(u64, u64)>>,
    dropped: AtomicBool,
    /// How long a ring stays revoked after a drop when it does not change meanwhile
    /// and the other members do not confirm it ([`Cluster::confirm_after_drops`]).
    revoke_for: Duration,
    /// Wakes [`Cluster::confirm_after_drops`] after a drop (from any thread: the
    /// freeze guard's is not the runtime's).
    confirm: Arc<tokio::sync::Notify>,
}

impl Cluster {
    /// Joins the cluster and starts following it.
    pub async fn start(config: ClusterConfig, store: Arc<Store>) -> std::io::Result<Arc<Cluster>> {
        let stats = Arc::new(ClusterStats::default());
        // The cluster, once it exists (the membership starts first): a drop goes
        // through `Cluster::drop_store`, which revokes the ring of the moment.
        let cluster_cell: Arc<std::sync::OnceLock<std::sync::Weak<Cluster>>> = Arc::default();
        let on_down: OnDeclaredDown = {
            let store = store.clone();
            let stats = stats.clone();
            let cell = cluster_cell.clone();
            Arc::new(move || match cell.get().and_then(std::sync::Weak::upgrade) {
                Some(cluster) => cluster.drop_store(),
                None => {
                    stats.resets.fetch_add(1, Relaxed);
                    store.flush_all(crate::node::unix_now(), 0);
                }
            })
        };
        let membership = Membership::start(config.gossip.clone(), on_down).await?;
        let peers = Arc::new(PeerPools::new(
            &config.gossip.name,
            config.gossip.key.clone(),
            config.peer_timeout,
        ));
        let cluster = Cluster::follow(config, store, membership, peers, stats);
        let _ = cluster_cell.set(Arc::downgrade(&cluster));
        Ok(cluster)
    }

    /// Follows `membership` (a running gossip task, or views a test publishes), reaching
    /// other nodes through `peers`.
    pub fn follow(
        config: ClusterConfig,
        store: Arc<Store>,
        membership: Membership,
        peers: Arc<dyn Peers>,
        stats: Arc<ClusterStats>,
    ) -> Arc<Cluster> {
        // The shortest a peer can take to declare this node down: its probe fails a
        // probe period after it was sent, and a fully confirmed suspicion lasts the
        // minimum suspicion timeout (local health only stretches both).
        let freeze = FreezeGuard::start(config.gossip.probe_period + config.gossip.suspect_timeout);
        // A node given seeds (other than itself; a name may list others even if it
        // lists only this node now) belongs to a cluster it has not met yet.
        let me = [membership.local_addr, config.gossip.gossip_addr];
        let has_seeds = config.gossip.seeds.iter().any(|s| s.may_be_another_node(&me));
        let mut views = membership.subscribe();
        let first = RingView::build(&views.borrow_and_update(), config.ring);
        let joined = AtomicBool::new(!has_seeds || first.ring.len() > 1);
        // A node starts with an empty store: nothing to hand off for its first ring.
        let handoff_version = AtomicU64::new(first.version);
        let (tx, ring) = watch::channel(Arc::new(first));
        let cluster = Arc::new(Cluster {
            membership,
            ring,
            peers,
            peer_timeout: config.peer_timeout,
            verdict_wait: Cluster::verdict_wait_for(&config.gossip, config.peer_timeout),
            stats,
            freeze,
            store,
            key: config.gossip.key.clone(),
            clock: tokio::time::Instant::now(),
            changed_at: AtomicU64::new(0),
            held_for: AtomicU64::new(0),
            joined,
            handoffs_running: AtomicU64::new(0),
            handoff_version,
            forwards: ForwardStats::default(),
            ring_tx: tx.clone(),
            ring_config: config.ring,
            handoff_rate: config.handoff_rate,
            revoked: std::sync::Mutex::new(None),
            dropped: AtomicBool::new(false),
            revoke_for: config.gossip.probe_period * 4 + config.gossip.suspect_timeout + config.gossip.probe_rtt,
            confirm: Arc::default(),
        });
        Cluster::probe_peers(&cluster);
        Cluster::confirm_after_drops(&cluster);
        let weak = Arc::downgrade(&cluster);
        let _ = cluster.freeze.on_thaw.set(Box::new(move || {
            // A node serving alone has nobody who could have moved on without it.
            if let Some(cluster) = weak.upgrade().filter(|c| c.ring().ring.len() > 1) {
                cluster.check_thawed(0);
            }
        }));
        if cluster.joining() {
            let weak = Arc::downgrade(&cluster);
            let timeout = config.join_timeout;
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                if let Some(cluster) = weak.upgrade() {
                    if !cluster.joined.swap(true, Relaxed) {
                        warn!(
                            after = ?timeout,
                            "no seed answered; serving as a cluster of one until a peer appears"
                        );
                    }
                }
            });
        }
        let ring_config = config.ring;
        let weak = Arc::downgrade(&cluster);
        tokio::spawn(async move {
            // The hand-off running now: the ring it started from, its stop flag, its task.
            let mut running: Option<(Arc<RingView>, Arc<AtomicBool>, tokio::task::JoinHandle<()>)> = None;
            while views.changed().await.is_ok() {
                let view = views.borrow_and_update().clone();
                let prev = tx.borrow().clone();
                let mut next = RingView::build(&view, ring_config);
                if view.version == prev.version {
                    next.window = prev.window.clone();
                    next.window_truncated = prev.window_truncated;
                } else {
                    let before = if prev.ring.len() > 1 {
                        Some(Arc::new(prev.ring.clone()))
                    } else {
                        // This node has just joined (or restarted): the others' previous
                        // ring is the current one without it.
                        let others = view
                            .members
                            .iter()
                            .map(|(id, _)| id)
                            .filter(|id| **id != view.me)
                            .cloned();
                        Ring::new(others, ring_config, prev.version).ok().map(Arc::new)
                    };
                    // Within an open window every ring adopted since it opened stays in
                    // it (two changes in quick succession); otherwise it starts afresh.
                    let open = weak.upgrade().is_some_and(|c| c.repairing());
                    if open {
                        next.window = prev.window.clone();
                        next.window_truncated = prev.window_truncated || prev.window.is_empty();
                    }
                    match before {
                        Some(ring) => next.window.push(ring),
                        // Unknown: treat every key as moved.
                        None => next.window_truncated = true,
                    }
                    if next.window.len() > MAX_WINDOW_RINGS {
                        let extra = next.window.len() - MAX_WINDOW_RINGS;
                        next.window.drain(..extra);
                        next.window_truncated = true;
                    }
                }
                let next = Arc::new(next);
                if next.ring.len() > 1 {
                    if let Some(cluster) = weak.upgrade() {
                        cluster.joined.store(true, Relaxed);
                    }
                }
                tx.send_replace(next.clone());
                if view.version == prev.version {
                    // Only a member's state changed (alive/suspect): same ring.
                    continue;
                }
                info!(
                    version = next.version,
                    nodes = next.ring.len(),
                    share = next.my_share(),
                    "ring changed"
                );
                let Some(cluster) = weak.upgrade() else { break };
                let at = cluster.clock.elapsed().as_millis() as u64 + 1;
                cluster.changed_at.store(at, Relaxed);
                cluster.held_for.store(next.version, Relaxed);
                Cluster::hold_window(&cluster, next.version);
                // The ring is followed at once, whatever hand-off is running: a node
                // that waited for its hand-off (minutes, for gigabytes at the budget)
                // before it followed the next change would refuse its peers' requests
                // placed with it as a ring mismatch all that time. A hand-off still
                // running for an earlier ring stops at its next batch, without purging;
                // this one starts from the ring that one started from, so it sends
                // whatever that one had left (and again what it sent: the receivers
                // keep the larger CAS).
                let base = match running.take() {
                    Some((base, stop, task)) if !task.is_finished() => {
                        stop.store(true, Relaxed);
                        base
                    }
                    _ => prev.clone(),
                };
                let stop = Arc::new(AtomicBool::new(false));
                let task = tokio::spawn({
                    let (base, next, stop) = (base.clone(), next.clone(), stop.clone());
                    async move { cluster.rebalance(&base, &next, &stop).await }
                });
                running = Some((base, stop, task));
            }
        });
        cluster
    }

    /// After a ring change: hands every item to the owners it newly has (a node that
    /// joined or came back empty, or the owner that replaces a lost one), then drops the
    /// items this node no longer owns.
    ///
    /// Handed-off items travel as `rc_set`, which a receiver applies only if it holds
    /// nothing newer (larger CAS), so a hand-off never overwrites a write made on the new
    /// owner meanwhile. With R >= 2 this restores the replica count after a failure and
    /// fills a returning primary, so an acknowledged write survives a node's restart.
    async fn rebalance(&self, prev: &RingView, next: &Arc<RingView>, stop: &AtomicBool) {
        self.handoffs_running.fetch_add(1, Relaxed);
        if self.rebalance_inner(prev, next, stop).await {
            self.handoff_version.store(next.version, Relaxed);
        }
        self.handoffs_running.fetch_sub(1, Relaxed);
    }

    /// Whether the hand-off for `next` ran to its end (not stopped for a later ring).
    async fn rebalance_inner(&self, prev: &RingView, next: &Arc<RingView>, stop: &AtomicBool) -> bool {
        let handed = self.hand_off(prev, next, stop).await;
        if handed > 0 {
            info!(items = handed, "handed items to their new owners");
        }
        if stop.load(Relaxed) {
            return false;
        }
        let store = self.store.clone();
        let stats = self.stats.clone();
        let ring = self.ring.clone();
        let view = next.clone();
        // Scanning the store is CPU work: keep it off the request threads' queues.
        let purged = tokio::task::spawn_blocking(move || {
            let purged = purge_unowned(&store, &view, || ring.borrow().version);
            stats.purged_items.fetch_add(purged, Relaxed);
        })
        .await;
        purged.is_ok() && self.ring_version() == next.version
    }

    /// Sends each local item to its owners under `next` that were not its owners under
    /// `prev` (a restarted node, with its new incarnation, counts as new); returns how
    /// many applications were sent.
    ///
    /// Hottest items first: the store is scanned once per heat ([`MAX_HEAT`] down to 0,
    /// the access frequency eviction keeps per item), so the items clients read most
    /// reach their new owners before the cold tail. Within a heat, one shard at a time,
    /// so the copies in flight stay bounded by a shard's budget; batches of
    /// [`HANDOFF_IN_FLIGHT`] go at the pace of the hand-off budget ([`HandoffPace`],
    /// `--handoff-rate-kb`), yielding between them, so the hand-off takes a bounded
    /// share of the node and client requests keep being served.
    async fn hand_off(&self, prev: &RingView, next: &RingView, stop: &AtomicBool) -> u64 {
        // None when this node is leaving: every owner under `next` is another node.
        let me = next.me;
        let now = crate::node::unix_now();
        let mut pace = HandoffPace::new(self.handoff_rate);
        let mut sent = 0;
        let mut sent_bytes = 0;
        let resets = self.stats.resets.load(Relaxed);
        for heat in (0..=MAX_HEAT).rev() {
            for shard in 0..self.store.shard_count() {
                // (owner, the rc_set, the item's key and value bytes)
                let mut batch: Vec<(SocketAddr, Bytes, u64)> = Vec::new();
                self.store
                    .scan_shard_at_heat(shard, now, heat, |key, value, flags, exptime, cas| {
                        let owners = next.ring.owners(key);
                        let before = prev.ring.owners(key);
                        for o in owners.iter().filter(|o| Some(**o) != me) {
                            let Some(id) = next.ring.node(*o) else { continue };
                            // The same node, same incarnation: a node that restarted (even
                            // before anyone noticed it died) comes back empty and is a new
                            // owner.
                            let was_owner = before.iter().any(|b| prev.ring.node(*b) == Some(id));
                            if was_owner {
                                continue;
                            }
                            let mut wire = BytesMut::with_capacity(key.len() + value.len() + 96);
                            // Fenced with the ring it is for: an application that arrives
                            // late (held in a socket's buffer through a partition, say,
                            // and delivered once it heals) is refused by an owner that has
                            // moved on (and may have dropped its store since), instead of
                            // bringing back a version that was overwritten meanwhile.
                            PeerRequest::Ring {
                                version: next.version,
                                handoff: true,
                            }
                            .encode(&mut wire);
                            PeerRequest::Set {
                                key: Bytes::copy_from_slice(key),
                                flags,
                                exptime,
                                cas,
                                value: Bytes::copy_from_slice(value),
                            }
                            .encode(&mut wire);
                            batch.push((id.client, wire.freeze(), (key.len() + value.len()) as u64));
                        }
                    });
                for chunk in batch.chunks(HANDOFF_IN_FLIGHT) {
                    let cost: u64 = chunk.iter().map(|(_, _, b)| b + HANDOFF_ITEM_COST).sum();
                    pace.admit(cost).await;
                    if stop.load(Relaxed) {
                        // The ring changed again: the next hand-off, from the ring this
                        // one started from, sends what is left.
                        self.stats.handed_off.fetch_add(sent, Relaxed);
                        self.stats.handed_off_bytes.fetch_add(sent_bytes, Relaxed);
                        return sent;
                    }
                    if self.stats.resets.load(Relaxed) != resets {
                        // The store was dropped (declared down, or frozen): what was
                        // scanned before is not this node's to hand on any more.
                        info!("store dropped during a hand-off; the rest of it is not sent");
                        self.stats.handed_off.fetch_add(sent, Relaxed);
                        self.stats.handed_off_bytes.fetch_add(sent_bytes, Relaxed);
                        return sent;
                    }
                    let (n, bytes) = self.send_handoff_batch(chunk, next.version, me.is_none()).await;
                    sent += n;
                    sent_bytes += bytes;
                    tokio::task::yield_now().await;
                }
            }
        }
        self.stats.handed_off.fetch_add(sent, Relaxed);
        self.stats.handed_off_bytes.fetch_add(sent_bytes, Relaxed);
        sent
    }

    /// Sends one batch of hand-off applications concurrently and waits for them all:
    /// how many were applied, and their key and value bytes.
    async fn send_handoff_batch(
        &self,
        chunk: &[(SocketAddr, Bytes, u64)],
        version: u64,
        version_is_leave: bool,
    ) -> (u64, u64) {
        let mut tasks = Vec::with_capacity(chunk.len());
        for (addr, wire, bytes) in chunk {
            let pool = self.peer(*addr);
            let wire = wire.clone();
            let timeout = self.peer_timeout;
            // The membership's view: once it has moved on, the hand-off of the next
            // ring takes over (this one stops). A leaving node (no place on `next`)
            // keeps trying.
            let views = self.membership.subscribe();
            let leaving = version_is_leave;
            tasks.push((
                *bytes,
                tokio::spawn(async move {
                    // Each pooled connection to a peer that restarted at the same
                    // address fails on its first use; trying once per connection
                    // more reaches a fresh one. (Resending is safe: the receiver
                    // keeps the larger CAS.)
                    let mut tries = PEER_POOL;
                    // An owner that has not adopted the ring yet refuses it (a ring
                    // mismatch): wait for it, while this node is still on that ring.
                    let mut fence_tries = HANDOFF_FENCE_TRIES;
                    loop {
                        match pool.request(wire.clone(), Expect::Line, timeout).await {
                            Err(e) if tries > 0 && !matches!(e, ringcache_client::Error::Timeout(_)) => {
                                tries -= 1;
                            }
                            Ok(reply)
                                if is_ring_mismatch(&reply)
                                    && fence_tries > 0
                                    && (leaving || views.borrow().version == version) =>
                            {
                                fence_tries -= 1;
                                tokio::time::sleep(FENCE_PAUSE).await;
                            }
                            done => break done,
                        }
                    }
                }),
            ));
        }
        let (mut sent, mut sent_bytes) = (0, 0);
        for (bytes, t) in tasks {
            match t.await {
                Ok(Ok(reply)) if reply.starts_with(b"STORED") || reply.starts_with(b"NOT_STORED") => {
                    sent += 1;
                    sent_bytes += bytes;
                }
                // Unreachable, timed out, or refused (an error line): not applied.
                _ => {
                    self.stats.replication_errors.fetch_add(1, Relaxed);
                }
            }
        }
        (sent, sent_bytes)
    }

    /// Called before serving a batch while the node has peers: if the process was
    /// frozen for longer than failure detection, drops the store first (see
    /// [`FreezeGuard`]).
    pub fn check_thawed(&self, _now: u32) {
        self.freeze.after_freeze(|| self.drop_after_freeze());
    }

    fn drop_after_freeze(&self) {
        warn!("this process was frozen longer than failure detection; dropping local data");
        self.drop_store();
    }

    /// Drops every item (after a freeze, when the cluster declared this node down, when
    /// its side regained a majority), and first revokes the ring of the moment: until
    /// this node's ring changes, or every other member of the ring reports that very
    /// ring as its own ([`Cluster::confirm_after_drops`]), or at most for four probe
    /// periods, a suspicion and a probe round trip (time for gossip to tell it whether
    /// it was declared down: 1.3 s by default), it refuses key commands from clients
    /// and peers ([`STORE_DROPPED`]).
    ///
    /// Emptying the store is not enough. A frozen node's sockets hold requests its
    /// peers sent before they declared it down: writes forwarded to it as the primary,
    /// fenced with the ring they shared then, which the senders gave up on, placed
    /// again on other owners and had acknowledged, and newer writes after them. The
    /// thawed node is still on that ring until gossip catches up (its membership
    /// renews its identity and drops the store again, and only then is the new ring
    /// published), so the fence lets such a write run, with a CAS unique minted now,
    /// newer than the writes acknowledged meanwhile: it survives the drop that precedes
    /// the new ring, and the hand-off and read repair then keep it on every owner over
    /// the acknowledged value (membership_events, freeze). And a client's write run
    /// under that ring would be acknowledged by a node the others no longer count.
    pub fn drop_store(&self) {
        let until = self.clock.elapsed().as_millis() as u64 + self.revoke_for.as_millis() as u64;
        {
            let mut revoked = self.revoked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *revoked = Some((self.ring_version(), until));
            self.dropped.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.confirm.notify_one();
        self.stats.resets.fetch_add(1, Relaxed);
        self.store.flush_all(crate::node::unix_now(), 0);
    }

    /// Ends a revocation ([`Cluster::drop_store`]) as soon as every other member of the
    /// revoked ring answers that it is on that same ring version: then nobody moved on
    /// to another ring while this node stood still or was cut off, so nobody gave up
    /// on a request waiting in this node's sockets and placed it again elsewhere, and
    /// a request fenced with that ring is as current as any. (A regained majority
    /// often finds the ring converged already; without this it refused keys for the
    /// whole bound.) A member that does not answer does not agree. Asks every
    /// [`CONFIRM_POLL`] while the revocation lasts.
    fn confirm_after_drops(cluster: &Arc<Cluster>) {
        let weak = Arc::downgrade(cluster);
        let confirm = cluster.confirm.clone();
        tokio::spawn(async move {
            loop {
                // Woken by a drop; now and then just to see whether the cluster is gone.
                let _ = tokio::time::timeout(Duration::from_secs(1), confirm.notified()).await;
                loop {
                    let Some(cluster) = weak.upgrade() else { return };
                    let Some(version) = cluster.revoked_version() else {
                        break;
                    };
                    if cluster.peers_on(version).await {
                        cluster.lift(version);
                        break;
                    }
                    drop(cluster);
                    tokio::time::sleep(CONFIRM_POLL).await;
                }
            }
        });
    }

    /// The ring version revoked now, if a revocation is in force.
    fn revoked_version(&self) -> Option<u64> {
        self.ring_revoked().then(|| self.ring_version())
    }

    /// Ends the revocation of ring `version` (if it is still the one in force).
    fn lift(&self, version: u64) {
        let mut revoked = self.revoked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if matches!(*revoked, Some((v, _)) if v == version) {
            *revoked = None;
            self.dropped.store(false, std::sync::atomic::Ordering::SeqCst);
            info!(
                version,
                "every other member is on the ring this node was on when it dropped its store; serving keys"
            );
        }
    }

    /// Whether every other member of this node's ring answers that its ring is
    /// `version` (and this node's still is).
    async fn peers_on(&self, version: u64) -> bool {
        self.ring_version() == version
            && self
                .all_peers_say(|reply| {
                    reply.is_some_and(|r| crate::admin::health::stat(r, "cluster_ring_version") == Some(version))
                })
                .await
    }

    /// Asks every other member of this node's ring for its `stats` and says whether
    /// `agrees` holds of every answer (`None` for a member that did not answer).
    async fn all_peers_say(&self, agrees: impl Fn(Option<&[u8]>) -> bool) -> bool {
        let view = self.ring();
        let me = view.me.and_then(|m| view.ring.node(m));
        let asks = view.ring.nodes().iter().filter(|n| Some(*n) != me).map(|peer| {
            let pool = self.peer(peer.client);
            let wait = self.peer_timeout;
            async move {
                pool.request(Bytes::from_static(b"stats\r\n"), Expect::Lines, wait)
                    .await
                    .ok()
            }
        });
        futures_util::future::join_all(asks)
            .await
            .iter()
            .all(|reply| agrees(reply.as_deref()))
    }

    /// Whether the ring this node is on was revoked by a drop of its store that is
    /// still recent (see [`Cluster::drop_store`]): key commands are refused.
    pub fn ring_revoked(&self) -> bool {
        if !self.dropped.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let mut revoked = self.revoked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = self.clock.elapsed().as_millis() as u64;
        match *revoked {
            Some((version, until)) if version == self.ring_version() && now < until => true,
            _ => {
                *revoked = None;
                self.dropped.store(false, std::sync::atomic::Ordering::SeqCst);
                false
            }
        }
    }

    /// Whether this node is in the repair window after a ring change: for
    /// [`REPAIR_WINDOW`], and after that until every other member of the ring has
    /// reported it adopted it and finished its hand-off of it (see
    /// [`Cluster::hold_window`]). Nodes adopt a new ring one after another as gossip
    /// spreads, and items move to their new owners only as the hand-off proceeds, so
    /// for a while a key's primary may hold an older version than another owner (or
    /// none). In that window the primary of a key that changed hands asks the other
    /// owners for their version before it serves the key, and keeps the newest (largest
    /// CAS); see `router::repair`.
    pub fn repairing(&self) -> bool {
        let at = self.changed_at.load(Relaxed);
        let now = self.clock.elapsed().as_millis() as u64 + 1;
        let recent = at != 0 && now.saturating_sub(at) < REPAIR_WINDOW.as_millis() as u64;
        // `held_for` is 0 in steady state: no look at the ring then.
        let held = self.held_for.load(Relaxed);
        recent || (at != 0 && held != 0 && held == self.ring_version())
    }

    /// Holds the repair window of ring `version` open past [`REPAIR_WINDOW`] until every
    /// other member on it reports (`stats`: `cluster_ring_version`,
    /// `cluster_handoff_version`) that it placed keys with it and finished handing
    /// items off for it: a hand-off held to its budget (`--handoff-rate-kb`) may take
    /// longer than the window, and a key that reaches its new owner late must still be
    /// repaired until then. Asks every [`HOLD_POLL`] once the window's time is up; stops
    /// when this node's ring changes (the next ring holds its own window). A member
    /// that cannot be asked (refused, silent past the peer timeout) is not waited for:
    /// it is dead or cut off, and a dead node hands nothing off.
    fn hold_window(cluster: &Arc<Cluster>, version: u64) {
        let weak = Arc::downgrade(cluster);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HOLD_POLL).await;
                let Some(cluster) = weak.upgrade() else { return };
                if cluster.held_for.load(Relaxed) != version || cluster.ring_version() != version {
                    return;
                }
                let at = cluster.changed_at.load(Relaxed);
                let now = cluster.clock.elapsed().as_millis() as u64 + 1;
                if now.saturating_sub(at) < REPAIR_WINDOW.as_millis() as u64 {
                    continue;
                }
                if cluster.peers_handed_off(version).await {
                    let _ = cluster.held_for.compare_exchange(version, 0, Relaxed, Relaxed);
                    return;
                }
            }
        });
    }

    /// Whether every other member of this node's ring that answers reports ring
    /// `version` adopted and its hand-off finished.
    async fn peers_handed_off(&self, version: u64) -> bool {
        self.all_peers_say(|reply| match reply {
            Some(r) => {
                crate::admin::health::stat(r, "cluster_ring_version") == Some(version)
                    && crate::admin::health::stat(r, "cluster_handoff_version") == Some(version)
            }
            // Not waited for (see `hold_window`).
            None => true,
        })
        .await
    }

    /// Whether this node is still joining its cluster: it was started with seeds and
    /// has not met any other member yet (for at most the join timeout,
    /// `--join-timeout-ms`).
    ///
    /// Such a node must not answer key commands. Its ring holds only itself, so it
    /// would acknowledge writes that no other node sees (reads through the others
    /// would then return older values) and serve reads that miss writes acknowledged
    /// elsewhere, until gossip found it: a node restarted under load did exactly that.
    /// Key commands get [`JOINING`] instead.
    pub fn joining(&self) -> bool {
        !self.joined.load(Relaxed)
    }

    /// Why this node must not run key commands now, as the reply to send: still
    /// joining ([`JOINING`]), its side of the cluster holds no majority
    /// ([`NO_QUORUM`], see [`crate::quorum`]), or it has just dropped its store and
    /// is still on the ring it held then ([`STORE_DROPPED`], see
    /// [`Cluster::drop_store`]). `None` while it may serve keys.
    pub fn refuse_keys(&self) -> Option<&'static [u8]> {
        if self.joining() {
            Some(JOINING)
        } else {
            self.refuse_peer_keys()
        }
    }

    /// [`Cluster::refuse_keys`] for a peer's request, which runs while this node joins
    /// (the peer placed it here).
    pub fn refuse_peer_keys(&self) -> Option<&'static [u8]> {
        if !self.membership.in_quorum() {
            Some(NO_QUORUM)
        } else if self.ring_revoked() {
            Some(STORE_DROPPED)
        } else {
            None
        }
    }

    /// Whether this node is handing items off after a ring change (or dropping the
    /// items it no longer owns) right now.
    pub fn handoff_in_progress(&self) -> bool {
        self.handoffs_running.load(Relaxed) > 0
    }

    /// The ring version whose hand-off this node has finished: equal to
    /// [`Cluster::ring_version`] once every item this node held has been sent to the
    /// owners that ring gave it (`stats`: `cluster_handoff_version`). A peer that reports
    /// the same ring and hand-off version as this node has nothing left to send it;
    /// readiness (`admin::health`) asks every peer.
    pub fn handoff_version(&self) -> u64 {
        self.handoff_version.load(Relaxed)
    }

    /// After an owner refused a request placed with `seen` (its ring differs): waits
    /// until this node's ring changes or [`FENCE_PAUSE`] passes, and returns the
    /// current ring to place the request with again; `None` once `deadline` has
    /// passed.
    pub async fn next_ring(&self, seen: &RingView, deadline: tokio::time::Instant) -> Option<Arc<RingView>> {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            self.stats.fence_refusals.fetch_add(1, Relaxed);
            return None;
        }
        self.stats.fence_retries.fetch_add(1, Relaxed);
        let mut rx = self.ring.clone();
        let wait = rx.wait_for(|v| v.version != seen.version);
        let _ = tokio::time::timeout((deadline - now).min(FENCE_PAUSE), wait).await;
        Some(self.ring())
    }

    /// The longest a write waits for the membership's verdict on an owner it cannot
    /// reach (`router::write`): a failed node is suspected within a probe period and
    /// its round trip, declared down once the suspicion times out (at most the
    /// suspicion nobody confirmed, `suspect_max_timeout`), and the verdict
    /// reaches this node within about another probe period; plus one peer timeout for
    /// the request that found the owner unreachable to fail. Past that, the owner is
    /// alive but unreachable from here (no verdict will come), and the write is refused.
    pub fn verdict_wait_for(gossip: &GossipConfig, peer_timeout: Duration) -> Duration {
        let suspicion = gossip.suspect_timeout.max(gossip.suspect_max_timeout);
        gossip.probe_period * 2 + gossip.probe_rtt + suspicion + peer_timeout
    }

    /// Resolves once this node's ring no longer holds `id` (that member, that
    /// incarnation): the membership declared it down, or it left.
    pub async fn until_dropped(&self, id: &NodeId) {
        until_dropped(self.ring.clone(), id).await
    }

    /// Resolves once this node's ring is no longer version `version` (at once if it is
    /// not now).
    pub async fn until_ring_changes(&self, version: u64) {
        let mut rx = self.ring.clone();
        if rx.wait_for(|v| v.version != version).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// [`Cluster::until_dropped`] as a future that owns what it needs (to spawn).
    pub fn until_dropped_owned(&self, id: NodeId) -> impl std::future::Future<Output = ()> + Send + 'static {
        let rx = self.ring.clone();
        async move { until_dropped(rx, &id).await }
    }

    /// The current ring (cheap; never waits on the membership task).
    pub fn ring(&self) -> Arc<RingView> {
        self.ring.borrow().clone()
    }

    /// The current ring's version (cheaper than [`Cluster::ring`]: no clone).
    ///
    /// A ring change publishes the new ring before it hands items off, so a change
    /// applied while this still answers the version it was placed with is in the store
    /// before the hand-off scans it (see `router::write::write_here`).
    pub fn ring_version(&self) -> u64 {
        self.ring.borrow().version
    }

    /// The peer serving clients at `addr` (through the node's [`Peers`]).
    pub fn peer(&self, addr: SocketAddr) -> Peer {
        Peer::new(self.peers.clone(), addr)
    }

    /// Measures the round trip to every other member on the ring, every
    /// [`PROBE_EVERY`], with a no-op (`mn`) on the pooled peer connection (what a
    /// forwarded request pays on top of the owner's work): `ringcache_peer_rtt_seconds`.
    /// Stops when the cluster is dropped.
    fn probe_peers(cluster: &Arc<Cluster>) {
        let weak = Arc::downgrade(cluster);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(cluster) = weak.upgrade() else { return };
                let view = cluster.ring();
                let me = view.me.and_then(|m| view.ring.node(m)).map(|id| id.name.clone());
                let wait = cluster.peer_timeout;
                let probes = view
                    .ring
                    .nodes()
                    .iter()
                    .filter(|id| Some(&id.name) != me.as_ref())
                    .map(|id| {
                        let pool = cluster.peer(id.client);
                        let stats = cluster.forwards.peer(&id.name);
                        async move {
                            let sent = tokio::time::Instant::now();
                            let answered = pool.request(Bytes::from_static(b"mn\r\n"), Expect::Meta, wait).await;
                            stats.observe_rtt(answered.ok().map(|_| sent.elapsed()));
                        }
                    });
                futures_util::future::join_all(probes).await;
            }
        });
    }

    /// Leaves the cluster (on shutdown): tells the others, so they drop this node at
    /// once, then places keys without it and hands every item to the owners it gains
    /// (with one replica, its only copy; with more, the copy that restores the count).
    /// Returns how many items it handed off.
    pub async fn leave(&self) -> u64 {
        let prev = self.ring();
        let view = self.membership.subscribe().borrow().clone();
        self.membership.leave().await;
        if prev.ring.len() <= 1 {
            return 0;
        }
        // The ring the others have without this node: place every key with it from now
        // on (this node owns nothing; what its clients still send goes to the owners),
        // then hand each item to the owners it gains. A write placed with the old ring
        // and applied here after this point is not acknowledged (the ring changed under
        // it: `router::write::write_here`), so the scan below misses no acknowledged write.
        let next = Arc::new(RingView::build(&view.without_me(), self.ring_config));
        self.ring_tx.send_replace(next.clone());
        let handed = self.hand_off(&prev, &next, &AtomicBool::new(false)).await;
        info!(
            items = handed,
            "handed this node's items to their owners before leaving"
        );
        handed
    }
}

/// Resolves once the ring `rx` follows no longer holds `id`; never if the ring stops
/// changing (the cluster is shutting down).
async fn until_dropped(mut rx: watch::Receiver<Arc<RingView>>, id: &NodeId) {
    let gone = |v: &Arc<RingView>| v.ring.index_of(id.name.as_bytes()).and_then(|i| v.ring.node(i)) != Some(id);
    if rx.wait_for(gone).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// How often a revoked ring is put to the other members (see
/// `Cluster::confirm_after_drops`).
const CONFIRM_POLL: Duration = Duration::from_millis(50);

/// How often each peer's round trip is measured (see `Cluster::probe_peers`).
const PROBE_EVERY: Duration = Duration::from_secs(2);

pub use ringcache_protocol::text::response::{JOINING, NO_QUORUM, STORE_DROPPED};

/// Drops every item whose key `view` does not place on this node, shard by shard, while
/// `current` (the node's ring version) is still `view`'s; returns how many.
pub fn purge_unowned(store: &Store, view: &RingView, current: impl Fn() -> u64) -> u64 {
    let Some(me) = view.me else {
        return 0;
    };
    let now = crate::node::unix_now();
    let mut purged = 0;
    for i in 0..store.shards() {
        // Looked at under the shard's lock (the first key's call): once the node follows
        // a later ring, a write placed with it may have landed here, and the hand-off of
        // that ring has still to send what this ring would drop: stop.
        let mut moved = None;
        purged += store.retain_keys_in(i, now, |key| {
            *moved.get_or_insert_with(|| current() != view.version) || view.ring.is_owner(key, me)
        });
        if moved == Some(true) {
            break;
        }
    }
    purged
}

#[cfg(test)]
mod freeze_tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::FreezeGuard;

    /// A guard whose last beat was 10 s ago (no beat thread): it finds a freeze.
    fn thawed_guard() -> Arc<FreezeGuard> {
        Arc::new(FreezeGuard {
            started: Instant::now().checked_sub(Duration::from_secs(10)).unwrap(),
            beat: AtomicU64::new(0),
            limit_ms: 1000,
            on_thaw: std::sync::OnceLock::new(),
            dropping: std::sync::Mutex::new(()),
        })
    }

    #[test]
    fn a_caller_that_finds_the_freeze_while_the_store_is_dropped_waits_for_the_drop() {
        let guard = thawed_guard();
        let done = Arc::new(AtomicBool::new(false));
        let drops = Arc::new(AtomicU64::new(0));
        let first = {
            let (guard, done, drops) = (guard.clone(), done.clone(), drops.clone());
            std::thread::spawn(move || {
                guard.after_freeze(|| {
                    drops.fetch_add(1, SeqCst);
                    // A drop that takes a while (every shard in turn).
                    std::thread::sleep(Duration::from_millis(200));
                    done.store(true, SeqCst);
                })
            })
        };
        // Wait until the first caller is dropping, then ask as a request handler would.
        while drops.load(SeqCst) == 0 {
            std::thread::yield_now();
        }
        let ran = guard.after_freeze(|| {
            drops.fetch_add(1, SeqCst);
        });
        assert!(!ran, "one drop per freeze");
        assert!(done.load(SeqCst), "returned while the store was still being dropped");
        assert!(first.join().unwrap());
        assert_eq!(drops.load(SeqCst), 1);
        // Handled: no gap any more.
        assert!(!guard.after_freeze(|| panic!("dropped twice")));
    }
}
