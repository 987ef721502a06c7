//! tether's native affinity chain: an ordered list of keys per backend.
//!
//! Matching walks the chain and stops at the first key that finds a server. Learning listens to
//! the server, not the client (design.md §4): the ServerHello's session ID when TLS <= 1.2 was
//! negotiated (an echo confirms a resumption), the cleartext TLS 1.2 NewSessionTicket, and a TLS
//! 1.3 PSK identity the server accepted. A TLS 1.3 client's random session ID is never stored, so
//! it cannot fill the table.

use std::net::IpAddr;

use super::keys::{hash_key, HelloKeys, TicketKey};
use super::ticket_keys::{Bootstrap, Change, Guess, KeyName, NameSpan};
use super::{
    stable_hash, AffinityKey, Decision, MatchOutcome, NoKeyReason, Route, TableKind, Tables,
};
use crate::stick::{Learn, Lookup};
use crate::tls::{ProtocolVersion, ServerHelloInfo};
use crate::{ServerId, Timestamp};

/// An ordered affinity chain, e.g. `session-id → ticket → psk → source`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    keys: Vec<AffinityKey>,
    span: NameSpan,
    bootstrap: Bootstrap,
}

/// What learning from one server message did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Learned {
    /// At least one key was newly stored or re-pointed.
    pub stored: bool,
    /// The server resumed the client's session (echoed session ID, or accepted PSK);
    /// `None` when the message does not say.
    pub resumed: Option<bool>,
}

impl Chain {
    /// A chain over `keys`, in order; duplicates after the first occurrence are dropped and the
    /// HAProxy-only [`AffinityKey::Rule`] is ignored.
    pub fn new(keys: &[AffinityKey]) -> Self {
        let mut out: Vec<AffinityKey> = Vec::with_capacity(keys.len());
        for &k in keys {
            if k != AffinityKey::Rule && !out.contains(&k) {
                out.push(k);
            }
        }
        Chain {
            keys: out,
            span: NameSpan::default(),
            bootstrap: Bootstrap::default(),
        }
    }

    /// The same chain, cutting ticket key names at `span` instead of RFC 5077's 16 bytes.
    pub fn with_name_span(mut self, span: NameSpan) -> Self {
        self.span = span;
        self
    }

    /// The same chain, routing unknown ticket key names by `bootstrap`.
    pub fn with_bootstrap(mut self, bootstrap: Bootstrap) -> Self {
        self.bootstrap = bootstrap;
        self
    }

    /// Where the `ticket-key` key cuts key names out of tickets.
    pub fn name_span(&self) -> NameSpan {
        self.span
    }

    /// The keys in matching order.
    pub fn keys(&self) -> &[AffinityKey] {
        &self.keys
    }

    /// Whether the chain contains `key`.
    pub fn has(&self, key: AffinityKey) -> bool {
        self.keys.contains(&key)
    }

    /// The stick tables this chain needs.
    pub fn tables(&self) -> Vec<TableKind> {
        self.keys
            .iter()
            .filter_map(|&k| TableKind::for_key(k))
            .collect()
    }

