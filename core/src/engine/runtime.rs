//! A whole configuration at run time: frontends wired to backends, process limits.
//!
//! Built from a validated [`crate::config::Config`] by [`build`]; a reload builds a new one that
//! takes over the stick tables of the old one, backend by backend and server by name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::backend::Backend;
use super::frontend::Frontend;

/// Frontends, backends and process-wide settings.
#[derive(Debug)]
pub struct Runtime {
    /// Frontends, in configuration order.
    pub frontends: Vec<Arc<Frontend>>,
    /// Backends by name (stable order).
    pub backends: BTreeMap<String, Arc<Backend>>,
    /// Most connections the process keeps open; accepting pauses at the limit.
    pub maxconn: usize,
    /// Pipes a transport that splices may hold at once (`max-pipes`; 0: never splice).
    pub pipes: usize,
    /// Capacity asked for each splicing pipe (`pipe-size`; `None`: the system's).
    pub pipe_size: Option<usize>,
    /// How long established connections may take to finish after SIGTERM.
    pub grace: Duration,
    /// The `[[resolvers]]` sections whose name servers keep servers' addresses current.
    pub resolvers: Vec<config::resolvers::Resolvers>,
    /// Seeds the DNS query ids (the runner's secret, as for the stick tables).
    pub dns_seed: u64,
}

use crate::affinity::{Affinity, AffinityKey, Chain, Rules};
use crate::balance::Algorithm;
use crate::config::{self, Config};
use crate::retry::RetryPolicy;
use crate::server::check::{CaFiles, CheckTls, Plan, TlsClient};
use crate::server::{HealthConfig, ServerState};
use crate::stick::StickTableConfig;

use super::backend::{AgentSlot, BackendSpec, BackendTimeouts, ServerSlot};
use super::router::Router;
use super::tables::BackendTables;
use crate::route::RouteTable;

/// Why a validated configuration still cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A frontend names a backend that does not exist.
    #[error("frontend {frontend}: backend {backend:?} is not defined; add a [[backend]] named {backend:?}")]
    UnknownBackend {
        /// The frontend.
        frontend: String,
        /// The missing backend.
        backend: String,
    },
    /// A frontend's route rules do not compile (a list file went missing since validation...).
    #[error("frontend {frontend}: route rule {rule}: {message}; {fix}")]
    Route {
        /// The frontend.
        frontend: String,
        /// The 1-based rule.
        rule: usize,
        /// What is wrong.
        message: String,
        /// What to write instead.
        fix: String,
    },
    /// A server's checks over TLS cannot be set up (CA file not read or not PEM...).
    #[error("backend {backend}, server {server}: check TLS: {message}; {fix}")]
    CheckTls {
        /// The backend.
        backend: String,
        /// The server.
        server: String,
        /// What is wrong.
        message: String,
        /// What to do instead.
        fix: String,
    },
    /// An imported rule uses something the engine does not evaluate.
    #[error("backend {backend}: {what} is not supported at run time; {fix}")]
    Unsupported {
        /// The backend.
        backend: String,
        /// What is unsupported.
        what: String,
        /// What to do instead.
        fix: String,
    },
}

/// Builds the runtime for `config`. With `previous`, stick tables of same-named backends are
/// taken over (same kind and table settings) and their entries renumbered to the new server
/// order by server name; entries of removed servers are dropped.
///
/// The stick tables' index hash uses a fixed seed here, so runs are reproducible (the simulator,
/// tests); a daemon facing the Internet uses [`build_seeded`] with a secret seed.
pub fn build(config: &Config, previous: Option<&Runtime>) -> Result<Runtime, BuildError> {
    build_seeded(config, previous, 0)
}

/// Like [`build`], with `table_seed` keying the stick tables' index hash, so clients cannot
/// choose session IDs that collide in it, and seeding `balance random`'s draws (the core has
/// no randomness of its own: the daemon passes a per-process secret from the OS).
pub fn build_seeded(
    config: &Config,
    previous: Option<&Runtime>,
    table_seed: u64,
) -> Result<Runtime, BuildError> {
    build_with_cas(config, previous, table_seed, &CaFiles::default())
}

