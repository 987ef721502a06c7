//! Route rules in the state machine: the backend chosen per connection, refusals at accept
//! (before any byte) and after the hello, the deciding rule in the record, the counters.

use super::*;

const ROUTED: &str = r#"
[[frontend]]
name = "main"
bind = ["127.0.0.1:9443"]
backend = "app"
inspect-delay = "2s"

[[frontend.route]]
name = "blocked"
if = { source = ["198.51.100.0/24"] }
action = "reject"

[[frontend.route]]
if = { server-name = ["api.example", "*.api.example"] }
use-backend = "api"

[[frontend.route]]
if = { server-name = ["*.evil.example"] }
action = "reject"

[[frontend.route]]
if = { not-tls = true }
use-backend = "api"

[[backend]]
name = "app"
affinity = ["session-id"]
[[backend.server]]
name = "s1"
address = "127.0.0.1:1001"

[[backend]]
name = "api"
affinity = ["session-id"]
[[backend.server]]
name = "a1"
address = "127.0.0.1:2001"
"#;

fn routed(extra_rules: &str) -> Rig {
    let text = ROUTED.replace(
        "[[backend]]\nname = \"app\"",
        &format!("{extra_rules}[[backend]]\nname = \"app\""),
    );
    let config = load_toml("routed.toml", &text).expect("routed config loads");
    Rig::new(build(&config, None).expect("routed config builds"))
}

fn connection_from<'r>(rig: &'r Rig, peer: &str) -> Connection<'r> {
    Connection::new(
        rig.fe(),
        Clock::from_origin(rig.t0),
        &rig.actconn,
        peer.parse().unwrap(),
        rig.t0,
    )
}

/// Feeds `bytes` and returns the backend and server the machine connects to.
fn lands_on(rig: &Rig, bytes: &[u8]) -> (String, String, ConnectionRecord) {
    let mut c = rig.connection();
    assert!(matches!(c.poll(rig.at(0)), Action::ReadClient { .. }));
    feed(&mut c, bytes);
    let server = connect_to(&mut c, rig.at(1));
    let be = c.backend().name.to_string();
    let name = c.backend().servers[server.index()].name.to_string();
    c.on_connect(rig.at(1), Ok(bytes.len()));
    c.poll(rig.at(1));
    c.on_forwarded(Some(forwarded(PumpEnd::Eof, PumpEnd::Eof)));
    (be, name, c.finish(rig.at(2)))
}

