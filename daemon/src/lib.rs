//! The tether daemon as a library: the building blocks the `tether` binary wires together,
//! shared with its integration tests.

pub mod ca_files;
pub mod check;
pub mod children;
pub mod config_source;
pub mod fdlimit;
pub mod finding;
pub mod haproxy;
pub mod loadgen;
pub mod logsink;
pub mod manuals;
pub mod memory;
pub mod net;
pub mod probe;
pub mod run;
pub mod runtime_api;
pub mod sim_calibrate;
pub mod sim_check;
pub mod sim_cli;
pub mod sim_compare;
pub mod sim_merge;
pub mod sim_seeds;
pub mod sim_sweep;
pub mod stats;
pub mod syslog;
pub mod table_cli;
pub mod threads;
pub mod upgrade;
