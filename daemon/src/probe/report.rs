//! The probe's findings as data: per connection, per chain, per mechanism, with a verdict. The
//! CLI renders it as a table or JSON; tests assert on it.

use serde::Serialize;
use tether_core::affinity::ticket_keys::KeyName;

use super::key_names::BackendKeyNames;

/// A resumption mechanism the probe exercises, each with its own chain of connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// TLS 1.2, tickets disabled on the client: resumption by session ID (what HAProxy's
    /// `payload_lv(43,1)` recipe sticks on).
    SessionId,
    /// TLS 1.2 with RFC 5077 tickets (falls back to the session ID if the server issues none).
    Ticket,
    /// TLS 1.3 PSK resumption with the server's tickets.
    Psk,
}

impl Mechanism {
    /// All mechanisms, in report order.
    pub const ALL: [Mechanism; 3] = [Mechanism::SessionId, Mechanism::Ticket, Mechanism::Psk];

    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::SessionId => "session-id",
            Mechanism::Ticket => "ticket",
            Mechanism::Psk => "psk",
        }
    }

    /// Whether this mechanism runs over TLS 1.3 (otherwise TLS 1.2).
    pub fn is_tls13(self) -> bool {
        self == Mechanism::Psk
    }
}

/// Which backend answered, as far as the client can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendIdentity {
    /// Hex SHA-256 of the leaf certificate. On a resumed handshake the server sends none; this is
    /// then the certificate of the session being resumed (only its issuer could resume it, unless
    /// backends share session keys).
    pub fingerprint: String,
    /// Subject CN, or the first 8 hex digits of the fingerprint.
    pub name: String,
    /// The first line the server sent after the handshake, if any.
    pub banner: Option<String>,
}

/// How the probe decides that two connections reached the same backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Identify {
    /// By certificate fingerprint (backends with distinct certificates).
    #[default]
    Certificate,
    /// By the first line the server sends (backends sharing one certificate but announcing
    /// themselves); falls back to the certificate when no line came.
    Banner,
}

impl BackendIdentity {
    /// The key compared across connections.
    pub fn key(&self, identify: Identify) -> &str {
        match (identify, &self.banner) {
            (Identify::Banner, Some(banner)) => banner,
            _ => &self.fingerprint,
        }
    }
}

/// How a successful handshake resumed, read from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResumedBy {
    /// TLS 1.2, the server echoed the offered session ID.
    SessionId,
    /// TLS 1.2, the server accepted the offered ticket.
    Ticket,
    /// TLS 1.3, the server accepted the offered PSK.
    Psk,
}

/// One connection of a chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionReport {
    /// 0 for the initial connection, then 1..=K for the reconnections.
    pub index: usize,
    /// Why the connection failed, if it did (then most fields are empty).
    pub error: Option<String>,
    /// "TLSv1.2" or "TLSv1.3".
    pub version: Option<String>,
    /// rustls reports an abbreviated (resumed) handshake.
    pub resumed: bool,
    /// Which mechanism the server resumed with.
    pub resumed_by: Option<ResumedBy>,
    /// The backend that answered.
    pub backend: Option<BackendIdentity>,
    /// A stored session was offered in the ClientHello.
    pub session_offered: bool,
    /// ClientHello session ID, hex, first 8 bytes ("" when empty).
    pub offered_session_id: Option<String>,
    /// ServerHello session ID, hex, first 8 bytes.
    pub server_session_id: Option<String>,
    /// TLS 1.2 ticket offered: first 8 bytes of its SHA-256, hex (tickets share a key-name prefix).
    pub offered_ticket: Option<String>,
    /// TLS 1.2 ticket issued by the server: first 8 bytes of its SHA-256, hex.
    pub issued_ticket: Option<String>,
    /// TLS 1.3 PSK identity offered: first 8 bytes of its SHA-256, hex.
    pub offered_psk: Option<String>,
    /// Key name (RFC 5077 `key_name`, the first 16 bytes) of the ticket or PSK offered.
    #[serde(serialize_with = "hex_name")]
    pub offered_key_name: Option<KeyName>,
    /// Key name of the TLS 1.2 ticket the server issued.
    #[serde(serialize_with = "hex_name")]
    pub issued_key_name: Option<KeyName>,
    /// Sessions or tickets the client stored from this connection.
    pub sessions_received: u32,
    /// Connect plus handshake, milliseconds.
    pub handshake_ms: f64,
}

