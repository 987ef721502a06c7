//! One balancer process on any network: its listeners, health checks, reload and shutdown.
//!
//! The daemon runs a `Process<TokioNet>`, the simulator a `Process<TurmoilNet>`; both bind,
//! check, reload and stop through this code, so what the simulator predicts is what the daemon
//! does. A reload binds the addresses the new [`Runtime`] adds *before* changing anything, then
//! swaps each frontend under its live socket, stops the listeners of removed addresses, adjusts
//! the global `maxconn` permits and restarts the health checks against the new backends.
//! Established connections keep the frontend and backend they started with.
//!
//! Tasks are spawned on the runtime the process started on (a handle kept at start), so the
//! simulator can apply a reload between simulation steps, outside the balancer host's runtime.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::agent::check_agent;
use super::expiry::purge_tables;
use super::flow::Context;
use super::frontend::Frontend;
use super::health::check_server;
use super::listener::{serve, FrontendHandle, Listener};
use super::log::LogSink;
use super::net::Net;
use super::peers::PeersView;
use super::resolve::{init_addresses, run_section, users_of};
use super::runtime::Runtime;
use super::track::follow_track;
use crate::ServerId;

/// Why a process could not start or reload. After a failed reload the old configuration keeps
/// serving, untouched.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A frontend's address could not be bound (in use, not local, malformed).
    #[error("frontend {frontend}: cannot bind {address}")]
    Bind {
        /// The frontend.
        frontend: String,
        /// The address it asked for.
        address: String,
        /// What the network said.
        #[source]
        source: io::Error,
    },
    /// [`Process::reload_bound`] was given a frontend on an address not bound yet.
    #[error("frontend {frontend}: {address} is not bound yet; only an awaited reload can bind it")]
    NotBound {
        /// The frontend.
        frontend: String,
        /// Its address.
        address: String,
    },
}

/// A stop signal for a group of tasks: each holds a receiver and ends when it turns true or
/// when the signal is dropped (so a dropped [`Process`] leaves no task behind).
#[derive(Debug)]
struct Stop(watch::Sender<bool>);

impl Stop {
    fn new() -> Self {
        Stop(watch::channel(false).0)
    }

    fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }

    fn fire(&self) {
        self.0.send_replace(true);
    }
}

/// An address's listening sockets (one per accepting thread, the first on the process's own
/// runtime) and the tasks accepting on them.
struct Bound<N: Net> {
    sockets: Vec<Arc<N::Listener>>,
    frontend: FrontendHandle,
    addr: SocketAddr,
    stop: Stop,
    tasks: Vec<JoinHandle<()>>,
}

/// Sockets bound for a runtime (one per accepting thread), not yet serving.
struct Fresh<N: Net> {
    sockets: Vec<N::Listener>,
    addr: SocketAddr,
}

/// A running balancer: the engine context, the global `maxconn`, the bound listeners by
/// address, the health checks and the configuration in force.
pub struct Process<N: Net> {
    ctx: Arc<Context<N>>,
    spawner: Handle,
    /// The runtimes of the other accepting threads: each accepts on a listener of its own per
    /// address and runs the connections it accepts.
    workers: Vec<Handle>,
    global: Arc<Semaphore>,
    maxconn: usize,
    bound: BTreeMap<String, Bound<N>>,
    checks: Stop,
    runtime: Arc<Runtime>,
    live: Arc<RwLock<Arc<Runtime>>>,
    peers: Arc<OnceLock<PeersView>>,
}

/// What the stats server and the simulator's probes read: the runtime in force (it follows
/// reloads) and the engine context (clock, process counters). Cheap to clone; outlives reloads.
pub struct ProcessView<N: Net> {
    runtime: Arc<RwLock<Arc<Runtime>>>,
    ctx: Arc<Context<N>>,
    peers: Arc<OnceLock<PeersView>>,
}

impl<N: Net> Clone for ProcessView<N> {
    fn clone(&self) -> Self {
        ProcessView {
            runtime: self.runtime.clone(),
            ctx: self.ctx.clone(),
            peers: self.peers.clone(),
        }
    }
}

impl<N: Net> ProcessView<N> {
    /// A view of a runtime that never changes (tests, tools).
    pub fn fixed(runtime: Arc<Runtime>, ctx: Arc<Context<N>>) -> Self {
        ProcessView {
            runtime: Arc::new(RwLock::new(runtime)),
            ctx,
            peers: Arc::default(),
        }
    }

