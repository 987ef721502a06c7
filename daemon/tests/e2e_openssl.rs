//! The reference tools end to end: `openssl s_server` backends and `openssl s_client -reconnect`
//! (a separate process, as a user would run it) through tether, natively and with the user's
//! haproxy.cfg imported (`--haproxy`), with and without `tcp-response inspect-delay`.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{native_toml, start_config, start_toml, Running};
use tether_core::affinity::AffinityOutcome;
use tether_testbed::{free_port, Haproxy, OpensslServer, OpensslServerConfig, TlsVersions};

/// Runs `openssl s_client -reconnect` (1 connection + 5 reconnections offering the first
/// session), TLS 1.2 with session IDs only, and returns, per connection, whether s_client
/// reports it `Reused` (true) or `New` (false). s_client prints the server certificate only for
/// the first connection, so which server answered is read from the balancer's log.
async fn s_client_reconnect(addr: SocketAddr) -> Vec<bool> {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("openssl")
            .args(["s_client", "-connect", &addr.to_string(), "-reconnect"])
            .args(["-tls1_2", "-no_ticket"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("s_client finishes")
    .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            if l.starts_with("Reused, ") {
                Some(true)
            } else if l.starts_with("New, ") {
                Some(false)
            } else {
                None
            }
        })
        .collect()
}

/// The server of each connection, in order, from tether's records.
async fn tether_servers(running: &Running, n: usize) -> Vec<String> {
    running
        .sink
        .wait_for(n)
        .await
        .iter()
        .map(|r| r.server.as_deref().unwrap_or("<NOSRV>").to_owned())
        .collect()
}

