//! The report's per-backend section, for scenarios with several backends (see
//! [`crate::backends`]): how the frontend's route rules split the load, and affinity and
//! resumption as each backend saw them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::backends::BackendPlan;
use crate::metrics::{ratio, AffinityCounts, Imbalance, OutcomeTally, ServerStats};

/// Routing figures of a run with several backends.
#[derive(Clone, Debug, Serialize)]
pub struct RoutingReport {
    /// Per backend name.
    pub backends: BTreeMap<String, BackendFigures>,
    /// Connections a route rule refused (as the balancer logged them).
    pub refused: u64,
}

/// One backend's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BackendFigures {
    /// Its servers.
    pub servers: Vec<String>,
    /// Connections its servers accepted.
    pub connections: u64,
    /// Its share of all server connections.
    pub share: f64,
    /// Full handshakes on its servers.
    pub full_handshakes: u64,
    /// Resumed handshakes on its servers.
    pub resumed_handshakes: u64,
    /// Resumed over completed handshakes on its servers.
    pub resumption_rate: f64,
    /// Load spread over its servers.
    pub imbalance: Imbalance,
    /// What the balancer's tables did for the connections routed to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<OutcomeTally>,
}

impl RoutingReport {
    /// The section for `plan` (`initial` servers started in order), from the per-server
    /// figures and the balancer's per-backend affinity counts.
    pub fn build(
        plan: &BackendPlan,
        initial: usize,
        servers: &BTreeMap<String, ServerStats>,
        affinity: Option<&AffinityCounts>,
    ) -> Self {
        let owners = plan.server_backends(initial);
        let last = plan.names.last().cloned().unwrap_or_default();
        let mut backends: BTreeMap<String, BackendFigures> = plan
            .names
            .iter()
            .map(|n| (n.clone(), BackendFigures::default()))
            .collect();
        let total: u64 = servers.values().map(|s| s.connections).sum();
        for (name, s) in servers {
            let owner = owners.get(name).unwrap_or(&last);
            let Some(b) = backends.get_mut(owner) else {
                continue;
            };
            b.servers.push(name.clone());
            b.connections += s.connections;
            b.full_handshakes += s.full_handshakes;
            b.resumed_handshakes += s.resumed_handshakes;
        }
        for (name, b) in &mut backends {
            b.share = ratio(b.connections, total);
            b.resumption_rate = ratio(
                b.resumed_handshakes,
                b.full_handshakes + b.resumed_handshakes,
            );
            let loads: Vec<u64> = b.servers.iter().map(|s| servers[s].connections).collect();
            b.imbalance = Imbalance::of(&loads);
            b.affinity = affinity.and_then(|a| a.backends.get(name).cloned());
        }
        RoutingReport {
            backends,
            refused: affinity.map_or(0, |a| a.refused),
        }
    }

    /// The summary table's rows, one per backend.
    pub fn write(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n{:<22} {:>8} {:>7} {:>8} {:>8} {:>8} {:>9}  servers",
            "backend", "conns", "share", "full", "resumed", "rate", "affinity"
        );
        for (name, b) in &self.backends {
            let _ = writeln!(
                out,
                "{:<22} {:>8} {:>6.1}% {:>8} {:>8} {:>7.1}% {:>8.1}%  {}",
                name,
                b.connections,
                b.share * 100.0,
                b.full_handshakes,
                b.resumed_handshakes,
                b.resumption_rate * 100.0,
                b.affinity.as_ref().map_or(0.0, |a| a.affinity_rate) * 100.0,
                b.servers.join(" ")
            );
        }
        let _ = writeln!(out, "refused by route rules: {}", self.refused);
    }
}
