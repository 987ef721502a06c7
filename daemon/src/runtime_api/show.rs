//! The read-only commands: `help`, `show info`, `show stat` (the same CSV as the HTTP `;csv`)
//! and `show servers state`, in HAProxy 2.6's layouts.

use std::fmt::Write as _;

use tether_core::server::{AdminState, OperState, ServerId};

use super::command::{ProxySelector, StatFilter};
use super::Ctx;
use crate::stats::{csv, snapshot};

/// The commands `help` lists: usage, description (HAProxy's wording, aligned as HAProxy does).
pub const HELP: &[(&str, &str)] = &[
    (
        "clear table <table> [<filter>]*",
        "remove an entry from a table (filter: data/key)",
    ),
    (
        "disable server (DEPRECATED)",
        "disable a server for maintenance (use 'set server' instead)",
    ),
    (
        "enable server  (DEPRECATED)",
        "enable a disabled server (use 'set server' instead)",
    ),
    ("get weight <bk>/<srv>", "report a server's current weight"),
    (
        "operator",
        "lower the level of the current CLI session to operator",
    ),
    (
        "set server <bk>/<srv> [opts]",
        "change a server's state or weight",
    ),
    ("set timeout [cli] <delay>", "change a timeout setting"),
    (
        "set weight <bk>/<srv>  (DEPRECATED)",
        "change a server's weight (use 'set server' instead)",
    ),
    ("show info", "report information about the running process"),
    (
        "show servers state [<backend>]",
        "dump volatile server information (all or for a single backend)",
    ),
    ("show stat", "report counters for each proxy and server"),
    (
        "show table <table> [<filter>]*",
        "report table usage stats or dump this table's contents (filter: data/key)",
    ),
    ("user", "lower the level of the current CLI session to user"),
];

/// Always listed last, as HAProxy does.
const ALWAYS: &[(&str, &str)] = &[
    ("help [<command>]", "list matching or all commands"),
    ("prompt", "toggle interactive mode with prompt"),
    ("quit", "disconnect"),
];

fn push_lines<'a>(out: &mut String, lines: impl Iterator<Item = &'a (&'a str, &'a str)>) {
    for (usage, what) in lines {
        let _ = writeln!(out, "  {usage:<40}: {what}");
    }
}

/// `help`.
pub fn help() -> String {
    let mut out = String::from("The following commands are valid at this level:\n");
    push_lines(&mut out, HELP.iter().chain(ALWAYS));
    out
}

/// The answer to an unknown command: the commands sharing its first word, then help/prompt/quit.
pub fn unknown(first: &str) -> String {
    let mut out =
        String::from("Unknown command, but maybe one of the following ones is a better match:\n");
    let near = HELP
        .iter()
        .filter(|(u, _)| !first.is_empty() && u.split(' ').next() == Some(first));
    push_lines(&mut out, near.chain(ALWAYS));
    out
}

