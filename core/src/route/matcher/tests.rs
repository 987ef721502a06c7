//! The compiled matcher against the plain scan, on random rules and connections.

use super::*;
use crate::route::{decide_linear, NameMatch, RouteAction};
use crate::tls::encode::ClientHelloBuilder;
use crate::tls::{ClientHello, ProtocolVersion};
use proptest::prelude::*;

const NAMES: &[&str] = &[
    "a.example",
    "A.Example",
    "x.a.example",
    "y.x.A.example",
    "b.example",
    "other.test",
    "a.examplex",
    "example",
];
const SUFFIXES: &[&str] = &["a.example", "example", "A.EXAMPLE", "test", "x.a.example"];
const NETS: &[&str] = &[
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.3",
    "192.0.2.0/24",
    "0.0.0.0/0",
    "::/0",
    "2001:db8::/32",
];
const ADDRS: &[&str] = &[
    "10.1.2.3",
    "10.9.9.9",
    "192.0.2.5",
    "8.8.8.8",
    "2001:db8::1",
    "::1",
    "::ffff:10.1.2.3",
];
const ALPNS: &[&str] = &["h2", "http/1.1", "acme-tls/1"];

fn pick<T: Clone + std::fmt::Debug + 'static>(pool: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(pool)
}

fn name_test() -> impl Strategy<Value = Test> {
    let method = pick(&[
        NameMethod::Exact,
        NameMethod::Wildcard,
        NameMethod::Prefix,
        NameMethod::Suffix,
        NameMethod::Substring,
        NameMethod::Domain,
    ]);
    (method, any::<bool>(), 1..4usize, any::<u64>()).prop_map(|(method, ic, n, seed)| {
        let pool = if method == NameMethod::Wildcard {
            SUFFIXES
        } else {
            NAMES
        };
        let values = (0..n)
            .map(|i| pool[(seed as usize >> (i * 5)) % pool.len()].to_string())
            .collect();
        Test::ServerName(NameMatch {
            method,
            ignore_case: ic,
            values,
        })
    })
}

/// Regexes over the names above: anchored, unanchored, classes, alternations.
const PATTERNS: &[&str] = &[
    r"^a\.example$",
    r"example$",
    r"^[a-z]\.",
    r"x\.a",
    r"^(a|b)\.example",
    r"\.test$",
    r"^example$",
    r"EXAMPLE",
];

fn regex_test() -> impl Strategy<Value = Test> {
    (
        proptest::collection::vec(pick(PATTERNS), 1..3),
        any::<bool>(),
    )
        .prop_map(|(ps, ic)| {
            let ps = ps.iter().map(|p| p.to_string()).collect();
            Test::ServerNameRegex(crate::route::NameRegex::new(ps, ic).expect("valid pattern"))
        })
}

fn nets() -> impl Strategy<Value = Vec<Cidr>> {
    proptest::collection::vec(pick(NETS), 1..3)
        .prop_map(|v| v.iter().map(|s| s.parse().unwrap()).collect())
}

fn test() -> impl Strategy<Value = Test> {
    prop_oneof![
        3 => name_test(),
        1 => regex_test(),
        1 => Just(Test::NoServerName),
        3 => nets().prop_map(Test::Source),
        1 => nets().prop_map(Test::Destination),
        1 => pick(&[(443u16, 443u16), (400, 500), (8443, 8443)]).prop_map(|r| Test::DestinationPort(vec![r])),
        1 => pick(&[ProtocolVersion::TLS1_2, ProtocolVersion::TLS1_3]).prop_map(|v| Test::TlsVersion(vec![v])),
        1 => Just(Test::HelloVersion(vec![(0x0303, 0x0303)])),
        1 => pick(ALPNS).prop_map(|a| Test::Alpn(vec![a.as_bytes().to_vec()])),
        1 => Just(Test::ClientHello),
        1 => Just(Test::NotTls),
    ]
}

fn condition() -> impl Strategy<Value = Condition> {
    let leaf = prop_oneof![8 => test().prop_map(Condition::Test), 1 => Just(Condition::Always)];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| Condition::Not(Box::new(c))),
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Condition::All),
            proptest::collection::vec(inner, 0..3).prop_map(Condition::Any),
        ]
    })
}

fn rules() -> impl Strategy<Value = Vec<Rule>> {
    let action = prop_oneof![
        Just(RouteAction::Reject),
        Just(RouteAction::Accept),
        (0..3usize).prop_map(RouteAction::UseBackend)
    ];
    proptest::collection::vec((condition(), action), 0..12).prop_map(|v| {
        v.into_iter()
            .map(|(when, action)| Rule {
                when,
                action,
                label: String::new(),
            })
            .collect()
    })
}

/// A connection: addresses and the first bytes' kind (0 hello, 1 not TLS, 2 nothing).
#[derive(Debug, Clone)]
struct Conn {
    source: &'static str,
    destination: &'static str,
    kind: u8,
    sni: Option<&'static str>,
    alpn: Vec<&'static str>,
    tls13: bool,
}