    /// Matches a connection. `hello` is `None` when no ClientHello was parsed, and `no_hello`
    /// then says why; `client` is the client's address (from the socket or a PROXY header).
    pub fn decide(
        &self,
        hello: Option<&HelloKeys>,
        no_hello: NoKeyReason,
        client: Option<IpAddr>,
        tables: &(impl Tables + ?Sized),
        now: Timestamp,
    ) -> Decision {
        if self.keys.is_empty() {
            return Decision::balance(MatchOutcome::NoKey(NoKeyReason::NoAffinity));
        }
        let mut reason: Option<NoKeyReason> = None;
        let mut expired = false;
        let mut missed = false;
        for &key in &self.keys {
            let lookup_key: Option<&[u8]> = match (key, hello) {
                (AffinityKey::Source, _) => {
                    if let Some(ip) = client {
                        return hashed(key, &ip_bytes(ip));
                    }
                    None
                }
                (_, None) => {
                    reason.get_or_insert(no_hello);
                    None
                }
                (AffinityKey::Sni, Some(h)) => match &h.sni {
                    Some(name) => return hashed(key, name),
                    None => {
                        reason.get_or_insert(NoKeyReason::NoSni);
                        None
                    }
                },
                (AffinityKey::SessionId, Some(h)) => {
                    if h.session_id.is_empty() {
                        reason.get_or_insert(NoKeyReason::EmptySessionId);
                        None
                    } else {
                        Some(h.session_id.as_slice())
                    }
                }
                (AffinityKey::Ticket, Some(h)) => match &h.ticket {
                    TicketKey::Present(k) => Some(k.as_slice()),
                    _ => {
                        reason.get_or_insert(NoKeyReason::NoTicket);
                        None
                    }
                },
                (AffinityKey::Psk, Some(h)) => match &h.psk {
                    Some(k) => Some(k.as_slice()),
                    None => {
                        reason.get_or_insert(NoKeyReason::NoPsk);
                        None
                    }
                },
                (AffinityKey::TicketKey, Some(h)) => {
                    match ticket_key_decision(h, client, self.bootstrap, tables) {
                        Ok(d) => return d,
                        Err(Some(r)) => {
                            reason.get_or_insert(r);
                            None
                        }
                        Err(None) => {
                            missed = true;
                            None
                        }
                    }
                }
                (AffinityKey::Rule, Some(_)) => None,
            };
            let (Some(bytes), Some(kind)) = (lookup_key, TableKind::for_key(key)) else {
                continue;
            };
            match tables.lookup(kind, bytes, now) {
                Some(Lookup::Hit(server)) => {
                    return Decision {
                        route: Route::Sticky { server, key },
                        matched: MatchOutcome::Hit(key),
                    }
                }
                Some(Lookup::Expired(_)) => expired = true,
                Some(Lookup::Miss) | None => {
                    let random = key == AffinityKey::SessionId
                        && hello.is_some_and(HelloKeys::session_id_looks_random);
                    if random {
                        reason.get_or_insert(NoKeyReason::Tls13RandomId);
                    } else {
                        missed = true;
                    }
                }
            }
        }
        let matched = if expired {
            MatchOutcome::MissExpired
        } else if missed {
            MatchOutcome::MissUnknown
        } else {
            MatchOutcome::NoKey(reason.unwrap_or(no_hello))
        };
        Decision::balance(matched)
    }

    /// Learns from the server's ServerHello, for a connection whose ClientHello gave `hello`, now
    /// served by `server`.
    pub fn learn_server_hello(
        &self,
        hello: Option<&HelloKeys>,
        info: &ServerHelloInfo,
        server: ServerId,
        tables: &(impl Tables + ?Sized),
        now: Timestamp,
    ) -> Learned {
        let mut learned = Learned::default();
        if info.hello_retry_request {
            return learned;
        }
        if info.negotiated >= ProtocolVersion::TLS1_3 {
            let accepted = info.psk_selected.is_some();
            learned.resumed = Some(accepted);
            if let (true, Some(0), Some(k)) = (
                self.has(AffinityKey::Psk),
                info.psk_selected,
                hello.and_then(|h| h.psk),
            ) {
                learned.stored |= stored(tables.learn(TableKind::Psk, &k, server, now));
            }
            // Never store a TLS 1.3 legacy_session_id: it is random on every connection.
            return learned;
        }
        let id = info.session_id.as_slice();
        let echoed = !id.is_empty() && hello.is_some_and(|h| h.session_id.as_slice() == id);
        learned.resumed = Some(echoed);
        if !id.is_empty() && self.has(AffinityKey::SessionId) {
            learned.stored |= stored(tables.learn(TableKind::SessionId, id, server, now));
        }
        // An accepted ticket is confirmed by the echo: refresh its entry too.
        if echoed && self.has(AffinityKey::Ticket) {
            if let Some(HelloKeys {
                ticket: TicketKey::Present(k),
                ..
            }) = hello
            {
                learned.stored |= stored(tables.learn(TableKind::Ticket, k, server, now));
            }
        }
        learned
    }

