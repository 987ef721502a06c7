//! What the simulation counts, as it happens: per fleet, per server, per simulated minute.
//!
//! Clients record what they saw (resumed or not, failures by phase, handshake latency); servers
//! record connections and concurrency. Everything is keyed in `BTreeMap`s so that iterating for
//! the report is in a stable order and the same seed gives the same bytes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde::{Serialize, Serializer};
use tether_core::affinity::AffinityOutcome;

use crate::client::Failure;

/// The recorder shared by every task of the (single-threaded) simulation.
pub type SharedRecorder = Rc<RefCell<Recorder>>;

/// One client connection, as the client saw it.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectionRecord {
    /// When the client started connecting (simulated ms).
    pub start_ms: u64,
    /// The client offered a session ID, ticket or PSK.
    pub attempted: bool,
    /// The server resumed the session.
    pub resumed: bool,
    /// Connect start to handshake complete, if the handshake completed.
    pub latency_ms: Option<u64>,
    /// How the connection failed, if it did.
    pub failure: Option<Failure>,
    /// The balancer instance it was sent to (0 with one balancer).
    pub instance: usize,
}

/// Running totals for one fleet (or all of them).
#[derive(Clone, Debug, Default)]
pub struct FleetTally {
    connections: u64,
    attempts: u64,
    resumptions: u64,
    failures: BTreeMap<Failure, u64>,
    latencies_ms: Latencies,
}

impl FleetTally {
    pub(crate) fn add(&mut self, r: &ConnectionRecord) {
        self.connections += 1;
        self.attempts += u64::from(r.attempted);
        self.resumptions += u64::from(r.resumed);
        if let Some(f) = r.failure {
            *self.failures.entry(f).or_default() += 1;
        }
        if let Some(l) = r.latency_ms {
            self.latencies_ms.add(l);
        }
    }

    /// The published statistics.
    pub fn stats(&self) -> FleetStats {
        let lat = &self.latencies_ms;
        let failed = |f| self.failures.get(&f).copied().unwrap_or(0);
        let handshakes = lat.len();
        FleetStats {
            connections: self.connections,
            handshakes,
            resumption_attempts: self.attempts,
            resumptions: self.resumptions,
            resumption_rate: ratio(self.resumptions, handshakes),
            resumption_success: ratio(self.resumptions, self.attempts),
            client_visible_failures: failed(Failure::Connect) + failed(Failure::Handshake),
            failed_connect: failed(Failure::Connect),
            failed_handshake: failed(Failure::Handshake),
            aborted_in_flight: failed(Failure::InFlight),
            connect_latency_p50_ms: lat.percentile(50),
            connect_latency_p99_ms: lat.percentile(99),
        }
    }
}

/// Per-fleet results in the report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FleetStats {
    /// Connections started.
    pub connections: u64,
    /// Connections whose TLS handshake completed.
    pub handshakes: u64,
    /// Handshakes where the client offered something to resume.
    pub resumption_attempts: u64,
    /// Handshakes the server resumed.
    pub resumptions: u64,
    /// resumptions / handshakes.
    pub resumption_rate: f64,
    /// resumptions / resumption attempts: how well affinity serves clients that try.
    pub resumption_success: f64,
    /// Connections that never got a working TLS session (connect or handshake failed).
    pub client_visible_failures: u64,
    /// No TCP connection.
    pub failed_connect: u64,
    /// Broken during the handshake.
    pub failed_handshake: u64,
    /// Broken after the handshake, with data in flight (counted apart).
    pub aborted_in_flight: u64,
    /// Median time from connect start to handshake complete.
    pub connect_latency_p50_ms: u64,
    /// 99th percentile of the same.
    pub connect_latency_p99_ms: u64,
}

/// Per-server running totals.
#[derive(Clone, Debug, Default)]
pub struct ServerTally {
    connections: u64,
    resumed: u64,
    full: u64,
    current: u64,
    peak: u64,
}

/// Per-server results in the report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServerStats {
    /// Connections accepted.
    pub connections: u64,
    /// Full handshakes done.
    pub full_handshakes: u64,
    /// Abbreviated (resumed) handshakes done.
    pub resumed_handshakes: u64,
    /// Highest number of simultaneous connections.
    pub peak_concurrency: u64,
    /// This server's fraction of all server connections.
    pub share: f64,
}

