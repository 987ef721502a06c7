//! Test helper: where an imported frontend sends a connection, decided by the compiled rules.

use super::Import;
use std::net::SocketAddr;
use tether_core::config::route::compile_rules;
use tether_core::route::{Facts, HelloFacts, RouteAction, RouteTable, Verdict};
use tether_core::tls::encode::ClientHelloBuilder;
use tether_core::tls::ClientHello;

/// What a client looks like to the rules.
pub struct Client<'a> {
    /// Source address.
    pub src: &'a str,
    /// Server name (None: a hello without one); `Some("")` below means not TLS.
    pub sni: Option<&'a str>,
    /// Send a ClientHello at all (false: plain bytes).
    pub tls: bool,
}

/// "reject", or the backend the connection lands on, and the deciding rule's label.
pub fn route(im: &Import, frontend: usize, c: &Client<'_>) -> (String, Option<String>) {
    let f = &im.config.frontends[frontend];
    let names: Vec<&str> = im.config.backends.iter().map(|b| b.name.as_str()).collect();
    let rules = compile_rules(&f.routes, &names).expect("imported rules compile");
    let table = RouteTable::compile(rules);
    let mut b = ClientHelloBuilder::new([3; 32]);
    if let Some(n) = c.sni {
        b.server_name(n.as_bytes());
    }
    let body = b.message()[4..].to_vec();
    let dest: SocketAddr = f.bind[0].parse().unwrap();
    let facts = Facts {
        source: c.src.parse().unwrap(),
        destination: dest,
        hello: if c.tls {
            HelloFacts::Hello(ClientHello::parse(&body).unwrap())
        } else {
            HelloFacts::NotTls
        },
    };
    match table.decide(&facts) {
        Verdict::Default => (f.backend.clone(), None),
        Verdict::Rule(i) => {
            let rule = &table.rules()[i];
            let label = Some(if rule.label.is_empty() {
                (i + 1).to_string()
            } else {
                rule.label.clone()
            });
            match rule.action {
                RouteAction::Reject => ("reject".into(), label),
                RouteAction::Accept => (f.backend.clone(), label),
                RouteAction::UseBackend(b) => (names[b].to_string(), label),
            }
        }
    }
}
