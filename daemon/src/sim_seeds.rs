//! `tether sim --seeds N`: the same scenario on N seeds, each in a fresh child process (in
//! parallel), summarised as means with 95 % confidence intervals; every `[[expect]]` must hold on
//! every seed, and the first seed that breaks one is printed with the command that replays it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use tether_sim::headline::{self, Headline};
use tether_sim::scenario::Scenario;
use tether_sim::shard::{Item, Partial, Shard};

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

/// Which seeds a `--seeds` run covers: `count` from `first`, or one slice of them.
#[derive(Clone, Copy, Debug)]
pub struct Seeds {
    /// The first seed.
    pub first: u64,
    /// How many seeds in the whole job.
    pub count: u64,
    /// With `--shard K/N`: only the seeds of this slice, written as a partial.
    pub shard: Option<Shard>,
}

/// What the merged or unsharded output needs besides the seeds' headlines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedsJob {
    /// The scenario as given on the command line (for the replay command), if any.
    pub scenario: Option<String>,
    /// Digest of the scenario file (or "default").
    pub digest: String,
    /// The first seed and how many.
    pub first: u64,
    /// How many seeds.
    pub count: u64,
    /// Each expectation, described.
    pub expectations: Vec<String>,
}

/// Runs the seeds (`jobs` at a time; the seeds' reports go to `out/seed-S/`), then summarises
/// them, or with a shard writes this slice's partial.
pub fn run(
    path: Option<&Path>,
    scenario: &Scenario,
    seeds: Seeds,
    jobs: usize,
    out: &Path,
) -> Result<ExitCode> {
    let all: Vec<u64> = (seeds.first..seeds.first.saturating_add(seeds.count)).collect();
    let shard = seeds.shard.unwrap_or(Shard::WHOLE);
    let mine: Vec<usize> = shard.select(all.len()).collect();
    let heads: Vec<Headline> =
        crate::children::parallel(&mine, jobs, |&i| run_seed(path, all[i], out))
            .into_iter()
            .collect::<Result<_>>()?;
    let job = SeedsJob {
        scenario: path.map(|p| p.display().to_string()),
        digest: crate::sim_merge::scenario_digest(path)?,
        first: seeds.first,
        count: seeds.count,
        expectations: scenario.expect.iter().map(|e| e.describe()).collect(),
    };
    if let Some(shard) = seeds.shard {
        let partial = Partial {
            kind: "seeds".into(),
            job: serde_json::to_string(&job)?,
            total: all.len(),
            shard,
            items: mine
                .into_iter()
                .zip(heads)
                .map(|(index, result)| Item { index, result })
                .collect(),
        };
        let file = crate::sim_merge::write_partial(out, &partial)?;
        println!(
            "wrote slice {shard} ({} seeds) to {}",
            partial.items.len(),
            file.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let code = summarise(&job, &heads, out)?;
    println!("per-seed reports in {}", out.display());
    Ok(code)
}

/// Prints the seeds' summary and every expectation's verdict, and writes the same text to
/// `out/seeds.md` and the headlines to `out/seeds.json`: identical for an unsharded run and a
/// merge of its slices. Fails when an expectation broke on any seed.
pub fn summarise(job: &SeedsJob, heads: &[Headline], out: &Path) -> Result<ExitCode> {
    let mut text = headline::summary(heads);
    let mut failed = false;
    for (i, e) in job.expectations.iter().enumerate() {
        let broken: Vec<&Headline> = heads
            .iter()
            .filter(|h| !h.expectations.get(i).copied().unwrap_or(false))
            .collect();
        match broken.first() {
            None => text.push_str(&format!("PASS {e} on all {} seeds\n", heads.len())),
            Some(h) => {
                failed = true;
                let file = job
                    .scenario
                    .as_ref()
                    .map_or(String::new(), |p| format!("{p} "));
                text.push_str(&format!(
                    "FAIL {e} on {} of {} seeds; first failing seed {}: tether sim {file}--seed {}\n",
                    broken.len(),
                    heads.len(),
                    h.seed,
                    h.seed
                ));
            }
        }
    }
    print!("{text}");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(out.join("seeds.md"), &text)?;
    std::fs::write(
        out.join("seeds.json"),
        serde_json::to_string_pretty(heads)? + "\n",
    )?;
    let title = job
        .scenario
        .as_deref()
        .map_or("default scenario".to_owned(), |p| {
            let name = Path::new(p).file_stem().and_then(|n| n.to_str());
            name.unwrap_or(p).to_owned()
        });
    tether_sim::seeds_plot::write(heads, &title, out)?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
