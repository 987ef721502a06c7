//! A backend at run time: its servers, their state, the balancer, the affinity configuration and
//! its stick tables, and the counters the stats page and the simulator read.
//!
//! Server state and the balancer sit behind one short-held mutex per backend (a pick is a few
//! dozen nanoseconds); tables are sharded apart; counters are atomics. Nothing here is global.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::affinity::{Affinity, AffinityKey, AffinityOutcome, Route};
use crate::balance::{Algorithm, Balancer, PickContext};
use crate::config::{OnMarkedDown, OnMarkedUp};
use crate::retry::{Redispatch, RetryContext, RetryPolicy};
use crate::server::check::agent::{AgentEffect, AgentHealth};
use crate::server::check::{Plan, TlsClient};
use crate::server::{AdminState, Health, HealthConfig, OperState, ServerState, Transition};
use crate::stick::StickTableConfig;
use crate::ServerId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::sessions::{Kill, Sessions};
use super::tables::BackendTables;

/// Backend timeouts.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BackendTimeouts {
    /// Time allowed for a TCP connect to a server.
    pub connect: Duration,
    /// Idle time allowed waiting on the server.
    pub server: Duration,
    /// Time a connection may wait for a server slot.
    pub queue: Duration,
    /// HAProxy `timeout tunnel`: the idle limit of both sides once connected, when set.
    pub tunnel: Option<Duration>,
    /// HAProxy `timeout server-fin`: the idle limit on the server once tether has half-closed
    /// it, when set.
    pub server_fin: Option<Duration>,
    /// HAProxy `timeout check`: when set, a check's connect is bounded by
    /// `min(connect, inter)` instead of `inter` (see
    /// [`HealthConfig::check_connect_timeout`](crate::server::HealthConfig::check_connect_timeout)).
    pub check: Option<Duration>,
}

impl Default for BackendTimeouts {
    fn default() -> Self {
        BackendTimeouts {
            connect: Duration::from_secs(5),
            server: Duration::from_secs(60),
            queue: Duration::from_secs(60),
            tunnel: None,
            server_fin: None,
            check: None,
        }
    }
}

/// Counters of one server (atomics: read by the stats page while connections update them).
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Current connections.
    pub current: AtomicU64,
    /// Highest `current` seen.
    pub max: AtomicU64,
    /// Connections established through this server.
    pub total: AtomicU64,
    /// Bytes from clients to this server.
    pub bytes_in: AtomicU64,
    /// Bytes from this server to clients.
    pub bytes_out: AtomicU64,
    /// Failed connection attempts.
    pub connect_errors: AtomicU64,
    /// Retries on this server.
    pub retries: AtomicU64,
    /// Connections redispatched away from this server.
    pub redispatches: AtomicU64,
    /// Health check results that failed.
    pub check_failures: AtomicU64,
    /// UP to DOWN transitions caused by checks (HAProxy `chkdown`).
    pub check_downs: AtomicU64,
}

