//! Affinity: which key sends a client back to the server that holds its TLS session, and what
//! happened to every connection's affinity.
//!
//! Two ways of expressing it exist side by side:
//! - [`chain`]: tether's native, ordered chain of keys per backend (`session-id`, `ticket`, `psk`,
//!   `source`, `sni`) that matches on the ClientHello and learns from the server's own messages.
//! - [`rules`]: HAProxy's `stick on / match / store-request / store-response` rules, evaluated with
//!   HAProxy 2.6's semantics (quirks included) so an imported haproxy.cfg behaves as it does there.
//!
//! Both produce a [`Decision`] for routing and feed the same outcome vocabulary,
//! [`AffinityOutcome`], which the logs, the stats page and the simulator count.

pub mod chain;
pub mod keys;
pub mod policy;
pub mod rules;
pub mod ticket_keys;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::stick::{Learn, Lookup};
use crate::{ServerId, Timestamp};

pub use chain::Chain;
pub use keys::HelloKeys;
pub use policy::{Affinity, HelloWants, ResponseStep};
pub use rules::Rules;

/// One key of a native affinity chain, in the order the operator wrote them.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AffinityKey {
    /// TLS <= 1.2 session ID: matched on the ClientHello, learned from the ServerHello.
    SessionId,
    /// TLS 1.2 session ticket (RFC 5077): learned from the cleartext NewSessionTicket, matched on
    /// the ClientHello's session_ticket extension (by SHA-256 of the ticket).
    Ticket,
    /// TLS 1.3 PSK identity: learned when the server accepts it, helps ticket-reusing clients.
    Psk,
    /// The client's address (or the one a PROXY header carried): consistent hash, no table.
    Source,
    /// The requested server name: consistent hash, routes a name to a server, not a client.
    Sni,
    /// The key name at the start of a TLS 1.3 PSK identity or TLS 1.2 ticket: learned per
    /// server from accepted resumptions ([`ticket_keys`]), so single-use tickets stick too.
    TicketKey,
    /// A key produced by an imported HAProxy stick rule.
    Rule,
}

impl AffinityKey {
    /// The name used in configs and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AffinityKey::SessionId => "session-id",
            AffinityKey::Ticket => "ticket",
            AffinityKey::Psk => "psk",
            AffinityKey::Source => "source",
            AffinityKey::Sni => "sni",
            AffinityKey::TicketKey => "ticket-key",
            AffinityKey::Rule => "rule",
        }
    }

    /// Keys that live in a stick table (the others are hashed).
    pub fn uses_table(self) -> bool {
        matches!(
            self,
            AffinityKey::SessionId | AffinityKey::Ticket | AffinityKey::Psk | AffinityKey::Rule
        )
    }
}

impl fmt::Display for AffinityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a connection offered nothing to stick on. Every connection without a key says why, so an
/// operator can tell "TLS 1.3 clients" from "non-TLS traffic" from "slow clients".
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoKeyReason {
    /// The first byte was not a TLS handshake record.
    NotTls,
    /// An SSLv2-compatible ClientHello: no session semantics worth using.
    Sslv2,
    /// The inspect delay ran out before a complete ClientHello arrived.
    InspectTimeout,
    /// The client closed (or errored) before a complete ClientHello arrived.
    ClientClosed,
    /// A required PROXY protocol header was missing or broken: the connection was refused.
    BadProxyHeader,
    /// The ClientHello exceeded the inspect cap.
    TooLarge,
    /// The ClientHello was malformed.
    Malformed,
    /// A new TLS <= 1.2 session: the client sent an empty session ID.
    EmptySessionId,
    /// A TLS 1.3 client's random `legacy_session_id`: it never identifies a session.
    Tls13RandomId,
    /// No session ticket was presented (absent, or empty = "please issue one").
    NoTicket,
    /// No TLS 1.3 PSK identity was presented.
    NoPsk,
    /// No server name was sent.
    NoSni,
    /// The sticking rules fetched no key (HAProxy: sample not found or condition false).
    NoSample,
    /// The chain is empty: the backend does not use affinity.
    NoAffinity,
    /// The ticket's key name is shared by several servers: any of them resumes it.
    TicketKeyShared,
    /// The ticket most likely comes from a server whose tickets carry no stable key name.
    TicketKeyUnnamed,
    /// A frontend route rule refused the connection before any affinity lookup.
    Refused,
}

