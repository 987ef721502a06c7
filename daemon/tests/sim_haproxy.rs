//! The simulator running tether's engine on the user's haproxy.cfg, imported with HAProxy's
//! behaviour: session IDs learned only from the request never give new sessions affinity; adding
//! `tcp-response inspect-delay` makes the same rules sticky. Also `tether sim` end to end:
//! same seed, same report.json bytes; another seed, another report.

use std::path::{Path, PathBuf};
use std::process::Command;

use tether_sim::scenario::Scenario;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/sim-seed-haproxy.cfg"
);

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tether-sim-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A scenario file naming `cfg`, one fleet of `kind`, four servers.
fn scenario_file(dir: &Path, cfg: &Path, kind: &str) -> PathBuf {
    let text = format!(
        r#"
        name = "seed-import"
        duration = "120s"
        [servers]
        count = 4
        ticket_keys = "per-server"
        [balancer]
        kind = "engine"
        haproxy = "{}"
        [network]
        tick = "5ms"
        [[fleets]]
        name = "f"
        kind = "{kind}"
        clients = 60
        first_visit = {{ dist = "uniform", min = "0s", max = "10s" }}
        revisit_gap = {{ dist = "exponential", mean = "15s" }}
        connections_per_visit = 2
        "#,
        cfg.display()
    );
    let path = dir.join(format!("{kind}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn run_imported(cfg: &Path, kind: &str, tag: &str) -> tether_sim::Report {
    let dir = temp_dir(tag);
    let (scenario, config): (Scenario, _) =
        tether::sim_cli::load(Some(&scenario_file(&dir, cfg, kind))).unwrap();
    let config = config.expect("imported config");
    assert!(config.backends[0].haproxy.is_some(), "HAProxy rules kept");
    let r = tether_sim::run_with_config(&scenario, 5, config).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// The seed config with `tcp-response inspect-delay 5s` added to the backend.
fn with_response_inspection(tag: &str) -> PathBuf {
    let text = std::fs::read_to_string(FIXTURE).unwrap();
    let fixed = text.replace(
        "    tcp-request inspect-delay 5s\n",
        "    tcp-request inspect-delay 5s\n    tcp-response inspect-delay 5s\n",
    );
    assert_ne!(text, fixed);
    let path = temp_dir(tag).join("haproxy.cfg");
    std::fs::write(&path, fixed).unwrap();
    path
}

#[test]
fn seed_config_never_gives_new_sessions_affinity_response_inspection_does() {
    let seed = run_imported(Path::new(FIXTURE), "tls12-session-id", "seed");
    let f = &seed.fleets["f"];
    let a = &seed.affinity.as_ref().unwrap().overall;
    assert!(f.resumption_attempts > 200, "{f:?}");
    // Every new session's first reuse is unknown to the table (nothing is learned from the
    // ServerHello), so at least one keyed miss per client, and resumption suffers.
    let misses = a.keyed_lookups - a.hits;
    assert!(misses >= 60, "{a:?}");
    assert!(f.resumption_success < 0.9, "{f:?}");

    let cfg = with_response_inspection("inspect");
    let sticky = run_imported(&cfg, "tls12-session-id", "sticky");
    let _ = std::fs::remove_dir_all(cfg.parent().unwrap());
    let f = &sticky.fleets["f"];
    let a = &sticky.affinity.as_ref().unwrap().overall;
    assert!(f.resumption_attempts > 200, "{f:?}");
    assert_eq!(f.resumptions, f.resumption_attempts, "{f:?}");
    assert_eq!(a.keyed_lookups, a.hits, "{a:?}");
}

#[test]
fn tls13_under_the_seed_config_stores_one_entry_per_connection() {
    let r = run_imported(Path::new(FIXTURE), "tls13-single-use", "tls13");
    let f = &r.fleets["f"];
    assert!(
        (0.15..0.35).contains(&f.resumption_success),
        "expected ~1/4, got {f:?}"
    );
    let t = r.table.as_ref().unwrap();
    // Each TLS 1.3 ClientHello carries a fresh random legacy_session_id, which `stick on`
    // stores: the table fills with one useless entry per connection.
    assert_eq!(t.totals.inserted, f.connections, "{t:?}");
    assert_eq!(t.peak_entries, f.connections, "{t:?}");
}

#[test]
fn cli_reports_are_byte_identical_per_seed() {
    let dir = temp_dir("cli");
    let scenario = scenario_file(&dir, Path::new(FIXTURE), "tls12-session-id");
    let run = |seed: &str, out: &str| -> Vec<u8> {
        let o = dir.join(out);
        let status = Command::new(env!("CARGO_BIN_EXE_tether"))
            .arg("sim")
            .arg(&scenario)
            .args(["--seed", seed, "--quiet", "--out"])
            .arg(&o)
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
        let stdout = String::from_utf8_lossy(&status.stdout);
        assert!(
            stdout.contains("affinity") && stdout.contains("stick table"),
            "{stdout}"
        );
        for plot in ["load", "resumption", "table"] {
            for ext in ["png", "svg"] {
                let p = o.join(format!("{plot}.{ext}"));
                assert!(std::fs::metadata(&p).unwrap().len() > 1000, "{p:?}");
            }
        }
        std::fs::read(o.join("report.json")).unwrap()
    };
    let a = run("3", "a");
    assert_eq!(a, run("3", "b"));
    assert_ne!(a, run("4", "c"));
    let _ = std::fs::remove_dir_all(&dir);
}