    /// The peers service's status, once one runs for this process.
    pub fn peers(&self) -> Option<&PeersView> {
        self.peers.get()
    }

    /// The runtime in force now.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The engine context: clock and process-wide counters.
    pub fn context(&self) -> &Arc<Context<N>> {
        &self.ctx
    }
}

impl<N: Net> Process<N> {
    /// Binds every frontend of `runtime` on `net`, then starts accepting and checking. Must be
    /// called inside the tokio runtime the process is to run on.
    pub async fn start(
        net: N,
        runtime: Runtime,
        sink: Arc<dyn LogSink>,
    ) -> Result<Self, ProcessError> {
        Self::start_threaded(net, runtime, sink, Vec::new()).await
    }

    /// As [`Process::start`], accepting on `workers` (the runtimes of other threads) too, as
    /// HAProxy's `nbthread`: every address gets a listener per thread ([`Net::bind_sibling`]),
    /// each thread runs the connections it accepts, and everything else (checks, expiry,
    /// reloads) runs on the calling runtime. Connections share the stick tables, so a session
    /// learned on one thread is found on every other.
    pub async fn start_threaded(
        net: N,
        runtime: Runtime,
        sink: Arc<dyn LogSink>,
        workers: Vec<Handle>,
    ) -> Result<Self, ProcessError> {
        let runtime = Arc::new(runtime);
        let mut process = Process {
            ctx: Arc::new(Context::with_threads(net, sink, 1 + workers.len())),
            spawner: Handle::current(),
            workers,
            global: Arc::new(Semaphore::new(runtime.maxconn)),
            maxconn: runtime.maxconn,
            bound: BTreeMap::new(),
            checks: Stop::new(),
            live: Arc::new(RwLock::new(runtime.clone())),
            peers: Arc::default(),
            runtime: runtime.clone(),
        };
        let fresh = process.bind_new(&runtime).await?;
        init_addresses(&process.ctx.net, &runtime).await;
        process.commit(runtime, fresh);
        Ok(process)
    }

    /// Shows the peers service's status on this process's views (stats pages); once.
    pub fn attach_peers(&self, view: PeersView) {
        let _ = self.peers.set(view);
    }

    /// The engine context shared by every connection (counters, clock).
    pub fn context(&self) -> &Arc<Context<N>> {
        &self.ctx
    }

    /// The runtime in force.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// A view that follows reloads, for the stats server.
    pub fn view(&self) -> ProcessView<N> {
        ProcessView {
            runtime: self.live.clone(),
            ctx: self.ctx.clone(),
            peers: self.peers.clone(),
        }
    }

    /// The bound address of each frontend, by frontend name (the port chosen for `:0`).
    pub fn local_addrs(&self) -> BTreeMap<String, SocketAddr> {
        self.bound
            .values()
            .map(|b| (read(&b.frontend).name.to_string(), b.addr))
            .collect()
    }

    /// The listening sockets by configured address (`bind`), for handing over to a successor
    /// process (a hitless upgrade): it accepts on the very same sockets, so no connection
    /// arriving during the switch is refused. An address's sockets come in thread order.
    pub fn listeners(&self) -> Vec<(String, Arc<N::Listener>)> {
        self.bound
            .iter()
            .flat_map(|(bind, b)| b.sockets.iter().map(|s| (bind.clone(), s.clone())))
            .collect()
    }

    /// Applies a new runtime (built with the old one's tables, see
    /// [`build`](super::runtime::build)). New addresses are bound first: if one fails, the
    /// error is returned and the old configuration keeps serving, unchanged. Returns once the
    /// listeners of removed addresses have closed their sockets.
    pub async fn reload(&mut self, runtime: Runtime) -> Result<(), ProcessError> {
        let runtime = Arc::new(runtime);
        let fresh = self.bind_new(&runtime).await?;
        init_addresses(&self.ctx.net, &runtime).await;
        for task in self.commit(runtime, fresh) {
            let _ = task.await;
        }
        Ok(())
    }

    /// A reload that binds nothing, so it needs no await: every frontend of `runtime` must be
    /// on an address already bound. The simulator applies its admin operations this way,
    /// between simulation steps. Removed listeners close on their own, soon after.
    pub fn reload_bound(&mut self, runtime: Runtime) -> Result<(), ProcessError> {
        if let Some(fe) = runtime
            .frontends
            .iter()
            .find(|fe| !self.bound.contains_key(&fe.bind))
        {
            return Err(ProcessError::NotBound {
                frontend: fe.name.to_string(),
                address: fe.bind.clone(),
            });
        }
        let _closing = self.commit(Arc::new(runtime), BTreeMap::new());
        Ok(())
    }

