//! `tcp-request` rules: delays, and accept/reject rules judged by where connections land.

use super::super::test_routes::{route, Client};
use super::super::test_support::{errors, import_text, BACKEND};
use std::time::Duration;
use tether_core::config::{Condition, ContentAction};

#[test]
fn delays_and_rules_land_on_their_side() {
    let im = import_text(
        "listen l\n  bind :9443\n  timeout client 1m\n  timeout connect 1s\n  \
         timeout server 1s\n  tcp-request inspect-delay 2s\n  \
         tcp-response inspect-delay 3s\n  tcp-request content accept if { req_ssl_hello_type 1 }\n  \
         tcp-response content accept if { rep_ssl_hello_type 2 }\n  \
         server s1 127.0.0.1:8443\n",
    );
    assert!(errors(&im).is_empty(), "{:?}", im.findings);
    assert_eq!(im.config.frontends[0].inspect_delay, Duration::from_secs(2));
    let r = im.config.backends[0].haproxy.as_ref().unwrap();
    assert_eq!(r.request_inspect_delay, Some(Duration::from_secs(2)));
    assert_eq!(r.response_inspect_delay, Some(Duration::from_secs(3)));
    assert_eq!(r.request_content[0].action, ContentAction::Accept);
    assert_eq!(r.request_content[0].when, Condition::ClientHello);
    assert_eq!(r.response_content[0].when, Condition::ServerHello);
}

const FRONT: &str =
    "frontend f\n  bind 127.0.0.1:9443\n  default_backend b\n  timeout client 1m\n  \
    tcp-request inspect-delay 5s\n";

fn client<'a>(src: &'a str, sni: Option<&'a str>) -> Client<'a> {
    Client {
        src,
        sni,
        tls: true,
    }
}

#[test]
fn a_reject_after_an_accept_never_fires_as_in_haproxy() {
    // design.md §9: HAProxy stops at the first `tcp-request content accept`.
    let im = import_text(&format!(
        "{FRONT}  tcp-request content accept if {{ req_ssl_hello_type 1 }}\n  \
         tcp-request content reject if {{ req.ssl_sni -m end .evil.example }}\n{BACKEND}"
    ));
    assert!(errors(&im).is_empty(), "{:?}", im.findings);
    assert_eq!(
        route(&im, 0, &client("10.0.0.1", Some("a.evil.example"))).0,
        "b"
    );
    let plain = Client {
        src: "10.0.0.1",
        sni: None,
        tls: false,
    };
    assert_eq!(route(&im, 0, &plain).0, "b", "no hello: neither rule holds");
    let reversed = import_text(&format!(
        "{FRONT}  tcp-request content reject if {{ req.ssl_sni -m end .evil.example }}\n  \
         tcp-request content accept if {{ req_ssl_hello_type 1 }}\n{BACKEND}"
    ));
    assert_eq!(
        route(&reversed, 0, &client("10.0.0.1", Some("a.evil.example"))).0,
        "reject"
    );
}

#[test]
fn a_reject_first_refuses_and_connection_rules_come_before_content_rules() {
    let im = import_text(&format!(
        "{FRONT}  acl trusted src 10.66.0.0/16\n  acl evil req.ssl_sni -m end .evil.example\n  \
         tcp-request connection accept if trusted\n  tcp-request connection reject if {{ src 10.0.0.0/8 }}\n  \
         tcp-request content reject if evil\n{BACKEND}"
    ));
    assert!(errors(&im).is_empty(), "{:?}", im.findings);
    let at = |src, sni| route(&im, 0, &client(src, sni)).0;
    assert_eq!(
        at("10.1.0.1", Some("a.example")),
        "reject",
        "connection reject"
    );
    assert_eq!(
        at("10.66.0.1", Some("a.example")),
        "b",
        "connection accept skips the reject"
    );
    assert_eq!(
        at("10.66.0.1", Some("x.evil.example")),
        "reject",
        "but content rules still run"
    );
    assert_eq!(at("192.0.2.1", Some("x.evil.example")), "reject");
    assert_eq!(at("192.0.2.1", Some("ok.example")), "b");
    assert_eq!(
        route(&im, 0, &client("192.0.2.1", Some("x.evil.example")))
            .1
            .as_deref(),
        Some("evil")
    );
}

#[test]
fn a_backend_reject_is_enforced_by_every_frontend_that_reaches_it() {
    // The issue: `tcp-request content reject if !internal` in a backend passed check and then
    // stopped run. Now check passes and run enforces it.
    let im = import_text(
        "frontend f\n  bind 127.0.0.1:9443\n  timeout client 1m\n  \
         use_backend secure if { req.ssl_sni -i secure.example }\n  default_backend open\n\
         backend secure\n  timeout connect 1s\n  timeout server 1s\n  \
         acl internal_networks src 10.0.0.0/8 192.168.0.0/16\n  \
         tcp-request inspect-delay 3s\n  \
         tcp-request content reject if !internal_networks\n  server s1 127.0.0.1:8443\n\
         backend open\n  timeout connect 1s\n  timeout server 1s\n  server o1 127.0.0.1:8444\n",
    );
    assert!(errors(&im).is_empty(), "{:?}", im.findings);
    let at = |src, sni| route(&im, 0, &client(src, sni));
    assert_eq!(at("10.1.2.3", Some("secure.example")).0, "secure");
    assert_eq!(
        at("203.0.113.5", Some("secure.example")),
        ("reject".to_string(), Some("!internal_networks".to_string()))
    );
    assert_eq!(
        at("203.0.113.5", Some("www.example")).0,
        "open",
        "the other backend is open"
    );
    assert_eq!(
        im.config.frontends[0].inspect_delay,
        Duration::from_secs(3),
        "the backend's delay lets its rules see the hello"
    );
    let rules = im.config.backends[0].haproxy.as_ref().unwrap();
    assert!(
        rules.request_content.is_empty(),
        "the reject lives in the routes, not here"
    );
    tether_core::engine::runtime::build(&im.config, None).expect("and run starts");
}

#[test]
fn a_connection_rule_in_a_backend_is_refused_as_haproxy_does() {
    let im = import_text(&format!(
        "{FRONT}{BACKEND}  tcp-request connection reject if {{ src 10.0.0.0/8 }}\n"
    ));
    let e: Vec<usize> = errors(&im).iter().map(|f| f.line).collect();
    assert_eq!(e, [10]);
}
