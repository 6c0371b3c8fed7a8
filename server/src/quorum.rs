//! Whether this node's side of the cluster holds a strict majority: the rule that
//! decides, in a partition, which side serves keys and which side refuses them.
//!
//! Each node remembers the members it counts (`known`, by node name, so a restart
//! under the same name is the same member): every member it has seen while its side
//! held a majority, less those that said farewell (left on purpose: scale-down,
//! rolling restart). A member that failed, is suspected or was cut off stays counted.
//! The node is *in quorum* while the members it sees up (alive or suspect), counted
//! only if known, are more than half of `known`.
//!
//! Why two sides cannot both be in quorum: while the cluster is whole every node
//! knows the same members. Once it splits, a side in minority admits nobody new
//! (new members count only while in quorum), and a member leaves `known` without a
//! majority's say only by saying farewell, which it does as its process exits, so it
//! is up on neither side. Two disjoint sides cannot both hold more than half of the
//! same set, and a farewell removes a member that neither side can count.
//!
//! What the node does with it (`membership`, `cluster`, `router`): in minority it
//! refuses key commands and reports not ready; when it regains quorum it drops its
//! store before serving again, since the majority may have overwritten or deleted
//! anything meanwhile. The majority keeps serving, and keeps its data through the
//! heal: only a node that sees a majority alive declares others down (`membership`),
//! so the cut-off side never declares the majority down.

use std::collections::{BTreeSet, HashMap};

/// The count behind a verdict: `up` of the `known` members are up on this side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// Members up on this node's side.
    pub up: usize,
    /// Members counted.
    pub known: usize,
}

impl Count {
    /// Whether the members up are a strict majority of those counted.
    pub fn in_quorum(&self) -> bool {
        self.up * 2 > self.known
    }
}

/// What a new view did to this node's quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Quorum kept, or still missing.
    Same,
    /// It had a majority and has lost it.
    Lost,
    /// It had no majority and has one again: drop the store before serving.
    Regained,
}

/// The members this node counts and its current verdict (see the module doc).
#[derive(Debug)]
pub struct Quorum {
    me: String,
    known: BTreeSet<String>,
    /// Farewells heard: name -> the incarnation that left.
    left: HashMap<String, u64>,
    count: Count,
}

impl Quorum {
    /// A fresh node: it knows only itself (and is in quorum of one).
    pub fn new(me: &str) -> Quorum {
        Quorum {
            me: me.to_string(),
            known: BTreeSet::from([me.to_string()]),
            left: HashMap::new(),
            count: Count { up: 1, known: 1 },
        }
    }

    /// A farewell from `name` (run `incarnation`): it left on purpose.
    pub fn farewell(&mut self, name: &str, incarnation: u64) {
        if name != self.me {
            let e = self.left.entry(name.to_string()).or_insert(incarnation);
            *e = (*e).max(incarnation);
        }
    }

