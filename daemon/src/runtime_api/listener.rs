//! The unix socket: bind (removing a stale socket file, refusing anything else at the path),
//! permissions, a bounded number of clients, a bounded line length and an idle timeout, so a
//! hostile or stuck client costs one small task and never touches the data plane.

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _, Result};
use tether_core::config::{AdminLevel, AdminSocket};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::session::Session;
use super::Ctx;
use crate::run::DaemonView;

/// Most clients served at once; more wait in the accept queue (HAProxy's CLI default is 10).
pub const MAX_CONNECTIONS: usize = 16;
/// Longest command line; a longer one is answered with an error and the connection closed.
pub const MAX_LINE: usize = 16 * 1024;
/// Longest time one answer may take to be written to a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The running runtime API. Dropping it stops the listener and removes the socket file.
#[derive(Debug)]
pub struct RuntimeApiListener {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl RuntimeApiListener {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RuntimeApiListener {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Facts fixed for the listener's life.
struct Shared {
    view: DaemonView,
    level: AdminLevel,
    started: Instant,
    started_unix: u64,
    node: String,
}

/// Binds `config.socket` with `config.mode` and serves until the listener is dropped. Fails at
/// once when the path holds something other than a socket, or a live daemon already answers
/// there, so a misconfiguration stops the daemon at startup.
pub async fn serve_runtime_api(
    config: AdminSocket,
    view: DaemonView,
) -> Result<RuntimeApiListener> {
    let path = PathBuf::from(&config.socket);
    clear_stale(&path).await?;
    let socket = UnixListener::bind(&path)
        .with_context(|| format!("runtime API: cannot bind {}", path.display()))?;
    let mode = u32::from_str_radix(&config.mode, 8).unwrap_or(0o600) & 0o777;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("runtime API: cannot chmod {} to {mode:o}", path.display()))?;
    tracing::info!(path = %path.display(), level = ?config.level, "runtime API listening");
    // `show info`'s Start_time_sec is wall-clock time, read once here in the daemon.
    #[allow(clippy::disallowed_methods)]
    let wall = SystemTime::now();
    let shared = Arc::new(Shared {
        view,
        level: config.level,
        started: Instant::now(),
        started_unix: wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        node: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "tether".into()),
    });
    let task = tokio::spawn(accept_loop(socket, shared));
    Ok(RuntimeApiListener { path, task })
}

/// Removes a socket file nobody answers on; refuses a regular file, a directory, or a socket a
/// running process still serves.
async fn clear_stale(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| format!("runtime API: cannot stat {}", path.display()))
        }
    };
    if !meta.file_type().is_socket() {
        bail!(
            "runtime API: {} exists and is not a socket; refusing to replace it (choose another \
             path or remove it)",
            path.display()
        );
    }
    if UnixStream::connect(path).await.is_ok() {
        bail!(
            "runtime API: {} is in use by a running process (another tether or HAProxy?)",
            path.display()
        );
    }
    std::fs::remove_file(path)
        .with_context(|| format!("runtime API: cannot remove stale socket {}", path.display()))
}

async fn accept_loop(socket: UnixListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match socket.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("runtime API accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_client(stream, &shared).await {
                tracing::debug!("runtime API client: {e}");
            }
            drop(permit);
        });
    }
}

async fn serve_client(stream: UnixStream, shared: &Shared) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    // `take` bounds what one read_until may buffer; it is re-armed for every line.
    let mut reader = BufReader::new(read).take(MAX_LINE as u64 + 1);
    let mut session = Session::new(shared.level);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        reader.set_limit(MAX_LINE as u64 + 1);
        let idle = session.idle_timeout();
        let n = match tokio::time::timeout(idle, reader.read_until(b'\n', &mut line)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        let complete = line.last() == Some(&b'\n');
        if n == 0 || (!complete && line.len() > MAX_LINE) {
            if n > 0 {
                let _ = write.write_all(b"Line too long.\n").await;
            }
            return Ok(());
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let answer = {
            let runtime = shared.view.runtime();
            let ctx = Ctx {
                runtime: &runtime,
                peers: shared.view.peers(),
                actconn: shared.view.context().actconn.load(Ordering::Relaxed),
                now: shared.view.context().clock.now(),
                uptime: shared.started.elapsed(),
                started_unix: shared.started_unix,
                node: &shared.node,
            };
            session.line(text, &ctx)
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(answer.output.as_bytes())).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        }
        if answer.close || !complete {
            let _ = write.shutdown().await;
            return Ok(());
        }
    }
}
