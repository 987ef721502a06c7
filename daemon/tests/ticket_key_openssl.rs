//! `ticket-key` affinity with real peers: `openssl s_server` backends (TLS 1.3 and TLS 1.2
//! tickets, each process with its own ticket key) and `openssl s_client` processes chaining
//! their sessions (`-sess_out` / `-sess_in`) through tether, with no source-address key; and
//! rustls backends whose tickets have no stable key name.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{native_toml, start_toml, Resume, Running, TlsClient};
use tether::stats::serve_stats;
use tether_core::affinity::{AffinityOutcome, NoKeyReason};
use tether_testbed::{
    OpensslServer, OpensslServerConfig, ScratchDir, TlsBackend, TlsBackendConfig, TlsVersions,
};
use tokio::io::AsyncWriteExt;

const CLIENTS: usize = 10;

/// Fails with the fix when the openssl tool is missing.
fn require_openssl() {
    let ok = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the openssl command-line tool is required: apt-get install -y openssl"
    );
}

/// One `openssl s_client` connection: offers the session in `sess_in` (if any), saves the new
/// one to `sess_out`, sends `GET /` to the `-www` server and reads to the end. Returns whether
/// s_client reports the session `Reused`.
async fn s_client(addr: SocketAddr, tls: &str, sess_in: Option<&Path>, sess_out: &Path) -> bool {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args(["s_client", "-connect", &addr.to_string(), tls, "-ign_eof"])
        .arg("-sess_out")
        .arg(sess_out);
    if let Some(p) = sess_in {
        cmd.arg("-sess_in").arg(p);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl runs (apt-get install -y openssl)");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("s_client finishes")
        .expect("s_client output");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().any(|l| l.starts_with("Reused, "))
}

/// A client chaining its sessions through numbered files.
struct Chain {
    dir: PathBuf,
    n: usize,
    /// The server that issued the session it holds.
    issuer: Option<String>,
}

impl Chain {
    fn path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("sess{n}.pem"))
    }
}

/// Three `openssl s_server` backends and tether in front with `affinity = ["ticket-key"]`.
async fn openssl_fleet(versions: TlsVersions) -> (Vec<OpensslServer>, Running) {
    require_openssl();
    let mut servers = Vec::new();
    for name in ["s1", "s2", "s3"] {
        let cfg = OpensslServerConfig::new(name).versions(versions);
        servers.push(OpensslServer::start(cfg).await.expect("s_server starts"));
    }
    let addrs: Vec<SocketAddr> = servers.iter().map(OpensslServer::addr).collect();
    let toml = native_toml(
        "",
        "",
        "balance = \"roundrobin\"\naffinity = [\"ticket-key\"]",
        "",
        &addrs,
    );
    (servers, start_toml(&toml).await)
}

/// What one round of reconnections did.
#[derive(Debug, Default)]
struct Round {
    /// Reconnections that resumed on the server that issued their ticket.
    resumed_on_issuer: usize,
    /// Reconnections.
    total: usize,
}

/// One connection per client, in turn; returns the round's counts and the first-connection
/// server of each client.
async fn round(running: &Running, clients: &mut [Chain], tls: &str) -> (Round, Vec<String>) {
    let mut r = Round::default();
    let mut servers = Vec::new();
    for c in clients.iter_mut() {
        let before = running.sink.records().len();
        let sess_in = (c.n > 0).then(|| c.path(c.n - 1));
        let reused = s_client(running.addr, tls, sess_in.as_deref(), &c.path(c.n)).await;
        // A TLS 1.2 resumption without a new ticket writes no session: keep the one used.
        if let (Some(old), false) = (&sess_in, c.path(c.n).exists()) {
            std::fs::copy(old, c.path(c.n)).unwrap();
        }
        let rec = running.sink.wait_for(before + 1).await[before].clone();
        let server = rec.server.as_deref().unwrap_or("<NOSRV>").to_owned();
        if let Some(issuer) = &c.issuer {
            r.total += 1;
            r.resumed_on_issuer += usize::from(reused && *issuer == server);
        }
        c.issuer = Some(server.clone());
        c.n += 1;
        servers.push(server);
    }
    (r, servers)
}

