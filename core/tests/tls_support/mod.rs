//! Plain structs of TLS hellos and server flights for the `tls_*` tests, with proptest
//! strategies that generate them; the bytes are written by `tether_core::tls::encode`.
//!
//! Property tests generate a spec, fragment its bytes into records of any size and check that
//! parsing gives the spec back.
#![allow(dead_code)]

use proptest::prelude::*;
use tether_core::tls::encode::{
    extension_data, push_handshake, push_new_session_ticket12, push_record, ClientHelloBuilder,
    ServerHelloBuilder,
};
use tether_core::tls::{extension, ProtocolVersion};

/// A ClientHello to serialize.
#[derive(Debug, Clone, Default)]
pub struct HelloSpec {
    pub version: u16,
    pub random: [u8; 32],
    pub session_id: Vec<u8>,
    pub ciphers: Vec<u16>,
    pub compression: Vec<u8>,
    /// None = no extensions block at all.
    pub extensions: Option<ExtSpec>,
}

/// The extensions of a [`HelloSpec`].
#[derive(Debug, Clone, Default)]
pub struct ExtSpec {
    pub sni: Option<Vec<u8>>,
    pub alpn: Vec<Vec<u8>>,
    /// None = absent, Some(empty) = empty extension.
    pub ticket: Option<Vec<u8>>,
    pub versions: Vec<u16>,
    pub key_shares: Vec<(u16, Vec<u8>)>,
    pub ech: Option<Vec<u8>>,
    /// Unknown extensions (types chosen so they never collide with the known ones).
    pub other: Vec<(u16, Vec<u8>)>,
    /// PSK identities; non-empty puts pre_shared_key last.
    pub psk: Vec<Vec<u8>>,
}

/// Wraps a handshake body in its 4-byte header.
pub fn handshake(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(body.len() + 4);
    push_handshake(&mut m, typ, body);
    m
}

fn data(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut body = Vec::new();
    write(&mut body);
    body
}

impl ExtSpec {
    /// The extensions in wire order (pre_shared_key last), each as (type, encoded data).
    pub fn list(&self) -> Vec<(u16, Vec<u8>)> {
        let mut v = Vec::new();
        if let Some(name) = &self.sni {
            v.push((
                extension::SERVER_NAME,
                data(|b| extension_data::server_name(b, name)),
            ));
        }
        if !self.alpn.is_empty() {
            let protocols: Vec<&[u8]> = self.alpn.iter().map(Vec::as_slice).collect();
            v.push((
                extension::ALPN,
                data(|b| extension_data::alpn(b, &protocols)),
            ));
        }
        if let Some(t) = &self.ticket {
            v.push((extension::SESSION_TICKET, t.clone()));
        }
        if !self.versions.is_empty() {
            let versions: Vec<ProtocolVersion> =
                self.versions.iter().map(|x| ProtocolVersion(*x)).collect();
            v.push((
                extension::SUPPORTED_VERSIONS,
                data(|b| extension_data::supported_versions(b, &versions)),
            ));
        }
        if !self.key_shares.is_empty() {
            let shares: Vec<(u16, &[u8])> = self
                .key_shares
                .iter()
                .map(|(g, k)| (*g, k.as_slice()))
                .collect();
            v.push((
                extension::KEY_SHARE,
                data(|b| extension_data::key_share(b, &shares)),
            ));
        }
        if let Some(e) = &self.ech {
            v.push((extension::ENCRYPTED_CLIENT_HELLO, e.clone()));
        }
        v.extend(self.other.iter().cloned());
        if !self.psk.is_empty() {
            let identities: Vec<(&[u8], u32)> = self
                .psk
                .iter()
                .map(|id| (id.as_slice(), 0x0102_0304))
                .collect();
            let binders = vec![&[0xb1u8; 32][..]; identities.len()];
            v.push((
                extension::PRE_SHARED_KEY,
                data(|b| extension_data::pre_shared_key(b, &identities, &binders)),
            ));
        }
        v
    }
}

impl HelloSpec {
    /// The ClientHello handshake message (header included).
    pub fn message(&self) -> Vec<u8> {
        let mut hello = ClientHelloBuilder::new(self.random);
        hello
            .version(ProtocolVersion(self.version))
            .session_id(&self.session_id)
            .cipher_suites(&self.ciphers)
            .compression_methods(&self.compression);
        if let Some(e) = &self.extensions {
            hello.empty_extensions();
            for (t, d) in e.list() {
                hello.extension(t, &d);
            }
        }
        hello.message()
    }
}

