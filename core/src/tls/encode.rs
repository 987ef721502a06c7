//! TLS encoders beside the decoders: records, handshake messages, hellos and tickets as bytes.
//!
//! The balancer only reads TLS. These writers are for the peers that have to produce it: the
//! simulator's client and server models, the probe's and the benchmarks' fixtures, and the
//! round-trip property tests of the parsers in this module. The simulator ships inside the
//! `tether` binary, so this is not test-only code and is compiled always (it has no
//! dependencies and costs nothing to the engine, which never calls it).
//!
//! Only the framing is written, never any cryptography: key shares, binders and tickets are
//! whatever bytes the caller passes. Every function appends to a caller's `Vec<u8>`, so a
//! flight of several messages is built in one buffer.
//!
//! # Panics
//! A body longer than its length field can say (a record over 65535 bytes, an SNI over 65535,
//! a session ID over 255...) is a caller bug, not a wire condition: the encoders panic with the
//! prefix width and the length rather than write a wrong length.

use super::extension;
use super::record::{
    CHANGE_CIPHER_SPEC, CLIENT_HELLO, HEADER_LEN, MAX_PLAINTEXT, NEW_SESSION_TICKET, SERVER_HELLO,
};
use super::ProtocolVersion;

/// Width of a length prefix (`opaque x<0..2^8-1>`, `<0..2^16-1>`, `<0..2^24-1>`), so every
/// vector is written by one function whatever its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// One byte.
    U8,
    /// Two bytes, big-endian.
    U16,
    /// Three bytes, big-endian (handshake message lengths, certificate lists).
    U24,
}

impl Prefix {
    fn width(self) -> usize {
        match self {
            Prefix::U8 => 1,
            Prefix::U16 => 2,
            Prefix::U24 => 3,
        }
    }

    fn max(self) -> usize {
        (1 << (8 * self.width())) - 1
    }

    /// Writes `len` over the `width()` bytes at `at`.
    fn patch(self, out: &mut [u8], at: usize, len: usize) {
        assert!(
            len <= self.max(),
            "a TLS vector with a {}-byte length holds at most {} bytes, got {len}",
            self.width(),
            self.max()
        );
        let bytes = (len as u32).to_be_bytes();
        out[at..at + self.width()].copy_from_slice(&bytes[4 - self.width()..]);
    }
}

/// Appends `body` with a length prefix of width `prefix`.
pub fn push_vec(out: &mut Vec<u8>, prefix: Prefix, body: &[u8]) {
    push_prefixed(out, prefix, |out| out.extend_from_slice(body));
}

/// Appends a length prefix of width `prefix` and whatever `body` writes after it, then sets
/// the prefix: nested structures are written in place, without a buffer per level.
pub fn push_prefixed(out: &mut Vec<u8>, prefix: Prefix, body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.resize(at + prefix.width(), 0);
    body(out);
    let len = out.len() - at - prefix.width();
    prefix.patch(out, at, len);
}

