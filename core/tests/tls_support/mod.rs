//! Test-only serializer for TLS hellos and server flights, shared by the `tls_*` tests.
//!
//! Builds wire bytes from plain structs so property tests can generate hellos, fragment them
//! into records of any size and check that parsing gives the struct back.
#![allow(dead_code)]

use proptest::prelude::*;

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

pub fn u16v(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

pub fn u8v(out: &mut Vec<u8>, body: &[u8]) {
    out.push(body.len() as u8);
    out.extend_from_slice(body);
}

pub fn ext(out: &mut Vec<u8>, typ: u16, body: &[u8]) {
    out.extend_from_slice(&typ.to_be_bytes());
    u16v(out, body);
}

/// Wraps a handshake body in its 4-byte header.
pub fn handshake(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![typ];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(body);
    m
}

impl ExtSpec {
    /// The extensions in wire order (pre_shared_key last).
    pub fn list(&self) -> Vec<(u16, Vec<u8>)> {
        let mut v = Vec::new();
        if let Some(name) = &self.sni {
            let mut entry = vec![0u8];
            u16v(&mut entry, name);
            let mut body = Vec::new();
            u16v(&mut body, &entry);
            v.push((0x0000, body));
        }
        if !self.alpn.is_empty() {
            let mut list = Vec::new();
            for p in &self.alpn {
                u8v(&mut list, p);
            }
            let mut body = Vec::new();
            u16v(&mut body, &list);
            v.push((0x0010, body));
        }
        if let Some(t) = &self.ticket {
            v.push((0x0023, t.clone()));
        }
        if !self.versions.is_empty() {
            let list: Vec<u8> = self.versions.iter().flat_map(|x| x.to_be_bytes()).collect();
            let mut body = Vec::new();
            u8v(&mut body, &list);
            v.push((0x002b, body));
        }
        if !self.key_shares.is_empty() {
            let mut list = Vec::new();
            for (g, k) in &self.key_shares {
                list.extend_from_slice(&g.to_be_bytes());
                u16v(&mut list, k);
            }
            let mut body = Vec::new();
            u16v(&mut body, &list);
            v.push((0x0033, body));
        }
        if let Some(e) = &self.ech {
            v.push((0xfe0d, e.clone()));
        }
        v.extend(self.other.iter().cloned());
        if !self.psk.is_empty() {
            let mut ids = Vec::new();
            let mut binders = Vec::new();
            for id in &self.psk {
                u16v(&mut ids, id);
                ids.extend_from_slice(&0x0102_0304u32.to_be_bytes());
                u8v(&mut binders, &[0xb1; 32]);
            }
            let mut body = Vec::new();
            u16v(&mut body, &ids);
            u16v(&mut body, &binders);
            v.push((0x0029, body));
        }
        v
    }
}

impl HelloSpec {
    /// The ClientHello handshake message (header included).
    pub fn message(&self) -> Vec<u8> {
        let mut b = self.version.to_be_bytes().to_vec();
        b.extend_from_slice(&self.random);
        u8v(&mut b, &self.session_id);
        let ciphers: Vec<u8> = self.ciphers.iter().flat_map(|c| c.to_be_bytes()).collect();
        u16v(&mut b, &ciphers);
        u8v(&mut b, &self.compression);
        if let Some(e) = &self.extensions {
            let mut block = Vec::new();
            for (t, d) in e.list() {
                ext(&mut block, t, &d);
            }
            u16v(&mut b, &block);
        }
        handshake(1, &b)
    }
}

/// Fragments a handshake byte string into records of the given sizes (cycled; 0 means 1).
pub fn records(typ: u8, payload: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = payload;
    let mut i = 0;
    while !rest.is_empty() {
        let want = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(16384);
        let n = want.clamp(1, 16384).min(rest.len());
        out.extend_from_slice(&[typ, 3, 1]);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
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
        let mut b = self.version.to_be_bytes().to_vec();
        b.extend_from_slice(&self.random);
        u8v(&mut b, &self.session_id);
        b.extend_from_slice(&self.cipher.to_be_bytes());
        b.push(0);
        let mut block = Vec::new();
        if let Some(v) = self.supported_version {
            ext(&mut block, 0x002b, &v.to_be_bytes());
        }
        if let Some(p) = self.psk {
            ext(&mut block, 0x0029, &p.to_be_bytes());
        }
        if self.ticket_ext {
            ext(&mut block, 0x0023, &[]);
        }
        for (t, d) in &self.other {
            ext(&mut block, *t, d);
        }
        if !block.is_empty() {
            u16v(&mut b, &block);
        }
        handshake(2, &b)
    }
}

/// A TLS ≤ 1.2 NewSessionTicket message.
pub fn new_session_ticket(lifetime: u32, ticket: &[u8]) -> Vec<u8> {
    let mut b = lifetime.to_be_bytes().to_vec();
    u16v(&mut b, ticket);
    handshake(4, &b)
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
