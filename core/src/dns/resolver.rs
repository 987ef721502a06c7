//! The resolutions of one `resolvers` section, as HAProxy 2.6 runs them (`src/resolvers.c`),
//! without IO: the runner feeds it the time and the datagrams that arrive, and sends the
//! queries it asks for.
//!
//! Each host name is resolved every `timeout resolve` after its previous resolution ended. A
//! resolution sends its query to every name server at once and takes the first valid answer
//! (a known address of the asked family, following CNAMEs). When every name server answered
//! with an error, the other family is asked at once (A ↔ AAAA); when no valid answer came within
//! `timeout retry`, the query is sent again, up to `resolve_retries` times in all. A resolution
//! that ends in an error reports it with whether the status's `hold` period has passed since the
//! last valid answer: then the server goes into maintenance. Query ids come from a sequence the
//! runner seeds; a datagram whose id, name or type does not match the query in flight is
//! ignored.

use std::net::IpAddr;

use super::wire::{decode_response, encode_query, QType, Rcode};
use crate::config::resolvers::{Family, Hold, Resolvers};
use crate::Timestamp;

/// How a resolution ended without an address.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// NXDOMAIN.
    NxDomain,
    /// REFUSED.
    Refused,
    /// No answer within every retry.
    Timeout,
    /// Anything else: no record of the family, truncated, SERVFAIL...
    Other,
}

impl Failure {
    /// HAProxy's words for the maintenance reason.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::NxDomain => "DNS NX status",
            Failure::Refused => "DNS refused status",
            Failure::Timeout => "DNS timeout status",
            Failure::Other => "unspecified DNS error",
        }
    }

    fn hold(self, h: &Hold) -> std::time::Duration {
        match self {
            Failure::NxDomain => h.nx,
            Failure::Refused => h.refused,
            Failure::Timeout => h.timeout,
            Failure::Other => h.other,
        }
    }
}

/// What the runner is to do, or learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send `packet` to name server `nameserver` (an index into the section's list).
    Query {
        /// Which name server.
        nameserver: usize,
        /// The datagram.
        packet: Vec<u8>,
    },
    /// Name `name` (an index into the names given to [`Resolver::new`]) has these addresses.
    Resolved {
        /// Which name.
        name: usize,
        /// Its addresses, in answer order (never empty).
        addrs: Vec<IpAddr>,
    },
    /// Name `name`'s resolution failed.
    Failed {
        /// Which name.
        name: usize,
        /// Why.
        failure: Failure,
        /// No valid answer within the failure's `hold` period: servers using the name go
        /// into maintenance and lose their address.
        hold_expired: bool,
    },
}

/// A name to resolve and the family asked first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    /// The host name.
    pub host: String,
    /// `resolve-prefer`.
    pub prefer: Family,
}

/// A query in flight.
#[derive(Debug)]
struct Running {
    id: u16,
    qtype: QType,
    last_query: Timestamp,
    tries_left: u32,
    responses: usize,
    last_error: Failure,
}

#[derive(Debug)]
struct Resolution {
    name: Name,
    prefer: QType,
    last_resolution: Option<Timestamp>,
    last_valid: Option<Timestamp>,
    running: Option<Running>,
}

/// The resolutions of one section.
#[derive(Debug)]
pub struct Resolver {
    settings: Resolvers,
    resolutions: Vec<Resolution>,
    ids: u64,
}

impl Resolver {
    /// Resolutions for `names` under `settings`, each due at once; query ids follow a sequence
    /// seeded with `id_seed` (the runner's secret: off-path spoofers cannot guess ids).
    pub fn new(settings: Resolvers, names: Vec<Name>, id_seed: u64) -> Self {
        let resolutions = names
            .into_iter()
            .map(|name| Resolution {
                prefer: match name.prefer {
                    Family::Ipv4 => QType::A,
                    Family::Ipv6 => QType::Aaaa,
                },
                name,
                last_resolution: None,
                last_valid: None,
                running: None,
            })
            .collect();
        Resolver {
            settings,
            resolutions,
            ids: id_seed | 1,
        }
    }

    /// The names, in the order outputs refer to them.
    pub fn names(&self) -> impl Iterator<Item = &Name> {
        self.resolutions.iter().map(|r| &r.name)
    }

