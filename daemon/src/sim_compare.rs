//! `tether sim compare A.json B.json [--tolerance POINTS]`: the CLI edge of
//! [`tether_sim::compare`] (reads the files, prints the table, turns the verdict into an exit
//! code).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use tether_sim::compare::Comparison;

/// Arguments of `tether sim compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The first report (e.g. the simulator's prediction).
    pub a: PathBuf,
    /// The second report (e.g. `tether loadgen`'s measurement).
    pub b: PathBuf,
    /// Largest accepted difference of a rate or share, in percentage points.
    #[arg(long, default_value_t = 3.0)]
    pub tolerance: f64,
    /// Also hold each fleet's resumption and affinity rates to the tolerance.
    #[arg(long)]
    pub per_fleet: bool,
}

fn read(path: &PathBuf) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a report.json", path.display()))
}

/// Runs `tether sim compare`.
pub fn run(args: CompareArgs) -> Result<ExitCode> {
    let (a, b) = (read(&args.a)?, read(&args.b)?);
    let c = Comparison::of(&a, &b, args.per_fleet);
    let name = |r: &serde_json::Value, p: &PathBuf| {
        r["balancer"]
            .as_str()
            .map(|s| s.split_whitespace().next().unwrap_or(s).to_owned())
            .unwrap_or_else(|| p.display().to_string())
    };
    print!(
        "{}",
        c.table(&name(&a, &args.a), &name(&b, &args.b), args.tolerance)
    );
    let failed = c.failures(args.tolerance);
    if failed.is_empty() {
        println!("\nall gated figures within {} points", args.tolerance);
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "\n{} figure(s) beyond {} points: {}",
            failed.len(),
            args.tolerance,
            failed
                .iter()
                .map(|r| r.label.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}
