//! What the probe saw in cleartext on the wire: the session ID and ticket it offered, the session
//! ID the server answered with, a TLS 1.2 ticket the server issued, and whether a TLS 1.3 PSK was
//! accepted.
//!
//! rustls keeps these inside its session values, so the probe reads them from the bytes it sent
//! and received, exactly where a balancer reads them. Parsing is bounded and never panics: a byte
//! stream it does not understand yields nothing, not an error the operator must care about.

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
    /// Read both directions' captured bytes (each from the start of the connection).
    pub fn from_streams(client_to_server: &[u8], server_to_client: &[u8]) -> Self {
        let mut seen = Self::default();
        let client = handshake_messages(client_to_server);
        if let Some((_, body)) = messages(&client).find(|(t, _)| *t == CLIENT_HELLO) {
            if let Some(hello) = ClientHello::parse(body) {
                seen.offered_session_id = Some(hello.session_id.to_vec());
                seen.offered_ticket = hello.ticket.filter(|t| !t.is_empty()).map(<[u8]>::to_vec);
                seen.offered_psk_identity = hello.psk_identity.map(<[u8]>::to_vec);
            }
        }
        let server = handshake_messages(server_to_client);
        for (kind, body) in messages(&server) {
            match kind {
                SERVER_HELLO if seen.server_session_id.is_none() || seen.hello_retry => {
                    if let Some(hello) = ServerHello::parse(body) {
                        seen.hello_retry |= hello.is_retry;
                        seen.server_session_id = Some(hello.session_id.to_vec());
                        seen.server_version = Some(hello.version);
                        seen.psk_accepted = hello.psk_selected;
                    }
                }
                NEW_SESSION_TICKET => {
                    if let Some(ticket) = tls12_ticket(body) {
                        seen.issued_ticket = Some(ticket.to_vec());
                    }
                }
                _ => {}
            }
        }
        seen
    }
}

const RECORD_HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const NEW_SESSION_TICKET: u8 = 4;
const EXT_SESSION_TICKET: u16 = 0x0023;
const EXT_PRE_SHARED_KEY: u16 = 0x0029;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
/// SHA-256("HelloRetryRequest"), the random of a HelloRetryRequest (RFC 8446 4.1.3).
const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Concatenated handshake-record payloads from the start of a stream, up to the first record of
/// another type (ChangeCipherSpec: what follows is encrypted) or an incomplete record.
fn handshake_messages(stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut r = Reader::new(stream);
    while let (Some(kind), Some(_version), Some(fragment)) = (r.u8(), r.u16(), r.vec_u16()) {
        if kind != RECORD_HANDSHAKE {
            break;
        }
        out.extend_from_slice(fragment);
    }
    out
}

/// Complete handshake messages (type, body) in `bytes`, stopping at a truncated one.
fn messages(bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut r = Reader::new(bytes);
    std::iter::from_fn(move || {
        let kind = r.u8()?;
        let len = r.u24()?;
        Some((kind, r.take(len)?))
    })
}

struct ClientHello<'a> {
    session_id: &'a [u8],
    ticket: Option<&'a [u8]>,
    psk_identity: Option<&'a [u8]>,
}

impl<'a> ClientHello<'a> {
    fn parse(body: &'a [u8]) -> Option<Self> {
        let mut r = Reader::new(body);
        r.take(2 + 32)?;
        let session_id = r.vec_u8()?;
        r.vec_u16()?; // cipher suites
        r.vec_u8()?; // compression methods
        let mut hello = Self {
            session_id,
            ticket: None,
            psk_identity: None,
        };
        if r.is_empty() {
            return Some(hello);
        }
        let mut extensions = Reader::new(r.vec_u16()?);
        while !extensions.is_empty() {
            let kind = extensions.u16()?;
            let data = extensions.vec_u16()?;
            match kind {
                EXT_SESSION_TICKET => hello.ticket = Some(data),
                EXT_PRE_SHARED_KEY => {
                    let mut identities = Reader::new(Reader::new(data).vec_u16()?);
                    hello.psk_identity = identities.vec_u16();
                }
                _ => {}
            }
        }
        Some(hello)
    }
}

struct ServerHello<'a> {
    version: u16,
    session_id: &'a [u8],
    psk_selected: bool,
    is_retry: bool,
}

impl<'a> ServerHello<'a> {
    fn parse(body: &'a [u8]) -> Option<Self> {
        let mut r = Reader::new(body);
        let legacy_version = r.u16()?;
        let random = r.take(32)?;
        let session_id = r.vec_u8()?;
        r.take(2 + 1)?; // cipher suite, compression
        let mut hello = Self {
            version: legacy_version,
            session_id,
            psk_selected: false,
            is_retry: random == HELLO_RETRY_RANDOM,
        };
        if r.is_empty() {
            return Some(hello);
        }
        let mut extensions = Reader::new(r.vec_u16()?);
        while !extensions.is_empty() {
            let kind = extensions.u16()?;
            let data = extensions.vec_u16()?;
            match kind {
                EXT_SUPPORTED_VERSIONS => hello.version = Reader::new(data).u16()?,
                EXT_PRE_SHARED_KEY => hello.psk_selected = true,
                _ => {}
            }
        }
        Some(hello)
    }
}

/// The ticket of a TLS 1.2 NewSessionTicket (`lifetime_hint u32, ticket<0..2^16-1>`).
fn tls12_ticket(body: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(body);
    r.take(4)?;
    let ticket = r.vec_u16()?;
    // A TLS 1.3 NewSessionTicket is encrypted and never reaches here; if a stray one did, its
    // trailing fields would not fit this shape.
    r.is_empty().then_some(ticket)
}

/// A bounds-checked cursor over borrowed bytes.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    fn vec_u8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    fn vec_u16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

#[cfg(test)]
mod tests {
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
