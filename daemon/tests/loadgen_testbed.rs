//! `tether loadgen --testbed` performs the scenario's admin events on the real daemon:
//! maintenance and ready through its runtime API, a server added and one removed by reload, a
//! balancer restart; the stick table is read through `show table`. And a `latency` event slows
//! the clients' link from then on.
//! Needs `openssl` (certificates): apt-get install openssl.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn loadgen(scenario: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("loadgen")
        .arg(scenario)
        .args(["--testbed", "--time-scale", "5", "--out"])
        .arg(out)
        .env("TETHER_LOG", "error")
        .output()
        .expect("running tether")
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/loadgen-ops.toml")
}

fn scratch(label: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tether-loadgen-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn admin_events_reach_the_real_daemon() {
    let dir = scratch("ops");
    let out = loadgen(&fixture(), &dir);
    assert!(out.status.success(), "{out:?}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let events: Vec<&str> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["what"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "maint server 0",
            "ready server 0",
            "add server",
            "remove server 1",
            "restart balancer"
        ]
    );
    // The added server (by its certificate) took clients; server 0, in maintenance for a
    // sixth of the run and then only balanced, took fewer than the servers that kept theirs.
    let share = |s: &str| r["servers"][s]["share"].as_f64().unwrap_or(0.0);
    assert!(share("server-03") > 0.03, "{}", r["servers"]);
    assert!(share("server-00") < share("server-02"), "{}", r["servers"]);
    // The daemon's tables, read through the runtime API: one entry per client.
    assert_eq!(r["table"]["peak_entries"], 60, "{}", r["table"]);
    let log = std::fs::read_to_string(dir.join("testbed/balancer.log")).unwrap();
    assert!(
        log.contains("miss-server-unusable"),
        "maint re-pointed sticky clients"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The clients' link slows from 20 ms to 300 ms one way at 45 s: every connection opened
/// after it waits the new round trip to connect and again for each round trip of its handshake, and
/// those before it do not (the clients' relays take each chunk's latency when it is sent).
#[test]
fn a_slow_client_link_slows_what_is_sent_after_it() {
    let dir = scratch("latency");
    let text = std::fs::read_to_string(fixture()).unwrap();
    let cut = text.find("[[events]]").unwrap();
    let text = format!(
        "{}[[events]]\nat = \"45s\"\naction = \"latency\"\nlatency = \"300ms\"\n",
        &text[..cut]
    );
    let scenario = dir.join("s.toml");
    std::fs::write(&scenario, text).unwrap();
    let out = loadgen(&scenario, &dir.join("out"));
    assert!(out.status.success(), "{out:?}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/report.json")).unwrap())
            .unwrap();
    assert_eq!(r["events"][0]["what"], "latency 300ms to clients");
    let fleet = &r["fleets"]["ids"];
    let (p50, p99) = (
        fleet["connect_latency_p50_ms"].as_u64().unwrap(),
        fleet["connect_latency_p99_ms"].as_u64().unwrap(),
    );
    // Before: a connect and one or two handshake round trips over 20 ms links.
    assert!((60..300).contains(&p50), "p50 {p50} ms");
    // After: a connect and at least one handshake round trip over 300 ms links.
    assert!(p99 >= 2 * 600, "p99 {p99} ms");
    let _ = std::fs::remove_dir_all(&dir);
}
