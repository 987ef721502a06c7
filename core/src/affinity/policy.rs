//! [`Affinity`]: the one interface the connection state machine sees, whether a backend uses
//! tether's native chain or imported HAProxy sticking rules.
//!
//! A connection asks its backend's affinity four things, in order: what to extract from the
//! ClientHello, whether inspection may end, where to route, and what to learn once a server is
//! connected and while its answer streams back. Each question is one method, so the state machine
//! never switches on the kind of affinity.

use std::fmt;
use std::net::IpAddr;

use super::chain::Chain;
use super::keys::{HelloKeys, PresentedName};
use super::rules::{PendingStore, RequestView, Rules};
use super::{Decision, NoKeyReason, Route, TableKind, Tables};
use crate::progress::Progress;
use crate::tls::ServerHelloInfo;
use crate::{ServerId, Timestamp};

pub use super::chain::Learned;

/// Which hashed keys the ClientHello summary needs (hashing a ticket costs a SHA-256).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct HelloWants {
    /// Hash the TLS 1.2 session ticket.
    pub ticket: bool,
    /// Hash the first TLS 1.3 PSK identity.
    pub psk: bool,
    /// Cut the ticket key name at this span (the chain uses `ticket-key`).
    pub ticket_name: Option<super::ticket_keys::NameSpan>,
}

impl HelloWants {
    /// The ClientHello summary these wants ask for.
    pub fn extract(&self, hello: &crate::tls::ClientHello<'_>) -> HelloKeys {
        let mut keys = HelloKeys::extract(hello, self.ticket, self.psk);
        keys.ticket_name = self
            .ticket_name
            .and_then(|span| PresentedName::extract(hello, span));
        keys
    }
}

/// One step of learning from the server's first bytes (HAProxy `store-response`): `NeedMore`
/// while the rules need more response bytes, then `Done(stored)`, whether a key was stored.
pub type ResponseStep = Progress<bool>;

/// How a backend decides and learns affinity.
pub trait Affinity: fmt::Debug + Send + Sync {
    /// The stick tables it needs.
    fn tables(&self) -> Vec<TableKind>;

    /// Whether it routes by a consistent hash (source or SNI), so the backend keeps a hash
    /// balancer.
    fn uses_hash(&self) -> bool;

    /// What the ClientHello summary must carry.
    fn hello_wants(&self) -> HelloWants;

    /// Whether it needs a ticket key-name learner beside the stick tables.
    fn uses_ticket_keys(&self) -> bool {
        false
    }

    /// Whether inspection may end. `hello_done`: the hello parser reached a verdict (complete,
    /// not TLS, malformed...); `final_`: the deadline passed, the client closed or the cap is
    /// reached, after which inspection always ends.
    fn request_ready(&self, buf: &[u8], hello_done: bool, final_: bool) -> bool;

    /// Routes a connection once inspection ended. `no_hello` says why `req.hello` is `None`.
    /// A request-side store is returned to be committed once a server is connected.
    fn decide(
        &self,
        req: RequestView<'_>,
        no_hello: NoKeyReason,
        tables: &dyn Tables,
        now: Timestamp,
    ) -> (Decision, Option<PendingStore>);

    /// The connection reached `server`: commits what the request taught (a pending store, or the
    /// matched key re-pointed when the stored server could not be used). Returns keys stored.
    fn on_connected(
        &self,
        hello: Option<&HelloKeys>,
        route: &Route,
        pending: Option<&PendingStore>,
        server: ServerId,
        tables: &dyn Tables,
        now: Timestamp,
    ) -> u32;

    /// Learns from the server's ServerHello, sent to the client at `client`.
    fn on_server_hello(
        &self,
        hello: Option<&HelloKeys>,
        client: Option<IpAddr>,
        info: &ServerHelloInfo,
        server: ServerId,
        tables: &dyn Tables,
        now: Timestamp,
    ) -> Learned;

    /// Learns from a cleartext TLS 1.2 NewSessionTicket; returns whether a key was stored.
    fn on_ticket(
        &self,
        ticket: &[u8],
        server: ServerId,
        tables: &dyn Tables,
        now: Timestamp,
    ) -> bool;

    /// Whether it reads the raw response bytes ([`Affinity::on_response`]).
    fn reads_response(&self) -> bool;

    /// Evaluates the response's first bytes (`final_`: no more will come).
    fn on_response(
        &self,
        buf: &[u8],
        final_: bool,
        server: ServerId,
        tables: &dyn Tables,
        now: Timestamp,
    ) -> ResponseStep;
}

impl Affinity for Chain {
    fn tables(&self) -> Vec<TableKind> {
        Chain::tables(self)
    }

