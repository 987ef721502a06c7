//! The old process's side of an upgrade: start the successor, hand it the sockets and the
//! tables, wait until it serves; later send what was learned meanwhile and say it is over.
//!
//! The conversation runs on a blocking thread (`spawn_blocking`): the connections this process
//! still serves never wait for it.

use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use tether_core::engine::runtime::Runtime;
use tether_core::Timestamp;

use super::handover::{Channel, HandoverError, Message, MAX_MESSAGE};
use super::table_transfer::{self, Entry};
use super::{Launch, HANDOVER_ENV, READY_TIMEOUT};

/// Why an upgrade was abandoned (the old process keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The new binary could not be started.
    #[error("cannot start {exe}: {source}")]
    Spawn {
        /// The program.
        exe: String,
        /// What `exec` said.
        #[source]
        source: std::io::Error,
    },
    /// The conversation with the new process failed (it exited, or did not answer within the
    /// ready timeout).
    #[error("the new process (pid {pid}) did not take over: {source}")]
    Handover {
        /// The new process.
        pid: u32,
        /// What went wrong.
        #[source]
        source: HandoverError,
    },
    /// The new process answered something other than ready.
    #[error("the new process (pid {pid}) answered {got:?} instead of ready")]
    Unexpected {
        /// The new process.
        pid: u32,
        /// Its answer.
        got: Option<Message>,
    },
}

/// A listening socket under its registry name ([`super::inherited::name`]).
pub type NamedSocket = (String, OwnedFd);

/// A new process that serves on this one's sockets.
#[derive(Debug)]
pub struct Successor {
    channel: Arc<Channel>,
    pid: u32,
    sent: Vec<Entry>,
}

impl Successor {
    /// Starts `launch` with the handover channel as its standard input, sends it `listeners`
    /// (registry name, socket) and `entries`, and waits until it reports serving. On any
    /// failure the new process is killed and reaped.
    pub async fn start(
        launch: Launch,
        listeners: Vec<NamedSocket>,
        entries: Vec<Entry>,
    ) -> Result<Successor, UpgradeError> {
        tokio::task::spawn_blocking(move || start_blocking(&launch, &listeners, entries))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// The new process's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends the entries of `runtime` (at `now`) that are new or moved since last sent.
    pub async fn send_changes(&mut self, runtime: &Runtime, now: Timestamp) -> usize {
        let current = table_transfer::snapshot(runtime, now);
        let changed = table_transfer::changed_since(&self.sent, &current);
        self.sent = current;
        let count = changed.len();
        let channel = self.channel.clone();
        let result = tokio::task::spawn_blocking(move || send_entries(&channel, &changed)).await;
        match result {
            Ok(Ok(())) => count,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "stick-table changes not sent to the new process");
                0
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Sends the last changes and says no more follow.
    pub async fn finish(mut self, runtime: &Runtime, now: Timestamp) -> usize {
        let n = self.send_changes(runtime, now).await;
        if let Err(e) = self.channel.send(&Message::Final, None) {
            tracing::debug!(error = %e, "the new process no longer listens on the handover channel");
        }
        n
    }
}

fn start_blocking(
    launch: &Launch,
    listeners: &[NamedSocket],
    entries: Vec<Entry>,
) -> Result<Successor, UpgradeError> {
    let spawn_error = |source| UpgradeError::Spawn {
        exe: launch.exe.display().to_string(),
        source,
    };
    let (channel, theirs) = Channel::pair().map_err(spawn_error)?;
    let mut child = Command::new(&launch.exe)
        .args(&launch.args)
        .env(HANDOVER_ENV, "stdin")
        .stdin(Stdio::from(theirs))
        .spawn()
        .map_err(spawn_error)?;
    let pid = child.id();
    match converse(&channel, listeners, &entries, pid) {
        Ok(()) => Ok(Successor {
            channel: Arc::new(channel),
            pid,
            sent: entries,
        }),
        Err(e) => {
            abandon(&mut child);
            Err(e)
        }
    }
}

/// Sends the state, then waits for the new process to report ready.
fn converse(
    channel: &Channel,
    listeners: &[NamedSocket],
    entries: &[Entry],
    pid: u32,
) -> Result<(), UpgradeError> {
    let failed = |source: HandoverError| UpgradeError::Handover { pid, source };
    for (name, fd) in listeners {
        channel
            .send(&Message::Listener(name.clone()), Some(fd.as_fd()))
            .map_err(|e| failed(e.into()))?;
    }
    send_entries(channel, entries).map_err(|e| failed(e.into()))?;
    channel
        .send(&Message::Start, None)
        .map_err(|e| failed(e.into()))?;
    channel
        .set_timeout(Some(READY_TIMEOUT))
        .map_err(|e| failed(e.into()))?;
    match channel.recv().map_err(failed)? {
        Some((Message::Ready(p), None)) if p == pid => Ok(()),
        other => Err(UpgradeError::Unexpected {
            pid,
            got: other.map(|(m, _)| m),
        }),
    }
}

fn send_entries(channel: &Channel, entries: &[Entry]) -> std::io::Result<()> {
    for chunk in table_transfer::encode(entries, MAX_MESSAGE - 1) {
        channel.send(&Message::Entries(chunk), None)?;
    }
    Ok(())
}

/// Kills a new process that did not take over, and reaps it.
fn abandon(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// What a running daemon hands over: its listening sockets (frontends, and the stats
/// listener, with its configured address, when there is one) under their registry names, and
/// its stick-table entries now.
pub fn state_of(
    daemon: &crate::run::Daemon,
    stats: Option<(&str, &crate::stats::StatsListener)>,
) -> std::io::Result<(Vec<NamedSocket>, Vec<Entry>)> {
    use super::inherited::{name, Role};
    let mut sockets = Vec::new();
    for (bind, socket) in daemon.listeners() {
        sockets.push((
            name(Role::Frontend, &bind),
            socket.as_fd().try_clone_to_owned()?,
        ));
    }
    if let Some((bind, stats)) = stats {
        sockets.push((name(Role::Stats, bind), stats.socket()?));
    }
    let now = daemon.context().clock.now();
    Ok((sockets, table_transfer::snapshot(daemon.runtime(), now)))
}
