//! What the probe saw in cleartext on the wire: the session ID and ticket it offered, the session
//! ID the server answered with, a TLS 1.2 ticket the server issued, and whether a TLS 1.3 PSK was
//! accepted.
//!
//! rustls keeps these inside its session values, so the probe reads them from the bytes it sent
//! and received, exactly where a balancer reads them. Parsing is bounded and never panics: a byte
//! stream it does not understand yields nothing, not an error the operator must care about.

use tether_core::tls::{
    ClientHelloParser, HelloOutcome, ServerEvent, ServerFlight, TicketExt, DEFAULT_HELLO_CAP,
};
use tether_core::Progress;

/// The cleartext handshake facts of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WireObservation {
    /// The ClientHello legacy session ID (what `payload_lv(43,1)` reads).
    pub offered_session_id: Option<Vec<u8>>,
    /// The RFC 5077 ticket in the ClientHello `session_ticket` extension, if non-empty.
    pub offered_ticket: Option<Vec<u8>>,
    /// The first TLS 1.3 PSK identity the ClientHello offered.
    pub offered_psk_identity: Option<Vec<u8>>,
    /// The ServerHello session ID.
    pub server_session_id: Option<Vec<u8>>,
    /// The version the ServerHello selected (`supported_versions`, else the legacy field).
    pub server_version: Option<u16>,
    /// The ServerHello carried `pre_shared_key`: the server accepted the offered PSK.
    pub psk_accepted: bool,
    /// The first ServerHello was a HelloRetryRequest.
    pub hello_retry: bool,
    /// A TLS 1.2 NewSessionTicket the server sent (cleartext, before its ChangeCipherSpec).
    pub issued_ticket: Option<Vec<u8>>,
}

