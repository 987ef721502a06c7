//! The shipped `sni-routing` scenario: the engine's own route rules send each fleet, by its
//! server name and source network, to its backend (or refuse it), and the report breaks load,
//! resumption and affinity down per backend.

use tether_sim::report::Report;
use tether_sim::scenario::Scenario;

const SCENARIO: &str = include_str!("../scenarios/sni-routing.toml");

fn scenario() -> Scenario {
    Scenario::from_toml(SCENARIO).expect("sni-routing.toml parses")
}

fn run(s: &Scenario) -> Report {
    tether_sim::run(s, 1).expect("scenario runs")
}

#[test]
fn each_fleet_lands_on_its_backend_and_the_blocked_network_nowhere() {
    let r = run(&scenario());
    let routing = r.routing.as_ref().expect("a routing section");
    let (api, web) = (&routing.backends["api"], &routing.backends["web"]);
    let (api_fleet, browsers, blocked) = (
        &r.fleets["api-clients"],
        &r.fleets["browsers"],
        &r.fleets["blocked"],
    );
    let table = r.summary_table();
    assert_eq!(api.servers, ["server-00", "server-01"], "{table}");
    assert_eq!(
        web.servers,
        ["server-02", "server-03", "server-04"],
        "{table}"
    );
    // Every handshake an api server did was an api client's, and every api client's connection
    // was one of them: routed by name, nothing leaked to the default backend.
    assert!(api_fleet.handshakes > 1000, "{table}");
    assert_eq!(
        api.full_handshakes + api.resumed_handshakes,
        api_fleet.handshakes,
        "{table}"
    );
    assert_eq!(
        web.full_handshakes + web.resumed_handshakes,
        browsers.handshakes,
        "{table}"
    );
    // The refused network never reached a server; the balancer counted each refusal.
    assert!(blocked.connections > 100, "{table}");
    assert_eq!(blocked.handshakes, 0, "{table}");
    assert_eq!(blocked.failed_handshake, blocked.connections, "{table}");
    assert_eq!(routing.refused, blocked.connections, "{table}");
    // Routing shares: server connections split as the fleets' traffic (health checks aside).
    let want = api_fleet.handshakes as f64 / (api_fleet.handshakes + browsers.handshakes) as f64;
    assert!(
        (api.share - want).abs() < 0.05,
        "api share {} vs {want}\n{table}",
        api.share
    );
    assert!((api.share + web.share - 1.0).abs() < 1e-3, "{table}");
}

#[test]
fn each_backend_keeps_its_own_affinity_and_resumes() {
    let r = run(&scenario());
    let routing = r.routing.as_ref().expect("a routing section");
    let table = r.summary_table();
    for (name, b) in &routing.backends {
        let a = b.affinity.as_ref().expect("engine affinity per backend");
        assert!(a.affinity_rate > 0.95, "{name}\n{table}");
        assert!(b.resumption_rate > 0.85, "{name}\n{table}");
        assert!(b.imbalance.max_over_mean < 1.2, "{name}\n{table}");
    }
    // api keys sessions (one per client), web learns one ticket key name per server.
    let api = routing.backends["api"].affinity.as_ref().unwrap();
    let web = routing.backends["web"].affinity.as_ref().unwrap();
    assert_eq!(api.keys_learned, 120, "{table}");
    assert!(web.keys_learned >= 3 && web.keys_learned < 10, "{table}");
}

#[test]
fn the_route_rules_decide_not_the_fleet_names() {
    // The same fleets with the name rule pointing elsewhere: api gets nothing, web everything.
    let text = SCENARIO.replace(
        "server-name = [\"api.example.com\", \"*.api.example.com\"]",
        "server-name = [\"other.example.com\"]",
    );
    assert_ne!(text, SCENARIO);
    let r = run(&Scenario::from_toml(&text).unwrap());
    let routing = r.routing.as_ref().unwrap();
    let api = &routing.backends["api"];
    assert_eq!(api.full_handshakes + api.resumed_handshakes, 0);
    let web = &routing.backends["web"];
    let clients = r.fleets["api-clients"].handshakes + r.fleets["browsers"].handshakes;
    assert_eq!(web.full_handshakes + web.resumed_handshakes, clients);
}

#[test]
fn shares_that_do_not_add_up_and_bad_networks_are_scenario_errors() {
    let text = SCENARIO.replace("servers = 3", "servers = 4");
    let err = tether_sim::run(&Scenario::from_toml(&text).unwrap(), 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("add up to 6") && err.contains("count = 5"),
        "{err}"
    );
    let text = SCENARIO.replace("\"192.0.2.0/24\"", "\"192.0.2.0/33\"");
    let err = tether_sim::run(&Scenario::from_toml(&text).unwrap(), 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("api-clients") && err.contains("network"),
        "{err}"
    );
}

#[test]
fn an_unknown_backend_in_a_route_is_the_config_loaders_error() {
    let text = SCENARIO.replace("use-backend = \"api\"", "use-backend = \"apj\"");
    let err = tether_sim::run(&Scenario::from_toml(&text).unwrap(), 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown backend \"apj\""), "{err}");
}
