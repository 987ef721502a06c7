//! `[[frontend.route]]` loading: the rules as the engine gets them, and every mistake located.

use crate::config::load_toml;
use crate::route::{Condition, NameMatch, NameMethod, RouteAction, Test};

fn config(routes: &str) -> String {
    format!(
        r#"
[[frontend]]
name = "main"
bind = ["127.0.0.1:9443"]
backend = "web"
{routes}
[[backend]]
name = "web"
[[backend.server]]
name = "w1"
address = "127.0.0.1:8001"

[[backend]]
name = "api"
[[backend.server]]
name = "a1"
address = "127.0.0.1:8002"
"#
    )
}

/// A temporary list file with `text`, removed on drop.
struct ListFile(std::path::PathBuf);
impl ListFile {
    fn new(tag: &str, text: &str) -> ListFile {
        let path = std::env::temp_dir().join(format!("tether-route-{tag}-{}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        ListFile(path)
    }
    fn path(&self) -> String {
        self.0.display().to_string()
    }
}
impl Drop for ListFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn rules_load_in_order_with_their_conditions_and_actions() {
    let list = ListFile::new("ok", "# blocked\n10.66.0.0/16\n\n192.0.2.0/24 # lab\n");
    let text = config(&format!(
        r#"
[[frontend.route]]
name = "blocklist"
if = {{ source-file = "{}" }}
action = "reject"

[[frontend.route]]
if = {{ server-name = ["API.example.com", "*.api.example.com"] }}
use-backend = "api"

[[frontend.route]]
unless = {{ any = [{{ source = ["10.0.0.0/8"] }}, {{ not = {{ alpn = ["h2"] }} }}] }}
action = "accept"
"#,
        list.path()
    ));
    let c = load_toml("r.toml", &text).unwrap();
    let names: Vec<&str> = c.backends.iter().map(|b| b.name.as_str()).collect();
    let rules = super::compile_rules(&c.frontends[0].routes, &names).unwrap();
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[0].label, "blocklist");
    assert_eq!(rules[0].action, RouteAction::Reject);
    assert_eq!(
        rules[0].when,
        Condition::Test(Test::Source(vec![
            "10.66.0.0/16".parse().unwrap(),
            "192.0.2.0/24".parse().unwrap()
        ]))
    );
    assert_eq!(rules[1].action, RouteAction::UseBackend(1));
    let name = |method, v: &str| {
        Condition::Test(Test::ServerName(NameMatch {
            method,
            ignore_case: true,
            values: vec![v.into()],
        }))
    };
    assert_eq!(
        rules[1].when,
        Condition::Any(vec![
            name(NameMethod::Exact, "API.example.com"),
            name(NameMethod::Wildcard, "api.example.com")
        ])
    );
    assert_eq!(rules[2].action, RouteAction::Accept);
    assert!(matches!(&rules[2].when, Condition::Not(c) if matches!(**c, Condition::Any(_))));
    // A converted config prints and reads back the same rules.
    let again = load_toml("r2.toml", &toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(again.frontends[0].routes, c.frontends[0].routes);
}

#[test]
fn every_mistake_names_its_line_and_a_fix() {
    let empty = ListFile::new("empty", "# nothing yet\n\n");
    let text = config(&format!(
        r#"
[[frontend.route]]
if = {{ server-name = ["a.example"] }}
use-backend = "nope"

[[frontend.route]]
if = {{ source = ["10.0.0.0/33"] }}
action = "reject"

[[frontend.route]]
if = {{ source-file = "/nonexistent/tether/blocked.txt" }}
action = "reject"

[[frontend.route]]
if = {{ source-file = "{}" }}
action = "reject"

[[frontend.route]]
if = {{ alpn = ["h2"] }}
action = "reject"
use-backend = "api"

[[frontend.route]]
if = {{ }}
action = "accept"
"#,
        empty.path()
    ));
    let errs = load_toml("r.toml", &text).unwrap_err().0;
    let got: Vec<(usize, String)> = errs.iter().map(|e| (e.line, e.message.clone())).collect();
    assert_eq!(got.len(), 6, "{got:#?}");
    assert_eq!(got[0], (9, "unknown backend \"nope\"".to_string()));
    assert_eq!(got[1].0, 12);
    assert!(got[1].1.contains("10.0.0.0/33"), "{got:?}");
    assert_eq!(got[2].0, 16);
    assert!(
        got[2].1.starts_with("cannot read list file /nonexistent"),
        "{got:?}"
    );
    assert_eq!(got[3].0, 20);
    assert!(got[3].1.ends_with("holds no entry"), "{got:?}");
    assert_eq!(got[4].0, 25);
    assert!(got[4].1.contains("exactly one of use-backend and action"));
    assert_eq!(got[5], (29, "an empty condition".to_string()));
    assert!(errs.iter().all(|e| !e.fix.is_empty()));
}

#[test]
fn a_destination_test_needs_a_specific_bind_address() {
    let text = config(
        "[[frontend.route]]\nif = { destination = [\"192.0.2.10\"] }\nuse-backend = \"api\"\n",
    )
    .replace("127.0.0.1:9443", "0.0.0.0:9443");
    let errs = load_toml("r.toml", &text).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].message.contains("destination test"), "{errs:?}");
}

#[test]
fn versions_and_ports_read_their_forms() {
    assert_eq!(super::dotted_range("3.3"), Some((0x0303, 0x0303)));
    assert_eq!(super::dotted_range("3.1:"), Some((0x0301, u16::MAX)));
    assert_eq!(super::dotted_range("3.3:3.1"), None);
    assert_eq!(
        super::PortSpec::Range("8000-8100".into()).range(),
        Some((8000, 8100))
    );
    assert_eq!(super::PortSpec::Range("9-1".into()).range(), None);
}

#[test]
fn a_regex_name_match_loads_and_a_bad_one_names_its_line() {
    let good = config(
        "[[frontend.route]]\nif = { name-match = { method = \"regex\", values = ['^api[0-9]+\\.example$'], ignore-case = false } }\nuse-backend = \"api\"\n",
    );
    let c = load_toml("r.toml", &good).unwrap();
    let rules = super::compile_rules(&c.frontends[0].routes, &["web", "api"]).unwrap();
    match &rules[0].when {
        Condition::Test(Test::ServerNameRegex(r)) => {
            assert_eq!(r.patterns(), [r"^api[0-9]+\.example$"]);
            assert!(!r.ignore_case());
            assert!(r.matches(b"api7.example") && !r.matches(b"API7.example"));
        }
        other => panic!("{other:?}"),
    }
    let bad = config(
        "[[frontend.route]]\nif = { name-match = { method = \"regex\", values = [\"ok\", \"api(\"] } }\nuse-backend = \"api\"\n",
    );
    let errs = load_toml("r.toml", &bad).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    let line = bad.lines().position(|l| l.contains("api(")).unwrap() + 1;
    assert_eq!(errs[0].line, line, "{errs:?}");
    assert!(
        errs[0]
            .message
            .contains("invalid regular expression \"api(\""),
        "{errs:?}"
    );
    assert!(errs[0].fix.contains("regular expression"), "{errs:?}");
}
