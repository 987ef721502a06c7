//! Parameter sweeps: one scenario run again and again with one knob turned, to show where
//! affinity breaks (table too small, expiry too short, server caches too short) and how load
//! spread changes with the server count and fleet size.
//!
//! Each point is an ordinary run; the sweep collects one row per point and writes a CSV, a
//! markdown table and one chart per parameter (affinity and imbalance against the value).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use tether_core::config::Config;

use crate::plot::plot_error;
use crate::report::Report;
use crate::scenario::{Scenario, SimDuration};
use crate::SimError;

/// A knob a sweep can turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SweepParam {
    /// Stick-table size (entries) of the balancer's backend.
    TableSize,
    /// Stick-table expiry (seconds).
    Expire,
    /// Number of servers.
    Servers,
    /// Fleet size, as a percentage of the scenario's client counts.
    FleetSize,
    /// Server session cache timeout (seconds).
    SessionTimeout,
    /// Balancer instances side by side (the scenario's spread and replication).
    Instances,
    /// Cores per server (needs `[servers.cost]`).
    Cores,
}

impl SweepParam {
    /// Every parameter, in the order a full sweep runs them.
    pub const ALL: [SweepParam; 6] = [
        SweepParam::TableSize,
        SweepParam::Expire,
        SweepParam::Servers,
        SweepParam::FleetSize,
        SweepParam::SessionTimeout,
        SweepParam::Cores,
    ];

    /// Every parameter a sweep can turn: [`Self::ALL`], and those run only when asked for.
    pub const KNOWN: [SweepParam; 7] = [
        SweepParam::TableSize,
        SweepParam::Expire,
        SweepParam::Servers,
        SweepParam::FleetSize,
        SweepParam::SessionTimeout,
        SweepParam::Cores,
        SweepParam::Instances,
    ];

    /// The name used on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            SweepParam::TableSize => "table-size",
            SweepParam::Expire => "expire",
            SweepParam::Servers => "servers",
            SweepParam::FleetSize => "fleet-size",
            SweepParam::SessionTimeout => "session-timeout",
            SweepParam::Instances => "instances",
            SweepParam::Cores => "cores",
        }
    }

    /// The values swept when the caller gives none.
    pub fn default_values(self) -> Vec<u64> {
        match self {
            SweepParam::TableSize => vec![50, 200, 1_000, 60_000],
            SweepParam::Expire => vec![30, 120, 600, 3_600],
            SweepParam::Servers => vec![2, 4, 8],
            SweepParam::FleetSize => vec![50, 100, 200],
            SweepParam::SessionTimeout => vec![30, 120, 300, 3_600],
            SweepParam::Instances => vec![1, 2, 3, 4],
            SweepParam::Cores => vec![1, 2, 4, 8],
        }
    }

    /// Unit of the values, for headers and axis labels.
    pub fn unit(self) -> &'static str {
        match self {
            SweepParam::TableSize => "entries",
            SweepParam::Expire | SweepParam::SessionTimeout => "s",
            SweepParam::Servers => "servers",
            SweepParam::FleetSize => "% of clients",
            SweepParam::Instances => "instances",
            SweepParam::Cores => "cores",
        }
    }

    /// Whether the parameter needs tether's engine (a stick table) to mean anything.
    pub fn needs_engine(self) -> bool {
        matches!(self, SweepParam::TableSize | SweepParam::Expire)
    }

    /// Sets the parameter to `value` in a copy of the scenario and engine configuration.
    pub fn apply(
        self,
        value: u64,
        scenario: &Scenario,
        config: Option<&Config>,
    ) -> Result<(Scenario, Option<Config>), SimError> {
        let mut s = scenario.clone();
        let mut c = config.cloned();
        match self {
            SweepParam::TableSize | SweepParam::Expire => {
                let backend = c
                    .as_mut()
                    .and_then(|c| c.backends.first_mut())
                    .ok_or_else(|| {
                        SimError::Scenario(format!(
                            "sweeping {} needs the engine balancer with a backend",
                            self.name()
                        ))
                    })?;
                if self == SweepParam::TableSize {
                    backend.stick_table.size = value.max(1);
                } else {
                    backend.stick_table.expire = Duration::from_secs(value.max(1));
                }
            }
            SweepParam::Servers => s.servers.count = (value as usize).max(1),
            SweepParam::FleetSize => {
                for f in &mut s.fleets {
                    f.clients = ((f.clients as u64 * value).div_ceil(100) as usize).max(1);
                }
            }
            SweepParam::SessionTimeout => {
                s.servers.session_timeout = SimDuration(Duration::from_secs(value.max(1)));
            }
            SweepParam::Cores => {
                let cost = s.servers.cost.as_mut().ok_or_else(|| {
                    SimError::Scenario(
                        "sweeping cores needs a [servers.cost] block (see `tether sim calibrate`)"
                            .into(),
                    )
                })?;
                cost.cores = u32::try_from(value.clamp(1, 4096)).unwrap_or(1);
            }
            SweepParam::Instances => {
                let max = crate::driver::MAX_INSTANCES as u64;
                if !(1..=max).contains(&value) {
                    return Err(SimError::Scenario(format!(
                        "sweeping instances: {value} is not between 1 and {max}"
                    )));
                }
                s.balancer.instances = value as usize;
                // Each point is N instances in steady state: events that crash, add, upgrade
                // or cut instances would make the points incomparable, and are left out.
                s.events.retain(|e| {
                    e.action.instance().is_none() && e.action != crate::events::Action::AddInstance
                });
            }
        }
        Ok((s, c))
    }
}