/// The static part of a server plus its counters.
#[derive(Debug)]
pub struct ServerSlot {
    /// Server name, unique in the backend.
    pub name: Arc<str>,
    /// The number the config gives it (HAProxy's `id`); [`Backend::number`] has the number in
    /// force, given or not.
    pub id: Option<u32>,
    /// Where to connect: `"host:port"`.
    pub address: String,
    /// Whether active health checks run for it.
    pub check: bool,
    /// Health-check timing.
    pub health: HealthConfig,
    /// Counters.
    pub counters: ServerCounters,
    /// `maxconn`: connection slots; a connection waits in the server's queue for one.
    pub slots: Option<Arc<Semaphore>>,
    /// `maxqueue`: most connections waiting for a slot (`None`: unbounded).
    pub maxqueue: Option<u32>,
    /// Connections waiting for a slot now.
    pub queued: AtomicU64,
    /// The result of the latest active health check, for the stats page.
    pub last_check: Mutex<Option<LastCheck>>,
    /// What a health check does once connected (compiled from the backend's check protocol).
    pub plan: Plan,
    /// Where health checks connect (`"host:port"`, the server's unless `addr`/`port` are set).
    pub check_address: String,
    /// TLS for health checks (`check-ssl`, or `tcp-check connect ssl` steps), when configured.
    pub check_tls: Option<Arc<TlsClient>>,
    /// When checks last changed the server's state (HAProxy `lastchg`).
    pub last_change: Mutex<Option<tokio::time::Instant>>,
    /// The weight the configuration gave (the runtime API's `get weight` shows it as "initial"
    /// and `set weight N%` is relative to it).
    pub initial_weight: u32,
    /// SO_KEEPALIVE on connections to the server (HAProxy `option srvtcpka`).
    pub tcp_keepalive: bool,
    /// The PROXY header the server gets before the client's bytes (`send-proxy[-v2]`).
    pub send_proxy: Option<crate::config::SendProxy>,
    /// Whether health checks' default connects send a PROXY header (in `send_proxy`'s version,
    /// v1 without one): `check-send-proxy`, or `send-proxy` when checks go to the server's own
    /// address, as HAProxy 2.6.
    pub check_send_proxy: bool,
    /// How long the weight ramps up after checks bring the server back (`slowstart`).
    pub slowstart: Option<Duration>,
    /// Bumped at every ramp start, so an older ramp still stepping stops.
    pub ramp_generation: AtomicU64,
    /// `on-marked-down shutdown-sessions`: marked DOWN, the server's connections are closed.
    pub on_marked_down: Option<OnMarkedDown>,
    /// `on-marked-up shutdown-backup-sessions`: this active server marked UP closes the
    /// connections of the backend's backup servers.
    pub on_marked_up: Option<OnMarkedUp>,
    /// Whether the server's connections enter [`ServerSlot::sessions`]: only when a state
    /// change may close them, so the register costs nothing otherwise.
    pub track_sessions: bool,
    /// The server's established connections, for closing them at once.
    pub sessions: Sessions,
    /// The agent check (`agent-check`), when configured.
    pub agent: Option<AgentSlot>,
    /// The agent's latest answer, for the stats page (`agent_status`, `last_agt`).
    pub last_agent: Mutex<Option<LastCheck>>,
    /// The server whose health this one follows (`track`), as (backend, server).
    pub track: Option<(String, String)>,
    /// The operational and admin state as last published (at every change), for trackers and
    /// the connections queued on the server; read with [`ServerSlot::published`].
    pub published: Mutex<Tracked>,
    /// Wakes every task waiting on the server's state ([`ServerSlot::state_until`]) when a new
    /// one is published, in the order they began waiting (a tokio watch would wake them in a
    /// random order, making a simulation's run depend on more than its seed).
    pub state_changed: tokio::sync::Notify,
    /// How DNS keeps the address current, when a `resolvers` section does.
    pub dns: Option<ServerDns>,
    /// The address DNS or `init-addr` gave (`"IP:PORT"`); set with the server's
    /// resolution state by [`Backend::set_resolved`], under the backend's lock.
    pub(crate) resolved: Mutex<Option<SocketAddr>>,
}

/// A server whose address's host name a `resolvers` section resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerDns {
    /// The `[[resolvers]]` section.
    pub resolvers: String,
    /// The host name.
    pub host: String,
    /// The port connections go to.
    pub port: u16,
    /// The family asked first.
    pub prefer: crate::config::resolvers::Family,
    /// `init-addr`, tried in order at startup.
    pub init: Vec<crate::config::resolvers::InitAddr>,
    /// Health checks go to the resolved address (no `addr` of their own), on this port.
    pub check_port: Option<u16>,
}

/// What a tracking server takes from the server it tracks: its health, and its maintenance or
/// drain (HAProxy's inherited `IMAINT`/`IDRAIN`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Tracked {
    /// UP or DOWN.
    pub oper: OperState,
    /// Its admin state, its own or inherited in turn.
    pub admin: AdminState,
}

/// Where and how often a server's agent is asked.
#[derive(Debug, Clone)]
pub struct AgentSlot {
    /// `"host:port"` of the agent.
    pub address: String,
    /// Interval between agent checks (`agent-inter`, else the server's `inter`).
    pub inter: Duration,
    /// Connect, write `agent-send`, read a line.
    pub plan: Plan,
}

/// What one check result did to a server's rise/fall counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthStep {
    /// The state change it caused, if any.
    pub transition: Option<Transition>,
    /// Whether the counter moved (HAProxy logs such a result with `log-health-checks`).
    pub moved: bool,
    /// The counter as HAProxy's `status: 1/2 UP` shows it.
    pub progress: (u32, u32),
    /// UP as far as checks go, after this result.
    pub up: bool,
}

/// One active health check's result, as HAProxy's stats page shows it (`L4OK in 0ms`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastCheck {
    /// HAProxy's check status code: `L4OK`, `L4CON`, `L4TOUT`, `L7OK`, `L7STS`...
    pub status: &'static str,
    /// The protocol's code (HTTP status, SMTP reply, MySQL error), when it has one.
    pub code: Option<u32>,
    /// HAProxy's description of the status (`Layer7 wrong status`).
    pub desc: &'static str,
    /// How long the check took.
    pub duration: Duration,
    /// When it finished.
    pub at: tokio::time::Instant,
    /// The server's words or the error (HAProxy `last_chk`), when there are any.
    pub info: Option<String>,
}

