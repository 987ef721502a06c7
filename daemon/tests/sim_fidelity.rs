//! Does the simulator predict what really happens? `sim/scenarios/fidelity.toml` (4 servers,
//! TLS 1.2 session IDs and tickets, TLS 1.3, server 2's process crashing at 60 s and
//! restarting at 120 s) runs in `tether sim` and in `tether loadgen --testbed` (real rustls
//! servers, the real daemon as a child process, real clients on loopback, 10× time scale: 18 s).
//! Affinity and resumption rates and per-server shares must agree within 3 points overall
//! (`tether sim compare`), and the per-minute curves must have the same shape around the events.
//! Needs `openssl` (certificates): apt-get install openssl.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tether(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .env("TETHER_LOG", "error")
        .output()
        .expect("running tether")
}

fn scenario() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sim/scenarios/fidelity.toml")
}

fn scratch(label: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tether-fidelity-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn server_minute(r: &serde_json::Value, server: &str, minute: usize) -> u64 {
    r["series"]["connections_per_server"][server][minute]
        .as_u64()
        .unwrap_or(0)
}

/// Runs `scenario` in the simulator and on the testbed (10x) under `dir`, and asserts that
/// `tether sim compare` finds them within 3 points. Returns the two output directories.
fn run_both_and_compare(scenario: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let openssl = Command::new("openssl").arg("version").output();
    assert!(
        openssl.is_ok_and(|o| o.status.success()),
        "openssl is needed for the testbed's certificates: apt-get install openssl"
    );
    let (sim, real) = (dir.join("sim"), dir.join("real"));
    let s = scenario.to_str().unwrap();
    let out = tether(&["sim", s, "--quiet", "--out", sim.to_str().unwrap()]);
    assert!(out.status.success(), "sim: {out:?}");
    let out = tether(&[
        "loadgen",
        s,
        "--testbed",
        "--time-scale",
        "10",
        "--out",
        real.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "loadgen: {out:?}");
    let compare = tether(&[
        "sim",
        "compare",
        sim.join("report.json").to_str().unwrap(),
        real.join("report.json").to_str().unwrap(),
        "--tolerance",
        "3",
    ]);
    let table = String::from_utf8_lossy(&compare.stdout);
    assert!(
        compare.status.success(),
        "{}: beyond 3 points:\n{table}",
        scenario.display()
    );
    (sim, real)
}

#[test]
fn simulator_and_real_sockets_agree_within_three_points() {
    let dir = scratch("run");
    let (sim, real) = run_both_and_compare(&scenario(), &dir);
    let (a, b) = (report(&sim), report(&real));
    let real_log = std::fs::read_to_string(real.join("testbed/balancer.log")).unwrap();
    assert!(
        real_log.contains("\"affinity\""),
        "the daemon logged JSON lines"
    );

    // Real clients told the servers apart by certificate, and all four took connections.
    for r in [&a, &b] {
        let servers = r["servers"].as_object().unwrap();
        assert_eq!(servers.len(), 4, "{servers:?}");
        assert!(r["overall"]["connections"].as_u64().unwrap() > 1_000);
        // A crashed process refuses at once: the balancer redispatches, no client fails to
        // connect. Only what the crash cut mid-handshake or mid-transfer fails (the links'
        // latencies keep a few handshakes in flight at any moment: 0 or 1 seen per run).
        let o = &r["overall"];
        assert_eq!(o["failed_connect"], 0, "{o}");
        assert!(o["client_visible_failures"].as_u64().unwrap() <= 3, "{o}");
        // Same shape around the events: server 2 takes nothing while crashed (minute 1),
        // and takes connections again after its restart (minute 2).
        let before = server_minute(r, "server-02", 0);
        assert!(before > 100, "server-02 minute 0: {before}");
        assert!(server_minute(r, "server-02", 1) < before / 10);
        assert!(server_minute(r, "server-02", 2) > 0);
    }
    // The stick table's size: the simulated servers behave as the testbed's rustls ones
    // (`tls_stack = "rustls"`: an ID beside each new ticket, a new ticket per resumption), so
    // tether learns the same keys in both (stop 33: 5,173 simulated, 5,242 real; 3,693 with
    // the ID left out, 731 with OpenSSL's servers).
    let peak = |r: &serde_json::Value| r["table"]["peak_entries"].as_f64().unwrap();
    let (sim_peak, real_peak) = (peak(&a), peak(&b));
    assert!(
        (sim_peak - real_peak).abs() <= 0.1 * real_peak,
        "stick-table peak: simulated {sim_peak} against {real_peak} real"
    );
    // Session-ID and ticket clients resume nearly always in both; the affinity came from
    // tether's own logs in the real run.
    assert!(
        b["affinity"]["fleets"]["tls12-session-id"]["affinity_rate"]
            .as_f64()
            .unwrap()
            > 0.9
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compare_fails_beyond_the_tolerance() {
    let dir = scratch("compare");
    let out = tether(&[
        "sim",
        scenario().to_str().unwrap(),
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let mut r = report(&dir);
    let a = dir.join("report.json");
    // The same report compares equal; moved by 5 points it fails at 3 and passes at 6.
    let same = tether(&["sim", "compare", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert!(same.status.success());
    let rate = r["overall"]["resumption_rate"].as_f64().unwrap();
    r["overall"]["resumption_rate"] = serde_json::json!(rate - 0.05);
    let b = dir.join("moved.json");
    std::fs::write(&b, serde_json::to_string(&r).unwrap()).unwrap();
    let args = |t: &str| {
        tether(&[
            "sim",
            "compare",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--tolerance",
            t,
        ])
    };
    let strict = args("3");
    assert_eq!(strict.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&strict.stdout).contains("overall resumption"));
    assert!(args("6").status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `fidelity.toml` with server 2's events at 60 s and 120 s replaced by `down` and `up` (an
/// action and its keys) instead of crashing and restarting.
fn varied_scenario(dir: &Path, label: &str, down: &str, up: &str) -> PathBuf {
    let text = std::fs::read_to_string(scenario()).unwrap();
    assert!(text.contains("action = \"crash\"") && text.contains("action = \"restart\""));
    let text = text
        .replace("action = \"crash\"", down)
        .replace("action = \"restart\"", up);
    let path = dir.join(format!("fidelity-{label}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `fidelity.toml` with server 2 going silent by `down` at 60 s and back by `up` at 120 s.
fn silent_scenario(dir: &Path, down: &str, up: &str) -> PathBuf {
    let action = |a: &str| format!("action = \"{a}\"");
    varied_scenario(dir, down, &action(down), &action(up))
}

/// Runs the silent variant in both, and checks they agree and that it was silence: the
/// connections the balancer sent to server 2 waited for the connect timeout (10 s, 1 s at the
/// 10x scale) before going elsewhere, where a refusing port redispatches at once.
fn silent_event_agrees(down: &str, up: &str) {
    let dir = scratch(down);
    let (sim, real) = run_both_and_compare(&silent_scenario(&dir, down, up), &dir);
    for r in [&report(&sim), &report(&real)] {
        let before = server_minute(r, "server-02", 0);
        assert!(before > 100, "server-02 minute 0: {before}");
        assert!(server_minute(r, "server-02", 1) < before / 10);
        assert!(server_minute(r, "server-02", 2) > 0, "back after {up}");
    }
    let sim_p99 = report(&sim)["fleets"]["tls13"]["connect_latency_p99_ms"]
        .as_u64()
        .unwrap();
    assert!(sim_p99 >= 10_000, "{down}: simulated p99 {sim_p99} ms");
    let log = std::fs::read_to_string(real.join("testbed/balancer.log")).unwrap();
    let waits: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("\"redispatched\":true"))
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l[l.find('{')?..]).ok()?;
            v["tt_ms"].as_u64()
        })
        .collect();
    assert!(
        waits.len() >= 5,
        "{down}: redispatched connections: {waits:?}"
    );
    assert!(
        waits.iter().all(|&t| t >= 1_000),
        "{down}: a refusing port would redispatch at once: {waits:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_lost_host_is_silent_in_both_and_they_agree_within_three_points() {
    silent_event_agrees("host-down", "restart");
}

#[test]
fn a_partition_is_silent_in_both_and_they_agree_within_three_points() {
    silent_event_agrees("partition", "heal");
}

fn latency_ms(r: &serde_json::Value, fleet: &str, which: &str) -> u64 {
    r["fleets"][fleet][format!("connect_latency_{which}_ms")]
        .as_u64()
        .unwrap()
}

/// The link to server 2 slows from 1 ms to 400 ms one way at 60 s and recovers at 120 s: on the
/// testbed its connections pass through a relay holding every byte for the link's latency. Both
/// runs agree within 3 points (latency moves no connection), and in both the slow minute shows
/// in the tail (a connection through the slow link waits at least its round trip, 800 ms) while
/// the median stays near the clients' own 20 ms link (connect and handshake round trips).
#[test]
fn a_slow_server_link_shows_in_both_and_they_agree_within_three_points() {
    let dir = scratch("latency");
    let slow = "action = \"latency\"\nlatency = \"400ms\"";
    let fast = "action = \"latency\"\nlatency = \"1ms\"";
    let scenario = varied_scenario(&dir, "latency", slow, fast);
    let (sim, real) = run_both_and_compare(&scenario, &dir);
    for (run, r) in [("sim", report(&sim)), ("testbed", report(&real))] {
        for fleet in ["tls12-session-id", "tls13"] {
            let (p50, p99) = (latency_ms(&r, fleet, "p50"), latency_ms(&r, fleet, "p99"));
            assert!(
                p99 >= 800,
                "{run} {fleet}: p99 {p99} ms, the slow link unseen"
            );
            assert!(
                (60..400).contains(&p50),
                "{run} {fleet}: p50 {p50} ms: the clients' link is 20 ms one way"
            );
        }
    }
    // The typical connection's latency agrees too: 84 ms simulated (as at `--time-scale 1`);
    // on the testbed at 10x, 95-101 ms with the relays' timer lead, 154-165 ms without it
    // (tokio's timer fires ~1 ms late per hop, 10 ms of scenario time).
    for fleet in ["tls12-session-id", "tls13"] {
        let (s, r) = (
            latency_ms(&report(&sim), fleet, "p50"),
            latency_ms(&report(&real), fleet, "p50"),
        );
        assert!(
            r.abs_diff(s) <= 35,
            "{fleet}: connect+handshake p50 {s} ms simulated, {r} ms on the testbed; {}",
            tether_testbed::machine_load()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