/// Counts for one simulated minute.
#[derive(Clone, Debug, Default)]
pub struct MinuteTally {
    /// Server connections accepted, per server.
    pub per_server: BTreeMap<String, u64>,
    /// Completed handshakes.
    pub handshakes: u64,
    /// Resumed handshakes.
    pub resumptions: u64,
    /// Client connections started.
    pub connections: u64,
    /// Client-visible failures and in-flight aborts.
    pub failures: u64,
}

/// Collects everything the report needs.
#[derive(Debug, Default)]
pub struct Recorder {
    fleets: BTreeMap<String, FleetTally>,
    overall: FleetTally,
    servers: BTreeMap<String, ServerTally>,
    minutes: BTreeMap<u64, MinuteTally>,
    table: BTreeMap<u64, TableTotals>,
    peak_table_entries: u64,
    affinity: Option<AffinityCounts>,
    trace: Option<Vec<crate::driver::ClientTrace>>,
    events: Vec<(u64, String)>,
    cpu: BTreeMap<String, CpuTally>,
    /// Handshake latencies per fleet per minute (of the connection's start).
    fleet_minutes: BTreeMap<String, BTreeMap<u64, Latencies>>,
    /// Per balancer instance, when there are several.
    instances: Option<crate::instance_metrics::InstanceMetrics>,
}

/// One server's CPU over the run (only with a cost model).
#[derive(Clone, Debug, Default)]
pub struct CpuTally {
    /// Core-microseconds busy, per minute.
    pub busy_us: BTreeMap<u64, u64>,
    /// Connections refused with a full backlog.
    pub refused: u64,
    /// What the resumed handshakes would have cost more as full ones.
    pub saved_us: u64,
}

fn minute(ms: u64) -> u64 {
    ms / 60_000
}

/// `map[fleet]`, created empty on the fleet's first connection (the name is copied once, not
/// on every connection).
fn fleet_entry<'m, V: Default>(map: &'m mut BTreeMap<String, V>, fleet: &str) -> &'m mut V {
    if !map.contains_key(fleet) {
        map.insert(fleet.to_owned(), V::default());
    }
    map.get_mut(fleet).expect("inserted above")
}

impl Recorder {
    /// An empty recorder behind the shared handle.
    pub fn shared() -> SharedRecorder {
        Rc::new(RefCell::new(Recorder::default()))
    }

    /// Declares a server so it appears in the report even with no connections.
    pub fn server_known(&mut self, server: &str) {
        self.servers.entry(server.to_owned()).or_default();
    }

    /// A server accepted a connection.
    pub fn server_open(&mut self, server: &str, now_ms: u64) {
        let s = self.servers.entry(server.to_owned()).or_default();
        s.connections += 1;
        s.current += 1;
        s.peak = s.peak.max(s.current);
        *self
            .minutes
            .entry(minute(now_ms))
            .or_default()
            .per_server
            .entry(server.to_owned())
            .or_default() += 1;
    }

    /// A server completed a handshake.
    pub fn server_handshake(&mut self, server: &str, resumed: bool, _now_ms: u64) {
        let s = self.servers.entry(server.to_owned()).or_default();
        if resumed {
            s.resumed += 1;
        } else {
            s.full += 1;
        }
    }

    /// A server's core was busy from `start_us` to `end_us`; `saved_us` is what a full
    /// handshake would have cost more.
    pub fn server_cpu(&mut self, server: &str, start_us: u64, end_us: u64, saved_us: u64) {
        let t = self.cpu.entry(server.to_owned()).or_default();
        for (m, us) in crate::cost::busy_by_minute(start_us, end_us) {
            *t.busy_us.entry(m).or_default() += us;
        }
        t.saved_us += saved_us;
    }

    /// A server refused a connection: its backlog of handshakes waiting for a core was full.
    pub fn server_refused(&mut self, server: &str) {
        self.cpu.entry(server.to_owned()).or_default().refused += 1;
    }

    /// Per-server CPU (servers that did nothing are absent).
    pub fn cpu(&self) -> &BTreeMap<String, CpuTally> {
        &self.cpu
    }

    /// Handshake latencies per fleet per minute.
    pub fn fleet_minutes(&self) -> &BTreeMap<String, BTreeMap<u64, Latencies>> {
        &self.fleet_minutes
    }

