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