/// Like [`build_seeded`], with the contents of the CA files the configuration names
/// ([`Config::ca_files`]), read by the caller: checks over TLS verify servers against them.
pub fn build_with_cas(
    config: &Config,
    previous: Option<&Runtime>,
    table_seed: u64,
    cas: &CaFiles,
) -> Result<Runtime, BuildError> {
    let mut backends: BTreeMap<String, Arc<Backend>> = BTreeMap::new();
    for b in &config.backends {
        let old = previous.and_then(|p| p.backends.get(&b.name));
        let backend = build_backend(b, old.map(|o| &**o), table_seed, cas)?;
        backends.insert(b.name.clone(), Arc::new(backend));
    }
    let mut frontends = Vec::new();
    for f in &config.frontends {
        let backend =
            backends
                .get(&f.backend)
                .cloned()
                .ok_or_else(|| BuildError::UnknownBackend {
                    frontend: f.name.clone(),
                    backend: f.backend.clone(),
                })?;
        let cfg_backend = config.backends.iter().find(|b| b.name == f.backend);
        let router = build_router(config, f, &backends)?;
        // An imported backend inspects as HAProxy does: only as long as its own
        // `tcp-request inspect-delay` says (none: no waiting at all). Rules that read the
        // hello wait as long as the frontend's own delay says.
        let inspect_delay = match cfg_backend.and_then(|b| b.haproxy.as_ref()) {
            _ if router.as_ref().is_some_and(|r| r.table.needs_hello()) => f.inspect_delay,
            Some(h) if cfg_backend.is_some_and(|b| b.affinity.is_none()) => {
                h.request_inspect_delay.unwrap_or(Duration::ZERO)
            }
            _ => f.inspect_delay,
        };
        for bind in &f.bind {
            let mut fe = Frontend::new(f.name.clone(), bind.clone(), backend.clone());
            fe.router = router.clone();
            if let Ok(addr) = bind.parse() {
                fe.destination = addr;
            }
            fe.accept_proxy = f.accept_proxy;
            fe.inspect_delay = inspect_delay;
            fe.inspect_cap = usize::try_from(f.inspect_cap).unwrap_or(usize::MAX).max(64);
            fe.timeout_client = f.timeout_client;
            fe.timeout_client_fin = f.timeout_client_fin;
            fe.tcp_keepalive = f.tcp_keepalive;
            fe.dont_log_null = f.dont_log_null;
            fe.defer_accept = f.defer_accept;
            fe.maxconn = f.maxconn.map(|n| n as usize);
            frontends.push(Arc::new(fe));
        }
    }
    Ok(Runtime {
        frontends,
        backends,
        maxconn: config.global.maxconn.max(1) as usize,
        pipes: config.global.pipes() as usize,
        pipe_size: config.global.pipe_size.map(|n| n as usize),
        grace: config.global.grace,
        resolvers: config.resolvers.clone(),
        dns_seed: table_seed ^ 0x646e_735f_6964_7331,
    })
}

/// A reload keeps a same-named server's `maxconn` slots: connections still running under the
/// old configuration hold them, so the new one must count them against the limit (a fresh
/// semaphore would let `maxconn` more in). A changed `maxconn` resizes the kept slots (a smaller
/// one as far as free slots allow now).
fn carry_slots(
    mut servers: Vec<(ServerSlot, ServerState)>,
    old: &Backend,
) -> Vec<(ServerSlot, ServerState)> {
    let old_states = old.server_states();
    for (slot, state) in &mut servers {
        let Some(kept) = old
            .servers
            .iter()
            .find(|o| *o.name == *slot.name)
            .and_then(|o| o.slots.clone())
        else {
            continue;
        };
        let Some(new) = &slot.slots else { continue };
        let was = old_states
            .iter()
            .find(|o| *o.name == *slot.name)
            .map_or(0, |o| o.maxconn as usize);
        let want = new.available_permits();
        match want.cmp(&was) {
            std::cmp::Ordering::Greater => kept.add_permits(want - was),
            std::cmp::Ordering::Less => {
                kept.forget_permits(was - want);
            }
            std::cmp::Ordering::Equal => {}
        }
        debug_assert_eq!(state.maxconn as usize, want);
        slot.slots = Some(kept);
    }
    servers
}

