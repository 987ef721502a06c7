//! tether and a real HAProxy 2.6 in one `peers` section, in front of the same four rustls
//! backends: a TLS 1.2 session learned through either balancer resumes on the same server
//! through the other (10/10 each way), and a balancer started after the other gets the table
//! by resync, in both directions. HAProxy is required: these tests fail, not skip, without it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{eventually, native_toml, start_toml, Resume, Running, TlsClient};
use tether_core::config::peers::{PeerEntry, PeersSection};
use tether_core::engine::peers::{PeerState, PeersService};
use tether_testbed::{free_port, Haproxy, TlsBackend, TlsBackendConfig};

const ROUNDS: usize = 10;

struct Ports {
    hap_peer: SocketAddr,
    lb_peer: SocketAddr,
    hap_front: SocketAddr,
}

fn ports() -> Ports {
    let p = || SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    Ports {
        hap_peer: p(),
        lb_peer: p(),
        hap_front: p(),
    }
}

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

/// HAProxy's side: the session-ID recipe that works (with `tcp-response inspect-delay`), its
/// table shared with peers section `mesh`, servers named as tether names them.
async fn haproxy(p: &Ports, backends: &[SocketAddr]) -> Haproxy {
    Haproxy::program().expect("these tests need HAProxy 2.6 (apt-get install haproxy)");
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, a)| format!("    server s{} {a}\n", i + 1))
        .collect();
    let config = format!(
        "global\n    localpeer hap\n    log stdout format raw local0\n\n\
         defaults\n    mode tcp\n    log global\n    option tcplog\n    timeout connect 2s\n    \
         timeout client 10s\n    timeout server 10s\n\n\
         peers mesh\n    peer hap {hp}\n    peer lb1 {lp}\n\n\
         frontend main\n    bind {front}\n    default_backend app\n\n\
         backend app\n    balance roundrobin\n    \
         stick-table type binary len 32 size 60k expire 60m peers mesh\n    \
         acl clienthello req_ssl_hello_type 1\n    acl serverhello rep_ssl_hello_type 2\n    \
         tcp-request inspect-delay 5s\n    tcp-request content accept if clienthello\n    \
         tcp-response inspect-delay 5s\n    tcp-response content accept if serverhello\n    \
         stick on payload_lv(43,1) if clienthello\n    \
         stick store-response payload_lv(43,1) if serverhello\n{servers}",
        hp = p.hap_peer,
        lp = p.lb_peer,
        front = p.hap_front,
    );
    Haproxy::start(&config, p.hap_front)
        .await
        .expect("haproxy starts")
}

struct Tether {
    running: Running,
    peers: PeersService,
}

async fn tether(p: &Ports, backends: &[SocketAddr]) -> Tether {
    let toml = native_toml(
        "",
        "inspect-delay = \"2s\"",
        "affinity = [\"session-id\"]\n[backend.stick-table]\npeers = \"mesh\"",
        "check = false",
        backends,
    );
    let section = PeersSection {
        name: "mesh".into(),
        local: "lb1".into(),
        bind: Some(p.lb_peer.to_string()),
        peers: [("hap", p.hap_peer), ("lb1", p.lb_peer)]
            .iter()
            .map(|(n, a)| PeerEntry {
                name: n.to_string(),
                address: a.to_string(),
            })
            .collect(),
    };
    let toml = format!("{toml}\n{}", peers_toml(&section));
    let running = start_toml(&toml).await;
    let peers = tether::run::start_peers(section, &running.daemon, 11)
        .await
        .expect("peers start");
    Tether { running, peers }
}

fn entries(t: &Tether) -> usize {
    let rt = t.running.daemon.runtime();
    rt.backends["app"].tables.iter().map(|t| t.len()).sum()
}

async fn wait_open(t: &Tether, h: &Haproxy) {
    let ok = eventually(Duration::from_secs(15), || {
        t.peers.status()[0].state == PeerState::Open
    })
    .await;
    assert!(
        ok,
        "no peer session with haproxy: {:#?}\n{}",
        t.peers.status(),
        h.log()
    );
}

