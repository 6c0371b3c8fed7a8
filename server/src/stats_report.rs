//! The text of `stats`, `stats settings`, `stats items`, `stats slabs`, `stats sizes`
//! and `stats conns`, with memcached's names, order and meanings so that dashboards
//! and exporters built for memcached read it unchanged.
//!
//! prometheus/memcached_exporter reads `stats`, `stats slabs`, `stats items` and
//! `stats settings` on every scrape and reports `memcached_up 0` when a field it
//! parses is malformed or `cmd_set`/`cas_*` are missing; it skips other missing
//! fields, and with them their series. So every field it reads is here, in
//! memcached's form (`rusage_*` as `seconds.microseconds`, booleans as `yes`/`no`),
//! each computed from what ringcache does, or memcached's value for a mechanism
//! ringcache does not have (said at each). `tests/tests/exporter_stats.rs` applies the
//! exporter's parsing rules to live nodes and to memcached 1.6.18.

use std::sync::atomic::Ordering::Relaxed;

use bytes::{BufMut, BytesMut};
use ringcache_protocol::text::response::{write_stat, END};

use crate::node::Node;

/// Appends the reply to `stats <group>`.
pub fn write(node: &Node, group: &[u8], now: u32, out: &mut BytesMut) {
    match group {
        b"" => general(node, now, out),
        b"settings" => settings(node, out),
        b"items" => items(out),
        b"slabs" => slabs(node, out),
        b"sizes" => {
            write_stat(out, "sizes_status", "disabled");
            out.put_slice(END);
        }
        b"conns" => out.put_slice(END),
        // ringcache has no slab classes: every class is empty, as on a memcached that
        // never allocated one (the parser has checked the arguments).
        g if g.starts_with(b"cachedump ") => out.put_slice(END),
        b"reset" => {
            node.stats.reset();
            out.put_slice(b"RESET\r\n");
        }
        _ => out.put_slice(b"ERROR\r\n"),
    }
}

