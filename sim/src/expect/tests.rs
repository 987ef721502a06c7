use super::*;
use crate::run;

/// A small engine scenario: session-ID clients behind session-ID affinity, a crash at 60 s.
fn scenario(expect: &str) -> Scenario {
    let text = format!(
        r#"
        name = "expect"
        duration = "150s"
        [servers]
        count = 3
        [balancer]
        kind = "engine"
        [balancer.config.backend]
        balance = "roundrobin"
        affinity = ["session-id"]
        [network]
        tick = "5ms"
        [[fleets]]
        name = "ids"
        kind = "tls12-session-id"
        clients = 40
        first_visit = {{ dist = "uniform", min = "0s", max = "10s" }}
        revisit_gap = {{ dist = "exponential", mean = "10s" }}
        connections_per_visit = 2
        [[events]]
        at = "60s"
        action = "crash"
        server = 1
        {expect}
        "#
    );
    Scenario::from_toml(&text).expect("test scenario")
}

fn checked(expect: &str) -> Vec<Checked> {
    let s = scenario(expect);
    let report = run(&s, 1).expect("run");
    check(&s, &report)
}

#[test]
fn expectations_hold_or_fail_on_the_measured_value() {
    let c = checked(
        r#"
        [[expect]]
        metric = "affinity"
        fleet = "ids"
        min = 0.9
        [[expect]]
        metric = "resumption"
        max = 0.1
        [[expect]]
        metric = "share"
        server = "server-00"
        min = 0.2
        max = 0.6
        [[expect]]
        metric = "imbalance"
        max = 1.0
        "#,
    );
    let pass: Vec<bool> = c.iter().map(|x| x.pass).collect();
    assert_eq!(pass, [true, false, true, false], "{c:#?}");
    let affinity = *c[0].measured.as_ref().expect("measured");
    assert!(affinity > 0.9 && affinity <= 1.0, "{affinity}");
    assert!(
        c[1].line()
            .starts_with("FAIL resumption <= 0.1: measured 0.9"),
        "{}",
        c[1].line()
    );
}

#[test]
fn a_window_measures_only_its_minutes() {
    let c = checked(
        r#"
        [[expect]]
        metric = "resumption"
        until = "1m"
        min = 0.0
        [[expect]]
        metric = "resumption"
        from = "1m"
        until = "2m"
        min = 0.0
        [[expect]]
        metric = "failures"
        from = "2m"
        max = 0
        "#,
    );
    let first = *c[0].measured.as_ref().expect("minute 0");
    let second = *c[1].measured.as_ref().expect("minute 1");
    // Minute 0 starts cold (every first visit is a full handshake); minute 1 resumes more.
    assert!(second > first, "minute 0 {first}, minute 1 {second}");
    assert!(c[2].pass, "{c:#?}");
}

#[test]
fn bad_expectations_are_refused_before_running_with_the_reason() {
    let cases = [
        ("metric = \"affinity\"", "give min, max or both"),
        (
            "metric = \"affinity\"\nfleet = \"nope\"\nmin = 1",
            "no fleet named \"nope\"",
        ),
        ("metric = \"share\"\nmin = 0.1", "needs server"),
        (
            "metric = \"imbalance\"\nserver = \"server-00\"\nmax = 2",
            "only for metrics \"share\" and \"cpu\"",
        ),
        (
            "metric = \"cpu\"\nmax = 0.8",
            "needs a [servers.cost] block",
        ),
        (
            "metric = \"p99-ms\"\nfrom = \"1m\"\nmax = 50",
            "per-minute latency needs a [servers.cost] block",
        ),
        (
            "metric = \"imbalance\"\nfrom = \"1m\"\nmax = 2",
            "time window",
        ),
    ];
    for (body, why) in cases {
        let s = scenario(&format!("[[expect]]\n{body}\n"));
        let err = run(&s, 1).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("[[expect]] #1") && err.contains(why),
            "{body}: {err}"
        );
    }
    assert!(Scenario::from_toml(
        "name='x'\nduration='1s'\n[servers]\ncount=1\n[balancer]\nkind='direct'\n\
         [[fleets]]\nname='f'\nkind='no-resumption'\nclients=1\n[[expect]]\nmetric='speed'\nmin=1\n"
    )
    .is_err());
}
