//! Loading native TOML: defaults, every error located with its fix, serialisation round trip.

use super::*;

const GOOD: &str = r#"
[global]
maxconn = 4000
log-format = "json"
grace = "10s"

[[frontend]]
name = "main"
bind = ["127.0.0.1:9443"]
backend = "app"
timeout-client = "1m"
inspect-cap = "16k"

[[backend]]
name = "app"
balance = "hash"
hash-key = "sni"
hash-balance-factor = 150
affinity = ["session-id", "ticket", "psk", "source"]
redispatch = false
timeout-queue = "30s"

[backend.stick-table]
size = "60k"
expire = "60m"

[backend.check]
inter = "3s"

[[backend.server]]
name = "s1"
address = "127.0.0.1:8443"
weight = 10

[[backend.server]]
name = "s2"
address = "localhost:8444"
backup = true
rise = 5

[stats]
bind = "127.0.0.1:1936"
refresh = "3s"
auth = { user = "admin", password-env = "STATS_PW" }
"#;

#[test]
fn loads_a_full_config_with_units_and_defaults() {
    let c = load_toml("t.toml", GOOD).unwrap();
    assert_eq!(c.global.log_format, LogFormat::Json);
    assert_eq!(c.frontends[0].inspect_cap, 16384);
    assert_eq!(c.frontends[0].inspect_delay, Duration::from_secs(5));
    let b = &c.backends[0];
    assert_eq!(b.stick_table.size, 61440);
    assert_eq!(b.stick_table.expire, Duration::from_secs(3600));
    assert_eq!(b.stick_table.key_len, 32);
    assert_eq!(b.retries, 3);
    assert_eq!(b.redispatch, Redispatch::Never);
    assert_eq!(b.check.inter, Duration::from_secs(3));
    assert_eq!((b.check.rise, b.check.fall), (2, 3));
    assert_eq!(b.servers[1].rise, Some(5));
    assert_eq!(b.servers[1].weight, 1);
    assert_eq!(b.hash_key, Some(HashKey::Sni));
    assert_eq!(
        c.stats.as_ref().unwrap().auth.as_ref().unwrap().user,
        "admin"
    );
}

#[test]
fn serialising_and_loading_gives_the_same_config() {
    let c = load_toml("t.toml", GOOD).unwrap();
    let text = toml::to_string(&c).unwrap();
    assert_eq!(load_toml("again.toml", &text).unwrap(), c, "{text}");
}

#[test]
fn defaulted_backend_uses_the_native_chain() {
    let c = load_toml(
        "t.toml",
        "[[frontend]]\nname=\"f\"\nbind=[\"0.0.0.0:1\"]\nbackend=\"b\"\n[[backend]]\nname=\"b\"\n\
         [[backend.server]]\nname=\"s\"\naddress=\"h:1\"\n",
    )
    .unwrap();
    assert_eq!(
        c.backends[0].effective_affinity(),
        Some(Backend::DEFAULT_AFFINITY.to_vec())
    );
    assert_eq!(c.backends[0].redispatch, Redispatch::Interval(-1));
}

fn errors(text: &str) -> Vec<ConfigError> {
    load_toml("tether.toml", text).unwrap_err().0
}

#[test]
fn unknown_key_names_its_line_and_the_valid_keys() {
    let text = GOOD.replace("weight = 10", "wieght = 10");
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 33);
    assert_eq!(e[0].message, "unknown key `wieght`");
    assert!(e[0].fix.contains("weight"), "{}", e[0].fix);
    assert_eq!(e[0].key_path, "backend.app.server.s1.wieght");
    assert!(e[0]
        .to_string()
        .starts_with("tether.toml:33: backend.app.server.s1.wieght: "));
}

#[test]
fn errors_in_several_sections_all_reported() {
    let text = GOOD
        .replace("grace = \"10s\"", "grace = \"10 seconds\"")
        .replace("size = \"60k\"", "size = \"60kb\"");
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].line, 5);
    assert_eq!(e[0].key_path, "global.grace");
    assert!(e[0].fix.contains("grace = \"10s\""), "{}", e[0].fix);
    assert_eq!(e[1].line, 24);
    assert!(
        e[1].key_path.ends_with("stick-table.size"),
        "{}",
        e[1].key_path
    );
    assert!(e[1].fix.contains("size = \"60k\""), "{}", e[1].fix);
}

