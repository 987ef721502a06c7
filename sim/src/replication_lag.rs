//! Replication lag, measured from the instances' own update feeds: when a key is stored from
//! traffic on one instance and when a peer's copy of that store lands on another.
//!
//! The driver reads every instance's new updates after each simulation step, so the figures are
//! as fine as the step (`network.tick`). Catch-up after an instance restarts or a partition
//! heals is not lag: only stores made after the last such event count (the catch-up shows in
//! the table convergence instead).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::metrics::Latencies;

/// Lag samples and what is needed to take them.
#[derive(Debug, Default)]
pub struct LagProbe {
    /// Per key, when traffic last stored it on some instance (simulated ms).
    stored_at: BTreeMap<Vec<u8>, u64>,
    /// Stores before this time arrive as catch-up, not as live replication.
    baseline_ms: u64,
    lags_ms: Latencies,
}

/// Replication lag in the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LagStats {
    /// Peer updates measured.
    pub samples: u64,
    /// Median time from a store on one instance to its arrival on another.
    pub p50_ms: u64,
    /// 99th percentile of the same.
    pub p99_ms: u64,
    /// The longest.
    pub max_ms: u64,
    /// Resolution: the simulation step.
    pub resolution_ms: u64,
}

impl LagProbe {
    /// Updates read at `now_ms` from every instance: (key, stored from traffic there). Stores
    /// from traffic are taken first, so a store and its copy seen in one step lag 0.
    pub fn observe(&mut self, now_ms: u64, updates: &[(Vec<u8>, bool)]) {
        for (key, _) in updates.iter().filter(|(_, local)| *local) {
            self.stored_at.insert(key.clone(), now_ms);
        }
        for (key, _) in updates.iter().filter(|(_, local)| !*local) {
            if let Some(&at) = self.stored_at.get(key) {
                if at >= self.baseline_ms {
                    self.lags_ms.add(now_ms.saturating_sub(at));
                }
            }
        }
    }

    /// An instance restarted or a partition healed at `now_ms`: what arrives next for older
    /// stores is catch-up.
    pub fn catch_up_from(&mut self, now_ms: u64) {
        self.baseline_ms = now_ms;
    }

    /// The figures, with the step's resolution; `None` before any sample.
    pub fn stats(&self, resolution_ms: u64) -> Option<LagStats> {
        if self.lags_ms.is_empty() {
            return None;
        }
        let lags = &self.lags_ms;
        Some(LagStats {
            samples: lags.len(),
            p50_ms: lags.percentile(50),
            p99_ms: lags.percentile(99),
            max_ms: lags.percentile(100),
            resolution_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_arrival_minus_last_local_store_and_catch_up_is_left_out() {
        let mut p = LagProbe::default();
        let k = |b: u8| vec![0, b];
        p.observe(100, &[(k(1), true)]);
        p.observe(140, &[(k(1), false), (k(9), false)]);
        p.observe(200, &[(k(2), true), (k(2), false)]);
        assert_eq!(p.stats(20).unwrap().samples, 2);
        p.catch_up_from(300);
        p.observe(320, &[(k(1), false)]);
        let s = p.stats(20).unwrap();
        assert_eq!((s.samples, s.p50_ms, s.max_ms), (2, 0, 40));
        assert_eq!(LagProbe::default().stats(20), None);
    }
}