impl ServerSlot {
    /// A server without connection limits.
    pub fn new(name: impl Into<Arc<str>>, address: impl Into<String>) -> Self {
        let address = address.into();
        ServerSlot {
            name: name.into(),
            id: None,
            check_address: address.clone(),
            address,
            check: false,
            health: HealthConfig::default(),
            counters: ServerCounters::default(),
            slots: None,
            maxqueue: None,
            queued: AtomicU64::new(0),
            last_check: Mutex::new(None),
            plan: Plan::connect(),
            check_tls: None,
            last_change: Mutex::new(None),
            initial_weight: 1,
            tcp_keepalive: false,
            send_proxy: None,
            check_send_proxy: false,
            slowstart: None,
            ramp_generation: AtomicU64::new(0),
            on_marked_down: None,
            on_marked_up: None,
            track_sessions: false,
            sessions: Sessions::default(),
            agent: None,
            last_agent: Mutex::new(None),
            track: None,
            published: Mutex::new(Tracked::default()),
            state_changed: tokio::sync::Notify::new(),
            dns: None,
            resolved: Mutex::new(None),
        }
    }

    /// Where connections to the server go now: the address DNS gave, or the configured one.
    pub fn connect_address(&self) -> Cow<'_, str> {
        match self.resolved() {
            Some(a) => Cow::Owned(a.to_string()),
            None => Cow::Borrowed(&self.address),
        }
    }

    /// Where health checks go now: the resolved address on the check port when checks follow
    /// DNS, else the configured check address.
    pub fn check_target(&self) -> Cow<'_, str> {
        match (
            self.resolved(),
            self.dns.as_ref().and_then(|d| d.check_port),
        ) {
            (Some(a), Some(port)) => Cow::Owned(SocketAddr::new(a.ip(), port).to_string()),
            _ => Cow::Borrowed(&self.check_address),
        }
    }

    /// The address DNS or `init-addr` gave, if any.
    pub fn resolved(&self) -> Option<SocketAddr> {
        *self.resolved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a connection slot, waiting in the server's queue until `deadline` (`None`: as long
    /// as it takes); with `leave_when_down`, only while the server stays UP and out of
    /// maintenance. `Ok(None)` when the server has no `maxconn`.
    pub async fn take_slot_until(
        &self,
        deadline: Option<tokio::time::Instant>,
        leave_when_down: bool,
    ) -> Result<Option<OwnedSemaphorePermit>, QueueError> {
        let Some(sem) = &self.slots else {
            return Ok(None);
        };
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Ok(Some(p));
        }
        let waiting = self.queued.fetch_add(1, Ordering::Relaxed);
        let _leave = QueueGuard(&self.queued);
        if self.maxqueue.is_some_and(|m| waiting >= u64::from(m)) {
            return Err(QueueError::Full);
        }
        let acquire = sem.clone().acquire_owned();
        let acquire = async {
            tokio::select! {
                biased;
                p = acquire => Ok(p),
                _ = self.unusable(), if leave_when_down => Err(QueueError::ServerDown),
            }
        };
        let acquired = match deadline {
            Some(d) => tokio::time::timeout_at(d, acquire).await,
            None => Ok(acquire.await),
        };
        match acquired {
            Ok(Ok(Ok(p))) => Ok(Some(p)),
            Ok(Ok(Err(_))) => Err(QueueError::Full),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(QueueError::Timeout),
        }
    }

    /// Resolves once the server is DOWN or in maintenance.
    async fn unusable(&self) {
        self.state_until(|t| t.oper == OperState::Down || t.admin == AdminState::Maint)
            .await;
    }

    /// The server's state as last published.
    pub fn published(&self) -> Tracked {
        *self.published.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves once `holds` is true of the server's published state: now, or after a change.
    pub async fn state_until(&self, holds: impl Fn(Tracked) -> bool) {
        loop {
            let changed = self.state_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if holds(self.published()) {
                return;
            }
            changed.await;
        }
    }
}

struct QueueGuard<'a>(&'a AtomicU64);

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection could not get a server slot.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// `maxqueue` connections were already waiting.
    Full,
    /// `timeout queue` passed.
    Timeout,
    /// The server went DOWN or into maintenance meanwhile, and the backend redispatches: the
    /// connection leaves the queue to be balanced anew (HAProxy's `pendconn_redistribute`).
    ServerDown,
}