impl FromStr for SweepParam {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        SweepParam::KNOWN
            .into_iter()
            .find(|p| p.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = SweepParam::KNOWN.iter().map(|p| p.name()).collect();
                format!(
                    "unknown sweep parameter {text:?}; use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// What a sweep looks for: `p99 < 50ms`, `p50 <= 20ms` or `cpu < 0.7` (a fraction).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Target {
    /// Latency percentile (50 or 99), or None for CPU.
    pub percentile: Option<u8>,
    /// `<=` instead of `<`.
    pub inclusive: bool,
    /// The bound (ms for latency, a fraction for CPU).
    pub bound: f64,
}

impl FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let help = || {
            format!("cannot read target {text:?}; write e.g. 'p99 < 50ms', 'p50 <= 20ms' or 'cpu < 0.7'")
        };
        let t = text.trim();
        let (what, rest) = t.split_once('<').ok_or_else(help)?;
        let (inclusive, rest) = match rest.strip_prefix('=') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let percentile = match what.trim() {
            "p99" => Some(99),
            "p50" => Some(50),
            "cpu" => None,
            _ => return Err(help()),
        };
        let value = rest.trim();
        let number = if percentile.is_some() {
            value.strip_suffix("ms").ok_or_else(help)?
        } else {
            value
        };
        let bound: f64 = number.trim().parse().map_err(|_| help())?;
        if !bound.is_finite() || bound < 0.0 {
            return Err(help());
        }
        Ok(Target {
            percentile,
            inclusive,
            bound,
        })
    }
}

impl Target {
    /// The measured value of one sweep point (CPU: the busiest server's busiest minute; none
    /// without a cost model). A point's row carries it, so a sharded sweep's merge judges the
    /// points the same as an unsharded run.
    pub fn measure(&self, r: &SweepRow) -> Option<f64> {
        match self.percentile {
            Some(99) => Some(r.p99_ms as f64),
            Some(_) => Some(r.p50_ms as f64),
            None => r.cpu_peak,
        }
    }

    /// Whether the point meets the target.
    pub fn met(&self, r: &SweepRow) -> bool {
        self.measure(r).is_some_and(|v| {
            if self.inclusive {
                v <= self.bound
            } else {
                v < self.bound
            }
        })
    }

