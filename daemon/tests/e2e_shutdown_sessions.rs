//! `on-marked-down shutdown-sessions` and `on-marked-up shutdown-backup-sessions` over loopback,
//! side by side with HAProxy 2.6 on the same haproxy.cfg (issue 19).
//!
//! The Patroni pattern for real: three "postgres" nodes on 127.0.0.1, .2 and .3 (servers that
//! say their name, then echo), each with an HTTP health endpoint answering `OPTIONS /primary`
//! with 200 on the primary and 503 on the replicas, switchable. A client holds a connection to
//! the primary; the primary changes; the held connection must close within check time (logged
//! `D-`, as HAProxy 2.6 logs it), and every new connection must reach the new primary. Without the option the held
//! connection stays open, as in HAProxy.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tether_testbed::{free_port, Haproxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

/// A database node: its data port (says its name, then echoes) and its health endpoint.
struct Node {
    data: SocketAddr,
    health: SocketAddr,
    primary: Arc<AtomicBool>,
}

/// A node on `ip` named `name`, primary or not.
async fn node(ip: [u8; 4], name: &'static str, primary: bool) -> Node {
    let data = TcpListener::bind(SocketAddr::from((ip, 0))).await.unwrap();
    let data_addr = data.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = data.accept().await {
            tokio::spawn(async move {
                if s.write_all(name.as_bytes()).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let health = TcpListener::bind(SocketAddr::from((ip, 0))).await.unwrap();
    let health_addr = health.local_addr().unwrap();
    let flag = Arc::new(AtomicBool::new(primary));
    let is_primary = flag.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = health.accept().await {
            let is_primary = is_primary.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1024];
                let _ = s.read(&mut buf).await;
                let status = if is_primary.load(Ordering::SeqCst) {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let answer =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    Node {
        data: data_addr,
        health: health_addr,
        primary: flag,
    }
}

/// Patroni's `listen primary`, with `extra` on the `default-server` line.
fn config(bind: u16, nodes: &[Node], extra: &str) -> String {
    let mut servers = String::new();
    for (i, n) in nodes.iter().enumerate() {
        servers.push_str(&format!(
            "  server pg{} {} maxconn 100 check port {}\n",
            i + 1,
            n.data,
            n.health.port()
        ));
    }
    format!(
        "global\n  maxconn 100\n  log stdout format raw local0\ndefaults\n  mode tcp\n  \
         log global\n  option tcplog\n  timeout connect 4s\n  timeout client 30m\n  \
         timeout server 30m\n  timeout check 2s\nlisten primary\n  bind 127.0.0.1:{bind}\n  \
         option httpchk OPTIONS /primary\n  http-check expect status 200\n  \
         default-server inter 200ms fall 1 rise 1{extra}\n{servers}"
    )
}

/// Imports `cfg` as `tether run --haproxy` does and starts the daemon.
async fn start_tether(cfg: &str) -> common::Running {
    let im = tether::haproxy::import::import("patroni.cfg", cfg);
    assert!(!im.has_errors(), "{:#?}", im.findings);
    common::start_config(&im.config).await
}

/// Connects to `fe` and returns the stream and the node's name.
async fn connect(fe: SocketAddr) -> (TcpStream, String) {
    let mut s = TcpStream::connect(fe).await.unwrap();
    let mut buf = [0u8; 16];
    let n = timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .map_or(0, |r| r.unwrap_or(0));
    (s, String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// How long until `s` is closed by the balancer (EOF or reset), if within `within`.
async fn closed_after(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let closed = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    timeout(within, closed).await.ok().map(|()| start.elapsed())
}

/// Waits until a new connection through `fe` reaches `name` (checks need a moment to bring the
/// new primary UP), then returns what `n` more connections reached.
async fn after_flip(fe: SocketAddr, name: &str, n: usize) -> Vec<String> {
    let give_up = Instant::now() + Duration::from_secs(3);
    while connect(fe).await.1 != name && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut reached = Vec::new();
    for _ in 0..n {
        reached.push(connect(fe).await.1);
    }
    reached
}

/// Bytes the held connection read: the node's name and the echoed `BEGIN`.
const HELD_BYTES: u64 = 8;

/// The termination state HAProxy logged (`option tcplog`, raw) for the connection to `server`
/// (`listen/server`) that read `bytes`.
fn haproxy_termination(log: &str, server: &str, bytes: u64) -> Option<String> {
    log.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let held = w.get(3) == Some(&server) && w.get(5) == Some(&bytes.to_string().as_str());
        held.then(|| w.get(6).map(|s| s.to_string()))?
    })
}

/// What one balancer did through a primary change: how long the held connection took to close
/// (if it did), and what new connections reached.
struct Flip {
    closed: Option<Duration>,
    reached: Vec<String>,
}

/// Holds a connection to the primary through `fe`, makes pg2 the primary, and sees what
/// happens. The nodes start with pg1 primary and are left with pg1 primary again.
async fn flip(fe: SocketAddr, nodes: &[Node]) -> Flip {
    after_flip(fe, "pg1", 0).await;
    let (mut held, who) = connect(fe).await;
    assert_eq!(who, "pg1", "the held connection reached a replica");
    assert_eq!(
        common::echo_roundtrip(&mut held, b"BEGIN").await.unwrap(),
        b"BEGIN"
    );
    nodes[0].primary.store(false, Ordering::SeqCst);
    nodes[1].primary.store(true, Ordering::SeqCst);
    let closed = closed_after(&mut held, Duration::from_secs(2)).await;
    let reached = after_flip(fe, "pg2", 10).await;
    nodes[1].primary.store(false, Ordering::SeqCst);
    nodes[0].primary.store(true, Ordering::SeqCst);
    // Back to pg1 before the other balancer runs.
    after_flip(fe, "pg1", 0).await;
    Flip { closed, reached }
}

/// Three nodes, pg1 the primary; tether and HAProxy on the same config (`extra` on the
/// `default-server` line), both with their checks settled.
async fn patroni(extra: &str) -> (Vec<Node>, common::Running, Haproxy) {
    let nodes = vec![
        node([127, 0, 0, 1], "pg1", true).await,
        node([127, 0, 0, 2], "pg2", false).await,
        node([127, 0, 0, 3], "pg3", false).await,
    ];
    let tether = start_tether(&config(0, &nodes, extra)).await;
    let hport = free_port().unwrap();
    let haproxy_addr: SocketAddr = format!("127.0.0.1:{hport}").parse().unwrap();
    let haproxy = Haproxy::start(&config(hport, &nodes, extra), haproxy_addr)
        .await
        .expect("haproxy runs");
    tokio::time::sleep(Duration::from_millis(800)).await;
    (nodes, tether, haproxy)
}

#[tokio::test]
async fn a_demoted_primary_loses_its_connections_and_new_ones_reach_the_new_primary_like_haproxy() {
    let (nodes, tether, haproxy) = patroni(" on-marked-down shutdown-sessions").await;
    let t = flip(tether.addr, &nodes).await;
    let h = flip(haproxy.frontend(), &nodes).await;
    let log = haproxy.log();
    eprintln!(
        "held connection closed after: tether {:?}, haproxy {:?}",
        t.closed, h.closed
    );
    // Checks every 200 ms, fall 1: DOWN at the next check, plus its answer.
    for (who, f) in [("tether", &t), ("haproxy", &h)] {
        let closed = f
            .closed
            .unwrap_or_else(|| panic!("{who}: held connection open\n{log}"));
        assert!(closed < Duration::from_millis(1000), "{who}: {closed:?}");
        assert_eq!(f.reached, vec!["pg2"; 10], "{who}\n{log}");
    }
    let recs = tether.sink.records();
    let killed: Vec<String> = (recs.iter())
        .filter(|r| r.server.as_deref() == Some("pg1") && r.bytes_down == HELD_BYTES)
        .map(|r| r.termination.to_string())
        .collect();
    assert_eq!(
        killed.first().map(String::as_str),
        Some("D-"),
        "{}",
        tether.sink.lines()
    );
    assert_eq!(
        haproxy_termination(&log, "primary/pg1", HELD_BYTES).as_deref(),
        Some("D-"),
        "HAProxy logs the killed connection so:\n{log}"
    );
}

#[tokio::test]
async fn without_the_option_a_demoted_primary_keeps_its_connections_like_haproxy() {
    let (nodes, tether, haproxy) = patroni("").await;
    let t = flip(tether.addr, &nodes).await;
    let h = flip(haproxy.frontend(), &nodes).await;
    for (who, f) in [("tether", &t), ("haproxy", &h)] {
        assert_eq!(f.closed, None, "{who}: closed without the option");
        assert_eq!(f.reached, vec!["pg2"; 10], "{who}");
    }
}

/// An active server (down at first) with `on-marked-up shutdown-backup-sessions` and a backup.
fn backup_config(bind: u16, active: &Node, backup: &Node) -> String {
    format!(
        "global\n  maxconn 100\n  log stdout format raw local0\ndefaults\n  mode tcp\n  \
         log global\n  option tcplog\n  timeout connect 4s\n  timeout client 30m\n  \
         timeout server 30m\nlisten app\n  bind 127.0.0.1:{bind}\n  \
         option httpchk OPTIONS /primary\n  http-check expect status 200\n  \
         default-server inter 200ms fall 1 rise 1\n  \
         server active {} check port {} on-marked-up shutdown-backup-sessions\n  \
         server standby {} check port {} backup\n",
        active.data,
        active.health.port(),
        backup.data,
        backup.health.port()
    )
}

/// Holds a connection to the backup through `fe` while the active server is down, brings the
/// active server up, and sees what happens; leaves it down again.
async fn comeback(fe: SocketAddr, active: &Node) -> Flip {
    after_flip(fe, "standby", 0).await;
    let (mut held, who) = connect(fe).await;
    assert_eq!(who, "standby");
    assert_eq!(
        common::echo_roundtrip(&mut held, b"BEGIN").await.unwrap(),
        b"BEGIN"
    );
    active.primary.store(true, Ordering::SeqCst);
    let closed = closed_after(&mut held, Duration::from_secs(2)).await;
    let reached = after_flip(fe, "active", 5).await;
    active.primary.store(false, Ordering::SeqCst);
    after_flip(fe, "standby", 0).await;
    Flip { closed, reached }
}

#[tokio::test]
async fn an_active_server_coming_up_closes_the_backup_connections_like_haproxy() {
    let active = node([127, 0, 0, 1], "active", false).await;
    let backup = node([127, 0, 0, 2], "standby", true).await;
    let tether = start_tether(&backup_config(0, &active, &backup)).await;
    let hport = free_port().unwrap();
    let haproxy_addr: SocketAddr = format!("127.0.0.1:{hport}").parse().unwrap();
    let haproxy = Haproxy::start(&backup_config(hport, &active, &backup), haproxy_addr)
        .await
        .expect("haproxy runs");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let t = comeback(tether.addr, &active).await;
    let h = comeback(haproxy.frontend(), &active).await;
    let log = haproxy.log();
    for (who, f) in [("tether", &t), ("haproxy", &h)] {
        let closed = f
            .closed
            .unwrap_or_else(|| panic!("{who}: backup connection open\n{log}"));
        assert!(closed < Duration::from_millis(1000), "{who}: {closed:?}");
        assert_eq!(f.reached, vec!["active"; 5], "{who}\n{log}");
    }
    let held = ("standby".len() + 5) as u64;
    let killed: Vec<String> = (tether.sink.records().iter())
        .filter(|r| r.server.as_deref() == Some("standby") && r.bytes_down == held)
        .map(|r| r.termination.to_string())
        .collect();
    assert_eq!(killed, ["U-"], "{}", tether.sink.lines());
    assert_eq!(
        haproxy_termination(&log, "app/standby", held).as_deref(),
        Some("U-"),
        "HAProxy logs the killed connection so:\n{log}"
    );
}

/// `pg1` with one slot and `pg2` as its backup, HTTP-checked every 100 ms, clients stuck to
/// their server by address; `option redispatch` when `redispatch`. (The stickiness puts a
/// waiting client in pg1's own queue in HAProxy; a balanced one would wait in the backend's,
/// which HAProxy does not redistribute.)
fn queue_config(bind: u16, pg1: &Node, pg2: &Node, redispatch: bool) -> String {
    let option = if redispatch {
        "  option redispatch\n"
    } else {
        ""
    };
    format!(
        "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n  \
         timeout queue 3s\nlisten app\n  bind 127.0.0.1:{bind}\n{option}  \
         stick-table type ip size 1k expire 10m\n  stick on src\n  option httpchk OPTIONS /primary\n  http-check expect status 200\n  \
         default-server inter 100ms fall 1 rise 1\n  \
         server pg1 {} maxconn 1 check port {}\n  server pg2 {} backup check port {}\n",
        pg1.data,
        pg1.health.port(),
        pg2.data,
        pg2.health.port()
    )
}

/// A client queued on its sticky server when that server goes DOWN: with `option redispatch`
/// it leaves the queue and is balanced anew, onto the backup (HAProxy's
/// `pendconn_redistribute`); without it, it waits on. Side by side with HAProxy 2.6 on the same file, for both settings.
#[tokio::test]
async fn a_connection_queued_on_a_server_gone_down_is_redispatched_like_haproxy() {
    for redispatch in [true, false] {
        let pg1 = node([127, 0, 0, 1], "pg1", true).await;
        let pg2 = node([127, 0, 0, 2], "pg2", true).await;
        let tether = start_tether(&queue_config(0, &pg1, &pg2, redispatch)).await;
        let hport = free_port().unwrap();
        let haddr: SocketAddr = format!("127.0.0.1:{hport}").parse().unwrap();
        let _haproxy =
            Haproxy::start_unprobed(&queue_config(hport, &pg1, &pg2, redispatch), &[haddr])
                .await
                .expect("haproxy runs (apt-get install -y haproxy)");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut outcomes = Vec::new();
        for fe in [tether.addr, haddr] {
            // The holder takes pg1's only slot; the next client queues for it.
            let (_holder, first) = connect(fe).await;
            assert_eq!(first, "pg1", "redispatch {redispatch}: {fe}");
            let mut queued = TcpStream::connect(fe).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            pg1.primary.store(false, Ordering::SeqCst);
            let mut buf = [0u8; 16];
            let read = timeout(Duration::from_millis(1500), queued.read(&mut buf)).await;
            let got = match read {
                Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
                Ok(Err(_)) => "reset".into(),
                Err(_) => "still waiting".into(),
            };
            outcomes.push(got);
            pg1.primary.store(true, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let want = if redispatch { "pg2" } else { "still waiting" };
        assert_eq!(
            outcomes,
            [want, want],
            "redispatch {redispatch}: (tether, HAProxy)"
        );
    }
}