fn conn() -> impl Strategy<Value = Conn> {
    (
        pick(ADDRS),
        pick(&["10.1.2.3:443", "192.0.2.1:8443", "[2001:db8::5]:443"]),
        0..3u8,
        proptest::option::of(pick(NAMES)),
        proptest::collection::vec(pick(ALPNS), 0..2),
        any::<bool>(),
    )
        .prop_map(|(source, destination, kind, sni, alpn, tls13)| Conn {
            source,
            destination,
            kind,
            sni,
            alpn,
            tls13,
        })
}

fn hello_body(c: &Conn) -> Vec<u8> {
    let mut b = ClientHelloBuilder::new([1; 32]);
    if let Some(n) = c.sni {
        b.server_name(n.as_bytes());
    }
    if !c.alpn.is_empty() {
        let protos: Vec<&[u8]> = c.alpn.iter().map(|a| a.as_bytes()).collect();
        b.alpn(&protos);
    }
    if c.tls13 {
        b.supported_versions(&[ProtocolVersion::TLS1_3, ProtocolVersion::TLS1_2]);
    }
    b.message()[4..].to_vec()
}

fn facts<'a>(c: &Conn, body: &'a [u8]) -> Facts<'a> {
    Facts {
        source: c.source.parse().unwrap(),
        destination: c.destination.parse().unwrap(),
        hello: match c.kind {
            0 => HelloFacts::Hello(ClientHello::parse(body).unwrap()),
            1 => HelloFacts::NotTls,
            _ => HelloFacts::Nothing,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The compiled decision is the plain scan's, for any rules and any connection; a decision
    /// taken at accept is the one the scan takes whatever the hello turns out to be.
    #[test]
    fn compiled_matches_linear_scan(rules in rules(), conns in proptest::collection::vec(conn(), 1..6)) {
        let table = RouteTable::compile(rules.clone());
        for c in &conns {
            let body = hello_body(c);
            let f = facts(c, &body);
            let linear = decide_linear(&rules, &f);
            prop_assert_eq!(table.decide(&f), linear, "{:?}", c);
            if let AcceptVerdict::Decided(v) = table.decide_at_accept(f.source, f.destination) {
                prop_assert_eq!(v, linear, "decided at accept: {:?}", c);
            }
        }
    }
}

fn rule(when: Condition, action: RouteAction) -> Rule {
    Rule {
        when,
        action,
        label: String::new(),
    }
}

fn src(s: &str) -> Condition {
    Condition::Test(Test::Source(vec![s.parse().unwrap()]))
}

fn sni(s: &str) -> Condition {
    Condition::Test(Test::ServerName(NameMatch {
        method: NameMethod::Exact,
        ignore_case: true,
        values: vec![s.into()],
    }))
}

#[test]
fn address_rules_decide_at_accept_until_a_hello_rule() {
    let at = |t: &RouteTable, s: &str| {
        t.decide_at_accept(s.parse().unwrap(), "10.0.0.1:443".parse().unwrap())
    };
    let t = RouteTable::compile(vec![
        rule(src("10.66.0.0/16"), RouteAction::Reject),
        rule(sni("api.example"), RouteAction::UseBackend(1)),
        rule(src("192.0.2.0/24"), RouteAction::Reject),
    ]);
    assert_eq!(
        at(&t, "10.66.1.1"),
        AcceptVerdict::Decided(Verdict::Rule(0))
    );
    assert_eq!(
        at(&t, "192.0.2.1"),
        AcceptVerdict::NeedHello,
        "a hello rule comes first"
    );
    let only_addresses = RouteTable::compile(vec![rule(src("10.66.0.0/16"), RouteAction::Reject)]);
    assert!(!only_addresses.needs_hello());
    assert_eq!(
        at(&only_addresses, "1.1.1.1"),
        AcceptVerdict::Decided(Verdict::Default)
    );
    let hello_first = RouteTable::compile(vec![rule(sni("a"), RouteAction::Reject)]);
    assert_eq!(at(&hello_first, "10.66.1.1"), AcceptVerdict::NeedHello);
}

#[test]
fn many_names_wildcards_and_networks_pick_the_first_rule() {
    let mut rules = Vec::new();
    for i in 0..1000 {
        rules.push(rule(
            sni(&format!("h{i}.example")),
            RouteAction::UseBackend(i % 3),
        ));
    }
    rules.push(rule(
        Condition::Test(Test::ServerName(NameMatch {
            method: NameMethod::Wildcard,
            ignore_case: true,
            values: vec!["example".into()],
        })),
        RouteAction::Reject,
    ));
    let t = RouteTable::compile(rules.clone());
    let c = Conn {
        source: "10.1.2.3",
        destination: "10.1.2.3:443",
        kind: 0,
        sni: Some("A.Example"),
        alpn: vec![],
        tls13: false,
    };
    let body = hello_body(&c);
    assert_eq!(t.decide(&facts(&c, &body)), Verdict::Rule(1000), "wildcard");
    let mut b = ClientHelloBuilder::new([1; 32]);
    b.server_name(b"H999.example");
    let body = b.message()[4..].to_vec();
    let f = Facts {
        hello: HelloFacts::Hello(ClientHello::parse(&body).unwrap()),
        ..facts(&c, &body)
    };
    assert_eq!(t.decide(&f), Verdict::Rule(999));
    assert_eq!(decide_linear(&rules, &f), Verdict::Rule(999));
}
