//! Hostile request bytes against a real node, one test per class; the table, with what
//! memcached 1.6.18 does for each row, is in `docs/FUZZING.md`.
//!
//! Every row was checked against memcached: with `RINGCACHE_DIFF_AGAINST=memcached` these
//! tests run against a memcached instead and must pass unchanged. Where memcached keeps
//! the connection, the row also proves it still works: `mn\r\n` follows the hostile bytes
//! in the same write and its `MN\r\n` must come back right after the expected reply.

use std::time::Duration;

use ringcache_tests::{ReadEnd, ServerKind, ServerProcess};

const FLAGS: &[&str] = &["-m", "64", "-I", "1m", "-t", "2"];
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

fn node() -> ServerProcess {
    ServerProcess::start(ServerKind::target(), FLAGS)
}

/// Sends `request` followed by `mn\r\n` on a fresh connection and expects exactly `reply`
/// then `MN\r\n`: the answer, and a connection that still works.
fn kept(n: &ServerProcess, request: &[u8], reply: &[u8]) {
    let mut conn = n.connect();
    let mut wire = request.to_vec();
    wire.extend_from_slice(b"mn\r\n");
    let mut want = reply.to_vec();
    want.extend_from_slice(b"MN\r\n");
    conn.send(&wire).expect("send");
    let mut out = Vec::new();
    let end = conn.read_until(&mut out, REPLY_TIMEOUT, |b| b.len() >= want.len());
    assert_eq!(
        (end, String::from_utf8_lossy(&out)),
        (ReadEnd::Done, String::from_utf8_lossy(&want)),
        "request {:?}",
        String::from_utf8_lossy(&request[..request.len().min(200)])
    );
}

/// Sends `request` on a fresh connection and expects exactly `reply`, then the server
/// closing; then a fresh connection still works.
fn closes(n: &ServerProcess, request: &[u8], reply: &[u8]) {
    let mut conn = n.connect();
    // The server may reset the connection while a long request is still being written.
    let _ = conn.send(request);
    let mut out = Vec::new();
    let end = conn.read_to_eof(&mut out, REPLY_TIMEOUT);
    assert_eq!(
        (end, String::from_utf8_lossy(&out)),
        (ReadEnd::Closed, String::from_utf8_lossy(reply)),
        "request {:?}",
        String::from_utf8_lossy(&request[..request.len().min(200)])
    );
    still_serves(n);
}

fn still_serves(n: &ServerProcess) {
    let out = n
        .connect()
        .request(b"set alive 0 0 2\r\nok\r\nget alive\r\n", b"END\r\n");
    assert_eq!(out, b"STORED\r\nVALUE alive 0 2\r\nok\r\nEND\r\n");
}

const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";

