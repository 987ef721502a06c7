//! `tether sim --seeds N`: the same scenario on N seeds, each in a fresh child process (in
//! parallel), summarised as means with 95 % confidence intervals; every `[[expect]]` must hold on
//! every seed, and the first seed that breaks one is printed with the command that replays it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use tether_sim::headline::{self, Headline};
use tether_sim::scenario::Scenario;

/// What the child prints before its headline, on a line of its own.
pub const HEADLINE_PREFIX: &str = "headline: ";

/// The child's arguments for one seed.
fn child_args(scenario: Option<&Path>, seed: u64, out: &Path) -> Vec<String> {
    let mut a = vec!["sim".to_owned()];
    if let Some(p) = scenario {
        a.push(p.display().to_string());
    }
    a.extend([
        "--seed".into(),
        seed.to_string(),
        "--quiet".into(),
        "--headline".into(),
    ]);
    a.extend([
        "--out".into(),
        out.join(format!("seed-{seed}")).display().to_string(),
    ]);
    a
}

fn run_seed(scenario: Option<&Path>, seed: u64, out: &Path) -> Result<Headline> {
    let stdout = crate::children::tether(&child_args(scenario, seed, out))?;
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(HEADLINE_PREFIX))
        .with_context(|| format!("seed {seed}: the child printed no headline"))?;
    serde_json::from_str(line).with_context(|| format!("seed {seed}: unreadable headline"))
}

/// Runs `n` seeds from `first`, `jobs` at a time; the seeds' reports go to `out/seed-S/`.
pub fn run(
    path: Option<&Path>,
    scenario: &Scenario,
    first: u64,
    n: u64,
    jobs: usize,
    out: &Path,
) -> Result<ExitCode> {
    let seeds: Vec<u64> = (first..first.saturating_add(n)).collect();
    let heads: Vec<Headline> = crate::children::parallel(&seeds, jobs, |&s| run_seed(path, s, out))
        .into_iter()
        .collect::<Result<_>>()?;
    print!("{}", headline::summary(&heads));
    let mut failed = false;
    for (i, e) in scenario.expect.iter().enumerate() {
        let broken = heads
            .iter()
            .find(|h| !h.expectations.get(i).copied().unwrap_or(false));
        let held = heads.len() - heads.iter().filter(|h| !h.expectations[i]).count();
        match broken {
            None => println!("PASS {} on all {} seeds", e.describe(), heads.len()),
            Some(h) => {
                failed = true;
                let file = path.map_or(String::new(), |p| format!("{} ", p.display()));
                println!(
                    "FAIL {} on {} of {} seeds; first failing seed {}: tether sim {file}--seed {}",
                    e.describe(),
                    heads.len() - held,
                    heads.len(),
                    h.seed,
                    h.seed
                );
            }
        }
    }
    println!("per-seed reports in {}", out.display());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
