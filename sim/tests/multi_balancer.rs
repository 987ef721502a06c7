//! Several balancer instances in one simulation: how clients are spread over them decides
//! affinity when the instances do not share their tables (Cloudflare's "as low as 1/n").
//! Each test runs the real engine on every instance; each fails if the spread, the per-instance
//! tables or the report break.

use tether_sim::scenario::Scenario;
use tether_sim::Report;

/// One session-ID fleet behind `instances` engine instances reached by `spread`, 16 servers
/// (so that a miss rarely lands on the client's server by chance), server sessions living 30 s
/// (a session resumed by chance on a second instance is learned there too, and would otherwise
/// stay known to both for the whole run), a table large enough to never evict; `extra` is
/// appended (events).
fn scenario(instances: usize, spread: &str, extra: &str) -> Scenario {
    let text = format!(
        r#"
        name = "multi"
        duration = "150s"
        [servers]
        count = 16
        session_timeout = "30s"
        [balancer]
        kind = "engine"
        instances = {instances}
        spread = "{spread}"
        [balancer.config.backend]
        balance = "roundrobin"
        affinity = ["session-id"]
        [balancer.config.backend.stick-table]
        size = "60k"
        expire = "60m"
        [network]
        tick = "10ms"
        [[fleets]]
        name = "f"
        kind = "tls12-session-id"
        clients = 80
        first_visit = {{ dist = "uniform", min = "0s", max = "10s" }}
        revisit_gap = {{ dist = "exponential", mean = "15s" }}
        connections_per_visit = 2
        {extra}
        "#
    );
    Scenario::from_toml(&text).expect("test scenario")
}

/// `scenario` with the instances replicating over links of `latency`.
fn replicated(instances: usize, spread: &str, extra: &str) -> Scenario {
    let mut s = scenario(instances, spread, extra);
    s.balancer.replication =
        Some(toml::from_str("enabled = true\nlatency = \"2ms\"").expect("replication section"));
    s
}

fn affinity(r: &Report) -> f64 {
    r.affinity.as_ref().expect("engine outcomes").fleets["f"].affinity_rate
}

#[test]
fn per_connection_spread_without_replication_gives_about_one_nth_of_the_affinity() {
    let one = tether_sim::run(&scenario(1, "per-connection", ""), 3).unwrap();
    assert!(one.instances.is_none(), "one instance reads as before");
    let single = affinity(&one);
    assert!(single > 0.95, "one balancer keeps affinity: {single}");
    for n in [2usize, 3, 4] {
        let r = tether_sim::run(&scenario(n, "per-connection", ""), 3).unwrap();
        let ratio = affinity(&r) / single;
        let expected = 1.0 / n as f64;
        println!("instances {n}: affinity {} ratio {ratio:.3}", affinity(&r));
        // Slightly above 1/N: a miss that lands on the client's server by chance (1 in 16)
        // resumes and keeps the session ID, which that instance then learns too.
        assert!(
            ratio > expected * 0.9 && ratio < expected * 1.2,
            "instances {n}: ratio {ratio:.3}, expected about {expected:.3}"
        );
        let inst = r.instances.as_ref().expect("per-instance report");
        assert_eq!(inst.per_instance.len(), n);
        let conns: Vec<u64> = inst
            .per_instance
            .values()
            .map(|i| i.clients.connections)
            .collect();
        assert_eq!(conns.iter().sum::<u64>(), r.overall.connections);
        let mean = r.overall.connections as f64 / n as f64;
        assert!(
            conns.iter().all(|&c| (c as f64) > mean * 0.8),
            "ECMP spreads evenly: {conns:?}"
        );
    }
}

#[test]
fn sticky_spread_keeps_single_instance_affinity() {
    let single = affinity(&tether_sim::run(&scenario(1, "sticky", ""), 4).unwrap());
    let r = tether_sim::run(&scenario(3, "sticky", ""), 4).unwrap();
    let three = affinity(&r);
    assert!(
        (single - three).abs() < 0.03,
        "sticky: one {single}, three {three}"
    );
    // Without replication each key lives on one instance only.
    let agreement = &r.instances.as_ref().unwrap().table_agreement_per_minute;
    assert!(agreement.iter().skip(1).all(|&a| a < 0.05), "{agreement:?}");
}

#[test]
fn dns_round_robin_sticks_within_a_visit_only() {
    let r = tether_sim::run(&scenario(3, "dns-round-robin", ""), 5).unwrap();
    let a = affinity(&r);
    // The second connection of a visit goes where the first did (a hit); the first connection
    // of the next visit reaches another instance 2 times in 3.
    assert!(a > 0.45 && a < 0.8, "dns round robin affinity {a}");
}

#[test]
fn a_crashed_instance_is_withdrawn_and_comes_back_without_its_table() {
    let events = r#"
        [[events]]
        at = "40s"
        action = "crash-instance"
        instance = 1
        [[events]]
        at = "80s"
        action = "restart-instance"
        instance = 1
        "#;
    let r = tether_sim::run(&scenario(3, "sticky", events), 6).unwrap();
    let f = &r.fleets["f"];
    // Only connections open at the crash break; later ones go to the other instances.
    assert!(
        f.client_visible_failures + f.aborted_in_flight <= 10,
        "{f:?}"
    );
    let t = r.table.as_ref().unwrap();
    assert!(t.totals.lost_in_restarts > 0, "{t:?}");
    let inst = &r.instances.as_ref().unwrap().per_instance;
    let lb1 = &inst["lb-1"];
    assert!(
        lb1.clients.connections > 0 && lb1.clients.connections < inst["lb"].clients.connections,
        "{inst:?}"
    );
    assert_eq!(r.events.len(), 2);
}

