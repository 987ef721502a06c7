//! `tether check` on native TOML: load errors with file:line and fix, then affinity advice.

use tether::check::{check_text, ConfigKind, Severity};

const BASE: &str = r#"[[frontend]]
name = "main"
bind = ["127.0.0.1:9443"]
backend = "app"

[[backend]]
name = "app"
affinity = ["session-id", "ticket", "psk", "source"]
timeout-connect = "10s"

[backend.stick-table]
size = "60k"

[[backend.server]]
name = "s1"
address = "127.0.0.1:8443"
"#;

fn single_error(text: &str) -> tether::check::Finding {
    let r = check_text("tether.toml", ConfigKind::Toml, text);
    assert_eq!(r.findings.len(), 1, "{r}");
    assert_eq!(r.findings[0].severity, Severity::Error);
    r.findings[0].clone()
}

#[test]
fn a_good_config_has_no_findings() {
    let r = check_text("tether.toml", ConfigKind::Toml, BASE);
    assert!(r.findings.is_empty(), "{r}");
}

#[test]
fn unknown_key() {
    let f = single_error(&BASE.replace("name = \"s1\"", "name = \"s1\"\nwieght = 3"));
    assert_eq!(f.line, 16);
    assert!(f.what.contains("unknown key `wieght`"), "{}", f.what);
    assert!(f.fix.contains("weight"), "{}", f.fix);
}

#[test]
fn bad_duration() {
    let f = single_error(&BASE.replace("\"10s\"", "\"10 s\""));
    assert_eq!(f.line, 9);
    assert!(f.what.contains("backend.app.timeout-connect"), "{}", f.what);
    assert!(f.fix.contains("timeout-connect = \"10s\""), "{}", f.fix);
}

#[test]
fn bad_size() {
    let f = single_error(&BASE.replace("\"60k\"", "\"60KB\""));
    assert_eq!(f.line, 12);
    assert!(f.fix.contains("size = \"60k\""), "{}", f.fix);
}

#[test]
fn missing_backend() {
    let f = single_error(&BASE.replace("backend = \"app\"", "backend = \"web\""));
    assert_eq!(f.line, 4);
    assert!(f.what.contains("unknown backend \"web\""), "{}", f.what);
    assert_eq!(
        f.fix,
        "write one of the defined backends: backend = \"app\""
    );
}

#[test]
fn session_id_only_affinity_gets_ticket_advice() {
    let r = check_text(
        "tether.toml",
        ConfigKind::Toml,
        &BASE.replace(
            "\"session-id\", \"ticket\", \"psk\", \"source\"",
            "\"session-id\"",
        ),
    );
    assert!(!r.has_errors(), "{r}");
    let f = r
        .findings
        .iter()
        .find(|f| f.what.contains("without ticket"))
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(f.line, 8);
    assert!(f.fix.contains("\"ticket\""));
}

#[test]
fn content_detection_without_extension() {
    use std::path::Path;
    use tether::check::detect_kind;
    assert_eq!(detect_kind(Path::new("x"), BASE), ConfigKind::Toml);
    assert_eq!(
        detect_kind(Path::new("x"), "# c\nglobal\n    maxconn 1\n"),
        ConfigKind::Haproxy
    );
}

#[test]
fn a_clear_stats_password_is_a_warning_on_its_line() {
    let text = format!(
        "{BASE}\n[stats]\nbind = \"127.0.0.1:1936\"\n\n[stats.auth]\nuser = \"admin\"\n\
         password = \"s3cret\"\n"
    );
    let r = check_text("t.toml", ConfigKind::Toml, &text);
    let line = text
        .lines()
        .position(|l| l.starts_with("password"))
        .unwrap()
        + 1;
    let w: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.what.contains("in clear"))
        .collect();
    assert_eq!(w.len(), 1, "{r}");
    assert_eq!((w[0].severity, w[0].line), (Severity::Warning, line));
    assert!(!r.has_errors(), "{r}");
    assert!(!r.to_string().contains("s3cret"), "{r}");
}