    /// Stops accepting and checking, then waits up to `grace` for established connections to
    /// finish. Returns how many were still open when the grace period ended.
    pub async fn shutdown(self, grace: Duration) -> u64 {
        self.checks.fire();
        for b in self.bound.values() {
            b.stop.fire();
        }
        for task in self.bound.into_values().flat_map(|b| b.tasks) {
            let _ = task.await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let open = self.ctx.actconn.load(Ordering::Relaxed);
            if open == 0 || tokio::time::Instant::now() >= deadline {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Binds the addresses of `runtime` that are not bound yet. Nothing else changes, so on
    /// error the process is as it was (the sockets bound so far close when dropped).
    async fn bind_new(
        &self,
        runtime: &Runtime,
    ) -> Result<BTreeMap<String, Fresh<N>>, ProcessError> {
        let mut fresh = BTreeMap::new();
        for fe in &runtime.frontends {
            if self.bound.contains_key(&fe.bind) || fresh.contains_key(&fe.bind) {
                continue;
            }
            let bind_error = |source| ProcessError::Bind {
                frontend: fe.name.to_string(),
                address: fe.bind.clone(),
                source,
            };
            let first = if self.workers.is_empty() {
                self.ctx.net.bind(&fe.bind).await
            } else {
                self.ctx.net.bind_shared(&fe.bind).await
            };
            let first = first.map_err(bind_error)?;
            let addr = N::local_addr(&first).map_err(bind_error)?;
            let mut sockets = vec![first];
            sockets.extend(self.siblings(fe, &sockets[0]));
            for socket in &sockets {
                if fe.defer_accept {
                    N::defer_accept(socket).map_err(bind_error)?;
                }
            }
            fresh.insert(fe.bind.clone(), Fresh { sockets, addr });
        }
        Ok(fresh)
    }

    /// The other threads' listeners on `first`'s address, each registered with its thread's
    /// runtime. A thread that cannot have one leaves the address to the threads before it.
    fn siblings(&self, fe: &Frontend, first: &N::Listener) -> Vec<N::Listener> {
        let mut sockets = Vec::new();
        for worker in &self.workers {
            let _in_worker = worker.enter();
            match self.ctx.net.bind_sibling(&fe.bind, first) {
                Ok(s) => sockets.push(s),
                Err(error) => {
                    tracing::warn!(frontend = %fe.name, address = %fe.bind, %error,
                        threads = 1 + sockets.len(), "cannot add a listener per thread; fewer threads accept here");
                    break;
                }
            }
        }
        sockets
    }

    /// Puts `runtime` in force with the sockets `fresh` bound for it. Returns the tasks of the
    /// listeners it stopped, which end as soon as they next run.
    fn commit(
        &mut self,
        runtime: Arc<Runtime>,
        mut fresh: BTreeMap<String, Fresh<N>>,
    ) -> Vec<JoinHandle<()>> {
        self.set_maxconn(runtime.maxconn);
        self.runtime = runtime.clone();
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = runtime.clone();
        self.restart_checks();
        for fe in &runtime.frontends {
            if let Some(b) = self.bound.get(&fe.bind) {
                // Same address: the new frontend takes over the live socket.
                *b.frontend.write().unwrap_or_else(|e| e.into_inner()) = fe.clone();
            } else if let Some(f) = fresh.remove(&fe.bind) {
                let bound = self.listen(fe, f);
                self.bound.insert(fe.bind.clone(), bound);
            }
        }
        let removed: Vec<String> = self
            .bound
            .keys()
            .filter(|addr| !runtime.frontends.iter().any(|fe| &fe.bind == *addr))
            .cloned()
            .collect();
        let mut stopped = Vec::new();
        for addr in removed {
            if let Some(b) = self.bound.remove(&addr) {
                tracing::info!(%addr, "listener removed by reload");
                b.stop.fire();
                stopped.extend(b.tasks);
            }
        }
        stopped
    }

    /// Starts accepting on freshly bound sockets for `fe`, each on its thread.
    fn listen(&self, fe: &Arc<Frontend>, fresh: Fresh<N>) -> Bound<N> {
        let frontend: FrontendHandle = Arc::new(RwLock::new(fe.clone()));
        let stop = Stop::new();
        let sockets: Vec<_> = fresh.sockets.into_iter().map(Arc::new).collect();
        let threads = std::iter::once(&self.spawner).chain(&self.workers);
        let tasks = (sockets.iter().zip(threads).enumerate())
            .map(|(thread, (socket, on))| {
                on.spawn(serve(
                    self.ctx.clone(),
                    Listener {
                        socket: socket.clone(),
                        frontend: frontend.clone(),
                        thread,
                    },
                    self.global.clone(),
                    stop.subscribe(),
                ))
            })
            .collect();
        tracing::info!(frontend = %fe.name, addr = %fresh.addr, backend = %fe.backend.name, threads = sockets.len(), "listening");
        Bound {
            sockets,
            frontend,
            addr: fresh.addr,
            stop,
            tasks,
        }
    }

    /// Grows or shrinks the global connection permits to `maxconn`. Shrinking takes back free
    /// permits only; connections above the new limit finish normally.
    fn set_maxconn(&mut self, maxconn: usize) {
        if maxconn > self.maxconn {
            self.global.add_permits(maxconn - self.maxconn);
        } else if maxconn < self.maxconn {
            self.global.forget_permits(self.maxconn - maxconn);
        }
        self.maxconn = maxconn;
    }

    /// Stops the checks, resolvers and table expiry of the previous runtime and starts those of
    /// the current one: a check per checked server, a resolver per `[[resolvers]]` section in
    /// use (in configuration order, so a simulation replays exactly), one expiry task.
    fn restart_checks(&mut self) {
        self.checks.fire();
        self.checks = Stop::new();
        self.spawner.spawn(purge_tables(
            self.ctx.clock,
            self.runtime.backends.values().cloned().collect(),
            self.checks.subscribe(),
        ));
        for backend in self.runtime.backends.values() {
            for (i, server) in backend.servers.iter().enumerate() {
                let id = ServerId(i as u32);
                if server.check {
                    self.spawner.spawn(check_server(
                        self.ctx.net.clone(),
                        backend.clone(),
                        id,
                        self.ctx.sink.clone(),
                        self.checks.subscribe(),
                    ));
                }
                if server.agent.is_some() {
                    self.spawner.spawn(check_agent(
                        self.ctx.net.clone(),
                        backend.clone(),
                        id,
                        self.ctx.sink.clone(),
                        self.checks.subscribe(),
                    ));
                }
                let tracked = (server.track.as_ref())
                    .and_then(|(b, s)| self.runtime.backends.get(b).map(|b| (b, s)))
                    .and_then(|(b, s)| b.server_id(s).map(|t| (b.clone(), t)));
                if let Some(tracked) = tracked {
                    self.spawner.spawn(follow_track(
                        backend.clone(),
                        id,
                        tracked,
                        self.ctx.sink.clone(),
                        self.checks.subscribe(),
                    ));
                }
            }
        }
        for section in &self.runtime.resolvers {
            let users = users_of(&self.runtime, &section.name);
            if users.is_empty() {
                continue;
            }
            self.spawner.spawn(run_section(
                self.ctx.net.clone(),
                section.clone(),
                users,
                self.runtime.dns_seed,
                self.checks.subscribe(),
            ));
        }
    }
}

fn read(h: &FrontendHandle) -> Arc<Frontend> {
    h.read().unwrap_or_else(|e| e.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;
    use crate::config;
    use crate::engine::log::ConnectionRecord;
    use crate::engine::runtime::build;
    use crate::engine::testnet::MemNet;

    /// Keeps the server each connection went to.
    #[derive(Default)]
    struct Routes(Mutex<Vec<Option<Arc<str>>>>);

    impl LogSink for Routes {
        fn record(&self, rec: &ConnectionRecord) {
            self.0.lock().unwrap().push(rec.server.clone());
        }
    }

    /// One frontend per address in `binds`, all to backend `app` with unchecked `servers`
    /// (name, address).
    fn runtime(
        maxconn: u32,
        binds: &[&str],
        servers: &[(&str, &str)],
        previous: Option<&Runtime>,
    ) -> Runtime {
        let mut text = format!("[global]\nmaxconn = {maxconn}\n");
        for (i, b) in binds.iter().enumerate() {
            text +=
                &format!("[[frontend]]\nname = \"fe{i}\"\nbind = [\"{b}\"]\nbackend = \"app\"\n");
        }
        text += "[[backend]]\nname = \"app\"\n";
        for (name, addr) in servers {
            text += &format!(
                "[[backend.server]]\nname = \"{name}\"\naddress = \"{addr}\"\ncheck = false\n"
            );
        }
        let config = config::load_toml("test.toml", &text).expect("test config loads");
        build(&config, previous).expect("test config builds")
    }

    /// Connects to `addr`, sends a non-TLS byte (routed at once) and returns the open stream.
    async fn open(net: &MemNet, addr: &str) -> DuplexStream {
        let mut s = net.connect(addr).await.expect("frontend answers");
        s.write_all(b"x").await.unwrap();
        s
    }

    /// The name the server behind `s` greeted with, or `None` if nothing came within 1 s.
    async fn greeting(s: &mut DuplexStream) -> Option<String> {
        let mut buf = [0u8; 16];
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }

    async fn route(net: &MemNet, addr: &str) -> Option<String> {
        greeting(&mut open(net, addr).await).await
    }

    #[tokio::test(start_paused = true)]
    async fn maxconn_pauses_accepting_instead_of_rejecting() {
        let net = MemNet::default();
        let _s1 = net.server("10.0.0.1:80", "s1").await;
        let rt = runtime(1, &["127.0.0.1:8000"], &[("s1", "10.0.0.1:80")], None);
        let p = Process::start(net.clone(), rt, Arc::new(Routes::default()))
            .await
            .unwrap();
        let mut first = open(&net, "127.0.0.1:8000").await;
        assert_eq!(greeting(&mut first).await.as_deref(), Some("s1"));
        // At the limit the second client waits in the listen queue: not refused, not served.
        let mut second = open(&net, "127.0.0.1:8000").await;
        assert_eq!(greeting(&mut second).await, None, "served above maxconn");
        assert_eq!(p.runtime().frontends[0].accepted.load(Ordering::Relaxed), 1);
        drop(first);
        assert_eq!(
            greeting(&mut second).await.as_deref(),
            Some("s1"),
            "never accepted"
        );
        assert_eq!(p.runtime().frontends[0].accepted.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn reload_keeps_the_socket_and_swaps_the_frontend() {
        let net = MemNet::default();
        let _s1 = net.server("10.0.0.1:80", "s1").await;
        let _s2 = net.server("10.0.0.2:80", "s2").await;
        let rt = runtime(10, &["127.0.0.1:8000"], &[("s1", "10.0.0.1:80")], None);
        let mut p = Process::start(net.clone(), rt, Arc::new(Routes::default()))
            .await
            .unwrap();
        let before = p.local_addrs();
        let mut held = open(&net, "127.0.0.1:8000").await;
        assert_eq!(greeting(&mut held).await.as_deref(), Some("s1"));
        let view = p.view();
        let old = p.runtime().clone();
        // Rebinding the address would fail: it is still bound by the running listener.
        let new = runtime(
            10,
            &["127.0.0.1:8000"],
            &[("s2", "10.0.0.2:80")],
            Some(p.runtime()),
        );
        p.reload(new).await.expect("reload on the same address");
        assert_eq!(p.local_addrs(), before);
        assert_eq!(route(&net, "127.0.0.1:8000").await.as_deref(), Some("s2"));
        assert!(
            Arc::ptr_eq(&view.runtime(), p.runtime()),
            "the view follows reloads"
        );
        // The connection from before the reload still runs on its old server.
        held.write_all(b"y").await.unwrap();
        let s1 = &old.backends["app"].servers[0];
        assert_eq!(
            s1.counters.current.load(Ordering::Relaxed),
            1,
            "old connection cut"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reload_binds_new_addresses_and_stops_removed_ones() {
        let net = MemNet::default();
        let _s1 = net.server("10.0.0.1:80", "s1").await;
        let rt = runtime(10, &["127.0.0.1:8000"], &[("s1", "10.0.0.1:80")], None);
        let mut p = Process::start(net.clone(), rt, Arc::new(Routes::default()))
            .await
            .unwrap();
        let new = runtime(
            10,
            &["127.0.0.1:8001"],
            &[("s1", "10.0.0.1:80")],
            Some(p.runtime()),
        );
        p.reload(new).await.unwrap();
        assert!(
            net.connect("127.0.0.1:8000").await.is_err(),
            "removed address still open"
        );
        assert_eq!(route(&net, "127.0.0.1:8001").await.as_deref(), Some("s1"));
        assert_eq!(p.local_addrs().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_bind_keeps_the_old_configuration_serving() {
        let net = MemNet::default();
        let _s1 = net.server("10.0.0.1:80", "s1").await;
        let _s2 = net.server("10.0.0.2:80", "s2").await;
        let _taken = net.bind("127.0.0.1:8001").await.unwrap();
        let rt = runtime(1, &["127.0.0.1:8000"], &[("s1", "10.0.0.1:80")], None);
        let mut p = Process::start(net.clone(), rt, Arc::new(Routes::default()))
            .await
            .unwrap();
        let old = p.runtime().clone();
        let new = runtime(
            5,
            &["127.0.0.1:8000", "127.0.0.1:8001"],
            &[("s2", "10.0.0.2:80")],
            Some(p.runtime()),
        );
        let err = p.reload(new).await.unwrap_err();
        assert!(
            matches!(err, ProcessError::Bind { ref address, .. } if address == "127.0.0.1:8001"),
            "{err}"
        );
        assert!(Arc::ptr_eq(&old, p.runtime()));
        assert_eq!(route(&net, "127.0.0.1:8000").await.as_deref(), Some("s1"));
        // maxconn stayed 1: a second concurrent client waits.
        let mut a = open(&net, "127.0.0.1:8000").await;
        assert_eq!(greeting(&mut a).await.as_deref(), Some("s1"));
        assert_eq!(
            route(&net, "127.0.0.1:8000").await,
            None,
            "maxconn raised by a failed reload"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reload_adjusts_maxconn() {
        let net = MemNet::default();
        let _s1 = net.server("10.0.0.1:80", "s1").await;
        let rt = runtime(1, &["127.0.0.1:8000"], &[("s1", "10.0.0.1:80")], None);
        let mut p = Process::start(net.clone(), rt, Arc::new(Routes::default()))
            .await
            .unwrap();
        let new = runtime(
            2,
            &["127.0.0.1:8000"],
            &[("s1", "10.0.0.1:80")],
            Some(p.runtime()),
        );
        p.reload_bound(new).unwrap();
        let mut a = open(&net, "127.0.0.1:8000").await;
        assert_eq!(greeting(&mut a).await.as_deref(), Some("s1"));
        let mut b = open(&net, "127.0.0.1:8000").await;
        assert_eq!(
            greeting(&mut b).await.as_deref(),
            Some("s1"),
            "maxconn not raised"
        );
        assert_eq!(
            route(&net, "127.0.0.1:8000").await,
            None,
            "maxconn 2 not enforced"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reload_bound_refuses_to_bind() {
        let net = MemNet::default();
        let rt = runtime(1, &["127.0.0.1:8000"], &[("s1", "10.0.0.1:80")], None);
        let mut p = Process::start(net.clone(), rt, Arc::new(Routes::default()))
            .await
            .unwrap();
        let new = runtime(
            1,
            &["127.0.0.1:8001"],
            &[("s1", "10.0.0.1:80")],
            Some(p.runtime()),
        );
        assert!(matches!(
            p.reload_bound(new),
            Err(ProcessError::NotBound { .. })
        ));
        assert_eq!(p.local_addrs().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_accepting_and_waits_for_the_grace_period() {
        let net = MemNet::default();
        let _s1 = net.server("10.0.0.1:80", "s1").await;
        let rt = runtime(10, &["127.0.0.1:8000"], &[("s1", "10.0.0.1:80")], None);
        let p = Process::start(net.clone(), rt, Arc::new(Routes::default()))
            .await
            .unwrap();
        let mut held = open(&net, "127.0.0.1:8000").await;
        assert_eq!(greeting(&mut held).await.as_deref(), Some("s1"));
        let t0 = tokio::time::Instant::now();
        let stopping = tokio::spawn(p.shutdown(Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            net.connect("127.0.0.1:8000").await.is_err(),
            "still accepting"
        );
        assert!(
            !stopping.is_finished(),
            "did not wait for the open connection"
        );
        drop(held);
        assert_eq!(stopping.await.unwrap(), 0);
        assert!(t0.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_gives_up_after_the_grace_period() {
        let net = MemNet::default();
        let _s1 = net.server("10.0.0.1:80", "s1").await;
        let rt = runtime(10, &["127.0.0.1:8000"], &[("s1", "10.0.0.1:80")], None);
        let p = Process::start(net.clone(), rt, Arc::new(Routes::default()))
            .await
            .unwrap();
        let mut held = open(&net, "127.0.0.1:8000").await;
        assert_eq!(greeting(&mut held).await.as_deref(), Some("s1"));
        let t0 = tokio::time::Instant::now();
        assert_eq!(p.shutdown(Duration::from_secs(3)).await, 1);
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
    }
}
