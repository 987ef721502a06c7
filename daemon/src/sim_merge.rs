//! `tether sim merge`: joins the partials that `--shard K/N` slices of a sweep or a `--seeds`
//! run wrote (on one machine or many) into exactly the output the unsharded run writes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use serde::{de::DeserializeOwned, Serialize};
use tether_sim::headline::Headline;
use tether_sim::shard::{self, Partial};
use tether_sim::sweep::SweepRow;

/// Arguments of `tether sim merge`.
#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// Partial files, or directories holding `partial-*.json` (every slice's --out).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Directory for the joined output (sweep.csv, sweep.md and plots; or seeds.md, seeds.json).
    #[arg(long, default_value = "out/sim-merged")]
    pub out: PathBuf,
}

/// The file a slice writes into its output directory.
pub fn partial_path(out: &Path, shard: shard::Shard) -> PathBuf {
    out.join(format!("partial-{}-of-{}.json", shard.index, shard.count))
}

/// The digest that identifies a scenario in a job description: of the file's bytes (so copies at
/// other paths match and an edited file does not), or "default" for the embedded scenario.
pub fn scenario_digest(path: Option<&Path>) -> Result<String> {
    Ok(match path {
        Some(p) => {
            shard::digest(&std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => "default".to_owned(),
    })
}

/// Writes a slice's partial into `out` and returns its path.
pub fn write_partial<T: Serialize>(out: &Path, partial: &Partial<T>) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let file = partial_path(out, partial.shard);
    std::fs::write(&file, partial.to_json())
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

/// Runs `tether sim merge`.
pub fn run(args: MergeArgs) -> Result<ExitCode> {
    let files = partial_files(&args.inputs)?;
    let kind = kind_of(&files[0])?;
    match kind.as_str() {
        "sweep" => {
            let (rows, job): (Vec<SweepRow>, String) = join(&files)?;
            let job: crate::sim_sweep::SweepJob =
                serde_json::from_str(&job).context("the partials' job description")?;
            crate::sim_sweep::write_outputs(&rows, &args.out)?;
            crate::sim_sweep::report_target(job.target()?.as_ref(), &rows, &args.out)
        }
        "seeds" => {
            let (heads, job): (Vec<Headline>, String) = join(&files)?;
            let job: crate::sim_seeds::SeedsJob =
                serde_json::from_str(&job).context("the partials' job description")?;
            crate::sim_seeds::summarise(&job, &heads, &args.out)
        }
        other => bail!("{}: unknown kind of partial {other:?}", files[0].display()),
    }
}

/// Every partial named, directories expanded to their `partial-*.json` in name order.
fn partial_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("reading {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    name.starts_with("partial-") && name.ends_with(".json")
                })
                .collect();
            if found.is_empty() {
                bail!("{}: no partial-*.json in this directory", input.display());
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

/// The kind a partial declares, read before its items' type is known.
fn kind_of(file: &Path) -> Result<String> {
    let p: Partial<serde_json::Value> = read(file)?;
    Ok(p.kind)
}

fn read<T: DeserializeOwned>(file: &Path) -> Result<Partial<T>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(shard::read(&file.display().to_string(), &text)?)
}

/// The items of every partial in job order, and the job they share.
fn join<T: DeserializeOwned>(files: &[PathBuf]) -> Result<(Vec<T>, String)> {
    let mut partials = Vec::new();
    for f in files {
        partials.push((f.display().to_string(), read::<T>(f)?));
    }
    let job = partials[0].1.job.clone();
    Ok((shard::merge(partials)?, job))
}
