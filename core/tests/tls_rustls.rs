//! Real rustls handshakes, run in memory: every byte each side writes is recorded and parsed
//! with tether's parsers, for TLS 1.3 (full + PSK resumption) and TLS 1.2 (session ID and
//! ticket resumption).

mod tls_support;

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use tether_core::server::check::verify::AnyServerCertificate;
use tether_core::tls::{
    ClientHelloParser, HelloOutcome, ProtocolVersion, ServerEvent, ServerFlight, ServerHelloInfo,
    TicketExt, DEFAULT_HELLO_CAP,
};
use tether_core::Progress;

fn vectors(file: &str) -> String {
    format!("{}/tests/vectors/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn server_config(tickets: bool) -> Arc<ServerConfig> {
    let cert = CertificateDer::from_pem_file(vectors("test_server.cert.pem")).unwrap();
    let key = PrivateKeyDer::from_pem_file(vectors("test_server.key.pem")).unwrap();
    let mut cfg =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    if tickets {
        cfg.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
    }
    Arc::new(cfg)
}

fn client_config(versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
    // Any certificate: the test is about the hello bytes, not about PKI.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = AnyServerCertificate::new(provider.signature_verification_algorithms);
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// Both directions of one connection, byte for byte.
struct Capture {
    c2s: Vec<u8>,
    s2c: Vec<u8>,
}

fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>, sni: &str) -> Capture {
    let mut c = ClientConnection::new(
        client.clone(),
        ServerName::try_from(sni.to_string()).unwrap(),
    )
    .unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    let mut cap = Capture {
        c2s: Vec::new(),
        s2c: Vec::new(),
    };
    for _ in 0..20 {
        let mut moved = false;
        while c.wants_write() {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            cap.c2s.extend_from_slice(&buf);
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
                s.process_new_packets().unwrap();
            }
            moved = true;
        }
        while s.wants_write() {
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            cap.s2c.extend_from_slice(&buf);
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets().unwrap();
            }
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(!c.is_handshaking() && !s.is_handshaking());
    cap
}

/// Owned facts of the client's hello.
#[derive(Debug)]
struct Hello {
    session_id: Vec<u8>,
    ticket: Option<Vec<u8>>,
    tls13: bool,
    psk: Vec<Vec<u8>>,
    last_ext: Option<u16>,
}

fn hello(cap: &Capture, sni: &str) -> Hello {
    // Feed it as TCP would: in 100-byte segments.
    let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
    let mut end = 0;
    loop {
        end = (end + 100).min(cap.c2s.len());
        match p.parse(&cap.c2s[..end]) {
            Progress::NeedMore => assert!(end < cap.c2s.len()),
            Progress::Done(HelloOutcome::Complete(h)) => {
                assert_eq!(h.server_name(), Some(sni.as_bytes()));
                assert_eq!(h.alpn().collect::<Vec<_>>(), [&b"h2"[..], &b"http/1.1"[..]]);
                assert!(h.key_share_groups().count() > 0 || !h.offers_tls13());
                return Hello {
                    session_id: h.session_id().to_vec(),
                    ticket: match h.session_ticket() {
                        TicketExt::Absent => None,
                        TicketExt::Empty => Some(Vec::new()),
                        TicketExt::Ticket(t) => Some(t.to_vec()),
                    },
                    tls13: h.offers_tls13(),
                    psk: h.psk_identities().map(<[u8]>::to_vec).collect(),
                    last_ext: h.extensions().last().map(|e| e.typ),
                };
            }
            other => panic!("{other:?}"),
        }
    }
}

fn events(cap: &Capture) -> (ServerHelloInfo, Vec<ServerEvent>) {
    let mut f = ServerFlight::new(DEFAULT_HELLO_CAP);
    let mut ev = Vec::new();
    for c in cap.s2c.chunks(37) {
        f.feed_into(c, &mut ev);
    }
    assert!(f.is_done());
    match ev.first() {
        Some(ServerEvent::ServerHello(sh)) => (*sh, ev),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rustls_tls13_full_then_psk_resumption() {
    let client = client_config(&[&rustls::version::TLS13, &rustls::version::TLS12]);
    let server = server_config(false);
    let full = handshake(&client, &server, "rustls.tether.test");
    let h = hello(&full, "rustls.tether.test");
    assert!(h.tls13 && h.psk.is_empty());
    assert_eq!(h.session_id.len(), 32);
    let (sh, ev) = events(&full);
    assert_eq!(sh.negotiated, ProtocolVersion::TLS1_3);
    assert_eq!(sh.session_id.as_slice(), &h.session_id[..]);
    assert_eq!(ev.len(), 1, "TLS 1.3: only the ServerHello is readable");

    let res = handshake(&client, &server, "rustls.tether.test");
    let h2 = hello(&res, "rustls.tether.test");
    assert_eq!(h2.psk.len(), 1, "resumes with one PSK identity");
    assert_eq!(h2.last_ext, Some(0x0029), "pre_shared_key last");
    assert_ne!(h2.session_id, h.session_id);
    let (sh2, _) = events(&res);
    assert_eq!(sh2.psk_selected, Some(0));
    assert_eq!(sh2.negotiated, ProtocolVersion::TLS1_3);
}

#[test]
fn rustls_tls12_session_id_resumption() {
    let client = client_config(&[&rustls::version::TLS12]);
    let server = server_config(false);
    let full = handshake(&client, &server, "sid12.tether.test");
    let h = hello(&full, "sid12.tether.test");
    assert!(!h.tls13);
    let (sh, ev) = events(&full);
    assert_eq!(sh.negotiated, ProtocolVersion::TLS1_2);
    assert_eq!(sh.session_id.len(), 32, "stateful server issues an id");
    assert!(ev.contains(&ServerEvent::Certificate));
    assert!(!ev
        .iter()
        .any(|e| matches!(e, ServerEvent::NewSessionTicket { .. })));

    let res = handshake(&client, &server, "sid12.tether.test");
    let h2 = hello(&res, "sid12.tether.test");
    assert_eq!(
        h2.session_id,
        sh.session_id.as_slice(),
        "offers the issued id"
    );
    let (sh2, ev2) = events(&res);
    assert_eq!(sh2.session_id, sh.session_id, "echo = resumed");
    assert!(!ev2.contains(&ServerEvent::Certificate));
    assert_eq!(ev2.last(), Some(&ServerEvent::ChangeCipherSpec));
}

#[test]
fn rustls_tls12_ticket_resumption() {
    let client = client_config(&[&rustls::version::TLS12]);
    let server = server_config(true);
    let full = handshake(&client, &server, "t12.tether.test");
    let h = hello(&full, "t12.tether.test");
    assert_eq!(h.ticket, Some(Vec::new()), "asks for a ticket");
    let (sh, ev) = events(&full);
    assert!(sh.session_ticket_ext);
    assert!(ev.contains(&ServerEvent::Certificate));
    let ticket = ev
        .iter()
        .find_map(|e| match e {
            ServerEvent::NewSessionTicket { ticket, .. } => Some(ticket.clone()),
            _ => None,
        })
        .expect("cleartext NewSessionTicket");
    assert!(!ticket.is_empty());

    let res = handshake(&client, &server, "t12.tether.test");
    let h2 = hello(&res, "t12.tether.test");
    assert_eq!(
        h2.ticket.as_deref(),
        Some(&ticket[..]),
        "presents the ticket"
    );
    let (sh2, ev2) = events(&res);
    assert!(!ev2.contains(&ServerEvent::Certificate), "resumed");
    if !h2.session_id.is_empty() {
        assert_eq!(sh2.session_id.as_slice(), &h2.session_id[..], "echo");
    }
}
