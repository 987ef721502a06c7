//! A simulated server's process: its identity and boots, and the switch the driver flips to
//! crash and restart it.
//!
//! A server on a host of its own crashes by turmoil's `bounce` of that host: the host's software
//! restarts and binds nothing while the process is down. Servers on the shared host (no
//! host-level event of their own) crash in place: [`supervise`] stops the process's future,
//! which ends its connections, and boots a new one when it is up again. Both refuse new
//! connections while down and close the open ones as a kernel closes a dead process's sockets;
//! the shared host spares turmoil a host, which it charges on every step.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tokio::sync::Notify;

use crate::metrics::SharedRecorder;
use crate::scenario::ServersSpec;
use crate::tls_server::{run_server, ServerContext, ServerModel};

/// Whether a server process should run, shared by the driver (which flips it) and the host
/// software that runs the process.
#[derive(Debug)]
pub(crate) struct ProcessSwitch {
    up: Cell<bool>,
    /// Wakes the supervisor of a process on a shared host at each crash or restart.
    changed: Notify,
}

impl ProcessSwitch {
    fn new() -> Rc<Self> {
        Rc::new(Self {
            up: Cell::new(true),
            changed: Notify::new(),
        })
    }

    /// The process runs (false after a crash: nothing listens on its port).
    pub(crate) fn is_up(&self) -> bool {
        self.up.get()
    }

    /// Crashes (`false`) or restarts (`true`) the process. A supervised process stops and, if
    /// `up`, boots afresh the next time its host runs, even when it was up already (a restart).
    pub(crate) fn set(&self, up: bool) {
        self.up.set(up);
        self.changed.notify_one();
    }
}

/// One server's identity and the boots it went through, for its host's software.
#[derive(Clone)]
pub(crate) struct ServerSeed {
    index: usize,
    name: Rc<str>,
    pub(crate) port: u16,
    boots: Rc<Cell<u32>>,
    pub(crate) switch: Rc<ProcessSwitch>,
}

impl ServerSeed {
    /// Server `index`, named `name`, listening on `port`, up and not yet booted.
    pub(crate) fn new(index: usize, name: &str, port: u16) -> Self {
        Self {
            index,
            name: name.into(),
            port,
            boots: Rc::default(),
            switch: ProcessSwitch::new(),
        }
    }

    /// The context of a new boot: empty session cache, new ticket keys unless shared.
    pub(crate) fn boot(&self, spec: &ServersSpec, recorder: &SharedRecorder) -> ServerContext {
        let boot = self.boots.get();
        self.boots.set(boot + 1);
        ServerContext {
            name: self.name.clone(),
            model: Rc::new(RefCell::new(ServerModel::new(
                self.index as u16,
                boot,
                spec,
            ))),
            recorder: recorder.clone(),
            cpu: spec
                .cost
                .as_ref()
                .map(|c| Rc::new(crate::cost::ServerCpu::new(c))),
        }
    }
}

/// Runs `seed`'s process on a host it shares, for the whole run: boots it while its switch is
/// up, stops it (dropping the process and its connections) at every flip, and boots it again.
pub(crate) async fn supervise(
    seed: ServerSeed,
    spec: ServersSpec,
    recorder: SharedRecorder,
) -> turmoil::Result {
    loop {
        let flipped = seed.switch.changed.notified();
        if seed.switch.is_up() {
            let process = run_server(seed.boot(&spec, &recorder), seed.port);
            tokio::select! {
                biased;
                () = flipped => {}
                ended = process => return ended,
            }
        } else {
            flipped.await;
        }
    }
}
