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
    /// How long established connections may take to finish after SIGTERM.
    pub grace: Duration,
}

use crate::affinity::{Affinity, AffinityKey, Chain, Rules};
use crate::balance::Algorithm;
use crate::config::{self, Config};
use crate::retry::RetryPolicy;
use crate::server::{HealthConfig, ServerState};
use crate::stick::StickTableConfig;

use super::backend::{BackendSpec, BackendTimeouts, ServerSlot};
use super::tables::BackendTables;

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
/// choose session IDs that collide in it.
pub fn build_seeded(
    config: &Config,
    previous: Option<&Runtime>,
    table_seed: u64,
) -> Result<Runtime, BuildError> {
    let mut backends: BTreeMap<String, Arc<Backend>> = BTreeMap::new();
    for b in &config.backends {
        let old = previous.and_then(|p| p.backends.get(&b.name));
        let backend = build_backend(b, old.map(|o| &**o), table_seed)?;
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
        // An imported backend inspects as HAProxy does: only as long as its own
        // `tcp-request inspect-delay` says (none: no waiting at all).
        let inspect_delay = match cfg_backend.and_then(|b| b.haproxy.as_ref()) {
            Some(h) if cfg_backend.is_some_and(|b| b.affinity.is_none()) => {
                h.request_inspect_delay.unwrap_or(Duration::ZERO)
            }
            _ => f.inspect_delay,
        };
        for bind in &f.bind {
            let mut fe = Frontend::new(f.name.clone(), bind.clone(), backend.clone());
            fe.accept_proxy = f.accept_proxy;
            fe.inspect_delay = inspect_delay;
            fe.inspect_cap = usize::try_from(f.inspect_cap).unwrap_or(usize::MAX).max(64);
            fe.timeout_client = f.timeout_client;
            fe.maxconn = f.maxconn.map(|n| n as usize);
            frontends.push(Arc::new(fe));
        }
    }
    Ok(Runtime {
        frontends,
        backends,
        maxconn: config.global.maxconn.max(1) as usize,
        grace: config.global.grace,
    })
}

fn build_backend(
    b: &config::Backend,
    old: Option<&Backend>,
    table_seed: u64,
) -> Result<Backend, BuildError> {
    let algorithm = match b.balance {
        config::BalanceAlgorithm::RoundRobin => Algorithm::RoundRobin,
        config::BalanceAlgorithm::LeastConn => Algorithm::LeastConn,
        config::BalanceAlgorithm::First => Algorithm::First,
        config::BalanceAlgorithm::Hash => Algorithm::Hash {
            balance_factor: b.hash_balance_factor,
        },
    };
    let affinity = match b.effective_affinity() {
        Some(keys) => Box::new(Chain::new(&keys)) as Box<dyn Affinity>,
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
        .map(|s| {
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
            state.maxconn = s.maxconn.unwrap_or(0);
            (
                ServerSlot {
                    check: s.check,
                    health,
                    slots: s
                        .maxconn
                        .filter(|&n| n > 0)
                        .map(|n| Arc::new(tokio::sync::Semaphore::new(n as usize))),
                    maxqueue: s.maxqueue,
                    plan: plan.clone(),
                    check_address: s.check_address(None),
                    ..ServerSlot::new(s.name.clone(), s.address.clone())
                },
                state,
            )
        })
        .collect::<Vec<_>>();
    let timeouts = BackendTimeouts {
        connect: b.timeout_connect,
        server: b.timeout_server,
        queue: b.timeout_queue.unwrap_or(b.timeout_connect),
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
        table: table.clone(),
        retry: RetryPolicy {
            retries: b.retries,
            redispatch: b.redispatch,
            redispatch_on_refused: b.redispatch_on_refused,
            connect_timeout: b.timeout_connect,
        },
        persist: b.persist,
        timeouts,
        passive_health: b.check.passive,
        hash_balance_factor: b.hash_balance_factor,
        table_seed,
    };
    let Some(old) = old else {
        return Ok(Backend::new(spec));
    };
    let previous: Vec<_> = old.tables.iter().cloned().collect();
    let tables = BackendTables::reusing(&spec.affinity.tables(), &table, &previous, table_seed);
    let names: Vec<String> = spec.servers.iter().map(|(s, _)| s.name.clone()).collect();
    for t in tables.iter() {
        if previous.iter().any(|p| Arc::ptr_eq(p, t)) {
            t.remap_servers(|id| {
                let name = &old.servers.get(id.index())?.name;
                names
                    .iter()
                    .position(|n| n == name)
                    .map(|i| crate::ServerId(i as u32))
            });
        }
    }
    Ok(Backend::with_tables(spec, tables))
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
