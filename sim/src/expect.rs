//! Expectations: a scenario as a property test of a deployment.
//!
//! A scenario may carry `[[expect]]` tables — a metric, optionally a fleet, a server or a time
//! window, and bounds — so a CI can gate a configuration change on what the simulator predicts:
//! `tether sim` prints each with its measured value and exits non-zero when one fails.
//!
//! ```toml
//! [[expect]]
//! metric = "affinity"
//! fleet = "tls12-session-id"
//! min = 0.9
//! ```

use serde::{Deserialize, Serialize};

use crate::report::Report;
use crate::scenario::{Scenario, SimDuration};

/// One expectation, as written in the scenario.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// What is measured.
    pub metric: Metric,
    /// Only this fleet (default: all fleets together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
    /// The server, for `share` (required there, refused elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Start of a time window (whole minutes; rates and failures only, all fleets together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<SimDuration>,
    /// End of the time window (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<SimDuration>,
    /// Lowest acceptable value (rates as fractions: 0.9 is 90 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Highest acceptable value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// The figures an expectation can bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Stick-table hits over keyed lookups (the balancer's affinity rate).
    Affinity,
    /// Resumed handshakes over resumption attempts, as the clients saw them.
    Resumption,
    /// Client-visible failures (connect or handshake), a count.
    Failures,
    /// Busiest server's connections over the mean (1.0: perfectly even).
    Imbalance,
    /// Most stick-table entries at once.
    TablePeak,
    /// One server's share of all connections (a fraction).
    Share,
    /// Connect-plus-handshake latency, 99th percentile, in milliseconds (in a window: the
    /// worst minute's).
    P99Ms,
    /// The same, median.
    P50Ms,
    /// Busiest minute's CPU utilisation of the busiest server (or of `server`), a fraction;
    /// needs `[servers.cost]`.
    Cpu,
    /// CPU seconds resumption saved over the run (needs `[servers.cost]`).
    SavedCpuS,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Affinity => "affinity",
            Metric::Resumption => "resumption",
            Metric::Failures => "failures",
            Metric::Imbalance => "imbalance",
            Metric::TablePeak => "table-peak",
            Metric::Share => "share",
            Metric::P99Ms => "p99-ms",
            Metric::P50Ms => "p50-ms",
            Metric::Cpu => "cpu",
            Metric::SavedCpuS => "saved-cpu-s",
        }
    }

    /// Rates and failures have a per-minute series; the others only a whole-run figure.
    fn has_series(self) -> bool {
        matches!(
            self,
            Metric::Affinity
                | Metric::Resumption
                | Metric::Failures
                | Metric::P99Ms
                | Metric::P50Ms
                | Metric::Cpu
        )
    }
}

impl Expectation {
    /// A one-line description: `affinity of fleet tls12 in [1m, 3m) >= 0.9`.
    pub fn describe(&self) -> String {
        let mut d = self.metric.name().to_owned();
        if let Some(f) = &self.fleet {
            d += &format!(" of fleet {f}");
        }
        if let Some(s) = &self.server {
            d += &format!(" of server {s}");
        }
        if self.from.is_some() || self.until.is_some() {
            let at = |t: Option<SimDuration>| t.map_or("end".into(), |t| format!("{:?}", t.get()));
            d += &format!(
                " in [{}, {})",
                self.from.map_or("0s".into(), |t| format!("{:?}", t.get())),
                at(self.until)
            );
        }
        match (self.min, self.max) {
            (Some(lo), Some(hi)) => d + &format!(" in [{lo}, {hi}]"),
            (Some(lo), None) => d + &format!(" >= {lo}"),
            (None, Some(hi)) => d + &format!(" <= {hi}"),
            (None, None) => d,
        }
    }

    /// Checks what can be checked before running: names exist, bounds given, window usable.
    pub fn validate(&self, scenario: &Scenario) -> Result<(), String> {
        if self.min.is_none() && self.max.is_none() {
            return Err("give min, max or both".into());
        }
        if let Some(f) = &self.fleet {
            if !scenario.fleets.iter().any(|x| &x.name == f) {
                return Err(format!("no fleet named {f:?}"));
            }
        }
        match (self.metric, &self.server) {
            (Metric::Share, None) => return Err("metric \"share\" needs server = \"NAME\"".into()),
            (Metric::Share | Metric::Cpu, Some(_)) => {}
            (_, Some(_)) => return Err("server is only for metrics \"share\" and \"cpu\"".into()),
            _ => {}
        }
        let costed = matches!(self.metric, Metric::Cpu | Metric::SavedCpuS);
        if costed && scenario.servers.cost.is_none() {
            return Err(format!(
                "metric \"{}\" needs a [servers.cost] block (cores and handshake costs)",
                self.metric.name()
            ));
        }
        let windowed = self.from.is_some() || self.until.is_some();
        if windowed
            && matches!(self.metric, Metric::P99Ms | Metric::P50Ms)
            && scenario.servers.cost.is_none()
        {
            return Err("per-minute latency needs a [servers.cost] block".into());
        }
        if windowed && (!self.metric.has_series() || self.fleet.is_some()) {
            return Err(
                "a time window works for affinity, resumption, failures, p50-ms, p99-ms and cpu of all fleets together"
                    .into(),
            );
        }
        Ok(())
    }