#[test]
fn missing_backend_and_bad_address_are_located() {
    let text = GOOD
        .replace("backend = \"app\"", "backend = \"ap\"")
        .replace("address = \"127.0.0.1:8443\"", "address = \"foo\"");
    let e = errors(&text);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].line, 10);
    assert_eq!(e[0].message, "unknown backend \"ap\"");
    assert_eq!(
        e[0].fix,
        "write one of the defined backends: backend = \"app\""
    );
    assert_eq!(
        e[1].to_string(),
        "tether.toml:32: backend.app.server.s1.address: invalid address \"foo\": expected \
         HOST:PORT, e.g. address = \"10.0.0.1:443\", or a unix socket, address = \
         \"unix@/run/app.sock\""
    );
}

#[test]
fn syntax_error_has_line_and_column() {
    let e = errors("[global]\nmaxconn = = 3\n");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, 2);
    assert!(e[0].column.is_some());
}

#[test]
fn server_ids_are_positive_and_distinct_within_a_backend() {
    let text = GOOD
        .replace("name = \"s1\"", "name = \"s1\"\nid = 3")
        .replace("name = \"s2\"", "name = \"s2\"\nid = 3");
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0].message,
        "server \"s2\" has id 3, already server \"s1\"'s"
    );
    assert_eq!(e[0].line, 38, "s2's id line: {e:?}");
    assert!(e[0].fix.contains("its own id"), "{e:?}");
    let zero = GOOD.replace("name = \"s1\"", "name = \"s1\"\nid = 0");
    let e = errors(&zero);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        (e[0].line, e[0].message.as_str()),
        (32, "server \"s1\" has id 0")
    );
    let distinct = GOOD.replace("name = \"s2\"", "name = \"s2\"\nid = 7");
    let c = load_toml("tether.toml", &distinct).unwrap();
    assert_eq!(c.backends[0].servers[1].id, Some(7));
}

#[test]
fn semantic_checks() {
    let text = GOOD
        .replace("weight = 10", "weight = 300")
        .replace("name = \"s2\"", "name = \"s1\"")
        .replace("[backend.check]", "[backend.haproxy]\n[backend.check]");
    let e = errors(&text);
    let msgs: Vec<&str> = e.iter().map(|e| e.message.as_str()).collect();
    assert!(
        msgs.contains(&"both `affinity` and [backend.haproxy] rules are set"),
        "{msgs:?}"
    );
    assert!(msgs.contains(&"weight 300 above 256"), "{msgs:?}");
    assert!(msgs.contains(&"duplicate server name \"s1\""), "{msgs:?}");
}

#[test]
fn unknown_enum_value_lists_the_valid_ones() {
    let e = errors(&GOOD.replace("balance = \"hash\"", "balance = \"round-robin\""));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 16);
    assert!(e[0].fix.contains("roundrobin"), "{}", e[0].fix);
}

#[test]
fn the_rule_key_is_refused_in_a_native_chain() {
    let e = errors(&GOOD.replace("affinity = [", "affinity = [\"rule\", "));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].message.contains("imported HAProxy stick rules"),
        "{e:?}"
    );
    assert!(e[0].fix.contains("session-id"), "{e:?}");
}

#[test]
fn stats_auth_takes_exactly_one_password_source() {
    let with = |auth: &str| GOOD.replace("password-env = \"STATS_PW\"", auth);
    let c = load_toml("t.toml", &with("password = \"s3cret\"")).unwrap();
    let auth = c.stats.unwrap().auth.unwrap();
    assert_eq!(auth.password, Some(ClearPassword("s3cret".into())));
    assert!(
        !format!("{auth:?}").contains("s3cret"),
        "Debug never shows it"
    );
    for (auth, message) in [
        ("password = \"\"", "the password is empty"),
        (
            "password = \"x\", password-env = \"STATS_PW\"",
            "more than one of password-file, password-env and password is set",
        ),
        (
            "password-file = \"/p\", password-env = \"E\"",
            "more than one",
        ),
    ] {
        let e = errors(&with(auth));
        assert_eq!(e.len(), 1, "{auth}: {e:?}");
        assert!(e[0].message.starts_with(message), "{auth}: {e:?}");
        assert_eq!(e[0].line, 44, "{auth}: the `auth = {{ ... }}` line");
    }
}