    /// A server connection ended (normally, or because the server crashed).
    pub fn server_close(&mut self, server: &str) {
        if let Some(s) = self.servers.get_mut(server) {
            s.current = s.current.saturating_sub(1);
        }
    }

    /// Starts keeping every connection (trace mode).
    pub fn enable_trace(&mut self) {
        self.trace.get_or_insert_with(Vec::new);
    }

    /// The traced connections (empty unless tracing).
    pub fn take_trace(&mut self) -> Vec<crate::driver::ClientTrace> {
        self.trace.take().unwrap_or_default()
    }

    /// A client connection ended at `end_ms`.
    pub fn connection_ended(&mut self, fleet: &str, r: ConnectionRecord, end_ms: u64) {
        if let Some(t) = self.trace.as_mut() {
            t.push(crate::driver::ClientTrace {
                fleet: fleet.to_owned(),
                record: r,
                end_ms,
            });
        }
        self.connection(fleet, r);
    }

    /// A client connection ended.
    pub fn connection(&mut self, fleet: &str, r: ConnectionRecord) {
        if let Some(i) = self.instances.as_mut() {
            i.connection(&r);
        }
        fleet_entry(&mut self.fleets, fleet).add(&r);
        self.overall.add(&r);
        if let Some(l) = r.latency_ms {
            fleet_entry(&mut self.fleet_minutes, fleet)
                .entry(minute(r.start_ms))
                .or_default()
                .add(l);
        }
        let m = self.minutes.entry(minute(r.start_ms)).or_default();
        m.connections += 1;
        m.handshakes += u64::from(r.latency_ms.is_some());
        m.resumptions += u64::from(r.resumed);
        m.failures += u64::from(r.failure.is_some());
    }

    /// A sample of the balancer's stick-table counters.
    pub fn table_sample(&mut self, now_ms: u64, totals: TableTotals) {
        self.peak_table_entries = self.peak_table_entries.max(totals.entries);
        self.table.insert(now_ms, totals);
    }

    /// Notes the table size seen between samples (the peak goes in the report).
    pub fn table_entries_seen(&mut self, entries: u64) {
        self.peak_table_entries = self.peak_table_entries.max(entries);
    }

    /// The balancer's affinity outcomes at the end of the run.
    pub fn set_affinity(&mut self, counts: AffinityCounts) {
        self.affinity = Some(counts);
    }

    /// The balancer's affinity outcomes, when it reported any.
    pub fn affinity(&self) -> Option<&AffinityCounts> {
        self.affinity.as_ref()
    }

    /// Largest stick-table occupancy observed.
    pub fn peak_table_entries(&self) -> u64 {
        self.peak_table_entries
    }

    /// An event was applied.
    pub fn event(&mut self, now_ms: u64, description: String) {
        self.events.push((now_ms, description));
    }

    /// Per-fleet statistics.
    pub fn fleet_stats(&self) -> BTreeMap<String, FleetStats> {
        self.fleets
            .iter()
            .map(|(k, v)| (k.clone(), v.stats()))
            .collect()
    }

    /// Statistics over all fleets.
    pub fn overall_stats(&self) -> FleetStats {
        self.overall.stats()
    }

    /// Per-server statistics with shares.
    pub fn server_stats(&self) -> BTreeMap<String, ServerStats> {
        let total: u64 = self.servers.values().map(|s| s.connections).sum();
        self.servers
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    ServerStats {
                        connections: s.connections,
                        full_handshakes: s.full,
                        resumed_handshakes: s.resumed,
                        peak_concurrency: s.peak,
                        share: ratio(s.connections, total),
                    },
                )
            })
            .collect()
    }

    /// Per-minute tallies.
    pub fn minutes(&self) -> &BTreeMap<u64, MinuteTally> {
        &self.minutes
    }

    /// Stick-table samples (ms → counters).
    pub fn table_samples(&self) -> &BTreeMap<u64, TableTotals> {
        &self.table
    }

    /// Starts counting per balancer instance (runs with several).
    pub fn track_instances(&mut self, metrics: crate::instance_metrics::InstanceMetrics) {
        self.instances = Some(metrics);
    }

    /// The per-instance figures, when tracked.
    pub fn instances(&self) -> Option<&crate::instance_metrics::InstanceMetrics> {
        self.instances.as_ref()
    }

    /// The per-instance figures, to add samples to.
    pub fn instances_mut(&mut self) -> Option<&mut crate::instance_metrics::InstanceMetrics> {
        self.instances.as_mut()
    }

    /// Applied events (ms, description), in order.
    pub fn events(&self) -> &[(u64, String)] {
        &self.events
    }
}

