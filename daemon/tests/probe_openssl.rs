//! `tether probe` against `openssl s_server`, the reference implementation: session IDs resume
//! when tickets are off, tickets resume when they are on.

use tether::probe::cli::render_table;
use tether::probe::key_names::Naming;
use tether::probe::{expect_sticky, probe, Mechanism, ProbeOptions, ResumedBy, Verdict};
use tether_testbed::{OpensslServer, OpensslServerConfig, TlsVersions};

#[tokio::test]
async fn session_ids_resume_against_s_server_without_tickets() {
    let server = OpensslServer::start(
        OpensslServerConfig::new("ossl-id")
            .tickets(false)
            .versions(TlsVersions::Tls12),
    )
    .await
    .unwrap();
    let options = ProbeOptions::new(server.addr().to_string())
        .mechanisms(&[Mechanism::SessionId, Mechanism::Ticket]);
    let report = probe(&options).await.unwrap();
    expect_sticky(&report).unwrap_or_else(|e| panic!("{e}\n{report:#?}\n{}", server.log()));
    for m in &report.mechanisms {
        for c in &m.chains[0].connections {
            assert_eq!(c.backend.as_ref().unwrap().name, "ossl-id");
            assert_eq!(c.issued_ticket, None, "-no_ticket issues none");
        }
        for c in &m.chains[0].connections[1..] {
            // In ticket mode too: the server issued no ticket, so the session ID carried it.
            assert_eq!(c.resumed_by, Some(ResumedBy::SessionId), "{c:#?}");
        }
    }
}

#[tokio::test]
async fn tickets_resume_against_s_server_with_tickets() {
    let server = OpensslServer::start(OpensslServerConfig::new("ossl-ticket"))
        .await
        .unwrap();
    let options = ProbeOptions::new(server.addr().to_string())
        .mechanisms(&[Mechanism::Ticket, Mechanism::Psk]);
    let report = probe(&options).await.unwrap();
    let ticket = report.mechanism(Mechanism::Ticket).unwrap();
    assert_eq!(ticket.verdict, Verdict::StickyAndResuming, "{ticket:#?}");
    let chain = &ticket.chains[0];
    assert!(chain.connections[0].issued_ticket.is_some());
    for c in &chain.connections[1..] {
        assert_eq!(c.resumed_by, Some(ResumedBy::Ticket), "{c:#?}");
        assert!(c.offered_ticket.is_some());
    }
    let psk = report.mechanism(Mechanism::Psk).unwrap();
    assert_eq!(psk.verdict, Verdict::StickyAndResuming, "{psk:#?}");
}

#[tokio::test]
async fn openssl_names_its_ticket_keys_and_the_probe_says_ticket_key_can_learn_it() {
    let server = OpensslServer::start(OpensslServerConfig::new("ossl-named"))
        .await
        .unwrap();
    let options = ProbeOptions::new(server.addr().to_string())
        .mechanisms(&[Mechanism::Ticket, Mechanism::Psk]);
    let report = probe(&options).await.unwrap();
    let keys = &report.ticket_keys;
    // The whole report on failure: once in CI `keys` came back empty with an empty s_server
    // log, not reproduced since; the chains' errors and identities say which step failed.
    assert_eq!(keys.len(), 1, "{report:#?}\n{}", server.log());
    assert_eq!(keys[0].backend, "ossl-named");
    assert_eq!(keys[0].naming, Naming::Named, "{keys:#?}");
    // TLS 1.2 and TLS 1.3 tickets of one s_server process share one key name.
    assert_eq!(keys[0].names.len(), 1, "{keys:#?}");
    assert!(keys[0].tickets >= 6, "{keys:#?}");
    let text = render_table(&report);
    assert!(text.contains("ossl-named: named, key"), "{text}");
}
