//! The real binary at `threads = 2`: each thread accepts on a listener of its own
//! (`SO_REUSEPORT`), the system spreads the clients' connections over both, and a TLS session
//! learned by a connection one thread served resumes on the same server when the next
//! connection lands on the other thread: the threads share the stick table.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{native_toml, Resume, TlsClient};
use tether_testbed::{free_port, ScratchDir, TlsBackend, TlsBackendConfig, TlsVersions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Connections each client makes: the first learns its session, the others offer it.
const ROUNDS: usize = 6;
const CLIENTS: usize = 30;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /metrics` from the stats listener, once it answers.
async fn metrics(stats: SocketAddr) -> String {
    for _ in 0..100 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(stats).await {
            s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).await.unwrap();
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the stats listener never answered");
}

/// The value of `tether_thread_connections_total{thread="N"}` for each thread listed.
fn accepted_by_thread(metrics: &str) -> Vec<u64> {
    (0..)
        .map_while(|t| {
            let prefix = format!("tether_thread_connections_total{{thread=\"{t}\"}} ");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .map(|v| v.trim().parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_learned_on_one_thread_resumes_on_the_other() {
    let mut backends = Vec::new();
    for i in 1..=3 {
        let config = TlsBackendConfig::new(&format!("node{i}"))
            .versions(TlsVersions::Tls12)
            .tickets(false);
        backends.push(TlsBackend::start(config).await.unwrap());
    }
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr()).collect();
    let bind = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let stats = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let config = native_toml(
        "threads = 2",
        "",
        "affinity = [\"session-id\"]",
        "check = false",
        &addrs,
    )
    .replace("127.0.0.1:0", &bind.to_string())
        + &format!("\n[stats]\nbind = \"{stats}\"\n");
    let dir = ScratchDir::create("threads-affinity").unwrap();
    let path = dir.path().join("tether.toml");
    std::fs::write(&path, config).unwrap();
    let log = dir.path().join("tether.log");
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["run", "-c"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let before = accepted_by_thread(&metrics(stats).await);
    assert_eq!(
        before,
        [0, 0],
        "two accepting threads, nothing accepted yet"
    );

    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let client = TlsClient::new(Resume::SessionId);
                let mut seen = Vec::new();
                for _ in 0..ROUNDS {
                    let c = client.connect(bind).await.expect("connects");
                    seen.push((c.backend.clone(), c.resumed));
                    c.close().await;
                }
                seen
            })
        })
        .collect();
    for (i, client) in clients.into_iter().enumerate() {
        let seen = client.await.unwrap();
        let home = &seen[0].0;
        for (n, (server, resumed)) in seen.iter().enumerate().skip(1) {
            assert!(
                server == home && *resumed,
                "client {i}, connection {n}: {server} (resumed: {resumed}), its session is on {home}: {seen:?}"
            );
        }
    }

    let by_thread = accepted_by_thread(&metrics(stats).await);
    let total = (CLIENTS * ROUNDS) as u64;
    assert_eq!(by_thread.iter().sum::<u64>(), total, "{by_thread:?}");
    // Each thread served a good share, so many sessions were learned on one thread and
    // offered on the other (a client's six connections all on one thread: 1 in 32).
    for (t, n) in by_thread.iter().enumerate() {
        assert!(
            *n >= total / 5,
            "thread {t} accepted {n} of {total}: the connections were not spread ({by_thread:?})\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}
