//! Stats clients that ask for a large page and never read it (issue 17 §3), beside the data
//! plane, on a real daemon over loopback: 70 such clients (more than the listener's 64 slots)
//! each ask for `/metrics` with a 4 KiB receive buffer. With 5,000 servers the page is ~5.4 MB,
//! more than Linux lets a socket's send buffer grow to (4 MB), so each response's write
//! really stalls. While they hang on, TLS handshakes through the balancer keep their latency,
//! another stats client still gets `/;csv` promptly, and every stalled response is cut by the
//! response deadline. (A page that fits the send buffer never stalls the server: its
//! connection is back to waiting for a request, which a newcomer may evict.)
//!
//! Each stalled response holds its rendered page; together they may hold at most the listener's
//! stall budget ([`STALL_BUDGET`], 16 MiB), so past three such pages a response that stalls is
//! cut at the stall instead of at the deadline (before the budget, each of the 64 held its copy
//! for 10 s: RSS +345 MiB). Not yet bounded, measured here: the pages are computed on the
//! runtime's workers (~90 ms each for this one), so the 64 arriving at once occupy the workers
//! for seconds (a TLS handshake beside that burst timed out once on the loaded build machine).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{start_toml, Resume, TlsClient};
use tether::stats::serve_stats;
use tether::stats::server::{RESPONSE_DEADLINE, STALL_BUDGET};
use tether_testbed::{TlsBackend, TlsBackendConfig, TlsVersions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep, timeout, Instant};

/// Servers in the big backend: enough that `/metrics` outgrows a socket's send buffer.
const BULK_SERVERS: usize = 5000;
/// More slow readers than the stats listener has slots (64).
const SLOW_READERS: usize = 70;
/// Time for the readers' pages to be computed and their writes to stall.
const SETTLE: Duration = Duration::from_secs(5);

/// A daemon serving TLS on `main` (one real TLS backend) and a big backend that only makes
/// the stats outputs large (its servers are never connected: no checks, no traffic).
fn config(tls_backend: SocketAddr) -> String {
    let mut t = format!(
        "[[frontend]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"app\"\n\n\
         [[backend]]\nname = \"app\"\n\n[[backend.server]]\nname = \"tls\"\naddress = \"{tls_backend}\"\n\n\
         [[backend]]\nname = \"bulk\"\n"
    );
    for i in 0..BULK_SERVERS {
        t.push_str(&format!(
            "\n[[backend.server]]\nname = \"bulk-server-{i:05}\"\naddress = \"127.0.0.1:{}\"\n",
            10_000 + i
        ));
    }
    t.push_str("\n[stats]\nbind = \"127.0.0.1:0\"\n");
    t
}

/// Connects with a tiny receive buffer, asks for `target` and never reads.
async fn slow_reader(stats: SocketAddr, target: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(stats).await.unwrap();
    s.write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    s
}

/// `target` by a well-behaved client: its size, or `None` when refused or later than 3 s.
async fn get(stats: SocketAddr, target: &str) -> Option<usize> {
    let get = async {
        let mut s = TcpStream::connect(stats).await.ok()?;
        let head = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).await.ok()?;
        let mut body = Vec::new();
        s.read_to_end(&mut body).await.ok()?;
        String::from_utf8_lossy(&body)
            .starts_with("HTTP/1.1 200")
            .then_some(body.len())
    };
    timeout(Duration::from_secs(3), get).await.ok().flatten()
}

/// This process's resident memory (the daemon runs in it), in MiB.
fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib / 1024
}

/// Connections the stats server at `port` still holds open (ESTABLISHED on its side, from
/// `/proc/net/tcp`): a cut response's socket is closing (FIN_WAIT1) even while its unread bytes
/// and FIN wait in the send buffer.
fn held_open(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local_port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&local_port) && f[3] == "01"
        })
        .count()
}

