//! The `always` properties every swarm run must keep, checked on its trace.

use std::collections::BTreeMap;
use std::fmt;

use super::{disruptions, Case, DURATION_S, FALL, INTER_S};
use crate::driver::{server_name, Trace};
use crate::events::Action;
use crate::metrics::ServerStats;

/// A broken invariant, with what is needed to understand it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Two runs of the same seed differ (report or routes).
    Nondeterministic,
    /// The stick table held more entries than its size.
    TableOverflow {
        /// Most entries seen.
        peak: u64,
        /// Configured size.
        capacity: u64,
    },
    /// A connection accepted while a server was out of use went to it.
    RoutedToUnusable {
        /// The server.
        server: String,
        /// When the connection was accepted (simulated ms).
        accepted_ms: u64,
        /// Why the server was out of use, and since when.
        why: String,
    },
    /// A server's connection count is wrong at the end or went past its `maxconn`.
    ServerCount {
        /// The server.
        server: String,
        /// What is wrong.
        what: String,
    },
    /// Logged connections do not match accepted ones.
    Logging {
        /// What is wrong.
        what: String,
    },
    /// Stick entries name servers that are not in the backend.
    DanglingEntries(usize),
    /// A client connection failed far from any fault while a healthy server remained.
    FailureAwayFromFaults {
        /// Fleet.
        fleet: String,
        /// Connection start and end (simulated ms).
        span: (u64, u64),
        /// How it failed.
        failure: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Nondeterministic => f.write_str("two runs of the seed differ"),
            Violation::TableOverflow { peak, capacity } => {
                write!(f, "stick table held {peak} entries, size {capacity}")
            }
            Violation::RoutedToUnusable {
                server,
                accepted_ms,
                why,
            } => write!(
                f,
                "connection accepted at {accepted_ms} ms went to {server}, {why}"
            ),
            Violation::ServerCount { server, what } => write!(f, "{server}: {what}"),
            Violation::Logging { what } => f.write_str(what),
            Violation::DanglingEntries(n) => {
                write!(
                    f,
                    "{n} stick entries name a server the backend does not have"
                )
            }
            Violation::FailureAwayFromFaults {
                fleet,
                span,
                failure,
            } => write!(
                f,
                "fleet {fleet}: connection {}..{} ms failed ({failure}) with no fault near it",
                span.0, span.1
            ),
        }
    }
}

/// Every invariant on one run.
pub(super) fn check(
    case: &Case,
    trace: &Trace,
    servers: &BTreeMap<String, ServerStats>,
) -> Vec<Violation> {
    let mut v = Vec::new();
    if let Some(capacity) = trace.table_capacity {
        if trace.peak_table_entries > capacity {
            v.push(Violation::TableOverflow {
                peak: trace.peak_table_entries,
                capacity,
            });
        }
    }
    unusable_servers_get_nothing(trace, &mut v);
    engine_end(case, trace, &mut v);
    // What the balancer closes across a cut link (a timeout, a restart) stays open at the
    // server, which then counts it beside the new connections: servers' counts hold only
    // without partitions.
    if !case.mix.partitions {
        maxconn_held(trace, servers, &mut v);
    }
    if !case.mix.tight_maxconn {
        failures_only_near_faults(trace, &mut v);
    }
    v
}

/// A span of simulated time during which a server must receive no newly accepted connection.
struct OutOfUse {
    server: String,
    from_ms: u64,
    until_ms: u64,
    why: &'static str,
}

/// Maintenance, removal and DOWN (as the balancer saw it) keep new connections away.
fn unusable_servers_get_nothing(trace: &Trace, v: &mut Vec<Violation>) {
    let mut spans = Vec::new();
    for (i, &(at, ref action)) in trace.events.iter().enumerate() {
        let (server, why, ends_with_ready) = match action {
            Action::Maint { server } => (*server, "in maintenance", true),
            Action::RemoveServer { server } => (*server, "removed", false),
            _ => continue,
        };
        // A restarted balancer starts without the operator's runtime admin state.
        let until_ms = trace.events[i + 1..]
            .iter()
            .find(|(_, a)| {
                (ends_with_ready && *a == Action::Ready { server }) || *a == Action::RestartBalancer
            })
            .map_or(u64::MAX, |&(ms, _)| ms);
        spans.push(OutOfUse {
            server: server_name(server),
            from_ms: at,
            until_ms,
            why,
        });
    }
    for h in trace.health.iter().filter(|h| h.down) {
        let until_ms = trace
            .health
            .iter()
            .find(|u| !u.down && u.server == h.server && u.at_ms >= h.at_ms)
            .map_or(u64::MAX, |u| u.at_ms);
        spans.push(OutOfUse {
            server: h.server.clone(),
            from_ms: h.at_ms,
            until_ms,
            why: "DOWN",
        });
    }
    // Health is observed at the end of each step: allow a step either side.
    let tick = 2 * trace.tick_ms;
    for s in &spans {
        // A route names its last server, chosen between accept (plus the hello's wait) and the
        // slot: a route never retried whose whole window lies in the span broke the rule.
        let hit = trace.routes.iter().find(|r| {
            r.retries == 0
                && r.server.as_deref() == Some(s.server.as_str())
                && r.accepted_ms > s.from_ms + tick
                && r.chosen_ms + tick < s.until_ms
        });
        if let Some(r) = hit {
            v.push(Violation::RoutedToUnusable {
                server: s.server.clone(),
                accepted_ms: r.accepted_ms,
                why: format!("{} since {} ms", s.why, s.from_ms),
            });
        }
    }
}

