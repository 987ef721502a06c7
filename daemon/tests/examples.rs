//! Every example configuration shipped in `examples/` loads, validates and builds a runtime.

use tether_core::config::load_toml;
use tether_core::engine::runtime::build;

#[test]
fn shipped_examples_load_and_build() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("examples/ exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let config = load_toml(&path.display().to_string(), &text)
            .unwrap_or_else(|e| panic!("{} does not load:\n{e}", path.display()));
        let rt = build(&config, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            !rt.frontends.is_empty(),
            "{} has no frontend",
            path.display()
        );
        seen += 1;
    }
    assert!(seen > 0, "no example configuration found");
}