    /// The members this node sees up now (name, incarnation), itself included.
    pub fn observe<'a>(&mut self, up: impl IntoIterator<Item = (&'a str, u64)> + Clone) -> Change {
        let was = self.count.in_quorum();
        // A farewell takes its member out of the count once that run is no longer up;
        // a later run (a restart) makes the farewell moot.
        self.left.retain(|name, inc| {
            let live = up.clone().into_iter().find(|(n, _)| n == name).map(|(_, i)| i);
            match live {
                Some(i) if i > *inc => false,
                Some(_) => true,
                None => {
                    self.known.remove(name);
                    false
                }
            }
        });
        let count = |known: &BTreeSet<String>| Count {
            up: up.clone().into_iter().filter(|(n, _)| known.contains(*n)).count(),
            known: known.len(),
        };
        let mut now = count(&self.known);
        if now.in_quorum() {
            // A majority admits the new members it sees.
            for (name, _) in up.clone() {
                self.known.insert(name.to_string());
            }
            now = count(&self.known);
        }
        self.count = now;
        match (was, now.in_quorum()) {
            (true, false) => Change::Lost,
            (false, true) => Change::Regained,
            _ => Change::Same,
        }
    }

    /// Whether `names` (this node's included) are more than half of the members it
    /// counts; changes nothing.
    pub fn majority_of_known<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> bool {
        let up = names.into_iter().filter(|n| self.known.contains(*n)).count();
        Count {
            up,
            known: self.known.len(),
        }
        .in_quorum()
    }

    /// The count as of the last view.
    pub fn count(&self) -> Count {
        self.count
    }

    /// Whether this node's side held a majority at the last view.
    pub fn in_quorum(&self) -> bool {
        self.count.in_quorum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn see(q: &mut Quorum, names: &[&str]) -> Change {
        q.observe(names.iter().map(|n| (*n, 1u64)).collect::<Vec<_>>().iter().copied())
    }

    #[test]
    fn a_one_node_partition_leaves_the_two_in_quorum_and_the_one_out() {
        let (mut a, mut c) = (Quorum::new("a"), Quorum::new("c"));
        for q in [&mut a, &mut c] {
            assert_eq!(see(q, &["a", "b", "c"]), Change::Same);
            assert!(q.in_quorum());
        }
        assert_eq!(see(&mut a, &["a", "b"]), Change::Same);
        assert_eq!(a.count(), Count { up: 2, known: 3 });
        assert_eq!(see(&mut c, &["c"]), Change::Lost);
        assert_eq!(c.count(), Count { up: 1, known: 3 });
        // Healing: only the cut-off node drops its data.
        assert_eq!(see(&mut a, &["a", "b", "c"]), Change::Same);
        assert_eq!(see(&mut c, &["a", "b", "c"]), Change::Regained);
    }

    #[test]
    fn a_minority_admits_nobody_so_new_nodes_cannot_outvote_the_majority() {
        let mut c = Quorum::new("c");
        see(&mut c, &["a", "b", "c"]);
        see(&mut c, &["c"]);
        // Two new nodes join the cut-off side: still 1 of the 3 it knows.
        assert_eq!(see(&mut c, &["c", "d", "e"]), Change::Same);
        assert_eq!(c.count(), Count { up: 1, known: 3 });
        assert!(!c.in_quorum());
        // Back with the majority, it admits them.
        assert_eq!(see(&mut c, &["a", "b", "c", "d", "e"]), Change::Regained);
        assert_eq!(c.count(), Count { up: 5, known: 5 });
    }

    #[test]
    fn failures_do_not_shrink_the_count_but_farewells_do() {
        let mut a = Quorum::new("a");
        see(&mut a, &["a", "b", "c", "d", "e"]);
        // d and e fail: 3 of 5, still a majority, and they are still counted.
        see(&mut a, &["a", "b", "c"]);
        assert_eq!(a.count(), Count { up: 3, known: 5 });
        assert_eq!(see(&mut a, &["a", "b"]), Change::Lost);

        let mut a = Quorum::new("a");
        see(&mut a, &["a", "b", "c", "d", "e"]);
        // d and e leave on purpose (scale-down to 3): the cluster is 3 now.
        a.farewell("d", 1);
        a.farewell("e", 1);
        see(&mut a, &["a", "b", "c"]);
        assert_eq!(a.count(), Count { up: 3, known: 3 });
        // So one failure more keeps a majority.
        assert_eq!(see(&mut a, &["a", "b"]), Change::Same);
        assert!(a.in_quorum());
    }

    #[test]
    fn a_farewell_heard_before_the_member_goes_waits_for_it_and_a_restart_makes_it_moot() {
        let mut a = Quorum::new("a");
        see(&mut a, &["a", "b", "c"]);
        a.farewell("c", 1);
        // c is still up: it counts until it goes.
        see(&mut a, &["a", "b", "c"]);
        assert_eq!(a.count(), Count { up: 3, known: 3 });
        // c restarted (run 2) before it went from this node's view: the farewell was
        // for run 1 and no longer applies.
        a.observe([("a", 1), ("b", 1), ("c", 2)]);
        a.observe([("a", 1), ("b", 1)]);
        assert_eq!(a.count(), Count { up: 2, known: 3 });
        // Its own name is never taken out.
        a.farewell("a", 1);
        a.observe([("a", 1)]);
        assert_eq!(a.count(), Count { up: 1, known: 3 });
    }

    #[test]
    fn a_majority_of_known_counts_only_members_it_knows_and_changes_nothing() {
        let mut a = Quorum::new("a");
        see(&mut a, &["a", "b", "c"]);
        assert!(a.majority_of_known(["a", "b"]));
        assert!(!a.majority_of_known(["a"]));
        // Strangers do not count: they were never admitted.
        assert!(!a.majority_of_known(["a", "x", "y"]));
        assert_eq!(a.count(), Count { up: 3, known: 3 });
    }

    #[test]
    fn a_two_node_cluster_has_no_majority_after_a_failure() {
        let mut a = Quorum::new("a");
        see(&mut a, &["a", "b"]);
        assert_eq!(see(&mut a, &["a"]), Change::Lost);
        let mut a = Quorum::new("a");
        see(&mut a, &["a", "b"]);
        a.farewell("b", 1);
        assert_eq!(see(&mut a, &["a"]), Change::Same);
    }
}
