//! Hostile clients against a real node: one that pipelines and never reads, one that
//! sends a byte a second, and more connections than `-c`. Each is bounded in time; each
//! also runs against memcached with `RINGCACHE_DIFF_AGAINST=memcached`.

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringcache_tests::{poll_until, ReadEnd, ServerKind, ServerProcess};

/// A process's resident set (`VmRSS`) in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value");
    kib * 1024
}

const MIB: u64 = 1024 * 1024;

/// 200 MB of `get` requests for a 100 KB value, pushed without reading a byte of the
/// replies (each 7-byte request asks for 100 KB): the server must stop reading from
/// that client once its replies back up, so the bytes it accepts and its memory stay
/// bounded, and other clients are still served.
#[test]
fn a_pipelining_client_that_never_reads_stays_bounded() {
    let n = ServerProcess::start(ServerKind::target(), &["-m", "64", "-I", "1m", "-t", "2"]);
    let pid = n.pid().expect("pid");
    let value = vec![b'v'; 100_000];
    let mut set = b"set big 0 0 100000\r\n".to_vec();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    assert_eq!(n.connect().request(&set, b"\r\n"), b"STORED\r\n");
    let before = rss(pid);

    let mut hog = TcpStream::connect(n.addr()).expect("connect");
    hog.set_nonblocking(true).expect("nonblocking");
    let chunk: Vec<u8> = b"get big\r\n".repeat(8 * 1024);
    let target: u64 = 200 * 1000 * 1000;
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut pushed = 0u64;
    let mut last_progress = Instant::now();
    let mut peak = before;
    let mut off = 0;
    while pushed < target && Instant::now() < deadline {
        match hog.write(&chunk[off..]) {
            Ok(k) => {
                pushed += k as u64;
                off = (off + k) % chunk.len();
                last_progress = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // Stalled for a while: the server has stopped reading; keep trying a
                // little longer in case it was only slow.
                if last_progress.elapsed() > Duration::from_secs(2) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("the server dropped the client: {e}"),
        }
        peak = peak.max(rss(pid));
    }
    // Other clients are served meanwhile.
    let out = n
        .connect()
        .request(b"set other 0 0 1\r\nx\r\nget other\r\n", b"END\r\n");
    assert_eq!(out, b"STORED\r\nVALUE other 0 1\r\nx\r\nEND\r\n");
    peak = peak.max(rss(pid));
    println!(
        "{}: pushed {:.1} MB of gets without reading; RSS {:.1} MiB before, peak {:.1} MiB (+{:.1} MiB)",
        n.kind().name(),
        pushed as f64 / 1e6,
        before as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        (peak - before) as f64 / MIB as f64
    );
    assert!(
        pushed < target / 4,
        "the server kept reading: {pushed} bytes of requests accepted without replies being read"
    );
    assert!(
        peak - before < 64 * MIB,
        "RSS grew by {} MiB while a client did not read",
        (peak - before) / MIB
    );
    drop(hog);
}

/// A client sending one byte a second holds only its own connection: others are served
/// at once meanwhile, and its request is answered once complete.
#[test]
fn a_client_sending_one_byte_per_second() {
    let n = ServerProcess::start(ServerKind::target(), &["-m", "64", "-t", "2"]);
    let mut slow = n.connect();
    let mut fast = n.connect();
    for (i, &b) in b"mn\r\n".iter().enumerate() {
        slow.send(&[b]).expect("send a byte");
        let started = Instant::now();
        let key = format!("fast{i}");
        let out = fast.request(format!("set {key} 0 0 1\r\nx\r\nget {key}\r\n").as_bytes(), b"END\r\n");
        assert_eq!(out, format!("STORED\r\nVALUE {key} 0 1\r\nx\r\nEND\r\n").as_bytes());
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "took {:?}",
            started.elapsed()
        );
        if i < 3 {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let mut out = Vec::new();
    assert_eq!(
        slow.read_until_suffix(&mut out, b"MN\r\n", Duration::from_secs(5)),
        ReadEnd::Done
    );
    assert_eq!(out, b"MN\r\n");
}

/// Past `-c`, memcached answers `ERROR Too many open connections` and closes; ringcache
/// does the same at exactly `-c` client connections (memcached counts its own file
/// descriptors too, so it refuses earlier). Closing connections frees the slots.
#[test]
fn more_connections_than_max_conns() {
    let max = 32;
    let n = ServerProcess::start(ServerKind::target(), &["-m", "64", "-t", "2", "-c", &max.to_string()]);
    let mut conns = Vec::new();
    let mut accepted = 0;
    let mut refused = 0;
    for _ in 0..max + 8 {
        let mut c = n.connect();
        c.send(b"version\r\n").expect("send");
        let mut out = Vec::new();
        match c.read_until_suffix(&mut out, b"\r\n", Duration::from_secs(5)) {
            ReadEnd::Done if out.starts_with(b"VERSION ") => {
                accepted += 1;
                conns.push(c);
            }
            ReadEnd::Done if out == b"ERROR Too many open connections\r\n" => {
                let mut rest = Vec::new();
                assert_eq!(c.read_to_eof(&mut rest, Duration::from_secs(5)), ReadEnd::Closed);
                assert_eq!(rest, b"");
                refused += 1;
            }
            end => panic!("unexpected {end:?}: {:?}", String::from_utf8_lossy(&out)),
        }
    }
    println!("{}: -c {max}: {accepted} accepted, {refused} refused", n.kind().name());
    match n.kind() {
        ServerKind::Ringcache => assert_eq!((accepted, refused), (max, 8)),
        ServerKind::Memcached => assert!(accepted > 0 && refused >= 8),
    }
    // The accepted ones still work; closing them frees their slots.
    for c in &mut conns {
        assert!(c.request(b"mn\r\n", b"MN\r\n").ends_with(b"MN\r\n"));
    }
    conns.clear();
    assert!(
        poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
            let mut c = n.connect();
            c.send(b"version\r\n").is_ok() && {
                let mut out = Vec::new();
                c.read_until_suffix(&mut out, b"\r\n", Duration::from_secs(2)) == ReadEnd::Done
                    && out.starts_with(b"VERSION ")
            }
        }),
        "no connection accepted after the others closed"
    );
}
