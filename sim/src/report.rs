//! The simulation report: JSON with a stable field and key order, and a text summary table.
//!
//! The JSON is the artefact to keep and diff (same scenario and seed, same bytes); the table is
//! what `tether sim` shows on a terminal.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::backend_report::RoutingReport;
use crate::backends::BackendPlan;
use crate::instance_metrics::InstancesReport;
use crate::metrics::{
    ratio, FleetStats, Imbalance, OutcomeTally, Recorder, ServerStats, TableTotals,
};
use crate::scenario::Scenario;

/// Everything a run produced.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed the run used (replay with it).
    pub seed: u64,
    /// Which balancer ran.
    pub balancer: String,
    /// Simulated time until the last client finished.
    pub simulated_seconds: f64,
    /// All fleets together.
    pub overall: FleetStats,
    /// Per fleet.
    pub fleets: BTreeMap<String, FleetStats>,
    /// Per server.
    pub servers: BTreeMap<String, ServerStats>,
    /// How evenly connections spread over the servers.
    pub imbalance: Imbalance,
    /// The balancer's affinity outcomes (absent for balancers without affinity logging).
    pub affinity: Option<AffinityReport>,
    /// The balancer's stick tables (absent without tables).
    pub table: Option<TableReport>,
    /// Per balancer instance, table agreement and convergence (runs with several instances).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<InstancesReport>,
    /// Per backend, when the scenario defines several (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingReport>,
    /// Events as applied.
    pub events: Vec<EventRecord>,
    /// One-minute time series.
    pub series: Series,
    /// Server CPU, latency per minute and the balancer's cores (only with a cost model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::cost_report::CostReport>,
}

/// What the balancer's affinity did, overall and per fleet.
#[derive(Clone, Debug, Serialize)]
pub struct AffinityReport {
    /// All connections the balancer logged.
    pub overall: OutcomeTally,
    /// Per fleet, by fleet name.
    pub fleets: BTreeMap<String, OutcomeTally>,
}

/// Stick-table totals over the run.
#[derive(Clone, Debug, Serialize)]
pub struct TableReport {
    /// Counters at the end (summed over tables and balancer restarts).
    pub totals: TableTotals,
    /// Largest occupancy observed.
    pub peak_entries: u64,
}

/// An applied event.
#[derive(Clone, Debug, Serialize)]
pub struct EventRecord {
    /// Simulated second at which it was applied.
    pub at_seconds: f64,
    /// What it was.
    pub what: String,
}

/// Time series, one value per simulated minute (index = minute).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Series {
    /// Client connections started.
    pub connections: Vec<u64>,
    /// Server connections accepted, per server.
    pub connections_per_server: BTreeMap<String, Vec<u64>>,
    /// Resumed handshakes over completed handshakes.
    pub resumption_rate: Vec<f64>,
    /// Stick-table hits over keyed lookups (by minute of acceptance), empty without outcomes.
    pub affinity_rate: Vec<f64>,
    /// Failed or aborted client connections.
    pub failures: Vec<u64>,
    /// Balancer stick-table entries (sampled at each minute's start), empty without a table.
    pub table_occupancy: Vec<u64>,
    /// Entries evicted since the previous sample.
    pub table_evictions: Vec<u64>,
    /// Entries expired since the previous sample.
    pub table_expirations: Vec<u64>,
}

