//! The daemon's threads, as HAProxy's `nbthread`: each runs a single-threaded tokio runtime
//! (no work-stealing queues, no cross-thread wake-ups), accepts on a listener of its own per
//! address and runs the connections it accepted to their end. The first thread is the caller's;
//! it also runs what is not a connection (checks, peers, stats, signals).

use std::io;

use tokio::runtime::{Builder, Handle, Runtime};

/// How many threads accept when neither `--threads` nor the configuration says: one per CPU.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A thread's runtime: single-threaded, collecting its allocator heap as it parks after a
/// release was asked for ([`crate::memory::on_thread_park`]).
pub fn runtime() -> io::Result<Runtime> {
    Builder::new_current_thread()
        .enable_all()
        .on_thread_park(crate::memory::on_thread_park)
        .build()
}

/// Starts `n` more threads, each driving its runtime for the rest of the process's life, and
/// returns their runtimes' handles (to spawn on and to bind listeners for).
pub fn start_workers(n: usize) -> io::Result<Vec<Handle>> {
    (1..=n)
        .map(|i| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name(format!("tether-{i}"))
                .spawn(move || match runtime() {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                })?;
            rx.recv()
                .map_err(|_| io::Error::other("a worker thread ended before it started"))?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_run_what_is_spawned_on_them_on_their_own_threads() {
        let workers = start_workers(2).unwrap();
        let names: Vec<String> = workers
            .iter()
            .map(|h| {
                let (tx, rx) = std::sync::mpsc::channel();
                h.spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    let _ = tx.send(std::thread::current().name().map(String::from));
                });
                rx.recv().unwrap().unwrap()
            })
            .collect();
        assert_eq!(names, ["tether-1", "tether-2"]);
    }
}
