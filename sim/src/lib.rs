//! tether-sim: a deterministic turmoil simulation of a TLS load-balancing deployment.
//!
//! It answers "will affinity work for my clients?" before deployment: TLS server models with
//! session caches and ticket keys, client fleets with each real-world resumption behaviour, a
//! balancer host (tether's engine, or a plain relay baseline), faults at fixed times, and a
//! report of resumption rates, failures and load per server. The same scenario and seed give
//! byte-identical reports.

pub mod activity;
pub mod backend_report;
pub mod backends;
pub mod balancer;
pub mod client;
pub mod compare;
pub mod cost;
pub mod cost_report;
mod driver;
pub mod engine_host;
pub mod events;
pub mod expect;
pub mod fleet;
pub mod frontdoor;
pub mod headline;
pub mod instance_metrics;
pub mod instances;
pub mod metrics;
pub mod net;
pub mod plot;
pub mod replication_lag;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod seeds_plot;
mod server_process;
pub mod shard;
pub mod swarm;
pub mod sweep;
pub mod tls_server;
pub mod tls_wire;

use std::cell::RefCell;
use std::rc::Rc;

pub use balancer::{BalancerEnv, BalancerHost, RoundRobinRelay};
pub use driver::{server_name, ClientTrace, HealthChange, Trace};
pub use report::Report;
pub use scenario::Scenario;
pub use tether_core::config::Config;

/// Why a simulation could not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario is inconsistent (e.g. an event names a server that does not exist).
    #[error("scenario: {0}")]
    Scenario(String),
    /// The scenario asks for tether's engine, which this build cannot run yet.
    #[error(
        "balancer kind \"engine\" needs the engine integration; use kind = \"relay\" or \"direct\""
    )]
    EngineUnavailable,
    /// turmoil stopped with an error (a host failed or the time limit was reached).
    #[error("simulation: {0}")]
    Turmoil(String),
    /// Writing plots failed.
    #[error("plot {file}: {reason}")]
    Plot {
        /// The file being written.
        file: String,
        /// What went wrong.
        reason: String,
    },
}

/// Runs `scenario` with `seed` on the balancer its `[balancer]` section names.
pub fn run(scenario: &Scenario, seed: u64) -> Result<Report, SimError> {
    Ok(run_with_options(scenario, seed, RunOptions::default())?.report)
}

/// Runs `scenario` with `seed` on tether's engine configured by `config` (for instance imported
/// from a haproxy.cfg by the CLI) instead of the scenario's `[balancer]` section.
pub fn run_with_config(scenario: &Scenario, seed: u64, config: Config) -> Result<Report, SimError> {
    let options = RunOptions {
        config: Some(config),
        ..RunOptions::default()
    };
    Ok(run_with_options(scenario, seed, options)?.report)
}

/// What a run can do beyond the scenario: another engine config, traces, progress reports.
#[derive(Default)]
pub struct RunOptions {
    /// Run tether's engine with this configuration, whatever `[balancer]` says.
    pub config: Option<Config>,
    /// Keep per-connection traces ([`Trace`]) for invariant checks.
    pub trace: bool,
    /// Called every few simulated seconds with (simulated ms so far, scenario duration in ms).
    pub progress: Option<Box<dyn FnMut(u64, u64)>>,
}

/// A finished run: the report, and the trace when one was asked for.
pub struct Run {
    /// The report.
    pub report: Report,
    /// Per-connection traces, with [`RunOptions::trace`].
    pub trace: Option<Trace>,
}

/// Runs `scenario` with `seed` and `options`.
pub fn run_with_options(
    scenario: &Scenario,
    seed: u64,
    options: RunOptions,
) -> Result<Run, SimError> {
    let engines: Rc<RefCell<Vec<Rc<engine_host::EngineHost>>>> = Rc::default();
    let make = balancer_factory(scenario, seed, &options, &engines)?;
    let balancer = match make {
        Some(make) => Some(instances::Instances::new(
            scenario.balancer.instances.max(1),
            make,
        )?),
        None => None,
    };
    let (report, mut trace) =
        driver::simulate(scenario, seed, balancer, options.trace, options.progress)?;
    if let Some(t) = trace.as_mut() {
        let engines = engines.borrow();
        if let Some(first) = engines.first() {
            t.routes = engines.iter().flat_map(|e| e.sink().routes()).collect();
            t.engine_end = first.end_state();
        }
    }
    Ok(Run { report, trace })
}

