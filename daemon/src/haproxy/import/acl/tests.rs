//! ACL declarations and conditions, judged by where connections land.

use super::super::test_routes::{route, Client};
use super::super::test_support::{errors, import_text};
use tether_core::config::Condition;

const BACKENDS: &str = "backend web\n  timeout connect 1s\n  timeout server 1s\n  \
    server w1 127.0.0.1:8001\nbackend api\n  timeout connect 1s\n  timeout server 1s\n  \
    server a1 127.0.0.1:8002\nbackend other\n  timeout connect 1s\n  timeout server 1s\n  \
    server o1 127.0.0.1:8003\n";

fn frontend(lines: &str) -> super::super::Import {
    import_text(&format!(
        "frontend fe\n  bind 127.0.0.1:9443\n  timeout client 1m\n  \
         tcp-request inspect-delay 5s\n{lines}  default_backend web\n{BACKENDS}"
    ))
}

fn to(im: &super::super::Import, src: &str, sni: Option<&str>) -> String {
    route(
        im,
        0,
        &Client {
            src,
            sni,
            tls: true,
        },
    )
    .0
}

#[test]
fn named_anonymous_negated_ored_and_anded_acls_route_as_haproxy() {
    let im = frontend(
        "  acl is_api req.ssl_sni -i api.example\n  acl is_api req.ssl_sni -i api2.example\n  \
         acl lan src 10.0.0.0/8\n  acl other_name req_ssl_sni -m end .other.example\n  \
         use_backend api if is_api lan\n  use_backend other if other_name || ! lan { req.ssl_sni -m found }\n",
    );
    assert!(errors(&im).is_empty(), "{:?}", im.findings);
    assert_eq!(
        to(&im, "10.1.1.1", Some("API2.example")),
        "api",
        "-i and a second acl line"
    );
    assert_eq!(
        to(&im, "192.0.2.1", Some("api.example")),
        "other",
        "not lan, has a name"
    );
    assert_eq!(to(&im, "10.1.1.1", Some("x.other.example")), "other");
    assert_eq!(
        to(&im, "10.1.1.1", Some("x.OTHER.example")),
        "web",
        "no -i: case counts"
    );
    assert_eq!(to(&im, "192.0.2.1", None), "web", "no name: -m found fails");
    let (_, label) = route(
        &im,
        0,
        &Client {
            src: "10.1.1.1",
            sni: Some("api.example"),
            tls: true,
        },
    );
    assert_eq!(label.as_deref(), Some("1"), "two ACLs: logged by position");
}

#[test]
fn the_label_is_the_acl_name_and_unless_negates() {
    let im = frontend(
        "  acl blocked src 192.0.2.0/24\n  tcp-request content reject if blocked\n  \
                       use_backend api unless { req.ssl_sni -m beg www. }\n",
    );
    assert!(errors(&im).is_empty(), "{:?}", im.findings);
    let r = route(
        &im,
        0,
        &Client {
            src: "192.0.2.9",
            sni: Some("a"),
            tls: true,
        },
    );
    assert_eq!(r, ("reject".to_string(), Some("blocked".to_string())));
    assert_eq!(to(&im, "10.0.0.1", Some("www.a")), "web");
    assert_eq!(to(&im, "10.0.0.1", Some("api.a")), "api");
}

