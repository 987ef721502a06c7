//! `tether sim sweep`: the scenario run once per value of each parameter, every point in a
//! fresh child process (`--jobs` at a time), so a point's row is the same whichever machine or
//! slice ran it; `--shard K/N` runs one deterministic slice of the points and writes a partial
//! that `tether sim merge` joins (see [`tether_sim::shard`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use tether_sim::scenario::SimDuration;
use tether_sim::shard::{Item, Partial, Shard};
use tether_sim::sweep::{self, SweepParam, SweepRow, Target};

/// What a point's child prints before its row, on a line of its own.
const ROW_PREFIX: &str = "row: ";

/// Arguments of `tether sim sweep`.
#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// Scenario TOML; without one, the embedded default deployment.
    pub scenario: Option<PathBuf>,
    /// Parameter to sweep (repeat; default all): table-size, expire, servers, fleet-size,
    /// session-timeout, cores (with `[servers.cost]`); instances only when named.
    #[arg(long = "param")]
    pub params: Vec<SweepParam>,
    /// Values for a single --param (comma separated; sizes in entries, times in seconds,
    /// fleet size in percent).
    #[arg(long, value_delimiter = ',')]
    pub values: Vec<u64>,
    /// Shorten (or lengthen) the scenario, e.g. "3m", to keep many runs quick.
    #[arg(long)]
    pub duration: Option<String>,
    /// Seed for every point.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory for sweep.csv, sweep.md and the plots (or, with --shard, the partial).
    #[arg(long, default_value = "out/sim-sweep")]
    pub out: PathBuf,
    /// No progress indicator.
    #[arg(long)]
    pub quiet: bool,
    /// Points run at once, each in its own process (default: the machine's cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Run only slice K of N (0-based: a Kubernetes Indexed Job's `$JOB_COMPLETION_INDEX`, a
    /// Slurm array's `$SLURM_ARRAY_TASK_ID`) and write `partial-K-of-N.json` for `tether sim merge`.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Print the smallest value that meets this, e.g. 'p99 < 50ms' or 'cpu < 0.7' (exit 1 when
    /// none does); with --shard, the merge prints it.
    #[arg(long)]
    pub target: Option<Target>,
    /// Internal: run point I in this process and print its row (what the children do).
    #[arg(long, hide = true)]
    pub point: Option<usize>,
}