/// Per-backend affinity-outcome counters, indexed by [`AffinityOutcome`].
#[derive(Debug, Default)]
pub struct OutcomeCounters {
    counts: Mutex<std::collections::BTreeMap<AffinityOutcome, u64>>,
}

impl OutcomeCounters {
    /// Counts one outcome.
    pub fn add(&self, o: AffinityOutcome) {
        let mut m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(o).or_insert(0) += 1;
    }

    /// A snapshot in a stable order.
    pub fn snapshot(&self) -> Vec<(AffinityOutcome, u64)> {
        let m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// Mutable per-backend state: server states, health counters and the balancers.
pub struct BackendState {
    /// Server states, indexed by [`ServerId`].
    pub servers: Vec<ServerState>,
    /// Health counters, indexed by [`ServerId`].
    pub health: Vec<Health>,
    /// The agent's say on health (HAProxy's agent counter, rise = fall = 1): false after
    /// `down`/`stopped`/`fail` until `up`. Indexed by [`ServerId`].
    pub agent_up: Vec<bool>,
    /// Whether the tracked server is UP (true without `track`). Indexed by [`ServerId`].
    pub track_up: Vec<bool>,
    /// The admin state set on the server itself (operator, agent, `disabled`); the one in
    /// [`ServerState::admin`] is the stronger of it and the inherited one.
    pub own_admin: Vec<AdminState>,
    /// The admin state inherited from the tracked server (ready without `track`).
    pub inherited_admin: Vec<AdminState>,
    balancer: Balancer,
    hash: Option<Balancer>,
}

impl BackendState {
    /// Brings the server's operational state in line with its health check, its agent and
    /// the server it tracks: UP only when all three say so (HAProxy `check_notify_success`);
    /// returns the change. A server coming back with `slowstart` starts with the least weight.
    fn settle(&mut self, server: ServerId, slowstart: bool) -> Option<Transition> {
        let i = server.index();
        let up = self.health[i].is_up() && self.agent_up[i] && self.track_up[i];
        let oper = if up { OperState::Up } else { OperState::Down };
        if self.servers[i].oper == oper {
            return None;
        }
        self.servers[i].oper = oper;
        if up && slowstart {
            // In the same critical section: no pick sees it at full weight.
            self.servers[i].ramp = 0;
        }
        self.rebalance();
        Some(if up { Transition::Up } else { Transition::Down })
    }

    /// Sets a server's admin state and/or weight (operator or agent); a running server
    /// entering maintenance is going DOWN, one leaving it UP, for `on-marked-down`/`on-marked-up`.
    fn admin_change(
        &mut self,
        server: ServerId,
        admin: Option<AdminState>,
        weight: Option<u32>,
    ) -> Option<Transition> {
        let i = server.index();
        if let Some(a) = admin {
            self.own_admin[i] = a;
        }
        self.admin_settle(server, weight)
    }

    /// Sets the server's admin state to the stronger of its own and the inherited one (MAINT
    /// over DRAIN over READY), and its weight if given; see [`BackendState::admin_change`].
    fn admin_settle(&mut self, server: ServerId, weight: Option<u32>) -> Option<Transition> {
        let i = server.index();
        let rank = |a: AdminState| match a {
            AdminState::Ready => 0,
            AdminState::Drain => 1,
            AdminState::Maint => 2,
        };
        let (own, inherited) = (self.own_admin[i], self.inherited_admin[i]);
        let admin = if rank(inherited) > rank(own) {
            inherited
        } else {
            own
        };
        let s = &mut self.servers[i];
        let (was_maint, running) = (s.admin == AdminState::Maint, s.oper == OperState::Up);
        s.admin = admin;
        if let Some(w) = weight {
            s.weight = w.min(crate::server::MAX_WEIGHT);
        }
        let is_maint = s.admin == AdminState::Maint;
        if was_maint && !is_maint {
            // Checks were paused: the server starts UP and its next check (at once) decides.
            self.health[i].restart();
        }
        self.rebalance();
        match (was_maint, is_maint) {
            (false, true) if running => Some(Transition::Down),
            (true, false) if running => Some(Transition::Up),
            _ => None,
        }
    }

    /// Lets the balancers see changed states and weights.
    fn rebalance(&mut self) {
        self.balancer.update(&self.servers);
        if let Some(h) = self.hash.as_mut() {
            h.update(&self.servers);
        }
    }
}

impl std::fmt::Debug for BackendState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendState")
            .field("servers", &self.servers)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

/// The outcome of choosing a server.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Choice {
    /// The server, or `None` when no server is usable (`<NOSRV>`).
    pub server: Option<ServerId>,
    /// The server came from the stick table.
    pub sticky: bool,
    /// A stick-table hit named a server that could not be used.
    pub sticky_unusable: bool,
}

/// A backend at run time.
#[derive(Debug)]
pub struct Backend {
    /// Backend name.
    pub name: Arc<str>,
    /// Servers, indexed by [`ServerId`].
    pub servers: Vec<ServerSlot>,
    /// How affinity is decided (native chain or imported rules).
    pub affinity: Box<dyn Affinity>,
    /// The stick tables.
    pub tables: BackendTables,
    /// Retry and redispatch policy.
    pub retry: RetryPolicy,
    /// `option persist`: use a stored server even when it is DOWN.
    pub persist: bool,
    /// `option log-health-checks`: log each check result that changes something.
    pub log_health_checks: bool,
    /// Timeouts.
    pub timeouts: BackendTimeouts,
    /// Passive health: feed live connect results into the health counters.
    pub passive_health: bool,
    /// Affinity outcomes.
    pub outcomes: OutcomeCounters,
    /// Connections for which no server was usable.
    pub nosrv: AtomicU64,
    /// With `balance hash`: what is hashed (`Source` or `Sni`).
    pub balance_hash: Option<AffinityKey>,
    /// The balancing algorithm (retries depend on whether it is deterministic).
    pub algorithm: Algorithm,
    /// Each server's number (HAProxy's `puid`), indexed by [`ServerId`].
    numbers: Vec<u32>,
    state: Mutex<BackendState>,
}

/// What a [`Backend`] is built from.
#[derive(Debug)]
pub struct BackendSpec {
    /// Backend name.
    pub name: String,
    /// Balancing algorithm.
    pub algorithm: Algorithm,
    /// Servers: slot and initial state.
    pub servers: Vec<(ServerSlot, ServerState)>,
    /// How affinity is decided.
    pub affinity: Box<dyn Affinity>,
    /// Stick-table configuration applied to each table.
    pub table: StickTableConfig,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// `option persist`.
    pub persist: bool,
    /// `option log-health-checks`.
    pub log_health_checks: bool,
    /// Timeouts.
    pub timeouts: BackendTimeouts,
    /// Passive health.
    pub passive_health: bool,
    /// Bounded-load factor for source / SNI hashing (percent, e.g. 150).
    pub hash_balance_factor: Option<u32>,
    /// With `balance hash`: what is hashed (`Source` or `Sni`).
    pub balance_hash: Option<AffinityKey>,
    /// Seed of the stick tables' index hash (see [`super::tables::SharedTable::new`]) and of
    /// `balance random`'s draws: the runner's (the daemon's per-process secret).
    pub table_seed: u64,
}

impl Backend {
    /// Builds a backend with fresh tables.
    pub fn new(spec: BackendSpec) -> Self {
        let tables =
            BackendTables::reusing(&spec.affinity.tables(), &spec.table, &[], spec.table_seed);
        Self::with_tables(spec, tables)
    }

