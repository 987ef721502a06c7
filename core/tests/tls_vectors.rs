//! Real handshakes captured from OpenSSL (see `vectors/capture.sh`): every field the parsers
//! expose is checked against what the capture script passed and what OpenSSL itself reported.

mod tls_support;

use sha2::{Digest, Sha256};
use tether_core::tls::{
    payload_lv, rep_ssl_hello_type, req_ssl_hello_type, ClientHelloParser, HelloOutcome,
    ProtocolVersion, ServerEvent, ServerFlight, ServerHelloInfo, TicketExt, DEFAULT_HELLO_CAP,
};
use tether_core::Progress;
use tls_support::hex;

struct Vector {
    c2s: Vec<u8>,
    s2c: Vec<u8>,
    /// Lines OpenSSL's s_client printed (Session-ID, lifetime hint, New/Reused).
    openssl: String,
}

fn load(name: &str) -> Vector {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/");
    let read = |ext: &str| std::fs::read_to_string(format!("{dir}{name}.{ext}")).unwrap();
    Vector {
        c2s: hex(&read("c2s.hex")),
        s2c: hex(&read("s2c.hex")),
        openssl: read("openssl.txt"),
    }
}

impl Vector {
    fn oracle(&self, key: &str) -> Option<&str> {
        self.openssl
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
    }
    fn reused(&self) -> bool {
        self.openssl.lines().any(|l| l.starts_with("Reused,"))
    }
    /// Server events, checked to be identical when fed whole and byte by byte.
    fn events(&self) -> Vec<ServerEvent> {
        let mut whole = ServerFlight::new(DEFAULT_HELLO_CAP);
        let all = whole.feed(&self.s2c);
        assert!(whole.is_done(), "flight not finished");
        let mut bytewise = ServerFlight::new(DEFAULT_HELLO_CAP);
        let mut one = Vec::new();
        for b in &self.s2c {
            bytewise.feed_into(std::slice::from_ref(b), &mut one);
        }
        assert_eq!(all, one);
        all
    }
}

fn server_hello(events: &[ServerEvent]) -> ServerHelloInfo {
    match events.first() {
        Some(ServerEvent::ServerHello(sh)) => *sh,
        other => panic!("first event {other:?}"),
    }
}

fn has_cert(events: &[ServerEvent]) -> bool {
    events.contains(&ServerEvent::Certificate)
}

fn tickets(events: &[ServerEvent]) -> Vec<(u32, Vec<u8>)> {
    events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::NewSessionTicket {
                lifetime_hint,
                ticket,
            } => Some((*lifetime_hint, ticket.clone())),
            _ => None,
        })
        .collect()
}

fn unhex_upper(s: &str) -> Vec<u8> {
    hex(&s.to_ascii_lowercase())
}

/// Checks what every OpenSSL hello here shares; returns (session id, ticket ext) owned.
fn check_common_hello(v: &Vector, sni: &str) -> (Vec<u8>, Option<Vec<u8>>, bool, usize) {
    let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
    let Progress::Done(HelloOutcome::Complete(h)) = p.parse(&v.c2s) else {
        panic!("no hello");
    };
    assert_eq!(h.server_name(), Some(sni.as_bytes()));
    assert_eq!(
        h.alpn().collect::<Vec<_>>(),
        vec![&b"h2"[..], &b"http/1.1"[..]]
    );
    assert_eq!(h.legacy_version(), ProtocolVersion::TLS1_2);
    assert!(h.cipher_suites().count() > 1);
    assert!(!h.has_ech());
    assert_eq!(req_ssl_hello_type(&v.c2s, false), Progress::Done(Some(1)));
    assert_eq!(rep_ssl_hello_type(&v.s2c, false), Progress::Done(Some(2)));
    let lv = payload_lv(&v.c2s, 43, 1, true);
    if h.session_id().is_empty() {
        assert_eq!(lv, Progress::Done(None));
    } else {
        assert_eq!(lv, Progress::Done(Some(h.session_id())));
    }
    let ticket = match h.session_ticket() {
        TicketExt::Absent => None,
        TicketExt::Empty => Some(Vec::new()),
        TicketExt::Ticket(t) => Some(t.to_vec()),
    };
    (
        h.session_id().to_vec(),
        ticket,
        h.offers_tls13(),
        h.psk_identities().count(),
    )
}

#[test]
fn tls12_session_id_resumption() {
    let full = load("tls12_sessid_full");
    let (sid, ticket, tls13, psk) = check_common_hello(&full, "sessid.tether.test");
    assert!(sid.is_empty(), "a fresh TLS 1.2 client sends no session id");
    assert!(!matches!(ticket, Some(ref t) if !t.is_empty()));
    assert!(!tls13 && psk == 0);
    let ev = full.events();
    let sh = server_hello(&ev);
    assert_eq!(sh.negotiated, ProtocolVersion::TLS1_2);
    assert!(!sh.session_ticket_ext && !sh.hello_retry_request);
    let issued = unhex_upper(full.oracle("Session-ID:").unwrap());
    assert_eq!(sh.session_id.as_slice(), &issued[..]);
    assert_eq!(sh.session_id.len(), 32);
    assert!(has_cert(&ev) && !full.reused());
    assert!(tickets(&ev).is_empty());
    assert_eq!(ev.last(), Some(&ServerEvent::ChangeCipherSpec));

    let res = load("tls12_sessid_resumed");
    let (sid2, _, _, _) = check_common_hello(&res, "sessid.tether.test");
    assert_eq!(sid2, issued, "client offers the issued id");
    let ev = res.events();
    let sh2 = server_hello(&ev);
    assert_eq!(sh2.session_id.as_slice(), &issued[..], "server echoes it");
    assert!(res.reused());
    assert!(!has_cert(&ev), "abbreviated handshake has no Certificate");
    assert_eq!(ev.last(), Some(&ServerEvent::ChangeCipherSpec));
}

