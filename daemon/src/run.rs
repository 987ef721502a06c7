//! The running daemon: the engine's [`Process`] on tokio sockets.
//!
//! Binding, health checks, reload and shutdown live in `tether_core::engine::process`, shared
//! with the simulator; this module names the tokio instance and adds the daemon's error context.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use tether_core::engine::runtime::Runtime;
use tether_core::engine::{LogSink, Process, ProcessView};

use crate::net::TokioNet;

/// A running daemon: the engine process on tokio sockets.
pub type Daemon = Process<TokioNet>;

/// What the stats listener reads: the runtime in force (it follows reloads) and the engine
/// context.
pub type DaemonView = ProcessView<TokioNet>;

/// Binds every frontend of `runtime` and starts serving and checking, splicing bulk transfers
/// through at most `runtime.pipes` pipes.
pub async fn start(runtime: Runtime, sink: Arc<dyn LogSink>) -> Result<Daemon> {
    start_threaded(runtime, sink, Vec::new()).await
}

/// As [`start`], accepting on the threads of `workers` too ([`crate::threads`]).
pub async fn start_threaded(
    runtime: Runtime,
    sink: Arc<dyn LogSink>,
    workers: Vec<tokio::runtime::Handle>,
) -> Result<Daemon> {
    crate::net::splice::set_max_pipes(runtime.pipes);
    crate::net::splice::set_pipe_size(runtime.pipe_size);
    Process::start_threaded(TokioNet, runtime, sink, workers)
        .await
        .context("starting the listeners")
}

/// Starts the peers service of `section` for the daemon's tables (HAProxy's peers protocol),
/// logging where it listens.
pub async fn start_peers(
    section: tether_core::config::peers::PeersSection,
    daemon: &Daemon,
    seed: u64,
) -> Result<tether_core::engine::peers::PeersService> {
    let name = section.name.clone();
    let local = section.local.clone();
    let service = tether_core::engine::peers::start(
        TokioNet,
        section,
        Arc::new(daemon.view()),
        daemon.context().clock,
        seed,
    )
    .await
    .with_context(|| format!("starting peers section {name}"))?;
    daemon.attach_peers(service.view());
    tracing::info!(section = %name, local = %local, addr = ?service.local_addr(), "peers ready");
    Ok(service)
}
