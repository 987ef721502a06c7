//! `[[expect]]` and `--seeds`: the simulator as a CI gate on a deployment. The posted haproxy.cfg
//! (sim/scenarios/haproxy-seed.toml) expects 90 % affinity for session-ID clients and gets ~65 %:
//! `tether sim` exits non-zero; the fixed deployment (the embedded default) passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tether(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .output()
        .expect("tether runs")
}

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sim/scenarios")
        .join(name)
        .display()
        .to_string()
}

fn out_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tether-sim-expect-{what}-{}", std::process::id()))
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_failed_expectation_fails_the_run_and_a_held_one_passes() {
    let dir = out_dir("one");
    let d = dir.to_str().expect("utf-8");
    let seed = tether(&["sim", &scenario("haproxy-seed.toml"), "--quiet", "--out", d]);
    let out = text(&seed);
    assert_eq!(seed.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL affinity of fleet tls12-session-id >= 0.9: measured 0.6"),
        "{out}"
    );
    let fixed = tether(&["sim", "--quiet", "--out", d]);
    let out = text(&fixed);
    assert!(fixed.status.success(), "{out}");
    assert!(
        out.contains("PASS affinity of fleet tls12-session-id >= 0.9: measured 0.9"),
        "{out}"
    );
}

#[test]
fn seeds_give_intervals_name_the_first_failing_seed_and_replay_byte_for_byte() {
    let dir = out_dir("seeds");
    let d = dir.to_str().expect("utf-8");
    let run = tether(&[
        "sim",
        &scenario("haproxy-seed.toml"),
        "--seeds",
        "3",
        "--jobs",
        "2",
        "--out",
        d,
    ]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert!(
        out.contains("3 seeds: mean, 95 % confidence interval"),
        "{out}"
    );
    assert!(out.contains("affinity "), "{out}");
    assert!(
        out.contains("on 3 of 3 seeds; first failing seed 1: tether sim ")
            && out.contains("haproxy-seed.toml --seed 1"),
        "{out}"
    );
    // A seed's report from the parallel run is the one `tether sim --seed N` gives alone.
    let alone = dir.join("alone");
    let replay = tether(&[
        "sim",
        &scenario("haproxy-seed.toml"),
        "--seed",
        "2",
        "--quiet",
        "--out",
        alone.to_str().expect("utf-8"),
    ]);
    assert_eq!(replay.status.code(), Some(1));
    let a = std::fs::read(dir.join("seed-2/report.json")).expect("seed 2 report");
    let b = std::fs::read(alone.join("report.json")).expect("replayed report");
    assert!(a == b, "seed 2 differs between --seeds and a lone run");
}
