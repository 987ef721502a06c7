//! The scenario file (TOML): servers, balancer, client fleets, timed events, duration, seed.
//!
//! A scenario describes one deployment and one stretch of its life, so that `tether sim` can
//! predict what affinity and load look like before anything is deployed. Unknown keys are
//! errors (a typo must not silently fall back to a default). Durations are written with their
//! unit, as "300s", "60m", "250ms", "1h" or "1d" (whole numbers, read by the core's one duration
//! parser); a bare number is refused with an error that says to add the unit.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tether_core::config::parse_duration_with_unit;

use crate::events::EventSpec;
use crate::fleet::FleetSpec;

/// The deployment described in the user's question, embedded so that `tether sim` alone runs.
pub const DEFAULT_SCENARIO: &str = include_str!("../scenarios/default.toml");

/// One simulated deployment and the workload it sees.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name used in reports and plot titles.
    pub name: String,
    /// What the scenario is meant to show.
    #[serde(default)]
    pub description: String,
    /// Simulated time during which clients start visits; in-flight connections then finish.
    pub duration: SimDuration,
    /// Seed used when the caller does not give one.
    #[serde(default)]
    pub seed: Option<u64>,
    /// The TLS servers behind the balancer.
    pub servers: ServersSpec,
    /// The balancer in front of them.
    pub balancer: BalancerSpec,
    /// The network between hosts.
    #[serde(default)]
    pub network: NetworkSpec,
    /// Client populations.
    pub fleets: Vec<FleetSpec>,
    /// Faults and operations at fixed simulated times.
    #[serde(default)]
    pub events: Vec<EventSpec>,
    /// What the run must show (`tether sim` exits non-zero when one fails).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<crate::expect::Expectation>,
}

impl Scenario {
    /// Parses a scenario from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The embedded default scenario.
    pub fn default_scenario() -> Self {
        // The embedded file is checked by a unit test; a broken build would fail that test.
        Self::from_toml(DEFAULT_SCENARIO).unwrap_or_else(|e| panic!("embedded default.toml: {e}"))
    }
}

/// How the TLS servers keep sessions, which decides where a resumption can succeed.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServersSpec {
    /// Number of servers at start.
    pub count: usize,
    /// Session cache capacity per server (entries, LRU beyond it).
    #[serde(default = "default_session_cache")]
    pub session_cache: usize,
    /// Session cache timeout (OpenSSL and HAProxy default to 300 s), counted from creation.
    #[serde(default = "default_session_timeout")]
    pub session_timeout: SimDuration,
    /// Who can decrypt a ticket: none (TLS 1.2 tickets off), per-server keys, or shared keys.
    #[serde(default)]
    pub ticket_keys: TicketKeys,
    /// TLS 1.3 tickets sent after each handshake (OpenSSL and rustls send 2).
    #[serde(default = "default_tls13_tickets")]
    pub tls13_tickets: u8,
    /// Lifetime of tickets (TLS 1.2 and 1.3), announced and enforced.
    #[serde(default = "default_ticket_lifetime")]
    pub ticket_lifetime: SimDuration,
    /// Tickets start with their key's 16-byte name (RFC 5077 §4, as OpenSSL and BoringSSL
    /// write them). Off: every ticket starts differently, as Go ≥ 1.21's do.
    #[serde(default)]
    pub ticket_names: bool,
    /// A new ticket key every this long (named tickets only); the previous key still opens
    /// tickets, as OpenSSL and Go keep old keys for decryption.
    #[serde(default)]
    pub ticket_key_rotation: Option<SimDuration>,
    /// The servers' TLS library, for the TLS 1.2 ticket behaviours in which OpenSSL (the
    /// default) and rustls differ; each changes which keys the balancer learns, so the stick
    /// table's size, but not where a client resumes.
    #[serde(default)]
    pub tls_stack: TlsStack,
    /// CPU cost of handshakes and cores per server (none: handshakes cost no CPU, as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::cost::CostSpec>,
}

fn default_session_cache() -> usize {
    20_480
}
fn default_session_timeout() -> SimDuration {
    SimDuration(Duration::from_secs(300))
}
fn default_tls13_tickets() -> u8 {
    2
}
fn default_ticket_lifetime() -> SimDuration {
    SimDuration(Duration::from_secs(7200))
}

/// Ticket key distribution across the servers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TicketKeys {
    /// No TLS 1.2 tickets; TLS 1.3 tickets are stateful (they name a cache entry).
    None,
    /// Each server has its own key, regenerated at restart (OpenSSL's default).
    #[default]
    PerServer,
    /// All servers share one key that survives restarts (a key file).
    Shared,
}

/// A server TLS library's TLS 1.2 ticket behaviour, read in its source and seen on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsStack {
    /// OpenSSL: a full handshake that issues a ticket sends an empty session ID, and a
    /// resumption by ticket keeps the ticket presented.
    #[default]
    Openssl,
    /// rustls: a full handshake sends a new session ID beside the new ticket (unless the
    /// client presented a ticket it could not open), and every resumption by ticket is given a
    /// new ticket — two keys learned per connection.
    Rustls,
}

impl TlsStack {
    /// A TLS 1.2 resumption by ticket is given a new ticket.
    pub fn renews_tickets(self) -> bool {
        self == TlsStack::Rustls
    }

    /// A full handshake that issues a ticket also sends a session ID (and caches it), when
    /// the client offered no ticket or an empty one.
    pub fn sends_id_with_ticket(self, offered: &[u8]) -> bool {
        self == TlsStack::Rustls && offered.is_empty()
    }
}

/// Which balancer runs on the balancer host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BalancerKind {
    /// tether's engine, configured by `config` or `haproxy` (wired in by the engine integration).
    #[default]
    Engine,
    /// A trivial round-robin TCP relay without affinity: the baseline.
    Relay,
    /// No balancer: every client connects straight to the first server.
    Direct,
}

