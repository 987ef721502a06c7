//! `tether sim check` end to end: generated fault mixes over the real engine, each seed run twice
//! in fresh processes, invariants checked; a failing seed exits non-zero with a replay command.

use std::process::Command;

fn tether() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tether"))
}

#[test]
fn forty_seeds_keep_every_invariant_and_reach_the_faults() {
    let out_dir = std::env::temp_dir().join(format!("tether-sim-check-{}", std::process::id()));
    let out = tether()
        .args(["sim", "check", "--seeds", "1..41", "--jobs", "2", "--out"])
        .arg(&out_dir)
        .env("TETHER_LOG", "error")
        .output()
        .expect("tether runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("40 seeds,") && stdout.contains(": 0 failed"),
        "{stdout}"
    );
    // `sometimes`: the faults were reached, not only survived.
    let reached = stdout
        .lines()
        .find_map(|l| l.strip_prefix("reached: "))
        .expect("a coverage line");
    for (name, n) in reached.split(' ').filter_map(|kv| kv.split_once('=')) {
        let n: u64 = n.parse().expect("a count");
        assert!(n > 0, "{name} never reached in 40 seeds: {reached}");
    }
}

#[test]
fn a_bad_seed_range_is_refused_with_the_forms_it_takes() {
    let out = tether()
        .args(["sim", "check", "--seeds", "9..3"])
        .output()
        .expect("tether runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("empty seed range"), "{err}");
}
