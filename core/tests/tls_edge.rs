//! Edge cases of the wire: post-quantum-sized hellos over several records and segments, SSLv2
//! hellos, tiny first records, caps, protocol violations, HelloRetryRequest and alerts.

mod tls_support;

use tether_core::tls::encode::ClientHelloBuilder;
use tether_core::tls::{
    ClientHelloParser, HelloOutcome, Malformed, ProtocolVersion, ServerEvent, ServerFlight,
    DEFAULT_HELLO_CAP, HELLO_RETRY_REQUEST_RANDOM,
};
use tether_core::Progress;
use tls_support::*;

/// A Chrome-like hello with an X25519MLKEM768 (0x11ec) 1216-byte share plus x25519: ~1.8 KB.
fn pq_hello() -> HelloSpec {
    HelloSpec {
        version: 0x0303,
        random: [0x42; 32],
        session_id: vec![0x5a; 32],
        ciphers: vec![0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030],
        compression: vec![0],
        extensions: Some(ExtSpec {
            sni: Some(b"pq.tether.test".to_vec()),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            ticket: Some(Vec::new()),
            versions: vec![0x0304, 0x0303],
            key_shares: vec![(0x11ec, vec![0xab; 1216]), (0x001d, vec![0xcd; 32])],
            ech: None,
            other: vec![(0x0015, vec![0; 300])],
            psk: vec![],
        }),
    }
}

fn complete<'a>(out: Progress<HelloOutcome<'a>>) -> tether_core::tls::ClientHello<'a> {
    match out {
        Progress::Done(HelloOutcome::Complete(h)) => h,
        other => panic!("expected a hello, got {other:?}"),
    }
}

#[test]
fn post_quantum_hello_over_records_and_segments() {
    let msg = pq_hello().message();
    assert!((1700..2000).contains(&msg.len()), "{}", msg.len());
    for rec_sizes in [&[16384][..], &[1000], &[517, 1], &[1], &[3, 700, 5]] {
        let stream = records(0x16, &msg, rec_sizes);
        for seg in [&[1448][..], &[1], &[7, 1200], &[usize::MAX]] {
            let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
            let mut end = 0;
            let mut last = None;
            for c in chunks(&stream, seg) {
                end += c.len();
                let out = p.parse(&stream[..end]);
                if end < stream.len() {
                    assert!(matches!(out, Progress::NeedMore), "{out:?}");
                } else {
                    let h = complete(out);
                    assert_eq!(h.key_share_groups().collect::<Vec<_>>(), [0x11ec, 0x001d]);
                    assert_eq!(h.server_name(), Some(&b"pq.tether.test"[..]));
                    assert_eq!(h.session_id(), &[0x5a; 32]);
                    assert!(h.offers_tls13());
                    last = Some(h.extensions().count());
                }
            }
            assert_eq!(last, Some(6), "records {rec_sizes:?} segments {seg:?}");
        }
    }
}

#[test]
fn sslv2_hello_is_recognised() {
    // SSLv2 CLIENT-HELLO: 2-byte header with the high bit set, msg type 1, version 3.1.
    let v2 = [
        0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
    ];
    let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
    assert!(matches!(p.parse(&v2[..1]), Progress::NeedMore));
    assert!(matches!(p.parse(&v2[..2]), Progress::NeedMore));
    assert!(matches!(p.parse(&v2), Progress::Done(HelloOutcome::SslV2)));
    assert!(matches!(
        p.parse(&[0x80, 0x2e, 0x04]),
        Progress::Done(HelloOutcome::NotTls)
    ));
}

#[test]
fn non_tls_is_decided_from_one_byte() {
    for first in [b'G', b'P', 0x00, 0x15, 0x17, 0x7f] {
        let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
        assert!(
            matches!(p.parse(&[first]), Progress::Done(HelloOutcome::NotTls)),
            "{first:#x}"
        );
    }
    let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
    assert!(matches!(p.parse(&[0x16]), Progress::NeedMore));
    assert!(matches!(p.parse(&[]), Progress::NeedMore));
}

