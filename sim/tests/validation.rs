//! The simulator's validation set: tether's real engine under known workloads must show the
//! affinity behaviour the design predicts (and each check fails if the engine or a model breaks).

use proptest::prelude::*;
use tether_core::affinity::{AffinityOutcome, NoKeyReason};
use tether_sim::scenario::Scenario;
use tether_sim::{run_with_options, RunOptions};

/// A small engine scenario: one fleet of `kind` behind `servers` servers, with `backend` as the
/// `[balancer.config.backend]` body and `extra` appended (more fleet keys, events).
fn engine_scenario(kind: &str, servers: usize, backend: &str, extra: &str) -> Scenario {
    let text = format!(
        r#"
        name = "validation"
        duration = "120s"
        [servers]
        count = {servers}
        ticket_keys = "per-server"
        [balancer]
        kind = "engine"
        [balancer.config.backend]
        balance = "roundrobin"
        {backend}
        [network]
        tick = "5ms"
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

const SESSION_ID_60K: &str = r#"affinity = ["session-id"]
        [balancer.config.backend.stick-table]
        size = "60k"
        expire = "60m""#;

#[test]
fn roundrobin_without_affinity_resumes_about_one_in_n() {
    let s = engine_scenario("tls12-session-id", 4, "affinity = []", "");
    let r = tether_sim::run(&s, 11).unwrap();
    let f = &r.fleets["f"];
    assert!(f.resumption_attempts > 200, "{f:?}");
    assert!(
        (0.15..0.35).contains(&f.resumption_success),
        "expected ~1/4, got {f:?}"
    );
    let a = r.affinity.as_ref().expect("engine outcomes");
    assert_eq!(a.overall.hits, 0);
    assert_eq!(
        a.overall
            .count(AffinityOutcome::NoKey(NoKeyReason::NoAffinity)),
        f.connections,
        "{:?}",
        a.overall
    );
    assert!(r.imbalance.max_over_mean < 1.2, "{:?}", r.imbalance);
}

#[test]
fn session_id_affinity_with_a_large_table_holds_completely() {
    let s = engine_scenario("tls12-session-id", 4, SESSION_ID_60K, "");
    let r = tether_sim::run(&s, 12).unwrap();
    let f = &r.fleets["f"];
    assert_eq!(f.client_visible_failures + f.aborted_in_flight, 0, "{f:?}");
    assert!(f.resumption_attempts > 200, "{f:?}");
    // Every connection after a client's first offers its session ID and resumes.
    assert_eq!(f.resumptions, f.resumption_attempts, "{f:?}");
    let a = &r.affinity.as_ref().unwrap().fleets["f"];
    assert_eq!(a.affinity_rate, 1.0, "{a:?}");
    assert_eq!(a.hits, f.resumption_attempts, "{a:?}");
    let t = r.table.as_ref().unwrap();
    assert_eq!((t.totals.evicted, t.totals.expired), (0, 0), "{t:?}");
    // One entry per client: the first connection's new session, learned from the ServerHello.
    assert_eq!(t.totals.inserted, 60, "{t:?}");
}

#[test]
fn tls13_under_session_id_affinity_resumes_one_in_n_and_stores_nothing() {
    let s = engine_scenario("tls13-single-use", 4, SESSION_ID_60K, "");
    let r = tether_sim::run(&s, 13).unwrap();
    let f = &r.fleets["f"];
    assert!(f.resumption_attempts > 200, "{f:?}");
    assert!(
        (0.15..0.35).contains(&f.resumption_success),
        "expected ~1/4, got {f:?}"
    );
    let a = &r.affinity.as_ref().unwrap().overall;
    assert_eq!(
        a.count(AffinityOutcome::NoKey(NoKeyReason::Tls13RandomId)),
        f.connections,
        "{a:?}"
    );
    let t = r.table.as_ref().unwrap();
    assert_eq!(
        t.totals.inserted, 0,
        "random TLS 1.3 IDs must not fill the table: {t:?}"
    );
    assert_eq!(t.peak_entries, 0);
}

#[test]
fn a_table_too_small_for_the_fleet_evicts_and_loses_affinity() {
    let small = engine_scenario(
        "tls12-session-id",
        4,
        r#"affinity = ["session-id"]
        [balancer.config.backend.stick-table]
        size = 12
        expire = "60m""#,
        "",
    );
    let r = tether_sim::run(&small, 14).unwrap();
    let t = r.table.as_ref().unwrap();
    assert!(t.totals.evicted > 50, "{t:?}");
    assert!(t.peak_entries <= 12, "{t:?}");
    assert!(r.series.table_evictions.iter().sum::<u64>() == t.totals.evicted);
    let a = &r.affinity.as_ref().unwrap().overall;
    let f = &r.fleets["f"];
    assert!(a.affinity_rate < 0.9, "evictions must cost affinity: {a:?}");
    assert!(f.resumption_success < 0.9, "{f:?}");
    assert!(a.count(AffinityOutcome::Learned) > 100, "{a:?}");
}

#[test]
fn engine_reports_are_reproducible_and_seed_dependent() {
    let s = engine_scenario(
        "tls12-session-id",
        3,
        SESSION_ID_60K,
        r#"[[events]]
        at = "30s"
        action = "crash"
        server = 1"#,
    );
    let a = tether_sim::run(&s, 21).unwrap().to_json();
    assert_eq!(a, tether_sim::run(&s, 21).unwrap().to_json());
    assert_ne!(a, tether_sim::run(&s, 22).unwrap().to_json());
    assert!(a.contains("\"affinity_rate\""), "{a}");
    assert!(a.contains("\"table_evictions\""), "{a}");
}

/// A generated small scenario: servers, fleets of mixed kinds, crashes and restarts that always
/// leave at least one server up.
#[derive(Clone, Debug)]
struct Small {
    servers: usize,
    table: usize,
    fleets: Vec<(&'static str, usize)>,
    /// (crash at s, down for s, server)
    crashes: Vec<(u64, u64, usize)>,
}

fn small_strategy() -> impl Strategy<Value = Small> {
    let kinds = prop::sample::select(vec![
        "tls12-session-id",
        "tls12-ticket-openssl",
        "tls13-single-use",
        "no-resumption",
    ]);
    (
        2usize..5,
        4usize..40,
        prop::collection::vec((kinds, 5usize..25), 1..3),
        prop::collection::vec((5u64..20, 5u64..15, 0usize..4), 0..3),
    )
        .prop_map(|(servers, table, fleets, crashes)| Small {
            servers,
            table,
            fleets,
            // Server 0 never crashes, so one server is always up; outages do not overlap.
            crashes: crashes
                .into_iter()
                .scan(0u64, |end, (gap, down, s)| {
                    let at = *end + gap;
                    *end = at + down + 5;
                    Some((at, down, 1 + s % (servers - 1)))
                })
                .collect(),
        })
}

fn small_toml(s: &Small) -> String {
    let mut t = format!(
        r#"
        name = "prop"
        duration = "60s"
        [servers]
        count = {}
        [balancer]
        kind = "engine"
        [balancer.config.backend]
        balance = "roundrobin"
        affinity = ["session-id"]
        retries = 3
        redispatch = true
        timeout-connect = "1s"
        check = {{ inter = "1s", rise = 2, fall = 2 }}
        [balancer.config.backend.stick-table]
        size = {}
        expire = "30s"
        [network]
        tick = "5ms"
        "#,
        s.servers, s.table
    );
    for (i, (kind, clients)) in s.fleets.iter().enumerate() {
        t.push_str(&format!(
            r#"
            [[fleets]]
            name = "f{i}"
            kind = "{kind}"
            clients = {clients}
            first_visit = {{ dist = "uniform", min = "0s", max = "10s" }}
            revisit_gap = {{ dist = "exponential", mean = "10s" }}
            connections_per_visit = 2
            hold = {{ dist = "fixed", value = "1s" }}
            "#
        ));
    }
    for &(at, down, server) in &s.crashes {
        t.push_str(&format!(
            "\n[[events]]\nat = \"{at}s\"\naction = \"crash\"\nserver = {server}\n\
             [[events]]\nat = \"{}s\"\naction = \"restart\"\nserver = {server}\n",
            at + down
        ));
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn generated_scenarios_keep_the_invariants(s in small_strategy(), seed in 0u64..1000) {
        let scenario = Scenario::from_toml(&small_toml(&s)).expect("generated scenario");
        let run = run_with_options(&scenario, seed, RunOptions { trace: true, ..RunOptions::default() })
            .expect("run");
        let trace = run.trace.expect("trace");
        // The table never exceeds its size.
        prop_assert_eq!(trace.table_capacity, Some(s.table as u64));
        prop_assert!(trace.peak_table_entries <= s.table as u64,
            "peak {} > size {}", trace.peak_table_entries, s.table);
        // Once a server is seen DOWN, nothing new is routed to it until it is seen UP again.
        prop_assert!(!trace.routes.is_empty());
        for h in trace.health.iter().filter(|h| h.down) {
            let up_again = trace.health.iter()
                .find(|u| !u.down && u.server == h.server && u.at_ms >= h.at_ms)
                .map_or(u64::MAX, |u| u.at_ms);
            for r in &trace.routes {
                let late = r.chosen_ms > h.at_ms + trace.tick_ms && r.chosen_ms + trace.tick_ms < up_again;
                prop_assert!(!(late && r.server.as_deref() == Some(h.server.as_str())),
                    "{r:?} routed to {} DOWN since {} ms", h.server, h.at_ms);
            }
        }
        // Every crash that lasts longer than detection is seen as DOWN.
        for &(at, down, server) in &s.crashes {
            if down >= 5 {
                let name = format!("server-{server:02}");
                prop_assert!(trace.health.iter().any(|h| h.down && h.server == name
                    && h.at_ms >= at * 1000),
                    "crash of {} at {}s never detected: {:?}", name, at, trace.health);
            }
        }
        // With one server always up, a connection fails only if a crash caught it in flight.
        let crash_times: Vec<u64> = trace.events.iter()
            .filter(|(_, a)| matches!(a, tether_sim::events::Action::Crash { .. }))
            .map(|&(ms, _)| ms)
            .collect();
        let mut in_flight = 0;
        for c in trace.connections.iter().filter(|c| c.record.failure.is_some()) {
            let caught = crash_times.iter().any(|&t| c.record.start_ms <= t && t <= c.end_ms);
            prop_assert!(caught, "failure outside any crash: {c:?} (crashes at {crash_times:?})");
            in_flight += 1;
        }
        let o = &run.report.overall;
        prop_assert_eq!(in_flight, o.client_visible_failures + o.aborted_in_flight);
    }
}