    /// Builds a backend reusing `tables` (a reload keeps the learned entries).
    pub fn with_tables(spec: BackendSpec, mut tables: BackendTables) -> Self {
        if spec.affinity.uses_ticket_keys() && tables.ticket_keys_arc().is_none() {
            tables = tables.with_ticket_keys(None);
        }
        let (slots, states): (Vec<ServerSlot>, Vec<ServerState>) = spec.servers.into_iter().unzip();
        let health = slots.iter().map(|s| Health::new(s.health)).collect();
        // `balance random` draws from the runner's seed, a different sequence per backend.
        let balance_seed = spec.table_seed ^ crate::balance::hash::key_hash(spec.name.as_bytes());
        let balancer = Balancer::seeded(spec.algorithm, &states, balance_seed);
        let hash = spec.affinity.uses_hash().then(|| {
            Balancer::new(
                Algorithm::Hash {
                    balance_factor: spec.hash_balance_factor,
                },
                &states,
            )
        });
        let ids: Vec<Option<u32>> = slots.iter().map(|s| s.id).collect();
        Backend {
            name: spec.name.into(),
            numbers: crate::server::number::numbers(&ids),
            servers: slots,
            affinity: spec.affinity,
            tables,
            retry: spec.retry,
            persist: spec.persist,
            log_health_checks: spec.log_health_checks,
            timeouts: spec.timeouts,
            passive_health: spec.passive_health,
            outcomes: OutcomeCounters::default(),
            nosrv: AtomicU64::new(0),
            balance_hash: spec.balance_hash,
            algorithm: spec.algorithm,
            state: Mutex::new(BackendState {
                agent_up: vec![true; states.len()],
                track_up: vec![true; states.len()],
                own_admin: states.iter().map(|s| s.admin).collect(),
                inherited_admin: vec![AdminState::Ready; states.len()],
                servers: states,
                health,
                balancer,
                hash,
            }),
        }
    }

