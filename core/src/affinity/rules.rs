//! HAProxy's sticking rules, evaluated with HAProxy 2.6's semantics, quirks included.
//!
//! - `stick on K` is `stick match K` plus `stick store-request K`; the first matching rule wins.
//! - Request rules run once, when request inspection ends (the `tcp-request content accept if`
//!   condition is decided, or the inspect delay / client EOF / buffer cap makes it final).
//! - A request store commits only once the server connection exists, with the server actually
//!   used; one store per table.
//! - `stick store-response` rules run when response inspection ends. Without `tcp-response
//!   inspect-delay`, HAProxy (>= 2.2) evaluates them once, on an empty buffer, as the server
//!   connection opens: they never store anything. That is why the classic recipe learns session
//!   IDs backwards, from client requests only.

use std::net::IpAddr;

use super::chain::ip_bytes;
use super::keys::HelloKeys;
use super::{AffinityKey, Decision, MatchOutcome, NoKeyReason, Route, TableKind, Tables};
use crate::config::{self, Condition, StickAction, StickRule};
use crate::progress::Progress;
use crate::stick::Lookup;
use crate::tls::haproxy::{payload_lv, req_ssl_hello_type};
use crate::Timestamp;

/// An imported backend's rules and the inspection settings that decide when they run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// The sticking rules, in file order.
    pub rules: Vec<StickRule>,
    /// `tcp-request content accept if <cond>`: request inspection waits until this is decided.
    /// `None`: no content rule, so inspection ends at once, on whatever has arrived.
    pub request_accept_if: Option<Condition>,
    /// `tcp-response inspect-delay` is set: store-response rules see the response.
    pub response_inspect: bool,
}

/// A request-side store waiting for the server connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingStore {
    /// The key, as fetched (the table pads or truncates it).
    pub key: Vec<u8>,
}

/// Inputs of a request-side evaluation.
#[derive(Copy, Clone, Debug)]
pub struct RequestView<'a> {
    /// Everything the client sent during inspection (after any PROXY header).
    pub buf: &'a [u8],
    /// The parsed hello, for `req.ssl_sni`.
    pub hello: Option<&'a HelloKeys>,
    /// The client address, for `src`.
    pub client: Option<IpAddr>,
}

impl Rules {
    /// Whether request inspection may end now. `final_` is true once the deadline passed, the
    /// client closed, or the buffer is full: then it always may.
    pub fn request_ready(&self, buf: &[u8], final_: bool) -> bool {
        if final_ {
            return true;
        }
        match &self.request_accept_if {
            None | Some(Condition::Always) => true,
            Some(cond) => !matches!(condition(cond, buf, false), Progress::NeedMore),
        }
    }

    /// Evaluates match and store-request rules once request inspection has ended.
    pub fn on_request(
        &self,
        req: RequestView<'_>,
        tables: &(impl Tables + ?Sized),
        now: Timestamp,
    ) -> (Decision, Option<PendingStore>) {
        let mut decision: Option<Decision> = None;
        let mut store: Option<PendingStore> = None;
        let mut looked_up = false;
        let mut expired = false;
        for rule in &self.rules {
            if rule.action == StickAction::StoreResponse {
                continue;
            }
            if !matches!(condition(&rule.when, req.buf, true), Progress::Done(true)) {
                continue;
            }
            let Some(key) = request_sample(rule.sample, &req) else {
                continue;
            };
            let matches = matches!(rule.action, StickAction::On | StickAction::Match);
            let stores = matches!(rule.action, StickAction::On | StickAction::StoreRequest);
            if matches && decision.is_none() {
                looked_up = true;
                match tables.lookup(TableKind::Rule, &key, now) {
                    Some(Lookup::Hit(server)) => {
                        decision = Some(Decision {
                            route: Route::Sticky {
                                server,
                                key: AffinityKey::Rule,
                            },
                            matched: MatchOutcome::Hit(AffinityKey::Rule),
                        })
                    }
                    Some(Lookup::Expired(_)) => expired = true,
                    _ => {}
                }
            }
            if stores && store.is_none() {
                store = Some(PendingStore { key });
            }
        }
        let decision = decision.unwrap_or_else(|| {
            Decision::balance(if expired {
                MatchOutcome::MissExpired
            } else if looked_up {
                MatchOutcome::MissUnknown
            } else {
                MatchOutcome::NoKey(NoKeyReason::NoSample)
            })
        });
        (decision, store)
    }

    /// Whether any rule stores from the response and response inspection lets it see data.
    pub fn learns_from_response(&self) -> bool {
        self.response_inspect
            && self
                .rules
                .iter()
                .any(|r| r.action == StickAction::StoreResponse)
    }

    /// Evaluates store-response rules on the first bytes of the response. `NeedMore` asks for
    /// more bytes; `Done(None)` means evaluation ended with nothing to store.
    pub fn on_response(&self, buf: &[u8], final_: bool) -> Progress<Option<Vec<u8>>> {
        if !self.learns_from_response() {
            // HAProxy >= 2.2 without tcp-response inspect-delay: evaluated on an empty buffer.
            return Progress::Done(None);
        }
        for rule in &self.rules {
            if rule.action != StickAction::StoreResponse {
                continue;
            }
            match condition(&rule.when, buf, final_) {
                Progress::NeedMore => return Progress::NeedMore,
                Progress::Done(true) => {}
                _ => continue,
            }
            match rule.sample {
                config::Sample::PayloadLv { offset, len_size } => {
                    match payload_lv(buf, offset as usize, usize::from(len_size), final_) {
                        Progress::NeedMore => return Progress::NeedMore,
                        Progress::Done(Some(k)) => return Progress::Done(Some(k.to_vec())),
                        Progress::Done(None) => continue,
                    }
                }
                // Neither is a response sample in HAProxy; the importer refuses them.
                config::Sample::Sni | config::Sample::Src => continue,
            }
        }
        Progress::Done(None)
    }
}