/// Learns through `first`, resumes through `second`; true when the same server resumed.
async fn learn_then_resume(first: SocketAddr, second: SocketAddr, settle: Duration) -> bool {
    let client = TlsClient::new(Resume::SessionId);
    let mut a = client.connect(first).await.expect("first connection");
    a.echo("hi\n").await.unwrap();
    let server = a.backend.clone();
    a.close().await;
    tokio::time::sleep(settle).await;
    let mut b = client.connect(second).await.expect("second connection");
    b.echo("again\n").await.unwrap();
    let same = b.backend == server && b.resumed;
    b.close().await;
    same
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_across_tether_and_haproxy_both_ways() {
    let backends = four_backends().await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    let p = ports();
    let t = tether(&p, &addrs).await;
    let h = haproxy(&p, &addrs).await;
    wait_open(&t, &h).await;
    let (mut to_hap, mut to_tether) = (0, 0);
    for _ in 0..ROUNDS {
        let before = entries(&t);
        // tether learns, HAProxy must route the resumption to the same server.
        to_hap += usize::from(
            learn_then_resume(t.running.addr, h.frontend(), Duration::from_millis(300)).await,
        );
        // HAProxy learns, tether must.
        let ok = learn_then_resume(h.frontend(), t.running.addr, Duration::from_millis(300)).await;
        to_tether += usize::from(ok);
        assert!(entries(&t) >= before + 2, "tether's table did not grow");
    }
    let status = &t.peers.status()[0];
    assert_eq!(
        (to_hap, to_tether),
        (ROUNDS, ROUNDS),
        "{status:#?}\n{}",
        h.log()
    );
    assert!(status.updates_received >= ROUNDS as u64, "{status:#?}");
    assert!(status.last_hello.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_started_later_gets_tethers_table_by_resync() {
    let backends = four_backends().await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    let p = ports();
    let t = tether(&p, &addrs).await;
    let clients: Vec<_> = (0..ROUNDS)
        .map(|_| TlsClient::new(Resume::SessionId))
        .collect();
    let mut servers = Vec::new();
    for c in &clients {
        let mut conn = c.connect(t.running.addr).await.unwrap();
        conn.echo("x\n").await.unwrap();
        servers.push(conn.backend.clone());
        conn.close().await;
    }
    let h = haproxy(&p, &addrs).await;
    wait_open(&t, &h).await;
    // HAProxy waits for a local peer first (5 s), then asks its remote peer: tether.
    let taught = eventually(Duration::from_secs(15), || {
        t.peers.status()[0].resyncs_sent >= 1
    })
    .await;
    assert!(
        taught,
        "haproxy never asked: {:#?}\n{}",
        t.peers.status(),
        h.log()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut same = 0;
    for (c, server) in clients.iter().zip(&servers) {
        let conn = c.connect(h.frontend()).await.unwrap();
        same += usize::from(&conn.backend == server && conn.resumed);
        conn.close().await;
    }
    assert_eq!(same, ROUNDS, "{}", h.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_started_later_gets_haproxys_table_by_resync() {
    let backends = four_backends().await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr()).collect();
    let p = ports();
    let h = haproxy(&p, &addrs).await;
    let clients: Vec<_> = (0..ROUNDS)
        .map(|_| TlsClient::new(Resume::SessionId))
        .collect();
    let mut servers = Vec::new();
    for c in &clients {
        let mut conn = c.connect(h.frontend()).await.unwrap();
        conn.echo("x\n").await.unwrap();
        servers.push(conn.backend.clone());
        conn.close().await;
    }
    let t = tether(&p, &addrs).await;
    wait_open(&t, &h).await;
    let full = eventually(Duration::from_secs(10), || entries(&t) >= ROUNDS).await;
    assert!(
        full,
        "tether has {} entries: {:#?}\n{}",
        entries(&t),
        t.peers.status(),
        h.log()
    );
    assert!(t.peers.status()[0].resyncs_received >= 1);
    let mut same = 0;
    for (c, server) in clients.iter().zip(&servers) {
        let conn = c.connect(t.running.addr).await.unwrap();
        same += usize::from(&conn.backend == server && conn.resumed);
        conn.close().await;
    }
    assert_eq!(same, ROUNDS);
}

/// The `[peers]` TOML of a section (the config the daemon loads).
fn peers_toml(s: &PeersSection) -> String {
    let mut t = format!(
        "[peers]\nname = \"{}\"\nlocal = \"{}\"\nbind = \"{}\"\n",
        s.name,
        s.local,
        s.bind.as_deref().unwrap_or_default()
    );
    for p in &s.peers {
        t.push_str(&format!(
            "[[peers.peer]]\nname = \"{}\"\naddress = \"{}\"\n",
            p.name, p.address
        ));
    }
    t
}
