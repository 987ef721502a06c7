//! A backend dies while clients are sticky to it: they are redispatched after the retry, nothing
//! fails while another backend lives, the stick entries follow the clients to their new server,
//! and health checks take the dead server out and, once it is back on its port, in again.

mod common;

use std::time::Duration;

use common::{eventually, native_toml, start_toml, Resume, TlsClient};
use tether_core::affinity::AffinityOutcome;
use tether_testbed::{TlsBackend, TlsBackendConfig, TlsVersions};

fn config(name: &str) -> TlsBackendConfig {
    TlsBackendConfig::new(name)
        .versions(TlsVersions::Tls12)
        .tickets(false)
}

#[tokio::test]
async fn sticky_clients_of_a_dead_backend_are_redispatched_and_restick() {
    let mut backends = Vec::new();
    for i in 1..=4 {
        backends.push(Some(
            TlsBackend::start(config(&format!("node{i}")))
                .await
                .unwrap(),
        ));
    }
    let addrs: Vec<_> = backends.iter().flatten().map(|b| b.addr()).collect();
    // fall 3 at 200 ms: the checks need ~600 ms to see the death, far longer than the victims
    // take to reconnect, so their reconnections really meet a dead sticky server.
    let toml = native_toml(
        "",
        "",
        "retries = 3\n[backend.check]\ninter = \"200ms\"\nrise = 2\nfall = 3",
        "",
        &addrs,
    );
    let running = start_toml(&toml).await;
    let backend = running.daemon.runtime().backends["app"].clone();

    // Eight clients, two per server (roundrobin), each with a session to stick on.
    let mut clients = Vec::new();
    for _ in 0..8 {
        let c = TlsClient::new(Resume::SessionId);
        let conn = c.connect(running.addr).await.unwrap();
        let server = conn.backend.clone();
        conn.close().await;
        clients.push((c, server));
    }
    let dead_name = clients[0].1.clone();
    let dead_idx = backends
        .iter()
        .position(|b| b.as_ref().unwrap().name() == dead_name)
        .unwrap();
    let dead = backends[dead_idx].take().unwrap();
    let dead_addr = dead.addr();
    dead.shutdown();
    assert!(
        eventually(Duration::from_secs(1), || std::net::TcpStream::connect(
            dead_addr
        )
        .is_err())
        .await
    );
    let n_before = running.sink.wait_for(8).await.len();

    // Its clients come back at once: retried, redispatched, served by another node.
    let victims: Vec<_> = clients.iter().filter(|(_, s)| *s == dead_name).collect();
    assert_eq!(
        victims.len(),
        2,
        "{clients:?}",
        clients = clients.iter().map(|c| &c.1).collect::<Vec<_>>()
    );
    let mut new_homes = Vec::new();
    for (c, _) in &victims {
        let conn = c
            .connect(running.addr)
            .await
            .expect("redispatched, not failed");
        assert_ne!(conn.backend, dead_name);
        assert!(
            !conn.resumed,
            "another node cannot resume the dead one's session"
        );
        new_homes.push(conn.backend.clone());
        conn.close().await;
    }
    let recs = running.sink.wait_for(n_before + 2).await;
    for r in &recs[n_before..] {
        assert_eq!(
            r.affinity,
            AffinityOutcome::Redispatched,
            "{}",
            running.sink.lines()
        );
        assert!(r.redispatched && r.retries >= 1, "{}", running.sink.lines());
        let line = r.tcplog("-");
        assert!(line.contains(&format!("/+{} ", r.retries)), "{line}");
        assert!(line.contains("affinity=redispatched"), "{line}");
    }

    // The stick entries moved with them: the next connection is a hit on the new server.
    for ((c, _), home) in victims.iter().zip(&new_homes) {
        let conn = c.connect(running.addr).await.unwrap();
        assert_eq!(&conn.backend, home);
        assert!(conn.resumed);
        conn.close().await;
    }
    let recs = running.sink.wait_for(n_before + 4).await;
    assert!(recs[n_before + 2..]
        .iter()
        .all(|r| r.affinity == AffinityOutcome::Hit && r.retries == 0));

    // New clients never fail while three nodes live.
    for _ in 0..12 {
        let conn = TlsClient::new(Resume::SessionId)
            .connect(running.addr)
            .await
            .expect("a new client is served");
        assert_ne!(conn.backend, dead_name);
        conn.close().await;
    }

    // Health checks mark it DOWN...
    let id = backend.server_id(&format!("s{}", dead_idx + 1)).unwrap();
    assert!(
        eventually(Duration::from_secs(3), || !backend.server_states()
            [id.index()]
        .usable_for_balance())
        .await,
        "checks mark the dead server DOWN"
    );
    // ...and UP again once a server listens on its port.
    let _back = TlsBackend::start_at(config(&dead_name), dead_addr)
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(3), || backend.server_states()
            [id.index()]
        .usable_for_balance())
        .await,
        "checks mark the restarted server UP"
    );
    // It takes new clients again.
    let mut seen = false;
    for _ in 0..8 {
        let conn = TlsClient::new(Resume::SessionId)
            .connect(running.addr)
            .await
            .unwrap();
        seen |= conn.backend == dead_name;
        conn.close().await;
    }
    assert!(seen, "the restarted server gets its roundrobin share");
}

