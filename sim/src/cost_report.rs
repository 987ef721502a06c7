//! The capacity part of a report (only with a cost model): CPU per server per minute, handshake
//! latency per fleet per minute, what resumption saved, and the balancer's own cores at peak.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::metrics::{ratio, Latencies, Recorder};
use crate::scenario::Scenario;

/// tether's CPU per proxied TLS connection, in microseconds: the `tls (hs/s)` row of the
/// proxy comparison in BENCHMARKS.md (128 / 154 µs/hs, the higher taken), measured with
/// `benches/proxy/run.sh -r 2 -d 8` on the 2-vCPU KVM guest described there.
pub const BALANCER_US_PER_CONNECTION: f64 = 154.0;
/// tether's CPU per MB relayed, in microseconds: the `iperf1` row (335 / 356 ms/GB), same run.
pub const BALANCER_US_PER_MB: f64 = 356.0;

/// What the servers' CPU did, in the report.
#[derive(Clone, Debug, Serialize)]
pub struct CostReport {
    /// Cores per server.
    pub cores_per_server: u32,
    /// Key type the costs were measured with.
    pub key: String,
    /// Per server.
    pub servers: BTreeMap<String, ServerCpuStats>,
    /// CPU the servers spent on handshakes and payload.
    pub cpu_seconds: f64,
    /// CPU that resumption saved: this run's resumed handshakes priced as full ones, minus
    /// what they cost. Without affinity (per-server session state) those resumptions miss and
    /// become full handshakes, so this is what affinity saved.
    pub saved_by_resumption_cpu_seconds: f64,
    /// The balancer's own CPU at the busiest minute.
    pub balancer: BalancerCost,
    /// One value per minute.
    pub series: CostSeries,
}

/// One server's CPU.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerCpuStats {
    /// CPU seconds spent.
    pub cpu_seconds: f64,
    /// Busiest minute's utilisation of all its cores (1.0 = saturated).
    pub peak_utilisation: f64,
    /// Connections refused with the backlog full.
    pub refused: u64,
}

/// The balancer's cores at peak, from the proxy benchmark's CPU per connection and per MB.
#[derive(Clone, Debug, Serialize)]
pub struct BalancerCost {
    /// CPU per connection used (µs), from BENCHMARKS.md.
    pub us_per_connection: f64,
    /// CPU per MB used (µs), from BENCHMARKS.md.
    pub us_per_mb: f64,
    /// Connections per second in the busiest minute.
    pub peak_connections_per_second: f64,
    /// MB per second relayed in the busiest minute.
    pub peak_mb_per_second: f64,
    /// Cores the balancer needs at that minute.
    pub cores_at_peak: f64,
}

/// Per-minute series of the cost model.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CostSeries {
    /// CPU utilisation per server (busy core time over cores × 60 s).
    pub utilisation: BTreeMap<String, Vec<f64>>,
    /// Handshake latency p50 per fleet and "ALL" (ms; 0 in a minute without handshakes).
    pub latency_p50_ms: BTreeMap<String, Vec<u64>>,
    /// Handshake latency p99 per fleet and "ALL".
    pub latency_p99_ms: BTreeMap<String, Vec<u64>>,
}

impl CostReport {
    /// The cost part of the report, when the scenario has a cost model.
    pub fn build(scenario: &Scenario, rec: &Recorder, minutes: usize) -> Option<Self> {
        let spec = scenario.servers.cost.as_ref()?;
        let capacity_us = u64::from(spec.cores) * 60_000_000;
        let mut servers = BTreeMap::new();
        let mut series = CostSeries::default();
        let mut total_us = 0u64;
        let mut saved_us = 0u64;
        for name in rec.server_stats().keys() {
            let t = rec.cpu().get(name).cloned().unwrap_or_default();
            let util: Vec<f64> = (0..minutes as u64)
                .map(|m| ratio(t.busy_us.get(&m).copied().unwrap_or(0), capacity_us))
                .collect();
            let busy: u64 = t.busy_us.values().sum();
            total_us += busy;
            saved_us += t.saved_us;
            let stats = ServerCpuStats {
                cpu_seconds: busy as f64 / 1e6,
                peak_utilisation: util.iter().copied().fold(0.0, f64::max),
                refused: t.refused,
            };
            servers.insert(name.clone(), stats);
            series.utilisation.insert(name.clone(), util);
        }
        latency_series(rec, minutes, &mut series);
        Some(CostReport {
            cores_per_server: spec.cores,
            key: spec.key.clone(),
            servers,
            cpu_seconds: total_us as f64 / 1e6,
            saved_by_resumption_cpu_seconds: saved_us as f64 / 1e6,
            balancer: balancer_cost(scenario, rec, minutes),
            series,
        })
    }

