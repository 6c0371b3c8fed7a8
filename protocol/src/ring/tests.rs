//! Ring tests. Golden values were computed independently of this code: with the C
//! `xxhsum -H3` (xxHash 0.8.1) for hashes, and a separate script that hashed all 480
//! points of the 3-node ring with it and walked the sorted list for owners and shares.

use super::*;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn ring(list: &[&str], vnodes: u32, replicas: u32) -> Ring<String> {
    match Ring::new(names(list), RingConfig { vnodes, replicas }, 1) {
        Ok(r) => r,
        Err(e) => panic!("building {list:?}: {e}"),
    }
}

fn numbered(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("node-{i}")).collect()
}

fn ring_of(nodes: Vec<String>, replicas: u32) -> Ring<String> {
    Ring::new(
        nodes,
        RingConfig {
            vnodes: DEFAULT_VNODES,
            replicas,
        },
        1,
    )
    .expect("valid ring")
}

fn owner_names<'a>(r: &'a Ring<String>, key: &[u8]) -> Vec<&'a str> {
    r.owners(key)
        .iter()
        .map(|&i| r.node(i).expect("index from this ring").as_str())
        .collect()
}

/// Calls `f` with keys `key:0` .. `key:{count-1}` through one reused buffer.
fn for_keys(count: usize, mut f: impl FnMut(&[u8])) {
    let mut key = Vec::with_capacity(16);
    let mut digits = itoa::Buffer::new();
    for i in 0..count {
        key.clear();
        key.extend_from_slice(b"key:");
        key.extend_from_slice(digits.format(i).as_bytes());
        f(&key);
    }
}

const KEYS: usize = 100_000;

#[test]
fn hash_name_is_stable() {
    assert_eq!(ring_hash_name(), "xxh3-64");
    assert_eq!(RING_HASH_NAME, "xxh3-64");
}

#[test]
fn golden_key_hash() {
    // The vector from DESIGN.md; confirmed by `printf user:42 | xxhsum -H3`.
    assert_eq!(key_hash(b"user:42"), 0x9fc1_e605_fa71_74aa);
    assert_eq!(key_hash(b""), 0x2d06_8005_38d3_94c2);
    assert_eq!(key_hash(b"a"), 0xe6c6_32b6_1e96_4e1f);
    assert_eq!(key_hash(b"ringcache"), 0xa0b7_595e_12e3_e1d1);
}

#[test]
fn golden_point_layout() {
    // point i of name = xxh3_64(name || "-" || decimal(i))
    assert_eq!(vnode_point(b"node-1", 0), 0xf08b_a193_f905_97dd);
    assert_eq!(vnode_point(b"node-1", 17), 0x13d8_fc7f_8c6e_6a3c);
    assert_eq!(vnode_point(b"node-2", 159), 0x56a4_4c4a_da5a_38a7);
    assert_eq!(vnode_point(b"node-1", 17), key_hash(b"node-1-17"));
    assert_eq!(vnode_point(b"n", 1_234_567), key_hash(b"n-1234567"));
    assert_eq!(vnode_point(b"n", u32::MAX), key_hash(b"n-4294967295"));
}

#[test]
fn golden_ring_points() {
    // The three lowest points of the fixed 3-node ring, with their owners.
    let r = ring(&["node-1", "node-2", "node-3"], 160, 1);
    assert_eq!(r.points.len(), 480);
    assert_eq!(
        &r.points[..3],
        &[0x0055_e251_bfcb_71ef, 0x0095_578c_74ff_15ae, 0x00c5_5f15_d4fe_959a]
    );
    assert_eq!(&r.point_nodes[..3], &[0, 0, 0]);
    assert_eq!(r.points[0], vnode_point(b"node-1", 68));
    assert_eq!(r.points[1], vnode_point(b"node-1", 32));
    assert_eq!(r.points[2], vnode_point(b"node-1", 13));
}

#[test]
fn golden_owners_on_fixed_ring() {
    let r = ring(&["node-1", "node-2", "node-3"], 160, 3);
    let cases: [(&[u8], [&str; 3]); 6] = [
        (b"user:42", ["node-2", "node-3", "node-1"]),
        (b"a", ["node-3", "node-2", "node-1"]),
        (b"foo", ["node-1", "node-2", "node-3"]),
        (b"session:7", ["node-1", "node-3", "node-2"]),
        (b"", ["node-2", "node-1", "node-3"]),
        (b"ringcache", ["node-2", "node-3", "node-1"]),
    ];
    for (key, want) in cases {
        assert_eq!(owner_names(&r, key), want, "key {:?}", String::from_utf8_lossy(key));
    }
    // R = 1 and R = 2 are prefixes of the same walk.
    let r1 = ring(&["node-1", "node-2", "node-3"], 160, 1);
    let r2 = ring(&["node-1", "node-2", "node-3"], 160, 2);
    assert_eq!(owner_names(&r1, b"user:42"), ["node-2"]);
    assert_eq!(owner_names(&r2, b"user:42"), ["node-2", "node-3"]);
    assert_eq!(r1.primary(b"session:7"), r1.index_of(b"node-1"));
}