/// One connection's affinity outcome, as the balancer logged it.
#[derive(Clone, Debug)]
pub struct OutcomeEvent {
    /// What affinity did for the connection.
    pub outcome: AffinityOutcome,
    /// A key was looked up in the table (hit, unknown or expired), i.e. affinity could apply.
    pub keyed: bool,
    /// No server took the connection.
    pub nosrv: bool,
    /// Keys the table learned from this connection (request or response).
    pub keys_learned: u64,
}

/// Affinity outcomes of a set of connections: what the table did for them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OutcomeTally {
    /// Connections per outcome; written as labels (`hit`, `no-key:<why>`...) sorted by label.
    #[serde(serialize_with = "by_label")]
    pub outcomes: BTreeMap<AffinityOutcome, u64>,
    /// Connections that presented a key the table looked up (hit, unknown or expired).
    pub keyed_lookups: u64,
    /// Connections the stored server took (`hit`).
    pub hits: u64,
    /// hits / keyed lookups: how often affinity held when it could.
    pub affinity_rate: f64,
    /// Connections no server took (`<NOSRV>`).
    pub nosrv: u64,
    /// Keys stored from these connections (from the request or the server's answer).
    pub keys_learned: u64,
}

impl OutcomeTally {
    /// Adds another set of connections' outcomes (another balancer instance's).
    pub fn merge(&mut self, other: &OutcomeTally) {
        for (o, n) in &other.outcomes {
            *self.outcomes.entry(*o).or_default() += n;
        }
        self.keyed_lookups += other.keyed_lookups;
        self.hits += other.hits;
        self.nosrv += other.nosrv;
        self.keys_learned += other.keys_learned;
        self.affinity_rate = ratio(self.hits, self.keyed_lookups);
    }

    fn add(&mut self, e: &OutcomeEvent) {
        *self.outcomes.entry(e.outcome).or_default() += 1;
        self.keyed_lookups += u64::from(e.keyed);
        self.hits += u64::from(e.outcome == AffinityOutcome::Hit);
        self.nosrv += u64::from(e.nosrv);
        self.keys_learned += e.keys_learned;
        self.affinity_rate = ratio(self.hits, self.keyed_lookups);
    }

    /// All connections counted.
    pub fn connections(&self) -> u64 {
        self.outcomes.values().sum()
    }

    /// The count of one outcome (0 if it never happened).
    pub fn count(&self, outcome: AffinityOutcome) -> u64 {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }

    /// Counts by label, in label order: how reports print them.
    pub fn labelled(&self) -> BTreeMap<String, u64> {
        self.outcomes.iter().map(|(o, n)| (o.label(), *n)).collect()
    }
}

/// Writes outcome counts as a map from label to count, in label order (the report's format).
fn by_label<S: Serializer>(
    outcomes: &BTreeMap<AffinityOutcome, u64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let labelled: BTreeMap<String, u64> = outcomes.iter().map(|(o, n)| (o.label(), *n)).collect();
    labelled.serialize(s)
}

/// The balancer's affinity outcomes: overall, per fleet (by index) and per simulated minute.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AffinityCounts {
    /// All connections.
    pub overall: OutcomeTally,
    /// Per fleet index (connections whose address maps to no fleet count only overall).
    pub fleets: BTreeMap<usize, OutcomeTally>,
    /// Per minute of acceptance.
    pub minutes: BTreeMap<u64, OutcomeTally>,
    /// Per backend that took the connection (refused connections are not in any).
    pub backends: BTreeMap<String, OutcomeTally>,
    /// Connections a route rule refused.
    pub refused: u64,
}

impl AffinityCounts {
    /// Counts one connection.
    pub fn add(&mut self, fleet: Option<usize>, minute: u64, e: &OutcomeEvent) {
        self.overall.add(e);
        if let Some(f) = fleet {
            self.fleets.entry(f).or_default().add(e);
        }
        self.minutes.entry(minute).or_default().add(e);
    }