/// Median full TLS handshake time (through the backend's banner) of `n` clients, in ms.
async fn handshake_median(frontend: SocketAddr, n: usize) -> f64 {
    let mut times = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        let c = TlsClient::new(Resume::SessionId)
            .connect(frontend)
            .await
            .expect("a TLS client is served through the balancer");
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        c.close().await;
    }
    times.sort_by(f64::total_cmp);
    times[n / 2]
}

/// Whether the server cut `s` short (EOF or reset by `until`, before a whole `page` arrived).
/// A cut response still ends with what its send buffer held (Linux sends it before the FIN),
/// but never with the whole page, and an answered reader would get no EOF (keep-alive).
async fn cut_by(s: &mut TcpStream, until: Instant, page: usize) -> bool {
    let mut sink = vec![0u8; 64 * 1024];
    let mut read = 0;
    let drain = async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return read < page,
                Ok(n) => read += n,
            }
        }
    };
    timeout(until.saturating_duration_since(Instant::now()), drain)
        .await
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_hold_neither_the_data_plane_nor_the_stats_page() {
    let backend = TlsBackend::start(TlsBackendConfig::new("tls").versions(TlsVersions::Tls12))
        .await
        .unwrap();
    let text = config(backend.addr());
    let running = start_toml(&text).await;
    let frontend = *running.daemon.local_addrs().get("main").unwrap();
    let stats_config = tether_core::config::load_toml("t.toml", &text)
        .unwrap()
        .stats
        .unwrap();
    let listener = serve_stats(stats_config, running.daemon.view())
        .await
        .unwrap();
    let stats = listener.local_addr();

    let page = get(stats, "/metrics")
        .await
        .expect("/metrics before the attack");
    assert!(
        page > 4 << 20,
        "/metrics is {page} B: too small to stall a write"
    );
    let baseline = handshake_median(frontend, 9).await;
    let rss_before = rss_mib();
    let attack = Instant::now();
    let readers: Vec<_> = (0..SLOW_READERS)
        .map(|_| tokio::spawn(slow_reader(stats, "/metrics")))
        .collect();
    let mut readers_open = Vec::new();
    for r in readers {
        readers_open.push(r.await.unwrap());
    }
    // Every page computed (tens of ms each, on the runtime's workers: see the module doc) and
    // stuck in its socket past the stall, no longer answering; the readers hold on.
    sleep((attack + SETTLE).saturating_duration_since(Instant::now())).await;
    let during = handshake_median(frontend, 9).await;
    let started = Instant::now();
    let rss_during = rss_mib();
    let held = held_open(stats.port());
    let got = get(stats, "/;csv").await;
    let csv_ms = started.elapsed().as_millis();
    println!(
        "/metrics {page} B; handshake median {baseline:.1} ms before, {during:.1} ms beside \
         {SLOW_READERS} slow readers; /;csv in {csv_ms} ms beside them; RSS {rss_before} -> \
         {rss_during} MiB; {held} stalled responses held"
    );
    let fit = STALL_BUDGET / page + 1;
    assert!(
        held <= fit,
        "{held} stalled responses of {page} B held: the budget holds {fit}"
    );
    assert!(
        got.is_some(),
        "/;csv refused or late behind {SLOW_READERS} clients that never read"
    );
    assert!(
        during < baseline * 3.0 + 50.0,
        "TLS handshakes slowed from {baseline:.1} ms to {during:.1} ms"
    );
    // The response deadline cuts every stalled response: each began writing within a few
    // seconds of the attack (the pages are computed one after another, ~90 ms each, later on a
    // loaded machine: a full `cargo test` run once saw one still open 5 s past this point, so
    // the wait allows 15; without the deadline they stay open however long it is).
    sleep((attack + SETTLE + RESPONSE_DEADLINE).saturating_duration_since(Instant::now())).await;
    let until = Instant::now() + Duration::from_secs(15);
    let mut still_open = 0;
    for s in &mut readers_open {
        if !cut_by(s, until, page).await {
            still_open += 1;
        }
    }
    assert_eq!(
        still_open, 0,
        "{still_open} slow readers outlived the response deadline"
    );
    drop(backend);
}
