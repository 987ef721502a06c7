//! Spawned server processes (openssl, haproxy): free ports, readiness, and cleanup on drop.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::TestbedError;

/// A port on 127.0.0.1 that was free a moment ago, for programs that need a port on the command
/// line. It lies below the kernel's ephemeral range, so no outgoing connection of this or any
/// other test can be handed it while the program starts (on loopback a connect to a free
/// ephemeral port can even connect to itself and hold the port). Each process starts its scan at
/// its own offset so parallel test binaries rarely race for one port.
pub fn free_port() -> Result<u16, TestbedError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = ephemeral_low().max(FIXED_LOW + 1000);
    let span = u32::from(low - FIXED_LOW);
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIXED_LOW + ((start + step) % span) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| TestbedError::io("binding 127.0.0.1:0", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| TestbedError::io("reading the bound port", e))?
        .port();
    Ok(port)
}

/// The lowest port `free_port` hands out.
const FIXED_LOW: u16 = 10_000;

/// The first port of the kernel's ephemeral range (`ip_local_port_range`), 32768 when unknown.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Connect to `addr` until it accepts or `deadline` passes; the only portable readiness signal a
/// spawned server gives.
pub async fn wait_until_listening(addr: SocketAddr, deadline: Duration) -> bool {
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        if tokio::time::Instant::now() >= give_up {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child process whose output goes to a log file, killed and reaped on drop.
#[derive(Debug)]
pub(super) struct ServerProcess {
    child: Child,
    log: PathBuf,
    what: String,
}

impl ServerProcess {
    /// Spawn `command` with stdout and stderr appended to `log`.
    pub(super) fn spawn(
        what: &str,
        mut command: Command,
        log: &Path,
    ) -> Result<Self, TestbedError> {
        let out = std::fs::File::create(log)
            .map_err(|e| TestbedError::io(format!("creating {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| TestbedError::io("duplicating the log handle", e))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| TestbedError::io(format!("spawning {what}"), e))?;
        Ok(Self {
            child,
            log: log.to_path_buf(),
            what: what.to_string(),
        })
    }

    /// The process id (for reading its memory and CPU under /proc).
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait until `addr` accepts connections; on failure say how the process ended and what it
    /// logged.
    pub(super) async fn ready(&mut self, addr: SocketAddr) -> Result<(), TestbedError> {
        self.wait_until(addr, || async move {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await
    }

    /// Wait until `addr` is bound by someone (a bind of our own fails), without connecting to
    /// it: a probe connection would reach the servers behind a proxy and use up single-use
    /// fixtures.
    pub(super) async fn bound(&mut self, addr: SocketAddr) -> Result<(), TestbedError> {
        self.wait_until(addr, || async move {
            std::net::TcpListener::bind(addr).is_err()
        })
        .await
    }

    /// Polls `listening` every 20 ms for up to 10 s, failing early when the process exits.
    async fn wait_until<F, Fut>(
        &mut self,
        addr: SocketAddr,
        mut listening: F,
    ) -> Result<(), TestbedError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.not_ready(addr, format!("exited with {status}")));
            }
            if listening().await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(self.not_ready(addr, "still not listening after 10 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process exited (its port was probably taken), so the caller can retry.
    pub(super) fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// What the process wrote so far (for failure messages).
    pub(super) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn not_ready(&self, addr: SocketAddr, why: String) -> TestbedError {
        TestbedError::NotReady {
            what: self.what.clone(),
            addr,
            detail: format!("{why}; log:\n{}", self.log_text()),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How busy the machine is, for the failure message of a test that measures real time or CPU:
/// "load average 3.9 over the last minute on 2 CPUs" (such a test needs the machine to itself).
pub fn machine_load() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let one_minute = load.split_whitespace().next().unwrap_or("unknown");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("load average {one_minute} over the last minute on {cpus} CPUs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_sees_a_listener_and_times_out_without_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(wait_until_listening(addr, Duration::from_secs(2)).await);
        drop(listener);
        assert!(!wait_until_listening(addr, Duration::from_millis(100)).await);
    }
}
