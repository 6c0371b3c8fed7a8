//! Key placement on a consistent-hash ring with virtual nodes.
//!
//! Every ringcache process (cache nodes and smart clients alike) builds a [`Ring`]
//! from the set of live nodes and must arrive at the *same* placement for every key,
//! so everything here is specified down to the byte and pinned by golden tests.
//!
//! # Hash
//! [`ring_hash_name()`] is `"xxh3-64"`: XXH3, 64-bit output, seed 0, default secret,
//! over raw bytes. It is never `std::hash::Hash`, `DefaultHasher` or `RandomState`,
//! whose output may change between Rust versions or processes.
//!
//! - A key's position on the circle is `xxh3_64(key bytes)` ([`key_hash`]).
//!   Golden vector: `xxh3_64(b"user:42") = 0x9fc1e605fa7174aa`.
//! - Virtual node (point) `i` of the node named `name`, for `i` in `0..vnodes`, sits at
//!   `xxh3_64(name bytes || b"-" || decimal(i))` ([`vnode_point`]), where `decimal(i)` is
//!   `i` in ASCII base 10 without sign or leading zeros. Point 17 of `node-1` is
//!   `xxh3_64(b"node-1-17") = 0x13d8fc7f8c6e6a3c`; any XXH3 tool reproduces it
//!   (`printf node-1-17 | xxhsum -H3`). The layout is injective: the digits after the
//!   last `-` are the index, everything before it is the name.
//!
//! # Placement
//! The ring is the list of all points of all nodes, sorted by `(point, node name)`
//! (the name breaks the tie if two nodes ever share a point value). A key with hash `h`
//! belongs to the points at or after `h` going clockwise, wrapping from `2^64 - 1` to `0`:
//! its owners are the first `R` *distinct* nodes met on that walk, in the order met. The
//! first owner is the primary. With fewer than `R` nodes every node is an owner. A ring
//! with zero nodes has no owners for any key.
//!
//! Node indices ([`NodeIdx`]) number the nodes in ascending order of name bytes, so the
//! ring (points, indices, owners) depends only on the *set* of nodes and the
//! configuration, never on the order the nodes were given in.
//!
//! # Costs
//! Construction sorts `nodes × vnodes` points (once per membership change). A lookup
//! hashes the key once, binary-searches the point array and walks clockwise until it
//! has `R` distinct nodes; it allocates nothing and writes into the caller's slice
//! ([`Ring::owners_into`]) or returns a fixed-size [`Owners`] array by value. Points and
//! their node indices are kept in two parallel arrays (not one array of pairs) so the
//! binary search touches 8-byte values only: twice as many per cache line.
//! Memory: 12 bytes per point (about 1.9 KiB per node at 160 vnodes) plus the nodes.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

/// The name of the placement hash, as the topology command reports it.
pub const RING_HASH_NAME: &str = "xxh3-64";

/// Virtual nodes per node unless configured otherwise: enough for every node's share
/// of the circle to land within a few percent of `1/N` on typical cluster sizes.
pub const DEFAULT_VNODES: u32 = 160;

/// Replicas per key unless configured otherwise (1 = no replication).
pub const DEFAULT_REPLICAS: u32 = 1;

/// Upper bound on `vnodes`, so a bad configuration cannot make a ring allocate
/// without bound (at 4096 a 100-node ring is 4.7 MiB of points).
pub const MAX_VNODES: u32 = 4096;

/// Upper bound on `replicas`: the capacity of [`Owners`], which lives on the stack.
pub const MAX_REPLICAS: usize = 8;

/// The stable name of the placement hash: `"xxh3-64"` (see the module docs).
pub fn ring_hash_name() -> &'static str {
    RING_HASH_NAME
}

/// A key's position on the circle: `xxh3_64(key)`, seed 0.
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// The position of virtual node `i` of the node named `name`:
/// `xxh3_64(name || b"-" || decimal(i))`.
pub fn vnode_point(name: &[u8], i: u32) -> u64 {
    let mut buf = Vec::with_capacity(name.len() + 11);
    point_input(&mut buf, name, i);
    xxh3_64(&buf)
}

/// Writes the hash input of point `i` of `name` into `buf` (cleared first).
fn point_input(buf: &mut Vec<u8>, name: &[u8], i: u32) {
    let mut digits = itoa::Buffer::new();
    buf.clear();
    buf.extend_from_slice(name);
    buf.push(b'-');
    buf.extend_from_slice(digits.format(i).as_bytes());
}

/// Something that can sit on the ring: it has a stable name, and its points are
/// derived from that name's bytes. Two nodes of one ring must have different names.
pub trait RingNode {
    /// The name whose bytes the node's points are hashed from (e.g. `b"node-1"`).
    fn ring_name(&self) -> &[u8];
}