#[test]
fn golden_shares_on_fixed_ring() {
    let r = ring(&["node-1", "node-2", "node-3"], 160, 1);
    let want = [
        ("node-1", 0.323_869_737_401_410_9),
        ("node-2", 0.354_881_020_372_397_55),
        ("node-3", 0.321_249_242_226_191_56),
    ];
    for (name, share) in want {
        let idx = r.index_of(name.as_bytes()).expect("node on ring");
        assert!(
            (r.share(idx) - share).abs() < 1e-12,
            "{name}: {} vs {share}",
            r.share(idx)
        );
    }
    // The spans are exact integers summing to the whole circle.
    assert_eq!(r.primary_span.iter().sum::<u128>(), 1u128 << 64);
}

#[test]
fn owners_are_distinct_and_start_with_primary() {
    let r = ring_of(numbered(5), 3);
    for_keys(10_000, |key| {
        let owners = r.owners(key);
        assert_eq!(owners.len(), 3);
        assert_eq!(owners.primary(), r.primary(key));
        assert_ne!(owners[0], owners[1]);
        assert_ne!(owners[0], owners[2]);
        assert_ne!(owners[1], owners[2]);
        let mut out = [NodeIdx::default(); 8];
        let n = r.owners_into(key, &mut out);
        assert_eq!(&out[..n], owners.as_slice());
        assert!(owners.iter().all(|&o| r.is_owner(key, o)));
    });
}

#[test]
fn replicas_above_node_count_yield_every_node_once() {
    let r = ring(&["b", "a", "c"], 160, 5);
    for_keys(1_000, |key| {
        let mut owners: Vec<NodeIdx> = r.owners(key).to_vec();
        assert_eq!(owners.len(), 3);
        owners.sort();
        assert_eq!(owners, [NodeIdx(0), NodeIdx(1), NodeIdx(2)]);
    });
    // A single node owns everything, once.
    let one = ring(&["solo"], 1, 8);
    assert_eq!(owner_names(&one, b"x"), ["solo"]);
    assert_eq!(one.share(NodeIdx(0)), 1.0);
}

#[test]
fn out_slice_shorter_than_replicas_is_filled_not_overrun() {
    let r = ring(&["node-1", "node-2", "node-3"], 160, 3);
    let mut two = [NodeIdx::default(); 2];
    assert_eq!(r.owners_into(b"user:42", &mut two), 2);
    assert_eq!(&two, &r.owners(b"user:42")[..2]);
    assert_eq!(r.owners_into(b"user:42", &mut []), 0);
}

#[test]
fn empty_ring_has_no_owners() {
    let r: Ring<String> = ring(&[], 160, 3);
    assert!(r.is_empty());
    assert_eq!(r.len(), 0);
    assert!(r.owners(b"user:42").is_empty());
    assert_eq!(r.owners(b"user:42").primary(), None);
    assert_eq!(r.primary(b"user:42"), None);
    let mut out = [NodeIdx::default(); 3];
    assert_eq!(r.owners_into(b"user:42", &mut out), 0);
    assert_eq!(r.node(NodeIdx(0)), None);
    assert_eq!(r.share(NodeIdx(0)), 0.0);
    assert!(!r.is_owner(b"k", NodeIdx(0)));
    assert_eq!(r.index_of(b"node-1"), None);
    let d: Ring<String> = Ring::default();
    assert!(d.owners(b"k").is_empty());
    assert_eq!(
        (d.vnodes(), d.replicas(), d.epoch()),
        (DEFAULT_VNODES, DEFAULT_REPLICAS, 0)
    );
}

#[test]
fn construction_ignores_input_order() {
    let base = ring(&["node-1", "node-2", "node-3"], 160, 3);
    let orders: [[&str; 3]; 5] = [
        ["node-1", "node-3", "node-2"],
        ["node-2", "node-1", "node-3"],
        ["node-2", "node-3", "node-1"],
        ["node-3", "node-1", "node-2"],
        ["node-3", "node-2", "node-1"],
    ];
    for order in orders {
        let r = ring(&order, 160, 3);
        assert_eq!(r.nodes(), base.nodes());
        assert_eq!(r.points, base.points);
        assert_eq!(r.point_nodes, base.point_nodes);
        assert_eq!(r.primary_span, base.primary_span);
    }
    let mut ten = numbered(10);
    let a = ring_of(ten.clone(), 2);
    ten.reverse();
    ten.rotate_left(3);
    let b = ring_of(ten, 2);
    assert_eq!(a.points, b.points);
    assert_eq!(a.point_nodes, b.point_nodes);
    for_keys(1_000, |key| assert_eq!(a.owners(key), b.owners(key)));
}