    /// Carries same-named servers' run-time state over a reload from `old`: health (a DOWN
    /// server stays DOWN until its checks bring it back) and the operator's admin state (a
    /// server put in maintenance stays there). Weights come from the new configuration.
    pub fn carry_state(&self, old: &Backend) {
        let old_st = old.state();
        let mut st = self.state();
        for (i, slot) in self.servers.iter().enumerate() {
            let Some(j) = old.servers.iter().position(|o| o.name == slot.name) else {
                continue;
            };
            st.servers[i].oper = old_st.servers[j].oper;
            st.servers[i].admin = old_st.servers[j].admin;
            st.own_admin[i] = old_st.own_admin[j];
            st.inherited_admin[i] = old_st.inherited_admin[j];
            if slot.dns.is_some() && slot.dns == old.servers[j].dns {
                *slot.resolved.lock().unwrap_or_else(|e| e.into_inner()) =
                    old.servers[j].resolved();
                st.servers[i].resolution_maint = old_st.servers[j].resolution_maint;
            }
            let config = *st.health[i].config();
            st.health[i] = Health::continuing(config, &old_st.health[j]);
            if slot.agent.is_some() {
                st.agent_up[i] = old_st.agent_up[j];
            }
            st.track_up[i] = old_st.track_up[j];
            *slot.published.lock().unwrap_or_else(|e| e.into_inner()) = Tracked {
                oper: st.servers[i].oper,
                admin: st.servers[i].admin,
            };
        }
        st.rebalance();
    }