    /// Total count of one outcome.
    pub fn count(&self, outcome: AffinityOutcome) -> u64 {
        self.overall.count(outcome)
    }

    /// Counts a connection a backend took.
    pub fn add_backend(&mut self, backend: &str, e: &OutcomeEvent) {
        match self.backends.get_mut(backend) {
            Some(t) => t.add(e),
            None => {
                let mut t = OutcomeTally::default();
                t.add(e);
                self.backends.insert(backend.to_owned(), t);
            }
        }
    }

    /// Adds another balancer instance's counts.
    pub fn merge(&mut self, other: &AffinityCounts) {
        self.overall.merge(&other.overall);
        for (f, t) in &other.fleets {
            self.fleets.entry(*f).or_default().merge(t);
        }
        for (m, t) in &other.minutes {
            self.minutes.entry(*m).or_default().merge(t);
        }
        for (b, t) in &other.backends {
            self.backends.entry(b.clone()).or_default().merge(t);
        }
        self.refused += other.refused;
    }
}

/// Stick-table totals over the run (summed over the backend's tables, across restarts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TableTotals {
    /// Configured size (entries).
    pub capacity: u64,
    /// Entries held now.
    pub entries: u64,
    /// Entries created.
    pub inserted: u64,
    /// Entries moved to another server.
    pub updated: u64,
    /// Entries refreshed in place.
    pub refreshed: u64,
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing usable.
    pub misses: u64,
    /// Live entries evicted to make room (LRU): each is affinity lost early.
    pub evicted: u64,
    /// Entries removed after their expiry.
    pub expired: u64,
    /// Stores refused (full table with nopurge).
    pub refused: u64,
    /// Entries lost with the tables in balancer restarts.
    pub lost_in_restarts: u64,
}

impl TableTotals {
    /// Both sets of tables together (two balancer instances).
    pub fn plus(&self, o: &TableTotals) -> TableTotals {
        TableTotals {
            capacity: self.capacity + o.capacity,
            entries: self.entries + o.entries,
            inserted: self.inserted + o.inserted,
            updated: self.updated + o.updated,
            refreshed: self.refreshed + o.refreshed,
            hits: self.hits + o.hits,
            misses: self.misses + o.misses,
            evicted: self.evicted + o.evicted,
            expired: self.expired + o.expired,
            refused: self.refused + o.refused,
            lost_in_restarts: self.lost_in_restarts + o.lost_in_restarts,
        }
    }
}

/// Load spread over servers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Imbalance {
    /// Busiest server's connections over the mean (1.0 = perfectly even).
    pub max_over_mean: f64,
    /// Standard deviation over mean of per-server connections.
    pub coefficient_of_variation: f64,
}

impl Imbalance {
    /// Computes the spread of `loads`.
    pub fn of(loads: &[u64]) -> Self {
        if loads.is_empty() {
            return Imbalance::default();
        }
        let n = loads.len() as f64;
        let mean = loads.iter().sum::<u64>() as f64 / n;
        if mean == 0.0 {
            return Imbalance::default();
        }
        let max = loads.iter().copied().max().unwrap_or(0) as f64;
        let var = loads
            .iter()
            .map(|&l| (l as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        Imbalance {
            max_over_mean: round4(max / mean),
            coefficient_of_variation: round4(var.sqrt() / mean),
        }
    }
}

/// `a / b` rounded to 4 decimals, 0 when `b` is 0 (keeps NaN out of the JSON).
pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        round4(a as f64 / b as f64)
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Handshake latencies (whole milliseconds) as a count per value: the same nearest-rank
/// percentiles as the sorted list of every sample, in memory bounded by the distinct values
/// seen (at most the I/O timeout in ms), not by the number of connections in a day-long run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latencies {
    counts: BTreeMap<u64, u64>,
}

impl Latencies {
    /// One more sample.
    pub fn add(&mut self, ms: u64) {
        *self.counts.entry(ms).or_default() += 1;
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        for (&ms, &n) in &other.counts {
            *self.counts.entry(ms).or_default() += n;
        }
    }

    /// Samples held.
    pub fn len(&self) -> u64 {
        self.counts.values().sum()
    }

