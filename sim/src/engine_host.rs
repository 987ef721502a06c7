//! tether's engine as the simulated balancer.
//!
//! The balancer host runs [`tether_core::engine`] on [`TurmoilNet`]: the same inspect, affinity,
//! retry and forwarding code as the daemon, with the scenario's tether configuration (native, or
//! imported from haproxy.cfg by the CLI). Health checks run too, through the engine's own loop.
//! The host runs the daemon's [`Process`] on turmoil sockets: binding, health checks and reload
//! are the daemon's own. A balancer restart starts a fresh process with empty tables, as in
//! production; an added or removed server reloads the running one, tables kept.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tether_core::config::{self, Config};
use tether_core::engine::peers::{self, PeersService};
use tether_core::engine::runtime::{build_seeded, Runtime};
use tether_core::engine::{ConnectionRecord, LogSink, Process, Termination};
use tether_core::server::AdminState as EngineAdmin;
use tether_core::stick::StickStats;
use tether_core::stick::{Origin, Since};
use tether_core::Timestamp;

use std::collections::BTreeMap;

use tether_core::route::Cidr;

use crate::backends::BackendPlan;
use crate::balancer::{Admin, AdminState, BalancerEnv, BalancerHost, ServerAddr};
use crate::metrics::{AffinityCounts, OutcomeEvent, TableTotals};
use crate::net::TurmoilNet;
use crate::SimError;
use tether_core::affinity::MatchOutcome;

/// Counts the engine's affinity outcomes, by label (`hit`, `learned`, `no-key:tls13-random-id`...),
/// overall, per fleet (mapped from the client address in the PROXY header) and per minute.
#[derive(Debug, Default)]
pub struct OutcomeSink {
    state: Mutex<OutcomeState>,
}

#[derive(Debug, Default)]
struct OutcomeState {
    counts: AffinityCounts,
    /// Fleets whose clients come from their own network (checked before the default scheme).
    fleet_networks: Vec<(Cidr, usize)>,
    /// When `Some`, one [`RouteTrace`] per connection (property tests).
    trace: Option<Vec<RouteTrace>>,
}

/// One connection as the engine logged it, with simulated timestamps (trace mode only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTrace {
    /// Simulated ms at which the engine accepted the connection.
    pub accepted_ms: u64,
    /// Simulated ms at which inspection ended and a server was chosen.
    pub chosen_ms: u64,
    /// Simulated ms at which the connection ended.
    pub ended_ms: u64,
    /// The server that took it, `None` for `<NOSRV>`.
    pub server: Option<String>,
    /// Retries spent on it.
    pub retries: u32,
    /// The client's address (from the PROXY header).
    pub client: std::net::SocketAddr,
    /// How the connection ended (HAProxy's two-letter code).
    pub termination: Termination,
}

/// The engine's state once the run has settled, for invariant checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineEnd {
    /// Per server (by name): connections still counted as current, and the most ever counted.
    pub servers: Vec<ServerEnd>,
    /// Connections the running process accepted (its frontend counter).
    pub accepted: u64,
    /// Stick entries whose server is not in the backend's server list.
    pub dangling_entries: usize,
}

/// One server's connection counters at the end of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerEnd {
    /// Server name.
    pub name: String,
    /// Connections still counted as current (0 once everything has ended).
    pub current: u64,
    /// The most connections counted at once.
    pub max: u64,
    /// The server's `maxconn`, when set.
    pub maxconn: Option<u64>,
}

impl OutcomeSink {
    /// The counts so far, in a stable order.
    pub fn snapshot(&self) -> AffinityCounts {
        self.lock().counts.clone()
    }

    /// Attributes clients from these networks to these fleets.
    pub fn set_fleet_networks(&self, networks: Vec<(Cidr, usize)>) {
        self.lock().fleet_networks = networks;
    }

    /// Starts keeping one [`RouteTrace`] per connection.
    pub fn enable_trace(&self) {
        self.lock().trace.get_or_insert_with(Vec::new);
    }

