//! HAProxy's stats CSV (`<uri>;csv` and the runtime API's `show stat`): all of HAProxy 2.6's
//! columns, in its order and with its names, so scripts, dashboards and `hatop` (which wants at
//! least 51 columns) read tether unchanged. Columns tether does not track (queues,
//! request/response errors, down time) are left empty, as HAProxy does for fields that do not
//! apply.

use super::snapshot::{AgentView, BackendView, FrontendView, ServerView, Snapshot};

/// HAProxy 2.6's column names, in order (`show stat` / `;csv`), the `-` placeholder included.
pub const COLUMNS: [&str; 128] = [
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
    "conn_rate",
    "conn_rate_max",
    "conn_tot",
    "intercepted",
    "dcon",
    "dses",
    "wrew",
    "connect",
    "reuse",
    "cache_lookups",
    "cache_hits",
    "srv_icur",
    "src_ilim",
    "qtime_max",
    "ctime_max",
    "rtime_max",
    "ttime_max",
    "eint",
    "idle_conn_cur",
    "safe_conn_cur",
    "used_conn_cur",
    "need_conn_est",
    "uweight",
    "agg_server_status",
    "agg_server_check_status",
    "agg_check_status",
    "-",
    "ssl_sess",
    "ssl_reused_sess",
    "ssl_failed_handshake",
    "h2_headers_rcvd",
    "h2_data_rcvd",
    "h2_settings_rcvd",
    "h2_rst_stream_rcvd",
    "h2_goaway_rcvd",
    "h2_detected_conn_protocol_errors",
    "h2_detected_strm_protocol_errors",
    "h2_rst_stream_resp",
    "h2_goaway_resp",
    "h2_open_connections",
    "h2_backend_open_streams",
    "h2_total_connections",
    "h2_backend_total_streams",
    "h1_open_connections",
    "h1_open_streams",
    "h1_total_connections",
    "h1_total_streams",
    "h1_bytes_in",
    "h1_bytes_out",
    "h1_spliced_bytes_in",
    "h1_spliced_bytes_out",
];

/// Renders the snapshot: a `# `-prefixed header line, then per proxy its FRONTEND row, or its
/// server rows followed by its BACKEND row.
pub fn render(snap: &Snapshot) -> String {
    let mut out = format!("# {},\n", COLUMNS.join(","));
    let mut iid = 0;
    for f in &snap.frontends {
        iid += 1;
        push_row(&mut out, &frontend_row(f, iid));
    }
    for b in &snap.backends {
        iid += 1;
        for s in &b.servers {
            push_row(&mut out, &server_row(b, s, iid));
        }
        push_row(&mut out, &backend_row(b, iid));
    }
    out
}

type Row = Vec<String>;

fn empty() -> Row {
    vec![String::new(); COLUMNS.len()]
}

fn set(row: &mut Row, column: &str, value: impl ToString) {
    if let Some(i) = COLUMNS.iter().position(|c| *c == column) {
        row[i] = value.to_string();
    }
}

fn push_row(out: &mut String, row: &Row) {
    for cell in row {
        // Names are free text in the config: keep the CSV well-formed whatever they hold.
        if cell.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\"").replace(['\n', '\r'], " "));
            out.push('"');
        } else {
            out.push_str(cell);
        }
        out.push(',');
    }
    out.push('\n');
}

fn frontend_row(f: &FrontendView, iid: usize) -> Row {
    let mut r = empty();
    set(&mut r, "pxname", &f.name);
    set(&mut r, "svname", "FRONTEND");
    set(&mut r, "scur", f.current);
    set(&mut r, "stot", f.accepted);
    // Route refusals: at accept on addresses (`tcp-request connection`), after inspection
    // (`tcp-request content`, counted by HAProxy as denied requests); tether has no session
    // rules, so `dses` stays 0.
    set(&mut r, "dreq", f.denied_requests);
    set(&mut r, "dcon", f.denied_connections);
    set(&mut r, "dses", 0);
    set(&mut r, "status", "OPEN");
    set(&mut r, "pid", 1);
    set(&mut r, "iid", iid);
    set(&mut r, "sid", 0);
    set(&mut r, "type", 0);
    r
}

