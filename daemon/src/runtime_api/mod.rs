//! HAProxy's runtime API (the "stats socket") on a unix socket, so the tools operators already
//! run against HAProxy (`socat` one-liners, `hatop`, the Prometheus exporter's unix mode,
//! Ansible's haproxy module) work against tether unchanged.
//!
//! `command` parses bytes, `session` holds one conversation, `show`/`servers`/`tables` answer
//! the command families, `listener` owns the socket. Server changes go through the stats page's
//! admin actions and `show stat` is the stats page's CSV, so both front doors always agree.

pub mod command;
pub mod listener;
pub mod servers;
pub mod session;
pub mod show;
pub mod tables;

use std::time::Duration;

use tether_core::engine::runtime::Runtime;
use tether_core::time::Timestamp;

pub use listener::{serve_runtime_api, RuntimeApiListener};

/// What a command reads: the runtime in force and a few process facts, taken once per line.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The configuration and state in force.
    pub runtime: &'a Runtime,
    /// The peers service, when one runs (where table entries came from).
    pub peers: Option<&'a tether_core::engine::peers::PeersView>,
    /// Connections open in the process.
    pub actconn: u64,
    /// The engine clock (stick-table expiry).
    pub now: Timestamp,
    /// Time since the listener started.
    pub uptime: Duration,
    /// Start time, seconds since the epoch.
    pub started_unix: u64,
    /// Host name (`show info`'s `node`).
    pub node: &'a str,
}
