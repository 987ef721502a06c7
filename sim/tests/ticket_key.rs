//! The shipped `tls13-nat` scenario run with `session-id`, `source` and `ticket-key` affinity:
//! what the new key buys on a TLS 1.3 fleet behind NAT.

use tether_sim::report::Report;
use tether_sim::scenario::Scenario;

const SCENARIO: &str = include_str!("../scenarios/tls13-nat.toml");

fn run_with(chain: &str) -> Report {
    let mut s = Scenario::from_toml(SCENARIO).expect("tls13-nat.toml parses");
    let backend = s
        .balancer
        .config
        .as_mut()
        .and_then(|c| c.get_mut("backend"))
        .and_then(|b| b.as_table_mut())
        .expect("[balancer.config.backend]");
    backend.insert(
        "affinity".into(),
        toml::Value::Array(vec![toml::Value::String(chain.into())]),
    );
    tether_sim::run(&s, 1).expect("scenario runs")
}

#[test]
fn ticket_key_resumes_like_source_and_spreads_like_roundrobin() {
    let [sid, source, tk] = ["session-id", "source", "ticket-key"].map(run_with);
    let row = |name: &str, r: &Report| {
        format!(
            "{name:<11} resumption {:.3}  max/mean load {:.2}",
            r.overall.resumption_success, r.imbalance.max_over_mean
        )
    };
    let table = [
        row("session-id", &sid),
        row("source", &source),
        row("ticket-key", &tk),
    ]
    .join("\n");
    eprintln!("{table}");
    assert!(sid.overall.resumption_success < 0.4, "{table}");
    assert!(source.overall.resumption_success > 0.9, "{table}");
    assert!(tk.overall.resumption_success > 0.9, "{table}");
    assert!(source.imbalance.max_over_mean > 1.3, "{table}");
    assert!(tk.imbalance.max_over_mean < 1.15, "{table}");
}

/// 16 servers whose keys rotate every minute: many names to learn, so the bootstrap for an
/// unknown name decides how many first uses of a ticket resume (README, "Which bootstrap").
fn run_rotating(bootstrap: &str) -> Report {
    let text = SCENARIO.replace("count = 4", "count = 16").replace(
        "ticket_key_rotation = \"2m\"",
        "ticket_key_rotation = \"1m\"",
    );
    let mut s = Scenario::from_toml(&text).expect("variant parses");
    let backend = s
        .balancer
        .config
        .as_mut()
        .and_then(|c| c.get_mut("backend"))
        .and_then(|b| b.as_table_mut())
        .expect("[balancer.config.backend]");
    backend.insert(
        "ticket-key-bootstrap".into(),
        toml::Value::String(bootstrap.into()),
    );
    tether_sim::run(&s, 1).expect("scenario runs")
}

#[test]
fn guessing_the_clients_last_server_first_learns_rotated_keys_fastest() {
    let [default, nameless, none] = ["client-then-nameless", "nameless", "none"].map(run_rotating);
    let table = format!(
        "client-then-nameless {:.3}  nameless {:.3}  none {:.3}",
        default.overall.resumption_rate,
        nameless.overall.resumption_rate,
        none.overall.resumption_rate
    );
    eprintln!("{table}");
    assert!(
        default.overall.resumption_rate > nameless.overall.resumption_rate + 0.02,
        "{table}"
    );
    assert!(
        default.overall.resumption_rate > none.overall.resumption_rate + 0.1,
        "{table}"
    );
}