#[test]
fn length_fields_of_minus_one_and_2_31_2_32_2_64() {
    let n = node();
    for len in ["-1", "2147483647", "4294967295", "18446744073709551616"] {
        // A bad length is a bad command line: nothing is swallowed.
        kept(&n, format!("set k 0 0 {len}\r\n").as_bytes(), BAD_FORMAT);
        kept(&n, format!("cas k 0 0 {len} 1\r\n").as_bytes(), BAD_FORMAT);
        kept(&n, format!("ms k {len}\r\n").as_bytes(), BAD_FORMAT);
        kept(&n, format!("ms k {len} T0\r\n").as_bytes(), BAD_FORMAT);
    }
    // 2^32 truncates to 0 (memcached reads lengths into 32 bits): a 0-byte value whose
    // "data block" is then `mn`, a bad chunk, and `\r\n` is an empty command line.
    let mut conn = n.connect();
    let out = conn.request(b"set k 0 0 4294967296\r\nmn\r\nmn\r\n", b"MN\r\n");
    assert_eq!(out, b"CLIENT_ERROR bad data chunk\r\nERROR\r\nMN\r\n");
    // The other numeric fields.
    kept(
        &n,
        b"set k -1 0 1\r\nx\r\n",
        b"CLIENT_ERROR bad command line format\r\nERROR\r\n",
    );
    kept(
        &n,
        b"set k 0 18446744073709551616 1\r\nx\r\n",
        b"CLIENT_ERROR bad command line format\r\nERROR\r\n",
    );
    kept(
        &n,
        b"cas k 0 0 1 18446744073709551616\r\nx\r\n",
        b"CLIENT_ERROR bad command line format\r\nERROR\r\n",
    );
    kept(
        &n,
        b"cas k 0 0 1 -1\r\nx\r\n",
        b"CLIENT_ERROR bad command line format\r\nERROR\r\n",
    );
    kept(&n, b"incr k -1\r\n", b"CLIENT_ERROR invalid numeric delta argument\r\n");
    kept(
        &n,
        b"incr k 18446744073709551616\r\n",
        b"CLIENT_ERROR invalid numeric delta argument\r\n",
    );
    kept(
        &n,
        b"gat 18446744073709551616 k\r\n",
        b"CLIENT_ERROR invalid exptime argument\r\n",
    );
    kept(
        &n,
        b"ms k 1 T18446744073709551616\r\nx\r\n",
        b"CLIENT_ERROR bad token in command line format\r\n",
    );
    kept(
        &n,
        b"ma k D18446744073709551616\r\n",
        b"CLIENT_ERROR invalid or duplicate flag\r\n",
    );
    // Flags of 2^32 truncate to 0; a negative exptime stores an already expired item.
    kept(
        &n,
        b"set k 4294967296 0 1\r\nx\r\nget k\r\n",
        b"STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n",
    );
    kept(&n, b"set k 0 -1 1\r\nx\r\nget k\r\n", b"STORED\r\nEND\r\n");
    // A legal length over -I: refused, and exactly its data block is swallowed.
    let mut big = b"set k 0 0 2000000\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'v', 2_000_000));
    big.extend_from_slice(b"\r\n");
    kept(&n, &big, b"SERVER_ERROR object too large for cache\r\n");
}

#[test]
fn a_missing_carriage_return() {
    let n = node();
    // A bare `\n` ends a command line, as in memcached.
    kept(
        &n,
        b"set k 0 0 1\nx\r\nget k\n",
        b"STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n",
    );
    // A data block must end in `\r\n`: `x\nm` is a bad chunk, `n\r\n` an unknown command.
    let mut conn = n.connect();
    let out = conn.request(b"set k 0 0 1\r\nx\nmn\r\nmn\r\n", b"MN\r\n");
    assert_eq!(out, b"CLIENT_ERROR bad data chunk\r\nERROR\r\nMN\r\n");
    // A data block longer than announced.
    kept(
        &n,
        b"set k 0 0 1\r\nxy\r\n",
        b"CLIENT_ERROR bad data chunk\r\nERROR\r\n",
    );
}

#[test]
fn a_nul_byte_in_a_key() {
    let n = node();
    kept(&n, b"set k 0 0 1\r\nx\r\n", b"STORED\r\n");
    // The line ends at the NUL (memcached reads lines as C strings).
    kept(&n, b"get k\x00junk\r\n", b"VALUE k 0 1\r\nx\r\nEND\r\n");
    kept(&n, b"set k\x00x 0 0 1\r\nx\r\n", b"ERROR\r\nERROR\r\n");
    kept(&n, b"delete k\x00 noreply\r\n", b"DELETED\r\n");
    kept(&n, b"mg k\x00 v\r\n", b"EN\r\n");
    kept(&n, b"set k 0 0 1\r\nx\r\nmg k\x00 v\r\n", b"STORED\r\nHD\r\n");
}

#[test]
fn an_empty_key_in_get() {
    let n = node();
    for line in [&b"get \r\n"[..], b"get\r\n", b"gets  \r\n", b"get      \r\n"] {
        kept(&n, line, b"ERROR\r\n");
    }
    // `gat` without keys is an empty hit list.
    kept(&n, b"gat 10\r\n", b"END\r\n");
    kept(&n, b"mg \r\n", b"ERROR\r\n");
}

