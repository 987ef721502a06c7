//! TLS client models: what each kind of client offers in its ClientHello and what it remembers.
//!
//! Affinity depends entirely on client behaviour: a TLS 1.2 client resuming by session ID, an
//! OpenSSL-like ticket client (session ID = SHA-256(ticket)), a Go-like ticket client (random
//! ID), TLS 1.3 clients that use each ticket once or reuse one, and clients that never resume.
//! Each model writes real ClientHello bytes (SNI, supported_versions, key_share — optionally the
//! 1216+32-byte X25519MLKEM768 share that spans segments — session_ticket, pre_shared_key last)
//! and learns from the server's answer whether it resumed and what it now holds.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use tether_core::tls::encode::{
    push_change_cipher_spec, push_handshake, push_record, push_vec, ClientHelloBuilder, Prefix,
};
use tether_core::tls::extension;
use tether_core::tls::record::{self, APPLICATION_DATA, CHANGE_CIPHER_SPEC, HANDSHAKE};
use tether_core::tls::ProtocolVersion;

use crate::rng::Rng;
use crate::tls_wire::{
    self, push_encrypted, read_record, HandshakeBuffer, Reader, WireError, RECORD_VERSION,
};

/// The resumption behaviour of a client population.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientKind {
    /// TLS 1.2, resumes with the server-assigned session ID, no ticket support.
    Tls12SessionId,
    /// TLS 1.2 with tickets, OpenSSL-like: ClientHello session ID = SHA-256(ticket).
    Tls12TicketOpenssl,
    /// TLS 1.2 with tickets, Go-like: a random session ID alongside the ticket.
    Tls12TicketGo,
    /// TLS 1.3, each ticket used once (browsers, rustls, curl, OpenSSL).
    Tls13SingleUse,
    /// TLS 1.3, one ticket reused until replaced (Go).
    Tls13Reuse,
    /// TLS 1.2 without any resumption.
    NoResumption,
}

impl ClientKind {
    /// Whether this client negotiates TLS 1.3.
    pub fn is_tls13(self) -> bool {
        matches!(self, ClientKind::Tls13SingleUse | ClientKind::Tls13Reuse)
    }

    fn offers_tickets12(self) -> bool {
        matches!(
            self,
            ClientKind::Tls12TicketOpenssl | ClientKind::Tls12TicketGo
        )
    }
}

/// What a client put in one ClientHello, kept to interpret the answer.
#[derive(Clone, Debug, Default)]
pub struct Offer {
    /// The legacy_session_id sent.
    pub session_id: Vec<u8>,
    /// The TLS 1.2 ticket sent (None: no extension; Some(empty): "I support tickets").
    pub ticket: Option<Vec<u8>>,
    /// The TLS 1.3 PSK identity sent.
    pub psk: Option<Vec<u8>>,
}

impl Offer {
    /// Whether the client tried to resume.
    pub fn attempts_resumption(&self, tls13: bool) -> bool {
        if tls13 {
            self.psk.is_some()
        } else {
            !self.session_id.is_empty() || self.ticket.as_ref().is_some_and(|t| !t.is_empty())
        }
    }
}

/// What the client learned from the server's handshake messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerAnswer {
    /// TLS 1.3 was negotiated (supported_versions = 0x0304).
    pub tls13: bool,
    /// The ServerHello session ID.
    pub session_id: Vec<u8>,
    /// The ServerHello carried pre_shared_key (TLS 1.3 resumption accepted).
    pub psk_accepted: bool,
    /// Tickets received (TLS 1.2 NewSessionTicket, or TLS 1.3 NewSessionTickets).
    pub tickets: Vec<Vec<u8>>,
}

/// One simulated client's remembered session state, driven by its [`ClientKind`].
#[derive(Clone, Debug)]
pub struct ClientSession {
    kind: ClientKind,
    lifetime_ms: u64,
    /// TLS 1.2 session ID to offer (server-assigned).
    session_id: Vec<u8>,
    /// TLS 1.2 ticket.
    ticket12: Option<Vec<u8>>,
    /// TLS 1.3 tickets (a queue for single-use clients, one for reusing clients).
    tickets13: Vec<Vec<u8>>,
    learned_at_ms: u64,
}

/// How many TLS 1.3 tickets a single-use client keeps (browsers keep a handful per origin).
const MAX_KEPT_TICKETS: usize = 4;