#[test]
fn a_parsed_table_loads_as_its_text_does_with_the_same_checks() {
    let table: toml::Table = GOOD.parse().unwrap();
    assert_eq!(
        crate::config::load_table("s.toml", &table).unwrap(),
        load_toml("s.toml", GOOD).unwrap()
    );
    let bad: toml::Table = GOOD.replace("weight = 10", "weight = 300").parse().unwrap();
    let e = crate::config::load_table("s.toml", &bad).unwrap_err().0;
    assert!(
        e.iter().any(|e| e.message == "weight 300 above 256"),
        "{e:?}"
    );
}

#[test]
fn listeners_on_one_address_conflict_but_port_zero_never_does() {
    let base = GOOD;
    let problems = |text: &str| {
        load_toml("t.toml", text)
            .err()
            .map(|e| e.0)
            .unwrap_or_default()
    };
    let second = "\n[[frontend]]\nname = \"other\"\nbind = [\"BIND\"]\nbackend = \"app\"\n";
    for (bind, conflict) in [
        ("127.0.0.1:9443", true),
        ("0.0.0.0:9443", true),
        ("127.0.0.2:9443", false),
        ("127.0.0.1:9444", false),
    ] {
        let text = format!("{base}{}", second.replace("BIND", bind));
        let found = problems(&text)
            .iter()
            .any(|e| e.message.contains("already listens on"));
        assert_eq!(found, conflict, "{bind}");
    }
    let zero = GOOD.replace("127.0.0.1:9443", "127.0.0.1:0");
    let text = format!("{zero}{}", second.replace("BIND", "127.0.0.1:0"));
    assert!(!problems(&text)
        .iter()
        .any(|e| e.message.contains("already listens on")));
    let stats = GOOD.replace("bind = \"127.0.0.1:1936\"", "bind = \"127.0.0.1:9443\"");
    assert!(
        problems(&stats)
            .iter()
            .any(|e| e.key_path == "stats.bind" && e.message.contains("already listens on")),
        "{:?}",
        problems(&stats)
    );
}

