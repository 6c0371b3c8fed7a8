//! The floor of a memcached-shaped server's CPU per request on this kernel: canned
//! replies (`get` answers a 100-byte value, `set` answers `STORED`), no store, no
//! runtime. It answers how much of a server's CPU per request no user code can save,
//! and whether io_uring lowers the kernel's share (docs/bench/issue15-quick/NOTES.md).
//!
//! - `floor epoll PORT`: mio (epoll, edge-triggered), one read and one write per
//!   readiness, as tokio does underneath ringcache.
//! - `floor uring PORT`: io_uring, a recv re-armed per request, replies sent as SQEs,
//!   one `io_uring_enter` per loop; `URING_FLAGS=defer` (single issuer, deferred task
//!   work) or `coop`.
//! - `floor multi PORT`: io_uring with a multishot recv per connection into provided
//!   buffers, single issuer and deferred task work.
//!
//! For unpipelined load only (`ringcache-bench load -d 1`): a connection's reply is
//! assumed sent whole before its next request arrives. Run it pinned like a server:
//! `taskset -c 1 bench/floor/target/release/floor multi 11311`.
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};

const VALUE: [u8; 100] = [b'x'; 100];

/// Answers every complete request in `buf[..len]`, appending replies to `out`;
/// returns the bytes consumed.
fn answer(buf: &[u8], out: &mut Vec<u8>) -> usize {
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") else {
            return at;
        };
        let line = &rest[..nl];
        let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
        match words.next() {
            Some(b"get") | Some(b"gets") => {
                for key in words {
                    out.extend_from_slice(b"VALUE ");
                    out.extend_from_slice(key);
                    out.extend_from_slice(b" 0 100\r\n");
                    out.extend_from_slice(&VALUE);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"END\r\n");
                at += nl + 2;
            }
            Some(b"set") => {
                let len: usize = line
                    .split(|&b| b == b' ')
                    .nth(4)
                    .and_then(|w| std::str::from_utf8(w).ok()?.parse().ok())
                    .unwrap_or(0);
                if rest.len() < nl + 2 + len + 2 {
                    return at;
                }
                out.extend_from_slice(b"STORED\r\n");
                at += nl + 2 + len + 2;
            }
            Some(b"version") => {
                out.extend_from_slice(b"VERSION 1.6.18\r\n");
                at += nl + 2;
            }
            _ => {
                out.extend_from_slice(b"END\r\n");
                at += nl + 2;
            }
        }
    }
}

struct Conn {
    buf: Vec<u8>,
    len: usize,
    out: Vec<u8>,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            buf: vec![0; 16384],
            len: 0,
            out: Vec::with_capacity(16384),
        }
    }
    fn consume(&mut self) {
        let used = answer(&self.buf[..self.len], &mut self.out);
        self.buf.copy_within(used..self.len, 0);
        self.len -= used;
    }
}