impl ConnectionReport {
    /// A connection that failed before or during the handshake.
    pub fn failed(index: usize, error: String, handshake_ms: f64) -> Self {
        Self {
            index,
            error: Some(error),
            version: None,
            resumed: false,
            resumed_by: None,
            backend: None,
            session_offered: false,
            offered_session_id: None,
            server_session_id: None,
            offered_ticket: None,
            issued_ticket: None,
            offered_psk: None,
            offered_key_name: None,
            issued_key_name: None,
            sessions_received: 0,
            handshake_ms,
        }
    }
}

/// One client's initial connection and its chained reconnections.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainReport {
    /// Client number, from 1.
    pub client: usize,
    /// Initial connection first.
    pub connections: Vec<ConnectionReport>,
    /// Reconnections that reached the initial connection's backend.
    pub same_backend: usize,
    /// Reconnections that resumed.
    pub resumed: usize,
    /// Reconnections attempted (K).
    pub reconnections: usize,
    /// Distinct backends over the whole chain.
    pub distinct_backends: usize,
}

impl ChainReport {
    /// Tally a chain.
    pub fn new(client: usize, connections: Vec<ConnectionReport>, identify: Identify) -> Self {
        let key = |c: &ConnectionReport| c.backend.as_ref().map(|b| b.key(identify).to_string());
        let first = connections.first().and_then(key);
        let reconnections = connections.len().saturating_sub(1);
        let later = connections.iter().skip(1);
        let same_backend = later
            .clone()
            .filter(|c| first.is_some() && key(c) == first)
            .count();
        let resumed = later.filter(|c| c.resumed).count();
        let mut backends: Vec<String> = connections.iter().filter_map(key).collect();
        backends.sort();
        backends.dedup();
        Self {
            client,
            connections,
            same_backend,
            resumed,
            reconnections,
            distinct_backends: backends.len(),
        }
    }
}

/// The conclusion for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Verdict {
    /// Every reconnection reached its chain's first backend and resumed.
    StickyAndResuming,
    /// Some reconnection reached another backend.
    NotSticky {
        /// Most distinct backends seen by one chain.
        backends: usize,
        /// Reconnections (all chains).
        reconnections: usize,
    },
    /// Every reconnection reached the same backend, but not all resumed.
    StickyNotResuming {
        /// Reconnections that resumed.
        resumed: usize,
        /// Reconnections (all chains).
        reconnections: usize,
        /// The likeliest reason, from what was offered and issued.
        reason: String,
    },
    /// Connections failed, so nothing can be concluded.
    Unreachable {
        /// Failed connections.
        failed: usize,
        /// Connections attempted.
        attempted: usize,
        /// The first error.
        first_error: String,
    },
}

impl Verdict {
    /// Whether this is the outcome session affinity is supposed to give.
    pub fn is_sticky_and_resuming(&self) -> bool {
        matches!(self, Verdict::StickyAndResuming)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::StickyAndResuming => write!(f, "sticky and resuming"),
            Verdict::NotSticky {
                backends,
                reconnections,
            } => write!(
                f,
                "not sticky: {backends} backends in {reconnections} reconnections"
            ),
            Verdict::StickyNotResuming {
                resumed,
                reconnections,
                reason,
            } => write!(
                f,
                "sticky but not resuming: {resumed}/{reconnections} resumed ({reason})"
            ),
            Verdict::Unreachable {
                failed,
                attempted,
                first_error,
            } => write!(
                f,
                "unreachable: {failed}/{attempted} connections failed ({first_error})"
            ),
        }
    }
}

/// All chains of one mechanism and what they add up to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MechanismReport {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// One chain per client.
    pub chains: Vec<ChainReport>,
    /// Reconnections that reached their chain's first backend (all chains).
    pub same_backend: usize,
    /// Reconnections that resumed (all chains).
    pub resumed: usize,
    /// Reconnections (all chains).
    pub reconnections: usize,
    /// Distinct backends that answered the clients' initial connections: the spread.
    pub initial_backends: usize,
    /// The conclusion.
    pub verdict: Verdict,
}

