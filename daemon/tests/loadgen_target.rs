//! `tether loadgen --target`: the scenario's clients against a balancer loadgen did not start —
//! HAProxy 2.6 in front of three rustls backends. With the session-ID stick rules fixed
//! (`tcp-response inspect-delay`), TLS 1.2 session-ID clients resume almost always; with plain
//! round robin about one in three. Servers are named by their certificate's CN.
//!
//! HAProxy is required (CI installs it): the test fails, not skips, when it is missing.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use tether_testbed::{free_port, Haproxy, TlsBackend, TlsBackendConfig, TlsVersions};

const SCENARIO: &str = r#"
name = "target"
duration = "30s"
[servers]
count = 3
[balancer]
kind = "engine"
[[fleets]]
name = "ids"
kind = "tls12-session-id"
clients = 30
first_visit = { dist = "uniform", min = "0s", max = "5s" }
revisit_gap = { dist = "uniform", min = "3s", max = "6s" }
connections_per_visit = 2
"#;

const STICKY: &str = "
    stick-table type binary len 32 size 60k expire 60m
    acl clienthello req_ssl_hello_type 1
    acl serverhello rep_ssl_hello_type 2
    tcp-request inspect-delay 5s
    tcp-request content accept if clienthello
    tcp-response inspect-delay 5s
    tcp-response content accept if serverhello
    stick on payload_lv(43,1) if clienthello
    stick store-response payload_lv(43,1) if serverhello
";

async fn haproxy(rules: &str, backends: &[TlsBackend]) -> Haproxy {
    if let Err(e) = Haproxy::program() {
        panic!("this test needs HAProxy 2.6 (apt-get install haproxy): {e}");
    }
    let servers: String = backends
        .iter()
        .map(|b| format!("    server {} {}\n", b.name(), b.addr()))
        .collect();
    let mut last = None;
    for _ in 0..3 {
        let frontend = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port().unwrap()));
        let config = format!(
            "global\n    maxconn 500\n\ndefaults\n    mode tcp\n    timeout connect 2s\n    \
             timeout client 10s\n    timeout server 10s\n\n\
             frontend main\n    bind {frontend}\n    default_backend app\n\n\
             backend app\n    balance roundrobin\n{rules}{servers}"
        );
        match Haproxy::start(&config, frontend).await {
            Ok(h) => return h,
            Err(e) => last = Some(e),
        }
    }
    panic!("haproxy did not start: {}", last.unwrap());
}

/// Runs loadgen against `target` (in a blocking thread: the backends live on this runtime).
async fn loadgen(target: SocketAddr, label: &str) -> serde_json::Value {
    let dir = std::env::temp_dir().join(format!("tether-loadgen-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("scenario.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let out: PathBuf = dir.join("out");
    let args: Vec<String> = vec![
        "loadgen".into(),
        scenario.display().to_string(),
        "--target".into(),
        target.to_string(),
        "--time-scale".into(),
        "10".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(&args)
            .env("TETHER_LOG", "error")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(out.join("report.json")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_measures_haproxy_stickiness_by_certificate() {
    let mut backends = Vec::new();
    for i in 1..=3 {
        let config = TlsBackendConfig::new(&format!("node{i}"))
            .versions(TlsVersions::Tls12)
            .tickets(false);
        backends.push(TlsBackend::start(config).await.unwrap());
    }
    let sticky = haproxy(STICKY, &backends).await;
    let r = loadgen(sticky.frontend(), "sticky").await;
    let servers: Vec<&String> = r["servers"].as_object().unwrap().keys().collect();
    assert_eq!(
        servers,
        ["node1", "node2", "node3"],
        "named by certificate CN"
    );
    let f = &r["fleets"]["ids"];
    assert!(f["connections"].as_u64().unwrap() >= 100, "{f}");
    assert_eq!(f["client_visible_failures"], 0, "{f}");
    let sticky_rate = f["resumption_success"].as_f64().unwrap();
    assert!(sticky_rate > 0.9, "fixed stick rules resume: {f}");
    // What the backends saw agrees with what the clients reported.
    let resumed: u64 = backends.iter().map(TlsBackend::resumed).sum();
    assert_eq!(resumed, f["resumptions"].as_u64().unwrap());

    let plain = haproxy("", &backends).await;
    let r = loadgen(plain.frontend(), "plain").await;
    let rate = r["fleets"]["ids"]["resumption_success"].as_f64().unwrap();
    assert!(
        (0.15..0.55).contains(&rate),
        "round robin over 3: about 1/3, got {rate}"
    );
}
