//! What a run with several balancer instances adds to the report: client figures and affinity
//! per instance, how far their stick tables agree over time, and how long the tables took to
//! agree again after a peer partition healed or an instance came back.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::frontdoor::{instance_host, Spread};
use crate::metrics::{
    AffinityCounts, ConnectionRecord, FleetStats, FleetTally, OutcomeTally, TableTotals,
};
use crate::replication_lag::{LagProbe, LagStats};

/// Tables "agree" from this share of keys on (keys learned in the last instants are always
/// still on their way).
pub const CONVERGED: f64 = 0.99;

/// Per-instance figures collected during a run.
#[derive(Debug, Default)]
pub struct InstanceMetrics {
    spread: Option<Spread>,
    replication: bool,
    clients: BTreeMap<usize, FleetTally>,
    finals: BTreeMap<usize, (Option<AffinityCounts>, Option<TableTotals>)>,
    agreement: BTreeMap<u64, f64>,
    convergence: Vec<Convergence>,
    lag: LagProbe,
    step_ms: u64,
}

/// Tables catching up after an event that set them apart.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Convergence {
    /// The event (heal of a peer partition, restart of an instance).
    pub after: String,
    /// Simulated second of the event.
    pub at_seconds: f64,
    /// Table agreement at the event.
    pub agreement_at_event: f64,
    /// Seconds until the tables agreed again ([`CONVERGED`]); `None`: not by the end of the run.
    pub converged_after_seconds: Option<f64>,
}

impl InstanceMetrics {
    /// Metrics for a run whose clients reach the instances by `spread`.
    pub fn new(spread: Spread, replication: bool, step_ms: u64) -> Self {
        InstanceMetrics {
            spread: Some(spread),
            replication,
            step_ms,
            ..InstanceMetrics::default()
        }
    }

    /// A client connection ended (counted for the instance it was sent to).
    pub fn connection(&mut self, r: &ConnectionRecord) {
        self.clients.entry(r.instance).or_default().add(r);
    }

    /// Instance `i`'s affinity outcomes and table totals at the end.
    pub fn set_final(
        &mut self,
        i: usize,
        affinity: Option<AffinityCounts>,
        table: Option<TableTotals>,
    ) {
        self.finals.insert(i, (affinity, table));
    }

    /// A sample of the table agreement at `now_ms`; settles pending convergences (from the
    /// first sample after their event: at the event itself a restarted instance has no table).
    pub fn agreement_sample(&mut self, now_ms: u64, agreement: f64) {
        self.agreement.insert(now_ms, agreement);
        for c in &mut self.convergence {
            let at_ms = (c.at_seconds * 1000.0) as u64;
            if c.converged_after_seconds.is_none() && agreement >= CONVERGED && now_ms > at_ms {
                c.converged_after_seconds = Some(now_ms.saturating_sub(at_ms) as f64 / 1000.0);
            }
        }
    }

    /// The instances' stick-table updates read after a step (see [`LagProbe::observe`]).
    pub fn replication_updates(&mut self, now_ms: u64, updates: &[(Vec<u8>, bool)]) {
        self.lag.observe(now_ms, updates);
    }

    /// An event set the tables apart at `now_ms`: measure how long until they agree again.
    pub fn await_convergence(&mut self, now_ms: u64, after: String, agreement: f64) {
        self.lag.catch_up_from(now_ms);
        self.convergence.push(Convergence {
            after,
            at_seconds: now_ms as f64 / 1000.0,
            agreement_at_event: agreement,
            converged_after_seconds: None,
        });
    }

    /// The report section.
    pub fn report(&self) -> InstancesReport {
        let mut per_instance = BTreeMap::new();
        let mut affinity_per_minute = BTreeMap::new();
        let indices: std::collections::BTreeSet<usize> = self
            .clients
            .keys()
            .chain(self.finals.keys())
            .copied()
            .collect();
        for i in indices {
            let (affinity, table) = self.finals.get(&i).cloned().unwrap_or_default();
            if let Some(a) = &affinity {
                let last = a.minutes.keys().next_back().copied().unwrap_or(0);
                let rates = (0..=last)
                    .map(|m| a.minutes.get(&m).map_or(0.0, |t| t.affinity_rate))
                    .collect();
                affinity_per_minute.insert(instance_host(i), rates);
            }
            let affinity = affinity.map(|a| a.overall);
            per_instance.insert(
                instance_host(i),
                InstanceStats {
                    clients: self.clients.get(&i).map(|t| t.stats()).unwrap_or_default(),
                    affinity,
                    table,
                },
            );
        }
        // One value per simulated minute: the first sample of each minute.
        let mut per_minute: BTreeMap<u64, f64> = BTreeMap::new();
        for (&ms, &a) in &self.agreement {
            per_minute.entry(ms / 60_000).or_insert(a);
        }
        InstancesReport {
            spread: self.spread.unwrap_or_default(),
            replication: self.replication,
            per_instance,
            affinity_per_minute,
            table_agreement_per_minute: per_minute.into_values().collect(),
            convergence: self.convergence.clone(),
            replication_lag: self.lag.stats(self.step_ms),
        }
    }
}

/// Several balancer instances, in the report.
#[derive(Clone, Debug, Serialize)]
pub struct InstancesReport {
    /// How clients reached the instances.
    pub spread: Spread,
    /// Whether the instances replicated their tables.
    pub replication: bool,
    /// Per instance (by host name).
    pub per_instance: BTreeMap<String, InstanceStats>,
    /// Each instance's affinity rate per minute of acceptance (0 in minutes it took nothing).
    pub affinity_per_minute: BTreeMap<String, Vec<f64>>,
    /// Share of keys all running instances hold alike, at each minute's start.
    pub table_agreement_per_minute: Vec<f64>,
    /// How long the tables took to agree after each partition heal or instance restart.
    pub convergence: Vec<Convergence>,
    /// From a store on one instance to its copy on another (replicating runs).
    pub replication_lag: Option<LagStats>,
}

/// One instance's figures.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceStats {
    /// What the clients sent to it saw.
    pub clients: FleetStats,
    /// Its own affinity outcomes.
    pub affinity: Option<OutcomeTally>,
    /// Its own stick tables.
    pub table: Option<TableTotals>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convergence_is_the_first_agreeing_sample_after_the_event() {
        let mut m = InstanceMetrics::new(Spread::Sticky, true, 20);
        m.agreement_sample(0, 1.0);
        m.await_convergence(10_000, "heal".into(), 0.5);
        m.agreement_sample(11_000, 0.7);
        m.agreement_sample(13_000, 0.995);
        m.await_convergence(14_000, "restart".into(), 1.0);
        m.agreement_sample(14_000, 0.2);
        m.agreement_sample(15_000, 1.0);
        m.await_convergence(20_000, "heal again".into(), 0.2);
        let r = m.report();
        assert_eq!(r.convergence[0].converged_after_seconds, Some(3.0));
        assert_eq!(r.convergence[1].converged_after_seconds, Some(1.0));
        assert_eq!(r.convergence[2].converged_after_seconds, None);
        assert_eq!(r.table_agreement_per_minute, vec![1.0]);
    }
}