    /// When [`Resolver::poll`] has something to do next.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.resolutions
            .iter()
            .map(|r| match (&r.running, r.last_resolution) {
                (Some(q), _) => q.last_query + self.settings.timeout_retry,
                (None, Some(t)) => t + self.settings.timeout_resolve,
                (None, None) => Timestamp::ZERO,
            })
            .min()
    }

    /// Starts due resolutions and handles queries whose retry time passed.
    pub fn poll(&mut self, now: Timestamp) -> Vec<Output> {
        let mut out = Vec::new();
        for i in 0..self.resolutions.len() {
            let r = &self.resolutions[i];
            match &r.running {
                Some(q) if now >= q.last_query + self.settings.timeout_retry => {
                    self.retry(i, now, &mut out)
                }
                Some(_) => {}
                None if r
                    .last_resolution
                    .is_none_or(|t| now >= t + self.settings.timeout_resolve) =>
                {
                    self.start(i, now, &mut out)
                }
                None => {}
            }
        }
        out
    }

    /// Reads a datagram from name server `nameserver`.
    pub fn receive(&mut self, now: Timestamp, nameserver: usize, packet: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        if nameserver >= self.settings.nameservers.len() {
            return out;
        }
        let Ok(resp) = decode_response(packet) else {
            return out;
        };
        let Some(i) = self.resolutions.iter().position(|r| {
            r.running
                .as_ref()
                .is_some_and(|q| resp.answers_query(q.id, &r.name.host, q.qtype))
        }) else {
            return out;
        };
        let r = &mut self.resolutions[i];
        let Some(q) = r.running.as_mut() else {
            return out;
        };
        q.responses += 1;
        let addrs = resp.addresses(&r.name.host, q.qtype);
        let failure = match resp.rcode {
            _ if resp.truncated => Failure::Other,
            Rcode::NoError if !addrs.is_empty() => {
                r.last_valid = Some(now);
                self.finish(i, now);
                out.push(Output::Resolved { name: i, addrs });
                return out;
            }
            Rcode::NxDomain => Failure::NxDomain,
            Rcode::Refused => Failure::Refused,
            _ => Failure::Other,
        };
        q.last_error = failure;
        if q.responses < self.settings.nameservers.len() {
            return out; // another name server may still answer well
        }
        if q.qtype != r.prefer {
            if q.tries_left == 0 {
                self.fail(i, now, failure, &mut out);
            }
            // else: the retry timer asks again with the preferred type
        } else {
            let other = q.qtype.other();
            self.send(i, other, now, &mut out);
        }
        out
    }

    fn start(&mut self, i: usize, now: Timestamp, out: &mut Vec<Output>) {
        let r = &mut self.resolutions[i];
        let prefer = r.prefer;
        r.running = Some(Running {
            id: 0,
            qtype: prefer,
            last_query: now,
            tries_left: self.settings.resolve_retries,
            responses: 0,
            last_error: Failure::Timeout,
        });
        self.send_try(i, prefer, now, out);
    }

    /// HAProxy's retry: out of tries → fail; otherwise the preferred type again (after a
    /// timeout, or when the fallback was done) or the other type (some answered, not yet
    /// fallen back).
    fn retry(&mut self, i: usize, now: Timestamp, out: &mut Vec<Output>) {
        let r = &self.resolutions[i];
        let Some(q) = &r.running else { return };
        if q.tries_left == 0 {
            let failure = if q.responses == 0 {
                Failure::Timeout
            } else {
                q.last_error
            };
            self.fail(i, now, failure, out);
        } else if q.responses == 0 || q.qtype != r.prefer {
            self.send_try(i, r.prefer, now, out);
        } else {
            let other = q.qtype.other();
            self.send(i, other, now, out);
        }
    }

    /// Sends a query counting one try.
    fn send_try(&mut self, i: usize, qtype: QType, now: Timestamp, out: &mut Vec<Output>) {
        if let Some(q) = self.resolutions[i].running.as_mut() {
            q.tries_left = q.tries_left.saturating_sub(1);
        }
        self.send(i, qtype, now, out);
    }

    /// Sends the query of resolution `i` for `qtype` to every name server, with a fresh id.
    fn send(&mut self, i: usize, qtype: QType, now: Timestamp, out: &mut Vec<Output>) {
        let id = self.next_id();
        let payload = self.settings.accepted_payload_size;
        let r = &mut self.resolutions[i];
        let Ok(packet) = encode_query(id, &r.name.host, qtype, payload) else {
            // Not a valid DNS name: never resolvable.
            self.fail(i, now, Failure::Other, out);
            return;
        };
        if let Some(q) = r.running.as_mut() {
            *q = Running {
                id,
                qtype,
                last_query: now,
                responses: 0,
                ..*q
            };
        }
        for nameserver in 0..self.settings.nameservers.len() {
            out.push(Output::Query {
                nameserver,
                packet: packet.clone(),
            });
        }
    }

    fn fail(&mut self, i: usize, now: Timestamp, failure: Failure, out: &mut Vec<Output>) {
        let hold = failure.hold(&self.settings.hold);
        let hold_expired = self.resolutions[i]
            .last_valid
            .is_none_or(|v| now >= v + hold);
        self.finish(i, now);
        out.push(Output::Failed {
            name: i,
            failure,
            hold_expired,
        });
    }

    fn finish(&mut self, i: usize, now: Timestamp) {
        let r = &mut self.resolutions[i];
        r.running = None;
        r.last_resolution = Some(now);
    }

    /// The next query id (xorshift over the runner's seed), never one already in flight.
    fn next_id(&mut self) -> u16 {
        loop {
            self.ids ^= self.ids << 13;
            self.ids ^= self.ids >> 7;
            self.ids ^= self.ids << 17;
            let id = (self.ids >> 16) as u16;
            let in_flight = self
                .resolutions
                .iter()
                .any(|r| r.running.as_ref().is_some_and(|q| q.id == id));
            if !in_flight {
                return id;
            }
        }
    }
}

/// The address a server takes from a resolution: its current one while the answer still
/// holds it (HAProxy keeps a server's address when it is among the records), else the first.
pub fn pick_address(current: Option<IpAddr>, addrs: &[IpAddr]) -> Option<IpAddr> {
    match current {
        Some(c) if addrs.contains(&c) => Some(c),
        _ => addrs.first().copied(),
    }
}

#[cfg(test)]
#[path = "resolver_tests.rs"]
mod tests;
