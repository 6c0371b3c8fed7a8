//! Request encoders: the bytes a client sends for a [`Request`].
//!
//! A node forwarding a request to its owner re-encodes it (with `noreply` cleared,
//! since it needs the reply to relay or to know the outcome); the smart client builds
//! its requests the same way. Encoding a parsed request yields bytes that parse back
//! to the same request.

use bytes::{BufMut, BytesMut};

use crate::text::meta::{base64, MetaCommand, MetaRequest};
use crate::text::request::{ArithOp, GetKind, Request, StoreMode};

impl Request {
    /// Appends the request's wire form, as parsed (`noreply` kept).
    pub fn encode(&self, out: &mut BytesMut) {
        self.encode_with(out, self.noreply());
    }

    /// Appends the request's wire form with `noreply` set as given (where the command
    /// takes it).
    pub fn encode_with(&self, out: &mut BytesMut, noreply: bool) {
        let mut num = itoa::Buffer::new();
        let nr = |out: &mut BytesMut| {
            if noreply {
                out.put_slice(b" noreply");
            }
        };
        match self {
            Request::Get(get) => {
                out.put_slice(match get.kind {
                    GetKind::Get => b"get".as_slice(),
                    GetKind::Gets => b"gets",
                    GetKind::Gat { .. } => b"gat",
                    GetKind::Gats { .. } => b"gats",
                });
                if let GetKind::Gat { exptime } | GetKind::Gats { exptime } = get.kind {
                    out.put_u8(b' ');
                    out.put_slice(num.format(exptime).as_bytes());
                }
                for key in get.keys.iter() {
                    out.put_u8(b' ');
                    out.put_slice(&key);
                }
                out.put_slice(b"\r\n");
            }
            Request::Store(s) => {
                out.reserve(s.key.len() + s.value.len() + 64);
                out.put_slice(match s.mode {
                    StoreMode::Set => b"set ".as_slice(),
                    StoreMode::Add => b"add ",
                    StoreMode::Replace => b"replace ",
                    StoreMode::Append => b"append ",
                    StoreMode::Prepend => b"prepend ",
                    StoreMode::Cas(_) => b"cas ",
                });
                out.put_slice(&s.key);
                out.put_u8(b' ');
                out.put_slice(num.format(s.flags).as_bytes());
                out.put_u8(b' ');
                out.put_slice(num.format(s.exptime).as_bytes());
                out.put_u8(b' ');
                out.put_slice(num.format(s.value.len()).as_bytes());
                if let StoreMode::Cas(unique) = s.mode {
                    out.put_u8(b' ');
                    out.put_slice(num.format(unique).as_bytes());
                }
                nr(out);
                out.put_slice(b"\r\n");
                out.put_slice(&s.value);
                out.put_slice(b"\r\n");
            }
            Request::Delete { key, .. } => {
                out.put_slice(b"delete ");
                out.put_slice(key);
                nr(out);
                out.put_slice(b"\r\n");
            }
            Request::Arith { op, key, delta, .. } => {
                out.put_slice(match op {
                    ArithOp::Incr => b"incr ".as_slice(),
                    ArithOp::Decr => b"decr ",
                });
                out.put_slice(key);
                out.put_u8(b' ');
                out.put_slice(num.format(*delta).as_bytes());
                nr(out);
                out.put_slice(b"\r\n");
            }
            Request::Touch { key, exptime, .. } => {
                out.put_slice(b"touch ");
                out.put_slice(key);
                out.put_u8(b' ');
                out.put_slice(num.format(*exptime).as_bytes());
                nr(out);
                out.put_slice(b"\r\n");
            }
            Request::FlushAll { delay, .. } => {
                out.put_slice(b"flush_all");
                if *delay != 0 {
                    out.put_u8(b' ');
                    out.put_slice(num.format(*delay).as_bytes());
                }
                nr(out);
                out.put_slice(b"\r\n");
            }
            Request::Version => out.put_slice(b"version\r\n"),
            Request::Verbosity { .. } => {
                out.put_slice(b"verbosity 1");
                nr(out);
                out.put_slice(b"\r\n");
            }
            Request::Stats { group } => {
                out.put_slice(b"stats");
                if !group.is_empty() {
                    out.put_u8(b' ');
                    out.put_slice(group);
                }
                out.put_slice(b"\r\n");
            }
            Request::CacheMemlimit { mib, .. } => {
                out.put_slice(b"cache_memlimit ");
                out.put_slice(num.format(*mib).as_bytes());
                nr(out);
                out.put_slice(b"\r\n");
            }
            Request::Quit => out.put_slice(b"quit\r\n"),
            Request::Meta(m) => m.encode(out),
            Request::Topology => out.put_slice(b"topology\r\n"),
            Request::Peer(p) => p.encode(out),
        }
    }