    /// As written, normalised: `p99 < 50ms`.
    pub fn describe(&self) -> String {
        let op = if self.inclusive { "<=" } else { "<" };
        match self.percentile {
            Some(p) => format!("p{p} {op} {}ms", self.bound),
            None => format!("cpu {op} {}", self.bound),
        }
    }
}

/// The smallest value of `param` whose point met the target.
pub fn smallest_meeting(target: &Target, param: SweepParam, rows: &[SweepRow]) -> Option<u64> {
    rows.iter()
        .filter(|r| r.param == param && target.met(r))
        .map(|r| r.value)
        .min()
}

/// Per swept parameter (in the rows' order), the smallest value that met the target, as the
/// lines a sweep prints; `false` when a parameter has none.
pub fn target_lines(target: &Target, rows: &[SweepRow]) -> (Vec<String>, bool) {
    let mut params: Vec<SweepParam> = rows.iter().map(|r| r.param).collect();
    params.dedup();
    let mut all_met = true;
    let lines = params
        .into_iter()
        .map(|p| match smallest_meeting(target, p, rows) {
            Some(v) => format!(
                "smallest {} meeting {}: {v} {}",
                p.name(),
                target.describe(),
                p.unit()
            ),
            None => {
                all_met = false;
                format!(
                    "no {} value swept meets {}; try larger values with --values",
                    p.name(),
                    target.describe()
                )
            }
        })
        .collect();
    (lines, all_met)
}

/// One point of a sweep.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepRow {
    /// The parameter turned.
    pub param: SweepParam,
    /// Its value at this point.
    pub value: u64,
    /// Client connections.
    pub connections: u64,
    /// Resumed over attempted: what affinity buys the clients that try.
    pub resumption_success: f64,
    /// Stick-table hits over keyed lookups (0 without an engine).
    pub affinity_rate: f64,
    /// Busiest server over the mean.
    pub max_over_mean: f64,
    /// Coefficient of variation of per-server connections.
    pub coefficient_of_variation: f64,
    /// Stick-table evictions.
    pub evicted: u64,
    /// Stick-table expirations.
    pub expired: u64,
    /// Client-visible failures.
    pub failures: u64,
    /// Handshake latency p50 (ms).
    #[serde(default)]
    pub p50_ms: u64,
    /// Handshake latency p99 (ms).
    #[serde(default)]
    pub p99_ms: u64,
    /// Busiest server's busiest minute of CPU (none without a cost model).
    #[serde(default)]
    pub cpu_peak: Option<f64>,
}

impl SweepRow {
    /// The row for one finished run.
    pub fn of(param: SweepParam, value: u64, r: &Report) -> Self {
        let table = r.table.as_ref().map(|t| t.totals).unwrap_or_default();
        SweepRow {
            param,
            value,
            connections: r.overall.connections,
            resumption_success: r.overall.resumption_success,
            affinity_rate: r.affinity.as_ref().map_or(0.0, |a| a.overall.affinity_rate),
            max_over_mean: r.imbalance.max_over_mean,
            coefficient_of_variation: r.imbalance.coefficient_of_variation,
            evicted: table.evicted,
            expired: table.expired,
            failures: r.overall.client_visible_failures,
            p50_ms: r.overall.connect_latency_p50_ms,
            p99_ms: r.overall.connect_latency_p99_ms,
            cpu_peak: r.cost.as_ref().and_then(|c| c.peak_utilisation(None)),
        }
    }
}

/// The sweep's rows as CSV (header first).
pub fn to_csv(rows: &[SweepRow]) -> String {
    let mut out = String::from(
        "param,value,connections,resumption_success,affinity_rate,max_over_mean,cv,evicted,expired,failures,p99_ms,cpu_peak\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            r.param.name(),
            r.value,
            r.connections,
            r.resumption_success,
            r.affinity_rate,
            r.max_over_mean,
            r.coefficient_of_variation,
            r.evicted,
            r.expired,
            r.failures,
            r.p99_ms,
            r.cpu_peak.map(|c| c.to_string()).unwrap_or_default()
        );
    }
    out
}

