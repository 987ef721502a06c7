//! Stick-table replication between two tether processes over HAProxy's peers protocol, on
//! loopback, in front of the same four real rustls backends: a TLS 1.2 session learned through
//! one balancer resumes on the same server through the other, both ways; a restarted peer gets
//! the table back by resync; a peer that is down does not slow the data plane; garbage on the
//! peers port closes that connection only.

mod common;

use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

use common::{eventually, native_toml, peers_toml, start_toml, Resume, Running, TlsClient};
use tether_core::config::peers::{PeerEntry, PeersSection};
use tether_core::engine::peers::{PeerState, PeersService};
use tether_testbed::{TlsBackend, TlsBackendConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUNDS: usize = 10;

async fn four_backends() -> Vec<TlsBackend> {
    let mut v = Vec::new();
    for i in 1..=4 {
        v.push(
            TlsBackend::start(TlsBackendConfig::new(&format!("node{i}")))
                .await
                .unwrap(),
        );
    }
    v
}

/// A loopback port free now, outside the ephemeral range: lb1 dials lb2's port before lb2
/// runs, and on loopback such a dial can connect to itself when the port is ephemeral.
pub fn free_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], tether_testbed::free_port().unwrap()))
}

fn section(local: &str, bind: SocketAddr, peers: &[(&str, SocketAddr)]) -> PeersSection {
    PeersSection {
        name: "mesh".into(),
        local: local.into(),
        bind: Some(bind.to_string()),
        peers: peers
            .iter()
            .map(|(n, a)| PeerEntry {
                name: n.to_string(),
                address: a.to_string(),
            })
            .collect(),
    }
}

struct Node {
    toml: String,
    running: Running,
    peers: PeersService,
    stats: tether::stats::StatsListener,
}

async fn node(backends: &[SocketAddr], section: PeersSection) -> Node {
    let toml = native_toml(
        "",
        "inspect-delay = \"2s\"",
        "affinity = [\"session-id\"]\n[backend.stick-table]\npeers = \"mesh\"",
        "check = false",
        backends,
    );
    let toml = format!("{toml}\n[stats]\nbind = \"127.0.0.1:0\"\nuri = \"/stats\"\n");
    let toml = format!("{toml}\n{}", peers_toml(&section));
    let running = start_toml(&toml).await;
    let peers = tether::run::start_peers(section, &running.daemon, 7)
        .await
        .expect("peers start");
    let config = tether_core::config::load_toml("t.toml", &toml).unwrap();
    let stats = tether::stats::serve_stats(config.stats.unwrap(), running.daemon.view())
        .await
        .unwrap();
    Node {
        toml,
        running,
        peers,
        stats,
    }
}

async fn wait_open(n: &Node) {
    let ok = eventually(Duration::from_secs(10), || {
        n.peers.status().iter().all(|p| p.state == PeerState::Open)
    })
    .await;
    assert!(ok, "peers never opened: {:#?}", n.peers.status());
}

fn entries(n: &Node) -> usize {
    let rt = n.running.daemon.runtime();
    rt.backends["app"].tables.iter().map(|t| t.len()).sum()
}

/// Learns a session through `first`, then resumes it through `second`: same server, resumed.
async fn learn_then_resume(
    first: SocketAddr,
    second: SocketAddr,
    on_second: &Node,
    before: usize,
) -> bool {
    let client = TlsClient::new(Resume::SessionId);
    let mut a = client.connect(first).await.expect("first connection");
    a.echo("hi\n").await.unwrap();
    let server = a.backend.clone();
    a.close().await;
    // Replication is asynchronous: wait until the entry reached the other table.
    assert!(
        eventually(Duration::from_secs(5), || entries(on_second) > before).await,
        "the entry never reached the other balancer"
    );
    let mut b = client.connect(second).await.expect("second connection");
    b.echo("again\n").await.unwrap();
    let same = b.backend == server && b.resumed;
    b.close().await;
    same
}

