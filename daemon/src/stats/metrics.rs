//! Prometheus text exposition (`/metrics`, format 0.0.4): counters and gauges for frontends,
//! servers, affinity outcomes and stick tables.

use std::fmt::Write as _;

use tether_core::affinity::AffinityOutcome;
use tether_core::server::{AdminState, OperState};

use super::snapshot::Snapshot;

/// The content type Prometheus expects.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family being written: `# HELP`, `# TYPE`, then its samples.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

type FrontendField = fn(&super::snapshot::FrontendView) -> u64;
type ServerField = fn(&super::snapshot::ServerView) -> u64;

/// Renders every metric.
pub fn render(snap: &Snapshot) -> String {
    let mut out = String::new();
    Family::new(
        &mut out,
        "tether_connections_current",
        "gauge",
        "Connections open in the process.",
    )
    .sample(&[], snap.actconn);
    Family::new(
        &mut out,
        "tether_dropped_logs_total",
        "counter",
        "Log lines not delivered to a log target (queue full, target slow or absent).",
    )
    .sample(&[], crate::syslog::dropped());
    Family::new(
        &mut out,
        "tether_spliced_bytes_total",
        "counter",
        "Bytes forwarded by splice(2), kernel-side, never copied through the process.",
    )
    .sample(&[], crate::net::splice::spliced_bytes());
    Family::new(
        &mut out,
        "tether_pipes_current",
        "gauge",
        "Pipes held by connections that splice (bounded by max-pipes).",
    )
    .sample(&[], crate::net::splice::pipes_in_use());

    frontends(&mut out, snap);
    servers(&mut out, snap);
    backends(&mut out, snap);
    tables(&mut out, snap);
    out
}

/// Connections accepted by each accepting thread (see [`crate::threads`]): how evenly the
/// system spreads them over the threads' listeners.
pub fn threads(accepted: &[std::sync::atomic::AtomicU64]) -> String {
    let mut out = String::new();
    let mut fam = Family::new(
        &mut out,
        "tether_thread_connections_total",
        "counter",
        "Connections accepted by the thread.",
    );
    for (i, n) in accepted.iter().enumerate() {
        fam.sample(
            &[("thread", &i.to_string())],
            n.load(std::sync::atomic::Ordering::Relaxed),
        );
    }
    out
}