/// The sweep's rows as a markdown table, one section per parameter.
pub fn to_markdown(rows: &[SweepRow]) -> String {
    let mut out = String::new();
    for p in SweepParam::KNOWN {
        let mine: Vec<&SweepRow> = rows.iter().filter(|r| r.param == p).collect();
        if mine.is_empty() {
            continue;
        }
        let _ = writeln!(out, "### {} ({})\n", p.name(), p.unit());
        let _ = writeln!(
            out,
            "| value | conns | resumed/tried | affinity | max/mean | cv | evicted | expired | failures | p99 ms | cpu peak |"
        );
        let _ = writeln!(
            out,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in mine {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1}% | {:.1}% | {:.2} | {:.3} | {} | {} | {} | {} | {} |",
                r.value,
                r.connections,
                r.resumption_success * 100.0,
                r.affinity_rate * 100.0,
                r.max_over_mean,
                r.coefficient_of_variation,
                r.evicted,
                r.expired,
                r.failures,
                r.p99_ms,
                r.cpu_peak
                    .map_or_else(|| "–".to_owned(), |c| format!("{:.1}%", c * 100.0))
            );
        }
        out.push('\n');
    }
    out
}

/// Writes one chart per swept parameter (`sweep-<param>.png` and `.svg`) into `dir`: affinity
/// rate and resumption success (left axis, 0..1) and max/mean imbalance (dashed), against the value.
pub fn write_plots(rows: &[SweepRow], dir: &Path) -> Result<Vec<PathBuf>, SimError> {
    std::fs::create_dir_all(dir).map_err(|e| plot_error(dir, e))?;
    let mut written = Vec::new();
    for p in SweepParam::KNOWN {
        let mine: Vec<&SweepRow> = rows.iter().filter(|r| r.param == p).collect();
        if mine.is_empty() {
            continue;
        }
        let png = dir.join(format!("sweep-{}.png", p.name()));
        {
            let root = BitMapBackend::new(&png, (800, 450)).into_drawing_area();
            draw(&root, p, &mine).map_err(|e| plot_error(&png, e))?;
            root.present().map_err(|e| plot_error(&png, e))?;
        }
        written.push(png);
        let svg = dir.join(format!("sweep-{}.svg", p.name()));
        {
            let root = SVGBackend::new(&svg, (800, 450)).into_drawing_area();
            draw(&root, p, &mine).map_err(|e| plot_error(&svg, e))?;
            root.present().map_err(|e| plot_error(&svg, e))?;
        }
        written.push(svg);
    }
    Ok(written)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A line of a sweep chart: legend, colour, and the value it plots.
type SweepLine = (&'static str, RGBColor, fn(&SweepRow) -> f64);

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    p: SweepParam,
    rows: &[&SweepRow],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    // Points are evenly spaced (values often span decades); labels show the real values.
    let n = rows.len();
    let top = rows
        .iter()
        .map(|r| r.max_over_mean)
        .fold(1.0f64, f64::max)
        .max(1.05);
    let labels: Vec<String> = rows.iter().map(|r| r.value.to_string()).collect();
    let mut c = ChartBuilder::on(root)
        .caption(
            format!("sweep: {} ({})", p.name(), p.unit()),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top * 1.05)?;
    c.configure_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc(p.name())
        .y_desc("rate (0..1) / imbalance")
        .draw()?;
    let series: [SweepLine; 3] = [
        ("affinity rate", BLUE, |r| r.affinity_rate),
        ("resumed / tried", GREEN, |r| r.resumption_success),
        ("max/mean load", RED, |r| r.max_over_mean),
    ];
    for (name, color, f) in series {
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (i as f64, f(r)))
            .collect();
        c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(crate::plot::swatch(color));
        c.draw_series(pts.into_iter().map(|pt| Circle::new(pt, 4, color.filled())))?;
    }
    crate::plot::legend(&mut c, SeriesLabelPosition::MiddleRight)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_the_smallest_value_meeting_one_is_found() {
        let t: Target = "p99 < 50ms".parse().unwrap();
        assert_eq!(t.percentile, Some(99));
        assert!(!t.inclusive);
        assert_eq!(t.bound, 50.0);
        assert_eq!(t.describe(), "p99 < 50ms");
        let c: Target = "cpu<=0.7".parse().unwrap();
        assert_eq!((c.percentile, c.inclusive, c.bound), (None, true, 0.7));
        for bad in [
            "p99 < 50",
            "p98 < 5ms",
            "p99 > 5ms",
            "cpu < x",
            "p99 < -1ms",
        ] {
            assert!(
                bad.parse::<Target>().unwrap_err().contains("write e.g."),
                "{bad}"
            );
        }
        let row = |value, p99_ms, cpu_peak| SweepRow {
            param: SweepParam::Cores,
            value,
            connections: 1,
            resumption_success: 0.0,
            affinity_rate: 0.0,
            max_over_mean: 1.0,
            coefficient_of_variation: 0.0,
            evicted: 0,
            expired: 0,
            failures: 0,
            p50_ms: 1,
            p99_ms,
            cpu_peak,
        };
        let rows = [row(4, 20, None), row(1, 900, None), row(2, 40, None)];
        assert_eq!(smallest_meeting(&t, SweepParam::Cores, &rows), Some(2));
        assert_eq!(smallest_meeting(&t, SweepParam::Cores, &rows[1..2]), None);
        // Without a cost model there is no CPU figure: a CPU target is never met.
        assert_eq!(smallest_meeting(&c, SweepParam::Cores, &rows), None);
        let costed = [row(1, 900, Some(0.99)), row(2, 40, Some(0.6))];
        assert_eq!(smallest_meeting(&c, SweepParam::Cores, &costed), Some(2));
        let (lines, all) = target_lines(&t, &rows);
        assert!(all);
        assert_eq!(lines, ["smallest cores meeting p99 < 50ms: 2 cores"]);
        let s = Scenario::default_scenario();
        assert!(
            SweepParam::Cores.apply(2, &s, None).is_err(),
            "no cost block"
        );
    }

    #[test]
    fn params_parse_and_apply() {
        assert_eq!(
            "table-size".parse::<SweepParam>(),
            Ok(SweepParam::TableSize)
        );
        assert!("tables".parse::<SweepParam>().is_err());
        let s = Scenario::default_scenario();
        let (s2, _) = SweepParam::FleetSize.apply(200, &s, None).unwrap();
        assert_eq!(s2.fleets[0].clients, s.fleets[0].clients * 2);
        let (s3, _) = SweepParam::Servers.apply(8, &s, None).unwrap();
        assert_eq!(s3.servers.count, 8);
        assert!(SweepParam::TableSize.apply(10, &s, None).is_err());
        let (s4, _) = SweepParam::Instances.apply(3, &s, None).unwrap();
        assert_eq!(s4.balancer.instances, 3);
        assert!(SweepParam::Instances.apply(0, &s, None).is_err());
        let multi = Scenario::from_toml(include_str!("../scenarios/multi-balancer.toml")).unwrap();
        let (one, _) = SweepParam::Instances.apply(1, &multi, None).unwrap();
        assert!(one.events.is_empty() && !multi.events.is_empty());
        let (d, _) = SweepParam::Instances.apply(2, &s, None).unwrap();
        assert_eq!(d.events.len(), s.events.len(), "server events are kept");
        assert_eq!("instances".parse::<SweepParam>(), Ok(SweepParam::Instances));
        assert!(!SweepParam::ALL.contains(&SweepParam::Instances));
    }
}
