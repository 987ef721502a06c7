//! ClientHello parsing cost: tether's parser against tls-parser on the same bytes, for a typical
//! captured OpenSSL hello and a post-quantum-sized (X25519MLKEM768) one.
//!
//! Each iteration does what the balancer needs: find the hello in the stream and read the
//! session ID and the SNI.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tether_core::tls::encode::ClientHelloBuilder;
use tether_core::tls::{
    extension, ClientHelloParser, HelloOutcome, ProtocolVersion, DEFAULT_HELLO_CAP,
};
use tether_core::Progress;
use tls_parser::{TlsExtension, TlsMessage, TlsMessageHandshake};

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The first record of a captured stream.
fn first_record(stream: &[u8]) -> Vec<u8> {
    let len = usize::from(u16::from_be_bytes([stream[3], stream[4]]));
    stream[..5 + len].to_vec()
}

/// A Chrome-like hello with a 1216-byte X25519MLKEM768 share, in one record.
fn pq_hello() -> Vec<u8> {
    ClientHelloBuilder::new([0x42; 32])
        .session_id(&[0x5a; 32])
        .cipher_suites(&[0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f])
        .server_name(b"pq.tether.test")
        .extension(extension::EXTENDED_MASTER_SECRET, &[])
        .extension(extension::RENEGOTIATION_INFO, &[0])
        .supported_groups(&[0x11ec, 0x001d, 0x0017])
        .extension(0x000b, &[1, 0]) // ec_point_formats: uncompressed
        .session_ticket(&[])
        .alpn(&[b"h2", b"http/1.1"])
        .extension(extension::SIGNATURE_ALGORITHMS, &[0, 4, 4, 3, 8, 4])
        .key_share(&[(0x11ec, &[0xab; 1216]), (0x001d, &[0xcd; 32])])
        .psk_key_exchange_modes(&[1])
        .supported_versions(&[ProtocolVersion::TLS1_3, ProtocolVersion::TLS1_2])
        .extension(extension::ENCRYPTED_CLIENT_HELLO, &[0xec; 280]) // GREASE ECH, as Chrome sends
        .records()
}

fn tether(stream: &[u8]) -> (usize, usize) {
    let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
    match p.parse(stream) {
        Progress::Done(HelloOutcome::Complete(h)) => {
            (h.session_id().len(), h.server_name().map_or(0, <[u8]>::len))
        }
        _ => panic!("tether failed"),
    }
}

fn tls_parser(stream: &[u8]) -> (usize, usize) {
    let (_, plain) = tls_parser::parse_tls_plaintext(stream).expect("tls-parser");
    let Some(TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch))) = plain.msg.first()
    else {
        panic!("tls-parser: not a hello")
    };
    let (_, exts) =
        tls_parser::parse_tls_client_hello_extensions(ch.ext.unwrap_or(&[])).expect("extensions");
    let sni = exts.iter().find_map(|e| match e {
        TlsExtension::SNI(v) => v.first().map(|(_, n)| n.len()),
        _ => None,
    });
    (ch.session_id.map_or(0, <[u8]>::len), sni.unwrap_or(0))
}

fn bench(c: &mut Criterion) {
    let openssl = first_record(&unhex(include_str!(
        "../../core/tests/vectors/tls13_full.c2s.hex"
    )));
    let pq = pq_hello();
    for (name, hello) in [("openssl_tls13", &openssl), ("pq_mlkem768", &pq)] {
        assert_eq!(
            tether(hello),
            tls_parser(hello),
            "parsers disagree on {name}"
        );
        let mut g = c.benchmark_group(format!("client_hello/{name}_{}B", hello.len()));
        g.throughput(Throughput::Bytes(hello.len() as u64));
        g.bench_function("tether", |b| b.iter(|| tether(black_box(hello))));
        g.bench_function("tls-parser", |b| b.iter(|| tls_parser(black_box(hello))));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
