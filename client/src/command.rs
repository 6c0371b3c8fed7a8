//! The requests the client sends and the replies it accepts, without I/O.
//!
//! Reads use the meta command `mg` rather than classic `get`: its reply says whether
//! the item is a lease placeholder (`W`/`Z` flags on an empty value that a reader
//! created with `N`) or stale (`X`, after `md <key> I`), which a classic `get` cannot
//! tell from a real value. A plain read treats both as misses, so nobody ever sees
//! a placeholder or an invalidated value unless they asked for stale data.
//!
//! Writes use the classic commands (`set`, `add`, `replace`, `cas`, `delete`,
//! `incr`, `decr`, `touch`), whose replies map one to one onto [`StoreOutcome`] and
//! friends; the lease write-back uses `ms ... C<cas>` so that it fails when a newer
//! write or a delete came first.
//!
//! Every decoder takes the raw bytes of one reply (as [`NodeConn`](crate::conn::NodeConn)
//! framed it) and never panics: anything unexpected is [`Error::Protocol`], an error
//! line is [`Error::Server`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use ringcache_protocol::text::meta::{parse_meta_response, MetaResponse, MetaStatus};
use ringcache_protocol::text::response::{parse_response, Response, RING_CHANGING};
use ringcache_protocol::text::Expect as ReplyShape;
use ringcache_protocol::text::{Limits, Request, StoreMode, StoreRequest, KEY_MAX_LEN};

use crate::error::{Error, Result};

/// memcached reads an exptime above 30 days as an absolute Unix time.
const RELATIVE_LIMIT: u64 = 30 * 24 * 3600;

/// A value with its metadata, as [`Client::gets`](crate::Client::gets) returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The value's bytes.
    pub value: Bytes,
    /// The opaque client flags stored with the value.
    pub flags: u32,
    /// The CAS unique: pass it to [`Client::cas`](crate::Client::cas) to write only if
    /// nobody wrote since.
    pub cas: u64,
}

/// How a store went; the classic replies `STORED`, `NOT_STORED`, `EXISTS`, `NOT_FOUND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// The value was stored.
    Stored,
    /// The condition of `add`/`replace`/`append`/`prepend` did not hold.
    NotStored,
    /// `cas`: someone wrote the key since the CAS unique was read.
    Exists,
    /// `cas`: the key is gone.
    NotFound,
}

impl StoreOutcome {
    /// Whether the value was stored.
    pub fn is_stored(self) -> bool {
        self == StoreOutcome::Stored
    }
}

/// Which store command to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `set`: store unconditionally.
    Set,
    /// `add`: store only if the key is absent.
    Add,
    /// `replace`: store only if the key is present.
    Replace,
    /// `append`: add the bytes after the existing value (flags and TTL ignored).
    Append,
    /// `prepend`: add the bytes before the existing value (flags and TTL ignored).
    Prepend,
    /// `cas`: store only if the key's CAS unique is still this one.
    Cas(u64),
}

/// What one `mg` said about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// `EN`: no item.
    Miss,
    /// A current value.
    Hit(Item),
    /// An empty lease placeholder. `won`: this reader got the win (`W`) and should
    /// load and write back with `cas`; otherwise another reader holds it (`Z`).
    Placeholder { cas: u64, won: bool },
    /// An invalidated value (`X`). `won`: this reader should revalidate it.
    Stale { item: Item, won: bool },
}

impl Lookup {
    /// The value a plain read returns: only a current value.
    pub(crate) fn into_value(self) -> Option<Item> {
        match self {
            Lookup::Hit(item) => Some(item),
            Lookup::Miss | Lookup::Placeholder { .. } | Lookup::Stale { .. } => None,
        }
    }
}

/// Checks a key the way memcached's parser will: 1 to 250 bytes, no spaces or
/// control characters.
pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() || key.len() > KEY_MAX_LEN || key.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(Error::InvalidKey);
    }
    Ok(())
}