/// Compiles a frontend's route rules (none: `None`), naming backends by their config order.
fn build_router(
    config: &Config,
    f: &config::Frontend,
    backends: &BTreeMap<String, Arc<Backend>>,
) -> Result<Option<Arc<Router>>, BuildError> {
    if f.routes.is_empty() {
        return Ok(None);
    }
    let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    let rules = config::route::compile_rules(&f.routes, &names).map_err(|problems| {
        let (i, p) = problems.into_iter().next().expect("an error has a problem");
        BuildError::Route {
            frontend: f.name.clone(),
            rule: i + 1,
            message: format!("{}: {}", p.key, p.message),
            fix: p.fix,
        }
    })?;
    let targets = names
        .iter()
        .filter_map(|n| backends.get(*n).cloned())
        .collect();
    Ok(Some(Arc::new(Router {
        table: RouteTable::compile(rules),
        backends: targets,
    })))
}

/// A server's slot (address, limits, check) and its initial state, from its config and the
/// backend's check settings.
fn build_server(
    s: &config::Server,
    b: &config::Backend,
    plan: &Plan,
    cas: &CaFiles,
) -> Result<(ServerSlot, ServerState), BuildError> {
    let health = HealthConfig {
        inter: s.inter.unwrap_or(b.check.inter),
        fastinter: s.fastinter.or(b.check.fastinter),
        downinter: s.downinter.or(b.check.downinter),
        rise: s.rise.unwrap_or(b.check.rise),
        fall: s.fall.unwrap_or(b.check.fall),
        observe: b.check.passive,
        ..HealthConfig::default()
    };
    let mut state = ServerState::new(s.name.clone(), s.weight);
    state.backup = s.backup;
    if s.disabled {
        state.admin = crate::server::state::AdminState::Maint;
    }
    state.maxconn = s.maxconn.unwrap_or(0);
    let dns = server_dns(s);
    // A resolved server has no address until `init-addr` or DNS gives one.
    state.resolution_maint = dns.is_some();
    Ok((
        ServerSlot {
            id: s.id,
            dns,
            check: s.check,
            health,
            slots: s
                .maxconn
                .filter(|&n| n > 0)
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n as usize))),
            maxqueue: s.maxqueue,
            plan: plan.clone(),
            check_address: s.check_address(None),
            check_tls: check_tls(s, b, plan, cas)?,
            initial_weight: s.weight,
            send_proxy: s.send_proxy,
            check_send_proxy: s.checks_send_proxy(),
            slowstart: s.slowstart,
            on_marked_down: s.on_marked_down,
            on_marked_up: s.on_marked_up,
            track_sessions: s.on_marked_down.is_some()
                || (s.backup && (b.servers.iter()).any(|o| !o.backup && o.on_marked_up.is_some())),
            tcp_keepalive: b.tcp_keepalive,
            agent: agent_slot(s, &health),
            track: s
                .tracked(&b.name)
                .map(|(tb, ts)| (tb.to_string(), ts.to_string())),
            ..ServerSlot::new(s.name.clone(), s.address.clone())
        },
        state,
    ))
}

/// The agent check of `s`, when it has one: its address, interval (`agent-inter`, else the
/// server's `inter`) and plan.
fn agent_slot(s: &config::Server, health: &HealthConfig) -> Option<AgentSlot> {
    let agent = s.agent.as_ref()?;
    Some(AgentSlot {
        address: s.agent_address()?,
        inter: agent.inter.unwrap_or(health.inter),
        plan: crate::server::check::agent::plan(agent.send.as_deref()),
    })
}

