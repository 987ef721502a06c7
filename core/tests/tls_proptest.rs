//! Property tests of the TLS parsers: no panics on any input or chunking, the same parse
//! whatever the record and segment boundaries, field-by-field round trips of generated hellos
//! and flights, agreement with HAProxy's `payload_lv(43,1)`, and a differential check against
//! the `tls-parser` crate.

mod tls_support;

use proptest::prelude::*;
use tether_core::tls::{
    payload_lv, ClientHello, ClientHelloParser, HelloOutcome, ProtocolVersion, ServerEvent,
    ServerFlight, TicketExt, DEFAULT_HELLO_CAP,
};
use tether_core::Progress;
use tls_support::*;

/// Everything the parser exposes, owned, so two parses can be compared.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    version: u16,
    random: Vec<u8>,
    session_id: Vec<u8>,
    ciphers: Vec<u16>,
    compression: Vec<u8>,
    sni: Option<Vec<u8>>,
    alpn: Vec<Vec<u8>>,
    ticket: Option<Option<Vec<u8>>>,
    versions: Vec<u16>,
    offers_tls13: bool,
    psk: Vec<Vec<u8>>,
    ech: bool,
    groups: Vec<u16>,
    extensions: Vec<(u16, Vec<u8>)>,
}

fn summary(h: &ClientHello<'_>) -> Summary {
    Summary {
        version: h.legacy_version().0,
        random: h.random().to_vec(),
        session_id: h.session_id().to_vec(),
        ciphers: h.cipher_suites().collect(),
        compression: h.compression_methods().to_vec(),
        sni: h.server_name().map(<[u8]>::to_vec),
        alpn: h.alpn().map(<[u8]>::to_vec).collect(),
        ticket: match h.session_ticket() {
            TicketExt::Absent => None,
            TicketExt::Empty => Some(None),
            TicketExt::Ticket(t) => Some(Some(t.to_vec())),
        },
        versions: h.supported_versions().map(|v| v.0).collect(),
        offers_tls13: h.offers_tls13(),
        psk: h.psk_identities().map(<[u8]>::to_vec).collect(),
        ech: h.has_ech(),
        groups: h.key_share_groups().collect(),
        extensions: h.extensions().map(|e| (e.typ, e.data.to_vec())).collect(),
    }
}

/// Feeds `stream` to a fresh parser as it would arrive in `chunks`; every strict prefix must
/// say NeedMore; returns the verdict on the whole stream.
fn parse_in_chunks(stream: &[u8], sizes: &[usize]) -> Result<Summary, TestCaseError> {
    let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
    let mut end = 0;
    for c in chunks(stream, sizes) {
        end += c.len();
        let out = p.parse(&stream[..end]);
        if end < stream.len() {
            if !matches!(out, Progress::NeedMore) {
                return Err(TestCaseError::fail(format!(
                    "{out:?} at {end}/{}",
                    stream.len()
                )));
            }
        } else {
            return match out {
                Progress::Done(HelloOutcome::Complete(h)) => Ok(summary(&h)),
                other => Err(TestCaseError::fail(format!("{other:?}"))),
            };
        }
    }
    Err(TestCaseError::fail("empty stream"))
}

