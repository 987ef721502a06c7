//! Day-long planning: activity curves shape when fleets visit, stick-table entries leave as
//! they expire (the engine's expiry task, as in the daemon), and the shipped day scenario loads.

use tether_sim::{run, Scenario};

/// 400 session-ID clients for an hour behind session-ID affinity (entries kept `expire`);
/// `extra` adds fleet keys.
fn scenario(extra: &str, expire: &str, until: &str) -> Scenario {
    let text = format!(
        r#"
        name = "diurnal"
        duration = "60m"
        [servers]
        count = 2
        [balancer]
        kind = "engine"
        [balancer.config.backend]
        balance = "roundrobin"
        affinity = ["session-id"]
        [balancer.config.backend.stick-table]
        size = "10k"
        expire = "{expire}"
        [network]
        tick = "20ms"
        [[fleets]]
        name = "ids"
        kind = "tls12-session-id"
        clients = 400
        first_visit = {{ dist = "exponential", mean = "2m" }}
        revisit_gap = {{ dist = "exponential", mean = "2m" }}
        until = "{until}"
        {extra}
        "#
    );
    Scenario::from_toml(&text).expect("test scenario")
}

fn sum(v: &[u64], from: usize, to: usize) -> u64 {
    v[from..to].iter().sum()
}

#[test]
fn an_activity_curve_thins_visits_where_it_is_low_and_not_where_it_is_high() {
    // Full at the hour's start and end, nothing at half past (straight lines between).
    let curved = scenario(
        r#"activity = { period = "60m", weights = [1.0, 0.0] }"#,
        "60m",
        "60m",
    );
    let flat = scenario("", "60m", "60m");
    let c = run(&curved, 3).expect("run").series.connections;
    let f = run(&flat, 3).expect("run").series.connections;
    let (c_mid, c_edges) = (sum(&c, 27, 33), sum(&c, 2, 8));
    let (f_mid, f_edges) = (sum(&f, 27, 33), sum(&f, 2, 8));
    assert!(f_mid * 10 > f_edges * 7, "flat: {f_mid} vs {f_edges}");
    // Around half past the curve is under 0.1: a tenth of the arrivals at most.
    assert!(
        c_mid * 10 < c_edges,
        "curved: mid {c_mid} vs edges {c_edges}"
    );
    // At its peak the curve passes visits through at the gap's rate (the edges' level is
    // 0.8-0.97), so the peak minutes stay near the flat fleet's.
    assert!(
        c_edges * 10 > f_edges * 7,
        "curved {c_edges} vs flat {f_edges}"
    );
}

#[test]
fn a_bad_activity_curve_is_a_scenario_error_naming_the_fleet() {
    let s = scenario(r#"activity = { weights = [0.0, 0.0] }"#, "60m", "60m");
    let err = run(&s, 1).expect_err("all-zero curve refused").to_string();
    assert!(err.contains("fleet ids") && err.contains("all 0"), "{err}");
}

#[test]
fn table_entries_leave_when_they_expire_even_when_nobody_comes_back() {
    // The fleet's visits stop at 20 min; entries live 10 min from their last use. One poller
    // keeps the run going to the hour (its own entries, one a minute, stay at most 10).
    let poller = r#"
        [[fleets]]
        name = "poller"
        kind = "no-resumption"
        clients = 1
        first_visit = { dist = "fixed", value = "1s" }
        revisit_gap = { dist = "fixed", value = "60s" }
    "#;
    let s = scenario(poller, "10m", "20m");
    let r = run(&s, 5).expect("run");
    assert!(r.simulated_seconds > 3_500.0, "{}", r.simulated_seconds);
    let table = r.table.expect("an engine balancer reports its table");
    assert!(table.peak_entries > 300, "{table:?}");
    assert!(table.totals.entries <= 11, "expired ones left: {table:?}");
    assert!(
        table.totals.expired + 11 >= table.totals.inserted,
        "{table:?}"
    );
    let occupancy = &r.series.table_occupancy;
    assert!(occupancy[15] > 300 && occupancy[45] <= 11, "{occupancy:?}");
}

#[test]
fn the_day_scenario_loads_and_every_fleet_follows_a_valid_curve_or_none() {
    let s = Scenario::from_toml(include_str!("../scenarios/day.toml")).expect("day.toml loads");
    let clients: usize = s.fleets.iter().map(|f| f.clients).sum();
    assert!(clients >= 100_000, "{clients}");
    assert_eq!(s.duration.get().as_secs(), 86_400);
    for f in &s.fleets {
        f.validate().unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(s.fleets.iter().filter(|f| f.activity.is_some()).count() >= 4);
}
