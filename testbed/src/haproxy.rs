//! HAProxy as a peer: the balancer tether is compared with, run from a generated configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use super::process::ServerProcess;
use super::{ScratchDir, TestbedError};

/// A running `haproxy -db` with a given configuration, killed on drop.
#[derive(Debug)]
pub struct Haproxy {
    process: ServerProcess,
    frontend: SocketAddr,
    _scratch: ScratchDir,
}

impl Haproxy {
    /// Where Debian installs HAProxy 2.6; `TETHER_HAPROXY` overrides it.
    pub const DEFAULT_PROGRAM: &'static str = "/usr/sbin/haproxy";

    /// The haproxy binary to run, or a clear error if it is not installed: tests that compare
    /// with HAProxy must fail loudly rather than skip.
    pub fn program() -> Result<PathBuf, TestbedError> {
        let path = std::env::var_os("TETHER_HAPROXY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(Self::DEFAULT_PROGRAM));
        if path.is_file() {
            Ok(path)
        } else {
            Err(TestbedError::MissingProgram {
                program: "haproxy",
                path,
                hint: "install HAProxy 2.6 (apt-get install haproxy) or set TETHER_HAPROXY",
            })
        }
    }

    /// Write `config` and run haproxy in the foreground; `frontend` is the address the config
    /// binds, awaited for readiness (so the config must bind it).
    pub async fn start(config: &str, frontend: SocketAddr) -> Result<Self, TestbedError> {
        let mut h = Self::spawn(config, frontend)?;
        h.process.ready(frontend).await?;
        Ok(h)
    }

    /// Like [`Haproxy::start`], but waits for every address in `binds` to be bound without
    /// connecting to any: for tests whose servers take a single connection each.
    pub async fn start_unprobed(config: &str, binds: &[SocketAddr]) -> Result<Self, TestbedError> {
        let mut h = Self::spawn(config, binds[0])?;
        for &a in binds {
            h.process.bound(a).await?;
        }
        Ok(h)
    }

    fn spawn(config: &str, frontend: SocketAddr) -> Result<Self, TestbedError> {
        let program = Self::program()?;
        let scratch = ScratchDir::create("haproxy")?;
        let cfg = scratch.path().join("haproxy.cfg");
        std::fs::write(&cfg, config)
            .map_err(|e| TestbedError::io(format!("writing {}", cfg.display()), e))?;
        let mut command = Command::new(program);
        command.arg("-db").arg("-f").arg(&cfg);
        let log = scratch.path().join("haproxy.log");
        let process = ServerProcess::spawn("haproxy", command, &log)?;
        Ok(Self {
            process,
            frontend,
            _scratch: scratch,
        })
    }

    /// The process id of the single haproxy process (`-db`: no master, no workers).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The frontend address.
    pub fn frontend(&self) -> SocketAddr {
        self.frontend
    }

    /// What haproxy has written to stdout/stderr so far (its log when `log stdout` is set).
    pub fn log(&self) -> String {
        self.process.log_text()
    }
}