    /// Re-points the key that matched to `server`, the one actually used because the stored
    /// server was unusable or failed (HAProxy overwrites the entry the same way), so the next
    /// presentation of that key goes straight there instead of retrying a dead server.
    pub fn repoint(
        &self,
        hello: Option<&HelloKeys>,
        key: AffinityKey,
        server: ServerId,
        tables: &(impl Tables + ?Sized),
        now: Timestamp,
    ) -> bool {
        let (Some(h), Some(kind)) = (hello, TableKind::for_key(key)) else {
            return false;
        };
        let bytes: &[u8] = match (key, &h.ticket, &h.psk) {
            (AffinityKey::SessionId, _, _) => h.session_id.as_slice(),
            (AffinityKey::Ticket, TicketKey::Present(k), _) => k.as_slice(),
            (AffinityKey::Psk, _, Some(k)) => k.as_slice(),
            _ => return false,
        };
        !bytes.is_empty() && stored(tables.learn(kind, bytes, server, now))
    }

    /// Learns a TLS 1.2 NewSessionTicket issued by `server`.
    ///
    /// The ticket table keys on SHA-256(ticket), which is what the client will present. OpenSSL
    /// clients also send SHA-256(ticket) as their session ID when resuming, so a chain that uses
    /// session IDs learns the same value there: session-ID affinity then survives tickets.
    pub fn learn_ticket(
        &self,
        ticket: &[u8],
        server: ServerId,
        tables: &(impl Tables + ?Sized),
        now: Timestamp,
    ) -> bool {
        if ticket.is_empty() {
            return false;
        }
        let key = hash_key(ticket);
        let mut any = self.learn_issued_name(ticket, server, tables);
        if self.has(AffinityKey::Ticket) {
            any |= stored(tables.learn(TableKind::Ticket, &key, server, now));
        }
        if self.has(AffinityKey::SessionId) {
            any |= stored(tables.learn(TableKind::SessionId, &key, server, now));
        }
        any
    }

    /// Whether the chain needs ticket hashes from the ClientHello.
    pub fn wants_ticket(&self) -> bool {
        self.has(AffinityKey::Ticket) || self.has(AffinityKey::SessionId)
    }

    /// Whether the chain needs PSK identity hashes from the ClientHello.
    pub fn wants_psk(&self) -> bool {
        self.has(AffinityKey::Psk)
    }

    /// Whether the chain learns anything from the server's flight.
    pub fn learns_from_server(&self) -> bool {
        self.has(AffinityKey::SessionId)
            || self.has(AffinityKey::Ticket)
            || self.wants_psk()
            || self.has(AffinityKey::TicketKey)
    }

    /// Teaches the ticket-key learner from a ServerHello: who served `client`, and whether the
    /// presented ticket's key name was accepted (TLS 1.3 `pre_shared_key`, TLS 1.2 session ID
    /// echo) or refused. Returns whether something new was stored.
    pub fn learn_ticket_key(
        &self,
        hello: Option<&HelloKeys>,
        client: Option<IpAddr>,
        info: &ServerHelloInfo,
        server: ServerId,
        tables: &(impl Tables + ?Sized),
    ) -> bool {
        if !self.has(AffinityKey::TicketKey) || info.hello_retry_request {
            return false;
        }
        let Some(mut k) = tables.ticket_learner() else {
            return false;
        };
        k.on_served(client, server);
        let Some(p) = hello.and_then(|h| h.ticket_name) else {
            return false;
        };
        let accepted = match (info.negotiated >= ProtocolVersion::TLS1_3, p.from_psk) {
            (true, true) => info.psk_selected == Some(0),
            (false, false) => {
                let id = info.session_id.as_slice();
                !id.is_empty() && hello.is_some_and(|h| h.session_id.as_slice() == id)
            }
            // The name came from the other version's field: the answer says nothing about it.
            _ => return false,
        };
        let change = if accepted {
            k.on_accepted(&p.name, server)
        } else {
            k.on_rejected(&p.name, server)
        };
        report(change, &p.name, server);
        change.stored()
    }

    /// Teaches the ticket-key learner the key name of a TLS 1.2 ticket `server` issued.
    fn learn_issued_name(
        &self,
        ticket: &[u8],
        server: ServerId,
        tables: &(impl Tables + ?Sized),
    ) -> bool {
        if !self.has(AffinityKey::TicketKey) {
            return false;
        }
        let Some(mut learner) = tables.ticket_learner() else {
            return false;
        };
        let Some(name) = KeyName::from_ticket(ticket, self.span) else {
            return false;
        };
        let change = learner.on_issued(&name, server);
        report(change, &name, server);
        change.stored()
    }
}

