//! The `ringcache` binary: parse flags, set up logging, run the node until a signal.

use std::sync::Arc;

use clap::Parser;
use ringcache_server::config::Config;
use ringcache_server::server;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
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
        let node = Arc::new(server::build_node(&config).await?);
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = tx.send(true);
        });
        server::run(node, listener, rx).await;
        anyhow::Ok(())
    })
}