    /// Whether the client asked for no reply.
    pub fn noreply(&self) -> bool {
        match self {
            Request::Store(s) => s.noreply,
            Request::Delete { noreply, .. }
            | Request::Arith { noreply, .. }
            | Request::Touch { noreply, .. }
            | Request::FlushAll { noreply, .. }
            | Request::Verbosity { noreply }
            | Request::CacheMemlimit { noreply, .. } => *noreply,
            Request::Get(_)
            | Request::Version
            | Request::Stats { .. }
            | Request::Quit
            | Request::Meta(_)
            | Request::Topology
            | Request::Peer(_) => false,
        }
    }
}

impl MetaRequest {
    /// Appends the request's wire form, as parsed.
    pub fn encode(&self, out: &mut BytesMut) {
        self.encode_with(out, true);
    }

    /// Appends the request's wire form, without its `q` flag unless `keep_quiet`
    /// (a node forwarding a quiet request needs the reply to decide what to relay).
    pub fn encode_with(&self, out: &mut BytesMut, keep_quiet: bool) {
        let mut num = itoa::Buffer::new();
        out.reserve(self.key.len() * 2 + self.tokens.len() + self.value.len() + 32);
        out.put_slice(match self.command {
            MetaCommand::Get => b"mg".as_slice(),
            MetaCommand::Set => b"ms",
            MetaCommand::Delete => b"md",
            MetaCommand::Arithmetic => b"ma",
            MetaCommand::NoOp => b"mn",
            MetaCommand::Debug => b"me",
        });
        if self.command != MetaCommand::NoOp {
            out.put_u8(b' ');
            if self.flags.base64_key() {
                base64::encode(out, &self.key);
            } else {
                out.put_slice(&self.key);
            }
        }
        if self.command == MetaCommand::Set {
            out.put_u8(b' ');
            out.put_slice(num.format(self.value.len()).as_bytes());
        }
        // `me` keeps no flag tokens: its `b` lives only in the flags.
        if self.command == MetaCommand::Debug && self.flags.base64_key() {
            out.put_slice(b" b");
        }
        for token in self.tokens.split(|&b| b == b' ').filter(|t| !t.is_empty()) {
            if !keep_quiet && token == b"q" {
                continue;
            }
            out.put_u8(b' ');
            out.put_slice(token);
        }
        out.put_slice(b"\r\n");
        if self.command == MetaCommand::Set {
            out.put_slice(&self.value);
            out.put_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use crate::text::{parse_request, Limits};

    /// Found by `ringcache-fuzz --target request`: `me <base64 key> b` re-encoded
    /// without its `b`, so a node forwarding it asked the owner about the key's
    /// base64 text instead of the key.
    #[test]
    fn debug_with_a_base64_key_round_trips() {
        for line in [&b"me a2V5 b\r\n"[..], b"me k\r\n", b"mg a2V5 b v\r\n"] {
            let mut buf = BytesMut::from(line);
            let req = parse_request(&mut buf, &Limits::default()).unwrap().unwrap();
            let mut wire = BytesMut::new();
            req.encode(&mut wire);
            let back = parse_request(&mut wire, &Limits::default()).unwrap().unwrap();
            assert_eq!(back, req, "{:?}", String::from_utf8_lossy(line));
        }
    }
}
