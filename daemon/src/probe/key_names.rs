//! Whether each backend names its ticket keys: what `ticket-key` affinity can learn behind it.
//!
//! The probe sees every ticket it is given in clear on its own side: a TLS 1.2 NewSessionTicket
//! as the server sends it, a TLS 1.3 ticket as the next connection of the chain presents it (the
//! PSK identity is the ticket). Each distinct ticket is fed, under its issuing backend, to the
//! balancer's own learner ([`TicketKeys`]), so the probe's verdict is the one tether would reach:
//! a backend whose tickets share a key-name prefix is *named*, one whose prefixes never repeat is
//! *unnamed* (Go ≥ 1.21, rustls: a random prefix), a name seen from two backends is *shared*.
//! The probe reaches a verdict after fewer tickets than the balancer waits for, since it sees
//! whole tickets rather than guesses.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tether_core::affinity::ticket_keys::{KeyName, Limits, TicketKeys};
use tether_core::ServerId;

use super::report::{ConnectionReport, Identify, MechanismReport};

/// Distinct tickets with distinct names after which a backend is called unnamed.
pub const UNNAMED_AFTER: u32 = 3;

/// What the tickets of one backend say about its key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Naming {
    /// Its tickets share a key-name prefix no other backend uses: `ticket-key` learns it.
    Named,
    /// Its tickets' prefixes never repeat: nothing to learn; the chain falls through.
    Unnamed,
    /// Another backend issued tickets under the same name: they share a ticket key, so any of
    /// them resumes those tickets and no affinity is needed for them.
    Shared,
    /// Fewer than two tickets seen: too few to tell.
    TooFew,
}

/// One backend's tickets and their key names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendKeyNames {
    /// The backend, as the report names it.
    pub backend: String,
    /// Distinct tickets it issued, as seen by the probe.
    pub tickets: usize,
    /// Distinct key names among them, hex (the names, never the tickets).
    pub names: Vec<String>,
    /// The conclusion.
    pub naming: Naming,
}

/// Builds the per-backend conclusions from every chain of every mechanism.
pub fn key_names(mechanisms: &[MechanismReport], identify: Identify) -> Vec<BackendKeyNames> {
    let mut sightings = Sightings::default();
    for chain in mechanisms.iter().flat_map(|m| &m.chains) {
        let mut issuer_of_offer: Option<&ConnectionReport> = None;
        for c in &chain.connections {
            if let (Some(prev), Some(name), Some(digest)) =
                (issuer_of_offer, c.offered_key_name, offered_digest(c))
            {
                sightings.ticket(prev, identify, name, digest);
            }
            if let (Some(name), Some(digest)) = (c.issued_key_name, c.issued_ticket.as_deref()) {
                sightings.ticket(c, identify, name, digest);
            }
            issuer_of_offer = c.error.is_none().then_some(c);
        }
    }
    sightings.conclude()
}

fn offered_digest(c: &ConnectionReport) -> Option<&str> {
    c.offered_psk.as_deref().or(c.offered_ticket.as_deref())
}

#[derive(Default)]
struct Backend {
    id: u32,
    display: String,
    tickets: usize,
    names: BTreeSet<KeyName>,
}

#[derive(Default)]
struct Sightings {
    learner: Option<TicketKeys>,
    backends: BTreeMap<String, Backend>,
    seen: BTreeSet<String>,
}

impl Sightings {
    /// A ticket named `name` (digest `digest`) issued by `by`; each ticket counts once.
    fn ticket(&mut self, by: &ConnectionReport, identify: Identify, name: KeyName, digest: &str) {
        let Some(identity) = by.backend.as_ref() else {
            return;
        };
        if !self.seen.insert(digest.to_string()) {
            return;
        }
        let next = u32::try_from(self.backends.len()).unwrap_or(u32::MAX);
        let backend = self
            .backends
            .entry(identity.key(identify).to_string())
            .or_insert_with(|| Backend {
                id: next,
                display: identity.name.clone(),
                ..Backend::default()
            });
        backend.tickets += 1;
        backend.names.insert(name);
        let learner = self.learner.get_or_insert_with(|| {
            TicketKeys::new(Limits {
                unnamed_after: UNNAMED_AFTER,
                ..Limits::default()
            })
        });
        learner.on_issued(&name, ServerId(backend.id));
    }

    fn conclude(self) -> Vec<BackendKeyNames> {
        let learner = self.learner.unwrap_or_default();
        let mut out: Vec<(u32, BackendKeyNames)> = self
            .backends
            .into_values()
            .map(|b| {
                let naming = if learner.is_unnamed(ServerId(b.id)) {
                    Naming::Unnamed
                } else if b.tickets < 2 {
                    Naming::TooFew
                } else if b.names.iter().any(|n| learner.is_shared(n)) {
                    Naming::Shared
                } else {
                    Naming::Named
                };
                let report = BackendKeyNames {
                    backend: b.display,
                    tickets: b.tickets,
                    names: b.names.iter().map(KeyName::hex).collect(),
                    naming,
                };
                (b.id, report)
            })
            .collect();
        // In the order the backends were first seen issuing.
        out.sort_by_key(|(id, _)| *id);
        out.into_iter().map(|(_, r)| r).collect()
    }
}

/// One line per backend for the CLI.
pub fn describe(b: &BackendKeyNames) -> String {
    let first = b.names.first().map(String::as_str).unwrap_or("-");
    match b.naming {
        Naming::Named => format!(
            "{}: named, key {first}{} ({} tickets): ticket-key affinity learns it",
            b.backend,
            match b.names.len() {
                1 => String::new(),
                n => format!(" and {} more (rotation)", n - 1),
            },
            b.tickets
        ),
        Naming::Unnamed => format!(
            "{}: tickets carry no stable key name (random prefix, {} tickets, {} prefixes): \
             ticket-key affinity cannot learn it; the chain falls through to its next key",
            b.backend,
            b.tickets,
            b.names.len()
        ),
        Naming::Shared => format!(
            "{}: key {first} is shared with another backend ({} tickets): those tickets resume \
             anywhere, no affinity needed for them",
            b.backend, b.tickets
        ),
        Naming::TooFew => format!(
            "{}: {} ticket seen: too few to tell (raise --count)",
            b.backend, b.tickets
        ),
    }
}

#[cfg(test)]
mod tests;
