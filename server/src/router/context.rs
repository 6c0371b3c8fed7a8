//! The context every routing step runs in: one struct instead of the same seven
//! arguments passed down every function.

use std::sync::Arc;

use crate::cluster::{Cluster, RingView};
use crate::node::Node;
use crate::stats::Counters;

/// One request's view of the world: which node runs it, the cluster it belongs to, the
/// ring it was placed with, where it came from, the clock of its expiry decisions and
/// the counters it adds to.
pub struct Ctx<'a> {
    /// The node that runs the request.
    pub node: &'a Node,
    /// Its cluster.
    pub cluster: &'a Cluster,
    /// The ring the request is placed with first (a connection takes the current ring
    /// once per batch). A placement that must retry, or finds this one out of date,
    /// moves on to the current ring (see `placement::Walk`).
    pub view: &'a Arc<RingView>,
    /// Whether a peer sent the request: it then runs here and is never forwarded
    /// again (rings can disagree for a moment, and a request must not bounce).
    pub from_peer: bool,
    /// Unix seconds, the clock of every expiry decision.
    pub now: u32,
    /// The connection's counters (`stats`).
    pub counters: &'a mut Counters,
}

impl<'a> Ctx<'a> {
    /// The context of a request read from a client (`from_peer` false) or a peer.
    pub fn new(
        node: &'a Node,
        cluster: &'a Cluster,
        view: &'a Arc<RingView>,
        from_peer: bool,
        now: u32,
        counters: &'a mut Counters,
    ) -> Ctx<'a> {
        Ctx {
            node,
            cluster,
            view,
            from_peer,
            now,
            counters,
        }
    }
}