impl WireObservation {
    /// Read both directions' captured bytes (each from the start of the connection), with the
    /// same parsers the balancer uses (`tether_core::tls`).
    pub fn from_streams(client_to_server: &[u8], server_to_client: &[u8]) -> Self {
        let mut seen = Self::default();
        let mut parser = ClientHelloParser::new(DEFAULT_HELLO_CAP);
        if let Progress::Done(HelloOutcome::Complete(hello)) = parser.parse(client_to_server) {
            seen.offered_session_id = Some(hello.session_id().to_vec());
            seen.offered_ticket = match hello.session_ticket() {
                TicketExt::Ticket(t) => Some(t.to_vec()),
                TicketExt::Absent | TicketExt::Empty => None,
            };
            seen.offered_psk_identity = hello.psk_identities().next().map(<[u8]>::to_vec);
        }
        let mut flight = ServerFlight::new(DEFAULT_HELLO_CAP);
        for event in flight.feed(server_to_client) {
            match event {
                ServerEvent::ServerHello(info) => {
                    seen.hello_retry |= info.hello_retry_request;
                    seen.server_session_id = Some(info.session_id.as_slice().to_vec());
                    seen.server_version = Some(info.negotiated.0);
                    seen.psk_accepted = info.psk_selected.is_some();
                }
                ServerEvent::NewSessionTicket { ticket, .. } => seen.issued_ticket = Some(ticket),
                _ => {}
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tether_core::tls::encode::{
        push_change_cipher_spec, push_handshake, push_new_session_ticket12, push_record,
        ClientHelloBuilder, ServerHelloBuilder,
    };
    use tether_core::tls::record::HANDSHAKE;
    use tether_core::tls::{ProtocolVersion, HELLO_RETRY_REQUEST_RANDOM};

    const V12: ProtocolVersion = ProtocolVersion::TLS1_2;

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_record(&mut out, HANDSHAKE, V12, payload);
        out
    }

    fn client_hello(session_id: &[u8]) -> ClientHelloBuilder {
        let mut hello = ClientHelloBuilder::new([7; 32]);
        hello
            .session_id(session_id)
            .cipher_suites(&[0x1301])
            .empty_extensions();
        hello
    }

    fn server_hello(random: [u8; 32], session_id: &[u8]) -> ServerHelloBuilder {
        let mut hello = ServerHelloBuilder::new(random);
        hello
            .session_id(session_id)
            .cipher_suite(0xc02f)
            .empty_extensions();
        hello
    }

    #[test]
    fn reads_a_tls12_ticket_exchange_split_across_records() {
        let hello = client_hello(&[1; 32]).session_ticket(b"TICKET").message();
        let (a, b) = hello.split_at(10);
        let client = [record(a), record(b)].concat();
        let mut flight = server_hello([5; 32], &[1; 32]).message();
        push_new_session_ticket12(&mut flight, 300, &[9, 9, 9]);
        let mut server = record(&flight);
        push_change_cipher_spec(&mut server, V12);
        push_record(&mut server, HANDSHAKE, V12, &[0xde, 0xad]);
        let seen = WireObservation::from_streams(&client, &server);
        assert_eq!(seen.offered_session_id.as_deref(), Some(&[1u8; 32][..]));
        assert_eq!(seen.offered_ticket.as_deref(), Some(&b"TICKET"[..]));
        assert_eq!(seen.server_session_id.as_deref(), Some(&[1u8; 32][..]));
        assert_eq!(seen.server_version, Some(0x0303));
        assert_eq!(seen.issued_ticket.as_deref(), Some(&[9u8, 9, 9][..]));
        assert!(!seen.psk_accepted);
    }

    #[test]
    fn reads_a_tls13_psk_offer_and_acceptance() {
        let client = record(
            &client_hello(&[2; 32])
                .pre_shared_key(&[(&[0xaa, 0xbb, 0xcc, 0xdd], 1)], &[&[0; 32]])
                .message(),
        );
        let mut server = record(
            &server_hello([5; 32], &[2; 32])
                .supported_version(ProtocolVersion::TLS1_3)
                .pre_shared_key(0)
                .message(),
        );
        push_change_cipher_spec(&mut server, V12);
        let seen = WireObservation::from_streams(&client, &server);
        assert_eq!(
            seen.offered_psk_identity.as_deref(),
            Some(&[0xaa, 0xbb, 0xcc, 0xdd][..])
        );
        assert_eq!(seen.server_version, Some(0x0304));
        assert!(seen.psk_accepted);
        assert_eq!(seen.offered_ticket, None);
    }

    #[test]
    fn a_hello_retry_is_followed_by_the_real_server_hello() {
        let mut flight = Vec::new();
        for random in [HELLO_RETRY_REQUEST_RANDOM, [1; 32]] {
            server_hello(random, &[3; 32])
                .supported_version(ProtocolVersion::TLS1_3)
                .push_message(&mut flight);
        }
        let seen = WireObservation::from_streams(&[], &record(&flight));
        assert!(seen.hello_retry);
        assert_eq!(seen.server_version, Some(0x0304));
    }

    #[test]
    fn empty_and_truncated_streams_yield_nothing() {
        assert_eq!(
            WireObservation::from_streams(&[], &[]),
            WireObservation::default()
        );
        let hello = record(&client_hello(&[1; 32]).message());
        let seen = WireObservation::from_streams(&hello[..hello.len() - 1], &[]);
        assert_eq!(seen.offered_session_id, None);
    }

    proptest! {
        #[test]
        fn never_panics(
            client in proptest::collection::vec(any::<u8>(), 0..600),
            server in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let _ = WireObservation::from_streams(&client, &server);
        }

        #[test]
        fn never_panics_on_handshake_shaped_noise(
            kinds in proptest::collection::vec(0u8..6, 1..4),
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..4),
        ) {
            let mut msgs = Vec::new();
            for (k, b) in kinds.iter().zip(&bodies) {
                push_handshake(&mut msgs, *k, b);
            }
            let stream = record(&msgs);
            let _ = WireObservation::from_streams(&stream, &stream);
        }

        #[test]
        fn the_offered_session_id_round_trips(id in proptest::collection::vec(any::<u8>(), 0..=32)) {
            let seen = WireObservation::from_streams(&record(&client_hello(&id).message()), &[]);
            prop_assert_eq!(seen.offered_session_id, Some(id));
        }
    }
}