/// memcached's exptime for a TTL: 0 for "never", whole seconds rounded up, and an
/// absolute Unix time past 30 days (where memcached stops reading relative seconds).
pub(crate) fn exptime(ttl: Duration) -> i64 {
    if ttl.is_zero() {
        return 0;
    }
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    if secs <= RELATIVE_LIMIT {
        return secs as i64;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    i64::try_from(now.saturating_add(secs)).unwrap_or(i64::MAX)
}

/// `mg <key> v f c[ <extra>]\r\n`: value, flags and CAS, plus `extra` flags (`N30`,
/// `T60`).
pub(crate) fn meta_get(out: &mut BytesMut, key: &[u8], extra: Option<(u8, i64)>) {
    out.reserve(key.len() + 32);
    out.put_slice(b"mg ");
    out.put_slice(key);
    out.put_slice(b" v f c");
    if let Some((letter, n)) = extra {
        out.put_u8(b' ');
        out.put_u8(letter);
        out.put_slice(itoa::Buffer::new().format(n).as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// `ms <key> <len> T<exptime> F<flags> C<cas>\r\n<value>\r\n`: the lease write-back,
/// stored only if the key's CAS unique is still `cas`.
pub(crate) fn meta_set_cas(out: &mut BytesMut, key: &[u8], value: &[u8], exptime: i64, flags: u32, cas: u64) {
    let mut num = itoa::Buffer::new();
    out.reserve(key.len() + value.len() + 64);
    out.put_slice(b"ms ");
    out.put_slice(key);
    out.put_u8(b' ');
    out.put_slice(num.format(value.len()).as_bytes());
    out.put_slice(b" T");
    out.put_slice(num.format(exptime).as_bytes());
    out.put_slice(b" F");
    out.put_slice(num.format(flags).as_bytes());
    out.put_slice(b" C");
    out.put_slice(num.format(cas).as_bytes());
    out.put_slice(b"\r\n");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// `md <key>[ C<cas>][ I]\r\n`: delete only our own placeholder (`C`), or mark the
/// value stale instead of removing it (`I`).
pub(crate) fn meta_delete(out: &mut BytesMut, key: &[u8], cas: Option<u64>, invalidate: bool) {
    out.put_slice(b"md ");
    out.put_slice(key);
    if let Some(cas) = cas {
        out.put_slice(b" C");
        out.put_slice(itoa::Buffer::new().format(cas).as_bytes());
    }
    if invalidate {
        out.put_slice(b" I");
    }
    out.put_slice(b"\r\n");
}

/// A classic store request.
pub(crate) fn store(out: &mut BytesMut, kind: StoreKind, key: Bytes, value: Bytes, exptime: i64, flags: u32) {
    let mode = match kind {
        StoreKind::Set => StoreMode::Set,
        StoreKind::Add => StoreMode::Add,
        StoreKind::Replace => StoreMode::Replace,
        StoreKind::Append => StoreMode::Append,
        StoreKind::Prepend => StoreMode::Prepend,
        StoreKind::Cas(unique) => StoreMode::Cas(unique),
    };
    Request::Store(StoreRequest {
        mode,
        key,
        flags,
        exptime,
        value,
        noreply: false,
    })
    .encode_with(out, false);
}

/// Whether a reply is ringcache's `SERVER_ERROR ring changing`: the node could not
/// place the request while its ring and its peers' disagree; nothing was
/// acknowledged.
pub(crate) fn is_ring_changing(reply: &[u8]) -> bool {
    reply == RING_CHANGING
}

/// Reads one meta reply; error lines become [`Error::Server`].
fn one_meta(buf: &mut BytesMut) -> Result<MetaResponse> {
    let reply = parse_meta_response(buf)
        .map_err(|e| Error::Protocol(e.to_string()))?
        .ok_or_else(|| Error::Protocol("truncated meta reply".into()))?;
    match reply.status {
        MetaStatus::Error => Err(Error::Server("ERROR".into())),
        MetaStatus::ClientError => Err(Error::Server(format!("CLIENT_ERROR {}", lossy(&reply.rest)))),
        MetaStatus::ServerError => Err(Error::Server(format!("SERVER_ERROR {}", lossy(&reply.rest)))),
        MetaStatus::Hd
        | MetaStatus::Va
        | MetaStatus::En
        | MetaStatus::Ns
        | MetaStatus::Ex
        | MetaStatus::Nf
        | MetaStatus::Mn
        | MetaStatus::Me => Ok(reply),
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Classifies one `mg ... v f c` reply.
fn lookup_of(reply: MetaResponse) -> Result<Lookup> {
    let number = |letter: u8| -> Result<u64> {
        match reply.flag(letter) {
            None => Ok(0),
            Some(digits) => std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Error::Protocol(format!("bad {} flag in mg reply", letter as char))),
        }
    };
    let won = reply.has(b'W');
    let busy = reply.has(b'Z');
    let stale = reply.has(b'X');
    match reply.status {
        MetaStatus::En if won => Ok(Lookup::Placeholder {
            cas: number(b'c')?,
            won,
        }),
        MetaStatus::En => Ok(Lookup::Miss),
        MetaStatus::Va => {
            let item = Item {
                value: reply.value.clone().unwrap_or_default(),
                flags: u32::try_from(number(b'f')?).map_err(|_| Error::Protocol("flags above u32".into()))?,
                cas: number(b'c')?,
            };
            if stale {
                Ok(Lookup::Stale { item, won })
            } else if (won || busy) && item.value.is_empty() {
                Ok(Lookup::Placeholder { cas: item.cas, won })
            } else {
                Ok(Lookup::Hit(item))
            }
        }
        other => Err(Error::Protocol(format!("{other:?} does not answer mg"))),
    }
}

/// Decodes the reply to one `mg`.
pub(crate) fn decode_lookup(reply: &[u8]) -> Result<Lookup> {
    let mut buf = BytesMut::from(reply);
    lookup_of(one_meta(&mut buf)?)
}

/// Decodes the replies to `n` pipelined `mg` requests followed by `mn`.
pub(crate) fn decode_lookups(reply: &[u8], n: usize) -> Result<Vec<Lookup>> {
    let mut buf = BytesMut::from(reply);
    let mut out = Vec::with_capacity(n);
    loop {
        let r = one_meta(&mut buf)?;
        if r.status == MetaStatus::Mn {
            break;
        }
        out.push(lookup_of(r)?);
    }
    if out.len() != n {
        return Err(Error::Protocol(format!("{} replies to {n} mg requests", out.len())));
    }
    Ok(out)
}

/// How a conditional meta write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetaWrite {
    /// `HD`.
    Done,
    /// `NS`, `EX` or `NF`: lost to a newer write or a delete; nothing changed.
    Refused,
}

/// Decodes the reply to `ms` or `md`.
pub(crate) fn decode_meta_write(reply: &[u8]) -> Result<MetaWrite> {
    let mut buf = BytesMut::from(reply);
    let r = one_meta(&mut buf)?;
    match r.status {
        MetaStatus::Hd => Ok(MetaWrite::Done),
        MetaStatus::Ns | MetaStatus::Ex | MetaStatus::Nf => Ok(MetaWrite::Refused),
        other => Err(Error::Protocol(format!("{other:?} does not answer ms/md"))),
    }
}

/// Reads one classic reply line of the given shape.
fn classic(reply: &[u8], shape: ReplyShape) -> Result<Response> {
    let mut buf = BytesMut::from(reply);
    let limits = Limits {
        max_item_size: usize::MAX,
    };
    let r = parse_response(&mut buf, shape, &limits)
        .map_err(|e| Error::Protocol(e.to_string()))?
        .ok_or_else(|| Error::Protocol("truncated reply".into()))?;
    match r {
        Response::Error => Err(Error::Server("ERROR".into())),
        Response::ClientError(m) => Err(Error::Server(format!("CLIENT_ERROR {}", lossy(&m)))),
        Response::ServerError(m) => Err(Error::Server(format!("SERVER_ERROR {}", lossy(&m)))),
        other => Ok(other),
    }
}

fn unexpected(r: Response) -> Error {
    Error::Protocol(format!("unexpected reply {r:?}"))
}

/// Decodes the reply to a store command.
pub(crate) fn decode_store(reply: &[u8]) -> Result<StoreOutcome> {
    match classic(reply, ReplyShape::Stored)? {
        Response::Stored => Ok(StoreOutcome::Stored),
        Response::NotStored => Ok(StoreOutcome::NotStored),
        Response::Exists => Ok(StoreOutcome::Exists),
        Response::NotFound => Ok(StoreOutcome::NotFound),
        other => Err(unexpected(other)),
    }
}

/// Decodes the reply to `delete`: whether the key existed.
pub(crate) fn decode_delete(reply: &[u8]) -> Result<bool> {
    match classic(reply, ReplyShape::Deleted)? {
        Response::Deleted => Ok(true),
        Response::NotFound => Ok(false),
        other => Err(unexpected(other)),
    }
}

/// Decodes the reply to `incr`/`decr`: the new value, `None` if the key is absent.
pub(crate) fn decode_arith(reply: &[u8]) -> Result<Option<u64>> {
    match classic(reply, ReplyShape::Number)? {
        Response::Number(n) => Ok(Some(n)),
        Response::NotFound => Ok(None),
        other => Err(unexpected(other)),
    }
}

/// Decodes the reply to `touch`: whether the key existed.
pub(crate) fn decode_touch(reply: &[u8]) -> Result<bool> {
    match classic(reply, ReplyShape::Touched)? {
        Response::Touched => Ok(true),
        Response::NotFound => Ok(false),
        other => Err(unexpected(other)),
    }
}

/// Decodes the reply to `version` (the health probe).
pub(crate) fn decode_version(reply: &[u8]) -> Result<()> {
    match classic(reply, ReplyShape::Version)? {
        Response::Version(_) => Ok(()),
        other => Err(unexpected(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(value: &'static [u8], flags: u32, cas: u64) -> Item {
        Item {
            value: Bytes::from_static(value),
            flags,
            cas,
        }
    }

    #[test]
    fn lookups_from_server_replies() {
        // Replies as a ringcache node sent them (see the module docs for the flags).
        let table: &[(&[u8], Lookup)] = &[
            (b"EN\r\n", Lookup::Miss),
            (b"VA 3 f5 c9\r\nabc\r\n", Lookup::Hit(item(b"abc", 5, 9))),
            (b"VA 0 f0 c1 W\r\n\r\n", Lookup::Placeholder { cas: 1, won: true }),
            (b"VA 0 f0 c1 Z\r\n\r\n", Lookup::Placeholder { cas: 1, won: false }),
            (b"EN W c4\r\n", Lookup::Placeholder { cas: 4, won: true }),
            (
                b"VA 3 f0 c3 X W\r\nabc\r\n",
                Lookup::Stale {
                    item: item(b"abc", 0, 3),
                    won: true,
                },
            ),
            (
                b"VA 3 f0 c3 Z X\r\nabc\r\n",
                Lookup::Stale {
                    item: item(b"abc", 0, 3),
                    won: false,
                },
            ),
            // A real value whose early refresh someone else won is still a hit.
            (b"VA 2 f0 c7 Z\r\nhi\r\n", Lookup::Hit(item(b"hi", 0, 7))),
        ];
        for (reply, want) in table {
            assert_eq!(
                &decode_lookup(reply).unwrap(),
                want,
                "{}",
                String::from_utf8_lossy(reply)
            );
        }
        assert_eq!(decode_lookup(b"VA 0 f0 c1 W\r\n\r\n").unwrap().into_value(), None);
        assert_eq!(
            decode_lookup(b"VA 1 f0 c1\r\nx\r\n").unwrap().into_value(),
            Some(item(b"x", 0, 1))
        );
    }

    #[test]
    fn bad_replies_are_errors_not_panics() {
        let bad: &[&[u8]] = &[
            b"",
            b"VA",
            b"VA 3 f0\r\nab",
            b"VA x\r\n",
            b"HD\r\n",
            b"VA 1 fzz\r\nx\r\n",
            b"VA 1 f99999999999\r\nx\r\n",
            b"WHAT\r\n",
        ];
        for reply in bad {
            assert!(decode_lookup(reply).is_err(), "{}", String::from_utf8_lossy(reply));
        }
        assert!(
            matches!(decode_lookup(b"SERVER_ERROR out of memory\r\n"), Err(Error::Server(m)) if m == "SERVER_ERROR out of memory")
        );
        assert!(matches!(decode_store(b"ERROR\r\n"), Err(Error::Server(_))));
        assert!(matches!(decode_store(b"DELETED\r\n"), Err(Error::Protocol(_))));
        assert!(decode_arith(b"12x\r\n").is_err());
    }

    #[test]
    fn pipelined_lookups_end_at_mn() {
        let reply = b"VA 1 f0 c2\r\na\r\nEN\r\nVA 0 f0 c3 Z\r\n\r\nMN\r\n";
        let got = decode_lookups(reply, 3).unwrap();
        assert_eq!(
            got,
            vec![
                Lookup::Hit(item(b"a", 0, 2)),
                Lookup::Miss,
                Lookup::Placeholder { cas: 3, won: false }
            ]
        );
        assert!(decode_lookups(reply, 2).is_err());
        assert!(decode_lookups(b"EN\r\n", 1).is_err());
    }

    #[test]
    fn classic_replies() {
        assert_eq!(decode_store(b"STORED\r\n").unwrap(), StoreOutcome::Stored);
        assert_eq!(decode_store(b"NOT_STORED\r\n").unwrap(), StoreOutcome::NotStored);
        assert_eq!(decode_store(b"EXISTS\r\n").unwrap(), StoreOutcome::Exists);
        assert_eq!(decode_store(b"NOT_FOUND\r\n").unwrap(), StoreOutcome::NotFound);
        assert!(decode_delete(b"DELETED\r\n").unwrap());
        assert!(!decode_delete(b"NOT_FOUND\r\n").unwrap());
        assert_eq!(decode_arith(b"42\r\n").unwrap(), Some(42));
        assert_eq!(decode_arith(b"NOT_FOUND\r\n").unwrap(), None);
        assert!(decode_touch(b"TOUCHED\r\n").unwrap());
        assert!(decode_version(b"VERSION 1.6.18\r\n").is_ok());
        assert_eq!(decode_meta_write(b"HD\r\n").unwrap(), MetaWrite::Done);
        for r in [&b"EX\r\n"[..], b"NF\r\n", b"NS\r\n"] {
            assert_eq!(decode_meta_write(r).unwrap(), MetaWrite::Refused);
        }
    }

    #[test]
    fn encoders_write_exact_bytes() {
        let mut out = BytesMut::new();
        meta_get(&mut out, b"user:1", None);
        meta_get(&mut out, b"user:1", Some((b'N', 10)));
        meta_set_cas(&mut out, b"k", b"abc", 60, 3, 17);
        meta_delete(&mut out, b"k", Some(17), false);
        meta_delete(&mut out, b"k", None, true);
        meta_delete(&mut out, b"k", Some(3), true);
        store(
            &mut out,
            StoreKind::Cas(5),
            Bytes::from_static(b"k"),
            Bytes::from_static(b"v"),
            0,
            1,
        );
        assert_eq!(
            &out[..],
            &b"mg user:1 v f c\r\nmg user:1 v f c N10\r\nms k 3 T60 F3 C17\r\nabc\r\nmd k C17\r\nmd k I\r\nmd k C3 I\r\ncas k 1 0 1 5\r\nv\r\n"[..]
        );
    }

    #[test]
    fn keys_and_exptimes() {
        assert!(check_key(b"user:42").is_ok());
        for bad in [&b""[..], b"a b", b"a\r\n", b"\x7f"] {
            assert!(check_key(bad).is_err());
        }
        assert!(check_key(&[b'k'; 250]).is_ok());
        assert!(check_key(&[b'k'; 251]).is_err());
        assert_eq!(exptime(Duration::ZERO), 0);
        assert_eq!(exptime(Duration::from_millis(1)), 1);
        assert_eq!(exptime(Duration::from_secs(60)), 60);
        assert_eq!(exptime(Duration::from_secs(RELATIVE_LIMIT)), RELATIVE_LIMIT as i64);
        // Past 30 days the exptime is absolute: later than now.
        let abs = exptime(Duration::from_secs(RELATIVE_LIMIT + 1));
        assert!(abs > 1_600_000_000, "{abs}");
    }
}