    fn uses_hash(&self) -> bool {
        self.has(super::AffinityKey::Source) || self.has(super::AffinityKey::Sni)
    }

    fn hello_wants(&self) -> HelloWants {
        HelloWants {
            ticket: self.wants_ticket(),
            psk: self.wants_psk(),
            ticket_name: self
                .has(super::AffinityKey::TicketKey)
                .then(|| self.name_span()),
        }
    }

    fn uses_ticket_keys(&self) -> bool {
        self.has(super::AffinityKey::TicketKey)
    }

    fn request_ready(&self, _buf: &[u8], hello_done: bool, _final: bool) -> bool {
        hello_done
    }

    fn decide(
        &self,
        req: RequestView<'_>,
        no_hello: NoKeyReason,
        tables: &dyn Tables,
        now: Timestamp,
    ) -> (Decision, Option<PendingStore>) {
        let d = Chain::decide(self, req.hello, no_hello, req.client, tables, now);
        (d, None)
    }

    fn on_connected(
        &self,
        hello: Option<&HelloKeys>,
        route: &Route,
        _pending: Option<&PendingStore>,
        server: ServerId,
        tables: &dyn Tables,
        now: Timestamp,
    ) -> u32 {
        match *route {
            Route::Sticky { server: stuck, key } if stuck != server => {
                u32::from(self.repoint(hello, key, server, tables, now))
            }
            _ => 0,
        }
    }

    fn on_server_hello(
        &self,
        hello: Option<&HelloKeys>,
        client: Option<IpAddr>,
        info: &ServerHelloInfo,
        server: ServerId,
        tables: &dyn Tables,
        now: Timestamp,
    ) -> Learned {
        let mut learned = self.learn_server_hello(hello, info, server, tables, now);
        learned.stored |= self.learn_ticket_key(hello, client, info, server, tables);
        learned
    }

    fn on_ticket(
        &self,
        ticket: &[u8],
        server: ServerId,
        tables: &dyn Tables,
        now: Timestamp,
    ) -> bool {
        self.learn_ticket(ticket, server, tables, now)
    }

    fn reads_response(&self) -> bool {
        false
    }

    fn on_response(
        &self,
        _buf: &[u8],
        _final: bool,
        _server: ServerId,
        _tables: &dyn Tables,
        _now: Timestamp,
    ) -> ResponseStep {
        Progress::Done(false)
    }
}

impl Affinity for Rules {
    fn tables(&self) -> Vec<TableKind> {
        if self.rules.is_empty() {
            Vec::new()
        } else {
            vec![TableKind::Rule]
        }
    }

    fn uses_hash(&self) -> bool {
        false
    }

    fn hello_wants(&self) -> HelloWants {
        HelloWants::default()
    }

    fn request_ready(&self, buf: &[u8], _hello_done: bool, final_: bool) -> bool {
        // HAProxy: inspection ends when the content rule's condition is decided.
        Rules::request_ready(self, buf, final_)
    }

    fn decide(
        &self,
        req: RequestView<'_>,
        _no_hello: NoKeyReason,
        tables: &dyn Tables,
        now: Timestamp,
    ) -> (Decision, Option<PendingStore>) {
        self.on_request(req, tables, now)
    }

    fn on_connected(
        &self,
        _hello: Option<&HelloKeys>,
        _route: &Route,
        pending: Option<&PendingStore>,
        server: ServerId,
        tables: &dyn Tables,
        now: Timestamp,
    ) -> u32 {
        pending.map_or(0, |p| {
            u32::from(tables.learn(TableKind::Rule, &p.key, server, now).is_some())
        })
    }

    fn on_server_hello(
        &self,
        hello: Option<&HelloKeys>,
        _client: Option<IpAddr>,
        info: &ServerHelloInfo,
        _server: ServerId,
        _tables: &dyn Tables,
        _now: Timestamp,
    ) -> Learned {
        // Rules learn from raw bytes (`on_response`); the hello only tells whether the server
        // resumed, by echoing the client's session ID.
        let id = info.session_id.as_slice();
        Learned {
            stored: false,
            resumed: Some(!id.is_empty() && hello.is_some_and(|h| h.session_id.as_slice() == id)),
        }
    }

    fn on_ticket(&self, _: &[u8], _: ServerId, _: &dyn Tables, _: Timestamp) -> bool {
        false
    }

    fn reads_response(&self) -> bool {
        self.learns_from_response()
    }

    fn on_response(
        &self,
        buf: &[u8],
        final_: bool,
        server: ServerId,
        tables: &dyn Tables,
        now: Timestamp,
    ) -> ResponseStep {
        Rules::on_response(self, buf, final_).map(|key| {
            key.is_some_and(|k| tables.learn(TableKind::Rule, &k, server, now).is_some())
        })
    }
}