fn expected(spec: &HelloSpec) -> Summary {
    let e = spec.extensions.clone().unwrap_or_default();
    Summary {
        version: spec.version,
        random: spec.random.to_vec(),
        session_id: spec.session_id.clone(),
        ciphers: spec.ciphers.clone(),
        compression: spec.compression.clone(),
        sni: e.sni.clone(),
        alpn: e.alpn.clone(),
        ticket: e
            .ticket
            .clone()
            .map(|t| if t.is_empty() { None } else { Some(t) }),
        versions: e.versions.clone(),
        offers_tls13: e.versions.contains(&0x0304),
        psk: e.psk.clone(),
        ech: e.ech.is_some(),
        groups: e.key_shares.iter().map(|(g, _)| *g).collect(),
        extensions: e.list(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn client_parser_never_panics_on_arbitrary_bytes(
        mut stream in proptest::collection::vec(any::<u8>(), 0..600),
        first in prop_oneof![Just(0x16u8), any::<u8>()],
        sizes in proptest::collection::vec(1usize..64, 1..6),
    ) {
        if let Some(b) = stream.first_mut() { *b = first; }
        let mut p = ClientHelloParser::new(512);
        let mut end = 0;
        for c in chunks(&stream, &sizes) {
            end += c.len();
            let _ = p.parse(&stream[..end]);
        }
    }

    #[test]
    fn client_parser_never_panics_on_corrupted_hellos(
        spec in hello_spec(),
        rec_sizes in proptest::collection::vec(1usize..300, 1..4),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut stream = records(0x16, &spec.message(), &rec_sizes);
        for (i, b) in flips {
            let i = i.index(stream.len());
            stream[i] = b;
        }
        let end = cut.index(stream.len() + 1);
        let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
        let _ = p.parse(&stream[..end]);
        let _ = p.parse(&stream);
    }

    #[test]
    fn server_flight_never_panics_on_any_bytes_or_chunking(
        mut stream in proptest::collection::vec(any::<u8>(), 0..800),
        sh in server_hello_spec(),
        prefix_valid in any::<bool>(),
        sizes in proptest::collection::vec(1usize..100, 1..6),
    ) {
        if prefix_valid {
            let mut s = record(0x16, &sh.message());
            s.append(&mut stream);
            stream = s;
        }
        let mut f = ServerFlight::new(1024);
        let mut total = 0;
        for c in chunks(&stream, &sizes) {
            total += f.feed(c).len();
        }
        prop_assert!(total <= stream.len());
        if f.is_done() {
            prop_assert!(f.feed(&stream).is_empty());
        }
    }

    #[test]
    fn generated_hellos_round_trip_field_by_field(spec in hello_spec()) {
        let stream = record(0x16, &spec.message());
        prop_assert_eq!(parse_in_chunks(&stream, &[usize::MAX])?, expected(&spec));
    }

    #[test]
    fn any_record_and_segment_split_parses_the_same(
        spec in hello_spec(),
        rec_sizes in proptest::collection::vec(prop_oneof![Just(1usize), 1usize..40, 1usize..2000], 1..5),
        seg_sizes in proptest::collection::vec(prop_oneof![Just(1usize), 1usize..10, 1usize..3000], 1..5),
    ) {
        let msg = spec.message();
        let whole = parse_in_chunks(&record(0x16, &msg), &[usize::MAX])?;
        let split = records(0x16, &msg, &rec_sizes);
        prop_assume!(split.len() <= DEFAULT_HELLO_CAP);
        prop_assert_eq!(parse_in_chunks(&split, &seg_sizes)?, whole);
    }

    #[test]
    fn session_id_matches_haproxy_payload_lv_43_1(spec in hello_spec()) {
        let stream = record(0x16, &spec.message());
        let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
        let Progress::Done(HelloOutcome::Complete(h)) = p.parse(&stream) else {
            return Err(TestCaseError::fail("not complete"));
        };
        match payload_lv(&stream, 43, 1, true) {
            Progress::Done(Some(sid)) => prop_assert_eq!(sid, h.session_id()),
            Progress::Done(None) => prop_assert!(h.session_id().is_empty()),
            Progress::NeedMore => prop_assert!(false, "final evaluation waited"),
        }
    }

    #[test]
    fn agrees_with_tls_parser(spec in hello_spec()) {
        use tls_parser::{TlsExtension, TlsExtensionType, TlsMessage, TlsMessageHandshake};
        let stream = record(0x16, &spec.message());
        let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
        let Progress::Done(HelloOutcome::Complete(ours)) = p.parse(&stream) else {
            return Err(TestCaseError::fail("tether did not parse"));
        };
        let (_, plain) = tls_parser::parse_tls_plaintext(&stream).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let Some(TlsMessage::Handshake(TlsMessageHandshake::ClientHello(theirs))) = plain.msg.first() else {
            return Err(TestCaseError::fail("tls-parser: not a ClientHello"));
        };
        prop_assert_eq!(ours.legacy_version().0, theirs.version.0);
        prop_assert_eq!(&ours.random()[..], theirs.random);
        prop_assert_eq!(ours.session_id(), theirs.session_id.unwrap_or(&[]));
        prop_assert_eq!(ours.cipher_suites().collect::<Vec<_>>(), theirs.ciphers.iter().map(|c| c.0).collect::<Vec<_>>());
        let their_exts = match theirs.ext {
            Some(raw) => {
                let (rest, exts) = tls_parser::parse_tls_client_hello_extensions(raw).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                prop_assert!(rest.is_empty(), "tls-parser left {} bytes", rest.len());
                exts
            }
            None => Vec::new(),
        };
        let their_types: Vec<u16> = their_exts.iter().map(|e| TlsExtensionType::from(e).0).collect();
        // tls-parser reports every type matching 0x?a?a (GREASE-like) as 0xfafa.
        let grease = |t: u16| if t & 0x0f0f == 0x0a0a { 0xfafa } else { t };
        let our_types: Vec<u16> = ours.extensions().map(|e| grease(e.typ)).collect();
        prop_assert_eq!(our_types, their_types);
        let their_sni = their_exts.iter().find_map(|e| match e {
            TlsExtension::SNI(names) => names.iter().find(|(t, _)| t.0 == 0).map(|(_, n)| *n),
            _ => None,
        });
        prop_assert_eq!(ours.server_name(), their_sni);
        let their_alpn: Vec<&[u8]> = their_exts.iter().find_map(|e| match e {
            TlsExtension::ALPN(p) => Some(p.clone()),
            _ => None,
        }).unwrap_or_default();
        prop_assert_eq!(ours.alpn().collect::<Vec<_>>(), their_alpn);
    }

    #[test]
    fn server_flight_round_trips_under_any_split(
        sh in server_hello_spec(),
        with_cert in any::<bool>(),
        cert_len in 0usize..3000,
        ticket in proptest::option::of((any::<u32>(), proptest::collection::vec(any::<u8>(), 0..400))),
        rec_sizes in proptest::collection::vec(prop_oneof![Just(1usize), 1usize..50, 1usize..5000], 1..4),
        seg_sizes in proptest::collection::vec(prop_oneof![Just(1usize), 1usize..20, 1usize..4000], 1..4),
    ) {
        let mut hs = sh.message();
        if with_cert {
            hs.extend(handshake(11, &vec![0xce; cert_len]));
        }
        hs.extend(handshake(14, &[]));
        if let Some((life, t)) = &ticket {
            hs.extend(new_session_ticket(*life, t));
        }
        let mut stream = records(0x16, &hs, &rec_sizes);
        stream.extend([0x14, 3, 3, 0, 1, 1]);
        stream.extend([0x17, 3, 3, 0, 3, 9, 9, 9]);

        let tls13 = sh.supported_version == Some(0x0304);
        let mut want = vec![ServerEvent::ServerHello(tether_core::tls::ServerHelloInfo {
            legacy_version: ProtocolVersion(sh.version),
            session_id: tether_core::tls::SessionId::from_slice(&sh.session_id).unwrap(),
            cipher: sh.cipher,
            negotiated: ProtocolVersion(sh.supported_version.unwrap_or(sh.version)),
            hello_retry_request: false,
            psk_selected: sh.psk,
            session_ticket_ext: sh.ticket_ext,
        })];
        if !tls13 {
            if with_cert { want.push(ServerEvent::Certificate); }
            if let Some((lifetime_hint, t)) = ticket {
                want.push(ServerEvent::NewSessionTicket { lifetime_hint, ticket: t });
            }
            want.push(ServerEvent::ChangeCipherSpec);
        }
        let mut f = ServerFlight::new(DEFAULT_HELLO_CAP);
        let mut got = Vec::new();
        for c in chunks(&stream, &seg_sizes) {
            f.feed_into(c, &mut got);
        }
        prop_assert!(f.is_done());
        prop_assert_eq!(got, want);
    }
}