/// The DNS settings of `s` when a `resolvers` section resolves its host name.
fn server_dns(s: &config::Server) -> Option<super::backend::ServerDns> {
    let resolvers = s.resolvers.clone()?;
    let (host, port) = s.address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    Some(super::backend::ServerDns {
        resolvers,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        prefer: s.resolve_prefer.unwrap_or_default(),
        init: s
            .init_addr
            .clone()
            .unwrap_or_else(config::resolvers::default_init_addr),
        check_port: s.check_addr.is_none().then(|| s.check_port.unwrap_or(port)),
    })
}

/// The TLS client of `s`'s checks, when they run and use TLS (`check-ssl`, or a `tcp-check
/// connect ssl` step, which takes the server's settings or HAProxy's defaults).
fn check_tls(
    s: &config::Server,
    b: &config::Backend,
    plan: &Plan,
    cas: &CaFiles,
) -> Result<Option<Arc<TlsClient>>, BuildError> {
    let default = CheckTls {
        enabled: false,
        ..CheckTls::default()
    };
    let tls = b.check_tls(s);
    if !s.check || !(tls.is_some_and(|t| t.enabled) || plan.needs_tls()) {
        return Ok(None);
    }
    let tls = tls.unwrap_or(&default);
    let pem = tls.ca_file.as_deref().and_then(|f| cas.get(f));
    TlsClient::new(tls, pem)
        .map(|c| Some(Arc::new(c)))
        .map_err(|e| BuildError::CheckTls {
            backend: b.name.clone(),
            server: s.name.clone(),
            message: e.what,
            fix: e.fix,
        })
}

fn build_backend(
    b: &config::Backend,
    old: Option<&Backend>,
    table_seed: u64,
    cas: &CaFiles,
) -> Result<Backend, BuildError> {
    let algorithm = match b.balance {
        config::BalanceAlgorithm::RoundRobin => Algorithm::RoundRobin,
        config::BalanceAlgorithm::LeastConn => Algorithm::LeastConn,
        config::BalanceAlgorithm::First => Algorithm::First,
        config::BalanceAlgorithm::Hash => Algorithm::Hash {
            balance_factor: b.hash_balance_factor,
        },
        config::BalanceAlgorithm::Random => Algorithm::Random {
            draws: b.random_draws.unwrap_or(crate::balance::DEFAULT_DRAWS),
        },
    };
    let affinity = match b.effective_affinity() {
        Some(keys) => {
            let chain = Chain::new(&keys)
                .with_name_span(b.ticket_key_name.unwrap_or_default())
                .with_bootstrap(b.ticket_key_bootstrap.unwrap_or_default());
            Box::new(chain) as Box<dyn Affinity>
        }
        None => Box::new(build_rules(b)?),
    };
    // Sharding hashes the key as the table holds it, so the length is clamped here once.
    let table = StickTableConfig {
        key_len: b.stick_table.key_bytes() as u32,
        ..b.stick_table.clone()
    };
    let plan = b
        .check
        .protocol
        .plan()
        .map_err(|e| BuildError::Unsupported {
            backend: b.name.clone(),
            what: format!("health check: {}", e.what),
            fix: e.fix,
        })?;
    let servers = b
        .servers
        .iter()
        .map(|s| build_server(s, b, &plan, cas))
        .collect::<Result<Vec<_>, _>>()?;
    let timeouts = BackendTimeouts {
        connect: b.timeout_connect,
        server: b.timeout_server,
        queue: b.timeout_queue.unwrap_or(b.timeout_connect),
        tunnel: b.timeout_tunnel,
        server_fin: b.timeout_server_fin,
        check: b.timeout_check,
    };
    let spec = BackendSpec {
        name: b.name.clone(),
        algorithm,
        balance_hash: match (b.balance, b.hash_key) {
            (config::BalanceAlgorithm::Hash, Some(config::HashKey::Sni)) => Some(AffinityKey::Sni),
            (config::BalanceAlgorithm::Hash, _) => Some(AffinityKey::Source),
            _ => None,
        },
        servers,
        affinity,
        table,
        retry: RetryPolicy {
            retries: b.retries,
            redispatch: b.redispatch,
            redispatch_on_refused: b.redispatch_on_refused,
            connect_timeout: b.timeout_connect,
        },
        persist: b.persist,
        log_health_checks: b.log_health_checks,
        timeouts,
        passive_health: b.check.passive,
        hash_balance_factor: b.hash_balance_factor,
        table_seed,
    };
    Ok(match old {
        Some(old) => take_over(spec, old),
        None => Backend::new(spec),
    })
}