#[test]
fn nodes_are_indexed_by_name_and_accessors_report_config() {
    let r = Ring::new(["zeta", "alpha", "mid"], RingConfig { vnodes: 7, replicas: 2 }, 42).expect("valid ring");
    assert_eq!(r.nodes(), &["alpha", "mid", "zeta"]);
    assert_eq!(r.index_of(b"mid"), Some(NodeIdx(1)));
    assert_eq!(r.index_of(b"nope"), None);
    assert_eq!(r.node(NodeIdx(2)), Some(&"zeta"));
    assert_eq!((r.vnodes(), r.replicas(), r.epoch(), r.len()), (7, 2, 42, 3));
    assert_eq!(r.config(), RingConfig { vnodes: 7, replicas: 2 });
    assert_eq!(r.points.len(), 21);
    assert!(r.points.windows(2).all(|w| w[0] <= w[1]));
    let total: f64 = (0..3).map(|i| r.share(NodeIdx(i))).sum();
    assert!((total - 1.0).abs() < 1e-9);
    assert_eq!(
        RingConfig::default(),
        RingConfig {
            vnodes: 160,
            replicas: 1
        }
    );
}

#[test]
fn bad_input_is_rejected_not_built() {
    let cfg = |vnodes, replicas| RingConfig { vnodes, replicas };
    assert_eq!(Ring::new(["a"], cfg(0, 1), 0).err(), Some(RingError::Vnodes(0)));
    assert_eq!(
        Ring::new(["a"], cfg(MAX_VNODES + 1, 1), 0).err(),
        Some(RingError::Vnodes(MAX_VNODES + 1))
    );
    assert_eq!(Ring::new(["a"], cfg(1, 0), 0).err(), Some(RingError::Replicas(0)));
    assert_eq!(Ring::new(["a"], cfg(1, 9), 0).err(), Some(RingError::Replicas(9)));
    assert_eq!(
        Ring::new(["a", "b", "a"], cfg(1, 1), 0).err(),
        Some(RingError::DuplicateName("a".into()))
    );
    assert!(Ring::new(["a"], cfg(MAX_VNODES, MAX_REPLICAS as u32), 0).is_ok());
}

/// Primary counts per node over `KEYS` keys.
fn primary_counts(r: &Ring<String>) -> Vec<usize> {
    let mut counts = vec![0usize; r.len()];
    for_keys(KEYS, |key| {
        if let Some(p) = r.primary(key) {
            counts[p.get()] += 1;
        }
    });
    counts
}

fn check_spread(n: usize) {
    let r = ring_of(numbered(n), 1);
    let counts = primary_counts(&r);
    let ideal = 1.0 / n as f64;
    let shares: Vec<f64> = counts.iter().map(|&c| c as f64 / KEYS as f64).collect();
    let min = shares.iter().copied().fold(f64::INFINITY, f64::min);
    let max = shares.iter().copied().fold(0.0, f64::max);
    let arc_min = (0..n).map(|i| r.share(NodeIdx(i as u32))).fold(f64::INFINITY, f64::min);
    let arc_max = (0..n).map(|i| r.share(NodeIdx(i as u32))).fold(0.0, f64::max);
    println!(
        "spread over {n} nodes, {KEYS} keys, 160 vnodes: key share min {min:.4} ({:+.1}%) max {max:.4} ({:+.1}%); \
         arc share min {arc_min:.4} max {arc_max:.4}; ideal {ideal:.4}",
        (min / ideal - 1.0) * 100.0,
        (max / ideal - 1.0) * 100.0,
    );
    for (i, &s) in shares.iter().enumerate() {
        assert!(
            (s - ideal).abs() <= 0.25 * ideal,
            "node {i} holds {s:.4} of keys, ideal {ideal:.4}"
        );
        // The arc a node is primary for predicts its key share.
        assert!(
            (s - r.share(NodeIdx(i as u32))).abs() < 0.01,
            "node {i}: keys {s:.4} vs arc {:.4}",
            r.share(NodeIdx(i as u32))
        );
    }
}

#[test]
fn load_spreads_over_3_nodes() {
    check_spread(3);
}

#[test]
fn load_spreads_over_10_nodes() {
    check_spread(10);
}

