//! tether-core: the sans-IO heart of tether.
//!
//! Everything that decides something lives here: TLS hello parsing, the stick table, balancing,
//! server health, retries and the affinity chain. None of it owns a socket, reads a clock or draws
//! a random number: bytes and a [`Timestamp`] go in, decisions come out. That is what lets the
//! daemon (tokio sockets) and the simulator (turmoil sockets) run byte-for-byte the same logic,
//! through the one async [`engine`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod affinity;
pub mod balance;
pub mod config;
pub mod dns;
pub mod engine;
pub mod peers;
pub mod progress;
pub mod retry;
pub mod route;
pub mod server;
pub mod stick;
pub mod time;
pub mod tls;

pub use progress::Progress;
pub use server::ServerId;
pub use time::Timestamp;
pub use tls::{
    ClientHello, ClientHelloParser, HelloOutcome, Malformed, ProtocolVersion, ServerEvent,
    ServerFlight, ServerHelloInfo, SessionId, TicketExt,
};