fn epoll(port: u16) {
    use mio::net::{TcpListener, TcpStream};
    use mio::{Events, Interest, Poll, Token};
    let mut poll = Poll::new().unwrap();
    let mut l = TcpListener::bind(format!("127.0.0.1:{port}").parse().unwrap()).unwrap();
    poll.registry()
        .register(&mut l, Token(usize::MAX), Interest::READABLE)
        .unwrap();
    let mut conns: Vec<Option<(TcpStream, Conn)>> = Vec::new();
    let mut events = Events::with_capacity(1024);
    loop {
        poll.poll(&mut events, None).unwrap();
        for ev in events.iter() {
            if ev.token() == Token(usize::MAX) {
                while let Ok((mut s, _)) = l.accept() {
                    s.set_nodelay(true).unwrap();
                    let t = conns.len();
                    poll.registry().register(&mut s, Token(t), Interest::READABLE).unwrap();
                    conns.push(Some((s, Conn::new())));
                }
                continue;
            }
            let t = ev.token().0;
            let Some((s, c)) = conns[t].as_mut() else { continue };
            // Read until a short read (edge-triggered: a short read drains the socket).
            let mut close = false;
            loop {
                match s.read(&mut c.buf[c.len..]) {
                    Ok(0) => {
                        close = true;
                        break;
                    }
                    Ok(n) => {
                        let full = c.len + n == c.buf.len();
                        c.len += n;
                        c.consume();
                        if !full {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        close = true;
                        break;
                    }
                }
            }
            if !c.out.is_empty() {
                if s.write_all(&c.out).is_err() {
                    close = true;
                }
                c.out.clear();
            }
            if close {
                conns[t] = None;
            }
        }
    }
}

/// Queues `e`, submitting first if the submission queue is full.
fn push(ring: &mut io_uring::IoUring, e: io_uring::squeue::Entry) {
    // Safety: every buffer an entry points at (a connection's, the provided pool)
    // lives as long as the ring loop.
    unsafe {
        while ring.submission().push(&e).is_err() {
            ring.submit().unwrap();
        }
    }
}

/// The io_uring loop. `multishot`: one multishot recv per connection into provided
/// buffers (copied into the connection's buffer); else a recv into the connection's
/// buffer re-armed after each completion.
fn uring(port: u16, multishot: bool) {
    use io_uring::{cqueue, opcode, types, IoUring};
    const ACCEPT: u64 = u64::MAX;
    const PROVIDE: u64 = u64::MAX - 1;
    const GROUP: u16 = 7;
    const BUFS: usize = 2048;
    const BUF: usize = 4096;
    let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let lfd = types::Fd(l.as_raw_fd());
    let flags = if multishot {
        "defer".to_string()
    } else {
        std::env::var("URING_FLAGS").unwrap_or_default()
    };
    let mut ring: IoUring = match flags.as_str() {
        "defer" => IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(4096),
        "coop" => IoUring::builder()
            .setup_coop_taskrun()
            .setup_single_issuer()
            .build(4096),
        _ => IoUring::new(4096),
    }
    .unwrap();
    let mut pool = vec![0u8; if multishot { BUFS * BUF } else { 0 }];
    let provide = |pool: &mut [u8], first: usize, n: usize| {
        let at = pool[first * BUF..].as_mut_ptr();
        opcode::ProvideBuffers::new(at, BUF as i32, n as u16, GROUP, first as u16)
            .build()
            .user_data(PROVIDE)
    };
    let accept = || {
        opcode::Accept::new(lfd, std::ptr::null_mut(), std::ptr::null_mut())
            .build()
            .user_data(ACCEPT)
    };
    // user_data: connection index * 2, plus 1 for a send.
    let arm = |ring: &mut IoUring, fd: RawFd, i: usize, c: &mut Conn| {
        let e = if multishot {
            opcode::RecvMulti::new(types::Fd(fd), GROUP).build()
        } else {
            let at = c.buf[c.len..].as_mut_ptr();
            opcode::Recv::new(types::Fd(fd), at, (c.buf.len() - c.len) as u32).build()
        };
        push(ring, e.user_data((i as u64) << 1));
    };
    if multishot {
        let e = provide(&mut pool, 0, BUFS);
        push(&mut ring, e);
    }
    push(&mut ring, accept());
    let mut conns: Vec<Option<(RawFd, Conn, bool)>> = Vec::new();
    loop {
        ring.submit_and_wait(1).unwrap();
        let cqes: Vec<(u64, i32, u32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        for (ud, res, cflags) in cqes {
            if ud == PROVIDE {
                continue;
            }
            if ud == ACCEPT {
                if res >= 0 {
                    let fd = res;
                    let one: libc::c_int = 1;
                    // Safety: a valid socket and a c_int option.
                    unsafe {
                        libc::setsockopt(
                            fd,
                            libc::IPPROTO_TCP,
                            libc::TCP_NODELAY,
                            (&one as *const libc::c_int).cast(),
                            4,
                        )
                    };
                    let i = conns.len();
                    conns.push(Some((fd, Conn::new(), false)));
                    let (_, c, _) = conns[i].as_mut().unwrap();
                    arm(&mut ring, fd, i, c);
                }
                push(&mut ring, accept());
                continue;
            }
            let i = (ud >> 1) as usize;
            let Some((fd, c, sending)) = conns[i].as_mut() else {
                continue;
            };
            let fd = *fd;
            if ud & 1 == 1 {
                // The whole reply went (unpipelined load: small replies on loopback).
                *sending = false;
                c.out.clear();
                continue;
            }
            if multishot && res == -libc::ENOBUFS {
                arm(&mut ring, fd, i, c);
                continue;
            }
            if res <= 0 {
                // Safety: the connection's own socket, closed once.
                unsafe { libc::close(fd) };
                conns[i] = None;
                continue;
            }
            let n = res as usize;
            if multishot {
                let bid = cqueue::buffer_select(cflags).unwrap() as usize;
                c.buf[c.len..c.len + n].copy_from_slice(&pool[bid * BUF..bid * BUF + n]);
                let e = provide(&mut pool, bid, 1);
                push(&mut ring, e);
            }
            c.len += n;
            c.consume();
            if !c.out.is_empty() && !*sending {
                *sending = true;
                let e = opcode::Send::new(types::Fd(fd), c.out.as_ptr(), c.out.len() as u32).build();
                push(&mut ring, e.user_data(((i as u64) << 1) | 1));
            }
            if !multishot || !cqueue::more(cflags) {
                arm(&mut ring, fd, i, c);
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args[2].parse().unwrap();
    match args[1].as_str() {
        "epoll" => epoll(port),
        "uring" => uring(port, false),
        "multi" => uring(port, true),
        _ => panic!("epoll or uring"),
    }
}