/// Evaluates an ACL on a buffer: `NeedMore` while undecided and not final. Conditions on the server
/// name or the source address are refused when the runtime is built (the import says what to
/// write instead), so they never reach here; they count as false.
fn condition(cond: &Condition, buf: &[u8], final_: bool) -> Progress<bool> {
    let want = match cond {
        Condition::Always => return Progress::Done(true),
        Condition::ClientHello => 1,
        Condition::ServerHello => 2,
        Condition::Not(inner) => return condition(inner, buf, final_).map(|b| !b),
        Condition::Sni(_) | Condition::Src(_) => return Progress::Done(false),
    };
    req_ssl_hello_type(buf, final_).map(|t| t == Some(want))
}

fn request_sample(sample: config::Sample, req: &RequestView<'_>) -> Option<Vec<u8>> {
    match sample {
        config::Sample::PayloadLv { offset, len_size } => {
            match payload_lv(req.buf, offset as usize, usize::from(len_size), true) {
                Progress::Done(Some(k)) => Some(k.to_vec()),
                _ => None,
            }
        }
        config::Sample::Sni => req.hello.and_then(|h| h.sni.as_deref()).map(<[u8]>::to_vec),
        config::Sample::Src => req.client.map(ip_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::affinity::test_tables::TestTables;
    use crate::{ServerId, Timestamp};

    /// A minimal hello record: type 1 (ClientHello) or 2 (ServerHello) with a session ID.
    fn hello_record(kind: u8, sid: &[u8]) -> Vec<u8> {
        use crate::tls::encode::{push_record, ClientHelloBuilder, ServerHelloBuilder};
        let message = if kind == 1 {
            ClientHelloBuilder::new([0xaa; 32])
                .session_id(sid)
                .cipher_suites(&[0x1301])
                .message()
        } else {
            ServerHelloBuilder::new([0xaa; 32])
                .session_id(sid)
                .message()
        };
        let mut rec = Vec::new();
        push_record(
            &mut rec,
            crate::tls::record::HANDSHAKE,
            crate::tls::ProtocolVersion::TLS1_0,
            &message,
        );
        rec
    }

    /// The seed's backend: `stick on payload_lv(43,1) if clienthello`,
    /// `stick store-response payload_lv(43,1) if serverhello`,
    /// `tcp-request content accept if clienthello`.
    fn seed_rules(response_inspect: bool) -> Rules {
        let lv = config::Sample::PayloadLv {
            offset: 43,
            len_size: 1,
        };
        Rules {
            rules: vec![
                StickRule {
                    action: StickAction::On,
                    sample: lv,
                    when: Condition::ClientHello,
                },
                StickRule {
                    action: StickAction::StoreResponse,
                    sample: lv,
                    when: Condition::ServerHello,
                },
            ],
            request_accept_if: Some(Condition::ClientHello),
            response_inspect,
        }
    }

    const T0: Timestamp = Timestamp(0);

    fn view(buf: &[u8]) -> RequestView<'_> {
        RequestView {
            buf,
            hello: None,
            client: None,
        }
    }

    #[test]
    fn inspection_waits_for_the_whole_client_hello() {
        let rules = seed_rules(false);
        let rec = hello_record(1, &[1; 32]);
        assert!(!rules.request_ready(&rec[..20], false));
        assert!(
            rules.request_ready(&rec[..20], true),
            "the deadline makes it final"
        );
        assert!(rules.request_ready(&rec, false));
        assert!(
            rules.request_ready(b"GET / HTTP/1.1\r\n", false),
            "not TLS: decided"
        );
    }

    #[test]
    fn a_new_session_has_nothing_to_stick_on() {
        let rules = seed_rules(false);
        let tables = TestTables::new(&[TableKind::Rule], 64);
        let (d, store) = rules.on_request(view(&hello_record(1, &[])), &tables, T0);
        assert_eq!(d.matched, MatchOutcome::NoKey(NoKeyReason::NoSample));
        assert_eq!(
            store, None,
            "an empty session ID is never stored (payload_lv length 0)"
        );
    }

    #[test]
    fn the_request_stores_and_later_matches_the_clients_id() {
        let rules = seed_rules(false);
        let tables = TestTables::new(&[TableKind::Rule], 64);
        let rec = hello_record(1, &[4; 32]);
        let (d, store) = rules.on_request(view(&rec), &tables, T0);
        assert_eq!(d.matched, MatchOutcome::MissUnknown);
        let store = store.expect("stick on stores on the request");
        assert_eq!(store.key, vec![4; 32]);
        tables.learn(TableKind::Rule, &store.key, ServerId(1), T0);
        let (d, _) = rules.on_request(view(&rec), &tables, T0);
        assert_eq!(
            d.route,
            Route::Sticky {
                server: ServerId(1),
                key: AffinityKey::Rule
            }
        );
    }

    #[test]
    fn store_response_never_fires_without_a_response_inspect_delay() {
        let server = hello_record(2, &[8; 32]);
        assert_eq!(
            seed_rules(false).on_response(&server, false),
            Progress::Done(None)
        );
        let with_delay = seed_rules(true);
        assert_eq!(
            with_delay.on_response(&server[..30], false),
            Progress::NeedMore
        );
        assert_eq!(
            with_delay.on_response(&server, false),
            Progress::Done(Some(vec![8; 32]))
        );
        // A TLS 1.3 ServerHello echoes the client's random ID: HAProxy stores it all the same.
        assert_eq!(
            with_delay.on_response(&hello_record(2, &[]), true),
            Progress::Done(None)
        );
    }
}