/// A reload's backend: the same-named backend's stick tables and ticket-key learner are taken
/// over (entries renumbered to the new server order by name, removed servers' dropped), and its
/// servers' `maxconn` slots and run-time state carried over.
fn take_over(spec: BackendSpec, old: &Backend) -> Backend {
    let spec = BackendSpec {
        servers: carry_slots(spec.servers, old),
        ..spec
    };
    let (table, table_seed) = (spec.table.clone(), spec.table_seed);
    let previous: Vec<_> = old.tables.iter().cloned().collect();
    let tables = BackendTables::reusing(&spec.affinity.tables(), &table, &previous, table_seed);
    let names: Vec<Arc<str>> = spec.servers.iter().map(|(s, _)| s.name.clone()).collect();
    // Same servers in the same order: the entries' numbering still holds.
    let renumbered = old.servers.len() != names.len()
        || old.servers.iter().zip(&names).any(|(o, n)| &o.name != n);
    for t in tables.iter() {
        if renumbered && previous.iter().any(|p| Arc::ptr_eq(p, t)) {
            t.remap_servers(|id| {
                let name = &old.servers.get(id.index())?.name;
                names
                    .iter()
                    .position(|n| n == name)
                    .map(|i| crate::ServerId(i as u32))
            });
        }
    }
    let tables = tables.pin();
    let tables = match old.tables.ticket_keys_arc() {
        Some(learner) if spec.affinity.uses_ticket_keys() => {
            learner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remap_servers(|id| {
                    let name = &old.servers.get(id.index())?.name;
                    let i = names.iter().position(|n| n == name)?;
                    Some(crate::ServerId(i as u32))
                });
            tables.with_ticket_keys(Some(learner.clone()))
        }
        _ => tables,
    };
    let backend = Backend::with_tables(spec, tables);
    backend.carry_state(old);
    backend
}