#[test]
fn a_4mb_line_without_newline_closes_the_connection() {
    let n = node();
    closes(&n, &vec![b'x'; 4 << 20], b"");
    // A `get` line is buffered further (memcached has no bound; ringcache 1 MiB).
    let mut get = b"get ".to_vec();
    get.extend(std::iter::repeat_n(b"k ".as_slice(), 2 << 20).flatten());
    let mut conn = n.connect();
    let _ = conn.send(&get);
    let mut out = Vec::new();
    match n.kind() {
        ServerKind::Ringcache => {
            let end = conn.read_to_eof(&mut out, REPLY_TIMEOUT);
            assert_eq!(
                (end, String::from_utf8_lossy(&out)),
                (ReadEnd::Closed, "SERVER_ERROR out of memory reading request\r\n".into())
            );
        }
        // memcached keeps buffering until its memory runs out.
        ServerKind::Memcached => {
            conn.read_idle(&mut out, Duration::from_millis(500), REPLY_TIMEOUT);
            assert_eq!(out, b"");
        }
    }
    still_serves(&n);
}

#[test]
fn an_http_request_hangs_up() {
    let n = node();
    // memcached hangs up on an unknown command whose last token starts with `HTTP/`.
    closes(&n, b"GET / HTTP/1.1\r\nHost: cache\r\n\r\n", b"");
    closes(&n, b"POST /items HTTP/1.0\r\nContent-Length: 0\r\n\r\n", b"");
    closes(&n, b"HEAD / HTTP/1.1\r\n", b"");
    closes(&n, b"OPTIONS * HTTP/1.1\r\n", b"");
    closes(&n, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"");
    // Only there: a known command stays itself; unknown words starting like a command
    // (a, c, d, g, i, s, t) and lines whose last token is not HTTP/ are `ERROR`.
    kept(&n, b"get / HTTP/1.1\r\n", b"END\r\n");
    kept(&n, b"tx / HTTP/1.1\r\n", b"ERROR\r\n");
    kept(&n, b"GET / HTTP/1.1 x\r\n", b"ERROR\r\n");
    kept(&n, b"GET / http/1.1\r\n", b"ERROR\r\n");
    kept(&n, b"GET\r\n", b"ERROR\r\n");
}

/// Values whose sizes straddle the read buffer (16 KiB), common socket chunk sizes
/// (64 KiB) and the largest item `-I 1m` allows (1 MiB - 60 for a 1-byte key), written
/// in one piece and split right around the data block's boundaries.
#[test]
fn values_straddling_buffer_sizes() {
    let n = node();
    let mut conn = n.connect();
    let sizes = (16384 - 3..=16384 + 3).chain([65535, 65536, 65537, 1048515, 1048516]);
    for (i, size) in sizes.enumerate() {
        let value: Vec<u8> = (0..size).map(|j| b'a' + ((i + j) % 26) as u8).collect();
        let head = format!("set k 0 0 {size}\r\n");
        let mut req = head.clone().into_bytes();
        req.extend_from_slice(&value);
        req.extend_from_slice(b"\r\n");
        if i % 2 == 0 {
            conn.send(&req).expect("send");
        } else {
            // Cut just before the end of the data, and inside the final `\r\n`.
            let cut = head.len() + size - 1;
            conn.send(&req[..cut]).expect("send");
            std::thread::sleep(Duration::from_millis(20));
            conn.send(&req[cut..req.len() - 1]).expect("send");
            std::thread::sleep(Duration::from_millis(20));
            conn.send(&req[req.len() - 1..]).expect("send");
        }
        let mut out = Vec::new();
        conn.read_until_suffix(&mut out, b"\r\n", REPLY_TIMEOUT);
        assert_eq!(String::from_utf8_lossy(&out), "STORED\r\n", "size {size}");
        let mut want = format!("VALUE k 0 {size}\r\n").into_bytes();
        want.extend_from_slice(&value);
        want.extend_from_slice(b"\r\nEND\r\n");
        let got = conn.request(b"get k\r\n", b"\r\nEND\r\n");
        assert!(
            got == want,
            "size {size}: got {} bytes back, want {}",
            got.len(),
            want.len()
        );
    }
    // One byte more than -I allows: refused, the data swallowed, the connection kept.
    let mut req = b"set k 0 0 1048517\r\n".to_vec();
    req.extend(std::iter::repeat_n(b'z', 1048517));
    req.extend_from_slice(b"\r\n");
    kept(&n, &req, b"SERVER_ERROR object too large for cache\r\n");
    // memcached unlinks the old item of a `set` refused as too large.
    kept(&n, b"get k\r\n", b"END\r\n");
}