    /// Locks the mutable state (short critical sections only).
    pub fn state(&self) -> MutexGuard<'_, BackendState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server's number (HAProxy's `puid`): the stats' `sid`, the runtime API's `srv_id`,
    /// the peers protocol's `server_id`.
    pub fn number(&self, id: ServerId) -> u32 {
        self.numbers[id.index()]
    }

    /// Looks a server up by name.
    pub fn server_id(&self, name: &str) -> Option<ServerId> {
        self.servers
            .iter()
            .position(|s| *s.name == *name)
            .map(|i| ServerId(i as u32))
    }

    /// Chooses a server for `route`, never one in `avoid` while another is usable, and counts it
    /// as busy. Pair every chosen server with [`Backend::release`].
    /// `balance_key` feeds `balance hash` when the route leaves the choice to the balancer.
    pub fn choose(&self, route: &Route, avoid: &[ServerId], balance_key: Option<&[u8]>) -> Choice {
        let mut st = self.state();
        let mut choice = Choice::default();
        if let Route::Sticky { server, .. } = *route {
            let usable = st.servers.get(server.index()).is_some_and(|s| {
                s.usable_for_sticky() || (self.persist && s.admin != AdminState::Maint)
            });
            if usable && !avoid.contains(&server) {
                choice.server = Some(server);
                choice.sticky = true;
            } else {
                choice.sticky_unusable = !usable;
            }
        }
        if choice.server.is_none() {
            let BackendState {
                servers,
                balancer,
                hash,
                ..
            } = &mut *st;
            choice.server = match (route, hash.as_mut()) {
                (Route::Hash { value, .. }, Some(h)) => {
                    let key = value.to_be_bytes();
                    h.pick(
                        servers,
                        &PickContext {
                            hash_key: Some(&key),
                            avoid,
                        },
                    )
                }
                _ => balancer.pick(
                    servers,
                    &PickContext {
                        hash_key: balance_key,
                        avoid,
                    },
                ),
            };
        }
        if let Some(s) = choice.server {
            st.servers[s.index()].active_conns += 1;
            drop(st);
            let c = &self.servers[s.index()].counters;
            let cur = c.current.fetch_add(1, Ordering::Relaxed) + 1;
            c.max.fetch_max(cur, Ordering::Relaxed);
        }
        choice
    }

    /// Counts `server` busy again for a retry on the same server.
    pub fn acquire(&self, server: ServerId) {
        self.state().servers[server.index()].active_conns += 1;
        let c = &self.servers[server.index()].counters;
        let cur = c.current.fetch_add(1, Ordering::Relaxed) + 1;
        c.max.fetch_max(cur, Ordering::Relaxed);
    }

    /// Releases a server chosen by [`Backend::choose`] or [`Backend::acquire`].
    pub fn release(&self, server: ServerId) {
        let mut st = self.state();
        let s = &mut st.servers[server.index()];
        s.active_conns = s.active_conns.saturating_sub(1);
        drop(st);
        self.servers[server.index()]
            .counters
            .current
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// Feeds an active health-check result; returns what it did to the counter and the UP/DOWN
    /// transition it caused, already applied.
    pub fn health_result(&self, server: ServerId, ok: bool) -> HealthStep {
        let i = server.index();
        let mut step = HealthStep {
            transition: None,
            moved: false,
            progress: (0, 0),
            up: false,
        };
        step.transition = self.change(server, |st| {
            let before = st.health[i].counter();
            st.health[i].on_check(ok);
            let health = &st.health[i];
            step.moved = health.counter() != before;
            step.progress = health.progress();
            step.up = health.is_up();
        });
        step
    }

    /// Applies an agent's answer: admin state, weight, connection limit, and its say on
    /// health; returns the UP/DOWN transition it caused, already applied.
    pub fn agent_result(&self, server: ServerId, effect: &AgentEffect) -> Option<Transition> {
        let i = server.index();
        let slot = &self.servers[i];
        let mut maint = None;
        let t = self.change(server, |st| {
            if let Some(h) = effect.health {
                st.agent_up[i] = h == AgentHealth::Up;
            }
            maint = st.admin_change(server, effect.admin, effect.weight);
            if let Some(m) = effect.maxconn {
                let old = std::mem::replace(&mut st.servers[i].maxconn, m);
                if let Some(sem) = &slot.slots {
                    if m > old {
                        sem.add_permits((m - old) as usize);
                    } else {
                        sem.forget_permits((old - m) as usize);
                    }
                }
            }
        });
        if let Some(m) = maint {
            self.shutdown_sessions(server, m);
        }
        t
    }

    /// The tracked server's state changed (or is first known): the tracker follows its health
    /// and inherits its maintenance or drain.
    pub fn track_result(&self, server: ServerId, tracked: Tracked) -> Option<Transition> {
        let mut maint = None;
        let t = self.change(server, |st| {
            st.track_up[server.index()] = tracked.oper == OperState::Up;
            st.inherited_admin[server.index()] = tracked.admin;
            maint = st.admin_settle(server, None);
        });
        if let Some(m) = maint {
            self.shutdown_sessions(server, m);
        }
        t
    }

    /// Runs `f` on the state, settles the server, publishes a new operational state to its
    /// trackers and acts on the transition (`on-marked-down`...).
    fn change(&self, server: ServerId, f: impl FnOnce(&mut BackendState)) -> Option<Transition> {
        let slot = &self.servers[server.index()];
        let mut st = self.state();
        f(&mut st);
        let t = st.settle(server, slot.slowstart.is_some());
        let now = Tracked {
            oper: st.servers[server.index()].oper,
            admin: st.servers[server.index()].admin,
        };
        let before = std::mem::replace(
            &mut *slot.published.lock().unwrap_or_else(|e| e.into_inner()),
            now,
        );
        drop(st);
        if before != now {
            slot.state_changed.notify_waiters();
        }
        if let Some(t) = t {
            self.shutdown_sessions(server, t);
        }
        t
    }

    /// HAProxy's actions on a state change (`srv_update_status`): a server marked DOWN with
    /// `on-marked-down shutdown-sessions` loses its connections; an active server marked UP
    /// with `on-marked-up shutdown-backup-sessions`, and able to take traffic, closes those of
    /// every backup server. Returns how many connections were closed.
    fn shutdown_sessions(&self, server: ServerId, t: Transition) -> usize {
        let slot = &self.servers[server.index()];
        match t {
            Transition::Down if slot.on_marked_down.is_some() => {
                let n = slot.sessions.kill_all(Kill::Down);
                tracing::info!(target: "tether::health", backend = %self.name, server = %slot.name, closed = n, "on-marked-down: connections closed");
                n
            }
            Transition::Up if slot.on_marked_up.is_some() => {
                let st = self.state();
                let s = &st.servers[server.index()];
                if s.backup || s.effective_weight() == 0 {
                    return 0;
                }
                let backups: Vec<usize> = (st.servers.iter().enumerate())
                    .filter(|(_, s)| s.backup)
                    .map(|(i, _)| i)
                    .collect();
                drop(st);
                let n = (backups.iter())
                    .map(|&i| self.servers[i].sessions.kill_all(Kill::Up))
                    .sum();
                tracing::info!(target: "tether::health", backend = %self.name, server = %slot.name, closed = n, "on-marked-up: backup connections closed");
                n
            }
            _ => 0,
        }
    }

    /// Sets `server`'s slowstart ramp (thousandths of its weight) for the ramp of
    /// `generation`; false when that ramp is over (a newer one started, or the server is down).
    pub fn set_ramp(&self, server: ServerId, generation: u64, ramp: u16) -> bool {
        let slot = &self.servers[server.index()];
        let mut st = self.state();
        let s = &mut st.servers[server.index()];
        if slot.ramp_generation.load(Ordering::Relaxed) != generation || s.oper != OperState::Up {
            return false;
        }
        s.ramp = ramp.min(crate::server::state::FULL_RAMP);
        st.rebalance();
        true
    }

    /// Whether connections queued on a server leave its queue when it goes DOWN or into
    /// maintenance, to be balanced anew: with `option redispatch` and without `option persist`,
    /// as HAProxy's `pendconn_redistribute`.
    pub fn redistributes_queue(&self) -> bool {
        !self.persist
            && !matches!(
                self.retry.redispatch,
                Redispatch::Never | Redispatch::Interval(0)
            )
    }

    /// Whether `server` is in maintenance (its own, the agent's or the tracked server's):
    /// HAProxy pauses its health checks meanwhile.
    pub fn in_maintenance(&self, server: ServerId) -> bool {
        self.state().servers[server.index()].admin == AdminState::Maint
    }

    /// How long until the next check of `server` if one ends now: `inter`, `fastinter` while
    /// the server is moving, `downinter` while it is fully down (HAProxy `srv_getinter`).
    pub fn check_interval(&self, server: ServerId) -> Duration {
        self.state().health[server.index()].interval()
    }

    /// Feeds a live connect result (passive health: `error_limit` consecutive failures count as
    /// one failed check; a success never brings a DOWN server back, only checks do).
    pub fn passive_result(&self, server: ServerId, ok: bool) -> Option<Transition> {
        self.change(server, |st| {
            st.health[server.index()].on_connect_result(ok);
        })
    }

    /// Operator action: sets a server's admin state and/or weight. A running server entering
    /// maintenance is going DOWN, one leaving it UP, for `on-marked-down`/`on-marked-up` (as
    /// HAProxy's `srv_update_status`).
    pub fn set_admin(&self, server: ServerId, admin: Option<AdminState>, weight: Option<u32>) {
        let mut maint = None;
        self.change(server, |st| maint = st.admin_change(server, admin, weight));
        if let Some(t) = maint {
            self.shutdown_sessions(server, t);
        }
    }

    /// DNS or `init-addr` result: the server's new address (`None`: it has none and is in
    /// maintenance until one comes, HAProxy's "MAINT (resolution)"). The address and the
    /// state change together under the backend's lock, so no pick sees one without the other.
    /// Stick entries name the server, not its address: they follow it to the new one.
    /// Returns the previous address.
    pub fn set_resolved(&self, server: ServerId, ip: Option<IpAddr>) -> Option<SocketAddr> {
        let slot = &self.servers[server.index()];
        let port = slot.dns.as_ref().map_or(0, |d| d.port);
        let mut st = self.state();
        let mut resolved = slot.resolved.lock().unwrap_or_else(|e| e.into_inner());
        let before = *resolved;
        *resolved = ip.map(|ip| SocketAddr::new(ip, port));
        drop(resolved);
        st.servers[server.index()].resolution_maint = ip.is_none();
        st.rebalance();
        before
    }

    /// What HAProxy's retry decision looks at: is `server` still UP, how many servers can take
    /// balanced traffic.
    pub fn retry_context(&self, server: ServerId) -> RetryContext {
        let st = self.state();
        RetryContext {
            target_up: st
                .servers
                .get(server.index())
                .is_some_and(|s| s.oper == OperState::Up),
            usable_servers: st
                .servers
                .iter()
                .filter(|s| !s.backup && s.usable_for_balance())
                .count(),
        }
    }

    /// HAProxy's `nbsrv`: the usable active servers; without any, 1 when a backup serves (only
    /// the first usable backup takes traffic, as HAProxy without `option allbackups`).
    pub fn nbsrv(&self) -> u32 {
        let st = self.state();
        let usable = |backup: bool| {
            st.servers
                .iter()
                .filter(|s| s.backup == backup && s.usable_for_balance())
                .count() as u32
        };
        match usable(false) {
            0 => usable(true).min(1),
            n => n,
        }
    }

    /// A copy of the server states, for reports.
    pub fn server_states(&self) -> Vec<ServerState> {
        self.state().servers.clone()
    }
}
