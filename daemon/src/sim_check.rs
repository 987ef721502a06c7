//! `tether sim check`: swarm testing of the engine over many seeds (tether-sim's `swarm`).
//!
//! Each seed generates a scenario with its own fault mix, runs it twice, each time in a fresh
//! child process (the two digests must be equal), and checks the invariants on its trace. Failing seeds are printed with the
//! command that replays them, and their scenarios written out; a coverage line says how often
//! the faults provoked retries, queueing, re-pointed entries, DOWN servers, evictions.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use tether_sim::swarm::{self, Reached, Verdict, Violation};

/// Arguments of `tether sim check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Seeds to run: `A..B` (B excluded), `A..=B`, or one seed.
    #[arg(long, default_value = "1..101", value_parser = parse_seeds)]
    pub seeds: RangeInclusive<u64>,
    /// Runs at once (each seed is single-threaded).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Where failing seeds' scenarios are written.
    #[arg(long, default_value = "out/sim-check")]
    pub out: PathBuf,
    /// Print every seed, not only failures.
    #[arg(long)]
    pub verbose: bool,
    /// Internal: run the seeds in this process, one result line each (what the children do).
    #[arg(long, hide = true)]
    pub child: bool,
}

/// Parses `A..B`, `A..=B` or `N`.
fn parse_seeds(s: &str) -> Result<RangeInclusive<u64>, String> {
    let num = |t: &str| {
        t.trim()
            .parse::<u64>()
            .map_err(|_| format!("{t:?} is not a seed; write A..B, A..=B or N"))
    };
    let range = if let Some((a, b)) = s.split_once("..=") {
        num(a)?..=num(b)?
    } else if let Some((a, b)) = s.split_once("..") {
        let end = num(b)?;
        if end == 0 {
            return Err("empty seed range".into());
        }
        num(a)?..=end - 1
    } else {
        let n = num(s)?;
        n..=n
    };
    if range.is_empty() {
        return Err(format!("empty seed range {s:?}"));
    }
    Ok(range)
}

/// Runs `tether sim check`; exit code 1 when a seed broke an invariant.
pub fn run(args: CheckArgs) -> Result<ExitCode> {
    if args.child {
        return run_child(&args);
    }
    let results = run_seeds(&args)?;
    let mut reached = Reached::default();
    let (mut connections, mut failed) = (0, 0);
    for (v, again) in &results {
        reached.add(&v.reached);
        connections += v.connections;
        let mut violations: Vec<String> = v.violations.clone();
        if v.digest != again.digest {
            violations.insert(0, Violation::Nondeterministic.to_string());
        }
        if !violations.is_empty() {
            failed += 1;
            report_failure(v, &violations, &args)?;
        } else if args.verbose {
            println!(
                "seed {} ok: {} connections, digest {:016x}, faults {}",
                v.seed, v.connections, v.digest, v.faults
            );
        }
    }
    println!(
        "{} seeds, {connections} connections, each run twice in fresh processes: {failed} failed",
        results.len()
    );
    let coverage: Vec<String> = reached
        .named()
        .iter()
        .map(|(name, n)| format!("{name}={n}"))
        .collect();
    println!("reached: {}", coverage.join(" "));
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One seed's result as a child reports it: one JSON line.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Outcome {
    seed: u64,
    digest: u64,
    connections: u64,
    faults: String,
    reached: Reached,
    violations: Vec<String>,
}

impl Outcome {
    fn of(v: &Verdict) -> Self {
        Outcome {
            seed: v.case.seed,
            digest: v.digest,
            connections: v.connections,
            faults: v.case.mix.names().join(","),
            reached: v.reached,
            violations: v.violations.iter().map(ToString::to_string).collect(),
        }
    }

    fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn parse(line: &str) -> Option<Self> {
        serde_json::from_str(line).ok()
    }
}

/// The child: runs each seed in this process and prints one line per seed.
fn run_child(args: &CheckArgs) -> Result<ExitCode> {
    for seed in args.seeds.clone() {
        let v = swarm::check(seed).with_context(|| format!("seed {seed}"))?;
        println!("{}", Outcome::of(&v).line());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs one seed in a fresh child process.
fn run_in_child(seed: u64) -> Result<Outcome> {
    let args = ["sim", "check", "--child", "--seeds", &seed.to_string()].map(String::from);
    crate::children::tether(&args)?
        .lines()
        .find_map(Outcome::parse)
        .with_context(|| format!("seed {seed}: no result from the child run"))
}

/// Runs every seed twice, `args.jobs` child processes at a time, in seed order.
fn run_seeds(args: &CheckArgs) -> Result<Vec<(Outcome, Outcome)>> {
    let seeds: Vec<u64> = args.seeds.clone().collect();
    crate::children::parallel(&seeds, args.jobs, |&seed| {
        Ok((run_in_child(seed)?, run_in_child(seed)?))
    })
    .into_iter()
    .collect()
}

fn report_failure(v: &Outcome, violations: &[String], args: &CheckArgs) -> Result<()> {
    let seed = v.seed;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let file = args.out.join(format!("seed-{seed}.toml"));
    std::fs::write(&file, swarm::case(seed).scenario_toml)
        .with_context(|| format!("writing {}", file.display()))?;
    println!("seed {seed} FAILED (faults {}):", v.faults);
    for violation in violations {
        println!("  - {violation}");
    }
    println!(
        "  replay: tether sim check --seeds {seed} --verbose   (scenario: tether sim {} --seed {seed})",
        file.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{parse_seeds, Outcome};
    use tether_sim::swarm::Reached;

    #[test]
    fn a_child_line_reads_back_as_written() {
        let o = Outcome {
            seed: 7,
            digest: 0xdead_beef,
            connections: 12,
            faults: "crashes,tight-maxconn".into(),
            reached: Reached {
                retried: 1,
                queued: 2,
                repointed: 3,
                down_seen: 4,
                evicted: 5,
                lost_in_restart: 6,
            },
            violations: vec!["server-00: 2 still counted".into(), "x y".into()],
        };
        assert_eq!(Outcome::parse(&o.line()), Some(o.clone()));
        let none = Outcome {
            faults: String::new(),
            violations: vec![],
            ..o
        };
        assert_eq!(Outcome::parse(&none.line()), Some(none));
    }

    #[test]
    fn seed_ranges_parse_as_written() {
        assert_eq!(parse_seeds("1..4"), Ok(1..=3));
        assert_eq!(parse_seeds("1..=4"), Ok(1..=4));
        assert_eq!(parse_seeds("7"), Ok(7..=7));
        assert!(parse_seeds("4..1").is_err());
        assert!(parse_seeds("0..0").is_err());
        assert!(parse_seeds("x").is_err());
    }
}
