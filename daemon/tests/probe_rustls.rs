//! `tether probe` against one real rustls backend: every mechanism must stay and resume, and the
//! backend's own counters must agree with what the probe reports.

use tether::probe::cli::render_table;
use tether::probe::key_names::Naming;
use tether::probe::{probe, Mechanism, ProbeOptions, ResumedBy, Verdict};
use tether_testbed::{TlsBackend, TlsBackendConfig, TlsVersions};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn probe_one(backend: &TlsBackend, mechanism: Mechanism) -> tether::probe::MechanismReport {
    let options = ProbeOptions::new(backend.addr().to_string()).mechanisms(&[mechanism]);
    let report = probe(&options).await.expect("probe runs");
    report
        .mechanism(mechanism)
        .expect("mechanism probed")
        .clone()
}

#[tokio::test]
async fn session_id_chain_stays_on_one_backend_and_resumes_every_time() {
    let backend = TlsBackend::start(TlsBackendConfig::new("solo").tickets(false))
        .await
        .unwrap();
    let m = probe_one(&backend, Mechanism::SessionId).await;
    assert_eq!(m.verdict, Verdict::StickyAndResuming, "{m:#?}");
    assert_eq!((m.same_backend, m.resumed, m.reconnections), (5, 5, 5));
    let chain = &m.chains[0];
    for c in &chain.connections {
        let b = c.backend.as_ref().unwrap();
        assert_eq!(b.name, "solo");
        assert_eq!(b.fingerprint, hex(&backend.fingerprint()));
        assert_eq!(b.banner.as_deref(), Some("solo"));
        assert_eq!(c.version.as_deref(), Some("TLSv1.2"));
        assert_eq!(
            c.offered_ticket, None,
            "session-id mode must not offer tickets"
        );
    }
    let first = &chain.connections[0];
    assert!(!first.resumed && !first.session_offered);
    assert_eq!(first.offered_session_id.as_deref(), Some(""));
    let issued = first.server_session_id.clone().unwrap();
    assert_eq!(issued.len(), 16, "8-byte prefix of the server's session ID");
    for c in &chain.connections[1..] {
        assert_eq!(c.resumed_by, Some(ResumedBy::SessionId));
        assert_eq!(c.offered_session_id.as_deref(), Some(issued.as_str()));
        assert_eq!(
            c.server_session_id.as_deref(),
            Some(issued.as_str()),
            "echo = resumed"
        );
    }
    assert_eq!(backend.handshakes(), 6);
    assert_eq!(backend.resumed(), 5);
}

#[tokio::test]
async fn ticket_chain_resumes_with_tickets() {
    let backend =
        TlsBackend::start(TlsBackendConfig::new("ticketing").versions(TlsVersions::Tls12))
            .await
            .unwrap();
    let m = probe_one(&backend, Mechanism::Ticket).await;
    assert_eq!(m.verdict, Verdict::StickyAndResuming, "{m:#?}");
    assert_eq!(m.resumed, 5);
    let chain = &m.chains[0];
    assert!(chain.connections[0].issued_ticket.is_some(), "{chain:#?}");
    for pair in chain.connections.windows(2) {
        let (previous, c) = (&pair[0], &pair[1]);
        assert_eq!(c.resumed_by, Some(ResumedBy::Ticket));
        // Each reconnection presents exactly the ticket the previous connection received (or,
        // when the server did not renew it, the one it resumed with).
        let expected = previous
            .issued_ticket
            .clone()
            .or(previous.offered_ticket.clone());
        assert_eq!(c.offered_ticket, expected);
    }
    assert_eq!(backend.resumed(), 5);
}

