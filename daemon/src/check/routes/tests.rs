//! Route findings on haproxy.cfg files and native configs.

use crate::check::{check_text, ConfigKind};
use crate::finding::Severity;

const BACKENDS: &str = "backend b\n  timeout connect 1s\n  timeout server 1s\n  \
    server s1 127.0.0.1:8443\nbackend api\n  timeout connect 1s\n  timeout server 1s\n  \
    server a1 127.0.0.1:8444\n";

fn warnings(cfg: &str) -> Vec<(usize, String)> {
    check_text("t.cfg", ConfigKind::Haproxy, cfg)
        .findings
        .into_iter()
        .filter(|f| f.severity == Severity::Warning)
        .map(|f| (f.line, f.what))
        .collect()
}

fn front(lines: &str) -> String {
    format!(
        "frontend f\n  bind 127.0.0.1:9443\n  timeout client 1m\n  \
         tcp-request inspect-delay 5s\n{lines}  default_backend b\n{BACKENDS}"
    )
}

#[test]
fn a_reject_after_accept_hello_is_shadowed() {
    let w = warnings(&front(
        "  tcp-request content accept if { req_ssl_hello_type 1 }\n  \
         tcp-request content reject if { req.ssl_sni -m end .evil.example }\n  \
         use_backend api if { req.ssl_sni -i api.example }\n",
    ));
    let shadow: Vec<_> = w
        .iter()
        .filter(|(_, m)| m.contains("never fires"))
        .collect();
    assert_eq!(shadow.len(), 1, "{w:#?}");
    assert_eq!(shadow[0].0, 6, "{w:#?}");
    assert!(shadow[0].1.contains("line 5"), "{w:#?}");
    // Written the other way round, nothing is shadowed.
    let w = warnings(&front(
        "  tcp-request content reject if { req.ssl_sni -m end .evil.example }\n  \
         tcp-request content accept if { req_ssl_hello_type 1 }\n  \
         use_backend api if { req.ssl_sni -i api.example }\n",
    ));
    assert!(!w.iter().any(|(_, m)| m.contains("never fires")), "{w:#?}");
}

#[test]
fn capitals_without_i_overlaps_and_unreached_backends() {
    let w = warnings(&front(
        "  acl lan src 10.0.0.0/8\n  acl lab src 10.1.0.0/16\n  \
         tcp-request connection reject if lab\n  tcp-request connection accept if lan\n  \
         use_backend api if { req.ssl_sni Api.example }\n",
    ));
    assert!(
        w.iter()
            .any(|(l, m)| *l == 9 && m.contains("`Api.example` has capitals")),
        "{w:#?}"
    );
    assert!(
        w.iter()
            .any(|(l, m)| *l == 8 && m.contains("10.0.0.0/8 here overlaps 10.1.0.0/16")),
        "{w:#?}"
    );
    let w = warnings(&front(""));
    assert!(
        w.iter()
            .any(|(l, m)| *l == 10 && m == "backend api receives no connection"),
        "{w:#?}"
    );
}

#[test]
fn native_configs_get_the_same_findings_on_their_lines() {
    let text = r#"
[[frontend]]
name = "main"
bind = ["127.0.0.1:9443"]
backend = "web"

[[frontend.route]]
action = "accept"
if = { client-hello = true }

[[frontend.route]]
if = { server-name = ["*.evil.example"] }
action = "reject"

[[backend]]
name = "web"
[[backend.server]]
name = "w1"
address = "127.0.0.1:8001"
"#;
    let r = check_text("t.toml", ConfigKind::Toml, text);
    let w: Vec<(usize, String)> = r
        .findings
        .iter()
        .map(|f| (f.line, f.what.clone()))
        .collect();
    assert!(
        w.iter().any(|(l, m)| *l == 11 && m.contains("never fires")),
        "{w:#?}"
    );
}