#[test]
fn the_runtime_api_socket_loads_and_bad_values_are_located() {
    let text =
        format!("{GOOD}\n[admin]\nsocket = \"/run/tether/admin.sock\"\nlevel = \"operator\"\n");
    let c = load_toml("tether.toml", &text).unwrap();
    let a = c.admin.unwrap();
    assert_eq!(a.socket, "/run/tether/admin.sock");
    assert_eq!((a.mode.as_str(), a.level), ("600", AdminLevel::Operator));
    let bad = format!("{GOOD}\n[admin]\nsocket = \"\"\nmode = \"999\"\n");
    let e = errors(&bad);
    let paths: Vec<&str> = e.iter().map(|e| e.key_path.as_str()).collect();
    assert_eq!(paths, ["admin.socket", "admin.mode"], "{e:?}");
    assert!(e.iter().all(|e| e.line > 40), "{e:?}");
    let e = errors(&format!(
        "{GOOD}\n[admin]\nsocket = \"/x\"\nlevel = \"root\"\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].message.contains("root"), "{e:?}");
}

/// HAProxy refuses `check-ssl` with its default `verify required` and no `ca-file`; so does the
/// native config, on the line of the setting, with both ways out.
#[test]
fn check_tls_without_a_ca_file_is_located_with_its_fix() {
    let text = GOOD.replace(
        "weight = 10",
        "weight = 10\ncheck-tls = { sni = \"api.internal\" }",
    );
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 34);
    assert_eq!(e[0].key_path, "backend.app.server.s1.check-tls");
    assert!(e[0].message.contains("no CA file"), "{}", e[0].message);
    assert!(e[0].fix.contains("verify none"), "{}", e[0].fix);
    let text = GOOD.replace(
        "inter = \"3s\"",
        "inter = \"3s\"\ntls = { verify = \"requird\" }",
    );
    assert!(
        errors(&text)[0].message.contains("requird"),
        "{:?}",
        errors(&text)
    );
    let ok = GOOD.replace(
        "inter = \"3s\"",
        "inter = \"3s\"\ntls = { verify = \"none\" }",
    );
    let config = load_toml("tether.toml", &ok).unwrap();
    assert_eq!(
        config.backends[0]
            .check_tls(&config.backends[0].servers[0])
            .map(|t| t.verify),
        Some(Verify::None),
        "the backend's settings apply to its servers"
    );
    // Serialised and loaded back alike.
    let back = load_toml("again.toml", &toml::to_string(&config).unwrap()).unwrap();
    assert_eq!(back, config);
}

/// `random-draws` is bounded and belongs to `balance = "random"` only.
#[test]
fn random_draws_are_bounded_and_need_balance_random() {
    let random = GOOD.replace(
        "balance = \"hash\"\nhash-key = \"sni\"\nhash-balance-factor = 150",
        "balance = \"random\"",
    );
    assert!(load_toml(
        "t.toml",
        &random.replace(
            "balance = \"random\"",
            "balance = \"random\"\nrandom-draws = 3"
        )
    )
    .is_ok());
    for (extra, wrong) in [
        ("random-draws = 0", "out of range"),
        ("random-draws = 101", "out of range"),
    ] {
        let e = errors(&random.replace(
            "balance = \"random\"",
            &format!("balance = \"random\"\n{extra}"),
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].message.contains(wrong), "{}", e[0].message);
        assert!(e[0].key_path.ends_with("random-draws"), "{}", e[0].key_path);
    }
    let e = errors(&GOOD.replace("balance = \"hash\"", "balance = \"hash\"\nrandom-draws = 2"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].message.contains("only applies"), "{}", e[0].message);
}

/// `track` errors are located on the server's `track` line with a fix, as HAProxy refuses
/// them: an unknown server, a tracker that checks too, an unchecked tracked server, a loop.
#[test]
fn track_errors_name_the_line_and_a_fix() {
    let track = |s1: &str, s2: &str| {
        GOOD.replace("weight = 10", &format!("weight = 10\n{s1}"))
            .replace("rise = 5", &format!("rise = 5\n{s2}"))
    };
    let ok = load_toml("t.toml", &track("", "check = false\ntrack = \"s1\"")).unwrap();
    assert_eq!(
        ok.backends[0].servers[1].tracked("app"),
        Some(("app", "s1"))
    );
    let back = load_toml("again.toml", &toml::to_string(&ok).unwrap()).unwrap();
    assert_eq!(back, ok, "track survives the round trip");
    for (s1, s2, line, msg, fix) in [
        (
            "",
            "check = false\ntrack = \"app/s9\"",
            42,
            "does not exist",
            "track = \"s1\"",
        ),
        (
            "",
            "track = \"s1\"",
            41,
            "also runs its own checks",
            "check = false",
        ),
        (
            "check = false",
            "check = false\ntrack = \"s1\"",
            42,
            "has no checks",
            "check = true",
        ),
        (
            "check = false\ntrack = \"s2\"",
            "check = false\ntrack = \"s1\"",
            35,
            "loops back",
            "end the chain",
        ),
    ] {
        let e = errors(&track(s1, s2));
        assert!(!e.is_empty(), "{s1} / {s2}");
        assert_eq!(e[0].line, line, "{e:?}");
        assert!(e[0].key_path.ends_with(".track"), "{e:?}");
        assert!(e[0].message.contains(msg), "{e:?}");
        assert!(e[0].fix.contains(fix), "{e:?}");
    }
}

/// `agent` loads and round-trips; port 0 is refused on its line.
#[test]
fn agent_check_loads_round_trips_and_refuses_port_zero() {
    let text = GOOD.replace(
        "weight = 10",
        "weight = 10\nagent = { port = 5555, addr = \"10.0.0.9\", inter = \"5s\", send = \"hi\\n\" }",
    );
    let c = load_toml("t.toml", &text).unwrap();
    let s = &c.backends[0].servers[0];
    assert_eq!(s.agent_address().as_deref(), Some("10.0.0.9:5555"));
    assert_eq!(s.agent.as_ref().unwrap().send.as_deref(), Some("hi\n"));
    let back = load_toml("again.toml", &toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    let e = errors(&text.replace("port = 5555", "port = 0"));
    assert_eq!(
        (e[0].line, e[0].key_path.as_str()),
        (34, "backend.app.server.s1.agent.port")
    );
}

#[test]
fn pipe_size_is_a_size_within_what_linux_grants_a_pipe() {
    let text = GOOD.replace("grace = \"10s\"", "grace = \"10s\"\npipe-size = \"256k\"");
    let c = load_toml("tether.toml", &text).expect("loads");
    assert_eq!(c.global.pipe_size, Some(256 * 1024));
    assert_eq!(
        Config::default().global.pipe_size,
        None,
        "the system's by default"
    );
    let e = errors(&GOOD.replace("grace = \"10s\"", "grace = \"10s\"\npipe-size = \"2m\""));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 6);
    assert!(e[0].message.contains("4k to 1m"), "{}", e[0].message);
    assert!(e[0].fix.contains("256k"), "{}", e[0].fix);
}