/// `openssl s_client` once, TLS 1.2 session IDs only; `sess_out` saves the session, `sess_in`
/// offers a saved one. Returns whether s_client reports the session `Reused`.
async fn s_client(
    addr: std::net::SocketAddr,
    sess_in: Option<&std::path::Path>,
    sess_out: Option<&std::path::Path>,
) -> bool {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &addr.to_string(),
        "-tls1_2",
        "-no_ticket",
    ]);
    if let Some(p) = sess_in {
        cmd.arg("-sess_in").arg(p);
    }
    if let Some(p) = sess_out {
        cmd.arg("-sess_out").arg(p);
    }
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        cmd.stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("s_client finishes")
    .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("New, ") || l.starts_with("Reused, ")),
        "handshake completed: {text}"
    );
    text.lines().any(|l| l.starts_with("Reused, "))
}

/// A client that keeps offering the session of a dead server (browsers open several connections
/// with one cached session) is redispatched once; the entry then points at the server actually
/// used (HAProxy: the store overwrites it), so the next offer is a plain hit, without retries.
#[tokio::test]
async fn after_a_redispatch_the_old_key_points_at_the_new_server() {
    let x = TlsBackend::start(config("nodeX")).await.unwrap();
    let y = TlsBackend::start(config("nodeY")).await.unwrap();
    let toml = native_toml(
        "",
        "",
        "retries = 2\nbalance = \"first\"\n[backend.check]\npassive = false",
        "check = false",
        &[x.addr(), y.addr()],
    );
    let running = start_toml(&toml).await;
    let dir = tether_testbed::ScratchDir::create("e2e-repoint").unwrap();
    let sess = dir.path().join("session.pem");
    assert!(!s_client(running.addr, None, Some(&sess)).await);
    let recs = running.sink.wait_for(1).await;
    assert_eq!(recs[0].server.as_deref(), Some("s1"), "`first` picks nodeX");
    x.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;

    // The dead server's session, offered again: retried, redispatched to nodeY.
    assert!(!s_client(running.addr, Some(&sess), None).await);
    let recs = running.sink.wait_for(2).await;
    assert_eq!(
        recs[1].server.as_deref(),
        Some("s2"),
        "{}",
        running.sink.lines()
    );
    assert_eq!(recs[1].affinity, AffinityOutcome::Redispatched);

    // And once more: the entry now names nodeY.
    assert!(!s_client(running.addr, Some(&sess), None).await);
    let recs = running.sink.wait_for(3).await;
    assert_eq!(
        recs[2].server.as_deref(),
        Some("s2"),
        "{}",
        running.sink.lines()
    );
    assert_eq!(
        (recs[2].affinity, recs[2].retries),
        (AffinityOutcome::Hit, 0),
        "the key was re-pointed to the server actually used:\n{}",
        running.sink.lines()
    );
    drop(y);
}
