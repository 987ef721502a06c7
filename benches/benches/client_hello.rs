//! ClientHello parsing cost: tether's parser against tls-parser on the same bytes, for a typical
//! captured OpenSSL hello and a post-quantum-sized (X25519MLKEM768) one.
//!
//! Each iteration does what the balancer needs: find the hello in the stream and read the
//! session ID and the SNI.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tether_core::tls::{ClientHelloParser, HelloOutcome, DEFAULT_HELLO_CAP};
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

fn u16v(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// A Chrome-like hello with a 1216-byte X25519MLKEM768 share, in one record.
fn pq_hello() -> Vec<u8> {
    let mut exts = Vec::new();
    let mut add = |typ: u16, body: &[u8]| {
        exts.extend_from_slice(&typ.to_be_bytes());
        u16v(&mut exts, body);
    };
    let host = b"pq.tether.test";
    let mut sni = vec![0, host.len() as u8 + 3, 0, 0, host.len() as u8];
    sni.extend_from_slice(host);
    add(0x0000, &sni);
    add(0x0017, &[]);
    add(0xff01, &[0]);
    add(0x000a, &[0, 6, 0x11, 0xec, 0, 0x1d, 0, 0x17]);
    add(0x000b, &[1, 0]);
    add(0x0023, &[]);
    add(0x0010, b"\x00\x0c\x02h2\x08http/1.1");
    add(0x000d, &[0, 4, 4, 3, 8, 4]);
    let mut ks = Vec::new();
    ks.extend_from_slice(&[0x11, 0xec]);
    u16v(&mut ks, &[0xab; 1216]);
    ks.extend_from_slice(&[0, 0x1d]);
    u16v(&mut ks, &[0xcd; 32]);
    let mut ks_body = Vec::new();
    u16v(&mut ks_body, &ks);
    add(0x0033, &ks_body);
    add(0x002d, &[1, 1]);
    add(0x002b, &[4, 3, 4, 3, 3]);
    add(0xfe0d, &[0xec; 280]); // GREASE ECH, as Chrome sends
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x42; 32]);
    body.push(32);
    body.extend_from_slice(&[0x5a; 32]);
    u16v(
        &mut body,
        &[0x13, 1, 0x13, 2, 0x13, 3, 0xc0, 0x2b, 0xc0, 0x2f],
    );
    body.extend_from_slice(&[1, 0]);
    u16v(&mut body, &exts);
    let mut msg = vec![1];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    u16v(&mut rec, &msg);
    rec
}

fn tether(stream: &[u8]) -> (usize, usize) {
    let mut p = ClientHelloParser::new(DEFAULT_HELLO_CAP);
    match p.parse(stream) {
        HelloOutcome::Complete(h) => (h.session_id().len(), h.server_name().map_or(0, <[u8]>::len)),
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
