//! `tether check` points configs that cannot place TLS 1.3 resumptions at `ticket-key`.

use std::path::Path;
use tether::check::{check_file, check_text, ConfigKind, Severity};

const NEEDLE: &str = "TLS 1.3 clients never resume";

#[test]
fn a_haproxy_cfg_sticking_on_the_session_id_is_pointed_at_ticket_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-haproxy.cfg");
    let r = check_file(&path);
    let hits: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.what.contains(NEEDLE))
        .collect();
    assert_eq!(hits.len(), 1, "{r}");
    let f = hits[0];
    assert_eq!((f.line, f.severity), (55, Severity::Info), "{f}");
    assert!(f.what.contains("backend app"), "{f}");
    assert!(f.why.contains("16-byte key name"), "{f}");
    assert!(f.fix.contains("ticket-key"), "{f}");
}

const NATIVE: &str = r#"[[frontend]]
name = "main"
bind = ["127.0.0.1:9443"]
backend = "app"

[[backend]]
name = "app"
CHAIN

[[backend.server]]
name = "s1"
address = "127.0.0.1:8443"
"#;

fn findings(chain: &str) -> Vec<tether::check::Finding> {
    let text = NATIVE.replace("CHAIN", chain);
    check_text("tether.toml", ConfigKind::Toml, &text)
        .findings
        .into_iter()
        .filter(|f| f.what.contains(NEEDLE))
        .collect()
}

#[test]
fn a_native_chain_without_ticket_key_or_source_gets_the_advice_once() {
    let f = findings("affinity = [\"session-id\", \"ticket\", \"psk\"]");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].line, 8);
    assert!(findings("affinity = [\"session-id\", \"ticket\", \"ticket-key\"]").is_empty());
    assert!(findings("affinity = [\"session-id\", \"ticket\", \"psk\", \"source\"]").is_empty());
}

#[test]
fn a_bad_ticket_key_name_span_is_an_error_with_its_line_and_a_fix() {
    let text = NATIVE.replace(
        "CHAIN",
        "affinity = [\"ticket-key\"]\nticket-key-name = { offset = 2, length = 40 }",
    );
    let r = check_text("tether.toml", ConfigKind::Toml, &text);
    let e: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert_eq!(e.len(), 1, "{r}");
    assert_eq!(e[0].line, 9, "{r}");
    assert!(e[0].what.contains("length 40"), "{r}");
    assert!(e[0].fix.contains("length = 16"), "{r}");
}
