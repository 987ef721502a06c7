//! tether-sim: a deterministic turmoil simulation of a TLS load-balancing deployment.
//!
//! It answers "will affinity work for my clients?" before deployment: TLS server models with
//! session caches and ticket keys, client fleets with each real-world resumption behaviour, a
//! balancer host (tether's engine, or a plain relay baseline), faults at fixed times, and a
//! report of resumption rates, failures and load per server. The same scenario and seed give
//! byte-identical reports.

pub mod balancer;
pub mod client;
pub mod cost;
pub mod cost_report;
mod driver;
pub mod engine_host;
pub mod events;
pub mod expect;
pub mod fleet;
pub mod headline;
pub mod metrics;
pub mod net;
pub mod plot;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod swarm;
pub mod sweep;
pub mod tls_server;
pub mod tls_wire;

use std::rc::Rc;

pub use balancer::{BalancerEnv, BalancerHost, RoundRobinRelay};
pub use driver::{ClientTrace, HealthChange, Trace};
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
    let engine = |config: Config| -> Result<Rc<engine_host::EngineHost>, SimError> {
        let host = engine_host::EngineHost::new(config)?;
        if options.trace {
            host.sink().enable_trace();
        }
        Ok(Rc::new(host))
    };
    let mut routes_from: Option<Rc<engine_host::EngineHost>> = None;
    let balancer: Option<Rc<dyn BalancerHost>> = match (&options.config, scenario.balancer.kind) {
        (Some(c), _) => {
            let e = engine(c.clone())?;
            routes_from = Some(e.clone());
            Some(e)
        }
        (None, scenario::BalancerKind::Direct) => None,
        (None, scenario::BalancerKind::Relay) => Some(Rc::new(RoundRobinRelay::new(
            scenario.balancer.connect_timeout.get(),
        ))),
        (None, scenario::BalancerKind::Engine) => {
            let e = engine(engine_host::EngineHost::config_from_scenario(
                scenario.balancer.config.as_ref(),
            )?)?;
            routes_from = Some(e.clone());
            Some(e)
        }
    };
    let (report, mut trace) =
        driver::simulate(scenario, seed, balancer, options.trace, options.progress)?;
    if let (Some(t), Some(e)) = (trace.as_mut(), routes_from) {
        t.routes = e.sink().routes();
        t.engine_end = e.end_state();
    }
    Ok(Run { report, trace })
}

/// Runs `scenario` with `seed` on the given balancer (the seam for tether's engine).
pub fn run_with_balancer(
    scenario: &Scenario,
    seed: u64,
    balancer: Rc<dyn BalancerHost>,
) -> Result<Report, SimError> {
    Ok(driver::simulate(scenario, seed, Some(balancer), false, None)?.0)
}
