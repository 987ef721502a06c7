//! `tether probe` through tether itself (native defaults) in front of four real `openssl
//! s_server` backends: session IDs and TLS 1.2 tickets must both be sticky and resume, which is
//! what the posted HAProxy rules fail to do (see probe_haproxy.rs).

use std::sync::Arc;
use std::time::Duration;

use tether::logsink::DaemonSink;
use tether::probe::cli::render_table;
use tether::probe::{expect_sticky, probe, Mechanism, ProbeOptions, Verdict};
use tether::run::Daemon;
use tether_testbed::{OpensslServer, OpensslServerConfig};

async fn tether_in_front_of(servers: &[OpensslServer]) -> Daemon {
    let mut toml = String::from(
        "[[frontend]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"app\"\n\n\
         [[backend]]\nname = \"app\"\nbalance = \"roundrobin\"\n",
    );
    for s in servers {
        toml.push_str(&format!(
            "\n[[backend.server]]\nname = \"{}\"\naddress = \"{}\"\ncheck = false\n",
            s.name(),
            s.addr()
        ));
    }
    let config = tether_core::config::load_toml("probe.toml", &toml).expect("config loads");
    let rt = tether_core::engine::runtime::build(&config, None).expect("runtime builds");
    tether::run::start(rt, Arc::new(DaemonSink::default()))
        .await
        .expect("daemon starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_defaults_are_sticky_for_session_ids_and_tickets() {
    let mut servers = Vec::new();
    for i in 1..=4 {
        servers.push(
            OpensslServer::start(OpensslServerConfig::new(&format!("node{i}")))
                .await
                .expect("openssl s_server starts"),
        );
    }
    let daemon = tether_in_front_of(&servers).await;
    let addr = daemon.local_addrs()["main"];
    let options = ProbeOptions::new(addr.to_string())
        .mechanisms(&[Mechanism::SessionId, Mechanism::Ticket])
        .reconnections(5);
    let report = probe(&options).await.expect("probe runs");
    let table = render_table(&report);
    for m in [Mechanism::SessionId, Mechanism::Ticket] {
        let r = report.mechanism(m).expect("mechanism probed");
        assert_eq!(
            r.verdict,
            Verdict::StickyAndResuming,
            "{}\n{table}",
            m.as_str()
        );
        assert_eq!(r.resumed, r.reconnections, "{table}");
    }
    expect_sticky(&report).unwrap_or_else(|e| panic!("{e}\n{table}"));
    // Independent clients still spread over the backends (affinity is per session, not global).
    let spread = probe(
        &ProbeOptions::new(addr.to_string())
            .mechanisms(&[Mechanism::SessionId])
            .reconnections(1)
            .clients(4),
    )
    .await
    .expect("probe runs");
    let m = spread.mechanism(Mechanism::SessionId).unwrap();
    assert!(m.initial_backends >= 2, "{}", render_table(&spread));
    daemon.shutdown(Duration::from_secs(1)).await;
}
