//! The `tether` binary: the production daemon and its CLI.
fn main() {}