/// The server of each connection, in order, from HAProxy's tcplog lines (`main app/<server>`).
fn haproxy_servers(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split(" app/").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn distinct(v: &[String]) -> usize {
    let mut d = v.to_vec();
    d.sort();
    d.dedup();
    d.len()
}

fn assert_sticky_and_reused(reused: &[bool], servers: &[String]) {
    assert_eq!(
        reused,
        [false, true, true, true, true, true],
        "New then 5 Reused"
    );
    assert_eq!(servers.len(), 6, "{servers:?}");
    assert_eq!(distinct(servers), 1, "one server for all: {servers:?}");
}

fn assert_rotating_without_resumption(reused: &[bool], servers: &[String]) {
    assert_eq!(reused, [false; 6], "never Reused");
    assert_eq!(servers.len(), 6, "{servers:?}");
    for w in servers.windows(2) {
        assert_ne!(w[0], w[1], "roundrobin rotation: {servers:?}");
    }
    assert_eq!(
        distinct(servers),
        4,
        "all four servers in turn: {servers:?}"
    );
}

async fn four_s_servers() -> Vec<OpensslServer> {
    let mut v = Vec::new();
    for i in [1, 2, 3, 5] {
        v.push(
            OpensslServer::start(
                OpensslServerConfig::new(&format!("lanneluc-node{i}"))
                    .versions(TlsVersions::Tls12)
                    .tickets(false),
            )
            .await
            .expect("openssl s_server starts"),
        );
    }
    v
}

#[tokio::test]
async fn s_client_reconnect_through_tether_native_is_sticky_and_reused() {
    let servers = four_s_servers().await;
    let addrs: Vec<_> = servers.iter().map(|s| s.addr()).collect();
    let running = start_toml(&native_toml("", "", "", "check = false", &addrs)).await;
    let reused = s_client_reconnect(running.addr).await;
    assert_sticky_and_reused(&reused, &tether_servers(&running, 6).await);
    let recs = running.sink.records();
    assert!(recs[1..].iter().all(|r| r.affinity == AffinityOutcome::Hit));
}

/// The posted haproxy.cfg, changed only where it cannot load on a test machine: the frontend
/// binds 127.0.0.1:0 (tether) or `bind` (haproxy), the servers get the test backends' addresses,
/// `log local2` (needs a syslog) logs to stdout, the process-level lines that need root go, and
/// the `listen stats` section (a privileged port and a password) is dropped.
fn fixed_seed(bind: &str, servers: &[OpensslServer], response_delay: bool) -> String {
    let seed = include_str!("fixtures/seed-haproxy.cfg");
    let mut out = String::new();
    for line in seed.lines() {
        let t = line.trim();
        if t.starts_with("listen stats") {
            break;
        }
        let keep = match t.split_whitespace().next().unwrap_or("") {
            "chroot" | "pidfile" | "user" | "group" | "stats" => false,
            "log" if t == "log local2" => {
                out.push_str("    log stdout format raw local0\n");
                false
            }
            _ => true,
        };
        if !keep {
            continue;
        }
        if t == "bind *:9443" {
            out.push_str(&format!("    bind {bind}\n"));
        } else if let Some(name) = t.strip_prefix("server ").map(str::trim) {
            let name = name.split_whitespace().next().unwrap();
            let s = servers
                .iter()
                .find(|s| s.name() == name)
                .unwrap_or_else(|| panic!("no test server {name}"));
            out.push_str(&format!("    server {name} {} check\n", s.addr()));
        } else if response_delay && t == "tcp-response content accept if serverhello" {
            out.push_str("    tcp-response inspect-delay 5s\n");
            out.push_str(line);
            out.push('\n');
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

async fn tether_haproxy(servers: &[OpensslServer], response_delay: bool) -> Running {
    let cfg = fixed_seed("127.0.0.1:0", servers, response_delay);
    let (config, _findings) = tether::haproxy::convert_haproxy("seed-fixed.cfg", &cfg)
        .unwrap_or_else(|e| panic!("the fixed seed must import: {e}\n{cfg}"));
    start_config(&config).await
}

/// HAProxy evaluates `stick store-response` on the response buffer as it is when the connection
/// is established: without `tcp-response inspect-delay` that buffer is empty, nothing is ever
/// stored, and roundrobin rotates every reconnection over the four servers with no resumption.
#[tokio::test]
async fn s_client_through_imported_seed_rotates_without_resumption() {
    let servers = four_s_servers().await;
    let running = tether_haproxy(&servers, false).await;
    let reused = s_client_reconnect(running.addr).await;
    assert_rotating_without_resumption(&reused, &tether_servers(&running, 6).await);
    let recs = running.sink.wait_for(6).await;
    // `stick on` also stores the session ID the client *offers* (store-request), so each
    // reconnection records its stale ID against the server it was balanced to; but the ID the
    // server issues is never stored (no response inspection), so no lookup ever hits.
    assert!(
        recs.iter()
            .all(|r| r.affinity != AffinityOutcome::Hit && r.resumed == Some(false)),
        "{}",
        running.sink.lines()
    );
}

#[tokio::test]
async fn s_client_through_imported_seed_with_response_delay_is_sticky() {
    let servers = four_s_servers().await;
    let running = tether_haproxy(&servers, true).await;
    let reused = s_client_reconnect(running.addr).await;
    assert_sticky_and_reused(&reused, &tether_servers(&running, 6).await);
}

/// The same fixed configuration on the real HAProxy 2.6 gives the same two answers.
#[tokio::test]
async fn real_haproxy_on_the_fixed_seed_agrees() {
    Haproxy::program().expect("these tests need HAProxy 2.6");
    let servers = four_s_servers().await;
    for response_delay in [false, true] {
        let mut started = None;
        for _ in 0..3 {
            let fe = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
            let cfg = fixed_seed(&fe.to_string(), &servers, response_delay);
            match Haproxy::start(&cfg, fe).await {
                Ok(h) => {
                    started = Some(h);
                    break;
                }
                Err(e) => eprintln!("haproxy start: {e}"),
            }
        }
        let haproxy = started.expect("haproxy starts on the fixed seed");
        let reused = s_client_reconnect(haproxy.frontend()).await;
        // HAProxy logs a connection when it closes; s_client has closed them all.
        let mut servers = Vec::new();
        for _ in 0..100 {
            servers = haproxy_servers(&haproxy.log());
            if servers.len() >= 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if response_delay {
            assert_sticky_and_reused(&reused, &servers);
        } else {
            assert_rotating_without_resumption(&reused, &servers);
        }
    }
}
