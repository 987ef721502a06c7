//! One consistent read of the runtime's counters and states, shared by the HTML page, the CSV, the
//! JSON and the Prometheus output so that all four always say the same thing.

use std::sync::atomic::Ordering;

use tether_core::affinity::AffinityOutcome;
use tether_core::engine::runtime::Runtime;
use tether_core::engine::{Backend, ServerSlot};
use tether_core::server::{AdminState, OperState, ServerId, ServerState};
use tether_core::stick::StickStats;

/// Everything the stats outputs show.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Frontends, merged by name, in configuration order.
    pub frontends: Vec<FrontendView>,
    /// Backends, by name.
    pub backends: Vec<BackendView>,
    /// Connections open in the process.
    pub actconn: u64,
}

/// A frontend (all its bind addresses together).
#[derive(Debug, Clone)]
pub struct FrontendView {
    /// Name.
    pub name: String,
    /// Listening addresses.
    pub binds: Vec<String>,
    /// The backend it feeds.
    pub backend: String,
    /// Connections open now.
    pub current: u64,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections a route rule refused at accept (HAProxy `dcon`).
    pub denied_connections: u64,
    /// Connections a route rule refused after inspection (HAProxy `dreq`).
    pub denied_requests: u64,
}

/// A backend and its servers.
#[derive(Debug, Clone)]
pub struct BackendView {
    /// Name.
    pub name: String,
    /// Servers in declaration order.
    pub servers: Vec<ServerView>,
    /// Affinity outcomes and their counts.
    pub outcomes: Vec<(AffinityOutcome, u64)>,
    /// Connections that found no usable server.
    pub nosrv: u64,
    /// Stick tables.
    pub tables: Vec<TableView>,
    /// What `ticket-key` affinity has learned, when the backend uses it.
    pub ticket_keys: Option<TicketKeysView>,
}

/// The ticket key names a backend has learned (hex names, never tickets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketKeysView {
    /// Per server that answered: its name, its confirmed key names, whether it is unnamed.
    pub servers: Vec<(String, Vec<String>, bool)>,
    /// Names several servers accept (a shared ticket key).
    pub shared: Vec<String>,
}

impl TicketKeysView {
    fn read(b: &tether_core::engine::backend::Backend) -> Option<Self> {
        let learner = b.tables.ticket_keys_arc()?;
        let snap = learner.lock().unwrap_or_else(|e| e.into_inner()).snapshot();
        let name = |id: tether_core::ServerId| {
            b.servers
                .get(id.index())
                .map_or_else(|| format!("#{}", id.0), |s| s.name.to_string())
        };
        Some(TicketKeysView {
            servers: snap
                .servers
                .into_iter()
                .map(|s| (name(s.server), s.names, s.unnamed))
                .collect(),
            shared: snap.shared,
        })
    }
}

/// The latest active health check of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckView {
    /// HAProxy's status code: `L4OK`, `L4CON`, `L7OK`, `L7STS`...
    pub status: &'static str,
    /// The protocol's code (HTTP status...), if any.
    pub code: Option<u32>,
    /// HAProxy's description of the status (`Layer7 wrong status`).
    pub desc: &'static str,
    /// Check duration in milliseconds.
    pub duration_ms: u64,
    /// Milliseconds since it finished.
    pub age_ms: u64,
    /// The error, when it failed.
    pub info: Option<String>,
}

impl CheckView {
    /// HAProxy's wording: `L4OK in 0ms, 2s ago`.
    pub fn describe(&self) -> String {
        let code = self.code.map(|c| format!("/{c}")).unwrap_or_default();
        let mut s = format!(
            "{}{code} in {}ms, {}s ago",
            self.status,
            self.duration_ms,
            self.age_ms / 1000
        );
        if let Some(i) = &self.info {
            s.push_str(&format!(" ({i})"));
        }
        s
    }
}