fn general(node: &Node, now: u32, out: &mut BytesMut) {
    let s = node.stats.totals.snapshot();
    let st = node.store.stats();
    let (user, system) = rusage();
    let uptime = node.started.elapsed().as_secs();
    write_stat(out, "pid", std::process::id());
    write_stat(out, "uptime", uptime);
    write_stat(out, "time", now);
    write_stat(out, "version", crate::VERSION);
    write_stat(out, "ringcache_version", crate::RINGCACHE_VERSION);
    write_stat(out, "pointer_size", usize::BITS);
    write_stat(out, "rusage_user", format_args!("{}.{:06}", user.0, user.1));
    write_stat(out, "rusage_system", format_args!("{}.{:06}", system.0, system.1));
    write_stat(out, "max_connections", node.settings.max_conns);
    write_stat(out, "curr_connections", node.stats.curr_connections.load(Relaxed));
    write_stat(out, "total_connections", node.stats.total_connections.load(Relaxed));
    write_stat(out, "rejected_connections", s.rejected_connections);
    write_stat(out, "connection_structures", node.stats.curr_connections.load(Relaxed));
    write_stat(out, "reserved_fds", 0);
    write_stat(out, "cmd_get", s.cmd_get);
    write_stat(out, "cmd_set", s.cmd_set);
    write_stat(out, "cmd_flush", s.cmd_flush);
    write_stat(out, "cmd_touch", s.cmd_touch);
    write_stat(out, "cmd_meta", s.cmd_meta);
    write_stat(out, "get_hits", s.get_hits);
    write_stat(out, "get_misses", s.get_misses);
    write_stat(out, "get_expired", s.get_expired);
    write_stat(out, "get_flushed", s.get_flushed);
    write_stat(out, "delete_misses", s.delete_misses);
    write_stat(out, "delete_hits", s.delete_hits);
    write_stat(out, "incr_misses", s.incr_misses);
    write_stat(out, "incr_hits", s.incr_hits);
    write_stat(out, "decr_misses", s.decr_misses);
    write_stat(out, "decr_hits", s.decr_hits);
    write_stat(out, "cas_misses", s.cas_misses);
    write_stat(out, "cas_hits", s.cas_hits);
    write_stat(out, "cas_badval", s.cas_badval);
    write_stat(out, "touch_hits", s.touch_hits);
    write_stat(out, "touch_misses", s.touch_misses);
    write_stat(out, "store_too_large", s.store_too_large);
    write_stat(out, "store_no_memory", s.store_no_memory);
    write_stat(out, "auth_cmds", s.auth_cmds);
    write_stat(out, "auth_errors", s.auth_errors);
    write_stat(out, "bytes_read", s.bytes_read);
    write_stat(out, "bytes_written", s.bytes_written);
    write_stat(out, "limit_maxbytes", st.limit_maxbytes);
    write_stat(out, "accepting_conns", 1);
    write_stat(out, "listen_disabled_num", 0);
    write_stat(out, "threads", node.settings.threads);
    write_stat(out, "conn_yields", s.conn_yields);
    // ringcache has no LRU crawler: its expiry sweep's reclaims count in `reclaimed`.
    write_stat(out, "lru_crawler_starts", 0);
    write_stat(out, "bytes", st.bytes);
    write_stat(out, "curr_items", st.curr_items);
    write_stat(out, "total_items", st.total_items);
    write_stat(out, "expired_unfetched", st.expired_unfetched);
    write_stat(out, "evicted_unfetched", st.evicted_unfetched);
    write_stat(out, "evicted_active", 0);
    write_stat(out, "evictions", st.evictions);
    write_stat(out, "reclaimed", st.reclaimed);
    // No LRU crawler (above) and no segmented HOT/WARM/COLD LRU: nothing is crawled or
    // moved between LRUs. (Eviction copying an item forward is no such move.)
    write_stat(out, "crawler_reclaimed", 0);
    write_stat(out, "crawler_items_checked", 0);
    write_stat(out, "moves_to_cold", 0);
    write_stat(out, "moves_to_warm", 0);
    write_stat(out, "moves_within_lru", 0);
    write_stat(out, "direct_reclaims", st.direct_reclaims);
    if let Some(cluster) = &node.cluster {
        let view = cluster.ring();
        let cs = &cluster.stats;
        let gs = &cluster.membership.stats;
        write_stat(out, "cluster_members", view.ring.len());
        write_stat(out, "cluster_ring_version", view.version);
        write_stat(out, "cluster_ring_share", format_args!("{:.4}", view.my_share()));
        write_stat(out, "cluster_replicas", view.ring.replicas());
        write_stat(out, "cluster_forwarded", cs.forwarded.load(Relaxed));
        write_stat(out, "cluster_forward_errors", cs.forward_errors.load(Relaxed));
        write_stat(out, "cluster_forward_timeouts", cs.forward_timeouts.load(Relaxed));
        write_stat(out, "cluster_read_failovers", cs.read_failovers.load(Relaxed));
        write_stat(out, "cluster_read_hedges", cs.read_hedges.load(Relaxed));
        write_stat(out, "cluster_failover_refusals", cs.failover_refusals.load(Relaxed));
        write_stat(out, "cluster_replicated", cs.replicated.load(Relaxed));
        write_stat(out, "cluster_replication_errors", cs.replication_errors.load(Relaxed));
        write_stat(out, "cluster_purged_items", cs.purged_items.load(Relaxed));
        write_stat(out, "cluster_handed_off", cs.handed_off.load(Relaxed));
        write_stat(out, "cluster_handoff_version", cluster.handoff_version());
        write_stat(out, "cluster_repaired", cs.repaired.load(Relaxed));
        write_stat(out, "cluster_repair_round_trips", cs.repair_round_trips.load(Relaxed));
        write_stat(out, "cluster_resets", cs.resets.load(Relaxed));
        let quorum = gs.quorum();
        write_stat(out, "cluster_quorum_up", quorum.up);
        write_stat(out, "cluster_quorum_known", quorum.known);
        write_stat(out, "cluster_ring_mismatches", cs.ring_mismatches.load(Relaxed));
        write_stat(out, "cluster_fence_retries", cs.fence_retries.load(Relaxed));
        write_stat(out, "cluster_fence_refusals", cs.fence_refusals.load(Relaxed));
        write_stat(out, "cluster_verdict_waits", cs.verdict_waits.load(Relaxed));
        write_stat(out, "gossip_packets_in", gs.packets_in.load(Relaxed));
        write_stat(out, "gossip_packets_out", gs.packets_out.load(Relaxed));
        write_stat(out, "gossip_packets_bad", gs.packets_bad.load(Relaxed));
        write_stat(out, "gossip_auth_failures", gs.auth_failures.load(Relaxed));
        write_stat(out, "gossip_rejoins", gs.rejoins.load(Relaxed));
        write_stat(out, "gossip_members_down", gs.members_down.load(Relaxed));
        write_stat(out, "gossip_suspicions", gs.suspicions.load(Relaxed));
        write_stat(out, "gossip_confirmations", gs.confirmations.load(Relaxed));
        write_stat(out, "gossip_awareness", gs.awareness.load(Relaxed));
        write_stat(out, "gossip_verdicts_held", gs.verdicts_held.load(Relaxed));
    }
    out.put_slice(END);
}