/// Routes by the ticket's key name, or says why the chain falls through (`None`: unknown).
fn ticket_key_decision(
    h: &HelloKeys,
    client: Option<IpAddr>,
    bootstrap: Bootstrap,
    tables: &(impl Tables + ?Sized),
) -> Result<Decision, Option<NoKeyReason>> {
    let Some(p) = h.ticket_name else {
        return Err(Some(if h.offers_tls13 {
            NoKeyReason::NoPsk
        } else {
            NoKeyReason::NoTicket
        }));
    };
    let Some(mut learner) = tables.ticket_learner() else {
        return Err(None);
    };
    let guess = learner.route(&p.name, client, bootstrap);
    drop(learner);
    let sticky = |server, matched| Decision {
        route: Route::Sticky {
            server,
            key: AffinityKey::TicketKey,
        },
        matched,
    };
    match guess {
        Guess::Owner(s) | Guess::Probe(s) => {
            Ok(sticky(s, MatchOutcome::Hit(AffinityKey::TicketKey)))
        }
        // A guess, not a hit: the log says `learned` when the server confirms it.
        Guess::Bootstrap(s) => Ok(sticky(s, MatchOutcome::MissUnknown)),
        Guess::Shared => Err(Some(NoKeyReason::TicketKeyShared)),
        Guess::Unnamed => Err(Some(NoKeyReason::TicketKeyUnnamed)),
        Guess::Unknown => Err(None),
    }
}

/// Says once in the log what changed a backend's ticket-key routing for good.
fn report(change: Change, name: &KeyName, server: ServerId) {
    match change {
        Change::BecameShared => tracing::info!(
            name = %name.hex(),
            server = server.0,
            "ticket key name accepted by two servers: they share a ticket key, so ticket-key \
             affinity falls through the chain for it"
        ),
        Change::BecameUnnamed => tracing::warn!(
            server = server.0,
            "this server's tickets carry no stable key name (every accepted ticket starts \
             differently): ticket-key stops learning for it and falls through the chain"
        ),
        _ => {}
    }
}

fn hashed(key: AffinityKey, bytes: &[u8]) -> Decision {
    Decision {
        route: Route::Hash {
            key,
            value: stable_hash(bytes),
        },
        matched: MatchOutcome::Hit(key),
    }
}

/// The bytes of an address as HAProxy's `src` sample gives them.
pub fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    }
}