/// Fragments a handshake byte string into records of the given sizes (cycled; 0 means 1).
pub fn records(typ: u8, payload: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = payload;
    let mut i = 0;
    while !rest.is_empty() {
        let want = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(16384);
        let (fragment, tail) = rest.split_at(want.clamp(1, 16384).min(rest.len()));
        push_record(&mut out, typ, ProtocolVersion::TLS1_0, fragment);
        rest = tail;
        i += 1;
    }
    out
}

/// One record holding the whole payload (payload must be ≤ 16384).
pub fn record(typ: u8, payload: &[u8]) -> Vec<u8> {
    records(typ, payload, &[16384])
}

/// A ServerHello to serialize.
#[derive(Debug, Clone, Default)]
pub struct ServerHelloSpec {
    pub version: u16,
    pub random: [u8; 32],
    pub session_id: Vec<u8>,
    pub cipher: u16,
    pub supported_version: Option<u16>,
    pub psk: Option<u16>,
    pub ticket_ext: bool,
    pub other: Vec<(u16, Vec<u8>)>,
}

impl ServerHelloSpec {
    pub fn message(&self) -> Vec<u8> {
        let mut hello = ServerHelloBuilder::new(self.random);
        hello
            .version(ProtocolVersion(self.version))
            .session_id(&self.session_id)
            .cipher_suite(self.cipher);
        if let Some(v) = self.supported_version {
            hello.supported_version(ProtocolVersion(v));
        }
        if let Some(p) = self.psk {
            hello.pre_shared_key(p);
        }
        if self.ticket_ext {
            hello.session_ticket();
        }
        for (t, d) in &self.other {
            hello.extension(*t, d);
        }
        hello.message()
    }
}

/// A TLS ≤ 1.2 NewSessionTicket message.
pub fn new_session_ticket(lifetime: u32, ticket: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    push_new_session_ticket12(&mut m, lifetime, ticket);
    m
}

/// Splits `bytes` into TCP-like chunks of the given sizes (cycled; 0 means 1).
pub fn chunks<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(usize::MAX)
            .max(1)
            .min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    out
}

pub fn hex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn bytes(range: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), range)
}

fn nonempty(max: usize) -> impl Strategy<Value = Vec<u8>> {
    bytes(1..max)
}

pub fn ext_spec() -> impl Strategy<Value = ExtSpec> {
    (
        proptest::option::of(nonempty(40)),
        proptest::collection::vec(nonempty(12), 0..4),
        proptest::option::of(bytes(0..200)),
        proptest::collection::vec(any::<u16>(), 0..5),
        proptest::collection::vec((any::<u16>(), nonempty(100)), 0..3),
        proptest::option::of(bytes(0..64)),
        proptest::collection::btree_map(
            // 0x3374 (NPN) is parsed strictly by tls-parser; keep it out of the random ones.
            (0x0100u16..0xfe00).prop_filter("npn", |t| *t != 0x3374),
            bytes(0..30),
            0..6,
        ),
        proptest::collection::vec(nonempty(80), 0..3),
    )
        .prop_map(
            |(sni, alpn, ticket, versions, key_shares, ech, other, psk)| ExtSpec {
                sni,
                alpn,
                ticket,
                versions,
                key_shares,
                ech,
                other: other.into_iter().collect(),
                psk,
            },
        )
}

pub fn hello_spec() -> impl Strategy<Value = HelloSpec> {
    (
        prop_oneof![Just(0x0303u16), Just(0x0301), any::<u16>()],
        any::<[u8; 32]>(),
        bytes(0..33),
        proptest::collection::vec(any::<u16>(), 1..40),
        bytes(1..4),
        proptest::option::of(ext_spec()),
    )
        .prop_map(
            |(version, random, session_id, ciphers, compression, extensions)| HelloSpec {
                version,
                random,
                session_id,
                ciphers,
                compression,
                extensions,
            },
        )
}

pub fn server_hello_spec() -> impl Strategy<Value = ServerHelloSpec> {
    (
        prop_oneof![Just(0x0303u16), Just(0x0301)],
        any::<[u8; 32]>(),
        bytes(0..33),
        any::<u16>(),
        proptest::option::of(prop_oneof![Just(0x0304u16), Just(0x0303)]),
        proptest::option::of(any::<u16>()),
        any::<bool>(),
    )
        .prop_map(
            |(version, random, session_id, cipher, supported_version, psk, ticket_ext)| {
                ServerHelloSpec {
                    version,
                    random,
                    session_id,
                    cipher,
                    supported_version,
                    psk,
                    ticket_ext,
                    other: Vec::new(),
                }
            },
        )
}
