//! A fleet's activity curve: how busy its clients are through a repeating period (a day).
//!
//! Real traffic is diurnal: a fleet's visit rate at 3 am is a fraction of its evening peak.
//! The curve is a list of relative weights spread evenly over the period and joined by straight
//! lines (the last wraps to the first). A client's visits are thinned by it: a visit the clock
//! would start at time `t` goes ahead with probability `weight(t) / max weight`, otherwise the
//! client sleeps another revisit gap. With exponential gaps this is exactly a Poisson process
//! whose rate follows the curve, peaking at the rate the gaps give.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::scenario::SimDuration;

/// Most points a curve may have (one a minute over a day).
pub const MAX_POINTS: usize = 1_440;

fn default_period() -> SimDuration {
    SimDuration(Duration::from_secs(86_400))
}

/// Relative activity through a repeating period, as written in the scenario.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ActivitySpec {
    #[serde(default = "default_period")]
    period: SimDuration,
    weights: Vec<f64>,
}

/// Relative activity through a repeating period (the scenario's `activity`), with its peak
/// found once: [`Activity::level`] runs before every visit, and a curve may have 1,440 points.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(from = "ActivitySpec", into = "ActivitySpec")]
pub struct Activity {
    /// The curve repeats after this long (default one day).
    pub period: SimDuration,
    /// Relative weights at evenly spaced points from the start of the period (the first is
    /// at time 0, e.g. 24 hourly values); only their ratios matter.
    pub weights: Vec<f64>,
    peak: f64,
}

impl From<ActivitySpec> for Activity {
    fn from(spec: ActivitySpec) -> Self {
        Activity::new(spec.period, spec.weights)
    }
}

impl From<Activity> for ActivitySpec {
    fn from(a: Activity) -> Self {
        ActivitySpec {
            period: a.period,
            weights: a.weights,
        }
    }
}

impl Activity {
    /// The curve of `weights` over `period`.
    pub fn new(period: SimDuration, weights: Vec<f64>) -> Self {
        let peak = weights.iter().copied().fold(0.0, f64::max);
        Activity {
            period,
            weights,
            peak,
        }
    }

    /// Why the curve cannot be used, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.period.get().as_millis() == 0 {
            return Err("activity.period must be longer than 0".into());
        }
        if self.weights.is_empty() || self.weights.len() > MAX_POINTS {
            return Err(format!(
                "activity.weights needs between 1 and {MAX_POINTS} values, not {}",
                self.weights.len()
            ));
        }
        if let Some(w) = self.weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
            return Err(format!(
                "activity.weights must be finite and not negative (found {w})"
            ));
        }
        if self.peak <= 0.0 {
            return Err("activity.weights are all 0: the fleet would never visit".into());
        }
        Ok(())
    }

    /// The activity at simulated time `t_ms`, as a fraction of the peak (0 to 1).
    pub fn level(&self, t_ms: u64) -> f64 {
        let peak = self.peak;
        let n = self.weights.len();
        if peak <= 0.0 || n == 0 {
            return 0.0;
        }
        let period = self.period.get().as_millis().max(1) as u64;
        let pos = (t_ms % period) as f64 / period as f64 * n as f64;
        let i = (pos as usize).min(n - 1);
        let frac = pos - i as f64;
        let (a, b) = (self.weights[i], self.weights[(i + 1) % n]);
        ((a + (b - a) * frac) / peak).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn curve(weights: Vec<f64>) -> Activity {
        Activity::new(SimDuration(Duration::from_secs(4)), weights)
    }

    #[test]
    fn points_are_exact_and_joined_by_lines_that_wrap() {
        let c = curve(vec![1.0, 3.0, 0.0, 2.0]);
        assert_eq!(c.level(0), 1.0 / 3.0);
        assert_eq!(c.level(1_000), 1.0);
        assert_eq!(c.level(2_000), 0.0);
        assert_eq!(c.level(1_500), 0.5);
        // Between the last point and the period's end the line goes back to the first.
        assert!((c.level(3_500) - 0.5).abs() < 1e-9);
        assert_eq!(c.level(4_000 + 1_000), 1.0);
    }

    #[test]
    fn bad_curves_are_refused_with_the_reason() {
        assert!(curve(vec![]).validate().unwrap_err().contains("between 1"));
        assert!(curve(vec![0.0, 0.0])
            .validate()
            .unwrap_err()
            .contains("all 0"));
        assert!(curve(vec![1.0, -1.0])
            .validate()
            .unwrap_err()
            .contains("negative"));
        assert!(curve(vec![f64::NAN]).validate().is_err());
        let zero = Activity::new(SimDuration(Duration::ZERO), vec![1.0]);
        assert!(zero.validate().unwrap_err().contains("period"));
        assert!(curve(vec![0.5; MAX_POINTS + 1]).validate().is_err());
        assert!(curve(vec![0.0, 2.0]).validate().is_ok());
    }

    proptest! {
        #[test]
        fn level_is_a_fraction_of_the_peak_and_repeats(
            weights in proptest::collection::vec(0.0f64..100.0, 1..50),
            t in 0u64..1_000_000,
        ) {
            let c = curve(weights);
            prop_assume!(c.validate().is_ok());
            let l = c.level(t);
            prop_assert!((0.0..=1.0).contains(&l));
            prop_assert_eq!(l, c.level(t + 4_000));
        }
    }
}
