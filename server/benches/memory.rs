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
        "{:<8} {:>13} {:>9} {:>14} {:>14} {:>15}",
        "policy", "charged/item", "rss/item", "items/MiB(-m)", "vs memcached", "all-in vs mc"
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
        let per_mib = (1 << 20) as f64 / charged;
        let all_in = real.map_or("n/a".to_string(), |r| format!("{:.2}x", 192.0 / r));
        println!(
            "{:<8} {charged:>13.1} {:>9} {per_mib:>14.0} {:>13.2}x {all_in:>15}",
            policy.name(),
            real.map_or("n/a".to_string(), |r| format!("{r:.1}")),
            per_mib / ((1 << 20) as f64 / 192.0)
        );
        drop(store);
    }
}