/// One server's state and counters.
#[derive(Debug, Clone)]
pub struct ServerView {
    /// Name.
    pub name: String,
    /// Its number (HAProxy's `sid`).
    pub number: u32,
    /// Address: where connections go now (the one DNS gave, for a resolved server).
    pub address: String,
    /// No address from DNS (HAProxy "MAINT (resolution)").
    pub resolution_maint: bool,
    /// Whether health checks run.
    pub check: bool,
    /// Operator state.
    pub admin: AdminState,
    /// Health state.
    pub oper: OperState,
    /// Configured (or operator-set) weight.
    pub weight: u32,
    /// Weight the balancer uses now (0 when not usable).
    pub effective_weight: u32,
    /// Backup server.
    pub backup: bool,
    /// Connection limit (0 = none).
    pub maxconn: u32,
    /// HAProxy's "n/m" check progress.
    pub progress: (u32, u32),
    /// Counters, read once.
    pub current: u64,
    /// Highest concurrent connections seen.
    pub max: u64,
    /// Connections established.
    pub total: u64,
    /// Bytes client to server.
    pub bytes_in: u64,
    /// Bytes server to client.
    pub bytes_out: u64,
    /// Failed connects.
    pub connect_errors: u64,
    /// Retries.
    pub retries: u64,
    /// Redispatches away from this server.
    pub redispatches: u64,
    /// Failed health checks.
    pub check_failures: u64,
    /// UP to DOWN transitions by checks (HAProxy `chkdown`).
    pub check_downs: u64,
    /// Seconds since checks last changed the state (HAProxy `lastchg`), if they ever did.
    pub last_change_s: Option<u64>,
    /// Latest active check: status code, duration, age, error.
    pub last_check: Option<CheckView>,
    /// The agent check, when the server has one.
    pub agent: Option<AgentView>,
    /// The server this one tracks (`backend/server`), if any.
    pub tracked: Option<String>,
    /// In maintenance only because the tracked server is (HAProxy `MAINT (via b/s)`).
    pub inherited_maint: bool,
}

/// A server's agent check for the stats page (HAProxy's `agent_*` columns).
#[derive(Debug, Clone)]
pub struct AgentView {
    /// The agent's say on health: false after `down` until `up` (HAProxy `agent_health` 0/1).
    pub up: bool,
    /// Its latest answer.
    pub last: Option<CheckView>,
}

impl ServerView {
    /// The CSV status word, as HAProxy writes it.
    pub fn status(&self) -> &'static str {
        let agent = self.agent.as_ref();
        match (self.admin, self.oper) {
            _ if self.resolution_maint => "MAINT (resolution)",
            (AdminState::Maint, _) => "MAINT",
            (_, OperState::Down) if agent.is_some_and(|a| !a.up) => "DOWN (agent)",
            (_, OperState::Down) => "DOWN",
            (AdminState::Drain, _) if agent.is_some() => "DRAIN (agent)",
            (AdminState::Drain, _) => "DRAIN",
            (AdminState::Ready, OperState::Up) if !self.check && self.tracked.is_none() => {
                "no check"
            }
            (AdminState::Ready, OperState::Up) => "UP",
        }
    }

    /// The status as HAProxy's CSV writes it, with the tracked server a maintenance comes from
    /// (`MAINT (via app/s1)`).
    pub fn status_text(&self) -> String {
        match &self.tracked {
            Some(t) if self.inherited_maint => format!("MAINT (via {t})"),
            _ => self.status().to_string(),
        }
    }

    /// The status with HAProxy's check progress ("UP 2/3") while a transition is under way.
    pub fn status_detail(&self) -> String {
        let s = self.status_text();
        let (n, m) = self.progress;
        if self.check && self.admin != AdminState::Maint && n != m {
            format!("{s} {n}/{m}")
        } else {
            s.to_string()
        }
    }
}

/// A stick table's fill and counters.
#[derive(Debug, Clone)]
pub struct TableView {
    /// Which key it stores (`session-id`, `ticket`, `psk`, `rule`).
    pub kind: &'static str,
    /// Counters and fill.
    pub stats: StickStats,
}

impl TableView {
    /// Fill ratio 0..=1.
    pub fn occupancy(&self) -> f64 {
        if self.stats.capacity == 0 {
            0.0
        } else {
            self.stats.entries as f64 / self.stats.capacity as f64
        }
    }
}

