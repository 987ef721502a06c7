//! Debian's `prometheus-haproxy-exporter` scrapes tether in both its modes, the unix socket
//! (`--haproxy.scrape-uri=unix:SOCK`, the runtime API) and HTTP (`/;csv`): every server appears
//! with the right `up` and session values, and the CSV parses without a failure.

mod runtime_api_support;
mod stats_support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use runtime_api_support::*;
use stats_support::{http, PLAIN};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

const EXPORTER: &str = "prometheus-haproxy-exporter";

/// The exporter as a child process, killed on drop.
struct Exporter {
    child: Child,
    web: SocketAddr,
}

impl Exporter {
    fn start(scrape_uri: &str) -> Exporter {
        require(EXPORTER, EXPORTER);
        let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(EXPORTER)
            .arg(format!("--haproxy.scrape-uri={scrape_uri}"))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the exporter starts");
        Exporter { child, web }
    }

    /// Scrapes /metrics until the exporter answers (it needs a moment to listen).
    async fn metrics(&self) -> String {
        for _ in 0..50 {
            if TcpStream::connect(self.web).await.is_ok() {
                let r = http(self.web, "GET", "/metrics", &[], b"").await;
                if r.status == 200 {
                    return r.body;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{EXPORTER} never served /metrics on {}", self.web);
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the metric line that starts with `name{labels}`.
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

fn server(metric: &str, name: &str) -> String {
    format!("haproxy_server_{metric}{{backend=\"app\",server=\"{name}\"}}")
}

/// Opens a connection through tether and keeps it, once the backend has answered.
async fn hold(frontend: SocketAddr) -> (TcpStream, String) {
    let mut s = TcpStream::connect(frontend).await.unwrap();
    s.write_all(PLAIN).await.unwrap();
    let mut line = String::new();
    let mut r = BufReader::new(&mut s);
    r.read_line(&mut line).await.unwrap();
    (s, line.trim().to_string())
}

fn check(metrics: &str, mode: &str) {
    assert_eq!(value(metrics, "haproxy_up"), 1.0, "{mode}");
    assert_eq!(
        value(metrics, "haproxy_exporter_csv_parse_failures_total"),
        0.0,
        "{mode}"
    );
    assert_eq!(value(metrics, &server("up", "alpha")), 1.0, "{mode}");
    assert_eq!(
        value(metrics, &server("up", "beta")),
        0.0,
        "{mode}: beta is in maint"
    );
    assert_eq!(value(metrics, &server("up", "gamma")), 1.0, "{mode}");
    assert_eq!(
        value(metrics, &server("current_sessions", "alpha")),
        2.0,
        "{mode}"
    );
    assert_eq!(
        value(metrics, &server("current_sessions", "beta")),
        0.0,
        "{mode}"
    );
    assert_eq!(
        value(metrics, &server("current_sessions", "gamma")),
        0.0,
        "{mode}"
    );
    assert_eq!(
        value(metrics, &server("sessions_total", "alpha")),
        2.0,
        "{mode}"
    );
    assert_eq!(
        value(metrics, &server("sessions_total", "gamma")),
        1.0,
        "{mode}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_reads_every_server_over_the_socket_and_http() {
    let api = ApiRig::start("exporter", &["alpha", "beta", "gamma"]).await;
    let sock = api.admin.path();
    assert_eq!(socat(sock, "disable server app/beta\n").await, "\n");
    // One connection to gamma (alpha at weight 0), closed; then two held on alpha (gamma at
    // weight 0).
    assert_eq!(socat(sock, "set weight app/alpha 0\n").await, "\n");
    let (c, name) = hold(api.rig.frontend).await;
    drop(c);
    assert_eq!(
        socat(sock, "set weight app/gamma 0;set weight app/alpha 100%\n").await,
        "\n\n"
    );
    let mut held = Vec::new();
    for _ in 0..2 {
        let (s, name) = hold(api.rig.frontend).await;
        assert_eq!(name, "alpha");
        held.push(s);
    }
    assert_eq!(name, "gamma");
    // Sessions closing is counted asynchronously: wait until tether itself says 2 current.
    let settled = wait_for(Duration::from_secs(5), || {
        let snap = tether::stats::snapshot::take(api.rig.daemon.runtime(), 0);
        (snap.backends[0].sum(|s| s.current) == 2).then_some(())
    })
    .await;
    assert!(settled.is_some());
    let unix = Exporter::start(&format!("unix:{}", sock.display()));
    check(&unix.metrics().await, "unix socket");
    let web = Exporter::start(&format!("http://{}/;csv", api.rig.stats_addr()));
    check(&web.metrics().await, "http");
    assert!(unix.metrics().await.contains("haproxy_version_info{"));
}
