//! `tether sim compare A.json B.json`: two reports side by side — typically the simulator's
//! prediction and what `tether loadgen` measured on real sockets — with their differences, and
//! a verdict against a tolerance in percentage points.
//!
//! Reports are read as JSON values, so a report from an older or newer build still compares on
//! the fields both have. Rates and shares are compared in points; counts (failures, table size)
//! and imbalance are shown with their difference but do not decide the verdict. Server shares
//! are shares of completed TLS handshakes, so the simulator's health-check connections (which a
//! real client never sees) do not count.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value;

/// One compared figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Section and name, e.g. "overall resumption".
    pub label: String,
    /// Value in the first report (`None`: absent there).
    pub a: Option<f64>,
    /// Value in the second report.
    pub b: Option<f64>,
    /// A rate or share (shown in %, compared in points) rather than a count.
    pub rate: bool,
    /// Counts towards the verdict.
    pub gated: bool,
}

impl Row {
    /// Difference b − a, in points for rates.
    pub fn diff(&self) -> Option<f64> {
        let scale = if self.rate { 100.0 } else { 1.0 };
        Some((self.b? - self.a?) * scale)
    }

    /// Gated and beyond `tolerance` points.
    pub fn fails(&self, tolerance: f64) -> bool {
        self.gated && self.diff().is_some_and(|d| d.abs() > tolerance)
    }
}

/// The comparison of two reports.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    /// Every figure, in print order.
    pub rows: Vec<Row>,
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn keys(a: &Value, b: &Value) -> Vec<String> {
    let mut k = BTreeSet::new();
    for v in [a, b] {
        if let Some(o) = v.as_object() {
            k.extend(o.keys().cloned());
        }
    }
    k.into_iter().collect()
}

/// Per server: completed handshakes over all completed handshakes.
fn handshake_shares(r: &Value) -> Vec<(String, f64)> {
    let Some(servers) = r["servers"].as_object() else {
        return Vec::new();
    };
    let count = |s: &Value| {
        num(&s["full_handshakes"]).unwrap_or(0.0) + num(&s["resumed_handshakes"]).unwrap_or(0.0)
    };
    let total: f64 = servers.values().map(count).sum();
    servers
        .iter()
        .map(|(name, s)| {
            (
                name.clone(),
                if total > 0.0 { count(s) / total } else { 0.0 },
            )
        })
        .collect()
}

impl Comparison {
    /// Compares report `a` with report `b`; `per_fleet` also gates each fleet's rates.
    pub fn of(a: &Value, b: &Value, per_fleet: bool) -> Self {
        let mut c = Comparison::default();
        c.overall(a, b);
        c.fleets(a, b, per_fleet);
        c.servers(a, b);
        c.minutes(a, b);
        c
    }

    fn push(&mut self, label: String, a: Option<f64>, b: Option<f64>, rate: bool, gated: bool) {
        self.rows.push(Row {
            label,
            a,
            b,
            rate,
            gated,
        });
    }

    fn overall(&mut self, a: &Value, b: &Value) {
        let aff = |r: &Value| num(&r["affinity"]["overall"]["affinity_rate"]);
        self.push("overall affinity".into(), aff(a), aff(b), true, true);
        let res = |r: &Value| num(&r["overall"]["resumption_rate"]);
        self.push("overall resumption".into(), res(a), res(b), true, true);
        let fail = |r: &Value| num(&r["overall"]["client_visible_failures"]);
        self.push("overall failures".into(), fail(a), fail(b), false, false);
        let conns = |r: &Value| num(&r["overall"]["connections"]);
        self.push(
            "overall connections".into(),
            conns(a),
            conns(b),
            false,
            false,
        );
        let imb = |r: &Value| num(&r["imbalance"]["max_over_mean"]);
        self.push("imbalance max/mean".into(), imb(a), imb(b), false, false);
        let peak = |r: &Value| num(&r["table"]["peak_entries"]);
        self.push("table peak entries".into(), peak(a), peak(b), false, false);
    }

    fn fleets(&mut self, a: &Value, b: &Value, gated: bool) {
        for f in keys(&a["fleets"], &b["fleets"]) {
            let res = |r: &Value| num(&r["fleets"][&f]["resumption_rate"]);
            self.push(format!("fleet {f} resumption"), res(a), res(b), true, gated);
            let aff = |r: &Value| num(&r["affinity"]["fleets"][&f]["affinity_rate"]);
            self.push(format!("fleet {f} affinity"), aff(a), aff(b), true, gated);
            let fail = |r: &Value| num(&r["fleets"][&f]["client_visible_failures"]);
            self.push(
                format!("fleet {f} failures"),
                fail(a),
                fail(b),
                false,
                false,
            );
        }
    }

