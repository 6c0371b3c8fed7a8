//! Real server processes for tests: a ringcache node or a memcached, on a free 127.0.0.1 port.
//!
//! A [`ServerProcess`] owns its child process. It is started with a bounded wait until the
//! port accepts connections, can be sent signals (the cluster tests stop, freeze and thaw
//! nodes), can be restarted on the same port with the same flags, and is killed (SIGKILL +
//! reap) when dropped, also while a test is panicking. Each server's stdout and stderr go
//! to a log file in the temp directory; the log is printed when the server fails to start
//! or when it is dropped during a panic, and removed otherwise. A server whose log shows
//! a panic (one a connection task survived, say) fails the test when it is dropped.

use std::collections::HashSet;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::raw::RawConn;
use crate::tools;

/// How long a server may take from spawn to accepting connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How many times a start is retried with a new port when the child exits at once
/// (another process took the port between our probe and its bind).
const START_ATTEMPTS: usize = 3;

/// Ports handed out by this process, so two servers of one test never get the same port.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn fresh_port(probe: impl Fn() -> std::io::Result<u16>) -> u16 {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let set = guard.get_or_insert_with(HashSet::new);
    for _ in 0..100 {
        let port = probe().expect("cannot bind 127.0.0.1:0 to find a free port");
        if set.insert(port) {
            return port;
        }
    }
    panic!("no free port found on 127.0.0.1 after 100 probes");
}

/// A TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed out before.
pub fn free_port() -> u16 {
    fresh_port(|| Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port()))
}

/// A UDP port on 127.0.0.1 that was free a moment ago (for gossip addresses).
pub fn free_udp_port() -> u16 {
    fresh_port(|| Ok(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port()))
}

/// Polls `cond` every `interval` until it returns true or `timeout` passes; returns whether it held.
pub fn poll_until(timeout: Duration, interval: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(interval.min(deadline - now));
    }
}

/// Which server program to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// This workspace's `ringcache` binary (see [`ringcache_bin`]).
    Ringcache,
    /// The system's memcached (see [`memcached_bin`]).
    Memcached,
}

impl ServerKind {
    /// The kind that tests which "target a ringcache node" should start: ringcache, unless the
    /// environment variable `RINGCACHE_DIFF_AGAINST=memcached` asks to run them against memcached
    /// (the harness self-check: every such test must then pass).
    pub fn target() -> ServerKind {
        match std::env::var("RINGCACHE_DIFF_AGAINST").as_deref() {
            Ok("memcached") => ServerKind::Memcached,
            Ok("") | Ok("ringcache") | Err(_) => ServerKind::Ringcache,
            Ok(other) => panic!("RINGCACHE_DIFF_AGAINST must be `memcached` or `ringcache`, not `{other}`"),
        }
    }

    /// A short human name.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Ringcache => "ringcache",
            ServerKind::Memcached => "memcached",
        }
    }
}

/// The ringcache binary: `$RINGCACHE_BIN`, else `target/<profile>/ringcache` beside the test executable
/// (which lives in `target/<profile>/deps/`). Panics with a hint to build it when it is missing.
pub fn ringcache_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RINGCACHE_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "RINGCACHE_BIN={} is not a file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut candidates = Vec::new();
    for dir in exe.ancestors().skip(1).take(3) {
        candidates.push(dir.join("ringcache"));
    }
    for c in &candidates {
        if c.is_file() {
            return c.clone();
        }
    }
    panic!(
        "the ringcache binary was not found (looked at {:?}); build it first with \
         `cargo build -p ringcache-server` (or `cargo build --workspace --all-targets`), \
         or point RINGCACHE_BIN at it",
        candidates
    );
}

/// The memcached binary: `$MEMCACHED_BIN`, else `memcached` on `PATH`. Panics with an install hint.
pub fn memcached_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MEMCACHED_BIN") {
        return PathBuf::from(p);
    }
    tools::require_command("memcached", "apt-get install memcached")
}

/// Signals a test may send to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Polite stop: ringcache leaves the cluster and drains.
    Term,
    /// Interrupt (Ctrl-C); ringcache treats it like `Term`.
    Int,
    /// Immediate death, no cleanup.
    Kill,
    /// Freeze the process (it stays alive but answers nothing, like a hung node).
    Stop,
    /// Thaw a frozen process.
    Cont,
}

impl Signal {
    fn raw(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Int => libc::SIGINT,
            Signal::Kill => libc::SIGKILL,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
        }
    }
}

static LOG_SEQ: AtomicU64 = AtomicU64::new(0);

/// One running server process; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    kind: ServerKind,
    port: u16,
    /// Flags other than the listen address and port (which the harness adds).
    args: Vec<String>,
    child: Option<Child>,
    log_path: PathBuf,
}

impl ServerProcess {
    /// Starts the ringcache binary on a free port with extra flags (`-m 64 -t 2`, cluster flags...).
    pub fn ringcache(args: &[&str]) -> ServerProcess {
        ServerProcess::start(ServerKind::Ringcache, args)
    }

    /// Starts memcached on a free port with extra flags.
    pub fn memcached(args: &[&str]) -> ServerProcess {
        ServerProcess::start(ServerKind::Memcached, args)
    }

    /// Starts a server of `kind` on a free port, retrying with another port if the child dies
    /// at once; panics (with the server's log) if it never accepts connections.
    pub fn start(kind: ServerKind, args: &[&str]) -> ServerProcess {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut last_err = String::new();
        for _ in 0..START_ATTEMPTS {
            match ServerProcess::start_on(kind, free_port(), &args) {
                Ok(p) => return p,
                Err(e) => last_err = e,
            }
        }
        panic!(
            "{} did not start after {START_ATTEMPTS} attempts: {last_err}",
            kind.name()
        );
    }