/// Connection counts and logging of the process running at the end.
fn engine_end(case: &Case, trace: &Trace, v: &mut Vec<Violation>) {
    let Some(end) = &trace.engine_end else {
        v.push(Violation::Logging {
            what: "the balancer was not running at the end".into(),
        });
        return;
    };
    // A restart starts a new process, a reload (servers added or removed) new frontends: the
    // accepted counter covers the connections since the last of them.
    let since_ms = trace
        .events
        .iter()
        .filter(|(_, a)| {
            matches!(
                a,
                Action::RestartBalancer | Action::AddServer | Action::RemoveServer { .. }
            )
        })
        .map(|&(ms, _)| ms)
        .max();
    let tick = trace.tick_ms;
    let logged = trace
        .routes
        .iter()
        .filter(|r| since_ms.is_none_or(|t| r.accepted_ms > t + tick))
        .count() as u64;
    // Connections the run ended under (clients still waiting, queued or connected) are
    // accepted and counted but not logged yet.
    let open = trace
        .connections
        .iter()
        .filter(|c| c.record.failure.is_some() && c.end_ms >= DURATION_S * 1000)
        .count() as u64;
    // Exact when nothing was rebuilt and nothing can hang past the end (a cut link).
    let exact = since_ms.is_none() && !case.mix.partitions;
    if logged > end.accepted || (exact && end.accepted - logged > open) {
        v.push(Violation::Logging {
            what: format!(
                "{} accepted, {logged} logged, {open} open at the end",
                end.accepted
            ),
        });
    }
    // Every connection has ended, unless a cut link holds one until its idle timeout.
    let counted: u64 = end.servers.iter().map(|s| s.current).sum();
    if counted > open && !case.mix.partitions {
        for s in end.servers.iter().filter(|s| s.current > 0) {
            v.push(Violation::ServerCount {
                server: s.name.clone(),
                what: format!(
                    "{} connections still counted at the end ({open} open)",
                    s.current
                ),
            });
        }
    }
    if end.dangling_entries > 0 {
        v.push(Violation::DanglingEntries(end.dangling_entries));
    }
}

/// Each server saw at most `maxconn` connections at once, plus the one health check it may be
/// answering (the servers count what reaches them; the engine's own counter also counts the
/// connections queued for the server, as HAProxy's leastconn does), plus the connects the
/// balancer abandoned in flight that the server had already accepted: turmoil never closes
/// those (a kernel would reset them), so they stay counted.
fn maxconn_held(trace: &Trace, servers: &BTreeMap<String, ServerStats>, v: &mut Vec<Violation>) {
    let Some(end) = &trace.engine_end else { return };
    for s in &end.servers {
        let (Some(m), Some(seen)) = (s.maxconn, servers.get(&s.name)) else {
            continue;
        };
        let abandoned = trace.abandoned_connects.get(&s.name).copied().unwrap_or(0);
        if seen.peak_concurrency > m + 1 + abandoned {
            v.push(Violation::ServerCount {
                server: s.name.clone(),
                what: format!("{} connections at once, maxconn {m}", seen.peak_concurrency),
            });
        }
    }
}

/// How long after a fault connections may still fail because of it: detection (checks every
/// `INTER_S`, `FALL` in a row), the check's own timeout, and a connect timeout per retry.
const FAULT_WINDOW_MS: u64 = (INTER_S * FALL + 1 + 4) * 1000;

/// With server 0 never faulted, a client connection may fail only when a fault struck during its
/// life (or shortly before it started), or when the run ended under it. (Not checked with tight
/// `maxconn`: a client may rightly give up while queued.)
fn failures_only_near_faults(trace: &Trace, v: &mut Vec<Violation>) {
    let faults: Vec<u64> = disruptions(trace).collect();
    for c in &trace.connections {
        let Some(failure) = c.record.failure else {
            continue;
        };
        let start = c.record.start_ms;
        let near = faults
            .iter()
            .any(|&t| start <= t + FAULT_WINDOW_MS && t <= c.end_ms);
        if near || c.end_ms >= DURATION_S * 1000 {
            continue;
        }
        v.push(Violation::FailureAwayFromFaults {
            fleet: c.fleet.clone(),
            span: (start, c.end_ms),
            failure: format!("{failure:?}"),
        });
    }
}
