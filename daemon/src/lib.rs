//! The tether daemon as a library: what the `tether` binary's subcommands call.
pub mod check;
pub mod haproxy;