impl ClientSession {
    /// A client with nothing remembered; sessions older than `lifetime` are forgotten.
    pub fn new(kind: ClientKind, lifetime: Duration) -> Self {
        ClientSession {
            kind,
            lifetime_ms: lifetime.as_millis() as u64,
            session_id: Vec::new(),
            ticket12: None,
            tickets13: Vec::new(),
            learned_at_ms: 0,
        }
    }

    /// The client kind.
    pub fn kind(&self) -> ClientKind {
        self.kind
    }

    fn forget(&mut self) {
        self.session_id.clear();
        self.ticket12 = None;
        self.tickets13.clear();
    }

    /// Decides what to offer in the next ClientHello at `now_ms`.
    pub fn offer(&mut self, rng: &mut Rng, now_ms: u64) -> Offer {
        if now_ms.saturating_sub(self.learned_at_ms) > self.lifetime_ms {
            self.forget();
        }
        let random_id = |rng: &mut Rng| {
            let mut id = vec![0u8; 32];
            rng.fill(&mut id);
            id
        };
        match self.kind {
            ClientKind::NoResumption => Offer::default(),
            ClientKind::Tls12SessionId => Offer {
                session_id: self.session_id.clone(),
                ..Offer::default()
            },
            ClientKind::Tls12TicketOpenssl | ClientKind::Tls12TicketGo => {
                match self.ticket12.clone() {
                    Some(ticket) => {
                        let session_id = if self.kind == ClientKind::Tls12TicketOpenssl {
                            Sha256::digest(&ticket).to_vec()
                        } else {
                            random_id(rng)
                        };
                        Offer {
                            session_id,
                            ticket: Some(ticket),
                            psk: None,
                        }
                    }
                    None => Offer {
                        session_id: self.session_id.clone(),
                        ticket: Some(Vec::new()),
                        psk: None,
                    },
                }
            }
            ClientKind::Tls13SingleUse | ClientKind::Tls13Reuse => {
                let psk = if self.kind == ClientKind::Tls13SingleUse {
                    (!self.tickets13.is_empty()).then(|| self.tickets13.remove(0))
                } else {
                    self.tickets13.last().cloned()
                };
                Offer {
                    session_id: random_id(rng),
                    ticket: None,
                    psk,
                }
            }
        }
    }

    /// Interprets the server's answer to `offer`: returns whether the session was resumed and
    /// updates what the client holds.
    pub fn learn(&mut self, offer: &Offer, answer: &ServerAnswer, now_ms: u64) -> bool {
        if self.kind == ClientKind::NoResumption {
            return false;
        }
        if answer.tls13 {
            let resumed = answer.psk_accepted && offer.psk.is_some();
            match self.kind {
                ClientKind::Tls13Reuse => {
                    if let Some(t) = answer.tickets.last() {
                        self.tickets13 = vec![t.clone()];
                        self.learned_at_ms = now_ms;
                    } else if !resumed {
                        self.tickets13.clear();
                    }
                }
                _ => {
                    if !resumed && !answer.tickets.is_empty() {
                        // A rejected ticket means the others from that server are useless too.
                        self.tickets13.clear();
                    }
                    if !answer.tickets.is_empty() {
                        self.learned_at_ms = now_ms;
                    }
                    self.tickets13.extend(answer.tickets.iter().cloned());
                    let excess = self.tickets13.len().saturating_sub(MAX_KEPT_TICKETS);
                    self.tickets13.drain(..excess);
                }
            }
            return resumed;
        }
        let resumed = !offer.session_id.is_empty() && answer.session_id == offer.session_id;
        if !resumed {
            self.session_id = answer.session_id.clone();
            self.ticket12 = None;
            self.learned_at_ms = now_ms;
        }
        if self.kind.offers_tickets12() {
            if let Some(t) = answer.tickets.last() {
                self.ticket12 = Some(t.clone());
                self.learned_at_ms = now_ms;
            }
        }
        resumed
    }
}

/// Sizes and identity of one connection's ClientHello.
#[derive(Clone, Debug)]
pub struct HelloShape<'a> {
    /// Server name sent in SNI.
    pub sni: &'a str,
    /// Send the post-quantum hybrid key share (X25519MLKEM768, 1216 bytes) as well as X25519.
    pub pq_key_share: bool,
}