#[test]
fn sub_dom_ports_versions_alpn_and_files() {
    let dir = std::env::temp_dir().join(format!("tether-acl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names = dir.join("names.lst");
    std::fs::write(&names, "# names\nlisted.example\n").unwrap();
    let im = frontend(&format!(
        "  use_backend api if {{ req.ssl_sni -i -f {} }}\n  \
         use_backend other if {{ req.ssl_sni -m dom corp }}\n  \
         use_backend other if {{ dst_port 9000:9400 }}\n  \
         use_backend api if {{ req.ssl_ver 3.4 }}\n  \
         use_backend api if {{ req.ssl_alpn h2 }}\n",
        names.display()
    ));
    assert!(errors(&im).is_empty(), "{:?}", im.findings);
    assert_eq!(to(&im, "10.0.0.1", Some("LISTED.example")), "api");
    assert_eq!(to(&im, "10.0.0.1", Some("a.corp.example")), "other");
    assert_eq!(to(&im, "10.0.0.1", Some("a.corporate.example")), "web");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn regex_acls_match_in_rule_order_with_and_without_case() {
    let im = frontend(
        "  acl exact_api req.ssl_sni -i api.example\n  \
         acl numbered req.ssl_sni -m reg ^api[0-9]+\\.example$\n  \
         use_backend other if { req.ssl_sni -m reg -i ^www\\. }\n  \
         use_backend api if numbered || exact_api\n",
    );
    assert!(errors(&im).is_empty(), "{:?}", im.findings);
    assert_eq!(to(&im, "10.0.0.1", Some("api12.example")), "api");
    assert_eq!(to(&im, "10.0.0.1", Some("API12.example")), "web", "no -i");
    assert_eq!(
        to(&im, "10.0.0.1", Some("api.example")),
        "api",
        "exact, indexed"
    );
    assert_eq!(
        to(&im, "10.0.0.1", Some("api12.example.net")),
        "web",
        "$ anchors"
    );
    assert_eq!(
        to(&im, "10.0.0.1", Some("WWW.api12.example")),
        "other",
        "first rule wins"
    );
    assert_eq!(to(&im, "10.0.0.1", None), "web");
}

#[test]
fn what_tether_cannot_evaluate_is_an_error() {
    let im = frontend(
        "  acl big req.len gt 10\n  acl r req.ssl_sni -m reg ^a(\n  acl x src -m beg 1\n  \
         use_backend api if nope\n  use_backend api if { req.ssl_sni a\n  \
         use_backend api when x\n  use_backend api if TRUE ||\n  use_backend %[req.ssl_sni] \n  \
         tcp-request connection reject if { req.ssl_sni a }\n  use_backend missing\n",
    );
    let e: Vec<(usize, String)> = errors(&im)
        .iter()
        .map(|f| (f.line, f.what.clone()))
        .collect();
    assert_eq!(e.len(), 10, "{e:#?}");
    assert!(e[0].1.starts_with("unsupported ACL `req.len"));
    assert!(
        e[1].1.contains("invalid regular expression \"^a(\"") && e[1].0 == 6,
        "{e:?}"
    );
    assert!(e[2].1.contains("-m beg"));
    assert_eq!(e[3].1, "unknown ACL `nope`");
    assert!(e[4].1.contains("without `}`"));
    assert!(e[5].1.contains("expected `if` or `unless`"));
    assert!(e[6].1.contains("incomplete condition"));
    assert!(e[7].1.contains("needs a backend name"));
    assert!(e[8].1.contains("connection rule"));
    assert!(e[9].1.contains("missing which is not defined"), "{e:?}");
}

#[test]
fn stick_rules_keep_their_simple_conditions() {
    let im = import_text(
        "backend b\n  timeout connect 1s\n  timeout server 1s\n  \
         stick-table type ip size 1m expire 30m\n  acl lan src 10.0.0.0/8\n  \
         acl hello req_ssl_hello_type 1\n  stick on src if ! lan\n  stick on src unless hello\n  \
         stick on src if lan hello\n  server s1 127.0.0.1:8443\n",
    );
    let e: Vec<(usize, String)> = errors(&im)
        .iter()
        .map(|f| (f.line, f.what.clone()))
        .collect();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].1.contains("too complex"), "{e:?}");
    let rules = im.config.backends[0].haproxy.as_ref().unwrap();
    let lan = Condition::Src(vec!["10.0.0.0/8".into()]);
    assert_eq!(rules.stick[0].when, Condition::Not(Box::new(lan)));
    assert_eq!(
        rules.stick[1].when,
        Condition::Not(Box::new(Condition::ClientHello))
    );
}
