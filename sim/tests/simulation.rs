//! Whole-simulation tests: determinism, and resumption as the server models dictate it.

use tether_sim::client::Failure;
use tether_sim::scenario::{BalancerKind, Scenario};

/// A small scenario: one fleet of `kind`, `servers` servers, behind `balancer`.
fn small(kind: &str, servers: usize, keys: &str, balancer: &str, extra: &str) -> Scenario {
    let text = format!(
        r#"
        name = "test"
        duration = "90s"
        [servers]
        count = {servers}
        ticket_keys = "{keys}"
        [balancer]
        kind = "{balancer}"
        [network]
        tick = "2ms"
        [[fleets]]
        name = "f"
        kind = "{kind}"
        clients = 60
        first_visit = {{ dist = "uniform", min = "0s", max = "10s" }}
        revisit_gap = {{ dist = "exponential", mean = "15s" }}
        connections_per_visit = 2
        {extra}
        "#
    );
    Scenario::from_toml(&text).expect("test scenario")
}

#[test]
fn same_seed_same_bytes_different_seed_different_report() {
    let s = small("tls12-session-id", 4, "none", "relay", "");
    let a = tether_sim::run(&s, 7).unwrap().to_json();
    let b = tether_sim::run(&s, 7).unwrap().to_json();
    assert_eq!(a, b);
    let c = tether_sim::run(&s, 8).unwrap().to_json();
    assert_ne!(a, c);
}

#[test]
fn session_ids_resume_almost_always_on_one_server() {
    let r = tether_sim::run(&small("tls12-session-id", 1, "none", "direct", ""), 1).unwrap();
    let f = &r.fleets["f"];
    assert!(f.resumption_attempts > 100, "{f:?}");
    // Within the 300 s session timeout, every attempt resumes.
    assert!(f.resumption_success > 0.99, "{f:?}");
    assert_eq!(f.client_visible_failures, 0);
}

#[test]
fn round_robin_over_four_servers_resumes_about_a_quarter() {
    let r = tether_sim::run(&small("tls12-session-id", 4, "none", "relay", ""), 2).unwrap();
    let f = &r.fleets["f"];
    assert!(f.resumption_attempts > 100, "{f:?}");
    assert!(
        (0.15..0.35).contains(&f.resumption_success),
        "expected ~1/4, got {}",
        f.resumption_success
    );
    assert!(r.imbalance.max_over_mean < 1.2, "{:?}", r.imbalance);
}

#[test]
fn shared_ticket_keys_resume_anywhere_per_server_keys_do_not() {
    let shared =
        tether_sim::run(&small("tls12-ticket-openssl", 4, "shared", "relay", ""), 3).unwrap();
    let f = &shared.fleets["f"];
    assert!(f.resumption_success > 0.99, "{f:?}");
    let own = tether_sim::run(
        &small("tls12-ticket-openssl", 4, "per-server", "relay", ""),
        3,
    )
    .unwrap();
    assert!(
        own.fleets["f"].resumption_success < 0.4,
        "{:?}",
        own.fleets["f"]
    );
    let tls13 = tether_sim::run(
        &small(
            "tls13-single-use",
            4,
            "shared",
            "relay",
            "pq_key_share = true",
        ),
        3,
    )
    .unwrap();
    assert!(
        tls13.fleets["f"].resumption_success > 0.99,
        "{:?}",
        tls13.fleets["f"]
    );
}

#[test]
fn crash_breaks_in_flight_connections_and_counts_them_apart() {
    // Long-held connections straight to one server; the server crashes mid-run and restarts.
    let s = small(
        "tls12-session-id",
        1,
        "none",
        "direct",
        r#"hold = { dist = "fixed", value = "5s" }
        [[events]]
        at = "30s"
        action = "crash"
        server = 0
        [[events]]
        at = "40s"
        action = "restart"
        server = 0"#,
    );
    let r = tether_sim::run(&s, 4).unwrap();
    let f = &r.fleets["f"];
    assert!(f.aborted_in_flight > 0, "{f:?}");
    assert!(
        f.client_visible_failures > 0,
        "connects during the outage fail: {f:?}"
    );
    // After the restart the cache is empty: some attempts fail, but resumption recovers.
    assert!(f.resumption_success < 0.99 && f.resumptions > 0, "{f:?}");
    assert_eq!(r.events.len(), 2);
}