async fn chained_clients(versions: TlsVersions, tls: &str) -> (Vec<String>, Round, Running) {
    let (_servers, running) = openssl_fleet(versions).await;
    let scratch = ScratchDir::create("ticket-key").unwrap();
    let mut clients: Vec<Chain> = (0..CLIENTS)
        .map(|i| {
            let dir = scratch.path().join(format!("c{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            Chain {
                dir,
                n: 0,
                issuer: None,
            }
        })
        .collect();
    let (_, first) = round(&running, &mut clients, tls).await;
    // Warm-up: the learner meets each server's key name.
    round(&running, &mut clients, tls).await;
    let (measured, _) = round(&running, &mut clients, tls).await;
    eprintln!(
        "{tls}: {}/{} reconnections resumed on their ticket's server\n{}",
        measured.resumed_on_issuer,
        measured.total,
        running.sink.lines()
    );
    (first, measured, running)
}

fn spread(first: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in first {
        *m.entry(s.clone()).or_insert(0) += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_reconnections_resume_on_the_server_that_issued_their_ticket() {
    let (first, measured, running) = chained_clients(TlsVersions::Tls13, "-tls1_3").await;
    let spread = spread(&first);
    assert_eq!(
        spread.len(),
        3,
        "first connections reach every server: {spread:?}"
    );
    let (min, max) = (spread.values().min(), spread.values().max());
    assert!(
        max.unwrap() - min.unwrap() <= 1,
        "first connections spread evenly: {spread:?}"
    );
    assert!(
        measured.resumed_on_issuer >= 9,
        "{measured:?}: at least 9 of 10 TLS 1.3 reconnections resume on their issuer"
    );
    let recs = running.sink.records();
    assert!(recs
        .iter()
        .any(|r| r.key == Some(tether_core::affinity::AffinityKey::TicketKey)));
    let snap = learned(&running);
    for s in &snap.servers {
        assert_eq!(
            s.names.len(),
            1,
            "one key name per s_server process: {snap:?}"
        );
    }
    assert!(snap.shared.is_empty(), "each process has its own key");
    // The stats page and its JSON show the names, in hex, per server.
    let stats = serve_stats(
        toml::from_str("bind = \"127.0.0.1:0\"").unwrap(),
        running.daemon.view(),
    )
    .await
    .unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&http_get(stats.local_addr(), "/;json").await).unwrap();
    let keys = &json["backends"][0]["ticket_keys"];
    let names: Vec<&str> = keys["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["names"][0].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{keys}");
    let html = http_get(stats.local_addr(), "/").await;
    for n in &names {
        assert_eq!(n.len(), 32, "16 bytes in hex: {n}");
        assert!(n.bytes().all(|b| b.is_ascii_hexdigit()), "{n}");
        assert!(html.contains(n), "the page shows {n}");
    }
}

/// The body of a plain HTTP/1.0 GET.
async fn http_get(addr: SocketAddr, target: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {target} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut s, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_tickets_teach_their_key_name_from_the_new_session_ticket() {
    let (_, measured, running) = chained_clients(TlsVersions::Tls12, "-tls1_2").await;
    assert!(
        measured.resumed_on_issuer >= 9,
        "{measured:?}: at least 9 of 10 TLS 1.2 reconnections resume on their issuer"
    );
    let recs = running.sink.records();
    // Every ticket's name is taught by its cleartext NewSessionTicket before it comes back.
    let hits = recs[CLIENTS..]
        .iter()
        .filter(|r| r.affinity == AffinityOutcome::Hit)
        .count();
    assert!(
        hits >= 2 * CLIENTS - 1,
        "{hits} hits:\n{}",
        running.sink.lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_tickets_have_no_stable_name_is_detected_and_falls_through() {
    // Tickets that start with 16 random bytes, as Go >= 1.21 writes them.
    let mut backends = Vec::new();
    for name in ["u1", "u2"] {
        let cfg = TlsBackendConfig::new(name)
            .versions(TlsVersions::Tls13)
            .unnamed_tickets(true);
        backends.push(TlsBackend::start(cfg).await.unwrap());
    }
    let addrs: Vec<SocketAddr> = backends.iter().map(TlsBackend::addr).collect();
    let running = start_toml(&ticket_key_toml(&addrs)).await;
    let (running, recs) = rustls_clients(&running, 3, 16).await;
    let snap = learned(running);
    let lines = running.sink.lines();
    assert!(
        snap.servers.iter().any(|s| s.unnamed),
        "detected: {snap:?}\n{lines}"
    );
    for s in &snap.servers {
        // An unnamed server keeps nothing; the other one may hold the single random prefix it
        // accepted before detection (it never matches again).
        let most = if s.unnamed { 0 } else { 1 };
        assert!(
            s.names.len() <= most,
            "nothing wrongly kept: {snap:?}\n{lines}"
        );
    }
    assert!(snap.shared.is_empty(), "{snap:?}");
    let fell_through = recs
        .iter()
        .filter(|r| r.affinity == AffinityOutcome::NoKey(NoKeyReason::TicketKeyUnnamed))
        .count();
    assert!(
        fell_through >= 10,
        "tickets fall through once detected:\n{lines}"
    );
    // Nothing sticks once detected: the last connections are balanced, not sent by a guess.
    assert!(
        recs[recs.len() - 10..]
            .iter()
            .all(|r| r.affinity == AffinityOutcome::NoKey(NoKeyReason::TicketKeyUnnamed)),
        "{lines}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rustls_servers_name_their_ticket_keys() {
    let mut backends = Vec::new();
    for name in ["n1", "n2"] {
        let cfg = TlsBackendConfig::new(name).versions(TlsVersions::Tls13);
        backends.push(TlsBackend::start(cfg).await.unwrap());
    }
    let addrs: Vec<SocketAddr> = backends.iter().map(TlsBackend::addr).collect();
    let running = start_toml(&ticket_key_toml(&addrs)).await;
    let (running, recs) = rustls_clients(&running, 4, 4).await;
    let snap = learned(running);
    assert!(
        snap.servers
            .iter()
            .all(|s| !s.unnamed && s.names.len() <= 1),
        "one stable name per rustls server: {snap:?}"
    );
    assert!(snap.servers.iter().any(|s| s.names.len() == 1), "{snap:?}");
    let hits = recs
        .iter()
        .filter(|r| r.affinity == AffinityOutcome::Hit)
        .count();
    assert!(hits >= 8, "{}", running.sink.lines());
}

fn ticket_key_toml(addrs: &[SocketAddr]) -> String {
    native_toml(
        "",
        "",
        "balance = \"roundrobin\"\naffinity = [\"ticket-key\"]",
        "",
        addrs,
    )
}

/// `clients` rustls clients (TLS 1.3, each ticket used once) connect `rounds` times each, in
/// turn; returns the records.
async fn rustls_clients(
    running: &Running,
    clients: usize,
    rounds: usize,
) -> (&Running, Vec<tether_core::engine::ConnectionRecord>) {
    let clients: Vec<TlsClient> = (0..clients).map(|_| TlsClient::new(Resume::Psk)).collect();
    for _ in 0..rounds {
        for c in &clients {
            let conn = c.connect(running.addr).await.expect("connects");
            conn.close().await;
        }
    }
    let recs = running.sink.wait_for(clients.len() * rounds).await;
    (running, recs)
}

fn learned(running: &Running) -> tether_core::affinity::ticket_keys::Snapshot {
    let rt = running.daemon.runtime();
    let learner = rt.backends["app"].tables.ticket_keys_arc().unwrap();
    let snap = learner.lock().unwrap().snapshot();
    snap
}
