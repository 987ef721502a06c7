//! cargo-fuzz target: see `tether_fuzz::ticket_keys` for the invariants it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_fuzz::ticket_keys(data));