#[test]
fn a_process_crash_on_the_shared_server_host_stops_that_process_alone() {
    // Behind the engine, server 2 shares its host with the others (no host-level event of its
    // own) and crashes in place: its held connections break, it accepts nothing while down,
    // it serves again after the restart, and its neighbours on the host serve throughout.
    let mut s = small(
        "tls12-session-id",
        4,
        "none",
        "engine",
        r#"hold = { dist = "fixed", value = "20s" }
        [[events]]
        at = "60s"
        action = "crash"
        server = 2
        [[events]]
        at = "150s"
        action = "restart"
        server = 2"#,
    );
    s.duration = tether_sim::scenario::SimDuration::parse("240s").unwrap();
    let options = tether_sim::RunOptions {
        trace: true,
        ..Default::default()
    };
    let run = tether_sim::run_with_options(&s, 5, options).unwrap();
    // Every connection server 2 held at the crash ends with it (the engine sees the close
    // within a round trip), where the client would have held it for 20 s.
    let routes = run.trace.unwrap().routes;
    let held: Vec<_> = routes
        .iter()
        .filter(|t| t.server.as_deref() == Some("server-02") && t.chosen_ms < 60_000)
        .filter(|t| t.ended_ms > 59_000)
        .collect();
    assert!(!held.is_empty(), "nothing held at the crash");
    assert!(
        held.iter().all(|t| t.ended_ms <= 60_100),
        "held past the crash: {:?}",
        held.iter().map(|t| t.ended_ms).max()
    );
    let r = run.report;
    let per_minute = &r.series.connections_per_server;
    let crashed = &per_minute["server-02"];
    assert!(
        crashed[0] > 0,
        "server 2 serves before the crash: {crashed:?}"
    );
    assert_eq!(
        crashed[1], 0,
        "server 2 accepts nothing while down: {crashed:?}"
    );
    assert!(
        crashed[3] > 0,
        "server 2 serves after the restart: {crashed:?}"
    );
    for other in ["server-00", "server-01", "server-03"] {
        assert!(per_minute[other][1] > 0, "{other} serves during the outage");
    }
}

#[test]
fn default_scenario_runs_on_relay_and_plots() {
    let mut s = Scenario::default_scenario();
    s.balancer.kind = BalancerKind::Relay;
    s.duration = tether_sim::scenario::SimDuration::parse("100s").unwrap();
    s.events.clear();
    let r = tether_sim::run(&s, 1).unwrap();
    assert_eq!(r.servers.len(), 4);
    assert!(r.summary_table().contains("browsers-tls13"));
    let dir = std::env::temp_dir().join(format!("tether-sim-plots-{}", std::process::id()));
    let files = tether_sim::plot::write_plots(&r, &dir).unwrap();
    assert_eq!(files.len(), 4);
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() > 1000, "{f:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The issue's deployment: 4 session-ID servers behind the engine, server 2 lost at 20 s and
/// back at 40 s, by `down_action`.
fn outage(down_action: &str) -> Scenario {
    let mut s = small(
        "tls12-session-id",
        4,
        "none",
        "engine",
        &format!(
            r#"[[events]]
            at = "20s"
            action = "{down_action}"
            server = 2
            [[events]]
            at = "40s"
            action = "restart"
            server = 2"#
        ),
    );
    s.duration = tether_sim::scenario::SimDuration::parse("60s").unwrap();
    s.fleets[0].clients = 200;
    s.balancer.config = Some(
        toml::from_str(
            r#"[backend]
            affinity = ["session-id"]
            [backend.check]
            inter = "5s""#,
        )
        .unwrap(),
    );
    s
}

/// Connections that took a second or more to connect and handshake, or failed to (those open
/// on the server when it crashed break in flight, as they do on real hosts; not counted).
fn slow_or_failed(s: &Scenario) -> (usize, usize) {
    let options = tether_sim::RunOptions {
        trace: true,
        ..Default::default()
    };
    let run = tether_sim::run_with_options(s, 3, options).unwrap();
    let conns = run.trace.unwrap().connections;
    let slow = conns
        .iter()
        .filter(|c| c.record.latency_ms.is_some_and(|l| l >= 1_000))
        .count();
    let failed = conns
        .iter()
        .filter(|c| c.record.failure.is_some_and(|f| f != Failure::InFlight))
        .count();
    (slow, failed)
}

#[test]
fn a_crashed_process_refuses_at_once_and_a_lost_host_is_silent() {
    // A refused connect is redispatched within milliseconds: nobody notices.
    let (slow, failed) = slow_or_failed(&outage("crash"));
    assert_eq!((slow, failed), (0, 0), "crash: slow, failed");
    // A silent host makes connects wait for the engine's connect timeout.
    let (slow, failed) = slow_or_failed(&outage("host-down"));
    assert!(slow + failed > 0, "host-down: nothing waited");
    let crash = tether_sim::run(&outage("crash"), 3).unwrap();
    assert_eq!(crash.events[0].what, "crash server 2");
}