fn settings(node: &Node, out: &mut BytesMut) {
    let s = &node.settings;
    write_stat(out, "maxbytes", node.store.memory_limit());
    write_stat(out, "maxconns", s.max_conns);
    write_stat(out, "tcpport", s.port);
    write_stat(out, "udpport", 0);
    write_stat(out, "inter", &s.listen);
    write_stat(out, "verbosity", s.verbosity);
    write_stat(out, "oldest", 0);
    write_stat(out, "evictions", "on");
    write_stat(out, "domain_socket", "NULL");
    write_stat(out, "num_threads", s.threads);
    write_stat(out, "cas_enabled", "yes");
    write_stat(out, "binding_protocol", "ascii");
    write_stat(out, "item_size_max", s.max_item_size);
    // A connection past `-c` is refused at once (`rejected_connections`), as memcached
    // does with maxconns_fast.
    write_stat(out, "maxconns_fast", "yes");
    // No LRU crawler, no LRU maintainer thread, no segmented LRU (see `general`); with
    // `lru_crawler no` the exporter does not look for the crawler's tuning settings.
    write_stat(out, "lru_crawler", "no");
    write_stat(out, "flush_enabled", "yes");
    write_stat(out, "hash_algorithm", "xxh3");
    write_stat(out, "lru_maintainer_thread", "no");
    write_stat(out, "lru_segmented", "no");
    write_stat(out, "eviction_policy", crate::storage::EVICTION_POLICY);
    write_stat(out, "shards", node.store.shard_count());
    out.put_slice(END);
}

/// ringcache has no slab classes (items live in segments, not size classes), so it lists
/// none, as a memcached that has allocated no class does. A class's lines are not
/// optional for the tools that walk them: memcached_exporter turns a `stats slabs`
/// class without `cmd_set`, `cas_hits` and `cas_badval` into `memcached_up 0`. The
/// totals are in `stats`.
fn items(out: &mut BytesMut) {
    out.put_slice(END);
}

fn slabs(node: &Node, out: &mut BytesMut) {
    write_stat(out, "active_slabs", 0);
    // Bytes of segments allocated, in use or pooled: what memcached's slab pages are.
    write_stat(out, "total_malloced", node.store.stats().allocated);
    out.put_slice(END);
}

/// User and system CPU time of this process as (seconds, microseconds), from
/// `getrusage` as memcached reads it.
pub(crate) fn rusage() -> ((u64, u64), (u64, u64)) {
    let Some(ru) = crate::sys::rusage_self() else {
        return ((0, 0), (0, 0));
    };
    let tv = |t: libc::timeval| {
        (
            u64::try_from(t.tv_sec).unwrap_or(0),
            u64::try_from(t.tv_usec).unwrap_or(0).min(999_999),
        )
    };
    (tv(ru.ru_utime), tv(ru.ru_stime))
}