    /// Starts a server of `kind` on `port`; returns the reason (with the log) if it exits or
    /// does not accept connections within [`START_TIMEOUT`].
    pub fn start_on(kind: ServerKind, port: u16, args: &[String]) -> Result<ServerProcess, String> {
        let seq = LOG_SEQ.fetch_add(1, Ordering::Relaxed);
        let log_path = std::env::temp_dir().join(format!(
            "ringcache-test-{}-{}-{port}-{seq}.log",
            std::process::id(),
            kind.name()
        ));
        let mut p = ServerProcess {
            kind,
            port,
            args: args.to_vec(),
            child: None,
            log_path,
        };
        p.spawn()?;
        Ok(p)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let (program, mut argv) = match self.kind {
            // Gossip on an ephemeral port unless the test chose one, so that parallel
            // tests never collide on the default (client port + 1000).
            ServerKind::Ringcache if !self.args.iter().any(|a| a == "--gossip-addr") => (
                ringcache_bin(),
                vec!["--gossip-addr".to_string(), "127.0.0.1:0".to_string()],
            ),
            ServerKind::Ringcache => (ringcache_bin(), vec![]),
            ServerKind::Memcached => {
                let mut v: Vec<String> = vec![];
                // memcached refuses to run as root unless told which user to run as.
                if crate::sys::is_root() {
                    v.extend(["-u".into(), "root".into()]);
                }
                v.extend(["-U".into(), "0".into()]);
                (memcached_bin(), v)
            }
        };
        argv.extend(["-p".into(), self.port.to_string(), "-l".into(), "127.0.0.1".into()]);
        argv.extend(self.args.iter().cloned());
        let log = File::create(&self.log_path).map_err(|e| format!("create {}: {e}", self.log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&program)
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn {} {:?}: {e}", program.display(), argv))?;
        self.child = Some(child);
        let addr = self.addr();
        let mut exited = None;
        let ready = poll_until(START_TIMEOUT, Duration::from_millis(10), || {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                exited = Some(status);
                return true;
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        let why = match (exited, ready) {
            (None, true) => return Ok(()),
            (Some(status), _) => format!("exited with {status}"),
            (None, false) => format!("did not accept connections on {addr} within {START_TIMEOUT:?}"),
        };
        self.kill();
        Err(format!(
            "{} {:?} {why}; its log:\n{}",
            program.display(),
            argv,
            self.log()
        ))
    }

    /// Which program this is.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// The flags it was started with (without `-p`/`-l`).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The child's process id, if it has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Everything the server wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Path of the server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Sends `sig` to the process. Panics if it has already been reaped.
    pub fn signal(&self, sig: Signal) {
        let pid = self.pid().expect("signal: the server process is not running");
        // A pid we spawned and have not reaped, so it cannot have been reused.
        if let Err(e) = crate::sys::kill(pid as libc::pid_t, sig.raw()) {
            panic!("kill({pid}, {sig:?}) failed: {e}");
        }
        if sig == Signal::Stop {
            // kill(2) returns before the stop takes effect; a test that goes on to send
            // requests must find the process stopped, so wait (bounded) for state T.
            let stat = format!("/proc/{pid}/stat");
            poll_until(Duration::from_secs(5), Duration::from_millis(1), || {
                std::fs::read_to_string(&stat)
                    .ok()
                    .and_then(|s| s.rfind(')').and_then(|i| s[i + 1..].trim_start().chars().next()))
                    .is_some_and(|state| state == 'T' || state == 't')
            });
        }
    }

    /// Whether the process is still alive (a frozen process counts as alive).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits up to `timeout` for the process to exit; returns its status, or `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        let child = self.child.as_mut()?;
        poll_until(timeout, Duration::from_millis(10), || match child.try_wait() {
            Ok(Some(s)) => {
                status = Some(s);
                true
            }
            Ok(None) => false,
            Err(_) => true,
        });
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Kills (SIGKILL) and reaps the process if it is still there.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the process and starts it again on the same port with the same flags
    /// (ringcache can then rejoin its cluster). Panics with the log if it does not come back.
    pub fn restart(&mut self) {
        self.kill();
        // The old socket may linger briefly; retry until the port can be bound again.
        let mut last = String::new();
        let ok = poll_until(START_TIMEOUT, Duration::from_millis(50), || match self.spawn() {
            Ok(()) => true,
            Err(e) => {
                last = e;
                false
            }
        });
        assert!(ok, "{} did not restart on port {}: {last}", self.kind.name(), self.port);
    }

    /// A fresh raw connection to the server.
    pub fn connect(&self) -> RawConn {
        RawConn::connect(self.addr())
            .unwrap_or_else(|e| panic!("connect to {} at {}: {e}", self.kind.name(), self.addr()))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- log of {} on port {} ({}) ---\n{}",
                self.kind.name(),
                self.port,
                self.log_path.display(),
                self.log()
            );
        } else {
            // A panic inside a server (a connection task, say) need not take the
            // process down or show in any reply: fail the test that caused it.
            let log = self.log();
            if log.contains("panicked at") {
                panic!(
                    "{} on port {} panicked; its log ({}):\n{log}",
                    self.kind.name(),
                    self.port,
                    self.log_path.display()
                );
            }
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}
