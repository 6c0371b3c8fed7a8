//! Lifeguard (HashiCorp memberlist's extensions to SWIM) for the membership task: this
//! node's own health, and suspicion timeouts that shrink as others confirm them.
//!
//! - [`Awareness`]: a score of how unhealthy *this* node looks to itself (0 = healthy,
//!   up to [`Awareness::MAX`]). Probes it had to give up on, suspicions of itself it
//!   had to refute, and its own timers firing late (event-loop lag: a CPU-starved
//!   process) raise it; probes answered in time lower it. foca asks for every timer
//!   through `Runtime::submit_after`, and the membership task stretches the probe
//!   period, the ack timeout and the suspicion timeout by `score + 1`: a node that is
//!   itself slow gives others longer before it suspects or declares them down, rather
//!   than blaming them for its own lateness.
//! - [`suspicion_timeout`]: memberlist's `suspicion.go` formula. A suspicion starts
//!   at `max` and shrinks (logarithmically) toward `min` as independent confirmations
//!   arrive, reaching `min` with `k` of them: a member that several nodes failed to
//!   reach goes down fast, one that a single (perhaps itself slow) node suspects gets
//!   the longest time to refute.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

/// This node's local health score (Lifeguard's "local health multiplier").
#[derive(Debug, Default, Clone)]
pub(crate) struct Awareness {
    score: u32,
}

impl Awareness {
    /// The highest score: timers are stretched at most `MAX + 1` times.
    pub(crate) const MAX: u32 = 8;

    /// Adds `delta`, keeping the score within `0..=MAX`.
    pub(crate) fn apply(&mut self, delta: i32) {
        self.score = self.score.saturating_add_signed(delta).min(Self::MAX);
    }

    /// The current score.
    pub(crate) fn score(&self) -> u32 {
        self.score
    }

    /// `d` stretched by the score: `d * (score + 1)`.
    pub(crate) fn scale(&self, d: Duration) -> Duration {
        d * (self.score + 1)
    }
}

/// How long a suspicion lasts in all, from when it started, given `confirmations` of
/// the `k` expected: `max` with none, shrinking with the logarithm of their number to
/// `min` at `k` (memberlist's `remainingSuspicionTime`, without its rounding). With
/// `k == 0` (nobody else could confirm, e.g. a cluster of two) it is `min` at once.
pub(crate) fn suspicion_timeout(min: Duration, max: Duration, k: u32, confirmations: u32) -> Duration {
    if k == 0 || max <= min {
        return min;
    }
    let frac = f64::from(confirmations + 1).ln() / f64::from(k + 1).ln();
    let raw = max.as_secs_f64() - frac * (max - min).as_secs_f64();
    Duration::from_secs_f64(raw.max(min.as_secs_f64()))
}

/// How many independent confirmations a suspicion waits for before it is down to its
/// minimum: one per other member that could have failed to reach the suspect, at most
/// 3 (memberlist waits for `suspicion_mult - 2 = 2`; with foca a confirmation is a
/// member asking this node to probe the suspect, and each failed prober asks up to
/// three). `others` counts the members besides this node, the suspect among them.
pub(crate) fn expected_confirmations(others: usize) -> u32 {
    others.saturating_sub(1).min(3) as u32
}

/// This node's own suspicions (foca's `ChangeSuspectToDown` timers, one per suspect),
/// and the confirmations that shorten them.
///
/// A confirmation is another member asking this node to probe the suspect (foca's
/// `PingReq`): that member's own direct probe of it just failed, which is independent
/// evidence. (foca's suspicion updates do not say who raised them, so gossip cannot
/// count as a confirmation.) Requests heard before this node's own probe fails count
/// once it does, if they are recent (within `2 * max`).
#[derive(Debug)]
pub(crate) struct Suspicions {
    min: Duration,
    max: Duration,
    /// suspect -> asker -> when it last asked.
    asked: HashMap<SocketAddr, HashMap<SocketAddr, Instant>>,
    running: HashMap<SocketAddr, Running>,
}

#[derive(Debug)]
struct Running {
    /// Identifies the suspicion (the suspect's identity and incarnation).
    key: u64,
    /// The timer's handle in the membership task's queue.
    seq: u64,
    started: Instant,
    /// The local health stretch when it started (`score + 1`).
    stretch: u32,
    k: u32,
    confirmations: u32,
    due: Instant,
}

