//! Sweeps and seed runs cut into deterministic slices (`--shard K/N`), each slice a separate
//! process as a batch engine would run it, joined by `tether sim merge`: the merged output is
//! byte-identical to the unsharded run's; a missing or repeated slice is refused by name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SCENARIO: &str = r#"
name = "shard-test"
duration = "40s"

[servers]
count = 3

[balancer]
kind = "engine"
[balancer.config.backend]
affinity = ["session-id"]

[[fleets]]
name = "ids"
kind = "tls12-session-id"
clients = 30
revisit_gap = { dist = "exponential", mean = "10s" }

[[expect]]
metric = "resumption"
min = 0.5
"#;

fn tether(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .output()
        .expect("tether runs")
}

fn ok(o: Output) -> String {
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    text
}

fn dir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tether-shard-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn same_files(a: &Path, b: &Path, names: &[&str]) {
    for n in names {
        let (x, y) = (std::fs::read(a.join(n)), std::fs::read(b.join(n)));
        let (x, y) = (x.expect(n), y.expect(n));
        assert!(
            x == y,
            "{n} differs between the unsharded run and the merge"
        );
    }
}

#[test]
fn a_sweep_in_three_slices_merges_to_the_unsharded_sweep_byte_for_byte() {
    let root = dir("sweep");
    std::fs::create_dir_all(&root).unwrap();
    let scenario = root.join("s.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let base = [
        "sim",
        "sweep",
        s(&scenario),
        "--param",
        "servers",
        "--values",
        "1,2,3,5",
        "--quiet",
        "--jobs",
        "2",
    ];
    let whole = root.join("whole");
    ok(tether(&[&base[..], &["--out", s(&whole)]].concat()));
    let slices = root.join("slices");
    for k in 0..3 {
        let shard = format!("{k}/3");
        let out = ok(tether(
            &[&base[..], &["--shard", &shard, "--out", s(&slices)]].concat(),
        ));
        assert!(out.contains(&format!("wrote slice {shard}")), "{out}");
    }
    assert!(
        !slices.join("sweep.csv").exists(),
        "a slice writes only its partial"
    );
    let merged = root.join("merged");
    ok(tether(&["sim", "merge", s(&slices), "--out", s(&merged)]));
    same_files(
        &whole,
        &merged,
        &[
            "sweep.csv",
            "sweep.md",
            "sweep-servers.png",
            "sweep-servers.svg",
        ],
    );
    let csv = std::fs::read_to_string(whole.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");

    // One slice missing: refused, naming the slice to run.
    std::fs::remove_file(slices.join("partial-1-of-3.json")).unwrap();
    let missing = tether(&["sim", "merge", s(&slices), "--out", s(&merged)]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && err.contains("1/3"), "{err}");
    // A slice of another sweep: refused.
    let other = root.join("other");
    ok(tether(
        &[
            "sim",
            "sweep",
            s(&scenario),
            "--param",
            "servers",
            "--values",
            "1,2,3,4",
            "--quiet",
            "--shard",
            "1/3",
            "--out",
            s(&other),
        ][..],
    ));
    let mixed = tether(&[
        "sim",
        "merge",
        s(&slices),
        s(&other.join("partial-1-of-3.json")),
        "--out",
        s(&merged),
    ]);
    let err = String::from_utf8_lossy(&mixed.stderr);
    assert!(
        !mixed.status.success() && err.contains("another job"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn seeds_in_two_slices_merge_to_the_unsharded_summary_byte_for_byte() {
    let root = dir("seeds");
    std::fs::create_dir_all(&root).unwrap();
    let scenario = root.join("s.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let base = [
        "sim",
        s(&scenario),
        "--seeds",
        "5",
        "--seed",
        "7",
        "--jobs",
        "2",
    ];
    let whole = root.join("whole");
    let printed = ok(tether(&[&base[..], &["--out", s(&whole)]].concat()));
    assert!(printed.contains("5 seeds"), "{printed}");
    let slices = root.join("slices");
    for k in ["0/2", "1/2"] {
        ok(tether(
            &[&base[..], &["--shard", k, "--out", s(&slices)]].concat(),
        ));
    }
    let merged = root.join("merged");
    let joined = ok(tether(&["sim", "merge", s(&slices), "--out", s(&merged)]));
    same_files(
        &whole,
        &merged,
        &[
            "seeds.md",
            "seeds.json",
            "seeds-resumption.png",
            "seeds-resumption.svg",
        ],
    );
    let md = std::fs::read_to_string(merged.join("seeds.md")).unwrap();
    assert!(
        joined.starts_with(&md),
        "merge prints the summary it writes"
    );
    assert!(md.contains("PASS resumption"), "{md}");
    let heads: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(merged.join("seeds.json")).unwrap()).unwrap();
    let seeds: Vec<u64> = heads.iter().map(|h| h["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds, [7, 8, 9, 10, 11]);
    let _ = std::fs::remove_dir_all(&root);
}

/// The shipped batch wrapper, run as a Kubernetes Indexed Job's pods and as a Slurm array's
/// tasks would run it (separate processes, the index from the engine's variable).
#[test]
fn the_batch_examples_slices_merge_to_the_unsharded_sweep() {
    let root = dir("batch");
    std::fs::create_dir_all(&root).unwrap();
    let scenario = root.join("s.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/batch");
    let args = [
        "sweep",
        s(&scenario),
        "--param",
        "servers",
        "--values",
        "2,3,4",
        "--jobs",
        "1",
        "--quiet",
    ];
    let whole = root.join("whole");
    ok(tether(
        &[&["sim"][..], &args, &["--out", s(&whole)]].concat(),
    ));
    let engines: [(&str, &[(&str, &str)]); 2] = [
        ("k8s", &[("SLICES", "2")]),
        ("slurm", &[("SLURM_ARRAY_TASK_COUNT", "2")]),
    ];
    for (engine, env) in engines {
        let slices = root.join(engine);
        for k in 0..2 {
            let index = if engine == "k8s" {
                "JOB_COMPLETION_INDEX"
            } else {
                "SLURM_ARRAY_TASK_ID"
            };
            let mut cmd = Command::new(examples.join("slice.sh"));
            cmd.args(args).args(["--out", s(&slices)]);
            cmd.env("TETHER", env!("CARGO_BIN_EXE_tether"))
                .env(index, k.to_string());
            for (key, value) in env {
                cmd.env(key, value);
            }
            ok(cmd.output().expect("slice.sh runs"));
        }
        let merged = root.join(format!("{engine}-merged"));
        ok(tether(&["sim", "merge", s(&slices), "--out", s(&merged)]));
        same_files(
            &whole,
            &merged,
            &["sweep.csv", "sweep.md", "sweep-servers.png"],
        );
    }
    // Without an index the wrapper refuses rather than running the whole sweep in every pod.
    let bare = Command::new(examples.join("slice.sh"))
        .args(args)
        .output()
        .unwrap();
    assert_eq!(bare.status.code(), Some(2));
    // The Job's pod count and its SLICES agree, and the Slurm array covers 0..N-1.
    let job = std::fs::read_to_string(examples.join("sweep-job.yaml")).unwrap();
    assert!(
        job.contains("completions: 8") && job.contains("value: \"8\""),
        "{job}"
    );
    let slurm = std::fs::read_to_string(examples.join("sweep-slurm.sh")).unwrap();
    assert!(slurm.contains("--array=0-7"), "{slurm}");
    let _ = std::fs::remove_dir_all(&root);
}
