//! The running daemon: listeners, health checks, graceful shutdown and reload.
//!
//! A reload builds a new [`Runtime`] (the caller passes the old one so stick tables carry over),
//! swaps each frontend under its already-bound socket, binds new addresses, stops removed ones
//! and restarts health checks. Established connections keep running on the backend they started
//! with.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tether_core::engine::flow::Context;
use tether_core::engine::health::check_server;
use tether_core::engine::listener::{serve, FrontendHandle, Listener};
use tether_core::engine::runtime::Runtime;
use tether_core::engine::{LogSink, Net};
use tether_core::ServerId;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::net::TokioNet;

struct Bound {
    frontend: FrontendHandle,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A running daemon.
pub struct Daemon {
    ctx: Arc<Context<TokioNet>>,
    global: Arc<Semaphore>,
    maxconn: usize,
    bound: BTreeMap<String, Bound>,
    checks_stop: watch::Sender<bool>,
    runtime: Arc<Runtime>,
    live: Arc<RwLock<Arc<Runtime>>>,
}

/// What the stats listener reads: the runtime in force (replaced on every reload) and the engine
/// context (clock, process counters). Cheap to clone; outlives reloads.
#[derive(Clone)]
pub struct DaemonView {
    runtime: Arc<RwLock<Arc<Runtime>>>,
    ctx: Arc<Context<TokioNet>>,
}

impl DaemonView {
    /// A view of a runtime that never changes (tests, tools).
    pub fn fixed(runtime: Arc<Runtime>, ctx: Arc<Context<TokioNet>>) -> Self {
        DaemonView {
            runtime: Arc::new(RwLock::new(runtime)),
            ctx,
        }
    }

    /// The runtime in force now.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The engine context: clock and process-wide counters.
    pub fn context(&self) -> &Arc<Context<TokioNet>> {
        &self.ctx
    }
}

impl Daemon {
    /// Binds every frontend and starts serving and checking.
    pub async fn start(runtime: Runtime, sink: Arc<dyn LogSink>) -> Result<Self> {
        let ctx = Arc::new(Context::new(TokioNet, sink));
        let (checks_stop, _) = watch::channel(false);
        let runtime = Arc::new(runtime);
        let mut d = Daemon {
            ctx,
            global: Arc::new(Semaphore::new(runtime.maxconn)),
            maxconn: runtime.maxconn,
            bound: BTreeMap::new(),
            checks_stop,
            live: Arc::new(RwLock::new(runtime.clone())),
            runtime,
        };
        d.bind_all().await?;
        d.start_checks();
        Ok(d)
    }

    /// The shared engine context (counters, clock).
    pub fn context(&self) -> &Arc<Context<TokioNet>> {
        &self.ctx
    }

    /// The current runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// A view that follows reloads, for the stats listener.
    pub fn view(&self) -> DaemonView {
        DaemonView {
            runtime: self.live.clone(),
            ctx: self.ctx.clone(),
        }
    }

    /// The bound address of each frontend, by frontend name.
    pub fn local_addrs(&self) -> BTreeMap<String, SocketAddr> {
        self.bound
            .values()
            .map(|b| {
                let name = b
                    .frontend
                    .read()
                    .map(|f| f.name.clone())
                    .unwrap_or_default();
                (name, b.addr)
            })
            .collect()
    }

    async fn bind_all(&mut self) -> Result<()> {
        let frontends = self.runtime.frontends.clone();
        let mut keep: Vec<String> = Vec::new();
        for fe in frontends {
            keep.push(fe.bind.clone());
            if let Some(b) = self.bound.get(&fe.bind) {
                // Same address: swap the frontend under the live socket.
                *b.frontend.write().unwrap_or_else(|e| e.into_inner()) = fe.clone();
                continue;
            }
            let socket = TokioNet
                .bind(&fe.bind)
                .await
                .with_context(|| format!("frontend {}: cannot bind {}", fe.name, fe.bind))?;
            let addr = socket.local_addr()?;
            let handle: FrontendHandle = Arc::new(RwLock::new(fe.clone()));
            let (stop, stop_rx) = watch::channel(false);
            let task = tokio::spawn(serve(
                self.ctx.clone(),
                Listener {
                    socket,
                    frontend: handle.clone(),
                },
                self.global.clone(),
                stop_rx,
            ));
            tracing::info!(frontend = %fe.name, %addr, backend = %fe.backend.name, "listening");
            self.bound.insert(
                fe.bind.clone(),
                Bound {
                    frontend: handle,
                    addr,
                    stop,
                    task,
                },
            );
        }
        let removed: Vec<String> = self
            .bound
            .keys()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        for k in removed {
            if let Some(b) = self.bound.remove(&k) {
                let _ = b.stop.send(true);
                let _ = b.task.await;
            }
        }
        Ok(())
    }

    fn start_checks(&mut self) {
        let (tx, rx) = watch::channel(false);
        let _ = self.checks_stop.send(true);
        self.checks_stop = tx;
        for be in self.runtime.backends.values() {
            for (i, s) in be.servers.iter().enumerate() {
                if s.check {
                    tokio::spawn(check_server(
                        TokioNet,
                        be.clone(),
                        ServerId(i as u32),
                        be.timeouts
                            .connect
                            .min(s.health.inter.max(Duration::from_secs(1))),
                        rx.clone(),
                    ));
                }
            }
        }
    }

    /// Applies a new runtime (built with the old one's tables). Established connections are
    /// untouched; if binding a new address fails, the error is returned and the old frontends
    /// keep serving.
    pub async fn reload(&mut self, runtime: Runtime) -> Result<()> {
        if runtime.maxconn != self.maxconn {
            if runtime.maxconn > self.maxconn {
                self.global.add_permits(runtime.maxconn - self.maxconn);
            } else {
                self.global.forget_permits(self.maxconn - runtime.maxconn);
            }
            self.maxconn = runtime.maxconn;
        }
        let old = std::mem::replace(&mut self.runtime, Arc::new(runtime));
        if let Err(e) = self.bind_all().await {
            self.runtime = old;
            self.bind_all().await.ok();
            return Err(e);
        }
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = self.runtime.clone();
        self.start_checks();
        Ok(())
    }

    /// Stops accepting, then waits up to `grace` for established connections to finish.
    /// Returns how many were still open when the grace period ended.
    pub async fn shutdown(self, grace: Duration) -> u64 {
        for b in self.bound.values() {
            let _ = b.stop.send(true);
        }
        for (_, b) in self.bound {
            let _ = b.task.await;
        }
        let _ = self.checks_stop.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let open = self.ctx.actconn.load(std::sync::atomic::Ordering::Relaxed);
            if open == 0 || tokio::time::Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