impl Report {
    /// Builds the report from what the recorder collected.
    pub fn build(
        scenario: &Scenario,
        seed: u64,
        balancer: &str,
        elapsed: Duration,
        rec: &Recorder,
    ) -> Self {
        let servers = rec.server_stats();
        let loads: Vec<u64> = servers.values().map(|s| s.connections).collect();
        let last_minute = rec.minutes().keys().next_back().copied().unwrap_or(0);
        let n = last_minute as usize + 1;
        let mut series = Series {
            connections: vec![0; n],
            resumption_rate: vec![0.0; n],
            failures: vec![0; n],
            ..Series::default()
        };
        for name in servers.keys() {
            series
                .connections_per_server
                .insert(name.clone(), vec![0; n]);
        }
        for (&m, t) in rec.minutes() {
            let i = m as usize;
            series.connections[i] = t.connections;
            series.failures[i] = t.failures;
            series.resumption_rate[i] = ratio(t.resumptions, t.handshakes);
            for (s, &c) in &t.per_server {
                if let Some(v) = series.connections_per_server.get_mut(s) {
                    v[i] = c;
                }
            }
        }
        let samples: Vec<TableTotals> = rec.table_samples().values().copied().collect();
        series.table_occupancy = samples.iter().map(|t| t.entries).collect();
        let delta = |f: fn(&TableTotals) -> u64| -> Vec<u64> {
            let mut prev = 0;
            samples
                .iter()
                .map(|t| {
                    let d = f(t).saturating_sub(prev);
                    prev = f(t);
                    d
                })
                .collect()
        };
        series.table_evictions = delta(|t| t.evicted);
        series.table_expirations = delta(|t| t.expired);
        let affinity = rec.affinity().map(|a| {
            series.affinity_rate = (0..n as u64)
                .map(|m| a.minutes.get(&m).map_or(0.0, |t| t.affinity_rate))
                .collect();
            AffinityReport {
                overall: a.overall.clone(),
                fleets: a
                    .fleets
                    .iter()
                    .map(|(&i, t)| {
                        let name = scenario
                            .fleets
                            .get(i)
                            .map_or_else(|| format!("fleet-{i}"), |f| f.name.clone());
                        (name, t.clone())
                    })
                    .collect(),
            }
        });
        let table = samples.last().map(|&totals| TableReport {
            totals,
            peak_entries: rec.peak_table_entries(),
        });
        let routing = BackendPlan::of_scenario(scenario)
            .ok()
            .flatten()
            .map(|p| RoutingReport::build(&p, scenario.servers.count, &servers, rec.affinity()));
        Report {
            scenario: scenario.name.clone(),
            seed,
            balancer: balancer.to_owned(),
            simulated_seconds: elapsed.as_millis() as f64 / 1000.0,
            overall: rec.overall_stats(),
            fleets: rec.fleet_stats(),
            servers,
            imbalance: Imbalance::of(&loads),
            affinity,
            table,
            instances: rec.instances().map(|i| i.report()),
            routing,
            events: rec
                .events()
                .iter()
                .map(|(ms, what)| EventRecord {
                    at_seconds: *ms as f64 / 1000.0,
                    what: what.clone(),
                })
                .collect(),
            cost: crate::cost_report::CostReport::build(scenario, rec, n),
            series,
        }
    }

    /// The report as pretty JSON; fields in declaration order, map keys sorted.
    pub fn to_json(&self) -> String {
        // Plain structs, string keys and finite floats: serialisation cannot fail.
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": \"report serialisation: {e}\"}}"))
    }

    /// A fixed-width text summary for terminals.
    pub fn summary_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {} | seed {} | balancer {} | {:.0} s simulated",
            self.scenario, self.seed, self.balancer, self.simulated_seconds
        );
        self.write_fleets(&mut out);
        self.write_servers(&mut out);
        if let Some(a) = &self.affinity {
            write_affinity(&mut out, a);
        }
        if let Some(t) = &self.table {
            write_table(&mut out, t);
        }
        if let Some(i) = &self.instances {
            write_instances(&mut out, i);
        }
        if let Some(r) = &self.routing {
            r.write(&mut out);
        }
        if let Some(c) = &self.cost {
            c.write_summary(&mut out);
        }
        let _ = writeln!(
            out,
            "\nimbalance: max/mean {:.2}, coefficient of variation {:.3}",
            self.imbalance.max_over_mean, self.imbalance.coefficient_of_variation
        );
        for e in &self.events {
            let _ = writeln!(out, "event at {:>7.1} s: {}", e.at_seconds, e.what);
        }
        out
    }

    /// Client-side figures, one row per fleet and one for all of them.
    fn write_fleets(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n{:<22} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7}",
            "fleet", "conns", "tried", "resumed", "rate", "failed", "aborted", "p50ms", "p99ms"
        );
        let rows = self
            .fleets
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain(std::iter::once(("ALL", &self.overall)));
        for (name, f) in rows {
            let _ = writeln!(
                out,
                "{:<22} {:>8} {:>8} {:>8} {:>7.1}% {:>7} {:>7} {:>7} {:>7}",
                name,
                f.connections,
                f.resumption_attempts,
                f.resumptions,
                f.resumption_rate * 100.0,
                f.client_visible_failures,
                f.aborted_in_flight,
                f.connect_latency_p50_ms,
                f.connect_latency_p99_ms
            );
        }
    }

    /// Server-side figures, one row per server.
    fn write_servers(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n{:<22} {:>8} {:>8} {:>8} {:>8} {:>7}",
            "server", "conns", "full", "resumed", "peak", "share"
        );
        for (name, s) in &self.servers {
            let _ = writeln!(
                out,
                "{:<22} {:>8} {:>8} {:>8} {:>8} {:>6.1}%",
                name,
                s.connections,
                s.full_handshakes,
                s.resumed_handshakes,
                s.peak_concurrency,
                s.share * 100.0
            );
        }
    }
}