/// The balancer and its configuration, kept opaque here: the engine integration maps it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BalancerSpec {
    /// Which balancer to run.
    #[serde(default)]
    pub kind: BalancerKind,
    /// An inline tether native configuration.
    #[serde(default)]
    pub config: Option<toml::Value>,
    /// A path to a haproxy.cfg to import instead.
    #[serde(default)]
    pub haproxy: Option<String>,
    /// Connect timeout used by the relay balancer (the engine takes its own from `config`).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: SimDuration,
    /// Balancer instances side by side, each its own host and its own tables (default 1).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub instances: usize,
    /// How clients reach the instances when there are several.
    #[serde(default, skip_serializing_if = "is_default")]
    pub spread: crate::frontdoor::Spread,
    /// Stick-table replication between the instances (peers); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationSpec>,
}

/// Stick-table replication between balancer instances, over the peers protocol.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationSpec {
    /// Replicate (`false` keeps the section but runs the instances apart).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// One-way latency of the links between instances.
    #[serde(default = "default_server_latency")]
    pub latency: SimDuration,
}

fn one() -> usize {
    1
}
fn is_one(n: &usize) -> bool {
    *n == 1
}
fn yes() -> bool {
    true
}
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn default_connect_timeout() -> SimDuration {
    SimDuration(Duration::from_secs(1))
}

/// Link latencies between the simulated hosts.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// One-way latency between clients and the balancer.
    #[serde(default = "default_client_latency")]
    pub client_latency: SimDuration,
    /// One-way latency between the balancer and the servers.
    #[serde(default = "default_server_latency")]
    pub server_latency: SimDuration,
    /// turmoil's step: the granularity of simulated time (coarser is faster).
    #[serde(default = "default_tick")]
    pub tick: SimDuration,
}

fn default_tick() -> SimDuration {
    SimDuration(Duration::from_millis(1))
}

fn default_client_latency() -> SimDuration {
    SimDuration(Duration::from_millis(20))
}
fn default_server_latency() -> SimDuration {
    SimDuration(Duration::from_millis(1))
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            client_latency: default_client_latency(),
            server_latency: default_server_latency(),
            tick: default_tick(),
        }
    }
}

/// A duration written the way operators write them ("300s", "60m"); serialised the same way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct SimDuration(pub Duration);

impl SimDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Parses "250ms", "10s", "5m", "2h" or "1d"; a bare number or a fraction is an error that
    /// says what to write instead.
    pub fn parse(text: &str) -> Result<Self, String> {
        parse_duration_with_unit(text)
            .map(SimDuration)
            .map_err(|e| e.to_string())
    }
}

impl fmt::Display for SimDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 != 0 {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl Serialize for SimDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for SimDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Numbers are read as their text, so `300` gets the same "write the unit" error as
        // "300" instead of serde's "expected a string".
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Int(n) => n.to_string(),
            Raw::Float(x) => x.to_string(),
            Raw::Text(t) => t,
        };
        SimDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(
            SimDuration::parse("300s").unwrap().get(),
            Duration::from_secs(300)
        );
        assert_eq!(
            SimDuration::parse("60m").unwrap().get(),
            Duration::from_secs(3600)
        );
        assert_eq!(SimDuration::parse("250ms").unwrap().to_string(), "250ms");
        assert_eq!(SimDuration::parse("1d").unwrap().to_string(), "86400s");
        assert!(SimDuration::parse("5 parsecs").is_err());
        assert!(SimDuration::parse("").is_err());
        let bare = SimDuration::parse("300").unwrap_err();
        assert!(bare.contains("has no unit"), "{bare}");
        let fraction = SimDuration::parse("1.5s").unwrap_err();
        assert!(fraction.contains("1500ms"), "{fraction}");
    }

    #[test]
    fn a_bare_number_in_a_scenario_file_asks_for_the_unit() {
        for (value, expect) in [("300", "has no unit"), ("1.5", "1500ms")] {
            let text =
                DEFAULT_SCENARIO.replace("duration = \"10m\"", &format!("duration = {value}"));
            assert_ne!(text, DEFAULT_SCENARIO);
            let err = Scenario::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(expect), "{value}: {err}");
        }
    }

    #[test]
    fn embedded_default_parses() {
        let s = Scenario::default_scenario();
        assert_eq!(s.servers.count, 4);
        assert_eq!(s.balancer.kind, BalancerKind::Engine);
        assert!(s.fleets.len() >= 2);
        assert!(!s.events.is_empty());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = DEFAULT_SCENARIO.replace("[servers]", "[servers]\ncuont = 3");
        assert!(Scenario::from_toml(&text).is_err());
    }

    #[test]
    fn example_scenarios_parse() {
        for (name, text) in [
            (
                "tickets-shared",
                include_str!("../scenarios/tickets-shared.toml"),
            ),
            ("tls13-fleet", include_str!("../scenarios/tls13-fleet.toml")),
            ("maintenance", include_str!("../scenarios/maintenance.toml")),
            ("capacity", include_str!("../scenarios/capacity.toml")),
            (
                "day-peak-hour",
                include_str!("../scenarios/day-peak-hour.toml"),
            ),
            (
                "peak-with-failure",
                include_str!("../scenarios/peak-with-failure.toml"),
            ),
            (
                "multi-balancer",
                include_str!("../scenarios/multi-balancer.toml"),
            ),
            (
                "haproxy-seed",
                include_str!("../scenarios/haproxy-seed.toml"),
            ),
            ("sni-routing", include_str!("../scenarios/sni-routing.toml")),
        ] {
            Scenario::from_toml(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
