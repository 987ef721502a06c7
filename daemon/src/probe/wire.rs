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
        if let HelloOutcome::Complete(hello) = parser.parse(client_to_server) {
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
    // Wire values for building the test streams.
    const CLIENT_HELLO: u8 = 1;
    const SERVER_HELLO: u8 = 2;
    const NEW_SESSION_TICKET: u8 = 4;
    const EXT_SESSION_TICKET: u16 = 0x0023;
    const EXT_PRE_SHARED_KEY: u16 = 0x0029;
    const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
    const HELLO_RETRY_RANDOM: [u8; 32] = tether_core::tls::HELLO_RETRY_REQUEST_RANDOM;
    use super::*;
    use proptest::prelude::*;

    fn record(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![kind, 3, 3];
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let len = body.len() as u32;
        let mut out = vec![kind, (len >> 16) as u8, (len >> 8) as u8, len as u8];
        out.extend_from_slice(body);
        out
    }

    fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    fn client_hello(session_id: &[u8], extensions: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(session_id.len() as u8);
        body.extend_from_slice(session_id);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        let exts: Vec<u8> = extensions.concat();
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        message(CLIENT_HELLO, &body)
    }

    fn server_hello(random: [u8; 32], session_id: &[u8], extensions: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&random);
        body.push(session_id.len() as u8);
        body.extend_from_slice(session_id);
        body.extend_from_slice(&[0xc0, 0x2f, 0]);
        let exts: Vec<u8> = extensions.concat();
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        message(SERVER_HELLO, &body)
    }

    #[test]
    fn reads_a_tls12_ticket_exchange_split_across_records() {
        let hello = client_hello(&[1; 32], &[ext(EXT_SESSION_TICKET, b"TICKET")]);
        let (a, b) = hello.split_at(10);
        let client = [record(0x16, a), record(0x16, b)].concat();
        let mut nst = 300u32.to_be_bytes().to_vec();
        nst.extend_from_slice(&[0, 3, 9, 9, 9]);
        let server = [
            record(
                0x16,
                &[
                    server_hello([5; 32], &[1; 32], &[]),
                    message(NEW_SESSION_TICKET, &nst),
                ]
                .concat(),
            ),
            record(0x14, &[1]),
            record(0x16, &[0xde, 0xad]),
        ]
        .concat();
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
        let mut psk = Vec::new();
        let identity = [0u8, 4, 0xaa, 0xbb, 0xcc, 0xdd, 0, 0, 0, 1];
        psk.extend_from_slice(&(identity.len() as u16).to_be_bytes());
        psk.extend_from_slice(&identity);
        psk.extend_from_slice(&[0, 33, 32]);
        psk.extend_from_slice(&[0; 32]);
        let client = record(
            0x16,
            &client_hello(&[2; 32], &[ext(EXT_PRE_SHARED_KEY, &psk)]),
        );
        let server = [
            record(
                0x16,
                &server_hello(
                    [5; 32],
                    &[2; 32],
                    &[
                        ext(EXT_SUPPORTED_VERSIONS, &[3, 4]),
                        ext(EXT_PRE_SHARED_KEY, &[0, 0]),
                    ],
                ),
            ),
            record(0x14, &[1]),
        ]
        .concat();
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
        let server = record(
            0x16,
            &[
                server_hello(
                    HELLO_RETRY_RANDOM,
                    &[3; 32],
                    &[ext(EXT_SUPPORTED_VERSIONS, &[3, 4])],
                ),
                server_hello([1; 32], &[3; 32], &[ext(EXT_SUPPORTED_VERSIONS, &[3, 4])]),
            ]
            .concat(),
        );
        let seen = WireObservation::from_streams(&[], &server);
        assert!(seen.hello_retry);
        assert_eq!(seen.server_version, Some(0x0304));
    }

    #[test]
    fn empty_and_truncated_streams_yield_nothing() {
        assert_eq!(
            WireObservation::from_streams(&[], &[]),
            WireObservation::default()
        );
        let hello = record(0x16, &client_hello(&[1; 32], &[]));
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
            let msgs: Vec<u8> = kinds.iter().zip(&bodies).flat_map(|(k, b)| message(*k, b)).collect();
            let stream = record(0x16, &msgs);
            let _ = WireObservation::from_streams(&stream, &stream);
        }

        #[test]
        fn the_offered_session_id_round_trips(id in proptest::collection::vec(any::<u8>(), 0..=32)) {
            let seen = WireObservation::from_streams(&record(0x16, &client_hello(&id, &[])), &[]);
            prop_assert_eq!(seen.offered_session_id, Some(id));
        }
    }
}