    /// The routes traced so far (empty unless [`Self::enable_trace`] was called).
    pub fn routes(&self) -> Vec<RouteTrace> {
        self.lock().trace.clone().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutcomeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl LogSink for OutcomeSink {
    fn record(&self, rec: &ConnectionRecord) {
        let ended_ms = turmoil::sim_elapsed().unwrap_or_default().as_millis() as u64;
        let accepted_ms = ended_ms.saturating_sub(rec.tt_ms);
        let mut st = self.lock();
        let own = st
            .fleet_networks
            .iter()
            .find(|(c, _)| c.contains(rec.client.ip()));
        let fleet = own.map(|&(_, f)| f).or(match rec.client.ip() {
            std::net::IpAddr::V4(v4) => crate::fleet::fleet_of_address(v4),
            std::net::IpAddr::V6(_) => None,
        });
        let one = OutcomeEvent {
            outcome: rec.affinity,
            keyed: !matches!(rec.matched, MatchOutcome::NoKey(_)),
            nosrv: rec.server.is_none(),
            keys_learned: u64::from(rec.learned),
        };
        st.counts.add(fleet, accepted_ms / 60_000, &one);
        if rec.termination == Termination::DENIED {
            st.counts.refused += 1;
        } else {
            st.counts.add_backend(&rec.backend, &one);
        }
        if let Some(t) = st.trace.as_mut() {
            t.push(RouteTrace {
                accepted_ms,
                chosen_ms: accepted_ms + rec.tw_ms,
                ended_ms,
                server: rec.server.as_deref().map(str::to_owned),
                retries: rec.retries,
                client: rec.client,
                termination: rec.termination,
            });
        }
    }
}

/// The simulator's peers port on every balancer instance.
pub const PEERS_PORT: u16 = 10_000;

/// Name of the peers section the simulator gives replicating instances.
const PEERS_SECTION: &str = "sim";

/// Who an instance replicates with: its own peer name and every instance's (its own included,
/// as in a shared haproxy.cfg `peers` section), each reached on [`PEERS_PORT`] of its host.
#[derive(Clone, Debug)]
pub struct Replication {
    /// This instance's peer name (its host).
    pub local: String,
    /// Every instance's peer name (host), including instances added later in the run.
    pub roster: Vec<String>,
}

impl Replication {
    fn section(&self) -> config::peers::PeersSection {
        config::peers::PeersSection {
            name: PEERS_SECTION.to_owned(),
            local: self.local.clone(),
            bind: Some(format!("0.0.0.0:{PEERS_PORT}")),
            peers: self
                .roster
                .iter()
                .map(|h| config::peers::PeerEntry {
                    name: h.clone(),
                    address: format!("{h}:{PEERS_PORT}"),
                })
                .collect(),
        }
    }
}

/// The engine on the balancer host.
pub struct EngineHost {
    base: Config,
    replication: Option<Replication>,
    /// The running peers service (replicating instances), replaced on every restart.
    peers: Rc<RefCell<Option<PeersService>>>,
    /// Per table, the last feed update the replication probe has read.
    feed_cursors: RefCell<Vec<u32>>,
    servers: RefCell<Vec<ServerAddr>>,
    /// Several backends and their server shares; `None`: every server feeds the first backend.
    plan: Option<BackendPlan>,
    /// Per server name, the backend (index into `base.backends`) it feeds.
    owners: RefCell<BTreeMap<String, usize>>,
    /// The running process: set by the host's software once it has bound, replaced on a
    /// balancer restart.
    process: Rc<RefCell<Option<Process<TurmoilNet>>>>,
    outcomes: Arc<OutcomeSink>,
    /// Counters of tables lost in balancer restarts, so totals survive them.
    retired: Cell<StickStats>,
    /// The engine's seed (stick-table hashing, `balance random`, the peers' reconnect jitter):
    /// from the scenario's seed, as the daemon's comes from the OS.
    seed: u64,
}

/// The simulated network is turmoil's TCP, which has no socket paths: a server written as a
/// unix socket is refused by name rather than failing to connect at run time.
fn refuse_unix_servers(base: &Config) -> Result<(), SimError> {
    for b in &base.backends {
        if let Some(s) = b
            .servers
            .iter()
            .find(|s| config::is_unix_address(&s.address))
        {
            return Err(SimError::Scenario(format!(
                "backend {} server {}: address `{}` is a unix socket, which the simulator \
                 cannot model (its network is TCP between simulated hosts); write a HOST:PORT \
                 address for the simulation",
                b.name, s.name, s.address
            )));
        }
    }
    Ok(())
}

/// The simulated servers model TLS sessions without real cryptography, so a health check over
/// TLS (`check-ssl`, `tcp-check connect ssl`) could never pass there: such a configuration is
/// refused by name rather than simulated with every server DOWN.
fn refuse_tls_checks(base: &Config) -> Result<(), SimError> {
    for b in &base.backends {
        let plan_tls = b.check.protocol.plan().is_ok_and(|p| p.needs_tls());
        let Some(s) = (b.servers.iter())
            .filter(|s| s.check)
            .find(|s| plan_tls || b.check_tls(s).is_some_and(|t| t.enabled))
        else {
            continue;
        };
        return Err(SimError::Scenario(format!(
            "backend {} server {}: its health checks run over TLS (check-ssl or tcp-check \
             connect ssl), which the simulator cannot model (its servers answer TLS without real \
             cryptography, so every such check would fail); for the simulation, check in clear \
             (no check-ssl) or leave the checks out (no check)",
            b.name, s.name
        )));
    }
    Ok(())
}

impl EngineHost {
    /// An engine host running `base`, whose first backend is fed with the simulated servers.
    /// `base` must have at least one backend; frontends are replaced by one listening on the
    /// simulator's port with PROXY protocol (which carries each simulated client's address).
    pub fn new(base: Config) -> Result<Self, SimError> {
        if base.backends.is_empty() {
            return Err(SimError::Scenario(
                "the balancer config has no backend; add [balancer.config.backend]".into(),
            ));
        }
        refuse_unix_servers(&base)?;
        refuse_tls_checks(&base)?;
        Ok(EngineHost {
            base,
            replication: None,
            peers: Rc::default(),
            feed_cursors: RefCell::default(),
            servers: RefCell::new(Vec::new()),
            plan: None,
            owners: RefCell::default(),
            process: Rc::default(),
            outcomes: Arc::default(),
            retired: Cell::new(StickStats::default()),
            seed: 0,
        })
    }

    /// Seeds the engine (stick-table hashing, `balance random`, peers jitter); 0 without it.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Replicates this instance's tables with its peers (HAProxy's peers protocol, the
    /// engine's own driver over turmoil).
    pub fn with_replication(mut self, replication: Replication) -> Self {
        self.replication = Some(replication);
        self
    }

    /// Feeds the simulated servers to several backends, as `plan` deals them out.
    pub fn with_backends(mut self, plan: Option<BackendPlan>) -> Self {
        self.plan = plan;
        self
    }

    /// Attributes connections from the fleets' own networks to their fleets.
    pub fn with_fleet_networks(self, networks: Vec<(Cidr, usize)>) -> Self {
        self.outcomes.set_fleet_networks(networks);
        self
    }

    /// Updates stored in this instance's shared tables since the last call, as (table number
    /// and key, stored from traffic here rather than by a peer), oldest first.
    pub fn new_updates(&self) -> Vec<(Vec<u8>, bool)> {
        let Some(be) = self.backend() else {
            return Vec::new();
        };
        let mut cursors = self.feed_cursors.borrow_mut();
        let mut out = Vec::new();
        for (n, table) in be.tables.iter().enumerate() {
            let Some(feed) = table.feed() else { continue };
            if cursors.len() <= n {
                cursors.resize(n + 1, 0);
            }
            let updates = feed.updates.lock().unwrap_or_else(|e| e.into_inner());
            match updates.since(cursors[n], usize::MAX) {
                Since::Entries(entries, next) => {
                    for e in entries {
                        let mut key = vec![n as u8];
                        key.extend_from_slice(&e.key);
                        out.push((key, e.origin == Origin::Local));
                    }
                    cursors[n] = next;
                }
                // A new process's table, or more updates than the backlog keeps: skip ahead.
                Since::Gap => cursors[n] = updates.last_id(),
            }
        }
        out
    }

    /// Builds the native config from a scenario's `[balancer.config]`: optional `global`, a single
    /// `frontend` table (overrides) and a single `backend` table, in tether's TOML vocabulary.
    pub fn config_from_scenario(value: Option<&toml::Value>) -> Result<Config, SimError> {
        let empty = toml::Table::new();
        let table = match value {
            Some(toml::Value::Table(t)) => t,
            Some(_) => {
                return Err(SimError::Scenario(
                    "[balancer.config] must be a table".into(),
                ))
            }
            None => &empty,
        };
        let mut doc = toml::Table::new();
        if let Some(g) = table.get("global") {
            doc.insert("global".into(), g.clone());
        }
        let mut fe = match table.get("frontend") {
            Some(toml::Value::Table(t)) => t.clone(),
            _ => toml::Table::new(),
        };
        fe.insert("name".into(), "main".into());
        fe.insert("bind".into(), toml::Value::Array(vec!["0.0.0.0:0".into()]));
        fe.insert("accept-proxy".into(), true.into());
        let backends = match table.get("backend") {
            // Several backends (see [`crate::backends`]): the frontend keeps its own default
            // backend and route rules; each backend loses the simulator-only `servers` key.
            Some(toml::Value::Array(list)) => {
                let list: Vec<toml::Table> = list
                    .iter()
                    .filter_map(|b| b.as_table().cloned())
                    .map(|mut b| {
                        b.remove(crate::backends::SERVERS_KEY);
                        b
                    })
                    .collect();
                if let Some(first) = list.first().and_then(|b| b.get("name")) {
                    fe.entry("backend").or_insert_with(|| first.clone());
                }
                list
            }
            Some(toml::Value::Table(t)) => {
                let mut be = t.clone();
                be.insert("name".into(), "app".into());
                fe.insert("backend".into(), "app".into());
                vec![be]
            }
            _ => {
                fe.insert("backend".into(), "app".into());
                vec![toml::Table::from_iter([("name".into(), "app".into())])]
            }
        };
        doc.insert("frontend".into(), toml::Value::Array(vec![fe.into()]));
        let backends = backends.into_iter().map(with_template_server).collect();
        doc.insert("backend".into(), toml::Value::Array(backends));
        config::load_table("[balancer.config]", &doc)
            .map_err(|e| SimError::Scenario(format!("balancer config:\n{e}")))
    }

    /// Affinity outcomes counted so far.
    pub fn outcomes(&self) -> AffinityCounts {
        self.outcomes.snapshot()
    }

    /// The running process's connection counters and table consistency (`None` when the
    /// balancer is down).
    pub fn end_state(&self) -> Option<EngineEnd> {
        let rt = self.runtime()?;
        let fe = rt.frontends.first()?;
        let mut end = EngineEnd {
            accepted: fe.accepted.load(Ordering::Relaxed),
            ..EngineEnd::default()
        };
        for (b, be) in self.fed_backends(&rt).iter().enumerate() {
            // Every simulated server is built from its backend's first configured server.
            let maxconn = self.base.backends[b]
                .servers
                .first()
                .and_then(|t| t.maxconn)
                .map(u64::from);
            end.servers.extend(be.servers.iter().map(|s| ServerEnd {
                name: s.name.to_string(),
                current: s.counters.current.load(Ordering::Relaxed),
                max: s.counters.max.load(Ordering::Relaxed),
                maxconn: s.slots.as_ref().and(maxconn),
            }));
            end.dangling_entries += be
                .tables
                .iter()
                .flat_map(|t| t.entries(Timestamp::ZERO))
                .filter(|e| e.server.index() >= be.servers.len())
                .count();
        }
        Some(end)
    }

    /// The sink that counts outcomes (and traces routes when asked).
    pub fn sink(&self) -> Arc<OutcomeSink> {
        self.outcomes.clone()
    }

    /// The configuration for the current server list and listening port.
    fn config_for(&self, port: u16) -> Config {
        let mut c = self.base.clone();
        let servers = self.servers.borrow();
        let owners = self.owners.borrow();
        let fed = self.plan.as_ref().map_or(1, |p| p.shares.len());
        for (b, be) in c.backends.iter_mut().enumerate().take(fed) {
            let template = be.servers.first().cloned();
            be.servers = servers
                .iter()
                .filter(|srv| owners.get(&srv.name).copied().unwrap_or(0) == b)
                .map(|srv| {
                    let mut s = template
                        .clone()
                        .unwrap_or_else(|| config::Server::new(&srv.name, ""));
                    s.name = srv.name.clone();
                    s.address = srv.address();
                    s
                })
                .collect();
        }
        let backend = c.backends[0].name.clone();
        let mut fe = c
            .frontends
            .first()
            .cloned()
            .unwrap_or_else(|| config::Frontend::named("main", &backend));
        if self.plan.is_none() {
            fe.backend = backend;
        }
        fe.bind = vec![format!("0.0.0.0:{port}")];
        fe.accept_proxy = true;
        c.frontends = vec![fe];
        if let Some(r) = &self.replication {
            c.peers = Some(r.section());
            c.backends[0].stick_table.peers = Some(PEERS_SECTION.to_owned());
        }
        c
    }

    /// The runtime in force, if the balancer is up.
    fn runtime(&self) -> Option<Arc<Runtime>> {
        Some(self.process.borrow().as_ref()?.runtime().clone())
    }

    fn backend(&self) -> Option<Arc<tether_core::engine::Backend>> {
        self.runtime()?.frontends.first().map(|f| f.backend.clone())
    }

    /// The backends the simulated servers feed, in configuration order (one without a plan).
    fn fed_backends(&self, rt: &Runtime) -> Vec<Arc<tether_core::engine::Backend>> {
        let fed = self.plan.as_ref().map_or(1, |p| p.shares.len());
        self.base
            .backends
            .iter()
            .take(fed)
            .filter_map(|b| rt.backends.get(&b.name).cloned())
            .collect()
    }

    /// The fed backends of the running process (empty when the balancer is down).
    fn running_backends(&self) -> Vec<Arc<tether_core::engine::Backend>> {
        self.runtime()
            .map(|rt| self.fed_backends(&rt))
            .unwrap_or_default()
    }
}

impl BalancerHost for EngineHost {
    fn name(&self) -> String {
        "tether-engine".to_owned()
    }

    fn software(&self, env: BalancerEnv) -> Pin<Box<dyn Future<Output = turmoil::Result>>> {
        if self.servers.borrow().is_empty() {
            *self.servers.borrow_mut() = env.servers.clone();
            let mut owners = self.owners.borrow_mut();
            for (i, srv) in env.servers.iter().enumerate() {
                let b = self.plan.as_ref().map_or(0, |p| p.backend_of(i));
                owners.insert(srv.name.clone(), b);
            }
        }
        let config = self.config_for(env.listen_port);
        if let Some(old) = self.process.borrow_mut().take() {
            // The restart loses the tables; keep their counters for the totals.
            let lost = runtime_tables(&self.fed_backends(old.runtime()));
            self.retired.set(add_stats(self.retired.get(), lost));
        }
        let process_slot = self.process.clone();
        let peers_slot = self.peers.clone();
        let seed = self.seed;
        self.feed_cursors.borrow_mut().clear();
        let sink = self.outcomes.clone();
        Box::pin(async move {
            // A (re)started balancer starts with empty tables (its peers teach it theirs).
            let runtime = build_seeded(&config, None, seed).map_err(|e| e.to_string())?;
            let process = Process::start(TurmoilNet, runtime, sink).await?;
            let service = match config.peers.clone() {
                Some(section) => {
                    let view = Arc::new(process.view());
                    let clock = process.context().clock;
                    Some(peers::start(TurmoilNet, section, view, clock, seed).await?)
                }
                None => None,
            };
            *peers_slot.borrow_mut() = service;
            *process_slot.borrow_mut() = Some(process);
            // The process's tasks serve until the host crashes or restarts.
            std::future::pending::<()>().await;
            Ok(())
        })
    }

    fn admin(&self, op: &Admin) {
        match op {
            Admin::SetState { server, state } => {
                let admin = match state {
                    AdminState::Ready => EngineAdmin::Ready,
                    AdminState::Drain => EngineAdmin::Drain,
                    AdminState::Maint => EngineAdmin::Maint,
                };
                for be in self.running_backends() {
                    if let Some(id) = be.server_id(server) {
                        be.set_admin(id, Some(admin), None);
                    }
                }
            }
            Admin::AddServer { server } => {
                let last = self.plan.as_ref().map_or(0, |p| p.shares.len() - 1);
                self.owners.borrow_mut().insert(server.name.clone(), last);
                self.servers.borrow_mut().push(server.clone());
                self.reload();
            }
            Admin::RemoveServer { server } => {
                self.servers.borrow_mut().retain(|s| s.name != *server);
                self.reload();
            }
        }
    }

    fn table_occupancy(&self) -> Option<u64> {
        let bes = self.running_backends();
        // No tables (no affinity): nothing to report.
        bes.iter().flat_map(|be| be.tables.iter()).next()?;
        Some(
            bes.iter()
                .flat_map(|be| be.tables.iter())
                .map(|t| t.len() as u64)
                .sum(),
        )
    }

    fn table_totals(&self) -> Option<TableTotals> {
        let bes = self.running_backends();
        // No tables (no affinity): nothing to report.
        bes.iter().flat_map(|be| be.tables.iter()).next()?;
        let capacity = bes
            .iter()
            .flat_map(|be| be.tables.iter())
            .map(|t| t.config().size)
            .sum::<u64>();
        let now = runtime_tables(&bes);
        let retired = self.retired.get();
        let all = add_stats(retired, now);
        Some(TableTotals {
            capacity,
            entries: now.entries,
            inserted: all.inserted,
            updated: all.updated,
            refreshed: all.refreshed,
            hits: all.hits,
            misses: all.misses,
            evicted: all.evicted,
            expired: all.expired,
            refused: all.refused,
            lost_in_restarts: retired.entries,
        })
    }

    fn affinity_counts(&self) -> Option<AffinityCounts> {
        Some(self.outcomes.snapshot())
    }

    fn replication_updates(&self) -> Vec<(Vec<u8>, bool)> {
        self.new_updates()
    }

    fn table_keys(&self) -> Option<Vec<(Vec<u8>, String)>> {
        let bes = self.running_backends();
        bes.iter().flat_map(|be| be.tables.iter()).next()?;
        let mut out = Vec::new();
        let tables = bes
            .iter()
            .flat_map(|be| be.tables.iter().map(move |t| (be, t)));
        for (n, (be, table)) in tables.enumerate() {
            for e in table.entries(Timestamp::ZERO) {
                let mut key = vec![n as u8];
                key.extend_from_slice(&e.key);
                let server = be
                    .servers
                    .get(e.server.index())
                    .map_or_else(String::new, |s| s.name.to_string());
                out.push((key, server));
            }
        }
        Some(out)
    }

    fn down_servers(&self) -> Vec<String> {
        let mut down = Vec::new();
        for be in self.running_backends() {
            let states = be.server_states();
            down.extend(
                be.servers
                    .iter()
                    .zip(states)
                    .filter(|(_, st)| st.oper == tether_core::server::OperState::Down)
                    .map(|(s, _)| s.name.to_string()),
            );
        }
        down
    }
}

/// A backend table with a `server` entry: the template of the simulated servers it gets
/// (replaced by them at start).
fn with_template_server(mut be: toml::Table) -> toml::Value {
    if !be.contains_key("server") {
        let mut s = toml::Table::new();
        s.insert("name".into(), "template".into());
        s.insert("address".into(), "template:443".into());
        be.insert("server".into(), toml::Value::Array(vec![s.into()]));
    }
    be.into()
}

/// Stick-table counters of backends, summed over their tables.
fn runtime_tables(backends: &[Arc<tether_core::engine::Backend>]) -> StickStats {
    let mut t = StickStats::default();
    for table in backends.iter().flat_map(|be| be.tables.iter()) {
        t = add_stats(t, table.stats());
    }
    t
}

fn add_stats(a: StickStats, b: StickStats) -> StickStats {
    StickStats {
        entries: a.entries + b.entries,
        capacity: a.capacity + b.capacity,
        hits: a.hits + b.hits,
        misses: a.misses + b.misses,
        learned: a.learned + b.learned,
        inserted: a.inserted + b.inserted,
        updated: a.updated + b.updated,
        refreshed: a.refreshed + b.refreshed,
        sets: a.sets + b.sets,
        evicted: a.evicted + b.evicted,
        expired: a.expired + b.expired,
        refused: a.refused + b.refused,
        removed: a.removed + b.removed,
    }
}

impl EngineHost {
    /// Applies a server-list change like a SIGHUP does: new runtime, same tables, same socket,
    /// health checks restarted against the new servers.
    fn reload(&self) {
        let mut slot = self.process.borrow_mut();
        let Some(process) = slot.as_mut() else {
            return;
        };
        let old = process.runtime().clone();
        let port = old.frontends[0]
            .bind
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let config = self.config_for(port);
        let applied = build_seeded(&config, Some(&old), self.seed)
            .map_err(|e| e.to_string())
            .and_then(|new| process.reload_bound(new).map_err(|e| e.to_string()));
        if let Err(e) = applied {
            tracing::warn!("simulated reload refused: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unix_socket_server_is_refused_by_name() {
        let mut config = EngineHost::config_from_scenario(None).unwrap();
        assert!(EngineHost::new(config.clone()).is_ok());
        let mut unix = config.backends[0].servers[0].clone();
        unix.name = "local".into();
        unix.address = "unix@/run/app.sock".into();
        config.backends[0].servers.push(unix);
        let Err(e) = EngineHost::new(config) else {
            panic!("a unix server is refused")
        };
        let e = e.to_string();
        assert!(
            e.contains("server local")
                && e.contains("unix@/run/app.sock")
                && e.contains("cannot model"),
            "{e}"
        );
    }

    #[test]
    fn a_check_over_tls_is_refused_by_name() {
        let config = EngineHost::config_from_scenario(None).unwrap();
        let mut tls = config.clone();
        tls.backends[0].servers[0].check_tls = Some(tether_core::config::CheckTls {
            enabled: true,
            ..Default::default()
        });
        let server = tls.backends[0].servers[0].name.clone();
        let Err(e) = EngineHost::new(tls.clone()) else {
            panic!("a check-ssl server is refused")
        };
        let e = e.to_string();
        assert!(
            e.contains(&format!("server {server}")) && e.contains("check-ssl"),
            "{e}"
        );
        tls.backends[0].servers[0].check = false;
        assert!(EngineHost::new(tls).is_ok(), "no check, nothing over TLS");
    }
}
