//! HAProxy's peers protocol (v2.1, as HAProxy 2.6 speaks it): stick tables replicated between
//! balancers, tether and HAProxy alike.
//!
//! Three layers, each usable alone:
//! - [`wire`]: the codec, zero-copy over `&[u8]` (hello/status lines, messages, varints).
//! - [`session`]: one connection as a sans-IO state machine (bytes and `now` in; bytes, timeouts
//!   and [`Event`]s out). It never reads a clock or a socket.
//! - [`crate::engine::peers`]: the driver over any [`Net`](crate::engine::Net), so the daemon
//!   (tokio) and the simulator (turmoil) run the same code.
//!
//! The stick table side is [`crate::stick::UpdateFeed`]: a [`SharedTable`] shared by a peers
//! section records every store with an update id and its origin (local or a peer), so each
//! peer connection pushes "updates since the last one the peer acknowledged" and never echoes
//! an update it learned from a peer. Conflicts resolve as in HAProxy: last writer wins.
//!
//! # Starting the peers service for a process
//!
//! ```ignore
//! use tether_core::engine::peers::{self, PeersService};
//! // `section` is the `[peers]` config (config::peers::PeersSection); `process` a running
//! // `Process<N>` whose backends' stick tables say `peers = "<section.name>"`.
//! let service: PeersService = peers::start(
//!     net.clone(),                       // any N: Net (TokioNet, TurmoilNet, ...)
//!     section.clone(),
//!     std::sync::Arc::new(process.view()), // a TableSource: follows reloads
//!     process.context().clock,           // the engine clock (virtual under turmoil)
//!     seed,                              // randomness for reconnect jitter, passed in
//! ).await?;                              // binds `section.bind` first (errors are typed)
//! service.status();                      // per peer: state, ages, counters (stats pages)
//! service.stop();                        // or drop it
//! ```
//!
//! A [`TableSource`](crate::engine::peers::TableSource) says which tables are shared and how
//! their server ids map to names; [`ProcessView`](crate::engine::ProcessView) implements it from
//! the runtime in force, so a reload is followed without restarting the service.
//!
//! # Pushing a whole table (upgrade, tests)
//!
//! [`push_all`](crate::engine::peers::push_all) connects to a peers address as a named peer,
//! sends every live entry of the given tables as timed updates, ends with "resync finished" and
//! waits for the receiver's confirmation, as HAProxy's old process teaches the new one on a
//! reload. The receiving process needs nothing special: its running service applies the entries
//! (the pushing name must be in its peer list, typically its own local name).
//!
//! [`SharedTable`]: crate::engine::tables::SharedTable
//! [`Event`]: session::Event

pub mod session;
pub mod wire;

pub use session::{
    Event, LocalTable, OutgoingUpdate, RemoteUpdate, Session, SessionConfig, SessionError,
    SessionStats,
};
pub use wire::WireError;