const X25519MLKEM768: u16 = 0x11ec;
const X25519: u16 = 0x001d;
const SECP256R1: u16 = 0x0017;
const SECP384R1: u16 = 0x0018;
/// psk_key_exchange_modes: PSK with (EC)DHE.
const PSK_DHE_KE: u8 = 1;

/// The cipher suites every model client offers (TLS 1.3 first, then ECDHE, then RSA).
const CIPHER_SUITES: &[u16] = &[
    0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c,
    0x009d, 0x002f, 0x0035,
];

/// Builds the ClientHello record(s) for `offer`.
pub fn client_hello(kind: ClientKind, offer: &Offer, shape: &HelloShape, rng: &mut Rng) -> Vec<u8> {
    let mut random = [0u8; 32];
    rng.fill(&mut random);
    let mut hello = ClientHelloBuilder::new(random);
    hello
        .session_id(&offer.session_id)
        .cipher_suites(CIPHER_SUITES)
        .server_name(shape.sni.as_bytes())
        .supported_groups(&[X25519MLKEM768, X25519, SECP256R1, SECP384R1])
        .extension(extension::SIGNATURE_ALGORITHMS, tls_wire::filler(18, 4))
        .alpn(&[b"h2", b"http/1.1"]);
    if let Some(ticket) = &offer.ticket {
        hello.session_ticket(ticket);
    }
    if kind.is_tls13() {
        hello
            .supported_versions(&[ProtocolVersion::TLS1_3, ProtocolVersion::TLS1_2])
            .psk_key_exchange_modes(&[PSK_DHE_KE]);
        let hybrid = shape.pq_key_share.then(|| tls_wire::filler(1216, 9));
        let mut key = [0u8; 32];
        rng.fill(&mut key);
        let mut shares: Vec<(u16, &[u8])> = Vec::with_capacity(2);
        if let Some(hybrid) = &hybrid {
            shares.push((X25519MLKEM768, hybrid));
        }
        shares.push((X25519, &key));
        hello.key_share(&shares);
        if let Some(identity) = &offer.psk {
            // pre_shared_key must be the last extension.
            let age = rng.next_u64() as u32;
            hello.pre_shared_key(&[(identity, age)], &[tls_wire::filler(32, 7)]);
        }
    }
    hello.records()
}

/// How a simulated connection ended, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// No TCP connection (refused, unreachable, or connect timeout).
    Connect,
    /// The connection broke before the TLS handshake completed.
    Handshake,
    /// The connection broke after the handshake, while data was in flight.
    InFlight,
}

/// A completed handshake, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// What the server said.
    pub answer: ServerAnswer,
    /// Time from connect start to the client's Finished.
    pub latency: Duration,
}

/// Plain numbers of one connection's workload.
#[derive(Clone, Copy, Debug)]
pub struct Exchange {
    /// Application bytes the client sends.
    pub request_bytes: u32,
    /// Application bytes the server returns.
    pub response_bytes: u32,
    /// Time the client keeps the connection open after the response.
    pub hold: Duration,
}

/// Largest MSS-like segment the client writes; a PQ ClientHello spans two or more.
pub const SEGMENT: usize = 1448;

/// Writes `bytes` as separate segments of at most [`SEGMENT`] bytes.
pub async fn write_segments<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
) -> Result<(), WireError> {
    for chunk in bytes.chunks(SEGMENT) {
        w.write_all(chunk).await?;
    }
    w.flush().await?;
    Ok(())
}

