//! The server cost model end to end: CPU accounted exactly from the handshakes done, latency
//! that includes the wait for a core, a full backlog refusing connections, and a crash's full
//! handshakes loading the survivors.

use tether_sim::{run, Scenario};

/// Session-ID clients behind session-ID affinity on `servers` servers with `cores` each.
fn scenario(servers: usize, cores: u32, full_us: u64, backlog: u32, extra: &str) -> Scenario {
    let text = format!(
        r#"
        name = "cost"
        duration = "240s"
        [servers]
        count = {servers}
        [servers.cost]
        cores = {cores}
        backlog = {backlog}
        tls12 = {{ full_us = {full_us}, resumed_us = {resumed} }}
        [balancer]
        kind = "engine"
        [balancer.config.backend]
        balance = "roundrobin"
        affinity = ["session-id"]
        [network]
        tick = "1ms"
        [[fleets]]
        name = "ids"
        kind = "tls12-session-id"
        clients = 300
        first_visit = {{ dist = "uniform", min = "0s", max = "20s" }}
        revisit_gap = {{ dist = "exponential", mean = "10s" }}
        connections_per_visit = 2
        {extra}
        "#,
        resumed = full_us / 7,
    );
    Scenario::from_toml(&text).expect("test scenario")
}

#[test]
fn cpu_is_the_handshakes_priced_and_resumption_saving_is_counted() {
    let full_us = 1_100;
    let s = scenario(3, 2, full_us, 511, "");
    let r = run(&s, 1).expect("run");
    let cost = r.cost.as_ref().expect("a cost block gives a cost report");
    let resumed_us = full_us / 7;
    let mut expected_us = 0;
    let mut saved_us = 0;
    for (name, st) in &r.servers {
        let want = st.full_handshakes * full_us + st.resumed_handshakes * resumed_us;
        let got = (cost.servers[name].cpu_seconds * 1e6).round() as u64;
        assert_eq!(got, want, "{name}: {st:?}");
        expected_us += want;
        saved_us += st.resumed_handshakes * (full_us - resumed_us);
    }
    assert!(r.overall.resumptions > 100, "resumptions exercised");
    assert_eq!((cost.cpu_seconds * 1e6).round() as u64, expected_us);
    assert_eq!(
        (cost.saved_by_resumption_cpu_seconds * 1e6).round() as u64,
        saved_us
    );
    // Utilisation per minute adds up to the CPU seconds.
    let util_s: f64 = cost
        .series
        .utilisation
        .values()
        .flatten()
        .map(|u| u * 2.0 * 60.0)
        .sum();
    assert!(
        (util_s - cost.cpu_seconds).abs() < 0.01,
        "{util_s} vs {}",
        cost.cpu_seconds
    );
    assert!(cost.balancer.cores_at_peak > 0.0);
    assert_eq!(r.overall.client_visible_failures, 0, "no overload here");
}

#[test]
fn a_saturated_server_queues_then_refuses() {
    // ~60 connections/s onto one server, 300 first visits in 20 s: one core at 5 ms per full
    // handshake is lightly loaded; at 80 ms the first visits alone need 24 core-seconds.
    let light = run(&scenario(1, 1, 5_000, 511, ""), 1).expect("light");
    let heavy = run(&scenario(1, 1, 80_000, 511, ""), 1).expect("heavy");
    assert!(
        heavy.overall.connect_latency_p99_ms > 3 * light.overall.connect_latency_p99_ms,
        "waiting for the core shows in p99: {} vs {}; {:?}",
        heavy.overall.connect_latency_p99_ms,
        light.overall.connect_latency_p99_ms,
        heavy.cost
    );
    let peak = |r: &tether_sim::Report| r.cost.as_ref().unwrap().peak_utilisation(None).unwrap();
    assert!(peak(&light) < 0.5, "{}", peak(&light));
    assert!(peak(&heavy) > 0.75, "{}", peak(&heavy));
    let small = run(&scenario(1, 1, 80_000, 4, ""), 1).expect("small backlog");
    let refused: u64 = small
        .cost
        .as_ref()
        .unwrap()
        .servers
        .values()
        .map(|s| s.refused)
        .sum();
    assert!(refused > 0, "a backlog of 4 overflows");
    assert!(
        small.overall.client_visible_failures >= refused,
        "refusals are client-visible: {} < {refused}",
        small.overall.client_visible_failures
    );
    assert_eq!(heavy.cost.as_ref().unwrap().servers["server-00"].refused, 0);
}

#[test]
fn a_crash_loads_the_survivors_and_runs_are_deterministic() {
    let crash = "[[events]]\nat = \"120s\"\naction = \"crash\"\nserver = 0";
    let s = scenario(3, 1, 8_000, 511, crash);
    let r = run(&s, 3).expect("run");
    let again = run(&s, 3).expect("again");
    assert_eq!(r.to_json(), again.to_json(), "same seed, same bytes");
    let cost = r.cost.as_ref().unwrap();
    let survivor = &cost.series.utilisation["server-01"];
    // Minute 1 (before the crash at 120 s) against minute 2 (after).
    assert!(
        survivor[2] > survivor[1] * 1.2,
        "survivor utilisation per minute {survivor:?}"
    );
    assert!(r.to_json().contains("\"latency_p99_ms\""));
}
