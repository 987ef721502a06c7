//! Inspection of the client's first bytes on real sockets: non-TLS goes through at once, silence
//! waits only the inspect delay, a dribbled ClientHello still gets affinity, an oversized one is
//! forwarded without a key, and a crowd of silent clients does not slow anyone else down.

mod common;

use std::time::Duration;

use common::{
    dribble_relay, echo_roundtrip, native_toml, start_toml, EchoBackend, Resume, TlsClient,
};
use tether_core::affinity::{AffinityOutcome, NoKeyReason};
use tether_core::tls::encode::ClientHelloBuilder;
use tether_core::tls::extension;
use tether_testbed::{TlsBackend, TlsBackendConfig, TlsVersions};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

#[tokio::test]
async fn non_tls_first_bytes_are_forwarded_at_once() {
    let echo = EchoBackend::start().await;
    let toml = native_toml(
        "",
        "inspect-delay = \"3s\"",
        "",
        "check = false",
        &[echo.addr],
    );
    let running = start_toml(&toml).await;
    let t0 = Instant::now();
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    let back = echo_roundtrip(&mut s, b"GET / HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(back, b"GET / HTTP/1.0\r\n\r\n");
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "answered in {:?}, not after the 3 s inspect delay",
        t0.elapsed()
    );
    drop(s);
    let r = &running.sink.wait_for(1).await[0];
    assert_eq!(r.affinity, AffinityOutcome::NoKey(NoKeyReason::NotTls));
}

#[tokio::test]
async fn a_silent_client_is_balanced_after_the_inspect_delay() {
    let mut echo = EchoBackend::start().await;
    let toml = native_toml(
        "",
        "inspect-delay = \"300ms\"",
        "",
        "check = false",
        &[echo.addr],
    );
    let running = start_toml(&toml).await;
    let t0 = Instant::now();
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(2), echo.accepts.recv())
        .await
        .expect("the backend sees the connection")
        .unwrap();
    let waited = seen - t0;
    assert!(
        waited >= Duration::from_millis(280) && waited < Duration::from_millis(1000),
        "connected to the server after {waited:?}, expected ~300 ms"
    );
    // The connection works once balanced.
    assert_eq!(echo_roundtrip(&mut s, b"late").await.unwrap(), b"late");
    drop(s);
    let r = &running.sink.wait_for(1).await[0];
    assert_eq!(
        r.affinity,
        AffinityOutcome::NoKey(NoKeyReason::InspectTimeout)
    );
    assert!(r.tcplog("-").contains("affinity=no-key:inspect-timeout"));
}

#[tokio::test]
async fn a_client_hello_sent_one_byte_at_a_time_still_gets_affinity() {
    let mut backends = Vec::new();
    for i in 1..=3 {
        backends.push(
            TlsBackend::start(
                TlsBackendConfig::new(&format!("node{i}"))
                    .versions(TlsVersions::Tls12)
                    .tickets(false),
            )
            .await
            .unwrap(),
        );
    }
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    let toml = native_toml("", "inspect-delay = \"5s\"", "", "check = false", &addrs);
    let running = start_toml(&toml).await;
    // Every client byte of the hello in its own segment, 1 ms apart.
    let relay = dribble_relay(running.addr, 2048, Duration::from_millis(1)).await;
    let client = TlsClient::new(Resume::SessionId);
    let first = client.connect(relay).await.unwrap();
    let home = first.backend.clone();
    first.close().await;
    for _ in 0..3 {
        let c = client.connect(relay).await.unwrap();
        assert_eq!(c.backend, home);
        assert!(c.resumed);
        c.close().await;
    }
    let recs = running.sink.wait_for(4).await;
    assert_eq!(
        recs[0].affinity,
        AffinityOutcome::Learned,
        "{}",
        running.sink.lines()
    );
    assert!(
        recs[1..].iter().all(|r| r.affinity == AffinityOutcome::Hit),
        "{}",
        running.sink.lines()
    );
}

/// A well-formed ClientHello padded (RFC 7685) to more than `padding` bytes, in records.
fn oversized_hello(padding: usize) -> Vec<u8> {
    ClientHelloBuilder::new([0x5a; 32])
        .extension(extension::PADDING, &vec![0; padding])
        .records()
}

#[tokio::test]
async fn an_oversized_hello_is_forwarded_without_a_key() {
    let echo = EchoBackend::start().await;
    let toml = native_toml(
        "",
        "inspect-delay = \"3s\"\ninspect-cap = \"1k\"",
        "",
        "check = false",
        &[echo.addr],
    );
    let running = start_toml(&toml).await;
    for _ in 0..2 {
        let hello = oversized_hello(4000);
        let t0 = Instant::now();
        let mut s = TcpStream::connect(running.addr).await.unwrap();
        let back = echo_roundtrip(&mut s, &hello).await.unwrap();
        assert_eq!(
            back, hello,
            "every byte, buffered prefix included, reaches the server"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "no wait for the inspect delay"
        );
    }
    let recs = running.sink.wait_for(2).await;
    for r in &recs {
        assert_eq!(
            r.affinity,
            AffinityOutcome::NoKey(NoKeyReason::TooLarge),
            "{}",
            running.sink.lines()
        );
    }
}

#[tokio::test]
async fn a_thousand_silent_clients_do_not_delay_a_handshake() {
    let backend = TlsBackend::start(TlsBackendConfig::new("node1"))
        .await
        .unwrap();
    let toml = native_toml(
        "",
        "inspect-delay = \"10s\"",
        "",
        "check = false",
        &[backend.addr()],
    );
    let running = start_toml(&toml).await;
    // Baseline with nobody waiting.
    let client = TlsClient::new(Resume::SessionId);
    let t0 = Instant::now();
    client.connect(running.addr).await.unwrap().close().await;
    let baseline = t0.elapsed();

    let mut idle = Vec::with_capacity(1000);
    for _ in 0..1000 {
        idle.push(TcpStream::connect(running.addr).await.unwrap());
    }
    // Let the daemon accept them all.
    assert!(
        common::eventually(Duration::from_secs(5), || running
            .daemon
            .context()
            .actconn
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1000)
        .await,
        "all 1000 silent clients accepted and inspecting"
    );
    let t0 = Instant::now();
    let fresh = TlsClient::new(Resume::SessionId);
    let c = fresh.connect(running.addr).await.unwrap();
    let loaded = t0.elapsed();
    assert_eq!(c.backend, "node1");
    c.close().await;
    assert!(
        loaded < Duration::from_millis(500),
        "handshake took {loaded:?} beside 1000 silent clients (baseline {baseline:?})"
    );
    assert_eq!(
        backend.accepted(),
        2,
        "silent clients never reached the server"
    );
    for mut s in idle {
        let _ = s.shutdown().await;
    }
}
