use super::*;
use proptest::prelude::*;

fn cmd(text: &str) -> Parsed<'_> {
    parse(text.as_bytes())
}

const APP_S1: Target<'static> = Target {
    backend: "app",
    server: "s1",
};

#[test]
fn reads_the_commands_the_tools_send() {
    assert_eq!(
        cmd("show stat"),
        Parsed::Command(Command::ShowStat(StatFilter::ALL))
    );
    assert_eq!(
        cmd("show stat 3 4 -1 no-maint"),
        Parsed::Command(Command::ShowStat(StatFilter {
            proxy: Some(ProxySelector::Iid(3)),
            types: 4,
            sid: -1,
            up: false,
            no_maint: true,
        }))
    );
    assert_eq!(
        cmd("show stat app -1 2"),
        Parsed::Command(Command::ShowStat(StatFilter {
            proxy: Some(ProxySelector::Name("app")),
            types: -1,
            sid: 2,
            up: false,
            no_maint: false,
        }))
    );
    assert!(matches!(cmd("show stat typed"), Parsed::Invalid(_)));
    assert!(matches!(cmd("show stat 3 x 1"), Parsed::Invalid(_)));
    assert_eq!(cmd("  show   info \r"), Parsed::Command(Command::ShowInfo));
    assert_eq!(cmd("prompt"), Parsed::Command(Command::Prompt));
    assert_eq!(
        cmd("set timeout cli 60"),
        Parsed::Command(Command::SetTimeoutCli(60))
    );
    assert_eq!(
        cmd("show servers state app"),
        Parsed::Command(Command::ShowServersState(Some("app")))
    );
    assert_eq!(
        cmd("set server app/s1 state maint"),
        Parsed::Command(Command::SetServer(APP_S1, ServerChange::Maint))
    );
    assert_eq!(
        cmd("disable server app/s1"),
        Parsed::Command(Command::SetServer(APP_S1, ServerChange::Maint))
    );
    assert_eq!(
        cmd("enable server app/s1"),
        Parsed::Command(Command::SetServer(APP_S1, ServerChange::Ready))
    );
    assert_eq!(
        cmd("set weight app/s1 100%"),
        Parsed::Command(Command::SetServer(
            APP_S1,
            ServerChange::Weight(WeightSpec::Percent(100))
        ))
    );
    assert_eq!(
        cmd("set server app/s1 weight 7"),
        Parsed::Command(Command::SetServer(
            APP_S1,
            ServerChange::Weight(WeightSpec::Absolute(7))
        ))
    );
    assert_eq!(
        cmd("get weight app/s1"),
        Parsed::Command(Command::GetWeight(APP_S1))
    );
    assert_eq!(
        cmd("show table app data.server_id eq 2"),
        Parsed::Command(Command::ShowTable(
            Some("app"),
            Some(TableFilter::ServerId(Compare::Eq, 2))
        ))
    );
    assert_eq!(
        cmd("clear table app key 0a0b"),
        Parsed::Command(Command::ClearTable("app", Some("0a0b")))
    );
    assert_eq!(
        cmd("operator"),
        Parsed::Command(Command::Level(AdminLevel::Operator))
    );
}

#[test]
fn misuse_gets_haproxys_wording() {
    assert_eq!(
        cmd("set server app/s1 state bogus"),
        Parsed::Invalid("'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n")
    );
    assert_eq!(
        cmd("get weight app"),
        Parsed::Invalid("Require 'backend/server'.\n")
    );
    assert_eq!(
        cmd("disable server"),
        Parsed::Invalid("Require 'backend/server'.\n")
    );
    assert_eq!(
        cmd("set weight app/s1 300"),
        Parsed::Invalid("Absolute weight can only be between 0 and 256 inclusive.\n")
    );
    assert_eq!(
        cmd("set weight app/s1 abc"),
        Parsed::Invalid("Empty weight string empty or preceded by garbage")
    );
    assert_eq!(cmd("frobnicate now"), Parsed::Unknown("frobnicate"));
    assert_eq!(cmd(" \t "), Parsed::Empty);
}

#[test]
fn commands_split_on_semicolons() {
    let parts: Vec<&[u8]> = split_commands(b"show info;show stat;;x").collect();
    assert_eq!(parts, [&b"show info"[..], b"show stat", b"", b"x"]);
}

#[test]
fn levels_order_the_commands() {
    let Parsed::Command(c) = cmd("clear table app") else {
        panic!()
    };
    assert_eq!(c.level(), AdminLevel::Admin);
    let Parsed::Command(c) = cmd("set weight app/s1 2") else {
        panic!()
    };
    assert_eq!(c.level(), AdminLevel::Operator);
    let Parsed::Command(c) = cmd("show stat") else {
        panic!()
    };
    assert_eq!(c.level(), AdminLevel::User);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        for part in split_commands(&bytes) {
            let _ = parse(part);
        }
    }

    #[test]
    fn weights_in_range_round_trip(w in 0u32..=256) {
        prop_assert_eq!(weight(&w.to_string()), Ok(WeightSpec::Absolute(w)));
    }
}