fn stored(l: Option<Learn>) -> bool {
    matches!(
        l,
        Some(Learn::Inserted { .. }) | Some(Learn::Updated { .. })
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::affinity::test_tables::TestTables;
    use crate::tls::SessionId;

    fn hello(id: &[u8], tls13: bool) -> HelloKeys {
        HelloKeys {
            session_id: SessionId::from_slice(id).unwrap(),
            ticket: TicketKey::Absent,
            psk: None,
            sni: None,
            offers_tls13: tls13,
            ticket_name: None,
        }
    }

    fn server_hello(id: &[u8], negotiated: ProtocolVersion) -> ServerHelloInfo {
        ServerHelloInfo {
            legacy_version: ProtocolVersion::TLS1_2,
            session_id: SessionId::from_slice(id).unwrap(),
            cipher: 0x1301,
            negotiated,
            hello_retry_request: false,
            psk_selected: None,
            session_ticket_ext: false,
        }
    }

    const T0: Timestamp = Timestamp(1_000);

    #[test]
    fn learns_the_server_issued_id_and_matches_it_next_time() {
        let chain = Chain::new(&[AffinityKey::SessionId]);
        let tables = TestTables::new(&chain.tables(), 64);
        let fresh = hello(b"", false);
        let d = chain.decide(Some(&fresh), NoKeyReason::NoSample, None, &tables, T0);
        assert_eq!(d.matched, MatchOutcome::NoKey(NoKeyReason::EmptySessionId));
        let issued = [7u8; 32];
        let l = chain.learn_server_hello(
            Some(&fresh),
            &server_hello(&issued, ProtocolVersion::TLS1_2),
            ServerId(2),
            &tables,
            T0,
        );
        assert!(l.stored);
        assert_eq!(l.resumed, Some(false));
        let resuming = hello(&issued, false);
        let d = chain.decide(Some(&resuming), NoKeyReason::NoSample, None, &tables, T0);
        assert_eq!(
            d.route,
            Route::Sticky {
                server: ServerId(2),
                key: AffinityKey::SessionId
            }
        );
        let l = chain.learn_server_hello(
            Some(&resuming),
            &server_hello(&issued, ProtocolVersion::TLS1_2),
            ServerId(2),
            &tables,
            T0,
        );
        assert_eq!(l.resumed, Some(true), "an echoed ID is a resumption");
        assert!(!l.stored, "refreshing the same server is not new knowledge");
    }

    #[test]
    fn tls13_random_ids_are_reported_and_never_stored() {
        let chain = Chain::new(&[AffinityKey::SessionId]);
        let tables = TestTables::new(&chain.tables(), 64);
        let h = hello(&[9u8; 32], true);
        let d = chain.decide(Some(&h), NoKeyReason::NoSample, None, &tables, T0);
        assert_eq!(d.matched, MatchOutcome::NoKey(NoKeyReason::Tls13RandomId));
        let l = chain.learn_server_hello(
            Some(&h),
            &server_hello(&[9u8; 32], ProtocolVersion::TLS1_3),
            ServerId(0),
            &tables,
            T0,
        );
        assert!(!l.stored);
        assert_eq!(tables.len(TableKind::SessionId), 0);
    }

    #[test]
    fn a_ticket_teaches_both_the_ticket_and_the_openssl_session_id() {
        let chain = Chain::new(&[AffinityKey::SessionId, AffinityKey::Ticket]);
        let tables = TestTables::new(&chain.tables(), 64);
        let ticket = b"opaque ticket bytes from the server";
        assert!(chain.learn_ticket(ticket, ServerId(3), &tables, T0));
        // OpenSSL resumes with session ID = SHA-256(ticket) and the ticket itself.
        let mut h = hello(&hash_key(ticket), false);
        h.ticket = TicketKey::Present(hash_key(ticket));
        let d = chain.decide(Some(&h), NoKeyReason::NoSample, None, &tables, T0);
        assert_eq!(
            d.route,
            Route::Sticky {
                server: ServerId(3),
                key: AffinityKey::SessionId
            }
        );
        // A Go-like client: random ID, same ticket -> the ticket key matches.
        let mut go = hello(&[1u8; 32], false);
        go.ticket = TicketKey::Present(hash_key(ticket));
        let d = chain.decide(Some(&go), NoKeyReason::NoSample, None, &tables, T0);
        assert_eq!(
            d.route,
            Route::Sticky {
                server: ServerId(3),
                key: AffinityKey::Ticket
            }
        );
    }

    #[test]
    fn psk_is_learned_only_when_the_server_accepts_it() {
        let chain = Chain::new(&[AffinityKey::Psk]);
        let tables = TestTables::new(&chain.tables(), 64);
        let mut h = hello(&[5u8; 32], true);
        h.psk = Some(hash_key(b"identity"));
        let mut sh = server_hello(&[5u8; 32], ProtocolVersion::TLS1_3);
        let l = chain.learn_server_hello(Some(&h), &sh, ServerId(1), &tables, T0);
        assert_eq!((l.stored, l.resumed), (false, Some(false)));
        sh.psk_selected = Some(0);
        let l = chain.learn_server_hello(Some(&h), &sh, ServerId(1), &tables, T0);
        assert_eq!((l.stored, l.resumed), (true, Some(true)));
        let d = chain.decide(Some(&h), NoKeyReason::NoSample, None, &tables, T0);
        assert_eq!(
            d.route,
            Route::Sticky {
                server: ServerId(1),
                key: AffinityKey::Psk
            }
        );
    }

    #[test]
    fn source_hashes_even_without_a_hello() {
        let chain = Chain::new(&[AffinityKey::SessionId, AffinityKey::Source]);
        let tables = TestTables::new(&chain.tables(), 64);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let a = chain.decide(None, NoKeyReason::NotTls, Some(ip), &tables, T0);
        let b = chain.decide(None, NoKeyReason::NotTls, Some(ip), &tables, T0);
        assert_eq!(a, b);
        assert!(matches!(
            a.route,
            Route::Hash {
                key: AffinityKey::Source,
                ..
            }
        ));
        let none = chain.decide(None, NoKeyReason::NotTls, None, &tables, T0);
        assert_eq!(none.matched, MatchOutcome::NoKey(NoKeyReason::NotTls));
    }

    #[test]
    fn expired_entries_say_so() {
        let chain = Chain::new(&[AffinityKey::SessionId]);
        let tables = TestTables::new(&chain.tables(), 64);
        let id = [3u8; 32];
        chain.learn_server_hello(
            None,
            &server_hello(&id, ProtocolVersion::TLS1_2),
            ServerId(0),
            &tables,
            T0,
        );
        let later = T0 + std::time::Duration::from_secs(61);
        let d = chain.decide(
            Some(&hello(&id, false)),
            NoKeyReason::NoSample,
            None,
            &tables,
            later,
        );
        assert_eq!(d.matched, MatchOutcome::MissExpired);
        assert_eq!(d.route, Route::Balance);
    }

    proptest! {
        /// Whatever the client sends, a TLS 1.3 ServerHello never puts anything in the
        /// session-ID table, and a decision is sticky only to a server that was learned.
        #[test]
        fn tls13_never_fills_the_session_table(
            ids in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..=32), 1..40),
            servers in proptest::collection::vec(0u32..4, 40),
        ) {
            let chain = Chain::new(&[AffinityKey::SessionId, AffinityKey::Ticket, AffinityKey::Psk]);
            let tables = TestTables::new(&chain.tables(), 1024);
            for (i, id) in ids.iter().enumerate() {
                let h = hello(id, true);
                let d = chain.decide(Some(&h), NoKeyReason::NoSample, None, &tables, T0);
                prop_assert_eq!(d.route, Route::Balance);
                chain.learn_server_hello(
                    Some(&h),
                    &server_hello(id, ProtocolVersion::TLS1_3),
                    ServerId(servers[i]),
                    &tables,
                    T0,
                );
            }
            prop_assert_eq!(tables.len(TableKind::SessionId), 0);
        }

        /// TLS 1.2: after learning, every non-empty issued ID routes to the server that issued
        /// it last (last writer wins).
        #[test]
        fn tls12_last_writer_wins(
            issues in proptest::collection::vec((1u8..8, 0u32..4), 1..60),
        ) {
            let chain = Chain::new(&[AffinityKey::SessionId]);
            let tables = TestTables::new(&chain.tables(), 1024);
            let mut expect = std::collections::BTreeMap::new();
            for (id, server) in &issues {
                let id = [*id; 16];
                chain.learn_server_hello(
                    None,
                    &server_hello(&id, ProtocolVersion::TLS1_2),
                    ServerId(*server),
                    &tables,
                    T0,
                );
                expect.insert(id, *server);
            }
            for (id, server) in expect {
                let d = chain.decide(Some(&hello(&id, false)), NoKeyReason::NoSample, None, &tables, T0);
                prop_assert_eq!(d.route, Route::Sticky { server: ServerId(server), key: AffinityKey::SessionId });
            }
        }
    }
}

