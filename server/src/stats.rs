//! Counters behind `stats`, with memcached's names and meanings.
//!
//! Request handlers count into a plain per-connection [`Counters`] (no atomics on the
//! hot path) and fold it into the node-wide [`Stats`] once per batch of requests, so
//! threads never contend on a shared cache line per request.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Per-connection counters, folded into [`Stats`] after every batch.
        #[derive(Debug, Default, Clone)]
        pub struct Counters {
            $(
                #[doc = concat!("The `", stringify!($name), "` count: memcached's statistic of that name, where it has one.")]
                $(#[$doc])*
                pub $name: u64,
            )*
        }

        /// Node-wide counters.
        #[derive(Debug, Default)]
        pub struct Totals {
            $(
                #[doc = concat!("The `", stringify!($name), "` count: memcached's statistic of that name, where it has one.")]
                $(#[$doc])*
                pub $name: AtomicU64,
            )*
        }

        impl Totals {
            /// Adds `c` and zeroes it.
            pub fn absorb(&self, c: &mut Counters) {
                $(if c.$name != 0 { self.$name.fetch_add(c.$name, Relaxed); c.$name = 0; })*
            }

            /// Zeroes every counter (`stats reset`).
            pub fn reset(&self) {
                $(self.$name.store(0, Relaxed);)*
            }

            /// A snapshot, as plain numbers.
            pub fn snapshot(&self) -> Counters {
                Counters { $($name: self.$name.load(Relaxed),)* }
            }
        }
    };
}

counters!(
    cmd_get,
    cmd_set,
    cmd_flush,
    cmd_touch,
    cmd_meta,
    get_hits,
    get_misses,
    get_expired,
    get_flushed,
    delete_misses,
    delete_hits,
    incr_misses,
    incr_hits,
    decr_misses,
    decr_hits,
    cas_misses,
    cas_hits,
    cas_badval,
    touch_hits,
    touch_misses,
    store_too_large,
    store_no_memory,
    auth_cmds,
    auth_errors,
    bytes_read,
    bytes_written,
    conn_yields,
    rejected_connections,
    /// Items a peer handed to this node after a ring change, and their key and value
    /// bytes (`peer_connection`: an unfenced `rc_set`; `/metrics` only).
    handoff_items_received,
    /// Key and value bytes of the items handed to this node (see `handoff_items_received`).
    handoff_bytes_received,
);

/// Node-wide statistics.
#[derive(Debug, Default)]
pub struct Stats {
    /// The request counters, summed over connections.
    pub totals: Totals,
    /// Connections open now.
    pub curr_connections: AtomicU64,
    /// Connections accepted since start.
    pub total_connections: AtomicU64,
}

impl Stats {
    /// `stats reset`: zeroes the counters (not the connection gauges).
    pub fn reset(&self) {
        self.totals.reset();
        self.total_connections.store(0, Relaxed);
    }
}