#[tokio::test]
async fn tls13_chain_resumes_with_psk() {
    let backend = TlsBackend::start(TlsBackendConfig::new("modern").versions(TlsVersions::Tls13))
        .await
        .unwrap();
    let m = probe_one(&backend, Mechanism::Psk).await;
    assert_eq!(m.verdict, Verdict::StickyAndResuming, "{m:#?}");
    let chain = &m.chains[0];
    assert!(chain.connections[0].sessions_received >= 1);
    for c in &chain.connections[1..] {
        assert_eq!(c.version.as_deref(), Some("TLSv1.3"));
        assert_eq!(c.resumed_by, Some(ResumedBy::Psk));
        assert!(c.offered_psk.is_some());
    }
    // TLS 1.3 tickets are used once: every reconnection offers a different identity.
    let mut identities: Vec<_> = chain.connections[1..]
        .iter()
        .map(|c| c.offered_psk.clone())
        .collect();
    identities.dedup();
    assert_eq!(identities.len(), 5);
    assert_eq!(backend.resumed(), 5);
}

#[tokio::test]
async fn a_backend_that_keeps_no_sessions_is_sticky_but_not_resuming() {
    let backend = TlsBackend::start(
        TlsBackendConfig::new("forgetful")
            .tickets(false)
            .session_cache(0),
    )
    .await
    .unwrap();
    let options = ProbeOptions::new(backend.addr().to_string())
        .mechanisms(&[Mechanism::SessionId])
        .reconnections(3);
    let report = probe(&options).await.unwrap();
    let m = report.mechanism(Mechanism::SessionId).unwrap();
    assert!(
        matches!(m.verdict, Verdict::StickyNotResuming { resumed: 0, .. }),
        "{m:#?}"
    );
    assert!(!report.is_sticky());
    assert_eq!(backend.resumed(), 0);
    assert_eq!(backend.handshakes(), 4);
}

#[tokio::test]
async fn several_clients_each_get_their_own_chain() {
    let backend = TlsBackend::start(TlsBackendConfig::new("shared"))
        .await
        .unwrap();
    let options = ProbeOptions::new(backend.addr().to_string())
        .reconnections(2)
        .clients(3);
    let report = probe(&options).await.unwrap();
    assert!(report.is_sticky(), "{report:#?}");
    for m in &report.mechanisms {
        assert_eq!(m.chains.len(), 3);
        assert_eq!(m.reconnections, 6);
        assert_eq!(m.initial_backends, 1);
        for chain in &m.chains {
            assert!(
                !chain.connections[0].session_offered,
                "clients share no session"
            );
        }
    }
    // 3 mechanisms x 3 clients x (1 full + 2 resumed).
    assert_eq!(backend.handshakes(), 27);
    assert_eq!(backend.resumed(), 18);
}

#[tokio::test]
async fn the_json_report_names_mechanisms_and_verdicts() {
    let backend = TlsBackend::start(TlsBackendConfig::new("json"))
        .await
        .unwrap();
    let options = ProbeOptions::new(backend.addr().to_string())
        .mechanisms(&[Mechanism::SessionId])
        .reconnections(1);
    let report = probe(&options).await.unwrap();
    let json = serde_json::to_value(&report).unwrap();
    let m = &json["mechanisms"][0];
    assert_eq!(m["mechanism"], "session-id");
    assert_eq!(m["verdict"]["kind"], "sticky-and-resuming");
    assert_eq!(m["chains"][0]["connections"][1]["resumed_by"], "session-id");
    assert_eq!(m["chains"][0]["connections"][0]["backend"]["name"], "json");
}

#[tokio::test]
async fn a_backend_whose_tickets_have_a_random_prefix_is_reported_unnamed() {
    // Tickets that start with 16 random bytes, as Go >= 1.21 writes them.
    let backend = TlsBackend::start(
        TlsBackendConfig::new("unnamed")
            .versions(TlsVersions::Tls13)
            .unnamed_tickets(true),
    )
    .await
    .unwrap();
    let options = ProbeOptions::new(backend.addr().to_string()).mechanisms(&[Mechanism::Psk]);
    let report = probe(&options).await.expect("probe runs");
    let keys = &report.ticket_keys;
    assert_eq!(keys.len(), 1, "{keys:#?}");
    assert_eq!(keys[0].naming, Naming::Unnamed, "{keys:#?}");
    assert_eq!(keys[0].names.len(), keys[0].tickets, "every prefix differs");
    let text = render_table(&report);
    assert!(
        text.contains("unnamed: tickets carry no stable key name"),
        "{text}"
    );
}
