//! `tether convert`: a haproxy.cfg becomes native TOML that loads back to the same config.

use tether::haproxy::{convert_haproxy, to_toml};
use tether_core::config::{load_toml, Condition, Redispatch, Sample, StickAction};

const CFG: &str = "\
global
    maxconn 4000
defaults
    mode tcp
    option redispatch
    retries 3
    timeout connect 10s
    timeout client 1m
    timeout server 1m
    timeout queue 1m
frontend main
    bind *:9443
    option tcplog
    default_backend app
backend app
    balance roundrobin
    stick-table type binary len 32 size 60k expire 60m
    acl clienthello req_ssl_hello_type 1
    acl serverhello rep_ssl_hello_type 2
    tcp-request inspect-delay 5s
    tcp-request content accept if clienthello
    tcp-response content accept if serverhello
    stick on payload_lv(43,1) if clienthello
    stick store-response payload_lv(43,1) if serverhello
    server n1 10.0.0.1:443 check
    server n2 10.0.0.2:443 check weight 2 inter 5s
listen stats
    mode http
    bind 127.0.0.1:1936
    stats enable
    stats uri /
    stats refresh 3s
    stats admin if TRUE
";

#[test]
fn converted_toml_loads_back_to_an_equal_config() {
    let (config, findings) = convert_haproxy("h.cfg", CFG).unwrap();
    let text = to_toml(&config);
    let back = load_toml("converted.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, config, "{text}");
    // The quirk survives: no response inspect delay, so store-response stays inert.
    let rules = back.backends[0].haproxy.as_ref().unwrap();
    assert_eq!(rules.response_inspect_delay, None);
    assert_eq!(rules.stick[1].action, StickAction::StoreResponse);
    assert_eq!(rules.stick[1].when, Condition::ServerHello);
    assert_eq!(
        rules.stick[0].sample,
        Sample::PayloadLv {
            offset: 43,
            len_size: 1
        }
    );
    assert_eq!(back.backends[0].redispatch, Redispatch::Interval(-1));
    assert_eq!(back.backends[0].affinity, None);
    assert_eq!(back.backends[0].effective_affinity(), None);
    assert!(findings
        .iter()
        .any(|f| f.line == 24 && f.what.contains("never stores")));
    assert!(text.contains("size = \"60k\""), "{text}");
    assert!(text.contains("expire = \"1h\""), "{text}");
}

#[test]
fn seed_does_not_convert_and_says_why() {
    let seed = include_str!("fixtures/seed-haproxy.cfg");
    let err = convert_haproxy("seed-haproxy.cfg", seed).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("seed-haproxy.cfg:5: error:"), "{text}");
    assert!(text.contains("seed-haproxy.cfg:59: error: server lanneluc-node1 has no address"));
    assert!(
        !text.contains("warning"),
        "only errors block a conversion: {text}"
    );
}