/// Runs the client side of the TLS handshake after the ClientHello has been sent.
pub async fn finish_handshake<R, W>(
    rd: &mut R,
    wr: &mut W,
    kind: ClientKind,
) -> Result<ServerAnswer, WireError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut answer = ServerAnswer::default();
    let mut hb = HandshakeBuffer::default();
    let mut after_ccs = false;
    let mut saw_server_hello = false;
    // Flight until ServerHelloDone (1.2 full), Finished (1.2 resumed, 1.3).
    let full12 = loop {
        let (ct, body) = read_record(rd).await?;
        match ct {
            HANDSHAKE if after_ccs => break false, // 1.2 encrypted Finished
            HANDSHAKE => {
                hb.push(&body)?;
                let mut done = false;
                while let Some((t, m)) = hb.next_message() {
                    match t {
                        record::SERVER_HELLO => {
                            answer = parse_server_hello(&m)?;
                            saw_server_hello = true;
                        }
                        record::NEW_SESSION_TICKET => answer.tickets.push(parse_ticket12(&m)?),
                        record::SERVER_HELLO_DONE => done = true,
                        _ => {}
                    }
                }
                if done {
                    break true;
                }
            }
            CHANGE_CIPHER_SPEC => after_ccs = true,
            APPLICATION_DATA if answer.tls13 => {
                let (inner, plain) = tls_wire::open_encrypted(&body)?;
                if inner == HANDSHAKE && contains_finished(plain)? {
                    break false;
                }
            }
            _ => return Err(WireError::Malformed("server flight")),
        }
    };
    if !saw_server_hello || answer.tls13 != kind.is_tls13() {
        return Err(WireError::Malformed("server hello"));
    }
    let mut out = Vec::with_capacity(128);
    if answer.tls13 {
        push_change_cipher_spec(&mut out, RECORD_VERSION);
        let mut fin = Vec::new();
        push_handshake(&mut fin, record::FINISHED, tls_wire::filler(32, 3));
        push_encrypted(&mut out, APPLICATION_DATA, HANDSHAKE, &fin);
        wr.write_all(&out).await?;
        return Ok(answer);
    }
    if full12 {
        let mut cke = Vec::new();
        let mut point = Vec::with_capacity(33);
        push_vec(&mut point, Prefix::U8, tls_wire::filler(32, 5));
        push_handshake(&mut cke, record::CLIENT_KEY_EXCHANGE, &point);
        push_record(&mut out, HANDSHAKE, RECORD_VERSION, &cke);
    }
    push_change_cipher_spec(&mut out, RECORD_VERSION);
    push_record(&mut out, HANDSHAKE, RECORD_VERSION, tls_wire::filler(40, 1));
    wr.write_all(&out).await?;
    if full12 {
        // Second server flight: [NewSessionTicket] ChangeCipherSpec Finished.
        let mut after = false;
        loop {
            let (ct, body) = read_record(rd).await?;
            match ct {
                HANDSHAKE if after => break,
                HANDSHAKE => {
                    hb.push(&body)?;
                    while let Some((t, m)) = hb.next_message() {
                        if t == record::NEW_SESSION_TICKET {
                            answer.tickets.push(parse_ticket12(&m)?);
                        }
                    }
                }
                CHANGE_CIPHER_SPEC => after = true,
                _ => return Err(WireError::Malformed("second server flight")),
            }
        }
    }
    Ok(answer)
}