#[test]
fn meta_flags_duplicate_unknown_and_over_long() {
    let n = node();
    kept(&n, b"ms k 1\r\nx\r\n", b"HD\r\n");
    let o31 = "x".repeat(31);
    let rows: Vec<(Vec<u8>, &[u8])> = vec![
        (b"mg k v v\r\n".to_vec(), b"CLIENT_ERROR duplicate flag\r\n"),
        (b"mg k v k v\r\n".to_vec(), b"CLIENT_ERROR duplicate flag\r\n"),
        (b"mg k O1 O2\r\n".to_vec(), b"CLIENT_ERROR duplicate flag\r\n"),
        (b"mg k !\r\n".to_vec(), b"CLIENT_ERROR invalid flag\r\n"),
        (b"mg k zz\r\n".to_vec(), b"CLIENT_ERROR invalid flag\r\n"),
        (b"ms k 1 v v\r\nx\r\n".to_vec(), b"CLIENT_ERROR duplicate flag\r\n"),
        (b"ms k 1 !\r\nx\r\n".to_vec(), b"CLIENT_ERROR invalid flag\r\n"),
        (b"md k q q\r\n".to_vec(), b"CLIENT_ERROR invalid or duplicate flag\r\n"),
        (b"ma k !\r\n".to_vec(), b"CLIENT_ERROR invalid or duplicate flag\r\n"),
        // Opaques: 32 bytes with the O is the limit.
        (
            format!("mg k O{o31}\r\n").into_bytes(),
            format!("HD O{o31}\r\n").leak().as_bytes(),
        ),
        (
            format!("mg k v O{o31}\r\n").into_bytes(),
            format!("VA 1 O{o31}\r\nx\r\n").leak().as_bytes(),
        ),
        (
            format!("mg k O{o31}x\r\n").into_bytes(),
            b"CLIENT_ERROR opaque token too long\r\n",
        ),
        (
            format!("mg k O{}\r\n", "x".repeat(4000)).into_bytes(),
            b"CLIENT_ERROR opaque token too long\r\n",
        ),
        (
            format!("ms k 1 O{}\r\nx\r\n", "x".repeat(40)).into_bytes(),
            b"CLIENT_ERROR opaque token too long\r\n",
        ),
        // Too many flags (20 tokens or more), over-long tokens, over-long numbers.
        (
            format!("mg k{}\r\n", " v".repeat(18)).into_bytes(),
            b"CLIENT_ERROR options flags are too long\r\n",
        ),
        (
            format!("md k{}\r\n", " q".repeat(18)).into_bytes(),
            b"CLIENT_ERROR options flags too long\r\n",
        ),
        (
            format!("mg k M{}\r\n", "x".repeat(100)).into_bytes(),
            b"CLIENT_ERROR incorrect length for M token\r\n",
        ),
        (
            b"ms k 1 MZ\r\nx\r\n".to_vec(),
            b"CLIENT_ERROR invalid mode for ms M token\r\n",
        ),
        (
            b"ms k 1 Mxx\r\nx\r\n".to_vec(),
            b"CLIENT_ERROR incorrect length for M token\r\n",
        ),
        (
            format!("mg k T{}\r\n", "9".repeat(5000)).into_bytes(),
            b"CLIENT_ERROR bad token in command line format\r\n",
        ),
        (format!("mg {} v\r\n", "k".repeat(251)).into_bytes(), BAD_FORMAT),
        (format!("mg {} v\r\n", "k".repeat(250)).into_bytes(), b"EN\r\n"),
    ];
    for (request, reply) in rows {
        kept(&n, &request, reply);
    }
    // The item is untouched by all of that.
    kept(&n, b"mg k v\r\n", b"VA 1\r\nx\r\n");
}
