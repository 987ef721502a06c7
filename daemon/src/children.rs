//! Runs of `tether` in fresh child processes, a few at a time.
//!
//! Simulations that must be compared byte for byte run each in its own process: tokio numbers
//! tasks from a process-wide counter, and a crashed or restarted simulated host drops its tasks
//! (closing their sockets) in an order that follows those numbers, so a second run in the same
//! process can differ from the first after a crash. A fresh process replays exactly what
//! `tether sim --seed N` shows.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{bail, Context as _, Result};

/// Runs this `tether` binary with `args` (logs off unless `TETHER_LOG` says otherwise) and
/// returns its standard output; a failed run is an error carrying its standard error.
pub fn tether(args: &[String]) -> Result<String> {
    let exe = std::env::current_exe().context("finding the tether binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(args);
    if std::env::var_os("TETHER_LOG").is_none() {
        cmd.env("TETHER_LOG", "error");
    }
    let out = cmd.output().context("starting a child run")?;
    if !out.status.success() {
        bail!(
            "`tether {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Calls `run` on every item, `jobs` at a time, and returns the results in the items' order.
pub fn parallel<I: Sync, T: Send>(
    items: &[I],
    jobs: usize,
    run: impl Fn(&I) -> Result<T> + Sync,
) -> Vec<Result<T>> {
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<T>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.clamp(1, 64))
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        out.push((i, run(item)));
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// The machine's cores: how many children run at once unless told otherwise.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