/// Checks over TLS (`check-ssl`, `verify`, `ca-file`, `check-sni`, `verifyhost`) convert to the
/// servers' `check-tls` and load back unchanged.
#[test]
fn check_tls_settings_convert_and_load_back() {
    let dir = std::env::temp_dir().join(format!("tether-convert-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let cert = tether_testbed::SelfSignedCert::generate("ca").unwrap();
    std::fs::write(&ca, &cert.cert_pem).unwrap();
    let cfg = format!(
        "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    \
         timeout server 5s\nfrontend f\n    bind 127.0.0.1:6443\n    default_backend api\n\
         backend api\n    option httpchk GET /healthz\n    \
         server cp1 10.0.0.1:6443 check check-ssl verify none\n    \
         server cp2 10.0.0.2:6443 check check-ssl ca-file {} check-sni cp2.internal verifyhost api\n",
        ca.display()
    );
    let (config, _) = convert_haproxy("k8s.cfg", &cfg).unwrap();
    let text = to_toml(&config);
    let back = load_toml("converted.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, config, "{text}");
    let tls = |i: usize| back.backends[0].servers[i].check_tls.clone().unwrap();
    assert_eq!(tls(0).verify, tether_core::config::Verify::None);
    assert!(tls(1).enabled);
    assert_eq!(tls(1).sni.as_deref(), Some("cp2.internal"));
    assert_eq!(tls(1).verifyhost.as_deref(), Some("api"));
    assert!(text.contains("check-tls"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Patroni's server options and `balance random(N)` survive the conversion, written as the
/// native keys (issue 19).
#[test]
fn on_marked_down_up_and_balance_random_round_trip() {
    let cfg = "\
defaults
    mode tcp
    timeout connect 4s
    timeout client 30m
    timeout server 30m
listen primary
    bind 127.0.0.1:5000
    balance random(3)
    option httpchk OPTIONS /primary
    default-server inter 3s on-marked-down shutdown-sessions
    server pg1 127.0.0.1:5432 check port 8008 on-marked-up shutdown-backup-sessions
    server pg2 127.0.0.2:5432 check port 8008 backup
";
    let (config, _) = convert_haproxy("p.cfg", cfg).unwrap();
    let text = to_toml(&config);
    for want in [
        "on-marked-down = \"shutdown-sessions\"",
        "on-marked-up = \"shutdown-backup-sessions\"",
        "balance = \"random\"",
        "random-draws = 3",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    let back = load_toml("converted.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, config, "{text}");
}

/// `agent-check` (with `agent-port`, `agent-addr`, `agent-inter`, `agent-send`, from
/// `default-server` too) and `track` convert to the native `agent` and `track` keys and load
/// back unchanged.
#[test]
fn agent_check_and_track_round_trip() {
    let cfg = include_str!("corpus/galera-agent-track.cfg");
    let (config, _) = convert_haproxy("galera.cfg", cfg).unwrap();
    let text = to_toml(&config);
    for want in [
        "[backend.server.agent]\nport = 3333\ninter = \"5s\"\nsend = \"\"\"\nload\n\"\"\"",
        "[backend.server.agent]\nport = 3333\naddr = \"10.0.1.12\"",
        "track = \"galera_writer/db2\"",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    let back = load_toml("converted.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, config, "{text}");
}

/// Unix-socket servers (`unix@PATH`, a bare path, `abns@NAME`) convert as written and load
/// back (issue 19).
#[test]
fn unix_socket_servers_round_trip() {
    let cfg = "\
defaults
    mode tcp
    timeout connect 1s
    timeout client 5s
    timeout server 5s
listen app
    bind 127.0.0.1:8080
    server s1 unix@/run/app/s1.sock check send-proxy
    server s2 /run/app/s2.sock check
    server s3 abns@app3
";
    let (config, _) = convert_haproxy("u.cfg", cfg).unwrap();
    let text = to_toml(&config);
    for want in [
        "address = \"unix@/run/app/s1.sock\"",
        "address = \"/run/app/s2.sock\"",
        "address = \"abns@app3\"",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    let back = load_toml("converted.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, config, "{text}");
    // A native path too long for a socket is an error naming the limit.
    let long = text.replace("/run/app/s2.sock", &format!("/{}", "x".repeat(120)));
    let err = load_toml("long.toml", &long).unwrap_err().to_string();
    assert!(err.contains("at most 107"), "{err}");
}

/// `resolvers` sections and the server DNS options convert and load back.
#[test]
fn resolvers_and_server_dns_options_round_trip() {
    let cfg = "\
resolvers dns
    nameserver ns1 127.0.0.1:5353
    nameserver ns2 127.0.0.2
    resolve_retries 2
    timeout resolve 500ms
    timeout retry 300ms
    hold valid 1s
    hold nx 2s
    hold timeout 3s
    accepted_payload_size 4096
defaults
    mode tcp
    timeout connect 4s
    timeout client 30m
    timeout server 30m
listen api
    bind 127.0.0.1:6443
    server cp1 cp1.example.test:6443 check resolvers dns resolve-prefer ipv4 init-addr last,libc,none
    server cp2 cp2.example.test:6443 check resolvers dns init-addr 10.0.0.2
";
    let (config, _) = convert_haproxy("r.cfg", cfg).unwrap();
    let text = to_toml(&config);
    for want in [
        "[[resolvers]]",
        "[[resolvers.nameserver]]",
        "address = \"127.0.0.2:53\"",
        "resolve-retries = 2",
        "timeout-resolve = \"500ms\"",
        "accepted-payload-size = 4096",
        "resolvers = \"dns\"",
        "resolve-prefer = \"ipv4\"",
        "init-addr = [\"last\", \"libc\", \"none\"]",
        "init-addr = [\"10.0.0.2\"]",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    let back = load_toml("converted.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, config, "{text}");
    assert_eq!(
        back.resolvers[0].hold.timeout,
        std::time::Duration::from_secs(3)
    );
}