/// Adds node `n+1` to an `n`-node ring and checks who moves where.
fn check_join(n: usize) {
    let before = ring_of(numbered(n), 1);
    let after = ring_of(numbered(n + 1), 1);
    let new_name = format!("node-{}", n + 1);
    let mut moved = 0usize;
    for_keys(KEYS, |key| {
        let old = before
            .primary(key)
            .and_then(|i| before.node(i))
            .expect("non-empty ring");
        let new = after.primary(key).and_then(|i| after.node(i)).expect("non-empty ring");
        if old != new {
            assert_eq!(
                new,
                &new_name,
                "key {:?} moved between old nodes {old} -> {new}",
                String::from_utf8_lossy(key)
            );
            moved += 1;
        }
    });
    let fraction = moved as f64 / KEYS as f64;
    let ideal = 1.0 / (n + 1) as f64;
    println!(
        "join {n} -> {}: {fraction:.4} of {KEYS} keys moved (ideal {ideal:.4}, {:+.1}%)",
        n + 1,
        (fraction / ideal - 1.0) * 100.0
    );
    assert!(
        (fraction - ideal).abs() <= 0.25 * ideal,
        "moved {fraction:.4}, ideal {ideal:.4}"
    );
}

#[test]
fn joining_4th_node_moves_about_a_quarter_only_to_it() {
    check_join(3);
}

#[test]
fn joining_11th_node_moves_about_an_eleventh_only_to_it() {
    check_join(10);
}

#[test]
fn replica_sets_change_only_by_the_joining_or_leaving_node() {
    // With R = 3, a join inserts the new node somewhere into each key's owner list and
    // pushes the last owner out; the old owners keep their relative order. A leave is the
    // same change read backwards.
    let before = ring_of(numbered(5), 3);
    let after = ring_of(numbered(6), 3);
    let names_of = |r: &Ring<String>, key: &[u8]| -> Vec<String> {
        r.owners(key).iter().filter_map(|&i| r.node(i).cloned()).collect()
    };
    for_keys(10_000, |key| {
        let old = names_of(&before, key);
        let new = names_of(&after, key);
        let kept: Vec<String> = new.iter().filter(|n| n.as_str() != "node-6").cloned().collect();
        assert_eq!(
            kept[..],
            old[..kept.len()],
            "key {:?}: {old:?} -> {new:?}",
            String::from_utf8_lossy(key)
        );
    });
}

#[test]
fn a_leaving_node_hands_its_keys_out_and_nobody_elses_move() {
    let before = ring_of(numbered(10), 1);
    let after = ring_of(numbered(10).into_iter().filter(|n| n != "node-4").collect(), 1);
    let mut moved = 0usize;
    for_keys(20_000, |key| {
        let old = before
            .primary(key)
            .and_then(|i| before.node(i))
            .expect("non-empty ring");
        let new = after.primary(key).and_then(|i| after.node(i)).expect("non-empty ring");
        if old != new {
            assert_eq!(old, "node-4");
            moved += 1;
        }
    });
    let owned = before.share(before.index_of(b"node-4").expect("on ring"));
    assert!(
        (moved as f64 / 20_000.0 - owned).abs() < 0.02,
        "moved {moved}, node-4 owned {owned:.4}"
    );
}

#[test]
fn a_point_owns_its_own_hash_and_the_walk_wraps() {
    let r = ring(&["node-1", "node-2", "node-3"], 160, 3);
    let node2 = r.index_of(b"node-2").expect("on ring");
    // Key "node-2-i" hashes exactly onto point i of node-2: arcs are (prev, point].
    let mut key = Vec::new();
    for i in 0..160 {
        point_input(&mut key, b"node-2", i);
        assert_eq!(r.primary(&key), Some(node2), "point {i}");
        assert_eq!(r.owners(&key).primary(), Some(node2), "point {i}");
    }
    // Past the last point the walk wraps to the first one.
    let first = NodeIdx(r.point_nodes[0]);
    let last = *r.points.last().expect("points");
    assert!(last < u64::MAX);
    assert_eq!(r.primary_of_hash(last + 1), Some(first));
    assert_eq!(r.primary_of_hash(u64::MAX), Some(first));
    assert_eq!(r.primary_of_hash(0), Some(first));
    let mut out = [NodeIdx::default(); 3];
    assert_eq!(r.owners_of_hash_into(u64::MAX, &mut out), 3);
    assert_eq!(out[0], first);
    // Starting at the last point, the walk wraps and still finds all three nodes.
    assert_eq!(r.owners_of_hash_into(last, &mut out), 3);
    assert_eq!(out[0], NodeIdx(*r.point_nodes.last().expect("points")));
}