/// What builds each balancer instance: tether's engine (every one created is kept in
/// `engines`, for traces), the relay, or nothing in direct mode.
fn balancer_factory(
    scenario: &Scenario,
    seed: u64,
    options: &RunOptions,
    engines: &Rc<RefCell<Vec<Rc<engine_host::EngineHost>>>>,
) -> Result<Option<instances::MakeBalancer>, SimError> {
    let config = match (&options.config, scenario.balancer.kind) {
        (Some(c), _) => c.clone(),
        (None, scenario::BalancerKind::Direct) => return Ok(None),
        (None, scenario::BalancerKind::Relay) => {
            let timeout = scenario.balancer.connect_timeout.get();
            return Ok(Some(Box::new(move || {
                Ok(Rc::new(RoundRobinRelay::new(timeout)) as Rc<dyn BalancerHost>)
            })));
        }
        (None, scenario::BalancerKind::Engine) => {
            engine_host::EngineHost::config_from_scenario(scenario.balancer.config.as_ref())?
        }
    };
    let trace = options.trace;
    let engines = engines.clone();
    let roster = replication_roster(scenario);
    let plan = backends::BackendPlan::of_scenario(scenario)?;
    let networks = fleet_networks(scenario)?;
    Ok(Some(Box::new(move || {
        let index = engines.borrow().len();
        let instance_seed = seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut host = engine_host::EngineHost::new(config.clone())?
            .with_backends(plan.clone())
            .with_fleet_networks(networks.clone())
            .with_seed(instance_seed);
        if let Some(roster) = &roster {
            host = host.with_replication(engine_host::Replication {
                local: frontdoor::instance_host(index),
                roster: roster.clone(),
            });
        }
        let host = Rc::new(host);
        if trace {
            host.sink().enable_trace();
        }
        engines.borrow_mut().push(host.clone());
        Ok(host as Rc<dyn BalancerHost>)
    })))
}

/// The fleets that name their own network, with their positions.
fn fleet_networks(scenario: &Scenario) -> Result<Vec<(tether_core::route::Cidr, usize)>, SimError> {
    let mut out = Vec::new();
    for (i, f) in scenario.fleets.iter().enumerate() {
        if let Some(net) = f.own_network().map_err(SimError::Scenario)? {
            out.push((net, i));
        }
    }
    Ok(out)
}

/// Every instance that will exist in the run (those added by events too), when the scenario
/// replicates: each instance's peers section lists them all from the start, and a peer whose
/// host does not exist yet is simply unreachable until it does.
fn replication_roster(scenario: &Scenario) -> Option<Vec<String>> {
    let r = scenario.balancer.replication.as_ref()?;
    if !r.enabled {
        return None;
    }
    let added = scenario
        .events
        .iter()
        .filter(|e| e.action == events::Action::AddInstance)
        .count();
    let total = scenario.balancer.instances + added;
    Some((0..total).map(frontdoor::instance_host).collect())
}

/// Runs `scenario` with `seed` on the given balancer (the seam for tether's engine); one
/// instance only, since every instance needs its own state.
pub fn run_with_balancer(
    scenario: &Scenario,
    seed: u64,
    balancer: Rc<dyn BalancerHost>,
) -> Result<Report, SimError> {
    if scenario.balancer.instances != 1 {
        return Err(SimError::Scenario(
            "run_with_balancer runs one balancer instance; set balancer.instances = 1".into(),
        ));
    }
    let make: instances::MakeBalancer = Box::new(move || Ok(balancer.clone()));
    let balancer = instances::Instances::new(1, make)?;
    Ok(driver::simulate(scenario, seed, Some(balancer), false, None)?.0)
}
