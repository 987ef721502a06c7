//! `tether probe` through a plain round-robin TCP relay over two real backends: no affinity, and
//! the probe must say so (and `--expect sticky` must fail).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use clap::Parser;
use tether::probe::{expect_sticky, probe, run, Mechanism, ProbeArgs, ProbeOptions, Verdict};
use tether_testbed::{TlsBackend, TlsBackendConfig};
use tokio::net::{TcpListener, TcpStream};

/// The simplest balancer there is: each new connection goes to the next backend in turn.
async fn round_robin_relay(backends: Vec<SocketAddr>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            let target = backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()];
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (addr, task)
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    probe: ProbeArgs,
}

#[tokio::test]
async fn round_robin_without_affinity_is_not_sticky() {
    let a = TlsBackend::start(TlsBackendConfig::new("node-a"))
        .await
        .unwrap();
    let b = TlsBackend::start(TlsBackendConfig::new("node-b"))
        .await
        .unwrap();
    let (relay, task) = round_robin_relay(vec![a.addr(), b.addr()]).await;

    let options = ProbeOptions::new(relay.to_string());
    let report = probe(&options).await.unwrap();
    for m in &report.mechanisms {
        assert_eq!(
            m.verdict,
            Verdict::NotSticky {
                backends: 2,
                reconnections: 5
            },
            "{m:#?}"
        );
        let names: Vec<&str> = m.chains[0]
            .connections
            .iter()
            .map(|c| c.backend.as_ref().unwrap().name.as_str())
            .collect();
        // Strict alternation: every connection switches backend, so none can resume (each
        // backend has its own keys and cache).
        for pair in names.windows(2) {
            assert_ne!(pair[0], pair[1], "{names:?}");
        }
        assert_eq!(m.resumed, 0, "{m:#?}");
        assert_eq!(
            m.same_backend, 2,
            "connections 2 and 4 are back on the first backend"
        );
    }
    let err = expect_sticky(&report).unwrap_err();
    assert!(err.to_string().contains("not sticky"), "{err}");
    assert_eq!(a.resumed() + b.resumed(), 0);
    assert_eq!(a.handshakes() + b.handshakes(), 18);

    // The CLI edge: `--expect sticky` turns that into a failing exit code.
    let cli = Cli::try_parse_from([
        "probe",
        &relay.to_string(),
        "--mechanism",
        "session-id",
        "--count",
        "2",
        "--expect",
        "sticky",
    ])
    .unwrap();
    assert_eq!(run(cli.probe).await.unwrap(), ExitCode::FAILURE);

    // And against one backend directly, the same command succeeds.
    let cli = Cli::try_parse_from([
        "probe",
        &a.addr().to_string(),
        "--mechanism",
        "session-id",
        "--count",
        "2",
        "--expect",
        "sticky",
    ])
    .unwrap();
    assert_eq!(run(cli.probe).await.unwrap(), ExitCode::SUCCESS);
    task.abort();
}

#[tokio::test]
async fn banner_identity_tells_backends_apart_even_when_resumption_is_shared() {
    // Two relays to the same backend are one backend; the banner confirms it.
    let a = TlsBackend::start(TlsBackendConfig::new("only"))
        .await
        .unwrap();
    let (relay, task) = round_robin_relay(vec![a.addr(), a.addr()]).await;
    let mut options = ProbeOptions::new(relay.to_string()).mechanisms(&[Mechanism::Ticket]);
    options.identify = tether::probe::Identify::Banner;
    let report = probe(&options).await.unwrap();
    assert!(report.is_sticky(), "{report:#?}");
    task.abort();
}
