use super::*;
use tether_core::config::load_toml;
use tether_core::engine::runtime;
use tether_core::server::AdminState;
use tether_core::time::Timestamp;

fn runtime() -> runtime::Runtime {
    let text = "[[frontend]]\nname = \"main\"\nbind = [\"127.0.0.1:0\"]\nbackend = \"app\"\n\n\
                [[backend]]\nname = \"app\"\nbalance = \"roundrobin\"\naffinity = [\"session-id\"]\n\n\
                [[backend.server]]\nname = \"s1\"\naddress = \"127.0.0.1:1\"\n\n\
                [[backend.server]]\nname = \"s2\"\naddress = \"127.0.0.1:2\"\nweight = 3\n\
                agent = { port = 9999 }\n";
    let config = load_toml("t.toml", text).unwrap();
    runtime::build(&config, None).unwrap()
}

fn ctx(rt: &runtime::Runtime) -> Ctx<'_> {
    Ctx {
        runtime: rt,
        peers: None,
        actconn: 0,
        now: Timestamp(0),
        uptime: Duration::from_secs(3723),
        started_unix: 0,
        node: "test",
    }
}

fn say(s: &mut Session, rt: &runtime::Runtime, line: &str) -> Answer {
    s.line(line.as_bytes(), &ctx(rt))
}

fn admin_of(rt: &runtime::Runtime, i: usize) -> AdminState {
    rt.backends["app"].server_states()[i].admin
}

#[test]
fn one_line_then_close_each_answer_ending_in_an_empty_line() {
    let rt = runtime();
    let mut s = Session::new(AdminLevel::Admin);
    let a = say(
        &mut s,
        &rt,
        "get weight app/s2;get weight app/nope;get weight zz/s1",
    );
    assert_eq!(
        a.output,
        "3 (initial 3)\n\nNo such server.\n\nNo such backend.\n\n"
    );
    assert!(a.close);
}

#[test]
fn prompt_mode_keeps_the_session_and_prints_the_prompt() {
    let rt = runtime();
    let mut s = Session::new(AdminLevel::Admin);
    let a = say(&mut s, &rt, "prompt");
    assert_eq!(
        a,
        Answer {
            output: "\n> ".into(),
            close: false
        }
    );
    assert_eq!(say(&mut s, &rt, "set timeout cli 60").output, "\n> ");
    assert_eq!(s.idle_timeout(), Duration::from_secs(60));
    assert_eq!(say(&mut s, &rt, "").output, "\n> ");
    let a = say(&mut s, &rt, "set weight app/s2 50%;get weight app/s2");
    assert_eq!(a.output, "\n> 1 (initial 3)\n\n> ");
    assert!(say(&mut s, &rt, "quit").close);
}

#[test]
fn levels_are_enforced_and_can_only_go_down() {
    let rt = runtime();
    let mut s = Session::new(AdminLevel::User);
    assert_eq!(
        say(&mut s, &rt, "disable server app/s1").output,
        "Permission denied\n\n"
    );
    assert_eq!(
        say(&mut s, &rt, "admin;clear table app").output,
        "\nPermission denied\n\n"
    );
    assert_eq!(admin_of(&rt, 0), AdminState::Ready);
    let mut s = Session::new(AdminLevel::Operator);
    assert_eq!(say(&mut s, &rt, "disable server app/s1").output, "\n");
    assert_eq!(admin_of(&rt, 0), AdminState::Maint);
    assert_eq!(
        say(&mut s, &rt, "clear table app").output,
        "Permission denied\n\n"
    );
    let mut s = Session::new(AdminLevel::Admin);
    assert_eq!(
        say(&mut s, &rt, "clear table app;clear table nope").output,
        "\nNo such table\n\n"
    );
    assert_eq!(
        say(&mut s, &rt, "user;enable server app/s1").output,
        "\nPermission denied\n\n"
    );
    assert_eq!(admin_of(&rt, 0), AdminState::Maint);
}

#[test]
fn unknown_commands_get_haproxys_better_match_list() {
    let rt = runtime();
    let mut s = Session::new(AdminLevel::Admin);
    let out = say(&mut s, &rt, "show frobs").output;
    assert!(
        out.starts_with(
            "Unknown command, but maybe one of the following ones is a better match:\n"
        ),
        "{out}"
    );
    assert!(out.contains("  show stat"), "{out}");
    assert!(
        out.ends_with("  quit                                    : disconnect\n\n"),
        "{out:?}"
    );
    let help = say(&mut Session::new(AdminLevel::User), &rt, "help").output;
    assert!(
        help.starts_with(
            "The following commands are valid at this level:\n  \
             clear table <table> [<filter>]*         : remove"
        ),
        "{help}"
    );
}