impl MechanismReport {
    /// Sum the chains and decide.
    pub fn new(mechanism: Mechanism, chains: Vec<ChainReport>, identify: Identify) -> Self {
        let same_backend = chains.iter().map(|c| c.same_backend).sum();
        let resumed = chains.iter().map(|c| c.resumed).sum();
        let reconnections = chains.iter().map(|c| c.reconnections).sum();
        let mut initial: Vec<&str> = chains
            .iter()
            .filter_map(|c| c.connections.first()?.backend.as_ref())
            .map(|b| b.key(identify))
            .collect();
        initial.sort_unstable();
        initial.dedup();
        let verdict = verdict(mechanism, &chains, same_backend, resumed, reconnections);
        Self {
            mechanism,
            initial_backends: initial.len(),
            chains,
            same_backend,
            resumed,
            reconnections,
            verdict,
        }
    }
}

fn verdict(
    mechanism: Mechanism,
    chains: &[ChainReport],
    same_backend: usize,
    resumed: usize,
    reconnections: usize,
) -> Verdict {
    let all = || chains.iter().flat_map(|c| &c.connections);
    let attempted = all().count();
    let failed = all().filter(|c| c.error.is_some()).count();
    if failed > 0 {
        let first_error = all().find_map(|c| c.error.clone()).unwrap_or_default();
        // Failures on some reconnections are instability, not affinity: report them as such.
        return Verdict::Unreachable {
            failed,
            attempted,
            first_error,
        };
    }
    if same_backend < reconnections {
        let backends = chains
            .iter()
            .map(|c| c.distinct_backends)
            .max()
            .unwrap_or(0);
        return Verdict::NotSticky {
            backends,
            reconnections,
        };
    }
    if resumed < reconnections {
        return Verdict::StickyNotResuming {
            resumed,
            reconnections,
            reason: not_resuming_reason(mechanism, chains),
        };
    }
    Verdict::StickyAndResuming
}

fn not_resuming_reason(mechanism: Mechanism, chains: &[ChainReport]) -> String {
    let all = || chains.iter().flat_map(|c| &c.connections);
    if all().all(|c| c.sessions_received == 0) {
        return match mechanism {
            Mechanism::SessionId => {
                "the server issued no session ID: session cache disabled?".into()
            }
            Mechanism::Ticket => "the server issued neither ticket nor session ID".into(),
            Mechanism::Psk => "the server sent no TLS 1.3 ticket".into(),
        };
    }
    let offered_not_taken = all()
        .skip(1)
        .filter(|c| c.session_offered && !c.resumed)
        .count();
    if offered_not_taken > 0 {
        return format!(
            "{offered_not_taken} offered sessions were refused: expired, evicted, or keys rotated"
        );
    }
    "no session was offered on some reconnections".into()
}

/// Key names as the log and stats page show them: hex, never the ticket.
fn hex_name<S: serde::Serializer>(name: &Option<KeyName>, s: S) -> Result<S::Ok, S::Error> {
    match name {
        Some(n) => s.serialize_some(&n.hex()),
        None => s.serialize_none(),
    }
}

/// Everything `tether probe` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    /// The address probed, as given.
    pub target: String,
    /// The resolved address connected to.
    pub address: String,
    /// The SNI sent, if any.
    pub sni: Option<String>,
    /// Reconnections per chain (K).
    pub reconnections: usize,
    /// Independent clients (chains) per mechanism.
    pub clients: usize,
    /// How backends were told apart.
    pub identify: Identify,
    /// One entry per mechanism probed.
    pub mechanisms: Vec<MechanismReport>,
    /// Per backend that issued tickets: whether their key names let `ticket-key` learn it.
    pub ticket_keys: Vec<BackendKeyNames>,
}

impl ProbeReport {
    /// Every probed mechanism was sticky and resuming: what `--expect sticky` demands.
    pub fn is_sticky(&self) -> bool {
        !self.mechanisms.is_empty()
            && self
                .mechanisms
                .iter()
                .all(|m| m.verdict.is_sticky_and_resuming())
    }

