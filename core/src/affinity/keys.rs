//! The affinity keys a ClientHello carries, extracted once into an owned summary.
//!
//! The engine parses the hello from its inspect buffer, extracts [`HelloKeys`] and then drops the
//! borrowed view: the keys outlive the buffer (which is forwarded to the server) because learning
//! from the server's answer needs them (an echoed session ID, an accepted PSK).

use sha2::{Digest, Sha256};

use super::ticket_keys::{KeyName, NameSpan};
use crate::tls::{ClientHello, SessionId, TicketExt};

/// Length of a hashed key (ticket, PSK identity): SHA-256.
pub const HASHED_KEY_LEN: usize = 32;

/// What the client presented about its session.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TicketKey {
    /// No session_ticket extension: the client does not do RFC 5077.
    Absent,
    /// An empty extension: the client supports tickets and asks for one.
    Empty,
    /// A ticket, by its SHA-256 (tickets are up to 64 KiB; the hash is a fixed-size key).
    Present([u8; HASHED_KEY_LEN]),
}

/// The affinity-relevant content of a ClientHello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloKeys {
    /// `legacy_session_id` as sent (may be empty, or a TLS 1.3 client's random bytes).
    pub session_id: SessionId,
    /// The session_ticket extension.
    pub ticket: TicketKey,
    /// SHA-256 of the first PSK identity, if the client offered one.
    pub psk: Option<[u8; HASHED_KEY_LEN]>,
    /// The server name, if sent.
    pub sni: Option<Box<[u8]>>,
    /// The client offers TLS 1.3 (supported_versions lists 0x0304).
    pub offers_tls13: bool,
    /// The key name of the ticket presented, when the chain uses `ticket-key`.
    pub ticket_name: Option<PresentedName>,
}

/// A ticket key name as a ClientHello presented it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PresentedName {
    /// The name.
    pub name: KeyName,
    /// It came from the first TLS 1.3 PSK identity (else from the TLS 1.2 session ticket):
    /// which ServerHello field confirms it depends on this.
    pub from_psk: bool,
}

impl PresentedName {
    /// The name of the first PSK identity, else of the session ticket, cut at `span`.
    pub fn extract(hello: &ClientHello<'_>, span: NameSpan) -> Option<Self> {
        if let Some(id) = hello.psk_identities().next() {
            return KeyName::from_ticket(id, span).map(|name| PresentedName {
                name,
                from_psk: true,
            });
        }
        match hello.session_ticket() {
            TicketExt::Ticket(t) => KeyName::from_ticket(t, span).map(|name| PresentedName {
                name,
                from_psk: false,
            }),
            TicketExt::Absent | TicketExt::Empty => None,
        }
    }
}

impl HelloKeys {
    /// Extracts the keys. Hashing costs a SHA-256 per ticket or identity, so callers say which
    /// of them their affinity configuration uses.
    pub fn extract(hello: &ClientHello<'_>, want_ticket: bool, want_psk: bool) -> Self {
        let session_id = SessionId::from_slice(hello.session_id()).unwrap_or_default();
        let ticket = match hello.session_ticket() {
            TicketExt::Absent => TicketKey::Absent,
            TicketExt::Empty => TicketKey::Empty,
            TicketExt::Ticket(t) if want_ticket => TicketKey::Present(hash_key(t)),
            TicketExt::Ticket(_) => TicketKey::Empty,
        };
        let psk = if want_psk {
            hello.psk_identities().next().map(hash_key)
        } else {
            None
        };
        HelloKeys {
            session_id,
            ticket,
            psk,
            sni: hello.server_name().map(Box::from),
            offers_tls13: hello.offers_tls13(),
            ticket_name: None,
        }
    }

    /// The session ID is a TLS 1.3 client's random `legacy_session_id`, not a session: the client
    /// offers 1.3 and resumes nothing by ticket or PSK.
    pub fn session_id_looks_random(&self) -> bool {
        self.offers_tls13
            && !self.session_id.is_empty()
            && self.psk.is_none()
            && !matches!(self.ticket, TicketKey::Present(_))
    }
}

/// The table key of a ticket or PSK identity.
pub fn hash_key(bytes: &[u8]) -> [u8; HASHED_KEY_LEN] {
    Sha256::digest(bytes).into()
}