fn server_row(b: &BackendView, s: &ServerView, iid: usize) -> Row {
    let mut r = empty();
    set(&mut r, "pxname", &b.name);
    set(&mut r, "svname", &s.name);
    set(&mut r, "qcur", 0);
    set(&mut r, "scur", s.current);
    set(&mut r, "smax", s.max);
    if s.maxconn > 0 {
        set(&mut r, "slim", s.maxconn);
    }
    set(&mut r, "stot", s.total);
    set(&mut r, "bin", s.bytes_in);
    set(&mut r, "bout", s.bytes_out);
    set(&mut r, "econ", s.connect_errors);
    set(&mut r, "wretr", s.retries);
    set(&mut r, "wredis", s.redispatches);
    set(&mut r, "status", s.status_text());
    set(&mut r, "weight", s.effective_weight);
    set(&mut r, "act", u8::from(!s.backup));
    set(&mut r, "bck", u8::from(s.backup));
    if s.check {
        set(&mut r, "chkfail", s.check_failures);
        set(&mut r, "chkdown", s.check_downs);
        if let Some(secs) = s.last_change_s {
            set(&mut r, "lastchg", secs);
        }
        if let Some(c) = &s.last_check {
            set(&mut r, "check_status", c.status);
            if let Some(code) = c.code {
                set(&mut r, "check_code", code);
            }
            set(&mut r, "check_duration", c.duration_ms);
            set(&mut r, "last_chk", c.info.as_deref().unwrap_or(""));
            set(&mut r, "check_desc", c.desc);
        }
    }
    if let Some(a) = &s.agent {
        agent_cells(&mut r, a);
    }
    if let Some(t) = &s.tracked {
        set(&mut r, "tracked", t);
    }
    set(&mut r, "pid", 1);
    set(&mut r, "iid", iid);
    set(&mut r, "sid", s.number);
    set(&mut r, "lbtot", s.total);
    set(&mut r, "type", 2);
    // HAProxy writes `unix` for a unix-socket server (its addr_to_str), not the path.
    let unix = tether_core::config::is_unix_address(&s.address);
    set(&mut r, "addr", if unix { "unix" } else { &s.address });
    set(&mut r, "mode", "tcp");
    r
}

/// HAProxy's agent columns: the agent's counter has rise = fall = 1.
fn agent_cells(r: &mut Row, a: &AgentView) {
    set(r, "agent_rise", 1);
    set(r, "agent_fall", 1);
    set(r, "agent_health", u8::from(a.up));
    if let Some(c) = &a.last {
        set(r, "agent_status", c.status);
        if let Some(code) = c.code {
            set(r, "agent_code", code);
        }
        set(r, "agent_duration", c.duration_ms);
        set(r, "agent_desc", c.desc);
        set(r, "last_agt", c.info.as_deref().unwrap_or(""));
    }
}

fn backend_row(b: &BackendView, iid: usize) -> Row {
    let mut r = empty();
    let usable = |backup: bool| {
        b.servers
            .iter()
            .filter(|s| s.backup == backup && s.effective_weight > 0)
            .count()
    };
    set(&mut r, "pxname", &b.name);
    set(&mut r, "svname", "BACKEND");
    set(&mut r, "qcur", 0);
    set(&mut r, "scur", b.sum(|s| s.current));
    set(&mut r, "smax", b.sum(|s| s.max));
    set(&mut r, "stot", b.sum(|s| s.total));
    set(&mut r, "bin", b.sum(|s| s.bytes_in));
    set(&mut r, "bout", b.sum(|s| s.bytes_out));
    set(&mut r, "econ", b.sum(|s| s.connect_errors));
    set(&mut r, "wretr", b.sum(|s| s.retries));
    set(&mut r, "wredis", b.sum(|s| s.redispatches));
    set(&mut r, "status", b.status());
    set(&mut r, "weight", b.sum(|s| u64::from(s.effective_weight)));
    set(&mut r, "act", usable(false));
    set(&mut r, "bck", usable(true));
    set(&mut r, "pid", 1);
    set(&mut r, "iid", iid);
    set(&mut r, "sid", 0);
    set(&mut r, "lbtot", b.sum(|s| s.total));
    set(&mut r, "type", 1);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_starts_with_haproxy_names() {
        let out = render(&Snapshot {
            frontends: vec![],
            backends: vec![],
            actconn: 0,
        });
        assert!(out.starts_with("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,"));
        assert!(out.contains("lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,"));
        assert!(out.contains("check_desc,agent_desc,check_rise,check_fall,check_health,"));
        assert!(out.contains("intercepted,dcon,dses,"));
        assert!(out
            .trim_end()
            .ends_with("h1_spliced_bytes_in,h1_spliced_bytes_out,"));
        assert_eq!(
            COLUMNS.iter().position(|c| *c == "dcon"),
            Some(81),
            "HAProxy's field 81"
        );
    }

    #[test]
    fn refusals_land_in_dcon_and_dreq() {
        let f = FrontendView {
            name: "main".into(),
            binds: vec!["127.0.0.1:9443".into()],
            backend: "app".into(),
            current: 0,
            accepted: 9,
            denied_connections: 3,
            denied_requests: 2,
        };
        let out = render(&Snapshot {
            frontends: vec![f],
            backends: vec![],
            actconn: 0,
        });
        let row: Vec<&str> = out.lines().nth(1).unwrap().split(',').collect();
        let col = |name: &str| row[COLUMNS.iter().position(|c| *c == name).unwrap()];
        assert_eq!((col("dcon"), col("dreq"), col("dses")), ("3", "2", "0"));
        assert_eq!(col("stot"), "9");
    }

    #[test]
    fn awkward_names_are_quoted() {
        let mut out = String::new();
        let mut r = empty();
        set(&mut r, "pxname", "a,\"b\"");
        push_row(&mut out, &r);
        assert!(out.starts_with("\"a,\"\"b\"\"\","));
        assert_eq!(out.matches(',').count(), COLUMNS.len() + 1);
    }
}
