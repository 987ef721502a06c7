//! Cost of the engine itself over real loopback sockets: the daemon runs in-process on tokio in
//! front of an echo server, and each figure is compared with the same exchange made directly.
//!
//! - `engine_connection`: connect, send a TLS ClientHello (so inspection parses it and the
//!   session-id/ticket chain looks it up), read it echoed back, one small echo, close.
//! - `engine_echo`: one small request/response on an already open connection (the forwarding
//!   path only).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tether::config_source::QuickForm;
use tether::run::Daemon;
use tether_core::engine::{runtime, ConnectionRecord, LogSink};
use tether_core::tls::encode::ClientHelloBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Finished connections are dropped: logging is not what is measured.
struct Discard;

impl LogSink for Discard {
    fn record(&self, _rec: &ConnectionRecord) {}
}

/// A TLS 1.2-style ClientHello record with a 32-byte session id and an SNI, as browsers send.
fn client_hello(session: u64) -> Vec<u8> {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&session.to_be_bytes());
    ClientHelloBuilder::new([0x5a; 32])
        .session_id(&id)
        .cipher_suites(&[0x1301, 0xc02f])
        .server_name(b"bench.example")
        // An empty session ticket extension: the client supports tickets but has none.
        .session_ticket(&[])
        .records()
}

/// Echoes every connection's bytes back until the peer closes.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// The daemon (quick form, roundrobin, affinity session-id,ticket) in front of `server`.
async fn start_daemon(server: SocketAddr) -> (Daemon, SocketAddr) {
    let config = QuickForm {
        listen: "127.0.0.1:0".into(),
        servers: vec![server.to_string()],
        affinity: Some("session-id,ticket".into()),
        balance: Some("roundrobin".into()),
        accept_proxy: false,
        defer_accept: false,
    }
    .to_config()
    .expect("quick form config");
    let built = runtime::build(&config, None).expect("runtime");
    let daemon = tether::run::start(built, Arc::new(Discard))
        .await
        .expect("daemon start");
    let addr = *daemon.local_addrs().values().next().expect("one frontend");
    (daemon, addr)
}

/// Sends `msg` and reads exactly as many bytes back.
async fn round_trip(s: &mut TcpStream, msg: &[u8], buf: &mut [u8]) {
    s.write_all(msg).await.expect("write");
    s.read_exact(&mut buf[..msg.len()]).await.expect("echo");
    assert_eq!(&buf[..msg.len()], msg, "echo mismatch");
}

async fn one_connection(addr: SocketAddr, hello: &[u8], small: &[u8]) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut buf = [0u8; 1024];
    round_trip(&mut s, hello, &mut buf).await;
    round_trip(&mut s, small, &mut buf).await;
    drop(s);
}

fn bench_engine(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let echo = rt.block_on(echo_server());
    let (daemon, proxy) = rt.block_on(start_daemon(echo));
    let targets = [("direct", echo), ("tether", proxy)];
    let small = [0x42u8; 64];

    let mut group = c.benchmark_group("engine_connection");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    for (name, addr) in targets {
        let mut session = 0u64;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                session += 1;
                let hello = client_hello(session);
                rt.block_on(one_connection(addr, &hello, &small));
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("engine_echo");
    group.throughput(Throughput::Elements(1));
    for (name, addr) in targets {
        let mut s = rt.block_on(async {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.set_nodelay(true).expect("nodelay");
            let mut buf = [0u8; 1024];
            round_trip(&mut s, &client_hello(u64::MAX), &mut buf).await;
            s
        });
        let mut buf = [0u8; 1024];
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| rt.block_on(round_trip(&mut s, &small, &mut buf)))
        });
    }
    group.finish();
    let _open_left = rt.block_on(daemon.shutdown(Duration::from_millis(100)));
}

criterion_group!(benches, bench_engine);
criterion_main!(benches);