#[test]
fn first_record_of_one_byte() {
    let msg = pq_hello().message();
    let mut stream = records(0x16, &msg[..1], &[1]);
    stream.extend(records(0x16, &msg[1..], &[16384]));
    assert_eq!(&stream[..6], &[0x16, 3, 1, 0, 1, 1]);
    let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
    assert!(matches!(p.parse(&stream[..6]), Progress::NeedMore));
    assert!(matches!(p.parse(&stream[..11]), Progress::NeedMore));
    let h = complete(p.parse(&stream));
    assert_eq!(h.random(), &[0x42; 32]);
}

#[test]
fn oversized_hello_is_too_large() {
    let mut spec = pq_hello();
    spec.extensions.as_mut().unwrap().other = vec![(0x0015, vec![0; 5000])];
    let msg = spec.message();
    // Announced in the handshake header: decided before the body arrives.
    let stream = records(0x16, &msg, &[16384]);
    let mut p = ClientHelloParser::new(4096);
    assert!(matches!(
        p.parse(&stream[..9]),
        Progress::Done(HelloOutcome::TooLarge)
    ));
    let mut p = ClientHelloParser::new(4096);
    assert!(matches!(
        p.parse(&records(0x16, &msg, &[2])),
        Progress::Done(HelloOutcome::TooLarge)
    ));
    // A hello under the cap but spread over so many records the stream exceeds it.
    let small = pq_hello().message();
    let stream = records(0x16, &small, &[1]);
    assert!(stream.len() > 4096);
    let mut p = ClientHelloParser::new(4096);
    assert!(matches!(
        p.parse(&stream),
        Progress::Done(HelloOutcome::TooLarge)
    ));
    let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
    complete(p.parse(&stream));
}

/// A hello with exactly these extensions, in this order (the encoder neither sorts nor dedups).
fn raw_hello(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut hello = ClientHelloBuilder::new([1; 32]);
    hello.cipher_suites(&[0x1301]).empty_extensions();
    for (t, d) in exts {
        hello.extension(*t, d);
    }
    record(0x16, &hello.message())
}

fn malformed(stream: &[u8]) -> Malformed {
    let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
    match p.parse(stream) {
        Progress::Done(HelloOutcome::Malformed(m)) => m,
        other => panic!("expected malformed, got {other:?}"),
    }
}

#[test]
fn protocol_violations_are_malformed_with_a_reason() {
    let psk = ExtSpec {
        psk: vec![b"identity".to_vec()],
        ..Default::default()
    }
    .list()
    .pop()
    .unwrap();
    assert_eq!(
        malformed(&raw_hello(&[psk.clone(), (0x0017, vec![])])),
        Malformed::PskNotLast
    );
    assert!(matches!(
        p_ok(&raw_hello(&[(0x0017, vec![]), psk])),
        Some(1)
    ));
    assert_eq!(
        malformed(&raw_hello(&[(0x0017, vec![]), (0x0017, vec![])])),
        Malformed::DuplicateExtension(0x0017)
    );
    assert_eq!(
        malformed(&raw_hello(&[(0x0000, vec![0, 1, 0])])),
        Malformed::BadExtension(0)
    );
    let mut long_sid = raw_hello(&[]);
    long_sid[43] = 33;
    assert!(matches!(
        malformed(&long_sid),
        Malformed::SessionIdTooLong(33) | Malformed::Truncated
    ));
    let mut not_hello = raw_hello(&[]);
    not_hello[5] = 2;
    assert_eq!(malformed(&not_hello), Malformed::UnexpectedHandshake(2));
    assert_eq!(malformed(&[0x16, 3, 1, 0, 0]), Malformed::EmptyRecord);
    assert_eq!(
        malformed(&[0x16, 3, 1, 0x40, 1]),
        Malformed::RecordOverflow(16385)
    );
    // A hello spread over records, interrupted by an alert.
    let mut s = records(0x16, &pq_hello().message()[..100], &[100]);
    s.extend([0x15, 3, 3, 0, 2, 2, 40]);
    assert_eq!(malformed(&s), Malformed::UnexpectedRecord(0x15));
    assert_eq!(
        Malformed::DuplicateExtension(0x2b).to_string(),
        "duplicate extension 0x002b"
    );
}

