//! A raw TCP client for protocol tests: send exact bytes, read a reply until a condition,
//! end of stream, or a quiet period, never past a deadline.
//!
//! Nothing here parses the protocol; the caller decides when a reply is complete (a suffix
//! such as `END\r\n`, a count of sentinel lines, or the server closing the connection).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long one connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one write may block (a server that stopped reading must not hang a test).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a read stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// The caller's condition held.
    Done,
    /// The server closed the connection (FIN or reset).
    Closed,
    /// Nothing arrived for the idle period (only from [`RawConn::read_idle`]).
    Idle,
    /// The deadline passed first.
    Timeout,
}

/// A blocking connection with bounded reads and writes. Nagle is off, so each [`RawConn::send`]
/// leaves as its own segment (split-write tests rely on that).
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
}

impl RawConn {
    /// Connects to `addr` with a bounded connect.
    pub fn connect(addr: SocketAddr) -> std::io::Result<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok(RawConn { stream })
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads into `out` until `done(out)` holds, the server closes, or `timeout` passes.
    /// `done` is checked on everything in `out`, including bytes that were there before.
    pub fn read_until(&mut self, out: &mut Vec<u8>, timeout: Duration, done: impl Fn(&[u8]) -> bool) -> ReadEnd {
        let deadline = Instant::now() + timeout;
        self.read_loop(out, deadline, None, done)
    }

    /// Reads until `out` ends with `suffix`.
    pub fn read_until_suffix(&mut self, out: &mut Vec<u8>, suffix: &[u8], timeout: Duration) -> ReadEnd {
        self.read_until(out, timeout, |b| b.ends_with(suffix))
    }

    /// Reads until the server closes the connection.
    pub fn read_to_eof(&mut self, out: &mut Vec<u8>, timeout: Duration) -> ReadEnd {
        self.read_until(out, timeout, |_| false)
    }

    /// Reads until nothing arrives for `idle` (or the server closes, or `timeout` passes).
    pub fn read_idle(&mut self, out: &mut Vec<u8>, idle: Duration, timeout: Duration) -> ReadEnd {
        let deadline = Instant::now() + timeout;
        self.read_loop(out, deadline, Some(idle), |_| false)
    }

    /// Sends `request` and returns the reply up to and including `suffix`; panics on
    /// close or timeout (for tests that only need a working exchange).
    pub fn request(&mut self, request: &[u8], suffix: &[u8]) -> Vec<u8> {
        self.send(request).expect("send");
        let mut out = Vec::new();
        let end = self.read_until_suffix(&mut out, suffix, Duration::from_secs(10));
        assert_eq!(
            end,
            ReadEnd::Done,
            "no reply ending in {:?} to {:?}; got {:?}",
            String::from_utf8_lossy(suffix),
            String::from_utf8_lossy(request),
            String::from_utf8_lossy(&out)
        );
        out
    }

    fn read_loop(
        &mut self,
        out: &mut Vec<u8>,
        deadline: Instant,
        idle: Option<Duration>,
        done: impl Fn(&[u8]) -> bool,
    ) -> ReadEnd {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if done(out) {
                return ReadEnd::Done;
            }
            let now = Instant::now();
            if now >= deadline {
                return ReadEnd::Timeout;
            }
            let mut wait = deadline - now;
            if let Some(idle) = idle {
                wait = wait.min(idle);
            }
            // A zero read timeout means "block forever"; never pass one.
            let _ = self.stream.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
            match self.stream.read(&mut chunk) {
                Ok(0) => return ReadEnd::Closed,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if idle.is_some() && Instant::now() < deadline {
                        return ReadEnd::Idle;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return ReadEnd::Closed,
            }
        }
    }
}