#[cfg(test)]
mod repoint_tests {
    use super::*;
    use crate::engine::tables::BackendTables;
    use crate::stick::StickTableConfig;
    use crate::tls::SessionId;

    #[test]
    fn repoint_moves_the_matched_key_to_the_server_used() {
        let chain = Chain::new(&[AffinityKey::SessionId, AffinityKey::Ticket]);
        let config = StickTableConfig::new(32, 16, std::time::Duration::from_secs(60));
        let tables = BackendTables::new(&chain.tables(), &config);
        let now = Timestamp(1);
        let hello = HelloKeys {
            session_id: SessionId::from_slice(&[7; 32]).unwrap(),
            ticket: TicketKey::Absent,
            psk: None,
            sni: None,
            offers_tls13: false,
            ticket_name: None,
        };
        tables.learn(TableKind::SessionId, &[7; 32], ServerId(0), now);
        assert!(chain.repoint(
            Some(&hello),
            AffinityKey::SessionId,
            ServerId(1),
            &tables,
            now
        ));
        let d = chain.decide(Some(&hello), NoKeyReason::NoSample, None, &tables, now);
        assert_eq!(
            d.route,
            Route::Sticky {
                server: ServerId(1),
                key: AffinityKey::SessionId
            }
        );
        // Nothing presented for that kind: nothing to re-point.
        assert!(!chain.repoint(Some(&hello), AffinityKey::Ticket, ServerId(1), &tables, now));
        assert!(!chain.repoint(None, AffinityKey::SessionId, ServerId(1), &tables, now));
    }
}
