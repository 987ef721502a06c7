//! The `tether` library: the daemon's building blocks, shared by the binary and its tests.

pub mod probe;
#[doc(hidden)]
pub mod testbed;