/// Runs `tether sim sweep`.
pub fn run(args: SweepArgs) -> Result<ExitCode> {
    let points = points(&args)?;
    if let Some(i) = args.point {
        return run_point(&args, &points, i);
    }
    let shard = args.shard.unwrap_or(Shard::WHOLE);
    let mine: Vec<usize> = shard.select(points.len()).collect();
    let jobs = args.jobs.unwrap_or_else(crate::children::cores);
    let rows = crate::children::parallel(&mine, jobs, |&i| {
        if !args.quiet {
            let (p, v) = points[i];
            eprintln!("sweep {} = {v} ...", p.name());
        }
        point_in_child(&args, i)
    });
    let rows: Vec<SweepRow> = rows.into_iter().collect::<Result<_>>()?;
    if let Some(shard) = args.shard {
        let items = mine
            .into_iter()
            .zip(rows)
            .map(|(index, result)| Item { index, result })
            .collect();
        let partial = Partial {
            kind: "sweep".into(),
            job: job(&args)?,
            total: points.len(),
            shard,
            items,
        };
        let file = crate::sim_merge::write_partial(&args.out, &partial)?;
        println!(
            "wrote slice {shard} ({} points) to {}",
            partial.items.len(),
            file.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    write_outputs(&rows, &args.out)?;
    report_target(args.target.as_ref(), &rows, &args.out)
}

/// Every point of the sweep, in the order an unsharded run takes them.
fn points(args: &SweepArgs) -> Result<Vec<(SweepParam, u64)>> {
    let (scenario, config) = crate::sim_cli::load(args.scenario.as_deref())?;
    let params: Vec<SweepParam> = if args.params.is_empty() {
        SweepParam::ALL
            .into_iter()
            .filter(|p| config.is_some() || !p.needs_engine())
            .filter(|&p| p != SweepParam::Cores || scenario.servers.cost.is_some())
            .collect()
    } else {
        args.params.clone()
    };
    if !args.values.is_empty() && params.len() != 1 {
        bail!("--values needs exactly one --param");
    }
    Ok(params
        .into_iter()
        .flat_map(|p| {
            let values = if args.values.is_empty() {
                p.default_values()
            } else {
                args.values.clone()
            };
            values.into_iter().map(move |v| (p, v))
        })
        .collect())
}

/// What defines a sweep: slices of one sweep carry the same (as JSON in the partial's `job`),
/// merge checks they do and reads the target back from it.
#[derive(Debug, Serialize, Deserialize)]
pub struct SweepJob {
    /// Digest of the scenario file.
    pub scenario: String,
    /// Parameters named (empty: all).
    pub params: Vec<SweepParam>,
    /// Values given (empty: each parameter's defaults).
    pub values: Vec<u64>,
    /// Duration override.
    pub duration: Option<String>,
    /// Seed override.
    pub seed: Option<u64>,
    /// The target the merge judges the points against, as written by [`Target::describe`].
    pub target: Option<String>,
}

impl SweepJob {
    /// The target, if the sweep had one.
    pub fn target(&self) -> Result<Option<Target>> {
        self.target
            .as_deref()
            .map(|t| t.parse().map_err(anyhow::Error::msg))
            .transpose()
    }
}

fn job(args: &SweepArgs) -> Result<String> {
    let job = SweepJob {
        scenario: crate::sim_merge::scenario_digest(args.scenario.as_deref())?,
        params: args.params.clone(),
        values: args.values.clone(),
        duration: args.duration.clone(),
        seed: args.seed,
        target: args.target.as_ref().map(Target::describe),
    };
    Ok(serde_json::to_string(&job)?)
}

/// Child: runs point `i` here and prints its row as one JSON line.
fn run_point(args: &SweepArgs, points: &[(SweepParam, u64)], i: usize) -> Result<ExitCode> {
    let &(param, value) = points
        .get(i)
        .with_context(|| format!("the sweep has {} points, not {}", points.len(), i + 1))?;
    let (mut scenario, config) = crate::sim_cli::load(args.scenario.as_deref())?;
    if let Some(d) = &args.duration {
        scenario.duration = SimDuration::parse(d).map_err(anyhow::Error::msg)?;
    }
    let seed = args.seed.or(scenario.seed).unwrap_or(1);
    let (s, c) = param.apply(value, &scenario, config.as_ref())?;
    let report = crate::sim_cli::simulate(&s, seed, c, false)?;
    let row = SweepRow::of(param, value, &report);
    println!("{ROW_PREFIX}{}", serde_json::to_string(&row)?);
    Ok(ExitCode::SUCCESS)
}

/// Parent: runs point `i` in a fresh process and reads its row back.
fn point_in_child(args: &SweepArgs, i: usize) -> Result<SweepRow> {
    let mut a = vec!["sim".to_owned(), "sweep".to_owned()];
    if let Some(p) = &args.scenario {
        a.push(p.display().to_string());
    }
    for p in &args.params {
        a.extend(["--param".to_owned(), p.name().to_owned()]);
    }
    if !args.values.is_empty() {
        let v: Vec<String> = args.values.iter().map(u64::to_string).collect();
        a.extend(["--values".to_owned(), v.join(",")]);
    }
    if let Some(d) = &args.duration {
        a.extend(["--duration".to_owned(), d.clone()]);
    }
    if let Some(s) = args.seed {
        a.extend(["--seed".to_owned(), s.to_string()]);
    }
    a.extend(["--quiet".to_owned(), "--point".to_owned(), i.to_string()]);
    let stdout = crate::children::tether(&a)?;
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(ROW_PREFIX))
        .with_context(|| format!("point {i}: the child printed no row"))?;
    serde_json::from_str(line).with_context(|| format!("point {i}: unreadable row"))
}

/// Writes sweep.csv, sweep.md and the plots, and prints the table: the same for an unsharded
/// run and a merge of its slices.
pub fn write_outputs(rows: &[SweepRow], out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let md = sweep::to_markdown(rows);
    std::fs::write(out.join("sweep.csv"), sweep::to_csv(rows))?;
    std::fs::write(out.join("sweep.md"), &md)?;
    let plots = sweep::write_plots(rows, out)?;
    print!("{md}");
    println!(
        "wrote sweep.csv, sweep.md and {} plots in {}",
        plots.len(),
        out.display()
    );
    Ok(())
}

/// With a target: prints the smallest value of each parameter that meets it and adds those
/// lines to sweep.md; failure when a parameter has none. The same for an unsharded run and a
/// merge of its slices (the rows carry the figures the target reads).
pub fn report_target(target: Option<&Target>, rows: &[SweepRow], out: &Path) -> Result<ExitCode> {
    let Some(target) = target else {
        return Ok(ExitCode::SUCCESS);
    };
    let (lines, all_met) = sweep::target_lines(target, rows);
    let md = out.join("sweep.md");
    let mut text =
        std::fs::read_to_string(&md).with_context(|| format!("reading {}", md.display()))?;
    text.push_str("### target\n\n");
    for l in &lines {
        println!("{l}");
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(&md, text).with_context(|| format!("writing {}", md.display()))?;
    Ok(if all_met {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