#[test]
fn show_info_and_servers_state_have_haproxys_layout() {
    let rt = runtime();
    let mut s = Session::new(AdminLevel::Admin);
    let info = say(&mut s, &rt, "show info").output;
    assert!(info.starts_with("Name: tether\nVersion: "), "{info}");
    assert!(
        info.contains("\nUptime: 0d 1h02m03s\nUptime_sec: 3723\n"),
        "{info}"
    );
    assert!(info.contains("\nMaxconn: "), "{info}");
    let _ = say(&mut s, &rt, "set server app/s1 state drain");
    let st = say(&mut s, &rt, "show servers state app").output;
    let lines: Vec<&str> = st.lines().collect();
    assert_eq!(lines[0], "1");
    assert!(lines[1].starts_with("# be_id be_name srv_id srv_name srv_addr srv_op_state"));
    assert_eq!(
        lines[2],
        "2 app 1 s1 127.0.0.1 2 8 1 1 0 1 0 4 6 0 0 0 - 1 - 0 0 - - 0"
    );
    assert!(
        lines[3].starts_with("2 app 2 s2 127.0.0.1 2 0 3 3 "),
        "{}",
        lines[3]
    );
    // s2's agent: configured, enabled, an agent (0x16), asked on 127.0.0.1:9999.
    let agent: Vec<&str> = lines[3].split(' ').collect();
    assert_eq!(
        (agent[14], agent[23], agent[24]),
        ("22", "127.0.0.1", "9999"),
        "{}",
        lines[3]
    );
    assert_eq!(
        say(&mut s, &rt, "show servers state zz").output,
        "Can't find backend.\n\n"
    );
}

#[test]
fn show_stat_is_the_stats_page_csv() {
    let rt = runtime();
    let mut s = Session::new(AdminLevel::User);
    let out = say(&mut s, &rt, "show stat").output;
    let csv = crate::stats::csv::render(&crate::stats::snapshot::take(&rt, 0));
    assert_eq!(out, format!("{csv}\n"));
    // hatop's filter form: proxy iid 2 (the backend), servers only, server 2.
    let out = say(&mut s, &rt, "show stat 2 4 2").output;
    let rows: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[1].starts_with("app,s2,"), "{out}");
    let _ = say(
        &mut Session::new(AdminLevel::Admin),
        &rt,
        "disable server app/s1",
    );
    let out = say(&mut s, &rt, "show stat app -1 -1 no-maint").output;
    assert!(
        !out.contains("app,s1,") && out.contains("app,BACKEND,"),
        "{out}"
    );
}

#[test]
fn tables_list_show_and_clear() {
    let rt = runtime();
    let t = rt.backends["app"].tables.iter().next().unwrap().clone();
    t.set(&[0xab; 4], tether_core::ServerId(1), Timestamp(0));
    let mut s = Session::new(AdminLevel::Admin);
    assert_eq!(
        say(&mut s, &rt, "show table").output,
        format!(
            "# table: app, type: binary, size:{}, used:1\n\n",
            t.stats().capacity
        )
    );
    let out = say(&mut s, &rt, "show table app data.server_id eq 2").output;
    assert!(out.contains(": key=ABABABAB0000"), "{out}");
    assert!(out.contains(" use=0 exp=1800000 "), "{out}");
    assert!(
        out.contains(" server_id=2 server_key=s2 origin=-\n"),
        "{out}"
    );
    let out = say(&mut s, &rt, "show table app data.server_id eq 1").output;
    assert!(!out.contains("key="), "{out}");
    assert_eq!(
        say(&mut s, &rt, "clear table app key zz").output,
        "Unable to parse key.\n\n"
    );
    assert_eq!(
        say(&mut s, &rt, "clear table app key abababab").output,
        "\n"
    );
    assert!(t.is_empty());
}

use proptest::prelude::*;

proptest! {
    /// Any line, made of command words and junk, runs without a panic and ends as HAProxy ends
    /// its answers.
    #[test]
    fn any_line_is_answered_without_panicking(
        words in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::sample::select(vec![
                    "show", "stat", "info", "table", "app", "app.session-id", "servers", "state",
                    "set", "server", "weight", "get", "clear", "key", "enable", "disable",
                    "app/s1", "app/s2", "app/", "/s1", "maint", "drain", "ready", "50%", "0",
                    "257", "-1", "4", "prompt", "help", "quit", "timeout", "cli", ";", "user",
                    "data.server_id", "eq", "ab", "operator",
                ]).prop_map(|s| s.as_bytes().to_vec()),
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6),
            ],
            0..10,
        )
    ) {
        let rt = runtime();
        let line = words.join(&b' ');
        let mut s = Session::new(AdminLevel::Admin);
        let a = s.line(&line, &ctx(&rt));
        proptest::prop_assert!(a.output.is_empty() || a.output.ends_with('\n') || a.output.ends_with("> "));
    }
}