/// What [`Suspicions::start`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// The same suspicion already runs (foca probed the suspect again and failed
    /// again): keep the running timer, drop this one.
    Duplicate,
    /// A new suspicion, due at `due`; `replaces` is the timer of an older suspicion of
    /// the same member (an earlier incarnation), to cancel.
    New { due: Instant, replaces: Option<u64> },
}

impl Suspicions {
    /// Suspicions that last from `max` (no confirmation) down to `min`.
    pub(crate) fn new(min: Duration, max: Duration) -> Suspicions {
        Suspicions {
            min,
            max: max.max(min),
            asked: HashMap::new(),
            running: HashMap::new(),
        }
    }

    /// This node's probe of `suspect` failed and foca suspects it (`key` identifies the
    /// suspect's identity and incarnation); `stretch` is the local health factor and `k`
    /// the confirmations expected. Record the timer's handle with
    /// [`Suspicions::scheduled`].
    pub(crate) fn start(&mut self, suspect: SocketAddr, key: u64, now: Instant, stretch: u32, k: u32) -> Start {
        if self.running.get(&suspect).is_some_and(|r| r.key == key) {
            return Start::Duplicate;
        }
        let window = self.max * 2;
        let confirmations = self.asked.get_mut(&suspect).map_or(0, |askers| {
            askers.retain(|_, at| now.saturating_duration_since(*at) <= window);
            askers.len() as u32
        });
        let due = now + suspicion_timeout(self.min, self.max, k, confirmations) * stretch;
        let replaces = self.running.remove(&suspect).map(|r| r.seq);
        self.running.insert(
            suspect,
            Running {
                key,
                seq: 0,
                started: now,
                stretch,
                k,
                confirmations,
                due,
            },
        );
        Start::New { due, replaces }
    }

    /// The running suspicion of `suspect` now has its timer at `seq`.
    pub(crate) fn scheduled(&mut self, suspect: SocketAddr, seq: u64) {
        if let Some(r) = self.running.get_mut(&suspect) {
            r.seq = seq;
        }
    }

    /// `asker` asked this node to probe `suspect`. Returns whether it is a new
    /// confirmation, and if it brings a running suspicion's end forward, that
    /// suspicion's timer and its new due time (reschedule it, then call
    /// [`Suspicions::scheduled`]).
    pub(crate) fn confirm(
        &mut self,
        suspect: SocketAddr,
        asker: SocketAddr,
        now: Instant,
    ) -> (bool, Option<(u64, Instant)>) {
        if asker == suspect {
            return (false, None);
        }
        let window = self.max * 2;
        let askers = self.asked.entry(suspect).or_default();
        askers.retain(|_, at| now.saturating_duration_since(*at) <= window);
        let new = askers.insert(asker, now).is_none();
        // Forget suspects nobody asked about lately (bounded memory).
        if self.asked.len() > 1024 {
            self.asked
                .retain(|_, askers| askers.values().any(|at| now.saturating_duration_since(*at) <= window));
        }
        let Some(r) = self.running.get_mut(&suspect) else {
            return (new, None);
        };
        if !new || now < r.started {
            return (new, None);
        }
        r.confirmations += 1;
        let due = r.started + suspicion_timeout(self.min, self.max, r.k, r.confirmations) * r.stretch;
        if due < r.due {
            r.due = due;
            (true, Some((r.seq, due)))
        } else {
            (true, None)
        }
    }

