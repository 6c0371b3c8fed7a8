//! Meta command semantics (interim).

use bytes::{BufMut, BytesMut};
use ringcache_protocol::text::meta::MetaRequest;

use crate::node::Node;
use crate::stats::Counters;

/// Runs one meta request and appends its reply to `out`.
pub fn execute(_node: &Node, _req: MetaRequest, _now: u32, c: &mut Counters, out: &mut BytesMut) {
    c.cmd_meta += 1;
    out.put_slice(b"ERROR\r\n");
}
