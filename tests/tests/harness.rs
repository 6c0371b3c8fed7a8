//! The harness itself: servers start on free ports, answer, obey signals, restart on their
//! port, and are gone after drop.

use std::net::TcpStream;
use std::time::Duration;

use ringcache_tests::{free_port, poll_until, ReadEnd, ServerKind, ServerProcess, Signal};

fn pid_alive(pid: u32) -> bool {
    // A reaped child's /proc entry disappears; a zombie would still show, but Drop reaps.
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn free_ports_are_distinct() {
    let a: Vec<u16> = (0..50).map(|_| free_port()).collect();
    let set: std::collections::HashSet<_> = a.iter().collect();
    assert_eq!(set.len(), a.len());
}

#[test]
fn memcached_stop_cont_term_restart_drop() {
    let mut m = ServerProcess::memcached(&["-m", "16"]);
    let mut c = m.connect();
    assert_eq!(c.request(b"set h 0 0 1\r\nx\r\n", b"\r\n"), b"STORED\r\n");

    // A frozen server answers nothing until thawed.
    m.signal(Signal::Stop);
    c.send(b"get h\r\n").unwrap();
    let mut out = Vec::new();
    assert_eq!(
        c.read_until_suffix(&mut out, b"END\r\n", Duration::from_millis(300)),
        ReadEnd::Timeout
    );
    m.signal(Signal::Cont);
    assert_eq!(
        c.read_until_suffix(&mut out, b"END\r\n", Duration::from_secs(5)),
        ReadEnd::Done
    );
    assert_eq!(out, b"VALUE h 0 1\r\nx\r\nEND\r\n");

    // SIGTERM ends it; the port is then closed.
    m.signal(Signal::Term);
    assert!(
        m.wait_exit(Duration::from_secs(10)).is_some(),
        "memcached ignored SIGTERM"
    );
    let mut rest = Vec::new();
    assert_eq!(c.read_to_eof(&mut rest, Duration::from_secs(5)), ReadEnd::Closed);

    // Restart on the same port: empty, answering.
    let port = m.port();
    m.restart();
    assert_eq!(m.port(), port);
    assert_eq!(m.connect().request(b"get h\r\n", b"END\r\n"), b"END\r\n");

    let pid = m.pid().expect("running");
    drop(m);
    assert!(!pid_alive(pid), "memcached {pid} survived drop");
    assert!(
        poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_err()
        }),
        "port {port} still accepts after drop"
    );
}

#[test]
fn ringcache_starts_accepts_and_stops_on_sigterm() {
    let mut r = ServerProcess::start(ServerKind::Ringcache, &["-m", "16", "-t", "1"]);
    assert!(TcpStream::connect(r.addr()).is_ok());
    r.signal(Signal::Term);
    let status = r.wait_exit(Duration::from_secs(10)).expect("ringcache ignored SIGTERM");
    assert!(
        status.success(),
        "ringcache exited with {status} after SIGTERM; log:\n{}",
        r.log()
    );
}

#[test]
fn ringcache_killed_on_drop_even_when_frozen() {
    let r = ServerProcess::start(ServerKind::Ringcache, &["-t", "1"]);
    let pid = r.pid().expect("running");
    r.signal(Signal::Stop);
    drop(r);
    assert!(!pid_alive(pid), "frozen ringcache {pid} survived drop");
}

#[test]
fn a_server_that_cannot_start_reports_why() {
    let err = ServerProcess::start_on(ServerKind::Memcached, free_port(), &["--no-such-flag".to_string()])
        .expect_err("memcached with a bad flag must not start");
    assert!(err.contains("exited"), "unexpected error: {err}");
}