    /// The busiest minute's utilisation over all servers (or one server's).
    pub fn peak_utilisation(&self, server: Option<&str>) -> Option<f64> {
        match server {
            Some(s) => self.servers.get(s).map(|x| x.peak_utilisation),
            None => Some(
                self.servers
                    .values()
                    .map(|x| x.peak_utilisation)
                    .fold(0.0, f64::max),
            ),
        }
    }

    /// Lines for the terminal summary.
    pub fn write_summary(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n{:<22} {:>8} {:>8} {:>8}   ({} cores each, {})",
            "server CPU", "cpu s", "peak", "refused", self.cores_per_server, self.key
        );
        for (name, s) in &self.servers {
            let _ = writeln!(
                out,
                "{:<22} {:>8.1} {:>7.1}% {:>8}",
                name,
                s.cpu_seconds,
                s.peak_utilisation * 100.0,
                s.refused
            );
        }
        let b = &self.balancer;
        let _ = writeln!(
            out,
            "servers spent {:.1} CPU s; resumption saved {:.1} CPU s (those handshakes priced as full)\n\
             balancer at peak: {:.0} conn/s, {:.1} MB/s -> {:.2} cores ({} us/conn, {} us/MB, BENCHMARKS.md)",
            self.cpu_seconds,
            self.saved_by_resumption_cpu_seconds,
            b.peak_connections_per_second,
            b.peak_mb_per_second,
            b.cores_at_peak,
            b.us_per_connection,
            b.us_per_mb
        );
    }
}

/// p50/p99 handshake latency per minute, per fleet and for all fleets together.
fn latency_series(rec: &Recorder, minutes: usize, series: &mut CostSeries) {
    let mut all: Vec<Latencies> = vec![Latencies::default(); minutes];
    for (fleet, by_minute) in rec.fleet_minutes() {
        let mut p50 = vec![0; minutes];
        let mut p99 = vec![0; minutes];
        for (&m, lat) in by_minute {
            let Some(slot) = all.get_mut(m as usize) else {
                continue;
            };
            slot.merge(lat);
            p50[m as usize] = lat.percentile(50);
            p99[m as usize] = lat.percentile(99);
        }
        series.latency_p50_ms.insert(fleet.clone(), p50);
        series.latency_p99_ms.insert(fleet.clone(), p99);
    }
    let p50 = all.iter().map(|l| l.percentile(50)).collect();
    let p99 = all.iter().map(|l| l.percentile(99)).collect();
    series.latency_p50_ms.insert("ALL".into(), p50);
    series.latency_p99_ms.insert("ALL".into(), p99);
}

/// The balancer's cores in the busiest minute: connections and bytes priced with the proxy
/// benchmark's CPU per unit.
fn balancer_cost(scenario: &Scenario, rec: &Recorder, minutes: usize) -> BalancerCost {
    let bytes_of = |fleet: &str| {
        scenario
            .fleets
            .iter()
            .find(|f| f.name == fleet)
            .map_or(0, |f| {
                u64::from(f.request_bytes) + u64::from(f.response_bytes)
            })
    };
    let mut peak = (0.0, 0.0, 0.0);
    for m in 0..minutes as u64 {
        let conns = rec.minutes().get(&m).map_or(0, |t| t.connections) as f64 / 60.0;
        let bytes: u64 = rec
            .fleet_minutes()
            .iter()
            .map(|(f, by)| by.get(&m).map_or(0, Latencies::len) * bytes_of(f))
            .sum();
        let mb = bytes as f64 / 1e6 / 60.0;
        let cores = (conns * BALANCER_US_PER_CONNECTION + mb * BALANCER_US_PER_MB) / 1e6;
        if cores > peak.2 {
            peak = (conns, mb, cores);
        }
    }
    BalancerCost {
        us_per_connection: BALANCER_US_PER_CONNECTION,
        us_per_mb: BALANCER_US_PER_MB,
        peak_connections_per_second: peak.0,
        peak_mb_per_second: peak.1,
        cores_at_peak: peak.2,
    }
}
