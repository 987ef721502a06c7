//! `tether probe` through HAProxy 2.6 configured with the user's stick rules (seed/haproxy.cfg)
//! in front of real `openssl s_server` backends: the probe must show that the rules as posted
//! give no affinity, and that adding `tcp-response inspect-delay` makes session IDs stick.
//!
//! HAProxy is required (CI installs it): these tests fail, not skip, when it is missing.

use std::net::{Ipv4Addr, SocketAddr};

use tether::probe::cli::render_table;
use tether::probe::{expect_sticky, probe, Mechanism, ProbeOptions, ProbeReport, Verdict};
use tether_testbed::{free_port, Haproxy, OpensslServer, OpensslServerConfig};

/// The user's backend rules, verbatim apart from indentation; `{response_delay}` is where the
/// fix goes.
const USER_RULES: &str = "
    balance roundrobin
    stick-table type binary len 32 size 60k expire 60m
    acl clienthello req_ssl_hello_type 1
    acl serverhello rep_ssl_hello_type 2
    tcp-request inspect-delay 5s
    tcp-request content accept if clienthello
{response_delay}    tcp-response content accept if serverhello
    stick on payload_lv(43,1) if clienthello
    stick store-response payload_lv(43,1) if serverhello
";

struct Deployment {
    haproxy: Haproxy,
    _backends: Vec<OpensslServer>,
}

async fn deploy(backends: usize, response_inspect_delay: bool) -> Deployment {
    if let Err(e) = Haproxy::program() {
        panic!("these tests need HAProxy 2.6: {e}");
    }
    let mut servers = Vec::new();
    for i in 1..=backends {
        servers.push(
            OpensslServer::start(OpensslServerConfig::new(&format!("lanneluc-node{i}")))
                .await
                .expect("openssl s_server starts"),
        );
    }
    let server_lines: String = servers
        .iter()
        .map(|s| format!("    server {} {}\n", s.name(), s.addr()))
        .collect();
    let rules = USER_RULES.replace(
        "{response_delay}",
        if response_inspect_delay {
            "    tcp-response inspect-delay 5s\n"
        } else {
            ""
        },
    );
    // A few attempts, in case another process takes the free port first.
    let mut last = None;
    for _ in 0..3 {
        let frontend = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port().unwrap()));
        let config = format!(
            "global\n    maxconn 200\n    log stdout format raw local0\n\n\
             defaults\n    mode tcp\n    log global\n    option tcplog\n    timeout connect 2s\n    \
             timeout client 10s\n    timeout server 10s\n\n\
             frontend main\n    bind {frontend}\n    default_backend app\n\n\
             backend app\n{rules}{server_lines}"
        );
        match Haproxy::start(&config, frontend).await {
            Ok(haproxy) => {
                return Deployment {
                    haproxy,
                    _backends: servers,
                }
            }
            Err(e) => last = Some(e),
        }
    }
    panic!("haproxy did not start: {}", last.unwrap());
}

async fn probe_through(deployment: &Deployment, mechanisms: &[Mechanism]) -> ProbeReport {
    let options =
        ProbeOptions::new(deployment.haproxy.frontend().to_string()).mechanisms(mechanisms);
    let report = probe(&options).await.expect("probe runs");
    eprintln!("{}", render_table(&report));
    report
}

fn verdict(report: &ProbeReport, mechanism: Mechanism) -> &Verdict {
    &report.mechanism(mechanism).unwrap().verdict
}

#[tokio::test]
async fn the_users_rules_give_no_affinity() {
    let deployment = deploy(4, false).await;
    let report = probe_through(&deployment, &Mechanism::ALL).await;
    let log = deployment.haproxy.log();
    for m in &report.mechanisms {
        // `stick store-response` never fires without a response inspect delay, so the server's
        // session ID is never learned; every mechanism wanders across the backends.
        assert!(
            matches!(m.verdict, Verdict::NotSticky { backends, .. } if backends >= 2),
            "{}: {}\n{m:#?}\n{log}",
            m.mechanism.as_str(),
            m.verdict
        );
        assert!(m.resumed < m.reconnections, "{m:#?}");
    }
    assert!(expect_sticky(&report).is_err());
}

#[tokio::test]
async fn a_response_inspect_delay_makes_session_ids_sticky_but_not_tls13() {
    let deployment = deploy(3, true).await;
    let report = probe_through(&deployment, &[Mechanism::SessionId, Mechanism::Psk]).await;
    let log = deployment.haproxy.log();
    assert_eq!(
        verdict(&report, Mechanism::SessionId),
        &Verdict::StickyAndResuming,
        "{report:#?}\n{log}"
    );
    // TLS 1.3 clients send a fresh random legacy session ID every time: nothing ever matches.
    assert!(
        matches!(verdict(&report, Mechanism::Psk), Verdict::NotSticky { .. }),
        "{report:#?}\n{log}"
    );
}