    fn servers(&mut self, a: &Value, b: &Value) {
        let (sa, sb) = (handshake_shares(a), handshake_shares(b));
        let names: BTreeSet<&String> = sa.iter().chain(&sb).map(|(n, _)| n).collect();
        let find = |s: &[(String, f64)], n: &str| s.iter().find(|(k, _)| k == n).map(|x| x.1);
        for n in names {
            self.push(
                format!("server {n} share"),
                find(&sa, n),
                find(&sb, n),
                true,
                true,
            );
        }
    }

    fn minutes(&mut self, a: &Value, b: &Value) {
        let len = |r: &Value| r["series"]["connections"].as_array().map_or(0, Vec::len);
        for m in 0..len(a).max(len(b)) {
            for (name, field, rate) in [
                ("resumption", "resumption_rate", true),
                ("affinity", "affinity_rate", true),
                ("failures", "failures", false),
            ] {
                let at = |r: &Value| num(&r["series"][field][m]);
                self.push(format!("minute {m} {name}"), at(a), at(b), rate, false);
            }
        }
    }

    /// The rows beyond `tolerance` points that decide the verdict.
    pub fn failures(&self, tolerance: f64) -> Vec<&Row> {
        self.rows.iter().filter(|r| r.fails(tolerance)).collect()
    }

    /// The side-by-side table; rows beyond `tolerance` are marked.
    pub fn table(&self, a_name: &str, b_name: &str, tolerance: f64) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<36} {:>12} {:>12} {:>10}",
            "figure", a_name, b_name, "diff"
        );
        let show = |v: Option<f64>, rate: bool| match v {
            None => "-".to_owned(),
            Some(x) if rate => format!("{:.1}%", x * 100.0),
            Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
            Some(x) => format!("{x:.2}"),
        };
        for r in &self.rows {
            let diff = match r.diff() {
                None => "-".to_owned(),
                Some(d) if r.rate => format!("{d:+.1} pt"),
                Some(d) => format!("{d:+.2}"),
            };
            let mark = if r.fails(tolerance) {
                "  <- beyond tolerance"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "{:<36} {:>12} {:>12} {:>10}{mark}",
                r.label,
                show(r.a, r.rate),
                show(r.b, r.rate),
                diff
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(resumption: f64, affinity: f64, shares: [u64; 2]) -> Value {
        json!({
            "overall": {"resumption_rate": resumption, "client_visible_failures": 0, "connections": 10},
            "fleets": {"f": {"resumption_rate": resumption, "client_visible_failures": 0}},
            "affinity": {"overall": {"affinity_rate": affinity}, "fleets": {"f": {"affinity_rate": affinity}}},
            "servers": {
                "s0": {"full_handshakes": shares[0], "resumed_handshakes": 0, "connections": 99},
                "s1": {"full_handshakes": shares[1], "resumed_handshakes": 0, "connections": 1}
            },
            "imbalance": {"max_over_mean": 1.0},
            "series": {"connections": [5, 5], "resumption_rate": [0.5, 0.6], "affinity_rate": [], "failures": [0, 0]}
        })
    }

    #[test]
    fn rates_and_shares_compare_in_points_and_gate_the_verdict() {
        let a = report(0.90, 0.95, [50, 50]);
        let b = report(0.88, 0.95, [52, 48]);
        let c = Comparison::of(&a, &b, false);
        let res = c
            .rows
            .iter()
            .find(|r| r.label == "overall resumption")
            .unwrap();
        assert!((res.diff().unwrap() + 2.0).abs() < 1e-9);
        assert!(c.failures(3.0).is_empty());
        let fails: Vec<_> = c.failures(1.5).iter().map(|r| r.label.clone()).collect();
        assert_eq!(
            fails,
            ["overall resumption", "server s0 share", "server s1 share"]
        );
        // Shares are of handshakes, not of connections (health checks are not clients).
        assert!(c.table("sim", "real", 1.5).contains("server s0 share"));
        assert!(c.table("sim", "real", 1.5).contains("<- beyond tolerance"));
    }

    #[test]
    fn fleets_gate_only_when_asked_and_missing_fields_never_fail() {
        let a = report(0.90, 0.95, [1, 1]);
        let mut b = report(0.90, 0.80, [1, 1]);
        b["affinity"]["overall"] = json!(null);
        let loose = Comparison::of(&a, &b, false);
        assert!(loose.failures(3.0).is_empty(), "{:?}", loose.failures(3.0));
        let strict = Comparison::of(&a, &b, true);
        assert_eq!(strict.failures(3.0)[0].label, "fleet f affinity");
    }
}