fn p_ok(stream: &[u8]) -> Option<usize> {
    let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
    match p.parse(stream) {
        Progress::Done(HelloOutcome::Complete(h)) => Some(h.psk_identities().count()),
        _ => None,
    }
}

#[test]
fn hello_retry_request_then_real_server_hello() {
    let hrr = ServerHelloSpec {
        version: 0x0303,
        random: HELLO_RETRY_REQUEST_RANDOM,
        session_id: vec![9; 32],
        cipher: 0x1301,
        supported_version: Some(0x0304),
        other: vec![(0x0033, vec![0x11, 0xec])],
        ..Default::default()
    };
    let sh = ServerHelloSpec {
        random: [3; 32],
        other: vec![],
        psk: Some(0),
        ..hrr.clone()
    };
    let mut stream = record(0x16, &hrr.message());
    stream.extend([0x14, 3, 3, 0, 1, 1]);
    stream.extend(record(0x16, &sh.message()));
    stream.extend([0x17, 3, 3, 0, 1, 0]);
    let mut f = ServerFlight::new(DEFAULT_HELLO_CAP);
    let ev = f.feed(&stream);
    assert!(f.is_done());
    assert_eq!(ev.len(), 3, "{ev:?}");
    let ServerEvent::ServerHello(first) = ev[0] else {
        panic!()
    };
    assert!(first.hello_retry_request);
    assert_eq!(ev[1], ServerEvent::ChangeCipherSpec);
    let ServerEvent::ServerHello(second) = ev[2] else {
        panic!()
    };
    assert!(!second.hello_retry_request);
    assert_eq!(second.negotiated, ProtocolVersion::TLS1_3);
    assert_eq!(second.psk_selected, Some(0));
}

#[test]
fn server_flight_stops_on_alert_error_and_cap() {
    let mut f = ServerFlight::new(DEFAULT_HELLO_CAP);
    assert_eq!(
        f.feed(&[0x15, 3, 3, 0, 2, 2, 40]),
        [ServerEvent::Alert {
            level: 2,
            description: 40
        }]
    );
    assert!(f.is_done());
    assert!(f.feed(&[0x16, 3, 3, 0, 4, 2, 0, 0, 0]).is_empty());

    let mut f = ServerFlight::new(DEFAULT_HELLO_CAP);
    assert_eq!(
        f.feed(b"HTTP/1.1 200 OK\r\n"),
        [ServerEvent::Malformed(Malformed::NotHandshake(b'H'))]
    );
    assert!(f.is_done());

    let mut f = ServerFlight::new(DEFAULT_HELLO_CAP);
    assert_eq!(
        f.feed(&record(0x16, &handshake(11, &[0; 10]))),
        [ServerEvent::Malformed(Malformed::UnexpectedHandshake(11))]
    );

    // A retained message larger than the cap.
    let mut f = ServerFlight::new(64);
    let sh = ServerHelloSpec {
        version: 0x0303,
        other: vec![(0x0100, vec![0; 100])],
        ..Default::default()
    };
    let msg = sh.message();
    assert_eq!(
        f.feed(&record(0x16, &msg)),
        [ServerEvent::Malformed(Malformed::MessageTooLarge(
            msg.len() - 4
        ))]
    );
    // Certificates are skipped, not kept, but the examined bytes are bounded.
    let mut f = ServerFlight::new(1024);
    let small = ServerHelloSpec {
        version: 0x0303,
        ..Default::default()
    };
    let mut hs = small.message();
    hs.extend(handshake(11, &vec![0; 5000]));
    let ev = f.feed(&records(0x16, &hs, &[16384]));
    assert_eq!(ev[1], ServerEvent::Certificate);
    assert_eq!(
        ev.last(),
        Some(&ServerEvent::Malformed(Malformed::FlightTooLarge))
    );
    assert!(f.is_done());
}