    /// The measured value, or why there is none (a fleet or server absent from the report).
    pub fn measure(&self, report: &Report) -> Result<f64, String> {
        if self.from.is_some() || self.until.is_some() {
            return self.measure_window(report);
        }
        let fleet = match &self.fleet {
            Some(f) => report
                .fleets
                .get(f)
                .ok_or_else(|| format!("fleet {f:?} has no connections"))?,
            None => &report.overall,
        };
        Ok(match self.metric {
            Metric::Affinity => {
                let a = report
                    .affinity
                    .as_ref()
                    .ok_or("this balancer reports no affinity outcomes")?;
                match &self.fleet {
                    Some(f) => a.fleets.get(f).map_or(0.0, |t| t.affinity_rate),
                    None => a.overall.affinity_rate,
                }
            }
            Metric::Resumption => fleet.resumption_rate,
            Metric::Failures => fleet.client_visible_failures as f64,
            Metric::Imbalance => report.imbalance.max_over_mean,
            Metric::TablePeak => report.table.as_ref().map_or(0.0, |t| t.peak_entries as f64),
            Metric::P99Ms => fleet.connect_latency_p99_ms as f64,
            Metric::P50Ms => fleet.connect_latency_p50_ms as f64,
            Metric::Cpu => cost(report)?
                .peak_utilisation(self.server.as_deref())
                .ok_or("no such server in the report")?,
            Metric::SavedCpuS => cost(report)?.saved_by_resumption_cpu_seconds,
            Metric::Share => {
                let name = self.server.as_deref().unwrap_or_default();
                report
                    .servers
                    .get(name)
                    .ok_or_else(|| format!("no server {name:?} in the report"))?
                    .share
            }
        })
    }

    /// Mean of the per-minute rate (or sum of failures) over the window's whole minutes.
    fn measure_window(&self, report: &Report) -> Result<f64, String> {
        let minute = |t: Option<SimDuration>, default: usize| {
            t.map_or(default, |t| (t.get().as_secs() / 60) as usize)
        };
        let s = &report.series;
        let pick = |v: &[f64]| -> Vec<f64> {
            let (a, b) = (
                minute(self.from, 0),
                minute(self.until, v.len()).min(v.len()),
            );
            v.get(a..b.max(a)).unwrap_or_default().to_vec()
        };
        let worst = |v: Vec<f64>| {
            if v.is_empty() {
                Err("the window holds no whole minute of the run".to_owned())
            } else {
                Ok(v.into_iter().fold(0.0, f64::max))
            }
        };
        let latency = |which: &std::collections::BTreeMap<String, Vec<u64>>| {
            let all = which.get("ALL").cloned().unwrap_or_default();
            pick(&all.iter().map(|&x| x as f64).collect::<Vec<_>>())
        };
        let values = match self.metric {
            Metric::Affinity => pick(&s.affinity_rate),
            Metric::Resumption => pick(&s.resumption_rate),
            Metric::P99Ms | Metric::P50Ms => {
                let c = cost(report)?;
                return worst(latency(if self.metric == Metric::P99Ms {
                    &c.series.latency_p99_ms
                } else {
                    &c.series.latency_p50_ms
                }));
            }
            Metric::Cpu => {
                let c = cost(report)?;
                let mut peaks = Vec::new();
                for (name, v) in &c.series.utilisation {
                    if self.server.as_ref().is_none_or(|s| s == name) {
                        peaks.extend(pick(v));
                    }
                }
                return worst(peaks);
            }
            _ => {
                let f: Vec<f64> = s.failures.iter().map(|&n| n as f64).collect();
                return Ok(pick(&f).iter().sum());
            }
        };
        if values.is_empty() {
            return Err("the window holds no whole minute of the run".into());
        }
        Ok(values.iter().sum::<f64>() / values.len() as f64)
    }

    /// Whether `value` is within the bounds.
    pub fn holds(&self, value: f64) -> bool {
        self.min.is_none_or(|lo| value >= lo) && self.max.is_none_or(|hi| value <= hi)
    }
}

/// The report's cost part, or why a metric needing it has none.
fn cost(report: &Report) -> Result<&crate::cost_report::CostReport, String> {
    report
        .cost
        .as_ref()
        .ok_or_else(|| "the scenario has no [servers.cost] block".to_owned())
}

/// One expectation checked on one report.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// What was expected.
    pub what: String,
    /// The measured value, or why there is none.
    pub measured: Result<f64, String>,
    /// Whether it held (never, without a measured value).
    pub pass: bool,
}

impl Checked {
    /// `PASS affinity >= 0.9: 0.982` / `FAIL ...`.
    pub fn line(&self) -> String {
        let verdict = if self.pass { "PASS" } else { "FAIL" };
        match &self.measured {
            Ok(v) => format!("{verdict} {}: measured {v:.4}", self.what),
            Err(e) => format!("{verdict} {}: {e}", self.what),
        }
    }
}

/// Checks every expectation of `scenario` on `report`.
pub fn check(scenario: &Scenario, report: &Report) -> Vec<Checked> {
    scenario
        .expect
        .iter()
        .map(|e| {
            let measured = e.measure(report);
            Checked {
                what: e.describe(),
                pass: measured.as_ref().is_ok_and(|&v| e.holds(v)),
                measured,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