impl RingNode for String {
    fn ring_name(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl RingNode for &str {
    fn ring_name(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl RingNode for Box<str> {
    fn ring_name(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl RingNode for Arc<str> {
    fn ring_name(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// The position of a node in [`Ring::nodes`] (ascending name order). Only meaningful
/// for the ring that produced it: a rebuilt ring may number the nodes differently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIdx(u32);

impl NodeIdx {
    /// The index into [`Ring::nodes`].
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

/// How a ring is shaped: points per node and owners per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Virtual nodes (points) per node, `1..=MAX_VNODES`.
    pub vnodes: u32,
    /// Owners per key, `1..=MAX_REPLICAS`.
    pub replicas: u32,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            vnodes: DEFAULT_VNODES,
            replicas: DEFAULT_REPLICAS,
        }
    }
}

/// Why a ring could not be built. Nothing is built in any of these cases; the caller
/// keeps whatever ring it had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// `vnodes` was 0 or above [`MAX_VNODES`].
    #[error("vnodes must be between 1 and {MAX_VNODES}, got {0}")]
    Vnodes(u32),
    /// `replicas` was 0 or above [`MAX_REPLICAS`].
    #[error("replicas must be between 1 and {MAX_REPLICAS}, got {0}")]
    Replicas(u32),
    /// Two nodes had the same name (shown lossily as UTF-8); their points would coincide.
    #[error("two nodes are named {0:?}")]
    DuplicateName(String),
    /// More nodes than a `u32` index can number.
    #[error("too many nodes: {0}")]
    TooManyNodes(usize),
}

/// The owners of one key, first (primary) to last: up to [`MAX_REPLICAS`] distinct
/// node indices in a fixed-size array, so returning it allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Owners {
    idx: [NodeIdx; MAX_REPLICAS],
    /// How many entries of `idx` are owners; the rest are unused.
    len: u8,
}

impl Owners {
    /// The owners as a slice, primary first.
    pub fn as_slice(&self) -> &[NodeIdx] {
        &self.idx[..usize::from(self.len)]
    }

    /// The primary owner, `None` on an empty ring.
    pub fn primary(&self) -> Option<NodeIdx> {
        self.as_slice().first().copied()
    }
}

impl Deref for Owners {
    type Target = [NodeIdx];

    fn deref(&self) -> &[NodeIdx] {
        self.as_slice()
    }
}

impl<'a> IntoIterator for &'a Owners {
    type Item = &'a NodeIdx;
    type IntoIter = std::slice::Iter<'a, NodeIdx>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl fmt::Debug for Owners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// A consistent-hash ring: the placement of keys on a set of named nodes.
///
/// Immutable once built; a membership change builds a new one (with a new epoch), which
/// callers share as an `Arc<Ring<N>>`.
#[derive(Clone)]
pub struct Ring<N> {
    /// The nodes, sorted by name bytes, names unique. `NodeIdx(i)` is `nodes[i]`.
    nodes: Vec<N>,
    /// Every node's points, ascending; ties ordered by node index (= name order).
    points: Vec<u64>,
    /// `point_nodes[j]` is the node index owning `points[j]`. Same length as `points`.
    point_nodes: Vec<u32>,
    /// Per node: how many of the 2^64 hash values it is primary for. Sums to 2^64 over
    /// a non-empty ring, hence `u128` (one node alone covers all 2^64).
    primary_span: Vec<u128>,
    vnodes: u32,
    replicas: u32,
    /// The version of the membership this ring was built from, carried for callers.
    epoch: u64,
}

impl<N> Default for Ring<N> {
    /// An empty ring with the default configuration and epoch 0.
    fn default() -> Self {
        Ring {
            nodes: Vec::new(),
            points: Vec::new(),
            point_nodes: Vec::new(),
            primary_span: Vec::new(),
            vnodes: DEFAULT_VNODES,
            replicas: DEFAULT_REPLICAS,
            epoch: 0,
        }
    }
}

impl<N: RingNode> Ring<N> {
    /// Builds the ring of `nodes`, in any order, with `config`, labelled `epoch`.
    ///
    /// Fails if the configuration is out of range or two nodes share a name.
    pub fn new(nodes: impl IntoIterator<Item = N>, config: RingConfig, epoch: u64) -> Result<Self, RingError> {
        if config.vnodes == 0 || config.vnodes > MAX_VNODES {
            return Err(RingError::Vnodes(config.vnodes));
        }
        if config.replicas == 0 || config.replicas as usize > MAX_REPLICAS {
            return Err(RingError::Replicas(config.replicas));
        }
        let mut nodes: Vec<N> = nodes.into_iter().collect();
        if u32::try_from(nodes.len()).is_err() {
            return Err(RingError::TooManyNodes(nodes.len()));
        }
        nodes.sort_unstable_by(|a, b| a.ring_name().cmp(b.ring_name()));
        if let Some(pair) = nodes.windows(2).find(|w| w[0].ring_name() == w[1].ring_name()) {
            return Err(RingError::DuplicateName(
                String::from_utf8_lossy(pair[0].ring_name()).into_owned(),
            ));
        }

        let mut pairs: Vec<(u64, u32)> = Vec::with_capacity(nodes.len() * config.vnodes as usize);
        let mut buf = Vec::new();
        for (idx, node) in (0u32..).zip(&nodes) {
            for i in 0..config.vnodes {
                point_input(&mut buf, node.ring_name(), i);
                pairs.push((xxh3_64(&buf), idx));
            }
        }
        // Equal pairs are identical, so an unstable sort still yields one order.
        pairs.sort_unstable();
        let points: Vec<u64> = pairs.iter().map(|&(p, _)| p).collect();
        let point_nodes: Vec<u32> = pairs.iter().map(|&(_, n)| n).collect();

        let mut primary_span = vec![0u128; nodes.len()];
        if let (Some(&first), Some(&last)) = (points.first(), points.last()) {
            // Point j is primary for (points[j-1], points[j]]; point 0's arc wraps
            // around from the last point.
            let mut prev = last;
            for (j, (&point, &node)) in points.iter().zip(&point_nodes).enumerate() {
                let arc = if j == 0 {
                    (1u128 << 64) - u128::from(last - first)
                } else {
                    u128::from(point - prev)
                };
                primary_span[node as usize] += arc;
                prev = point;
            }
        }

        Ok(Ring {
            nodes,
            points,
            point_nodes,
            primary_span,
            vnodes: config.vnodes,
            replicas: config.replicas,
            epoch,
        })
    }

    /// The index of the node named `name`, if it is on the ring.
    pub fn index_of(&self, name: &[u8]) -> Option<NodeIdx> {
        let i = self.nodes.binary_search_by(|n| n.ring_name().cmp(name)).ok()?;
        Some(NodeIdx(i as u32))
    }
}

impl<N> Ring<N> {
    /// The nodes in index order (ascending name bytes).
    pub fn nodes(&self) -> &[N] {
        &self.nodes
    }

    /// The node at `idx`, `None` if `idx` is not from this ring.
    pub fn node(&self, idx: NodeIdx) -> Option<&N> {
        self.nodes.get(idx.get())
    }

    /// How many nodes the ring has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the ring has no nodes (and so no key has an owner).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Virtual nodes per node.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// Configured owners per key (a key has fewer when the ring has fewer nodes).
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// The configuration the ring was built with.
    pub fn config(&self) -> RingConfig {
        RingConfig {
            vnodes: self.vnodes,
            replicas: self.replicas,
        }
    }

    /// The membership version this ring was built from.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The fraction of the 2^64 hash circle that `idx` is primary for, in `[0, 1]`;
    /// 0 for an index not from this ring. Over all nodes of a non-empty ring it sums to 1.
    pub fn share(&self, idx: NodeIdx) -> f64 {
        match self.primary_span.get(idx.get()) {
            Some(&span) => span as f64 / 18_446_744_073_709_551_616.0,
            None => 0.0,
        }
    }

    /// The owners of `key`, primary first: `min(replicas, len())` distinct nodes.
    pub fn owners(&self, key: &[u8]) -> Owners {
        let mut owners = Owners {
            idx: [NodeIdx(0); MAX_REPLICAS],
            len: 0,
        };
        let n = self.owners_of_hash_into(key_hash(key), &mut owners.idx);
        // n <= MAX_REPLICAS = 8, so it fits.
        owners.len = n as u8;
        owners
    }

    /// Writes the owners of `key`, primary first, into `out` and returns how many:
    /// `min(replicas, len(), out.len())`. Allocates nothing.
    pub fn owners_into(&self, key: &[u8], out: &mut [NodeIdx]) -> usize {
        self.owners_of_hash_into(key_hash(key), out)
    }

    /// [`Ring::owners_into`] for a key whose [`key_hash`] the caller already has.
    pub fn owners_of_hash_into(&self, hash: u64, out: &mut [NodeIdx]) -> usize {
        let want = (self.replicas as usize).min(self.nodes.len()).min(out.len());
        if want == 0 {
            return 0;
        }
        let len = self.points.len();
        let start = self.points.partition_point(|&p| p < hash);
        let mut found = 0;
        // At most one lap: every node has a point, so `want` distinct nodes are met.
        for step in 0..len {
            let j = if start + step >= len {
                start + step - len
            } else {
                start + step
            };
            let node = NodeIdx(self.point_nodes[j]);
            if !out[..found].contains(&node) {
                out[found] = node;
                found += 1;
                if found == want {
                    break;
                }
            }
        }
        found
    }

    /// The primary owner of `key`, `None` on an empty ring.
    pub fn primary(&self, key: &[u8]) -> Option<NodeIdx> {
        self.primary_of_hash(key_hash(key))
    }

    /// The primary owner of a key with hash `hash`, `None` on an empty ring.
    pub fn primary_of_hash(&self, hash: u64) -> Option<NodeIdx> {
        let start = self.points.partition_point(|&p| p < hash);
        let j = if start == self.points.len() { 0 } else { start };
        self.point_nodes.get(j).map(|&n| NodeIdx(n))
    }

    /// True when `idx` is one of the owners of `key`.
    pub fn is_owner(&self, key: &[u8], idx: NodeIdx) -> bool {
        self.owners(key).contains(&idx)
    }
}

impl<N: fmt::Debug> fmt::Debug for Ring<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("epoch", &self.epoch)
            .field("vnodes", &self.vnodes)
            .field("replicas", &self.replicas)
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