#[test]
fn an_upgrade_drains_then_restarts_and_an_added_instance_takes_connections() {
    let events = r#"
        [[events]]
        at = "30s"
        action = "add-instance"
        [[events]]
        at = "60s"
        action = "upgrade-instance"
        instance = 0
        drain = "5s"
        "#;
    let r = tether_sim::run(&scenario(2, "per-connection", events), 7).unwrap();
    let whats: Vec<&str> = r.events.iter().map(|e| e.what.as_str()).collect();
    assert_eq!(
        whats,
        [
            "add balancer instance",
            "upgrade balancer instance 0 (drain 5s)",
            "restart balancer instance 0"
        ]
    );
    assert_eq!(r.events[2].at_seconds, 65.0);
    let inst = &r.instances.as_ref().unwrap().per_instance;
    assert!(inst["lb-2"].clients.connections > 0, "{inst:?}");
    let f = &r.fleets["f"];
    // The drained instance had 5 s to finish its connections before the restart.
    assert_eq!(f.client_visible_failures, 0, "{f:?}");
}

#[test]
fn runs_with_instances_replay_byte_for_byte_and_the_shipped_scenario_runs() {
    let s = Scenario::from_toml(include_str!("../scenarios/multi-balancer.toml")).unwrap();
    let mut short = s.clone();
    short.duration = tether_sim::scenario::SimDuration::parse("3m").unwrap();
    short.events.retain(|e| e.at.get().as_secs() < 180);
    let a = tether_sim::run(&short, 1).unwrap().to_json();
    let b = tether_sim::run(&short, 1).unwrap().to_json();
    assert_eq!(a, b);
    assert!(a.contains("\"per_instance\""));
    assert!(s.balancer.instances > 1);
}

#[test]
fn bad_instance_counts_and_events_are_refused() {
    for (text, why) in [
        ("instances = 0", "between 1 and"),
        ("instances = 99", "between 1 and"),
    ] {
        let mut s = scenario(1, "sticky", "");
        s.balancer.instances = text.rsplit(' ').next().unwrap().parse().unwrap();
        let e = tether_sim::run(&s, 1).expect_err(text).to_string();
        assert!(e.contains(why), "{text}: {e}");
    }
    let s = scenario(
        2,
        "sticky",
        "[[events]]\nat = \"1s\"\naction = \"crash-instance\"\ninstance = 5",
    );
    let e = tether_sim::run(&s, 1)
        .expect_err("bad instance")
        .to_string();
    assert!(e.contains("instance 5"), "{e}");
}

#[test]
fn with_replication_per_connection_spread_comes_within_a_few_points_of_one_balancer() {
    let single = affinity(&tether_sim::run(&scenario(1, "per-connection", ""), 8).unwrap());
    let apart = affinity(&tether_sim::run(&scenario(3, "per-connection", ""), 8).unwrap());
    let r = tether_sim::run(&replicated(3, "per-connection", ""), 8).unwrap();
    let shared = affinity(&r);
    println!("one {single}, three apart {apart}, three replicating {shared}");
    assert!(shared > single - 0.05, "one {single}, replicating {shared}");
    assert!(apart < single * 0.5, "apart {apart}");
    let inst = r.instances.as_ref().unwrap();
    assert!(inst.replication);
    // Every instance holds every key: the tables agree after the first seconds.
    assert!(
        inst.table_agreement_per_minute
            .iter()
            .skip(1)
            .all(|&a| a > 0.97),
        "{:?}",
        inst.table_agreement_per_minute
    );
    let lag = inst.replication_lag.as_ref().expect("lag measured");
    assert!(lag.samples > 100, "{lag:?}");
    // 2 ms links, seen through 10 ms steps.
    assert!(lag.p50_ms <= 30, "{lag:?}");
}

#[test]
fn after_a_peer_partition_heals_the_tables_converge() {
    let events = r#"
        [[events]]
        at = "30s"
        action = "partition-peers"
        instance = 1
        [[events]]
        at = "100s"
        action = "heal-peers"
        instance = 1
        "#;
    let r = tether_sim::run(&replicated(3, "sticky", events), 9).unwrap();
    let inst = r.instances.as_ref().unwrap();
    // Minute 1 (60 s) is inside the partition: instance 1 has learned keys the others lack.
    let during = inst.table_agreement_per_minute[1];
    assert!(during < 0.95, "{:?}", inst.table_agreement_per_minute);
    let c = &inst.convergence;
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].agreement_at_event < 0.95, "{c:?}");
    let after = c[0]
        .converged_after_seconds
        .expect("tables converge after the heal");
    assert!(after <= 10.0, "{c:?}");
    // Without replication nothing converges.
    let apart = tether_sim::run(&scenario(3, "sticky", events), 9).unwrap();
    let c = &apart.instances.as_ref().unwrap().convergence;
    assert_eq!(c[0].converged_after_seconds, None, "{c:?}");
}

#[test]
fn a_restarted_instance_gets_the_table_back_from_its_peers() {
    let events = r#"
        [[events]]
        at = "40s"
        action = "crash-instance"
        instance = 2
        [[events]]
        at = "60s"
        action = "restart-instance"
        instance = 2
        "#;
    let r = tether_sim::run(&replicated(3, "per-connection", events), 10).unwrap();
    let inst = r.instances.as_ref().unwrap();
    let c = &inst.convergence;
    let after = c[0].converged_after_seconds.expect("resync after restart");
    assert!(after <= 5.0, "{c:?}");
    // Its affinity after the restart is as good as the others': it knew every key at once.
    let lb2 = inst.per_instance["lb-2"]
        .affinity
        .as_ref()
        .unwrap()
        .affinity_rate;
    assert!(lb2 > 0.9, "{lb2}");
}
