//! The one per-connection proxy flow, generic over the network.
//!
//! inspect → choose → connect/retry → forward while learning from the response → log. A
//! connection's whole life is the sans-IO state machine in [`connection`]; [`flow`] drives it on
//! a [`Net`]. The daemon runs it on tokio sockets, the simulator on turmoil sockets; both call
//! exactly this code. Time comes from `tokio::time::Instant` only (virtual under turmoil) and
//! every `select!` is `biased;` so a simulation replays identically for a seed.

pub mod agent;
pub mod backend;
pub mod buffers;
mod check_conn;
pub mod check_log;
pub mod clock;
pub mod connection;
pub mod expiry;
pub mod flow;
pub mod forward;
pub mod frontend;
pub mod health;
pub mod listener;
pub mod log;
pub mod net;
pub mod peers;
pub mod process;
pub mod proxy_protocol;
pub mod resolve;
pub mod router;
pub mod runtime;
pub mod sessions;
pub mod tables;
pub mod termination;
#[cfg(test)]
mod testnet;
pub mod track;

pub use backend::{Backend, BackendTimeouts, ServerSlot};
pub use clock::Clock;
pub use connection::{Action, Connection};
pub use frontend::Frontend;
pub use listener::{serve, Listener};
pub use log::{ConnectionRecord, LineContext, LogSink};
pub use net::Net;
pub use process::{Process, ProcessError, ProcessView};
pub use termination::Termination;