impl NoKeyReason {
    /// The name used in logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            NoKeyReason::NotTls => "not-tls",
            NoKeyReason::Sslv2 => "sslv2",
            NoKeyReason::InspectTimeout => "inspect-timeout",
            NoKeyReason::ClientClosed => "client-closed",
            NoKeyReason::BadProxyHeader => "bad-proxy-header",
            NoKeyReason::TooLarge => "too-large",
            NoKeyReason::Malformed => "malformed",
            NoKeyReason::EmptySessionId => "empty-session-id",
            NoKeyReason::Tls13RandomId => "tls13-random-id",
            NoKeyReason::NoTicket => "no-ticket",
            NoKeyReason::NoPsk => "no-psk",
            NoKeyReason::NoSni => "no-sni",
            NoKeyReason::NoSample => "no-sample",
            NoKeyReason::NoAffinity => "no-affinity",
            NoKeyReason::TicketKeyShared => "ticket-key-shared",
            NoKeyReason::TicketKeyUnnamed => "ticket-key-unnamed",
            NoKeyReason::Refused => "refused",
        }
    }
}

/// What the table lookups said, before any server was tried.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchOutcome {
    /// A key matched a stored server (or a hash key chose one).
    Hit(AffinityKey),
    /// Keys were looked up and none is known.
    MissUnknown,
    /// A key was known but its entry had expired.
    MissExpired,
    /// Nothing to look up.
    NoKey(NoKeyReason),
}

/// Where the affinity decision sends the connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Use this server if it is usable (a stick-table hit).
    Sticky {
        /// The stored server.
        server: ServerId,
        /// The key that matched.
        key: AffinityKey,
    },
    /// Consistent-hash this value over the usable servers (source / SNI affinity).
    Hash {
        /// The key kind that produced the value.
        key: AffinityKey,
        /// A stable 64-bit hash of the key.
        value: u64,
    },
    /// No affinity: let the backend's balancing algorithm choose.
    Balance,
}

/// The result of matching a client against the affinity configuration.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Where to route.
    pub route: Route,
    /// What the lookups said.
    pub matched: MatchOutcome,
}

impl Decision {
    /// A decision that leaves the choice to the balancer.
    pub fn balance(matched: MatchOutcome) -> Self {
        Decision {
            route: Route::Balance,
            matched,
        }
    }
}

/// The one-word affinity result of a connection, as logged and counted.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AffinityOutcome {
    /// The stored server was used.
    Hit,
    /// Keys were presented, none known, nothing learned.
    MissUnknown,
    /// The key's entry had expired; the connection was balanced.
    MissExpired,
    /// The stored server was DOWN or in MAINT; the connection was balanced and the entry re-pointed.
    MissServerUnusable,
    /// No usable key matched, and the server's answer taught the table a new key.
    Learned,
    /// The stored server was tried and failed; the connection was redispatched after retries.
    Redispatched,
    /// Nothing to stick on, and nothing learned.
    NoKey(NoKeyReason),
}

impl AffinityOutcome {
    /// The name used in logs (`no-key:<why>` for the last variant).
    pub fn label(&self) -> String {
        match self {
            AffinityOutcome::Hit => "hit".into(),
            AffinityOutcome::MissUnknown => "miss-unknown".into(),
            AffinityOutcome::MissExpired => "miss-expired".into(),
            AffinityOutcome::MissServerUnusable => "miss-server-unusable".into(),
            AffinityOutcome::Learned => "learned".into(),
            AffinityOutcome::Redispatched => "redispatched".into(),
            AffinityOutcome::NoKey(r) => format!("no-key:{}", r.as_str()),
        }
    }

    /// Combines what matching said with what happened afterwards.
    ///
    /// `sticky_unusable`: the stored server could not be used (DOWN/MAINT) and the connection was
    /// balanced. `redispatched`: a sticky connection ended up on another server after failed
    /// attempts. `learned`: the server's answer stored at least one key.
    pub fn resolve(
        matched: MatchOutcome,
        sticky_unusable: bool,
        redispatched: bool,
        learned: bool,
    ) -> Self {
        match matched {
            MatchOutcome::Hit(_) if redispatched => AffinityOutcome::Redispatched,
            MatchOutcome::Hit(_) if sticky_unusable => AffinityOutcome::MissServerUnusable,
            MatchOutcome::Hit(_) => AffinityOutcome::Hit,
            MatchOutcome::MissExpired => AffinityOutcome::MissExpired,
            MatchOutcome::MissUnknown if learned => AffinityOutcome::Learned,
            MatchOutcome::MissUnknown => AffinityOutcome::MissUnknown,
            MatchOutcome::NoKey(_) if learned => AffinityOutcome::Learned,
            MatchOutcome::NoKey(r) => AffinityOutcome::NoKey(r),
        }
    }
}

/// Which stick table of a backend a key lives in. Keys of different kinds never share a table, so
/// a session ID can never collide with a ticket hash.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TableKind {
    /// Session IDs.
    SessionId,
    /// SHA-256 of TLS 1.2 tickets.
    Ticket,
    /// SHA-256 of TLS 1.3 PSK identities.
    Psk,
    /// The single table of an imported HAProxy backend.
    Rule,
}