/// The balancer's affinity figures, one row per fleet and one for all of them.
fn write_affinity(out: &mut String, a: &AffinityReport) {
    let _ = writeln!(
        out,
        "\n{:<22} {:>8} {:>8} {:>8} {:>8} {:>8}  outcomes",
        "affinity", "conns", "keyed", "hits", "rate", "learned"
    );
    let rows = a
        .fleets
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .chain(std::iter::once(("ALL", &a.overall)));
    for (name, t) in rows {
        let outcomes: Vec<String> = t
            .labelled()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            out,
            "{:<22} {:>8} {:>8} {:>8} {:>7.1}% {:>8}  {}",
            name,
            t.connections(),
            t.keyed_lookups,
            t.hits,
            t.affinity_rate * 100.0,
            t.keys_learned,
            outcomes.join(" ")
        );
    }
}

/// The stick table's totals at the end of the run.
fn write_table(out: &mut String, t: &TableReport) {
    let _ = writeln!(
        out,
        "\nstick table: size {}, entries at end {}, peak {}, inserted {}, evicted {}, expired {}, lost in restarts {}",
        t.totals.capacity,
        t.totals.entries,
        t.peak_entries,
        t.totals.inserted,
        t.totals.evicted,
        t.totals.expired,
        t.totals.lost_in_restarts
    );
}

/// One row per balancer instance, then table agreement and convergence.
fn write_instances(out: &mut String, r: &InstancesReport) {
    let _ = writeln!(
        out,
        "\n{:<22} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}   (spread {}, replication {})",
        "instance",
        "conns",
        "tried",
        "resumed",
        "rate",
        "affinity",
        "entries",
        r.spread.name(),
        if r.replication { "on" } else { "off" }
    );
    for (name, i) in &r.per_instance {
        let _ = writeln!(
            out,
            "{:<22} {:>8} {:>8} {:>8} {:>7.1}% {:>7.1}% {:>9}",
            name,
            i.clients.connections,
            i.clients.resumption_attempts,
            i.clients.resumptions,
            i.clients.resumption_success * 100.0,
            i.affinity.as_ref().map_or(0.0, |a| a.affinity_rate) * 100.0,
            i.table.map_or(0, |t| t.entries)
        );
    }
    let agreement: Vec<String> = r
        .table_agreement_per_minute
        .iter()
        .map(|a| format!("{:.0}%", a * 100.0))
        .collect();
    let _ = writeln!(out, "table agreement per minute: {}", agreement.join(" "));
    if let Some(l) = &r.replication_lag {
        let _ = writeln!(
            out,
            "replication lag: p50 {} ms, p99 {} ms, max {} ms over {} updates (step {} ms)",
            l.p50_ms, l.p99_ms, l.max_ms, l.samples, l.resolution_ms
        );
    }
    for c in &r.convergence {
        let when = c.converged_after_seconds.map_or_else(
            || "not converged".to_owned(),
            |s| format!("converged after {s:.0} s"),
        );
        let _ = writeln!(
            out,
            "after {} at {:.0} s (agreement {:.0}%): {when}",
            c.after,
            c.at_seconds,
            c.agreement_at_event * 100.0
        );
    }
}
