//! `tether sim` end to end on a small scenario: the summary and report on stdout and disk, and
//! the rate the simulator ran at on stderr, counting the same connections as the report.

use std::process::Command;

const SCENARIO: &str = r#"
name = "rate-line"
duration = "30s"

[servers]
count = 2

[balancer]
kind = "engine"

[[fleets]]
name = "ids"
kind = "tls12-session-id"
clients = 20
first_visit = { dist = "uniform", min = "0s", max = "10s" }
revisit_gap = { dist = "fixed", value = "5s" }
"#;

fn run(dir: &std::path::Path, quiet: bool) -> (String, serde_json::Value) {
    let scenario = dir.join("scenario.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tether"));
    cmd.arg("sim").arg(&scenario).args(["--seed", "3", "--out"]);
    cmd.arg(dir.join("out"));
    if quiet {
        cmd.arg("--quiet");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let report = std::fs::read_to_string(dir.join("out/report.json")).unwrap();
    (
        String::from_utf8(out.stderr).unwrap(),
        serde_json::from_str(&report).unwrap(),
    )
}

#[test]
fn sim_prints_its_rate_on_stderr_unless_quiet() {
    let dir = std::env::temp_dir().join(format!("tether-sim-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (stderr, report) = run(&dir, false);
    let connections = report["overall"]["connections"].as_u64().unwrap();
    assert!(connections > 20, "{report}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("simulated "))
        .unwrap_or_else(|| panic!("no rate line in {stderr:?}"));
    assert!(
        line.starts_with(&format!("simulated {connections} connections (")),
        "{line}"
    );
    let rate: f64 = line
        .split(": ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {line}"));
    assert!(rate > 0.0, "{line}");

    let (quiet_stderr, quiet_report) = run(&dir, true);
    assert!(
        !quiet_stderr.contains("connections per wall second"),
        "{quiet_stderr}"
    );
    // The rate goes to stderr only: the report is the same either way.
    assert_eq!(quiet_report, report);
    let _ = std::fs::remove_dir_all(&dir);
}