fn build_rules(b: &config::Backend) -> Result<Rules, BuildError> {
    let Some(h) = &b.haproxy else {
        return Ok(Rules::default());
    };
    let unsupported = |what: String, fix: &str| BuildError::Unsupported {
        backend: b.name.clone(),
        what,
        fix: fix.to_string(),
    };
    // Only the hello-type ACLs are evaluated; say what to write instead of the others.
    let supported = |c: &config::Condition| -> Result<config::Condition, BuildError> {
        match c {
            config::Condition::Always
            | config::Condition::ClientHello
            | config::Condition::ServerHello => Ok(c.clone()),
            other => Err(unsupported(
                format!("the condition `{other}`"),
                "use client-hello, server-hello or always, or a native affinity chain",
            )),
        }
    };
    let mut request_accept_if = None;
    for r in &h.request_content {
        match r.action {
            config::ContentAction::Accept => {
                if request_accept_if.is_none() {
                    request_accept_if = Some(supported(&r.when)?);
                }
            }
            config::ContentAction::Reject => return Err(unsupported(
                "`tcp-request content reject`".into(),
                "tether cannot enforce this restriction yet: keep it in force in front of tether \
                 (firewall, network policy) or keep this backend on HAProxy; do not just delete it",
            )),
        }
    }
    let mut rules = Vec::new();
    for s in &h.stick {
        supported(&s.when)?;
        rules.push(s.clone());
    }
    Ok(Rules {
        rules,
        request_accept_if,
        response_inspect: h.response_inspect_delay.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::{build, Runtime};
    use crate::config::load_toml;

    fn runtime(maxconn: u32, previous: Option<&Runtime>) -> Runtime {
        let text = format!(
            r#"
            [[frontend]]
            name = "fe"
            bind = ["127.0.0.1:0"]
            backend = "be"
            [[backend]]
            name = "be"
            [[backend.server]]
            name = "a"
            address = "127.0.0.1:1"
            maxconn = {maxconn}
            "#
        );
        let config = load_toml("test.toml", &text).expect("test config loads");
        build(&config, previous).expect("test config builds")
    }

    fn two_or_three(three: bool, previous: Option<&Runtime>) -> Runtime {
        let mut text = String::from(
            "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\
             [[backend]]\nname = \"be\"\ncheck = { inter = \"1s\", rise = 2, fall = 2 }\n",
        );
        let names: &[&str] = if three { &["a", "b", "c"] } else { &["a", "b"] };
        for (i, n) in names.iter().enumerate() {
            text += &format!(
                "[[backend.server]]\nname = \"{n}\"\naddress = \"127.0.0.1:{}\"\n",
                i + 1
            );
        }
        let config = load_toml("test.toml", &text).expect("test config loads");
        build(&config, previous).expect("test config builds")
    }

    #[test]
    fn a_reload_keeps_down_servers_down_and_maintenance_in_place() {
        use crate::server::{AdminState, OperState};
        use crate::ServerId;
        let old = two_or_three(false, None);
        let be = &old.backends["be"];
        be.health_result(ServerId(0), false);
        be.health_result(ServerId(0), false);
        be.set_admin(ServerId(1), Some(AdminState::Maint), None);
        let new = two_or_three(true, Some(&old));
        let be = &new.backends["be"];
        let st = be.server_states();
        assert_eq!(
            st[0].oper,
            OperState::Down,
            "a crashed server is not UP again"
        );
        assert_eq!(st[1].admin, AdminState::Maint);
        assert_eq!(
            (st[2].oper, st[2].admin),
            (OperState::Up, AdminState::Ready)
        );
        // It comes back after `rise` good checks, as before the reload.
        assert_eq!(be.health_result(ServerId(0), true).transition, None);
        assert!(be.health_result(ServerId(0), true).transition.is_some());
    }

    /// `balance random` draws from the runner's seed: the same seed replays the same picks
    /// (the simulator), another seed gives another sequence (each daemon process its own).
    #[test]
    fn balance_random_draws_from_the_seed_the_runner_gives() {
        use crate::affinity::Route;
        let mut text = String::from(
            "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\
             [[backend]]\nname = \"be\"\nbalance = \"random\"\nrandom-draws = 1\n",
        );
        for i in 1..=4 {
            text += &format!("[[backend.server]]\nname = \"s{i}\"\naddress = \"127.0.0.1:{i}\"\n");
        }
        let config = load_toml("test.toml", &text).expect("test config loads");
        let picks = |seed: u64| {
            let rt = super::build_seeded(&config, None, seed).unwrap();
            let be = &rt.backends["be"];
            (0..40)
                .map(|_| {
                    let s = be.choose(&Route::Balance, &[], None).server.unwrap();
                    be.release(s);
                    s.0
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(picks(1), picks(1));
        assert_ne!(picks(1), picks(2));
        let mut seen = picks(3);
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, [0, 1, 2, 3], "every server is drawn");
    }

    fn with_table(servers: &[&str], previous: Option<&Runtime>) -> Runtime {
        with_chain("session-id", servers, previous)
    }

    fn with_chain(key: &str, servers: &[&str], previous: Option<&Runtime>) -> Runtime {
        let mut text = format!(
            "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"be\"\n\
             [[backend]]\nname = \"be\"\naffinity = [\"{key}\"]\n",
        );
        for (i, n) in servers.iter().enumerate() {
            text += &format!(
                "[[backend.server]]\nname = \"{n}\"\naddress = \"127.0.0.1:{}\"\n",
                i + 1
            );
        }
        let config = load_toml("test.toml", &text).expect("test config loads");
        build(&config, previous).expect("test config builds")
    }

    #[test]
    fn a_connection_from_before_a_reload_cannot_write_an_old_server_index() {
        use crate::affinity::{TableKind, Tables};
        use crate::stick::Lookup;
        use crate::{ServerId, Timestamp};
        let now = Timestamp::from_millis(1);
        let old = with_table(&["a", "b", "c"], None);
        let old_be = old.backends["be"].clone();
        let kind = TableKind::SessionId;
        assert!(old_be.tables.learn(kind, b"k1", ServerId(2), now).is_some());
        // "a" is removed: "c" is now index 1, and index 2 does not exist.
        let new = with_table(&["b", "c"], Some(&old));
        let new_be = &new.backends["be"];
        assert_eq!(
            new_be.tables.lookup(kind, b"k1", now),
            Some(Lookup::Hit(ServerId(1)))
        );
        // A connection still running on the old backend learns "c" by its old index 2.
        assert_eq!(old_be.tables.learn(kind, b"k2", ServerId(2), now), None);
        assert_eq!(new_be.tables.lookup(kind, b"k2", now), Some(Lookup::Miss));
        assert_eq!(old_be.tables.lookup(kind, b"k1", now), Some(Lookup::Miss));
        // The same servers again renumber nothing: connections across that reload keep learning.
        let same = with_table(&["b", "c"], Some(&new));
        assert!(new_be.tables.learn(kind, b"k3", ServerId(0), now).is_some());
        let same_be = &same.backends["be"];
        assert_eq!(
            same_be.tables.lookup(kind, b"k3", now),
            Some(Lookup::Hit(ServerId(0)))
        );
    }

    #[test]
    fn a_connection_from_before_a_reload_cannot_teach_the_ticket_key_learner_an_old_index() {
        use crate::affinity::ticket_keys::{Bootstrap, Guess, KeyName};
        use crate::affinity::Tables;
        use crate::ServerId;
        let name = |b: u8| KeyName::from_ticket(&[b; 40], Default::default()).unwrap();
        let old = with_chain("ticket-key", &["a", "b", "c"], None);
        let old_be = old.backends["be"].clone();
        old_be
            .tables
            .ticket_learner()
            .unwrap()
            .on_issued(&name(1), ServerId(2));
        // "a" is removed: "c" is now index 1.
        let new = with_chain("ticket-key", &["b", "c"], Some(&old));
        let new_be = new.backends["be"].clone();
        let route = |be: &crate::engine::backend::Backend, n| {
            let mut k = be.tables.ticket_learner().expect("current numbering");
            k.route(&name(n), None, Bootstrap::None)
        };
        assert_eq!(route(&new_be, 1), Guess::Owner(ServerId(1)));
        // The old backend's connection cannot reach the renumbered learner at all.
        assert!(old_be.tables.ticket_learner().is_none());
        assert_eq!(route(&new_be, 2), Guess::Unknown);
        // The same servers again renumber nothing: connections across that reload keep teaching.
        let same = with_chain("ticket-key", &["b", "c"], Some(&new));
        new_be
            .tables
            .ticket_learner()
            .expect("not renumbered")
            .on_issued(&name(3), ServerId(0));
        assert_eq!(route(&same.backends["be"], 3), Guess::Owner(ServerId(0)));
    }

    fn free_slots(rt: &Runtime) -> usize {
        let be = &rt.backends["be"];
        be.servers[0]
            .slots
            .as_ref()
            .expect("maxconn")
            .available_permits()
    }

    #[test]
    fn a_reload_counts_connections_still_running_against_maxconn() {
        let old = runtime(2, None);
        let sem = old.backends["be"].servers[0]
            .slots
            .clone()
            .expect("maxconn");
        let _running = sem.try_acquire_owned().expect("a slot");
        let same = runtime(2, Some(&old));
        assert_eq!(
            free_slots(&same),
            1,
            "the running connection holds one of 2 slots"
        );
        let bigger = runtime(3, Some(&same));
        assert_eq!(free_slots(&bigger), 2);
        let smaller = runtime(1, Some(&bigger));
        assert_eq!(free_slots(&smaller), 0);
    }
}