/// Per-frontend families.
fn frontends(out: &mut String, snap: &Snapshot) {
    let fe: [(&'static str, &str, &str, FrontendField); 2] = [
        (
            "tether_frontend_connections_total",
            "counter",
            "Connections accepted by the frontend.",
            |f| f.accepted,
        ),
        (
            "tether_frontend_connections_current",
            "gauge",
            "Connections open on the frontend.",
            |f| f.current,
        ),
    ];
    for (name, kind, help, get) in fe {
        let mut fam = Family::new(out, name, kind, help);
        for f in &snap.frontends {
            fam.sample(&[("frontend", &f.name)], get(f));
        }
    }
}

/// Per-server counters and gauges.
fn servers(out: &mut String, snap: &Snapshot) {
    let servers: [(&'static str, &str, &str, ServerField); 10] = [
        (
            "tether_server_connections_current",
            "gauge",
            "Connections open to the server.",
            |s| s.current,
        ),
        (
            "tether_server_connections_max",
            "gauge",
            "Most connections open to the server at once.",
            |s| s.max,
        ),
        (
            "tether_server_connections_total",
            "counter",
            "Connections established to the server.",
            |s| s.total,
        ),
        (
            "tether_server_bytes_in_total",
            "counter",
            "Bytes from clients to the server.",
            |s| s.bytes_in,
        ),
        (
            "tether_server_bytes_out_total",
            "counter",
            "Bytes from the server to clients.",
            |s| s.bytes_out,
        ),
        (
            "tether_server_connect_errors_total",
            "counter",
            "Failed connection attempts.",
            |s| s.connect_errors,
        ),
        (
            "tether_server_retries_total",
            "counter",
            "Connection retries on the server.",
            |s| s.retries,
        ),
        (
            "tether_server_redispatches_total",
            "counter",
            "Connections redispatched away from the server.",
            |s| s.redispatches,
        ),
        (
            "tether_server_check_failures_total",
            "counter",
            "Failed health checks.",
            |s| s.check_failures,
        ),
        (
            "tether_server_weight",
            "gauge",
            "Weight the balancer uses now (0 when not usable).",
            |s| u64::from(s.effective_weight),
        ),
    ];
    for (name, kind, help, get) in servers {
        let mut fam = Family::new(out, name, kind, help);
        for b in &snap.backends {
            for s in &b.servers {
                fam.sample(&[("backend", &b.name), ("server", &s.name)], get(s));
            }
        }
    }
}

/// Server state and per-backend families.
fn backends(out: &mut String, snap: &Snapshot) {
    let mut fam = Family::new(
        out,
        "tether_server_up",
        "gauge",
        "1 when health checks say the server is up.",
    );
    for b in &snap.backends {
        for s in &b.servers {
            fam.sample(
                &[("backend", &b.name), ("server", &s.name)],
                u8::from(s.oper == OperState::Up),
            );
        }
    }
    let mut fam = Family::new(
        out,
        "tether_server_admin_state",
        "gauge",
        "1 for the operator state the server is in.",
    );
    for b in &snap.backends {
        for s in &b.servers {
            for (label, st) in [
                ("ready", AdminState::Ready),
                ("drain", AdminState::Drain),
                ("maint", AdminState::Maint),
            ] {
                fam.sample(
                    &[("backend", &b.name), ("server", &s.name), ("state", label)],
                    u8::from(s.admin == st),
                );
            }
        }
    }

    let mut fam = Family::new(
        out,
        "tether_backend_nosrv_total",
        "counter",
        "Connections for which no server was usable.",
    );
    for b in &snap.backends {
        fam.sample(&[("backend", &b.name)], b.nosrv);
    }
    let mut fam = Family::new(
        out,
        "tether_affinity_outcomes_total",
        "counter",
        "Affinity outcome of each connection (no-key carries its reason).",
    );
    for b in &snap.backends {
        for (o, n) in &b.outcomes {
            let (outcome, reason) = match o {
                AffinityOutcome::NoKey(r) => ("no-key".to_string(), r.as_str()),
                other => (other.label(), ""),
            };
            fam.sample(
                &[
                    ("backend", &b.name),
                    ("outcome", &outcome),
                    ("reason", reason),
                ],
                n,
            );
        }
    }
}

/// Stick-table families.
fn tables(out: &mut String, snap: &Snapshot) {
    type TableField = fn(&tether_core::stick::StickStats) -> u64;
    let tables: [(&'static str, &str, &str, TableField); 9] = [
        (
            "tether_stick_table_entries",
            "gauge",
            "Entries stored in the stick table.",
            |t| t.entries,
        ),
        (
            "tether_stick_table_capacity",
            "gauge",
            "Configured size of the stick table.",
            |t| t.capacity,
        ),
        (
            "tether_stick_table_hits_total",
            "counter",
            "Lookups that found a live entry.",
            |t| t.hits,
        ),
        (
            "tether_stick_table_misses_total",
            "counter",
            "Lookups that found nothing usable.",
            |t| t.misses,
        ),
        (
            "tether_stick_table_learned_total",
            "counter",
            "Entries created or moved by learning.",
            |t| t.learned,
        ),
        (
            "tether_stick_table_sets_total",
            "counter",
            "Operator sets.",
            |t| t.sets,
        ),
        (
            "tether_stick_table_evicted_total",
            "counter",
            "Live entries evicted to make room.",
            |t| t.evicted,
        ),
        (
            "tether_stick_table_expired_total",
            "counter",
            "Entries removed on expiry.",
            |t| t.expired,
        ),
        (
            "tether_stick_table_refused_total",
            "counter",
            "Stores refused because the table was full (nopurge).",
            |t| t.refused,
        ),
    ];
    for (name, kind, help, get) in tables {
        let mut fam = Family::new(out, name, kind, help);
        for b in &snap.backends {
            for t in &b.tables {
                fam.sample(&[("backend", &b.name), ("table", t.kind)], get(&t.stats));
            }
        }
    }
    let mut fam = Family::new(
        out,
        "tether_stick_table_occupancy_ratio",
        "gauge",
        "Entries divided by capacity.",
    );
    for b in &snap.backends {
        for t in &b.tables {
            fam.sample(&[("backend", &b.name), ("table", t.kind)], t.occupancy());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        Family::new(&mut out, "m", "gauge", "h").sample(&[("a", "x\"y\\z\n")], 1);
        assert!(out.contains("m{a=\"x\\\"y\\\\z\\n\"} 1\n"), "{out}");
    }
}
