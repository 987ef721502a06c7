//! The tether daemon as a library: the building blocks the `tether` binary wires together,
//! shared with its integration tests.

pub mod logsink;
pub mod net;
pub mod probe;
pub mod run;
#[doc(hidden)]
pub mod testbed;
