//! `tether sim sweep` end to end: a table-size sweep writes the CSV, markdown and plots, and the
//! rows show what the sizes do (a tiny table evicts and loses affinity, a large one does not).

use std::process::Command;

#[test]
fn table_size_sweep_shows_evictions_only_for_the_small_table() {
    let dir = std::env::temp_dir().join(format!("tether-sim-sweep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args([
            "sim",
            "sweep",
            "--param",
            "table-size",
            "--values",
            "10,5000",
            "--duration",
            "60s",
            "--quiet",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let csv = std::fs::read_to_string(dir.join("sweep.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    let (small, large) = (&rows[0], &rows[1]);
    assert_eq!((small[0], small[1], large[1]), ("table-size", "10", "5000"));
    let evicted = |r: &Vec<&str>| r[7].parse::<u64>().unwrap();
    let affinity = |r: &Vec<&str>| r[4].parse::<f64>().unwrap();
    assert!(evicted(small) > 0 && evicted(large) == 0, "{csv}");
    assert!(affinity(small) < affinity(large), "{csv}");
    assert!(std::fs::read_to_string(dir.join("sweep.md"))
        .unwrap()
        .contains("| 5000 |"));
    for ext in ["png", "svg"] {
        assert!(dir.join(format!("sweep-table-size.{ext}")).exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// One server, full handshakes at 80 ms of CPU: one core is overloaded, eight are not.
const COSTED: &str = r#"
name = "cores"
duration = "120s"
[servers]
count = 1
[servers.cost]
cores = 1
tls12 = { full_us = 80000, resumed_us = 11000 }
[balancer]
kind = "engine"
[balancer.config.backend]
balance = "roundrobin"
affinity = ["session-id"]
[[fleets]]
name = "ids"
kind = "tls12-session-id"
clients = 300
first_visit = { dist = "uniform", min = "0s", max = "20s" }
revisit_gap = { dist = "exponential", mean = "10s" }
connections_per_visit = 2
"#;

#[test]
fn a_cores_sweep_prints_the_smallest_value_meeting_the_target() {
    let dir = std::env::temp_dir().join(format!("tether-sim-cores-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("cores.toml");
    std::fs::write(&scenario, COSTED).unwrap();
    let sweep = |target: &str| {
        Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["sim", "sweep"])
            .arg(&scenario)
            .args(["--param", "cores", "--values", "1,8", "--quiet"])
            .args(["--target", target, "--out"])
            .arg(dir.join("out"))
            .output()
            .unwrap()
    };
    let out = sweep("p99 < 300ms");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("smallest cores meeting p99 < 300ms: 8 cores"),
        "{stdout}"
    );
    let none = sweep("p99 < 1ms");
    assert!(!none.status.success(), "nothing meets 1 ms");
    assert!(String::from_utf8_lossy(&none.stdout).contains("no cores value swept meets"));
    let csv = std::fs::read_to_string(dir.join("out/sweep.csv")).unwrap();
    assert!(
        csv.starts_with("param,value") && csv.contains("\ncores,1,"),
        "{csv}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same sweep in two slices (each point in its own process) and merged: the merge prints
/// and records the smallest value meeting the target, as the unsharded run does.
#[test]
fn a_sharded_cores_sweep_merges_to_the_same_smallest_value() {
    let dir = std::env::temp_dir().join(format!("tether-sim-cores-shard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("cores.toml");
    std::fs::write(&scenario, COSTED).unwrap();
    let tether = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let s = scenario.to_str().unwrap();
    let slices = dir.join("slices");
    let slices = slices.to_str().unwrap();
    for k in ["0/2", "1/2"] {
        let (ok, stdout) = tether(&[
            "sim",
            "sweep",
            s,
            "--param",
            "cores",
            "--values",
            "1,8",
            "--quiet",
            "--target",
            "p99 < 300ms",
            "--shard",
            k,
            "--out",
            slices,
        ]);
        assert!(ok, "slice {k}: {stdout}");
        assert!(
            !stdout.contains("smallest"),
            "a slice does not judge: {stdout}"
        );
    }
    let merged = dir.join("merged");
    let (ok, stdout) = tether(&["sim", "merge", slices, "--out", merged.to_str().unwrap()]);
    assert!(ok, "{stdout}");
    let line = "smallest cores meeting p99 < 300ms: 8 cores";
    assert!(stdout.contains(line), "{stdout}");
    let md = std::fs::read_to_string(merged.join("sweep.md")).unwrap();
    assert!(md.contains(line), "{md}");
    let whole = dir.join("whole");
    let (ok, unsharded) = tether(&[
        "sim",
        "sweep",
        s,
        "--param",
        "cores",
        "--values",
        "1,8",
        "--quiet",
        "--target",
        "p99 < 300ms",
        "--out",
        whole.to_str().unwrap(),
    ]);
    assert!(ok, "{unsharded}");
    assert_eq!(
        std::fs::read_to_string(whole.join("sweep.md")).unwrap(),
        md,
        "merged and unsharded sweep.md differ"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn instances_sweep_shows_affinity_falling_with_per_connection_spread() {
    let dir = std::env::temp_dir().join(format!("tether-sim-sweep-inst-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The shipped scenario with replication off: the instances do not share their tables.
    let shipped = include_str!("../../sim/scenarios/multi-balancer.toml");
    let apart = shipped.replace("enabled = true", "enabled = false");
    assert_ne!(apart, shipped);
    let scenario = dir.join("apart.toml");
    std::fs::write(&scenario, apart).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["sim", "sweep"])
        .arg(&scenario)
        .args(["--param", "instances", "--values", "1,3"])
        .args(["--duration", "120s", "--quiet", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let csv = std::fs::read_to_string(dir.join("sweep.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert_eq!(
        (rows[0][0], rows[0][1], rows[1][1]),
        ("instances", "1", "3")
    );
    let affinity = |r: &Vec<&str>| r[4].parse::<f64>().unwrap();
    // Without replication, three instances reached per connection share what one learns.
    assert!(affinity(&rows[1]) < affinity(&rows[0]) * 0.6, "{csv}");
    assert!(dir.join("sweep-instances.png").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