    /// The report for one mechanism.
    pub fn mechanism(&self, mechanism: Mechanism) -> Option<&MechanismReport> {
        self.mechanisms.iter().find(|m| m.mechanism == mechanism)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn conn(index: usize, backend: &str, resumed: bool) -> ConnectionReport {
        ConnectionReport {
            index,
            error: None,
            version: Some("TLSv1.2".into()),
            resumed,
            resumed_by: resumed.then_some(ResumedBy::SessionId),
            backend: Some(BackendIdentity {
                fingerprint: backend.into(),
                name: backend.into(),
                banner: None,
            }),
            session_offered: index > 0,
            offered_session_id: None,
            server_session_id: None,
            offered_ticket: None,
            issued_ticket: None,
            offered_psk: None,
            offered_key_name: None,
            issued_key_name: None,
            sessions_received: 1,
            handshake_ms: 1.0,
        }
    }

    fn mechanism(plan: &[(&str, bool)]) -> MechanismReport {
        let conns = plan
            .iter()
            .enumerate()
            .map(|(i, (b, r))| conn(i, b, *r))
            .collect();
        let chain = ChainReport::new(1, conns, Identify::Certificate);
        MechanismReport::new(Mechanism::SessionId, vec![chain], Identify::Certificate)
    }

    #[test]
    fn all_same_and_resumed_is_sticky() {
        let m = mechanism(&[("a", false), ("a", true), ("a", true)]);
        assert_eq!(m.verdict, Verdict::StickyAndResuming);
        assert_eq!(m.verdict.to_string(), "sticky and resuming");
    }

    #[test]
    fn alternating_backends_is_not_sticky() {
        let m = mechanism(&[("a", false), ("b", false), ("a", true), ("b", false)]);
        assert_eq!(
            m.verdict.to_string(),
            "not sticky: 2 backends in 3 reconnections"
        );
        assert_eq!((m.same_backend, m.resumed), (1, 1));
    }

    #[test]
    fn same_backend_without_resumption_says_why() {
        let m = mechanism(&[("a", false), ("a", false), ("a", false)]);
        let Verdict::StickyNotResuming { reason, .. } = &m.verdict else {
            panic!("{:?}", m.verdict)
        };
        assert!(reason.contains("refused"), "{reason}");
    }

    #[test]
    fn a_failed_connection_is_unreachable_not_sticky() {
        let mut m = mechanism(&[("a", false), ("a", true)]);
        m.chains[0].connections[1] = ConnectionReport::failed(1, "refused".into(), 0.0);
        let chain = ChainReport::new(1, m.chains[0].connections.clone(), Identify::Certificate);
        let m = MechanismReport::new(Mechanism::SessionId, vec![chain], Identify::Certificate);
        assert!(matches!(m.verdict, Verdict::Unreachable { failed: 1, .. }));
    }

    #[test]
    fn banner_identity_falls_back_to_the_certificate() {
        let mut b = BackendIdentity {
            fingerprint: "f".into(),
            name: "n".into(),
            banner: None,
        };
        assert_eq!(b.key(Identify::Banner), "f");
        b.banner = Some("node1".into());
        assert_eq!(b.key(Identify::Banner), "node1");
        assert_eq!(b.key(Identify::Certificate), "f");
    }

    proptest! {
        #[test]
        fn verdict_is_sticky_exactly_when_every_reconnection_stayed_and_resumed(
            plan in proptest::collection::vec((0u8..3, any::<bool>()), 1..8)
        ) {
            let names = ["a", "b", "c"];
            let plan: Vec<(&str, bool)> =
                plan.iter().map(|(b, r)| (names[usize::from(*b)], *r)).collect();
            let m = mechanism(&plan);
            let first = plan[0].0;
            let stayed = plan.iter().skip(1).all(|(b, _)| *b == first);
            let resumed = plan.iter().skip(1).all(|(_, r)| *r);
            prop_assert_eq!(m.verdict.is_sticky_and_resuming(), stayed && resumed);
            prop_assert!(m.same_backend <= m.reconnections && m.resumed <= m.reconnections);
            prop_assert_eq!(m.reconnections, plan.len() - 1);
            prop_assert_eq!(matches!(m.verdict, Verdict::NotSticky { .. }), !stayed);
        }
    }
}