impl BackendView {
    /// UP when a server can take traffic, else DOWN (HAProxy's backend status).
    pub fn status(&self) -> &'static str {
        if self
            .servers
            .iter()
            .any(|s| s.oper == OperState::Up && s.admin != AdminState::Maint)
        {
            "UP"
        } else {
            "DOWN"
        }
    }

    /// Sum of a server counter.
    pub fn sum(&self, f: impl Fn(&ServerView) -> u64) -> u64 {
        self.servers.iter().map(f).sum()
    }

    /// Count of one affinity outcome label (e.g. `hit`).
    pub fn outcome(&self, label: &str) -> u64 {
        self.outcomes
            .iter()
            .filter(|(o, _)| o.label() == label)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Reads `runtime` now.
pub fn take(runtime: &Runtime, actconn: u64) -> Snapshot {
    Snapshot {
        frontends: frontend_views(runtime),
        backends: runtime.backends.values().map(|b| backend_view(b)).collect(),
        actconn,
    }
}

/// One row per frontend name: a frontend bound to several addresses is one view.
fn frontend_views(runtime: &Runtime) -> Vec<FrontendView> {
    let mut frontends: Vec<FrontendView> = Vec::new();
    for f in &runtime.frontends {
        let current = f.current.load(Ordering::Relaxed);
        let accepted = f.accepted.load(Ordering::Relaxed);
        let denied_connections = f.denied_connections.load(Ordering::Relaxed);
        let denied_requests = f.denied_requests.load(Ordering::Relaxed);
        if let Some(v) = frontends.iter_mut().find(|v| *v.name == *f.name) {
            v.binds.push(f.bind.clone());
            v.current += current;
            v.accepted += accepted;
            v.denied_connections += denied_connections;
            v.denied_requests += denied_requests;
        } else {
            frontends.push(FrontendView {
                name: f.name.to_string(),
                binds: vec![f.bind.clone()],
                backend: f.backend.name.to_string(),
                current,
                accepted,
                denied_connections,
                denied_requests,
            });
        }
    }
    frontends
}

/// A backend's servers, outcomes and tables as they are now.
fn backend_view(b: &Backend) -> BackendView {
    let (states, progress): (Vec<_>, Vec<_>) = {
        let st = b.state();
        (
            st.servers.clone(),
            (st.health.iter().map(|h| h.progress()))
                .zip(st.agent_up.iter().copied())
                .zip(st.own_admin.iter().map(|a| *a != AdminState::Maint))
                .collect(),
        )
    };
    let servers = b
        .servers
        .iter()
        .zip(states)
        .zip(progress)
        .enumerate()
        .map(|(i, ((slot, st), ((progress, agent_up), own_not_maint)))| {
            let mut v = server_view(slot, &st, progress, b.number(ServerId(i as u32)));
            v.inherited_maint = own_not_maint && st.admin == AdminState::Maint;
            v.agent = slot.agent.as_ref().map(|_| AgentView {
                up: agent_up,
                last: check_view(&slot.last_agent),
            });
            v
        })
        .collect();
    BackendView {
        name: b.name.to_string(),
        servers,
        outcomes: b.outcomes.snapshot(),
        nosrv: b.nosrv.load(Ordering::Relaxed),
        tables: b
            .tables
            .iter()
            .map(|t| TableView {
                kind: t.kind().key().as_str(),
                stats: t.stats(),
            })
            .collect(),
        ticket_keys: TicketKeysView::read(b),
    }
}

/// One server's state and counters.
fn server_view(
    slot: &ServerSlot,
    st: &ServerState,
    progress: (u32, u32),
    number: u32,
) -> ServerView {
    let c = &slot.counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    ServerView {
        name: slot.name.to_string(),
        number,
        address: slot.connect_address().into_owned(),
        resolution_maint: st.resolution_maint,
        check: slot.check,
        admin: st.admin,
        oper: st.oper,
        weight: st.weight,
        effective_weight: st.effective_weight(),
        backup: st.backup,
        maxconn: st.maxconn,
        progress,
        current: load(&c.current),
        max: load(&c.max),
        total: load(&c.total),
        bytes_in: load(&c.bytes_in),
        bytes_out: load(&c.bytes_out),
        connect_errors: load(&c.connect_errors),
        retries: load(&c.retries),
        redispatches: load(&c.redispatches),
        check_failures: load(&c.check_failures),
        check_downs: load(&c.check_downs),
        last_change_s: slot
            .last_change
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| t.elapsed().as_secs()),
        last_check: check_view(&slot.last_check),
        agent: None,
        tracked: slot.track.as_ref().map(|(b, s)| format!("{b}/{s}")),
        inherited_maint: false,
    }
}

/// A check's latest result as the page shows it.
fn check_view(
    last: &std::sync::Mutex<Option<tether_core::engine::backend::LastCheck>>,
) -> Option<CheckView> {
    last.lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|l| CheckView {
            status: l.status,
            code: l.code,
            desc: l.desc,
            duration_ms: l.duration.as_millis() as u64,
            age_ms: l.at.elapsed().as_millis() as u64,
            info: l.info.clone(),
        })
}