/// Appends a 5-byte record header announcing `len` payload bytes, for callers that write the
/// payload themselves (the simulator's stand-in encrypted records).
pub fn push_record_header(out: &mut Vec<u8>, typ: u8, version: ProtocolVersion, len: usize) {
    assert!(
        len <= usize::from(u16::MAX),
        "TLS record holds at most 65535 bytes, got {len}"
    );
    out.reserve(HEADER_LEN + len);
    out.push(typ);
    out.extend_from_slice(&version.0.to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
}

/// Appends `payload` as records of type `typ`, cut at the 16 KiB plaintext limit; an empty
/// payload is one empty record.
pub fn push_record(out: &mut Vec<u8>, typ: u8, version: ProtocolVersion, payload: &[u8]) {
    if payload.is_empty() {
        push_record_header(out, typ, version, 0);
    }
    for fragment in payload.chunks(MAX_PLAINTEXT) {
        push_record_header(out, typ, version, fragment.len());
        out.extend_from_slice(fragment);
    }
}

/// Appends a ChangeCipherSpec record (its one byte, 1).
pub fn push_change_cipher_spec(out: &mut Vec<u8>, version: ProtocolVersion) {
    push_record(out, CHANGE_CIPHER_SPEC, version, &[1]);
}

/// Appends a handshake message: type, u24 length, `body`.
pub fn push_handshake(out: &mut Vec<u8>, msg_type: u8, body: &[u8]) {
    out.push(msg_type);
    push_vec(out, Prefix::U24, body);
}

/// Appends one hello extension: type, u16 length, `data`.
pub fn push_extension(out: &mut Vec<u8>, typ: u16, data: &[u8]) {
    out.extend_from_slice(&typ.to_be_bytes());
    push_vec(out, Prefix::U16, data);
}

/// Appends a TLS ≤ 1.2 NewSessionTicket message (RFC 5077): lifetime hint and ticket.
pub fn push_new_session_ticket12(out: &mut Vec<u8>, lifetime_secs: u32, ticket: &[u8]) {
    out.push(NEW_SESSION_TICKET);
    push_prefixed(out, Prefix::U24, |b| {
        b.extend_from_slice(&lifetime_secs.to_be_bytes());
        push_vec(b, Prefix::U16, ticket);
    });
}

/// Appends a TLS 1.3 NewSessionTicket message (RFC 8446 §4.6.1) with no extensions. It travels
/// encrypted, so only peers (not the balancer) read it.
pub fn push_new_session_ticket13(
    out: &mut Vec<u8>,
    lifetime_secs: u32,
    age_add: u32,
    nonce: &[u8],
    ticket: &[u8],
) {
    out.push(NEW_SESSION_TICKET);
    push_prefixed(out, Prefix::U24, |b| {
        b.extend_from_slice(&lifetime_secs.to_be_bytes());
        b.extend_from_slice(&age_add.to_be_bytes());
        push_vec(b, Prefix::U8, nonce);
        push_vec(b, Prefix::U16, ticket);
        push_vec(b, Prefix::U16, &[]);
    });
}

/// The bodies of the hello extensions tether reads, each appended to `out` without the
/// extension's own type and length: for tests that assemble extension blocks themselves (out of
/// order, duplicated), and for the builders below.
pub mod extension_data {
    use super::{push_prefixed, push_u16s, push_vec, Prefix};
    use crate::tls::ProtocolVersion;

    /// server_name with one host_name entry.
    pub fn server_name(out: &mut Vec<u8>, host: &[u8]) {
        push_prefixed(out, Prefix::U16, |list| {
            list.push(0); // name_type host_name
            push_vec(list, Prefix::U16, host);
        });
    }

    /// supported_groups.
    pub fn supported_groups(out: &mut Vec<u8>, groups: &[u16]) {
        push_prefixed(out, Prefix::U16, |list| push_u16s(list, groups));
    }

    /// application_layer_protocol_negotiation with `protocols` in order.
    pub fn alpn(out: &mut Vec<u8>, protocols: &[&[u8]]) {
        push_prefixed(out, Prefix::U16, |list| {
            for p in protocols {
                push_vec(list, Prefix::U8, p);
            }
        });
    }

    /// supported_versions as a client lists them.
    pub fn supported_versions(out: &mut Vec<u8>, versions: &[ProtocolVersion]) {
        push_prefixed(out, Prefix::U8, |list| {
            for v in versions {
                list.extend_from_slice(&v.0.to_be_bytes());
            }
        });
    }

    /// psk_key_exchange_modes (1 = psk_dhe_ke).
    pub fn psk_key_exchange_modes(out: &mut Vec<u8>, modes: &[u8]) {
        push_vec(out, Prefix::U8, modes);
    }

    /// key_share as a client sends it: one (group, key exchange bytes) entry per share.
    pub fn key_share(out: &mut Vec<u8>, shares: &[(u16, &[u8])]) {
        push_prefixed(out, Prefix::U16, |list| {
            for (group, key) in shares {
                list.extend_from_slice(&group.to_be_bytes());
                push_vec(list, Prefix::U16, key);
            }
        });
    }

    /// pre_shared_key as a client sends it: (identity, obfuscated ticket age) pairs, then
    /// the binders.
    pub fn pre_shared_key(out: &mut Vec<u8>, identities: &[(&[u8], u32)], binders: &[&[u8]]) {
        push_prefixed(out, Prefix::U16, |list| {
            for (identity, age) in identities {
                push_vec(list, Prefix::U16, identity);
                list.extend_from_slice(&age.to_be_bytes());
            }
        });
        push_prefixed(out, Prefix::U16, |list| {
            for binder in binders {
                push_vec(list, Prefix::U8, binder);
            }
        });
    }
}

/// An extension block being written: present or not (a hello may end before it), and the
/// extensions in the order they were added, already encoded.
#[derive(Debug, Clone, Default)]
struct ExtensionBlock(Option<Vec<u8>>);

impl ExtensionBlock {
    fn add(&mut self, typ: u16, data: impl FnOnce(&mut Vec<u8>)) {
        let block = self.0.get_or_insert_with(Vec::new);
        block.extend_from_slice(&typ.to_be_bytes());
        push_prefixed(block, Prefix::U16, data);
    }

    fn push(&self, out: &mut Vec<u8>) {
        if let Some(block) = &self.0 {
            push_vec(out, Prefix::U16, block);
        }
    }
}

/// A ClientHello to write: legacy fields, then extensions in the order they are added (put
/// `pre_shared_key` last, as RFC 8446 requires; nothing here reorders).
///
/// Without any extension added, the hello ends after its compression methods, as SSLv3-era
/// hellos do; [`ClientHelloBuilder::empty_extensions`] writes an empty block instead.
#[derive(Debug, Clone)]
pub struct ClientHelloBuilder {
    version: ProtocolVersion,
    random: [u8; 32],
    session_id: Vec<u8>,
    cipher_suites: Vec<u16>,
    compression: Vec<u8>,
    extensions: ExtensionBlock,
}

impl ClientHelloBuilder {
    /// A TLS 1.2-framed hello with `random`, an empty session ID, TLS_AES_128_GCM_SHA256 and
    /// ECDHE-RSA-AES128-GCM-SHA256, null compression and no extensions yet.
    pub fn new(random: [u8; 32]) -> Self {
        Self {
            version: ProtocolVersion::TLS1_2,
            random,
            session_id: Vec::new(),
            cipher_suites: vec![0x1301, 0xc02f],
            compression: vec![0],
            extensions: ExtensionBlock::default(),
        }
    }

    /// Sets `legacy_version`.
    pub fn version(&mut self, version: ProtocolVersion) -> &mut Self {
        self.version = version;
        self
    }

    /// Sets `legacy_session_id` (at most 32 bytes on a real wire; up to 255 are written).
    pub fn session_id(&mut self, id: &[u8]) -> &mut Self {
        self.session_id = id.to_vec();
        self
    }

    /// Sets the cipher suites offered.
    pub fn cipher_suites(&mut self, suites: &[u16]) -> &mut Self {
        self.cipher_suites = suites.to_vec();
        self
    }

    /// Sets the compression methods offered.
    pub fn compression_methods(&mut self, methods: &[u8]) -> &mut Self {
        self.compression = methods.to_vec();
        self
    }

    /// Writes an empty extension block if none was added, so the hello has one.
    pub fn empty_extensions(&mut self) -> &mut Self {
        self.extensions.0.get_or_insert_with(Vec::new);
        self
    }

    /// Adds an extension with already-encoded `data`.
    pub fn extension(&mut self, typ: u16, data: &[u8]) -> &mut Self {
        self.extensions.add(typ, |b| b.extend_from_slice(data));
        self
    }

    /// Adds server_name with one host_name entry.
    pub fn server_name(&mut self, host: &[u8]) -> &mut Self {
        self.extensions.add(extension::SERVER_NAME, |b| {
            extension_data::server_name(b, host)
        });
        self
    }

    /// Adds supported_groups.
    pub fn supported_groups(&mut self, groups: &[u16]) -> &mut Self {
        self.extensions.add(extension::SUPPORTED_GROUPS, |b| {
            extension_data::supported_groups(b, groups)
        });
        self
    }

    /// Adds application_layer_protocol_negotiation with `protocols` in order.
    pub fn alpn(&mut self, protocols: &[&[u8]]) -> &mut Self {
        self.extensions
            .add(extension::ALPN, |b| extension_data::alpn(b, protocols));
        self
    }

    /// Adds session_ticket carrying `ticket` (empty: "I support tickets, I have none").
    pub fn session_ticket(&mut self, ticket: &[u8]) -> &mut Self {
        self.extension(extension::SESSION_TICKET, ticket)
    }

    /// Adds supported_versions listing `versions` in order.
    pub fn supported_versions(&mut self, versions: &[ProtocolVersion]) -> &mut Self {
        self.extensions.add(extension::SUPPORTED_VERSIONS, |b| {
            extension_data::supported_versions(b, versions)
        });
        self
    }

    /// Adds psk_key_exchange_modes (1 = psk_dhe_ke).
    pub fn psk_key_exchange_modes(&mut self, modes: &[u8]) -> &mut Self {
        self.extensions.add(extension::PSK_KEY_EXCHANGE_MODES, |b| {
            extension_data::psk_key_exchange_modes(b, modes)
        });
        self
    }

    /// Adds key_share with one (group, key exchange bytes) entry per share, in order.
    pub fn key_share(&mut self, shares: &[(u16, &[u8])]) -> &mut Self {
        self.extensions.add(extension::KEY_SHARE, |b| {
            extension_data::key_share(b, shares)
        });
        self
    }

    /// Adds pre_shared_key: (identity, obfuscated ticket age) pairs, then the binders. Add it
    /// last.
    pub fn pre_shared_key(&mut self, identities: &[(&[u8], u32)], binders: &[&[u8]]) -> &mut Self {
        self.extensions.add(extension::PRE_SHARED_KEY, |b| {
            extension_data::pre_shared_key(b, identities, binders)
        });
        self
    }

    /// Appends the ClientHello handshake message (header included).
    pub fn push_message(&self, out: &mut Vec<u8>) {
        out.push(CLIENT_HELLO);
        push_prefixed(out, Prefix::U24, |b| {
            b.extend_from_slice(&self.version.0.to_be_bytes());
            b.extend_from_slice(&self.random);
            push_vec(b, Prefix::U8, &self.session_id);
            push_prefixed(b, Prefix::U16, |list| push_u16s(list, &self.cipher_suites));
            push_vec(b, Prefix::U8, &self.compression);
            self.extensions.push(b);
        });
    }

    /// The ClientHello handshake message (header included).
    pub fn message(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.push_message(&mut out);
        out
    }

    /// The ClientHello in handshake records with record version 0x0301, as clients send their
    /// first flight for compatibility with old servers.
    pub fn records(&self) -> Vec<u8> {
        let message = self.message();
        let mut out = Vec::with_capacity(message.len() + HEADER_LEN);
        push_record(
            &mut out,
            super::record::HANDSHAKE,
            ProtocolVersion::TLS1_0,
            &message,
        );
        out
    }
}

/// A ServerHello (or, with [`HELLO_RETRY_REQUEST_RANDOM`](super::HELLO_RETRY_REQUEST_RANDOM)
/// as its random, a HelloRetryRequest) to write; extensions in the order they are added.
#[derive(Debug, Clone)]
pub struct ServerHelloBuilder {
    version: ProtocolVersion,
    random: [u8; 32],
    session_id: Vec<u8>,
    cipher_suite: u16,
    compression: u8,
    extensions: ExtensionBlock,
}

impl ServerHelloBuilder {
    /// A TLS 1.2-framed ServerHello with `random`, an empty session ID, TLS_AES_128_GCM_SHA256,
    /// null compression and no extensions yet.
    pub fn new(random: [u8; 32]) -> Self {
        Self {
            version: ProtocolVersion::TLS1_2,
            random,
            session_id: Vec::new(),
            cipher_suite: 0x1301,
            compression: 0,
            extensions: ExtensionBlock::default(),
        }
    }

    /// Sets `legacy_version`.
    pub fn version(&mut self, version: ProtocolVersion) -> &mut Self {
        self.version = version;
        self
    }

    /// Sets the session ID (new, echoed, or empty).
    pub fn session_id(&mut self, id: &[u8]) -> &mut Self {
        self.session_id = id.to_vec();
        self
    }

    /// Sets the selected cipher suite.
    pub fn cipher_suite(&mut self, suite: u16) -> &mut Self {
        self.cipher_suite = suite;
        self
    }

    /// Sets the selected compression method.
    pub fn compression_method(&mut self, method: u8) -> &mut Self {
        self.compression = method;
        self
    }

    /// Writes an empty extension block if none was added.
    pub fn empty_extensions(&mut self) -> &mut Self {
        self.extensions.0.get_or_insert_with(Vec::new);
        self
    }

    /// Adds an extension with already-encoded `data`.
    pub fn extension(&mut self, typ: u16, data: &[u8]) -> &mut Self {
        self.extensions.add(typ, |b| b.extend_from_slice(data));
        self
    }

    /// Adds supported_versions selecting `version` (how TLS 1.3 is negotiated).
    pub fn supported_version(&mut self, version: ProtocolVersion) -> &mut Self {
        self.extension(extension::SUPPORTED_VERSIONS, &version.0.to_be_bytes())
    }

    /// Adds key_share with the server's one share.
    pub fn key_share(&mut self, group: u16, key: &[u8]) -> &mut Self {
        self.extensions.add(extension::KEY_SHARE, |b| {
            b.extend_from_slice(&group.to_be_bytes());
            push_vec(b, Prefix::U16, key);
        });
        self
    }

    /// Adds pre_shared_key accepting the client's identity number `selected`.
    pub fn pre_shared_key(&mut self, selected: u16) -> &mut Self {
        self.extension(extension::PRE_SHARED_KEY, &selected.to_be_bytes())
    }

    /// Adds an empty session_ticket: a TLS ≤ 1.2 server promising a NewSessionTicket.
    pub fn session_ticket(&mut self) -> &mut Self {
        self.extension(extension::SESSION_TICKET, &[])
    }

    /// Appends the ServerHello handshake message (header included).
    pub fn push_message(&self, out: &mut Vec<u8>) {
        out.push(SERVER_HELLO);
        push_prefixed(out, Prefix::U24, |b| {
            b.extend_from_slice(&self.version.0.to_be_bytes());
            b.extend_from_slice(&self.random);
            push_vec(b, Prefix::U8, &self.session_id);
            b.extend_from_slice(&self.cipher_suite.to_be_bytes());
            b.push(self.compression);
            self.extensions.push(b);
        });
    }

    /// The ServerHello handshake message (header included).
    pub fn message(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.push_message(&mut out);
        out
    }
}

fn push_u16s(out: &mut Vec<u8>, values: &[u16]) {
    for v in values {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Progress;
    use crate::tls::record::{APPLICATION_DATA, HANDSHAKE};
    use crate::tls::{
        ClientHello, ClientHelloParser, HelloOutcome, ServerEvent, ServerFlight, ServerHelloInfo,
        TicketExt, DEFAULT_HELLO_CAP, HELLO_RETRY_REQUEST_RANDOM,
    };
    use proptest::prelude::*;

    #[test]
    fn records_are_cut_at_the_plaintext_limit() {
        let mut out = Vec::new();
        push_record(
            &mut out,
            APPLICATION_DATA,
            ProtocolVersion::TLS1_2,
            &[7; 16385],
        );
        assert_eq!(&out[..5], &[0x17, 3, 3, 0x40, 0]);
        assert_eq!(&out[5 + 16384..5 + 16384 + 5], &[0x17, 3, 3, 0, 1]);
        assert_eq!(out.len(), 16385 + 10);
        let mut empty = Vec::new();
        push_record(&mut empty, APPLICATION_DATA, ProtocolVersion::TLS1_2, &[]);
        assert_eq!(empty, [0x17, 3, 3, 0, 0]);
        let mut ccs = Vec::new();
        push_change_cipher_spec(&mut ccs, ProtocolVersion::TLS1_2);
        assert_eq!(ccs, [0x14, 3, 3, 0, 1, 1]);
    }

    #[test]
    fn vectors_carry_their_length_in_their_prefix_width() {
        let mut out = Vec::new();
        push_vec(&mut out, Prefix::U8, &[9]);
        push_vec(&mut out, Prefix::U16, &[8, 8]);
        push_vec(&mut out, Prefix::U24, &[]);
        push_handshake(&mut out, 20, &[1, 2]);
        push_extension(&mut out, 0xff01, &[0]);
        assert_eq!(
            out,
            [1, 9, 0, 2, 8, 8, 0, 0, 0, 20, 0, 0, 2, 1, 2, 0xff, 1, 0, 1, 0]
        );
    }

    #[test]
    #[should_panic(expected = "at most 255 bytes")]
    fn an_overlong_vector_is_a_caller_bug() {
        push_vec(&mut Vec::new(), Prefix::U8, &[0; 256]);
    }

    #[test]
    fn a_tls13_ticket_has_its_rfc_8446_layout() {
        let mut out = Vec::new();
        push_new_session_ticket13(&mut out, 7200, 5, &[1], b"tk");
        assert_eq!(
            out,
            [4, 0, 0, 16, 0, 0, 0x1c, 0x20, 0, 0, 0, 5, 1, 1, 0, 2, b't', b'k', 0, 0]
        );
    }

    #[test]
    fn a_hello_without_extensions_ends_after_compression() {
        let plain = ClientHelloBuilder::new([1; 32]).message();
        let with_block = ClientHelloBuilder::new([1; 32])
            .empty_extensions()
            .message();
        assert_eq!(with_block.len(), plain.len() + 2);
        let h = ClientHello::parse(&plain[4..]).unwrap();
        assert_eq!(h.extensions().count(), 0);
        assert_eq!(h.cipher_suites().collect::<Vec<_>>(), [0x1301, 0xc02f]);
        assert_eq!(h.compression_methods(), [0]);
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    fn nonempty(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 1..max)
    }

    proptest! {
        /// What the builder writes, the balancer's parser reads back field by field, even
        /// when the records are cut into 1..=40-byte pieces.
        #[test]
        fn client_hello_round_trips_through_the_parser(
            version in any::<u16>(),
            random in any::<[u8; 32]>(),
            session_id in bytes(33),
            suites in proptest::collection::vec(any::<u16>(), 1..20),
            sni in proptest::option::of(nonempty(60)),
            alpn in proptest::collection::vec(nonempty(10), 0..3),
            ticket in proptest::option::of(bytes(200)),
            versions in proptest::collection::vec(any::<u16>(), 0..4),
            shares in proptest::collection::vec((any::<u16>(), nonempty(80)), 0..3),
            psk in proptest::collection::vec((nonempty(60), any::<u32>()), 0..3),
            cut in 1usize..=40,
        ) {
            let mut b = ClientHelloBuilder::new(random);
            b.version(ProtocolVersion(version)).session_id(&session_id).cipher_suites(&suites);
            b.empty_extensions();
            if let Some(name) = &sni {
                b.server_name(name);
            }
            if !alpn.is_empty() {
                b.alpn(&alpn.iter().map(Vec::as_slice).collect::<Vec<_>>());
            }
            if let Some(t) = &ticket {
                b.session_ticket(t);
            }
            if !versions.is_empty() {
                b.supported_versions(&versions.iter().map(|v| ProtocolVersion(*v)).collect::<Vec<_>>());
            }
            if !shares.is_empty() {
                b.key_share(&shares.iter().map(|(g, k)| (*g, k.as_slice())).collect::<Vec<_>>());
            }
            if !psk.is_empty() {
                let ids: Vec<(&[u8], u32)> = psk.iter().map(|(i, a)| (i.as_slice(), *a)).collect();
                let binders = vec![&[0xb1u8; 32][..]; ids.len()];
                b.pre_shared_key(&ids, &binders);
            }
            let message = b.message();
            let mut stream = Vec::new();
            for piece in message.chunks(cut) {
                push_record(&mut stream, HANDSHAKE, ProtocolVersion::TLS1_0, piece);
            }
            let mut parser = ClientHelloParser::new(DEFAULT_HELLO_CAP);
            let Progress::Done(HelloOutcome::Complete(h)) = parser.parse(&stream) else {
                return Err(TestCaseError::fail("the hello did not parse"));
            };
            prop_assert_eq!(h.legacy_version().0, version);
            prop_assert_eq!(h.random(), &random);
            prop_assert_eq!(h.session_id(), &session_id[..]);
            prop_assert_eq!(h.cipher_suites().collect::<Vec<_>>(), suites);
            prop_assert_eq!(h.server_name(), sni.as_deref());
            prop_assert_eq!(h.alpn().map(<[u8]>::to_vec).collect::<Vec<_>>(), alpn);
            let got_ticket = match h.session_ticket() {
                TicketExt::Absent => None,
                TicketExt::Empty => Some(Vec::new()),
                TicketExt::Ticket(t) => Some(t.to_vec()),
            };
            prop_assert_eq!(got_ticket, ticket);
            prop_assert_eq!(h.supported_versions().map(|v| v.0).collect::<Vec<_>>(), versions);
            prop_assert_eq!(h.key_share_groups().collect::<Vec<_>>(), shares.iter().map(|s| s.0).collect::<Vec<_>>());
            prop_assert_eq!(
                h.psk_identities().map(<[u8]>::to_vec).collect::<Vec<_>>(),
                psk.into_iter().map(|p| p.0).collect::<Vec<_>>()
            );
        }

        /// A server flight written with the encoders reads back as the same events.
        #[test]
        fn server_flight_round_trips_through_the_parser(
            random in any::<[u8; 32]>(),
            retry in any::<bool>(),
            session_id in bytes(33),
            cipher in any::<u16>(),
            tls13 in any::<bool>(),
            psk in proptest::option::of(any::<u16>()),
            promise in any::<bool>(),
            ticket in proptest::option::of((any::<u32>(), bytes(300))),
            cut in 1usize..=64,
        ) {
            let random = if retry { HELLO_RETRY_REQUEST_RANDOM } else { random };
            let mut b = ServerHelloBuilder::new(random);
            b.session_id(&session_id).cipher_suite(cipher);
            if tls13 {
                b.supported_version(ProtocolVersion::TLS1_3).key_share(0x001d, &[2; 32]);
            }
            if let Some(p) = psk {
                b.pre_shared_key(p);
            }
            if promise {
                b.session_ticket();
            }
            let mut messages = b.message();
            if let Some((lifetime, t)) = &ticket {
                push_new_session_ticket12(&mut messages, *lifetime, t);
            }
            let mut stream = Vec::new();
            for piece in messages.chunks(cut) {
                push_record(&mut stream, HANDSHAKE, ProtocolVersion::TLS1_2, piece);
            }
            push_change_cipher_spec(&mut stream, ProtocolVersion::TLS1_2);
            let events = ServerFlight::new(DEFAULT_HELLO_CAP).feed(&stream);
            let ServerEvent::ServerHello(info) = events[0] else {
                return Err(TestCaseError::fail(format!("{events:?}")));
            };
            let expected = ServerHelloInfo {
                legacy_version: ProtocolVersion::TLS1_2,
                session_id: crate::tls::SessionId::from_slice(&session_id).unwrap(),
                cipher,
                negotiated: if tls13 { ProtocolVersion::TLS1_3 } else { ProtocolVersion::TLS1_2 },
                hello_retry_request: retry,
                psk_selected: psk,
                session_ticket_ext: promise,
            };
            prop_assert_eq!(info, expected);
            let mut rest = events[1..].to_vec();
            if tls13 && !retry {
                // Everything after a TLS 1.3 ServerHello is encrypted: the flight ends there.
                prop_assert_eq!(rest, vec![]);
                return Ok(());
            }
            if let Some((lifetime_hint, ticket)) = ticket {
                prop_assert_eq!(rest.remove(0), ServerEvent::NewSessionTicket { lifetime_hint, ticket });
            }
            prop_assert_eq!(rest, vec![ServerEvent::ChangeCipherSpec]);
        }
    }
}
