//! The new process's side of an upgrade: before binding anything, take the old process's
//! listening sockets and stick tables from the handover channel (standard input); once serving,
//! say so, then keep applying the entries the old process learned while it drained.

use std::os::fd::AsFd;

use anyhow::{bail, Context as _, Result};
use tether_core::engine::runtime::Runtime;
use tether_core::Timestamp;

use super::handover::{Channel, Message};
use super::table_transfer::{self, Entry};
use super::{inherited, HANDOVER_ENV, READY_TIMEOUT};
use crate::run::DaemonView;

/// What the old process handed over, until this one serves.
#[derive(Debug)]
pub struct Incoming {
    channel: Channel,
    entries: Vec<Entry>,
}

impl Incoming {
    /// When started by an upgrade (`TETHER_HANDOVER` set): reads the sockets (kept in
    /// [`inherited`]) and the entries until the old process says start. `None` otherwise.
    pub fn receive() -> Result<Option<Incoming>> {
        match std::env::var_os(HANDOVER_ENV) {
            None => return Ok(None),
            Some(v) if v == "stdin" => {}
            Some(v) => bail!(
                "{HANDOVER_ENV}={}: only `stdin` is understood",
                v.to_string_lossy()
            ),
        }
        let fd = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("upgrade: taking the handover channel from standard input")?;
        let channel = Channel::from_fd(fd);
        channel.set_timeout(Some(READY_TIMEOUT)).with_context(|| {
            format!("upgrade: {HANDOVER_ENV} is set but standard input is not the handover socket")
        })?;
        let mut entries = Vec::new();
        let mut sockets = 0;
        loop {
            match channel.recv().context("upgrade: reading the handover")? {
                Some((Message::Listener(name), Some(fd))) => {
                    inherited::offer(name, fd);
                    sockets += 1;
                }
                Some((Message::Entries(chunk), None)) => {
                    entries.extend(table_transfer::decode(&chunk)?);
                }
                Some((Message::Start, None)) => break,
                Some((m, _)) => bail!("upgrade: unexpected {m:?} before start"),
                None => bail!("upgrade: the old process closed the handover before start"),
            }
        }
        tracing::info!(
            sockets,
            entries = entries.len(),
            "upgrade: state received from the old process"
        );
        Ok(Some(Incoming { channel, entries }))
    }

    /// Stores the received entries in `runtime`, before it serves (its clock starts at zero).
    pub fn restore_into(&mut self, runtime: &Runtime) {
        let done = table_transfer::restore(runtime, &self.entries, Timestamp(0));
        self.entries = Vec::new();
        tracing::info!(
            stored = done.stored,
            skipped = done.skipped,
            "upgrade: stick tables carried over"
        );
    }

    /// Tells the old process this one serves, then applies its later entries to whatever
    /// runtime is in force, on a thread of its own, until it says it is done.
    pub fn ready(self, view: DaemonView) -> Result<()> {
        self.channel
            .send(&Message::Ready(std::process::id()), None)
            .context("upgrade: telling the old process we serve")?;
        self.channel.set_timeout(None)?;
        std::thread::Builder::new()
            .name("upgrade-entries".into())
            .spawn(move || follow(&self.channel, &view))
            .context("upgrade: starting the entries thread")?;
        Ok(())
    }
}

/// Applies entries until `Final` or the end of the channel.
fn follow(channel: &Channel, view: &DaemonView) {
    let mut stored = 0;
    loop {
        match channel.recv() {
            Ok(Some((Message::Entries(chunk), None))) => match table_transfer::decode(&chunk) {
                Ok(entries) => {
                    let now = view.context().clock.now();
                    stored += table_transfer::restore(&view.runtime(), &entries, now).stored;
                }
                Err(e) => tracing::warn!(error = %e, "upgrade: entries dropped"),
            },
            Ok(Some((Message::Final, _))) | Ok(None) => break,
            Ok(Some((m, _))) => tracing::warn!(?m, "upgrade: unexpected message ignored"),
            Err(e) => {
                tracing::warn!(error = %e, "upgrade: handover channel failed");
                break;
            }
        }
    }
    tracing::info!(
        stored,
        "upgrade: the old process is done; entries it learned meanwhile applied"
    );
}
