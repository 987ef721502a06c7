//! cargo-fuzz target: see `tether_fuzz::scenario_toml` for the invariants it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_fuzz::scenario_toml(data));