    /// No samples.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The nearest-rank percentile `p` (0 when empty), as [`percentile`] of the sorted samples.
    pub fn percentile(&self, p: u64) -> u64 {
        let total = self.len();
        if total == 0 {
            return 0;
        }
        let rank = (p * total).div_ceil(100).clamp(1, total);
        let mut seen = 0;
        for (&ms, &n) in &self.counts {
            seen += n;
            if seen >= rank {
                return ms;
            }
        }
        0
    }
}

/// Nearest-rank percentile of sorted values; 0 when empty.
pub fn percentile(sorted: &[u64], p: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p as usize * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn imbalance_of_even_and_skewed_loads() {
        assert_eq!(Imbalance::of(&[10, 10, 10, 10]).max_over_mean, 1.0);
        assert_eq!(
            Imbalance::of(&[10, 10, 10, 10]).coefficient_of_variation,
            0.0
        );
        let skew = Imbalance::of(&[40, 0, 0, 0]);
        assert_eq!(skew.max_over_mean, 4.0);
        assert!(skew.coefficient_of_variation > 1.7);
        assert_eq!(Imbalance::of(&[]), Imbalance::default());
    }

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 50), 0);
    }

    #[test]
    fn failures_are_counted_by_phase() {
        let mut r = Recorder::default();
        let base = ConnectionRecord {
            start_ms: 0,
            attempted: true,
            resumed: false,
            latency_ms: None,
            failure: Some(Failure::Connect),
            instance: 0,
        };
        r.connection("f", base);
        r.connection(
            "f",
            ConnectionRecord {
                failure: Some(Failure::InFlight),
                latency_ms: Some(5),
                ..base
            },
        );
        let s = &r.fleet_stats()["f"];
        assert_eq!((s.client_visible_failures, s.aborted_in_flight), (1, 1));
        assert_eq!(s.handshakes, 1);
    }

    #[test]
    fn outcomes_are_counted_by_enum_and_written_by_label() {
        use tether_core::affinity::NoKeyReason;
        let mut counts = AffinityCounts::default();
        let event = |outcome| OutcomeEvent {
            outcome,
            keyed: outcome != AffinityOutcome::NoKey(NoKeyReason::NotTls),
            nosrv: false,
            keys_learned: 0,
        };
        for o in [
            AffinityOutcome::Redispatched,
            AffinityOutcome::NoKey(NoKeyReason::NotTls),
            AffinityOutcome::Hit,
            AffinityOutcome::Learned,
            AffinityOutcome::Hit,
            AffinityOutcome::MissUnknown,
        ] {
            counts.add(Some(0), 0, &event(o));
        }
        let t = &counts.overall;
        assert_eq!((t.hits, t.keyed_lookups, t.connections()), (2, 5, 6));
        assert_eq!(t.affinity_rate, 0.4);
        assert_eq!(counts.count(AffinityOutcome::Hit), 2);
        assert_eq!(counts.count(AffinityOutcome::MissExpired), 0);
        // Label order, not declaration order: the report's bytes depend on it.
        let labels =
            r#"{"hit":2,"learned":1,"miss-unknown":1,"no-key:not-tls":1,"redispatched":1}"#;
        let json = serde_json::to_string(t).unwrap();
        assert!(
            json.starts_with(&format!(r#"{{"outcomes":{labels},"#)),
            "{json}"
        );
        assert_eq!(serde_json::to_string(&t.labelled()).unwrap(), labels);
    }

    proptest! {
        #[test]
        fn counted_latencies_give_the_sorted_lists_percentiles(
            v in proptest::collection::vec(0u64..300, 0..200),
            p in 0u64..=100,
        ) {
            let mut counted = Latencies::default();
            let (a, b) = v.split_at(v.len() / 2);
            let mut half = Latencies::default();
            a.iter().for_each(|&x| counted.add(x));
            b.iter().for_each(|&x| half.add(x));
            counted.merge(&half);
            let mut sorted = v.clone();
            sorted.sort_unstable();
            prop_assert_eq!(counted.len(), v.len() as u64);
            prop_assert_eq!(counted.percentile(p), percentile(&sorted, p));
        }

        #[test]
        fn percentile_is_a_member_and_monotonic(mut v in proptest::collection::vec(0u64..1000, 1..50)) {
            v.sort_unstable();
            let p50 = percentile(&v, 50);
            let p99 = percentile(&v, 99);
            prop_assert!(v.contains(&p50) && p50 <= p99);
        }
    }
}
