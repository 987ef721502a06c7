//! tether-sim: a deterministic turmoil simulation of a TLS load-balancing deployment.
//!
//! It answers "will affinity work for my clients?" before deployment: TLS server models with
//! session caches and ticket keys, client fleets with each real-world resumption behaviour, a
//! balancer host (tether's engine, or a plain relay baseline), faults at fixed times, and a
//! report of resumption rates, failures and load per server. The same scenario and seed give
//! byte-identical reports.

pub mod balancer;
pub mod client;
mod driver;
pub mod engine_host;
pub mod events;
pub mod fleet;
pub mod metrics;
pub mod net;
pub mod plot;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod tls_server;
pub mod tls_wire;

use std::rc::Rc;

pub use balancer::{BalancerEnv, BalancerHost, RoundRobinRelay};
pub use report::Report;
pub use scenario::Scenario;

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
    let balancer: Option<Rc<dyn BalancerHost>> = match scenario.balancer.kind {
        scenario::BalancerKind::Direct => None,
        scenario::BalancerKind::Relay => Some(Rc::new(RoundRobinRelay::new(
            scenario.balancer.connect_timeout.get(),
        ))),
        scenario::BalancerKind::Engine => Some(Rc::new(engine_host::EngineHost::new(
            engine_host::EngineHost::config_from_scenario(scenario.balancer.config.as_ref())?,
        )?)),
    };
    driver::simulate(scenario, seed, balancer)
}

/// Runs `scenario` with `seed` on the given balancer (the seam for tether's engine).
pub fn run_with_balancer(
    scenario: &Scenario,
    seed: u64,
    balancer: Rc<dyn BalancerHost>,
) -> Result<Report, SimError> {
    driver::simulate(scenario, seed, Some(balancer))
}
