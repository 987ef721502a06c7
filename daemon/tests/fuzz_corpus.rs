//! The fuzz targets' invariants over their seed corpora and every regression input kept in
//! `fuzz/regressions/<target>/` (a crash the fuzzer found, minimised): plain `cargo test` runs
//! them, so nightly and cargo-fuzz are only needed to search for new inputs.

#[path = "../../fuzz/src/lib.rs"]
#[allow(unexpected_cfgs)]
mod checks;

use std::path::Path;

/// Runs `check` on every file of `fuzz/<kind>/<target>`; the number of inputs run.
fn run_dir(kind: &str, target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{target} fails on {}", f.display());
    }
    files.len()
}

#[test]
fn every_corpus_and_regression_input_holds_the_invariants() {
    for (target, check) in checks::targets() {
        let seeds = run_dir("corpus", target, check);
        assert!(
            seeds > 0,
            "no seed corpus for {target} in fuzz/corpus/{target}"
        );
        run_dir("regressions", target, check);
    }
}

#[test]
fn the_lying_tlv_regression_is_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/proxy_header");
    let data = std::fs::read(dir.join("v2_tlv_lying_length")).unwrap();
    assert!(tether_core::engine::proxy_protocol::parse(&data).is_err());
}

#[test]
fn the_new_targets_seeds_reach_their_invariants() {
    // A seed the parser rejects checks nothing past "no panic": the seeds must load.
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let scenario = std::fs::read_to_string(fuzz.join("scenario_toml/default.toml")).unwrap();
    assert!(tether_sim::scenario::Scenario::from_toml(&scenario).is_ok());
    let get = std::fs::read(fuzz.join("stats_request/get_page_auth")).unwrap();
    let (req, body) = tether::stats::server::parse_head(&get[..get.len() - 4]).unwrap();
    assert_eq!((req.path.as_str(), body), ("/stats", 0));
    let bad = std::fs::read(fuzz.join("stats_request/chunked_and_oversized")).unwrap();
    assert!(tether::stats::server::parse_head(&bad[..bad.len() - 4]).is_err());
}

#[test]
fn the_ticket_key_seeds_teach_the_learner() {
    // Each captured pair (full handshake, then resumption by the same client) must teach the
    // learner a name that routes a second client, or the target checks little past "no panic".
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/ticket_keys");
    for seed in ["tls13", "tls12_ticket"] {
        let data = std::fs::read(dir.join(seed)).unwrap();
        let trace = checks::ticket_keys::trace(&data, false);
        let last_decision = trace.iter().rfind(|t| t.starts_with("decide")).unwrap();
        assert!(
            last_decision.contains("Hit(TicketKey)"),
            "{seed}: {trace:#?}"
        );
    }
}

#[test]
fn a_bare_option_line_is_an_error_at_its_line() {
    // Found by the haproxy_cfg fuzzer: `option` with no name used to panic the importer.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/haproxy_cfg");
    let text = std::fs::read_to_string(dir.join("bare_option.cfg")).unwrap();
    let err = tether::haproxy::convert_haproxy("bare_option.cfg", &text)
        .expect_err("a bare `option` is refused")
        .to_string();
    assert!(
        err.contains("bare_option.cfg:3") && err.contains("option name"),
        "{err}"
    );
}