fn contains_finished(plain: &[u8]) -> Result<bool, WireError> {
    let mut hb = HandshakeBuffer::default();
    hb.push(plain)?;
    while let Some((t, _)) = hb.next_message() {
        if t == record::FINISHED {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Reads what the client needs from a ServerHello body, with the core's parser.
pub fn parse_server_hello(body: &[u8]) -> Result<ServerAnswer, WireError> {
    let info = tether_core::tls::ServerHelloInfo::parse(body)
        .map_err(|_| WireError::Malformed("server hello"))?;
    Ok(ServerAnswer {
        session_id: info.session_id.as_slice().to_vec(),
        tls13: info.is_tls13(),
        psk_accepted: info.psk_selected.is_some(),
        ..ServerAnswer::default()
    })
}

/// The ticket inside a TLS 1.2 NewSessionTicket body.
pub fn parse_ticket12(body: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut r = Reader::new(body);
    r.take(4, "ticket lifetime")?;
    Ok(r.vec16("ticket")?.to_vec())
}

/// The ticket inside a TLS 1.3 NewSessionTicket body.
pub fn parse_ticket13(body: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut r = Reader::new(body);
    r.take(8, "ticket lifetime/age")?;
    r.vec8("ticket nonce")?;
    Ok(r.vec16("ticket")?.to_vec())
}

/// Sends the request and reads the response; TLS 1.3 tickets arriving meanwhile are collected.
pub async fn exchange<R, W>(
    rd: &mut R,
    wr: &mut W,
    x: Exchange,
    tickets: &mut Vec<Vec<u8>>,
) -> Result<(), WireError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let len = (x.request_bytes as usize).max(8);
    let mut req = vec![0x41u8; len];
    req[..4].copy_from_slice(&x.response_bytes.to_be_bytes());
    req[4..8].copy_from_slice(&(len as u32).to_be_bytes());
    let mut out = Vec::with_capacity(len + 64);
    push_encrypted(&mut out, APPLICATION_DATA, APPLICATION_DATA, &req);
    write_segments(wr, &out).await?;
    let mut got = 0usize;
    while got < x.response_bytes as usize {
        let (ct, body) = read_record(rd).await?;
        if ct != APPLICATION_DATA {
            return Err(WireError::Malformed("application data"));
        }
        let (inner, plain) = tls_wire::open_encrypted(&body)?;
        match inner {
            APPLICATION_DATA => got += plain.len(),
            HANDSHAKE => {
                let mut hb = HandshakeBuffer::default();
                hb.push(plain)?;
                while let Some((t, m)) = hb.next_message() {
                    if t == record::NEW_SESSION_TICKET {
                        tickets.push(parse_ticket13(&m)?);
                    }
                }
            }
            _ => return Err(WireError::Malformed("inner content type")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> HelloShape<'static> {
        HelloShape {
            sni: "app.example.com",
            pq_key_share: true,
        }
    }

    #[test]
    fn openssl_ticket_client_sends_hash_of_ticket_as_session_id() {
        let mut rng = Rng::new(1);
        let mut c = ClientSession::new(ClientKind::Tls12TicketOpenssl, Duration::from_secs(600));
        let first = c.offer(&mut rng, 0);
        assert!(first.session_id.is_empty());
        assert_eq!(first.ticket, Some(vec![]));
        let answer = ServerAnswer {
            tickets: vec![vec![9; 100]],
            ..ServerAnswer::default()
        };
        assert!(!c.learn(&first, &answer, 0));
        let second = c.offer(&mut rng, 1000);
        assert_eq!(second.session_id, Sha256::digest([9u8; 100]).to_vec());
        let echo = ServerAnswer {
            session_id: second.session_id.clone(),
            ..ServerAnswer::default()
        };
        assert!(c.learn(&second, &echo, 1000));
        // After the client session lifetime the ticket is forgotten.
        assert!(c.offer(&mut rng, 700_000).session_id.is_empty());
    }

    #[test]
    fn tls13_single_use_pops_tickets_and_reuse_keeps_them() {
        let mut rng = Rng::new(2);
        for (kind, second_has_psk_again) in [
            (ClientKind::Tls13SingleUse, false),
            (ClientKind::Tls13Reuse, true),
        ] {
            let mut c = ClientSession::new(kind, Duration::from_secs(600));
            let o = c.offer(&mut rng, 0);
            assert!(o.psk.is_none());
            assert_eq!(o.session_id.len(), 32);
            let a = ServerAnswer {
                tls13: true,
                tickets: vec![vec![1; 50]],
                ..ServerAnswer::default()
            };
            c.learn(&o, &a, 0);
            let o2 = c.offer(&mut rng, 10);
            assert_eq!(o2.psk, Some(vec![1; 50]));
            let o3 = c.offer(&mut rng, 20);
            assert_eq!(o3.psk.is_some(), second_has_psk_again, "{kind:?}");
        }
    }

    #[test]
    fn pq_client_hello_is_real_framing_and_spans_segments() {
        let mut rng = Rng::new(3);
        let offer = Offer {
            session_id: vec![5; 32],
            ticket: None,
            psk: Some(vec![8; 200]),
        };
        let hello = client_hello(ClientKind::Tls13SingleUse, &offer, &shape(), &mut rng);
        assert!(hello.len() > SEGMENT, "len {}", hello.len());
        assert_eq!(&hello[..3], &[0x16, 0x03, 0x01]);
        assert_eq!(
            usize::from(u16::from_be_bytes([hello[3], hello[4]])),
            hello.len() - 5
        );
        assert_eq!(hello[5], record::CLIENT_HELLO);
        // payload_lv(43,1): the session ID length at offset 43 of the record.
        assert_eq!(hello[43], 32);
        assert_eq!(&hello[44..76], &[5; 32]);
        // pre_shared_key is the last extension.
        let body = &hello[9..];
        let mut r = Reader::new(body);
        r.take(34, "").unwrap();
        r.vec8("").unwrap();
        r.vec16("").unwrap();
        r.vec8("").unwrap();
        let exts = tls_wire::extensions(r.vec16("").unwrap()).unwrap();
        assert_eq!(exts.last().unwrap().0, extension::PRE_SHARED_KEY);
        assert!(exts
            .iter()
            .any(|(t, d)| *t == extension::KEY_SHARE && d.len() > 1216));
    }
}
