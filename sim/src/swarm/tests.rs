use std::net::SocketAddr;

use tether_core::engine::Termination;

use super::invariants;
use super::*;
use crate::driver::{ClientTrace, HealthChange};
use crate::engine_host::{EngineEnd, RouteTrace, ServerEnd};
use crate::metrics::ConnectionRecord;

#[test]
fn a_seed_always_generates_the_same_parseable_case_and_seeds_differ() {
    for seed in 0..50 {
        let a = case(seed);
        assert_eq!(a.scenario_toml, case(seed).scenario_toml);
        Scenario::from_toml(&a.scenario_toml)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{}", a.scenario_toml));
    }
    let distinct: std::collections::BTreeSet<String> =
        (0..50).map(|s| case(s).scenario_toml).collect();
    assert!(
        distinct.len() > 45,
        "only {} distinct cases",
        distinct.len()
    );
    // Swarm testing: over 50 seeds every fault kind is on somewhere and off somewhere.
    let mixes: Vec<FaultMix> = (0..50).map(|s| case(s).mix).collect();
    assert!(mixes.iter().any(|m| m.crashes) && mixes.iter().any(|m| !m.crashes));
    assert!(mixes.iter().any(|m| m.tight_maxconn) && mixes.iter().any(|m| !m.tight_maxconn));
}

#[test]
fn server_zero_is_never_faulted() {
    for seed in 0..200 {
        let s = Scenario::from_toml(&case(seed).scenario_toml).expect("case");
        for e in &s.events {
            let hurt = match e.action {
                Action::Crash { server }
                | Action::Partition { server }
                | Action::Maint { server }
                | Action::Drain { server }
                | Action::RemoveServer { server } => Some(server),
                _ => None,
            };
            assert_ne!(hurt, Some(0), "seed {seed}: {:?}", e.action);
        }
    }
}

fn check_trace(c: &Case, t: &Trace) -> Vec<Violation> {
    invariants::check(c, t, &std::collections::BTreeMap::new())
}

fn route(server: &str, accepted_ms: u64) -> RouteTrace {
    RouteTrace {
        accepted_ms,
        chosen_ms: accepted_ms,
        ended_ms: accepted_ms + 100,
        server: Some(server.into()),
        retries: 0,
        client: SocketAddr::from(([100, 0, 0, 1], 1000)),
        termination: Termination::NORMAL,
    }
}

/// A clean trace: two servers, four connections logged, nothing open at the end.
fn clean() -> (Case, Trace) {
    let mut c = case(1);
    c.mix = FaultMix::default();
    let trace = Trace {
        routes: vec![
            route("server-00", 1000),
            route("server-01", 2000),
            route("server-00", 3000),
            route("server-01", 4000),
        ],
        engine_end: Some(EngineEnd {
            servers: ["server-00", "server-01"]
                .map(|n| ServerEnd {
                    name: n.into(),
                    max: 1,
                    maxconn: Some(2),
                    ..ServerEnd::default()
                })
                .to_vec(),
            accepted: 4,
            dangling_entries: 0,
        }),
        table_capacity: Some(10),
        peak_table_entries: 4,
        tick_ms: 5,
        ..Trace::default()
    };
    (c, trace)
}

#[test]
fn a_clean_trace_passes() {
    let (c, t) = clean();
    assert_eq!(check_trace(&c, &t), vec![]);
}

#[test]
fn a_connection_to_a_server_in_maintenance_is_caught() {
    let (c, mut t) = clean();
    t.events = vec![
        (2500, Action::Maint { server: 0 }),
        (3500, Action::Ready { server: 0 }),
    ];
    assert!(matches!(
        check_trace(&c, &t).as_slice(),
        [Violation::RoutedToUnusable {
            accepted_ms: 3000,
            ..
        }]
    ));
    // Once ready again, it may take connections.
    t.events[1].0 = 2900;
    assert_eq!(check_trace(&c, &t), vec![]);
}

#[test]
fn a_connection_to_a_down_server_is_caught() {
    let (c, mut t) = clean();
    t.health = vec![HealthChange {
        at_ms: 2500,
        server: "server-01".into(),
        down: true,
    }];
    assert!(matches!(
        check_trace(&c, &t).as_slice(),
        [Violation::RoutedToUnusable {
            accepted_ms: 4000,
            ..
        }]
    ));
}

#[test]
fn counts_logging_and_tables_are_checked() {
    let (c, mut t) = clean();
    t.peak_table_entries = 11;
    let end = t.engine_end.as_mut().expect("end");
    end.servers[0].current = 1;
    end.accepted = 5;
    end.dangling_entries = 2;
    let mut seen = std::collections::BTreeMap::new();
    seen.insert(
        "server-01".to_string(),
        crate::metrics::ServerStats {
            peak_concurrency: 4,
            ..Default::default()
        },
    );
    let v = invariants::check(&c, &t, &seen);
    assert_eq!(v.len(), 5, "{v:?}");
    assert!(v.contains(&Violation::DanglingEntries(2)));
    assert!(v.contains(&Violation::TableOverflow {
        peak: 11,
        capacity: 10
    }));
}

#[test]
fn a_failure_far_from_any_fault_is_caught_and_one_near_a_crash_is_not() {
    let (c, mut t) = clean();
    let failed = |start_ms| ClientTrace {
        fleet: "f0".into(),
        record: ConnectionRecord {
            instance: 0,
            start_ms,
            failure: Some(crate::client::Failure::Handshake),
            ..ConnectionRecord::default()
        },
        end_ms: start_ms + 50,
    };
    t.connections = vec![failed(20_000)];
    assert!(matches!(
        check_trace(&c, &t).as_slice(),
        [Violation::FailureAwayFromFaults { .. }]
    ));
    t.events = vec![(19_990, Action::Crash { server: 1 })];
    assert_eq!(check_trace(&c, &t), vec![]);
}

#[test]
fn connects_abandoned_in_flight_are_allowed_for_and_no_more() {
    let (c, mut t) = clean();
    let maxconn = t.engine_end.as_ref().expect("end").servers[1]
        .maxconn
        .expect("server-01 has maxconn");
    let mut seen = std::collections::BTreeMap::new();
    seen.insert(
        "server-01".to_string(),
        crate::metrics::ServerStats {
            peak_concurrency: maxconn + 2,
            ..Default::default()
        },
    );
    let over = |t: &Trace| {
        invariants::check(&c, t, &seen)
            .iter()
            .filter(|v| matches!(v, Violation::ServerCount { .. }))
            .count()
    };
    assert_eq!(over(&t), 1, "one over maxconn + the check");
    t.abandoned_connects.insert("server-01".into(), 1);
    assert_eq!(over(&t), 0, "the abandoned connect explains it");
    t.abandoned_connects.insert("server-02".into(), 5);
    t.abandoned_connects.insert("server-01".into(), 0);
    assert_eq!(over(&t), 1, "another server's abandoned connects do not");
}