/// `show info`: the fields hatop and the Prometheus exporter read, with HAProxy's names.
pub fn info(ctx: &Ctx) -> String {
    let up = ctx.uptime.as_secs();
    let cum: u64 = ctx
        .runtime
        .frontends
        .iter()
        .map(|f| f.accepted.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    let fields: [(&str, String); 27] = [
        ("Name", "tether".into()),
        ("Version", env!("CARGO_PKG_VERSION").into()),
        ("Release_date", "-".into()),
        ("Nbthread", "1".into()),
        ("Nbproc", "1".into()),
        ("Process_num", "1".into()),
        ("Pid", std::process::id().to_string()),
        (
            "Uptime",
            format!(
                "{}d {}h{:02}m{:02}s",
                up / 86400,
                up / 3600 % 24,
                up / 60 % 60,
                up % 60
            ),
        ),
        ("Uptime_sec", up.to_string()),
        ("Memmax_MB", "0".into()),
        ("Maxconn", ctx.runtime.maxconn.to_string()),
        ("Hard_maxconn", ctx.runtime.maxconn.to_string()),
        ("CurrConns", ctx.actconn.to_string()),
        ("CumConns", cum.to_string()),
        ("Maxpipes", "0".into()),
        ("PipesUsed", "0".into()),
        ("PipesFree", "0".into()),
        ("ConnRate", "0".into()),
        ("Tasks", ctx.actconn.to_string()),
        ("Run_queue", "0".into()),
        ("Idle_pct", "100".into()),
        ("node", ctx.node.to_string()),
        ("Stopping", "0".into()),
        ("Jobs", ctx.actconn.to_string()),
        ("Listeners", ctx.runtime.frontends.len().to_string()),
        ("Start_time_sec", ctx.started_unix.to_string()),
        ("DroppedLogs", crate::syslog::dropped().to_string()),
    ];
    let mut out = String::new();
    for (k, v) in fields {
        let _ = writeln!(out, "{k}: {v}");
    }
    out
}

/// `show stat`: the HTTP page's CSV (the same bytes when nothing is filtered), keeping the
/// rows `filter` selects.
pub fn stat(ctx: &Ctx, filter: &StatFilter) -> String {
    let all = csv::render(&snapshot::take(ctx.runtime, ctx.actconn));
    if *filter == StatFilter::ALL {
        return all;
    }
    let col = |name: &str| csv::COLUMNS.iter().position(|c| *c == name).unwrap_or(0);
    let (iid, sid, kind, status) = (col("iid"), col("sid"), col("type"), col("status"));
    let mut out = String::new();
    for line in all.lines() {
        // Names with commas are quoted in the CSV; such rows are kept only when unfiltered by
        // name, which is the conservative choice for a monitoring filter.
        let cells: Vec<&str> = line.split(',').collect();
        let keep = line.starts_with('#') || keeps(filter, &cells, iid, sid, kind, status);
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn keeps(
    f: &StatFilter,
    cells: &[&str],
    iid: usize,
    sid: usize,
    kind: usize,
    status: usize,
) -> bool {
    let num = |i: usize| {
        cells
            .get(i)
            .and_then(|c| c.parse::<i32>().ok())
            .unwrap_or(-2)
    };
    let proxy_ok = match f.proxy {
        None => true,
        Some(ProxySelector::Iid(n)) => num(iid) == n,
        Some(ProxySelector::Name(n)) => cells.first() == Some(&n),
    };
    let t = num(kind);
    let type_ok = f.types == -1 || ((0..=2).contains(&t) && f.types & (1 << t) != 0);
    let is_server = t == 2;
    let sid_ok = f.sid == -1 || !is_server || num(sid) == f.sid;
    let st = cells.get(status).copied().unwrap_or("");
    let up_ok = !f.up || !is_server || st.starts_with("UP") || st == "no check";
    let maint_ok = !f.no_maint || !is_server || !st.starts_with("MAINT");
    proxy_ok && type_ok && sid_ok && up_ok && maint_ok
}

/// The `show servers state` header (format version 1).
pub const SERVERS_STATE_HEADER: &str = "1\n# be_id be_name srv_id srv_name srv_addr \
    srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change \
    srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state \
    bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port \
    srv_check_addr srv_agent_addr srv_agent_port\n";

/// `show servers state [BACKEND]`; `be_id` numbers proxies as `show stat`'s `iid` does.
pub fn servers_state(ctx: &Ctx, only: Option<&str>) -> String {
    if let Some(name) = only {
        if !ctx.runtime.backends.contains_key(name) {
            return "Can't find backend.\n".into();
        }
    }
    let snap = snapshot::take(ctx.runtime, ctx.actconn);
    let mut out = String::from(SERVERS_STATE_HEADER);
    let first_iid = snap.frontends.len() + 1;
    for (bi, b) in snap.backends.iter().enumerate() {
        if only.is_some_and(|n| n != b.name) {
            continue;
        }
        let backend = &ctx.runtime.backends[&b.name];
        for (si, s) in b.servers.iter().enumerate() {
            // HAProxy dumps `-` and port 0 for a unix-socket server.
            let (host, port) = if tether_core::config::is_unix_address(&s.address) {
                ("-", "0")
            } else {
                s.address.rsplit_once(':').unwrap_or((&s.address, "0"))
            };
            let slot = &backend.servers[si];
            let forced_id = u8::from(slot.id.is_some());
            let op = if s.oper == OperState::Up { 2 } else { 0 };
            let admin = match s.admin {
                AdminState::Ready => 0,
                AdminState::Maint => 0x01,
                AdminState::Drain => 0x08,
            };
            // HAProxy's check status codes: 1 INI (no check yet), 6 L4OK, 7 L4TOUT, 8 L4CON.
            let (status, result, state) = match (&s.last_check, s.check) {
                (_, false) => (1, 0, 0),
                (None, true) => (1, 0, 6),
                (Some(c), true) => match c.status {
                    "L4OK" => (6, 3, 6),
                    "L4TOUT" => (7, 2, 6),
                    _ => (8, 2, 6),
                },
            };
            let health = if s.oper == OperState::Up {
                slot.health.rise + slot.health.fall - 1
            } else {
                0
            };
            // An agent: CHK_ST_CONFIGURED | ENABLED | AGENT, and where it is asked.
            let (agent_state, agent_addr, agent_port) = match &slot.agent {
                Some(a) => {
                    let (h, p) = a.address.rsplit_once(':').unwrap_or((&a.address, "0"));
                    (0x16, h.trim_start_matches('[').trim_end_matches(']'), p)
                }
                None => (0, "-", "0"),
            };
            let _ = writeln!(
                out,
                "{} {} {} {} {} {op} {admin} {} {} 0 {status} {result} {health} {state} {agent_state} 0 {forced_id} - {} - 0 0 - {agent_addr} {agent_port}",
                first_iid + bi,
                b.name,
                backend.number(ServerId(si as u32)),
                s.name,
                host.trim_start_matches('[').trim_end_matches(']'),
                s.weight,
                slot.initial_weight,
                port,
            );
        }
    }
    out
}
