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

/// Binds every frontend of `runtime` and starts serving and checking.
pub async fn start(runtime: Runtime, sink: Arc<dyn LogSink>) -> Result<Daemon> {
    Process::start(TokioNet, runtime, sink)
        .await
        .context("starting the listeners")
}