#[test]
fn tls12_ticket_full_and_resumed() {
    let full = load("tls12_ticket_full");
    let (sid, ticket, _, _) = check_common_hello(&full, "ticket.tether.test");
    assert!(sid.is_empty());
    assert_eq!(
        ticket,
        Some(Vec::new()),
        "empty session_ticket: wants a ticket"
    );
    let ev = full.events();
    let sh = server_hello(&ev);
    assert!(sh.session_ticket_ext);
    assert_eq!(sh.negotiated, ProtocolVersion::TLS1_2);
    assert!(has_cert(&ev));
    let t = tickets(&ev);
    assert_eq!(t.len(), 1);
    let hint: u32 = full
        .oracle("TLS session ticket lifetime hint:")
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(t[0].0, hint);
    assert!(t[0].1.len() >= 32);
    let issued = t[0].1.clone();
    // NewSessionTicket comes before the server's ChangeCipherSpec, in cleartext.
    let pos_nst = ev
        .iter()
        .position(|e| matches!(e, ServerEvent::NewSessionTicket { .. }));
    let pos_ccs = ev.iter().position(|e| *e == ServerEvent::ChangeCipherSpec);
    assert!(pos_nst < pos_ccs && pos_ccs.is_some());

    let res = load("tls12_ticket_resumed");
    let (sid2, ticket2, _, _) = check_common_hello(&res, "ticket.tether.test");
    assert_eq!(ticket2.as_deref(), Some(&issued[..]), "presents the ticket");
    assert_eq!(
        sid2,
        Sha256::digest(&issued).to_vec(),
        "OpenSSL: id = SHA-256(ticket)"
    );
    let ev = res.events();
    let sh2 = server_hello(&ev);
    assert_eq!(sh2.session_id.as_slice(), &sid2[..], "accepted: id echoed");
    assert!(res.reused());
    assert!(!has_cert(&ev));
}

#[test]
fn tls13_full_and_psk_resumption() {
    let full = load("tls13_full");
    let (sid, _, tls13, psk) = check_common_hello(&full, "tls13.tether.test");
    assert!(tls13);
    assert_eq!(sid.len(), 32, "middlebox-compat random session id");
    assert_eq!(psk, 0);
    let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
    let Progress::Done(HelloOutcome::Complete(h)) = p.parse(&full.c2s) else {
        panic!()
    };
    assert!(h.key_share_groups().any(|g| g == 0x001d), "x25519 share");
    let ev = full.events();
    assert_eq!(ev.len(), 1, "only the ServerHello is cleartext: {ev:?}");
    let sh = server_hello(&ev);
    assert_eq!(sh.negotiated, ProtocolVersion::TLS1_3);
    assert_eq!(sh.legacy_version, ProtocolVersion::TLS1_2);
    assert_eq!(sh.session_id.as_slice(), &sid[..]);
    assert_eq!(sh.psk_selected, None);
    assert!(!has_cert(&ev));

    let res = load("tls13_resumed");
    let (sid2, _, tls13, psk) = check_common_hello(&res, "tls13.tether.test");
    assert!(tls13);
    assert_ne!(sid2, sid, "fresh random id every connection");
    assert_eq!(psk, 1, "one PSK identity (the ticket)");
    let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
    let Progress::Done(HelloOutcome::Complete(h)) = p.parse(&res.c2s) else {
        panic!()
    };
    assert_eq!(h.extensions().last().map(|e| e.typ), Some(0x0029));
    assert!(h.psk_identities().all(|id| id.len() > 32));
    let sh = server_hello(&res.events());
    assert!(res.reused());
    assert_eq!(sh.psk_selected, Some(0), "server accepted identity 0");
    assert_eq!(sh.negotiated, ProtocolVersion::TLS1_3);
}

#[test]
fn real_hellos_parse_identically_in_one_byte_records_and_segments() {
    for name in ["tls12_ticket_resumed", "tls13_resumed", "tls13_full"] {
        let v = load(name);
        let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
        let len = v.c2s[3] as usize * 256 + v.c2s[4] as usize;
        let Progress::Done(HelloOutcome::Complete(h)) = p.parse(&v.c2s[..5 + len]) else {
            panic!()
        };
        let exts: Vec<_> = h.extensions().collect();
        let msg = v.c2s[5..5 + len].to_vec();
        let split = tls_support::records(0x16, &msg, &[1]);
        let mut q = ClientHelloParser::new(DEFAULT_HELLO_CAP);
        for end in 1..split.len() {
            assert!(matches!(q.parse(&split[..end]), Progress::NeedMore));
        }
        let Progress::Done(HelloOutcome::Complete(h2)) = q.parse(&split) else {
            panic!()
        };
        assert_eq!(h2.extensions().collect::<Vec<_>>(), exts, "{name}");
        assert_eq!(h2.session_id(), h.session_id());
    }
}
