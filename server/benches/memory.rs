//! Accounted versus real memory per item.
//!
//! Fills a store (budget large enough that nothing is evicted) with small items and
//! compares the store's own `bytes` per item with the process's resident-set growth
//! per item (Linux `/proc/self/statm`), to check that the per-item formula in
//! `storage`'s module doc is honest. Also prints how many items one MiB of budget
//! holds, next to memcached's figure for the same item (its 192-byte slab chunk for
//! a 14-byte key and a 100-byte value): counting only the items' bytes (what `-m`
//! bounds, as memcached's `-m` leaves out its hash table) and counting everything the
//! store made resident (items, index, segment tails), the honest all-in figure.
//!
//! `-m` charges the index and S3-FIFO's ghost too (`storage`'s module doc), so the
//! bench reports items per MiB both ways: items only ("items/MiB") and with the index
//! charged ("+index"), and then fills a 64 MiB store until it evicts and counts what
//! it holds: the figure `-m 64` gives, everything charged.
//!
//! Run: `cargo bench -p ringcache-server --bench memory`.

use bytes::Bytes;
use ringcache_server::storage::{Item, PolicyKind, Store, StoreConfig};

const ITEMS: usize = 1_000_000;
const KEY_LEN: usize = 14;
const VALUE_LEN: usize = 100;
const NOW: u32 = 1_700_000_000;

/// Resident set size in bytes, if the platform says.
fn rss() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    println!("{ITEMS} items, {KEY_LEN}-byte keys, {VALUE_LEN}-byte values");
    println!(
        "{:<8} {:>10} {:>10} {:>9} {:>10} {:>8} {:>10} {:>8} {:>12}",
        "policy", "items/item", "index/item", "rss/item", "items/MiB", "vs mc", "+index", "vs mc", "rss vs mc"
    );
    for policy in PolicyKind::ALL {
        let store = Store::with_policy(
            StoreConfig {
                memory_limit: 4 << 30,
                shards: 16,
                max_item_size: 1 << 20,
            },
            policy,
        );
        let value = Bytes::from(vec![b'v'; VALUE_LEN]);
        let before = rss();
        for i in 0..ITEMS {
            let key = format!("{i:0width$}", width = KEY_LEN);
            let item = Item::new(value.clone(), 0, 0, store.next_cas(), NOW);
            if store.with(key.as_bytes(), NOW, |slot| slot.insert(item)).is_err() {
                println!("insert {i} refused");
                return;
            }
        }
        let after = rss();
        let st = store.stats();
        let charged = st.bytes as f64 / st.curr_items as f64;
        let real = match (before, after) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / ITEMS as f64),
            _ => None,
        };
        let index = st.index_bytes as f64 / st.curr_items as f64;
        let per_mib = (1 << 20) as f64 / charged;
        let per_mib_all = (1 << 20) as f64 / (charged + index);
        let mc = (1 << 20) as f64 / 192.0;
        let all_in = real.map_or("n/a".to_string(), |r| format!("{:.2}x", 192.0 / r));
        println!(
            "{:<8} {charged:>10.1} {index:>10.1} {:>9} {per_mib:>10.0} {:>7.2}x {per_mib_all:>10.0} {:>7.2}x {all_in:>12}",
            policy.name(),
            real.map_or("n/a".to_string(), |r| format!("{r:.1}")),
            per_mib / mc,
            per_mib_all / mc,
        );
        drop(store);
    }
    // What `-m 64` holds, everything charged: fill until evictions start.
    for policy in PolicyKind::ALL {
        let limit = 64usize << 20;
        let store = Store::with_policy(
            StoreConfig {
                memory_limit: limit,
                shards: 16,
                max_item_size: 1 << 20,
            },
            policy,
        );
        let value = Bytes::from(vec![b'v'; VALUE_LEN]);
        let mut held = 0;
        for i in 0..ITEMS {
            let key = format!("{i:0width$}", width = KEY_LEN);
            let item = Item::new(value.clone(), 0, 0, store.next_cas(), NOW);
            let _ = store.with(key.as_bytes(), NOW, |slot| slot.insert(item));
            if i % 1000 == 999 {
                let st = store.stats();
                held = st.curr_items;
                if st.evictions > 0 {
                    break;
                }
            }
        }
        let st = store.stats();
        let per_mib = held as f64 / 64.0;
        println!(
            "{:<8} -m 64 filled until it evicts: {held} items, {per_mib:.0} items per MiB of -m ({:.2}x memcached's {:.0}); index + ghost {:.1} bytes per item",
            policy.name(),
            per_mib / ((1 << 20) as f64 / 192.0),
            (1 << 20) as f64 / 192.0,
            st.index_bytes as f64 / st.curr_items as f64
        );
    }
}
