//! [`ClientMetrics`]: what a [`Client`](crate::Client) inside an application has done,
//! in a form the application can export to Prometheus (or anything else) next to its
//! own metrics: the counters of [`ClientStats`] and the client's view of the cluster.
//!
//! The crate depends on no metrics library. [`ClientMetrics::samples`] lists every
//! value with a Prometheus name (`ringcache_client_*`, counters ending in `_total`), a
//! help text and a kind, to feed whatever registry the application uses;
//! [`ClientMetrics::write_prometheus`] writes them in the Prometheus text format 0.0.4
//! for an application that serves its own `/metrics` page as text.

use std::fmt::Write;

use crate::client::ClientStats;

/// A snapshot of a client's counters and its view of the cluster; see
/// [`Client::metrics`](crate::Client::metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientMetrics {
    /// What the client did since it was built.
    pub stats: ClientStats,
    /// The topology version it places keys with (0 for a fixed server list). A hash:
    /// compare it for equality only (it is not among the [`samples`](Self::samples),
    /// as a float sample would round it).
    pub topology_version: u64,
    /// Nodes in its view.
    pub nodes: usize,
    /// Of those, how many it has marked down and is probing.
    pub nodes_down: usize,
}

/// Whether a [`Sample`] only goes up or may go down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (from 0 when the client is built).
    Counter,
    /// A current value.
    Gauge,
}

/// One value of [`ClientMetrics`], named for Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// `ringcache_client_<what>`, with `_total` for counters.
    pub name: &'static str,
    /// One sentence: what it counts.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// The value.
    pub value: u64,
}

impl ClientMetrics {
    /// Every value, counters first, in a fixed order.
    pub fn samples(&self) -> Vec<Sample> {
        let s = &self.stats;
        let counter = |name, help, value| Sample {
            name,
            help,
            kind: MetricKind::Counter,
            value,
        };
        let gauge = |name, help, value: usize| Sample {
            name,
            help,
            kind: MetricKind::Gauge,
            value: value as u64,
        };
        vec![
            counter("ringcache_client_hits_total", "Keys read and found.", s.hits),
            counter(
                "ringcache_client_misses_total",
                "Keys read and not found, unreachable ones included.",
                s.misses,
            ),
            counter(
                "ringcache_client_unreachable_total",
                "Keys read as misses because no owner could be reached.",
                s.unreachable,
            ),
            counter(
                "ringcache_client_failovers_total",
                "Requests sent to an owner after the primary because the primary was down or failed.",
                s.failovers,
            ),
            counter(
                "ringcache_client_marked_down_total",
                "Times a node was marked down.",
                s.marked_down,
            ),
            counter(
                "ringcache_client_topology_changes_total",
                "New topology versions installed.",
                s.topology_changes,
            ),
            counter(
                "ringcache_client_origin_loads_total",
                "Calls into a read-through origin.",
                s.origin_loads,
            ),
            counter(
                "ringcache_client_coalesced_total",
                "Read-through calls that shared another caller's load in this process.",
                s.coalesced,
            ),
            counter(
                "ringcache_client_origin_errors_total",
                "Origin loads that failed.",
                s.origin_errors,
            ),
            counter(
                "ringcache_client_lease_waits_total",
                "Read-through calls that waited for another process's load.",
                s.lease_waits,
            ),
            counter(
                "ringcache_client_stale_served_total",
                "Stale values returned while a refresh ran.",
                s.stale_served,
            ),
            counter(
                "ringcache_client_writebacks_total",
                "Loaded values written back to the cache.",
                s.writebacks,
            ),
            counter(
                "ringcache_client_writebacks_refused_total",
                "Write-backs refused because a newer write or a delete came first.",
                s.writebacks_refused,
            ),
            counter(
                "ringcache_client_ring_changing_retries_total",
                "Requests sent again after a node answered that its ring was changing.",
                s.ring_changing_retries,
            ),
            gauge(
                "ringcache_client_nodes",
                "Nodes in the client's view of the cluster.",
                self.nodes,
            ),
            gauge(
                "ringcache_client_nodes_down",
                "Nodes the client has marked down and is probing.",
                self.nodes_down,
            ),
        ]
    }

    /// Appends every sample to `out` in the Prometheus text format 0.0.4 (`# HELP`,
    /// `# TYPE`, then the sample), each name followed by `labels` when given (for
    /// example `app="checkout"`, already in Prometheus label syntax, without braces).
    ///
    /// ```
    /// let m = ringcache_client::ClientMetrics::default();
    /// let mut page = String::new();
    /// m.write_prometheus(&mut page, Some("app=\"checkout\""));
    /// assert!(page.contains("ringcache_client_hits_total{app=\"checkout\"} 0\n"));
    /// ```
    pub fn write_prometheus(&self, out: &mut String, labels: Option<&str>) {
        for s in self.samples() {
            let kind = match s.kind {
                MetricKind::Counter => "counter",
                MetricKind::Gauge => "gauge",
            };
            // Writing into a String cannot fail.
            let _ = writeln!(out, "# HELP {} {}", s.name, s.help);
            let _ = writeln!(out, "# TYPE {} {kind}", s.name);
            let _ = match labels {
                Some(l) => writeln!(out, "{}{{{l}}} {}", s.name, s.value),
                None => writeln!(out, "{} {}", s.name, s.value),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_named_and_written() {
        let m = ClientMetrics {
            stats: ClientStats {
                hits: 3,
                misses: 2,
                writebacks_refused: 1,
                ..ClientStats::default()
            },
            topology_version: 99,
            nodes: 3,
            nodes_down: 1,
        };
        let samples = m.samples();
        assert_eq!(samples.len(), 16);
        for s in &samples {
            assert!(s.name.starts_with("ringcache_client_"), "{}", s.name);
            assert_eq!(s.name.ends_with("_total"), s.kind == MetricKind::Counter, "{}", s.name);
        }
        let mut page = String::new();
        m.write_prometheus(&mut page, None);
        for line in [
            "# TYPE ringcache_client_hits_total counter",
            "ringcache_client_hits_total 3",
            "ringcache_client_misses_total 2",
            "ringcache_client_writebacks_refused_total 1",
            "# TYPE ringcache_client_nodes gauge",
            "ringcache_client_nodes 3",
            "ringcache_client_nodes_down 1",
        ] {
            assert!(page.lines().any(|l| l == line), "{line} missing from\n{page}");
        }
        assert_eq!(page.lines().count(), 16 * 3);
    }
}