#[test]
fn the_server_name_picks_the_backend_and_the_record_names_the_rule() {
    let rig = routed("");
    let (be, server, rec) = lands_on(&rig, &client_hello(&[1; 32], "API.example", None));
    assert_eq!((be.as_str(), server.as_str()), ("api", "a1"));
    assert_eq!(&*rec.backend, "api");
    assert_eq!(rec.route.as_deref(), Some("2"));
    assert!(rec.tcplog("-").contains("main api/a1") && rec.tcplog("-").contains(" route=2"));
    let (be, _, _) = lands_on(&rig, &client_hello(&[1; 32], "x.y.api.example", None));
    assert_eq!(be, "api", "wildcard");
    let (be, server, rec) = lands_on(&rig, &client_hello(&[1; 32], "www.example", None));
    assert_eq!((be.as_str(), server.as_str()), ("app", "s1"));
    assert_eq!(rec.route, None, "the default backend: no rule decided");
    let (be, _, rec) = lands_on(&rig, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(
        (be.as_str(), rec.route.as_deref()),
        ("api", Some("4")),
        "not TLS"
    );
}

#[test]
fn a_blocked_source_is_refused_at_accept_before_any_byte() {
    let rig = routed("");
    let mut c = connection_from(&rig, "198.51.100.9:5000");
    assert_eq!(
        c.poll(rig.at(0)),
        Action::Close { shutdown: false },
        "nothing is read"
    );
    let rec = c.finish(rig.at(0));
    assert_eq!(rec.termination, Termination::DENIED);
    assert_eq!(rec.termination.to_string(), "PR");
    assert!(rec.refused);
    assert_eq!(rec.route.as_deref(), Some("blocked"));
    assert_eq!(rec.affinity.label(), "no-key:refused");
    let line = rec.tcplog("-");
    assert!(
        line.contains("main main/<NOSRV>") && line.contains("route=blocked refused=yes"),
        "{line}"
    );
    assert_eq!(rig.fe().denied_connections.load(Ordering::Relaxed), 1);
    assert_eq!(rig.fe().denied_requests.load(Ordering::Relaxed), 0);
}

#[test]
fn a_name_rule_refuses_after_the_hello_and_counts_a_denied_request() {
    let rig = routed("");
    let mut c = rig.connection();
    let hello = client_hello(&[1; 32], "a.evil.example", None);
    feed(&mut c, &hello[..30]);
    assert!(
        matches!(c.poll(rig.at(0)), Action::ReadClient { .. }),
        "waits for the hello"
    );
    feed(&mut c, &hello[30..]);
    assert_eq!(c.poll(rig.at(1)), Action::Close { shutdown: false });
    let rec = c.finish(rig.at(1));
    assert_eq!(
        (rec.termination, rec.route.as_deref()),
        (Termination::DENIED, Some("3"))
    );
    assert_eq!(rec.sni.as_deref(), Some("a.evil.example"));
    assert_eq!(rig.fe().denied_requests.load(Ordering::Relaxed), 1);
    assert_eq!(rig.fe().denied_connections.load(Ordering::Relaxed), 0);
    for s in &rig.be().servers {
        assert_eq!(
            s.counters.total.load(Ordering::Relaxed),
            0,
            "no server touched"
        );
    }
}

#[test]
fn without_hello_rules_the_backend_is_chosen_at_accept_and_nothing_waits_longer() {
    let text = ROUTED
        .split("[[frontend.route]]\nif = { server-name")
        .next()
        .unwrap()
        .to_string()
        + "[[frontend.route]]\nif = { source = [\"192.0.2.0/24\"] }\nuse-backend = \"api\"\n"
        + &ROUTED[ROUTED.find("[[backend]]").unwrap()..];
    let config = load_toml("routed.toml", &text).unwrap();
    let rig = Rig::new(build(&config, None).unwrap());
    assert!(!rig.fe().router.as_ref().unwrap().table.needs_hello());
    let mut c = rig.connection();
    assert_eq!(
        &*c.backend().name,
        "api",
        "decided at accept on the address"
    );
    // Not TLS: the backend's session-ID chain ends inspection at once, as without rules.
    feed(&mut c, b"SSH-2.0-x\r\n");
    let server = connect_to(&mut c, rig.at(0));
    assert_eq!(&*c.backend().servers[server.index()].name, "a1");
}

#[test]
fn an_inspect_timeout_decides_on_what_is_known() {
    let rig = routed("");
    let mut c = rig.connection();
    assert!(matches!(c.poll(rig.at(0)), Action::ReadClient { .. }));
    c.handle_timeout(rig.at(2000));
    connect_to(&mut c, rig.at(2000));
    assert_eq!(
        &*c.backend().name,
        "app",
        "no name, not 'not TLS': the default"
    );
}

#[test]
fn hello_rules_wait_for_the_hello_even_when_the_default_backend_would_not() {
    // An imported backend without content rules is ready at once (HAProxy evaluates on an
    // empty buffer); the frontend's name rules still need the hello to choose.
    let text = ROUTED.replace(
        "name = \"app\"\naffinity = [\"session-id\"]",
        "name = \"app\"\n[backend.haproxy]",
    );
    let rig = Rig::new(build(&load_toml("routed.toml", &text).unwrap(), None).unwrap());
    let mut c = rig.connection();
    let hello = client_hello(&[1; 32], "api.example", None);
    feed(&mut c, &hello[..30]);
    assert!(matches!(c.poll(rig.at(0)), Action::ReadClient { .. }));
    feed(&mut c, &hello[30..]);
    connect_to(&mut c, rig.at(1));
    assert_eq!(&*c.backend().name, "api");
}