impl TableKind {
    /// The table a key kind uses, if any.
    pub fn for_key(key: AffinityKey) -> Option<TableKind> {
        match key {
            AffinityKey::SessionId => Some(TableKind::SessionId),
            AffinityKey::Ticket => Some(TableKind::Ticket),
            AffinityKey::Psk => Some(TableKind::Psk),
            AffinityKey::Rule => Some(TableKind::Rule),
            AffinityKey::Source | AffinityKey::Sni | AffinityKey::TicketKey => None,
        }
    }

    /// The key kind stored in this table.
    pub fn key(self) -> AffinityKey {
        match self {
            TableKind::SessionId => AffinityKey::SessionId,
            TableKind::Ticket => AffinityKey::Ticket,
            TableKind::Psk => AffinityKey::Psk,
            TableKind::Rule => AffinityKey::Rule,
        }
    }
}

/// Access to a backend's stick tables, by kind. Shared (`&self`) so the engine can back it with
/// sharded, locked tables and tests with plain ones.
pub trait Tables {
    /// Looks `key` up; `None` when the backend has no table of that kind.
    fn lookup(&self, kind: TableKind, key: &[u8], now: Timestamp) -> Option<Lookup>;
    /// Stores `key -> server`; `None` when the backend has no table of that kind.
    fn learn(&self, kind: TableKind, key: &[u8], server: ServerId, now: Timestamp)
        -> Option<Learn>;
    /// The backend's ticket key-name learner, when its chain uses `ticket-key`.
    fn ticket_keys(&self) -> Option<&std::sync::Mutex<ticket_keys::TicketKeys>> {
        None
    }
    /// The learner's server numbering this backend was built for
    /// ([`ticket_keys::TicketKeys::layout`]).
    fn ticket_layout(&self) -> u64 {
        0
    }
    /// The learner, locked, when it still numbers servers as this backend does: a connection
    /// from before a reload that renumbered the servers neither reads nor teaches it.
    fn ticket_learner(&self) -> Option<std::sync::MutexGuard<'_, ticket_keys::TicketKeys>> {
        let learner = self
            .ticket_keys()?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        (learner.layout() == self.ticket_layout()).then_some(learner)
    }
}

/// A stable, seed-free 64-bit hash (FNV-1a) for hash routing of source addresses and names.
/// Not for hostile collision resistance: the balancer bounds each server's load anyway.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_prefers_the_most_informative_word() {
        let hit = MatchOutcome::Hit(AffinityKey::SessionId);
        assert_eq!(
            AffinityOutcome::resolve(hit, false, false, false),
            AffinityOutcome::Hit
        );
        assert_eq!(
            AffinityOutcome::resolve(hit, false, true, true),
            AffinityOutcome::Redispatched
        );
        assert_eq!(
            AffinityOutcome::resolve(hit, true, false, true),
            AffinityOutcome::MissServerUnusable
        );
        let none = MatchOutcome::NoKey(NoKeyReason::EmptySessionId);
        assert_eq!(
            AffinityOutcome::resolve(none, false, false, true),
            AffinityOutcome::Learned
        );
        assert_eq!(
            AffinityOutcome::resolve(none, false, false, false).label(),
            "no-key:empty-session-id"
        );
        assert_eq!(
            AffinityOutcome::resolve(MatchOutcome::MissExpired, false, false, true),
            AffinityOutcome::MissExpired
        );
    }

    #[test]
    fn stable_hash_is_fixed() {
        // FNV-1a test vectors: the hash must never depend on the process.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

/// Plain, single-threaded stick tables for the affinity tests.
#[cfg(test)]
pub(crate) mod test_tables {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::{TableKind, Tables};
    use crate::stick::{Learn, Lookup, StickTable, StickTableConfig};
    use crate::{ServerId, Timestamp};

    /// One real `StickTable` per kind.
    pub struct TestTables(pub RefCell<BTreeMap<TableKind, StickTable>>);

    impl TestTables {
        pub fn new(kinds: &[TableKind], size: usize) -> Self {
            let cfg = StickTableConfig::new(32, size, Duration::from_secs(60));
            TestTables(RefCell::new(
                kinds
                    .iter()
                    .map(|&k| (k, StickTable::new(cfg.clone())))
                    .collect(),
            ))
        }

        pub fn len(&self, kind: TableKind) -> usize {
            self.0.borrow().get(&kind).map_or(0, |t| t.len())
        }
    }

    impl Tables for TestTables {
        fn lookup(&self, kind: TableKind, key: &[u8], now: Timestamp) -> Option<Lookup> {
            self.0
                .borrow_mut()
                .get_mut(&kind)
                .map(|t| t.lookup(key, now))
        }

        fn learn(
            &self,
            kind: TableKind,
            key: &[u8],
            server: ServerId,
            now: Timestamp,
        ) -> Option<Learn> {
            self.0
                .borrow_mut()
                .get_mut(&kind)
                .map(|t| t.learn(key, server, now))
        }
    }
}
