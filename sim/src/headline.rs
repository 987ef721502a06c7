//! The figures a planner reads first, for one seed, and their spread over many seeds.
//!
//! One seed is one possible day; `tether sim --seeds N` runs N of them and reports each headline
//! figure's mean with a 95 % confidence interval (Student's t on the seeds' values), so a
//! prediction comes with its error bars.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::expect::Checked;
use crate::report::Report;

/// One seed's headline figures and which expectations held.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    /// The seed.
    pub seed: u64,
    /// Stick-table hits over keyed lookups (absent for balancers without affinity outcomes).
    pub affinity: Option<f64>,
    /// Resumed over attempted resumptions, as the clients saw them.
    pub resumption: f64,
    /// Client-visible failures.
    pub failures: u64,
    /// Busiest server over the mean.
    pub imbalance: f64,
    /// Connect-plus-handshake latency, 99th percentile (ms).
    pub p99_ms: u64,
    /// Each expectation of the scenario, in order: held or not.
    pub expectations: Vec<bool>,
    /// Resumption rate per minute, for the band across seeds.
    #[serde(default)]
    pub resumption_per_minute: Vec<f64>,
    /// Affinity rate per minute (empty without a stick table).
    #[serde(default)]
    pub affinity_per_minute: Vec<f64>,
    /// The run's length in seconds (where a partial last minute ends).
    #[serde(default)]
    pub seconds: f64,
}

impl Headline {
    /// The headline of `report`, with the expectations checked on it.
    pub fn of(report: &Report, checked: &[Checked]) -> Self {
        Headline {
            seed: report.seed,
            affinity: report.affinity.as_ref().map(|a| a.overall.affinity_rate),
            resumption: report.overall.resumption_rate,
            failures: report.overall.client_visible_failures,
            imbalance: report.imbalance.max_over_mean,
            p99_ms: report.overall.connect_latency_p99_ms,
            expectations: checked.iter().map(|c| c.pass).collect(),
            resumption_per_minute: report.series.resumption_rate.clone(),
            affinity_per_minute: report.series.affinity_rate.clone(),
            seconds: report.simulated_seconds,
        }
    }
}

/// A mean and its 95 % confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Mean over the seeds.
    pub mean: f64,
    /// Half the interval's width (mean ± this).
    pub half_width: f64,
    /// Smallest value seen.
    pub min: f64,
    /// Largest value seen.
    pub max: f64,
}

impl Interval {
    /// The interval of `values` (`None` without values). One value has a zero width.
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let half_width = if n < 2 {
            0.0
        } else {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            t95(n - 1) * (var / n as f64).sqrt()
        };
        Some(Interval {
            mean,
            half_width,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// Student's t for a two-sided 95 % interval with `dof` degrees of freedom.
fn t95(dof: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match dof {
        0 => f64::INFINITY,
        1..=30 => TABLE[dof - 1],
        31..=60 => 2.000,
        61..=120 => 1.980,
        _ => 1.960,
    }
}

/// The table of headline figures over `seeds`: mean, 95 % interval, min and max.
pub fn summary(seeds: &[Headline]) -> String {
    let mut out = format!(
        "{} seeds: mean, 95 % confidence interval, range\n",
        seeds.len()
    );
    let rows: [(&str, Vec<f64>); 5] = [
        (
            "affinity",
            seeds.iter().filter_map(|h| h.affinity).collect(),
        ),
        ("resumption", seeds.iter().map(|h| h.resumption).collect()),
        (
            "failures",
            seeds.iter().map(|h| h.failures as f64).collect(),
        ),
        ("imbalance", seeds.iter().map(|h| h.imbalance).collect()),
        ("p99 ms", seeds.iter().map(|h| h.p99_ms as f64).collect()),
    ];
    for (name, values) in rows {
        if let Some(i) = Interval::of(&values) {
            let _ = writeln!(
                out,
                "{name:<12} {:>10.4} ± {:<8.4} [{:.4} .. {:.4}]",
                i.mean, i.half_width, i.min, i.max
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_of_known_values() {
        let i = Interval::of(&[1.0, 2.0, 3.0, 4.0, 5.0]).expect("values");
        assert_eq!(i.mean, 3.0);
        // sd = 1.5811, se = 0.7071, t(4) = 2.776
        assert!((i.half_width - 1.963).abs() < 1e-3, "{}", i.half_width);
        assert_eq!((i.min, i.max), (1.0, 5.0));
        assert_eq!(Interval::of(&[7.0]).map(|i| i.half_width), Some(0.0));
        assert_eq!(Interval::of(&[]), None);
    }

    #[test]
    fn a_headline_reads_back_from_its_line() {
        let h = Headline {
            seed: 3,
            affinity: Some(0.5),
            resumption: 0.25,
            failures: 2,
            imbalance: 1.5,
            p99_ms: 40,
            expectations: vec![true, false],
            resumption_per_minute: vec![0.1, 0.2],
            affinity_per_minute: vec![],
            seconds: 120.0,
        };
        let line = serde_json::to_string(&h).expect("json");
        assert_eq!(serde_json::from_str::<Headline>(&line).expect("parse"), h);
        assert!(summary(&[h.clone(), h]).contains("affinity         0.5000 ± 0.0000"));
    }
}
