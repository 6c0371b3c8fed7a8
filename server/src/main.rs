//! The `ringcache` binary: parse flags, set up logging, run the node until a signal.

use std::sync::Arc;

use clap::Parser;
use ringcache_server::config::Config;
use ringcache_server::{admin, server};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

/// glibc malloc, with tokio's 128-byte aligned tasks and I/O registrations packed in
/// slabs (see `sys::Allocator`): what an idle connection costs.
#[global_allocator]
static ALLOC: ringcache_server::sys::Allocator = ringcache_server::sys::Allocator;

/// Allocations at least this large get their own `mmap`: store segments and big
/// items' chunks (at most 64 KiB) stay on the heap, large connection buffers do not.
/// glibc compares the block with its 8-byte header, rounded up to 16 (65,552 bytes
/// for a 64 KiB segment), and a block of its own is rounded up to whole pages: at
/// 64 KiB + 1 every segment was a mapping of 68 KiB, 6% more RSS than `-m` counted.
const MMAP_THRESHOLD: libc::c_int = 64 * 1024 + 4096;

/// Fixes glibc malloc's mmap threshold. By default glibc raises it (up to 32 MiB)
/// every time a large block is freed, after which large blocks (connection buffers
/// grown for a large value) come from the heap, where holes between them and the
/// store's segments keep freed memory resident: a workload alternating huge values
/// and small items then ends with an RSS several times `-m`. With a fixed threshold
/// every large block is its own mapping, returned to the kernel when it is freed.
fn fix_mmap_threshold() {
    ringcache_server::sys::set_mmap_threshold(MMAP_THRESHOLD);
}

fn main() -> anyhow::Result<()> {
    fix_mmap_threshold();
    let config = Config::parse();
    let default_level = match config.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)))
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: not in files, `docker logs`, `kubectl logs`.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Handlers first: a signal that arrives while the node starts must still mean
        // "shut down cleanly", not the default immediate death.
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let listener = server::bind(&config).await?;
        let admin = match config.admin_addr {
            Some(addr) => Some(admin::bind(addr).await?),
            None => None,
        };
        let node = Arc::new(server::build_node(&config).await?);
        let (tx, rx) = tokio::sync::watch::channel(false);
        // The admin port answers until the node has drained (/readyz says 503 meanwhile).
        let (admin_stop, admin_rx) = tokio::sync::watch::channel(false);
        if let Some(admin) = admin {
            tokio::spawn(admin::serve(node.clone(), admin, admin_rx));
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = tx.send(true);
        });
        server::run(node, listener, rx).await;
        let _ = admin_stop.send(true);
        anyhow::Ok(())
    })
}