async fn pair() -> (Vec<TlsBackend>, Node, Node) {
    let backends = four_backends().await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    let (pa, pb) = (free_port(), free_port());
    let a = node(&addrs, section("lb1", pa, &[("lb1", pa), ("lb2", pb)])).await;
    let b = node(&addrs, section("lb2", pb, &[("lb1", pa), ("lb2", pb)])).await;
    wait_open(&a).await;
    wait_open(&b).await;
    (backends, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_learned_on_one_resume_through_the_other_both_ways() {
    let (_backends, a, b) = pair().await;
    let mut ok_ab = 0;
    let mut ok_ba = 0;
    for _ in 0..ROUNDS {
        let before = entries(&b);
        ok_ab += usize::from(learn_then_resume(a.running.addr, b.running.addr, &b, before).await);
        let before = entries(&a);
        ok_ba += usize::from(learn_then_resume(b.running.addr, a.running.addr, &a, before).await);
    }
    assert_eq!((ok_ab, ok_ba), (ROUNDS, ROUNDS));
    let sa = &a.peers.status()[0];
    assert!(
        sa.updates_sent >= ROUNDS as u64 && sa.updates_received >= ROUNDS as u64,
        "{sa:#?}"
    );
    // Remote updates are not echoed back: each side sent only what it learned itself (plus
    // refreshes of its own entries), so neither sent the other's entries back.
    assert!(sa.updates_sent < 3 * ROUNDS as u64, "{sa:#?}");
    let origin = a.peers.view().origin_of(
        &a.running.daemon.runtime().backends["app"]
            .tables
            .iter()
            .next()
            .unwrap()
            .clone(),
        &first_key(&a),
    );
    assert!(origin.is_some());
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_json_metrics_and_page_show_the_peers() {
    let (_backends, a, b) = pair().await;
    let before = entries(&b);
    assert!(learn_then_resume(a.running.addr, b.running.addr, &b, before).await);
    let addr = a.stats.local_addr();
    let json = http_get(addr, "/stats;json").await;
    let body: serde_json::Value =
        serde_json::from_str(json.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let p = &body["peers"];
    assert_eq!(p["local"], "lb1");
    assert_eq!(p["peers"][0]["name"], "lb2");
    assert_eq!(p["peers"][0]["state"], "open");
    assert!(p["peers"][0]["updates_sent"].as_u64().unwrap() >= 1, "{p}");
    assert!(p["peers"][0]["last_hello_age_ms"].is_u64());
    let metrics = http_get(addr, "/metrics").await;
    assert!(
        metrics.contains("tether_peer_up{peer=\"lb2\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("tether_peer_updates_sent_total{peer=\"lb2\"}"));
    let page = http_get(addr, "/stats").await;
    assert!(
        page.contains("peers (local: lb1)") && page.contains("<td>lb2</td>"),
        "{page}"
    );
}

/// HAProxy issues #842, #1216, #1078, #3161: tables emptied after frequent reloads, entries
/// missing on a peer. Reload lb2 five times in a row while replicating: it keeps every entry,
/// and what lb1 learns afterwards still reaches it and resumes through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frequent_reloads_keep_the_table_and_replication() {
    let (_backends, a, mut b) = pair().await;
    for _ in 0..3 {
        let before = entries(&b);
        assert!(learn_then_resume(a.running.addr, b.running.addr, &b, before).await);
    }
    let kept = entries(&b);
    let config = tether_core::config::load_toml("t.toml", &b.toml).unwrap();
    for _ in 0..5 {
        let rt =
            tether_core::engine::runtime::build(&config, Some(b.running.daemon.runtime())).unwrap();
        b.running.daemon.reload(rt).await.unwrap();
    }
    assert_eq!(entries(&b), kept, "a reload lost entries");
    for _ in 0..3 {
        let before = entries(&b);
        assert!(
            learn_then_resume(a.running.addr, b.running.addr, &b, before).await,
            "replication into the reloaded balancer failed"
        );
    }
    // A reload that changes the table (its size) replaces it: the peer connections follow.
    let bigger = b
        .toml
        .replace("peers = \"mesh\"", "peers = \"mesh\"\nsize = \"2k\"");
    let config = tether_core::config::load_toml("t.toml", &bigger).unwrap();
    let rt =
        tether_core::engine::runtime::build(&config, Some(b.running.daemon.runtime())).unwrap();
    b.running.daemon.reload(rt).await.unwrap();
    let before = entries(&b);
    assert!(
        learn_then_resume(a.running.addr, b.running.addr, &b, before).await,
        "replication into a replaced table failed"
    );
    wait_open(&b).await;
}

fn first_key(n: &Node) -> Vec<u8> {
    let rt = n.running.daemon.runtime();
    let t = rt.backends["app"].tables.iter().next().unwrap().clone();
    let now = n.running.daemon.context().clock.now();
    t.entries(now)[0].key.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_gets_the_table_back_by_resync() {
    let backends = four_backends().await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    let (pa, pb) = (free_port(), free_port());
    let peers = [("lb1", pa), ("lb2", pb)];
    let a = node(&addrs, section("lb1", pa, &peers)).await;
    // Fill lb1 alone: lb2 is not running yet.
    let clients: Vec<_> = (0..ROUNDS)
        .map(|_| TlsClient::new(Resume::SessionId))
        .collect();
    let mut servers = Vec::new();
    for c in &clients {
        let mut conn = c.connect(a.running.addr).await.unwrap();
        conn.echo("x\n").await.unwrap();
        servers.push(conn.backend.clone());
        conn.close().await;
    }
    assert!(eventually(Duration::from_secs(3), || entries(&a) == ROUNDS).await);
    // lb2 starts empty and asks lb1 for everything.
    let b = node(&addrs, section("lb2", pb, &peers)).await;
    wait_open(&b).await;
    assert!(
        eventually(Duration::from_secs(10), || entries(&b) == ROUNDS).await,
        "lb2 has {} of {ROUNDS} entries",
        entries(&b)
    );
    // The resync's end message may follow its last entry by a moment.
    assert!(
        eventually(Duration::from_secs(3), || b.peers.status()[0]
            .resyncs_received
            >= 1)
        .await,
        "{:#?}",
        b.peers.status()
    );
    for (c, server) in clients.iter().zip(&servers) {
        let conn = c.connect(b.running.addr).await.unwrap();
        assert_eq!((&conn.backend, conn.resumed), (server, true));
        conn.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_is_down_does_not_slow_the_data_plane() {
    let backends = four_backends().await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    let pa = free_port();
    // lb2's address: a port nobody listens on; and a blackhole that accepts and never reads.
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole = blackhole.local_addr().unwrap();
    let a = node(
        &addrs,
        section(
            "lb1",
            pa,
            &[
                ("lb1", pa),
                ("lb2", common::closed_port().await),
                ("lb3", hole),
            ],
        ),
    )
    .await;
    let client = TlsClient::new(Resume::SessionId);
    let start = Instant::now();
    for _ in 0..ROUNDS {
        let conn = client.connect(a.running.addr).await.unwrap();
        assert!(conn.resumed || conn.backend.starts_with("node"));
        conn.close().await;
    }
    let took = start.elapsed();
    // Ten local TLS handshakes take milliseconds; a data plane waiting on a dead peer would
    // take at least one connect or idle timeout (seconds).
    assert!(
        took < Duration::from_secs(3),
        "10 connections took {took:?}"
    );
    assert!(a.peers.status().iter().all(|p| p.state != PeerState::Open));
    drop(blackhole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_peers_port_closes_that_connection_only() {
    let (_backends, a, b) = pair().await;
    let addr = a.peers.local_addr().unwrap();
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"HAProxyS 2.1\nlb1\nlb2 1 1\n\x0a\x82\xff\xff\xff\x7f",
        b"HAProxyS 2.1\nwrong\nlb2 1 1\n",
        &[0xffu8; 4096][..],
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(junk).await;
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "connection not closed after {junk:?}");
    }
    // The real peer connection survived or came back, and replication still works.
    wait_open(&a).await;
    let before = entries(&b);
    assert!(learn_then_resume(a.running.addr, b.running.addr, &b, before).await);
}

/// `tether table`, the table API and the runtime API's `show table` say where an entry came
/// from: learned here (`local`) or from a peer (`peer:NAME`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_views_say_where_an_entry_came_from() {
    let (_backends, a, b) = pair().await;
    let before = entries(&b);
    let client = TlsClient::new(Resume::SessionId);
    let c = client.connect(a.running.addr).await.unwrap();
    c.close().await;
    assert!(
        eventually(Duration::from_secs(5), || entries(&b) > before).await,
        "the entry never reached lb2"
    );
    for (node, want) in [(&a, "local"), (&b, "peer:lb1")] {
        let json = http_get(node.stats.local_addr(), "/stats/table/app").await;
        let body: serde_json::Value =
            serde_json::from_str(json.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        let origins: Vec<&str> = body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["origin"].as_str().unwrap_or("-"))
            .collect();
        assert_eq!(origins, [want], "{body}");
    }
    // The CLI, against lb2's stats listener.
    let url = format!("http://{}/stats", b.stats.local_addr());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["table", "--stats", &url, "list", "app"])
            .env("TETHER_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(" from=peer:lb1"),
        "{text}"
    );
    // The runtime API (HAProxy's stats socket), on lb2.
    let dir = std::env::temp_dir().join(format!("tether-origin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("admin.sock");
    let config = tether_core::config::AdminSocket {
        socket: socket.to_string_lossy().into_owned(),
        mode: "600".into(),
        level: tether_core::config::AdminLevel::Admin,
    };
    let _api = tether::runtime_api::serve_runtime_api(config, b.running.daemon.view())
        .await
        .unwrap();
    let mut s = tokio::net::UnixStream::connect(&socket).await.unwrap();
    s.write_all(b"show table app\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("0x")).collect();
    assert!(
        rows.len() == 1 && rows[0].ends_with(" origin=peer:lb1"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