    /// The timer `seq` of `suspect`'s suspicion fired.
    pub(crate) fn fired(&mut self, suspect: SocketAddr, seq: u64) {
        if self.running.get(&suspect).is_some_and(|r| r.seq == seq) {
            self.running.remove(&suspect);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_suspicion_shrinks_as_other_members_ask_to_probe_the_suspect() {
        let (min, max) = (Duration::from_millis(400), Duration::from_millis(2400));
        let mut s = Suspicions::new(min, max);
        let t0 = Instant::now();
        let (c, b, d, e) = (addr(1), addr(2), addr(3), addr(4));
        // b asked about c before this node's own probe of c failed: it counts.
        assert_eq!(s.confirm(c, b, t0), (true, None));
        assert_eq!(s.confirm(c, b, t0), (false, None), "the same asker counts once");
        let Start::New { due, replaces: None } = s.start(c, 7, t0 + Duration::from_millis(100), 1, 3) else {
            panic!("a new suspicion");
        };
        assert_eq!(due, t0 + Duration::from_millis(100) + suspicion_timeout(min, max, 3, 1));
        s.scheduled(c, 11);
        assert_eq!(s.start(c, 7, t0 + Duration::from_millis(150), 1, 3), Start::Duplicate);
        // A second and third asker bring it down to min.
        let (new, moved) = s.confirm(c, d, t0 + Duration::from_millis(200));
        assert!(new);
        let (seq, due2) = moved.expect("earlier");
        assert_eq!(seq, 11);
        assert!(due2 < due);
        s.scheduled(c, 12);
        let (_, moved) = s.confirm(c, e, t0 + Duration::from_millis(300));
        assert_eq!(moved, Some((12, t0 + Duration::from_millis(100) + min)));
        // The suspect asking about itself is no confirmation.
        assert_eq!(s.confirm(c, c, t0), (false, None));
        // A new incarnation replaces the old suspicion's timer.
        s.scheduled(c, 13);
        let Start::New { replaces, .. } = s.start(c, 8, t0 + Duration::from_millis(400), 1, 3) else {
            panic!("a new suspicion");
        };
        assert_eq!(replaces, Some(13));
        s.scheduled(c, 14);
        s.fired(c, 13);
        assert!(s.running.contains_key(&c), "a stale timer does not end the suspicion");
        s.fired(c, 14);
        assert!(!s.running.contains_key(&c));
    }

    #[test]
    fn a_lone_suspicion_lasts_max_stretched_by_local_health_and_old_requests_expire() {
        let (min, max) = (Duration::from_millis(400), Duration::from_millis(1200));
        let mut s = Suspicions::new(min, max);
        let t0 = Instant::now();
        s.confirm(addr(1), addr(2), t0);
        // Long after b asked: it no longer counts.
        let later = t0 + max * 3;
        let Start::New { due, .. } = s.start(addr(1), 1, later, 3, 1) else {
            panic!("a new suspicion");
        };
        assert_eq!(due, later + max * 3, "no confirmation, stretched by 3");
        s.scheduled(addr(1), 5);
        let (_, moved) = s.confirm(addr(1), addr(2), later + Duration::from_millis(10));
        assert_eq!(
            moved,
            Some((5, later + min * 3)),
            "one confirmation of one expected: min, still stretched"
        );
    }

    #[test]
    fn awareness_stays_within_bounds_and_stretches_by_score_plus_one() {
        let mut a = Awareness::default();
        assert_eq!(a.scale(Duration::from_millis(200)), Duration::from_millis(200));
        a.apply(-1);
        assert_eq!(a.score(), 0, "never below healthy");
        a.apply(1);
        a.apply(1);
        assert_eq!(a.score(), 2);
        assert_eq!(a.scale(Duration::from_millis(200)), Duration::from_millis(600));
        for _ in 0..20 {
            a.apply(1);
        }
        assert_eq!(a.score(), Awareness::MAX);
        assert_eq!(a.scale(Duration::from_millis(100)), Duration::from_millis(900));
        a.apply(-1);
        assert_eq!(a.score(), Awareness::MAX - 1);
    }

    #[test]
    fn suspicion_starts_at_max_and_reaches_min_with_k_confirmations() {
        let (min, max) = (Duration::from_millis(400), Duration::from_millis(2400));
        assert_eq!(suspicion_timeout(min, max, 3, 0), max);
        let one = suspicion_timeout(min, max, 3, 1);
        let two = suspicion_timeout(min, max, 3, 2);
        assert!(max > one && one > two && two > min, "{one:?} {two:?}");
        // ln 2 / ln 4 = 1/2: halfway.
        assert!((1399..=1400).contains(&one.as_millis()), "{one:?}");
        assert_eq!(suspicion_timeout(min, max, 3, 3), min);
        assert_eq!(suspicion_timeout(min, max, 3, 9), min, "never below min");
        assert_eq!(suspicion_timeout(min, max, 1, 1), min);
        assert_eq!(suspicion_timeout(min, max, 0, 0), min, "nobody to confirm: min");
        assert_eq!(suspicion_timeout(max, min, 2, 0), max, "max below min: min wins");
    }

    #[test]
    fn confirmations_expected_from_the_other_members() {
        assert_eq!(expected_confirmations(0), 0);
        assert_eq!(expected_confirmations(1), 0, "two nodes: nobody else to ask");
        assert_eq!(expected_confirmations(2), 1, "three nodes: the third");
        assert_eq!(expected_confirmations(50), 3);
    }
}
