//! The stats listener's read-only outputs against a real daemon: the HTML page lists servers with
//! their state, HAProxy's CSV has its column names and per-server counters that move with
//! traffic, the JSON agrees, and `/metrics` is valid Prometheus text whose counters move.

mod stats_support;

use stats_support::*;

#[tokio::test]
async fn html_lists_every_server_with_its_state_refresh_and_version() {
    let rig = Rig::start(
        &["alpha", "beta"],
        "refresh = \"7s\"\nadmin = true\nadmin-without-auth = true",
    )
    .await;
    let r = rig.get("/").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(r.header("refresh"), Some("7"));
    assert!(r
        .body
        .contains("<meta http-equiv=\"refresh\" content=\"7\">"));
    assert!(r
        .body
        .contains(&format!("tether version {}", env!("CARGO_PKG_VERSION"))));
    for name in ["alpha", "beta"] {
        let row_start = r
            .body
            .find(&format!("id=\"srv-app-{name}\""))
            .unwrap_or_else(|| panic!("no row for {name}:\n{}", r.body));
        let row = &r.body[row_start..row_start + r.body[row_start..].find("</tr>").unwrap()];
        // "UP", or "UP 1/3" until the first check passes (HAProxy's n/m progress).
        assert!(row.contains("<td class=\"status\">UP"), "{row}");
        assert!(row.contains("value=\"drain\""), "admin forms shown: {row}");
    }
    assert!(r.body.contains("frontend main") && r.body.contains("backend app"));
    assert!(r.body.contains(">hit<") && r.body.contains(">learned<"));
}

#[tokio::test]
async fn hide_version_and_no_admin_forms_without_admin() {
    let rig = Rig::start(&["alpha"], "hide-version = true").await;
    let r = rig.get("/").await;
    assert!(!r.body.contains("tether version"), "{}", r.body);
    assert!(!r.body.contains("<form"), "admin disabled: no forms");
    assert!(r.header("refresh").is_none());
    let j = rig.get("/;json").await.json();
    assert!(j.get("version").is_none());
}

#[tokio::test]
async fn csv_has_haproxy_columns_and_counters_move_with_traffic() {
    let rig = Rig::start(&["alpha", "beta"], "").await;
    let before = rig.get("/;csv").await;
    assert_eq!(before.status, 200);
    assert!(before.body.starts_with(
        "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,"
    ));
    let rows: Vec<&str> = before.body.lines().skip(1).collect();
    let names: Vec<String> = rows
        .iter()
        .map(|l| l.split(',').take(2).collect::<Vec<_>>().join("/"))
        .collect();
    assert_eq!(
        names,
        ["main/FRONTEND", "app/alpha", "app/beta", "app/BACKEND"]
    );
    let alpha = csv_row(&before.body, "app", "alpha");
    assert_eq!(cell(&alpha, "stot"), "0");
    assert_eq!(cell(&alpha, "status"), "UP");
    assert_eq!(cell(&alpha, "type"), "2");

    // Four plain connections, roundrobin: two each.
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(rig.connect(PLAIN).await);
    }
    seen.sort();
    assert_eq!(seen, ["alpha", "alpha", "beta", "beta"]);
    // Totals are counted when connections finish; wait for the closes to be accounted.
    let mut after = String::new();
    for _ in 0..50 {
        after = rig.get("/;csv").await.body;
        if cell(&csv_row(&after, "main", "FRONTEND"), "scur") == "0" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for name in ["alpha", "beta"] {
        let row = csv_row(&after, "app", name);
        assert_eq!(cell(&row, "stot"), "2", "{after}");
        assert_eq!(cell(&row, "lbtot"), "2");
        assert!(
            cell(&row, "bin").parse::<u64>().unwrap() >= 2 * PLAIN.len() as u64,
            "{after}"
        );
        assert!(
            cell(&row, "bout").parse::<u64>().unwrap() >= 2 * (name.len() as u64 + 1),
            "{after}"
        );
    }
    let fe = csv_row(&after, "main", "FRONTEND");
    assert_eq!(cell(&fe, "stot"), "4");
    let be = csv_row(&after, "app", "BACKEND");
    assert_eq!(cell(&be, "stot"), "4");
    assert_eq!(cell(&be, "act"), "2");
}

#[tokio::test]
async fn json_reports_servers_and_affinity() {
    let rig = Rig::start(&["alpha", "beta"], "").await;
    rig.connect(&client_hello(&[7; 32])).await;
    let mut j = serde_json::Value::Null;
    for _ in 0..50 {
        j = rig.get("/;json").await.json();
        if j["backends"][0]["affinity"]
            .as_object()
            .is_some_and(|m| !m.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let be = &j["backends"][0];
    assert_eq!(be["name"], "app");
    assert_eq!(be["servers"][0]["name"], "alpha");
    assert_eq!(be["servers"][1]["status"], "UP");
    assert_eq!(be["tables"][0]["table"], "session-id");
    // A session ID nobody knows: a miss (the banner server taught nothing).
    assert_eq!(be["affinity"]["miss-unknown"], 1, "{j:#}");
    assert_eq!(j["frontends"][0]["accepted"], 1);
}

/// Checks the Prometheus text format line by line; returns (name, labels, value) samples.
fn parse_prometheus(text: &str) -> Vec<(String, String, f64)> {
    let mut typed = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split(' ');
            let name = p.next().unwrap();
            assert!(["counter", "gauge"].contains(&p.next().unwrap()), "{line}");
            assert!(typed.insert(name.to_string()), "TYPE twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                assert!(l.ends_with('}'), "{line}");
                for pair in l.trim_end_matches('}').split("\",") {
                    let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    assert!(!v.trim_end_matches('"').contains('"'), "{line}");
                }
                (n, l.trim_end_matches('}').to_string())
            }
            None => (series, String::new()),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert!(typed.contains(name), "sample before its TYPE: {line}");
        samples.push((name.to_string(), labels, value));
    }
    samples
}

fn sample(samples: &[(String, String, f64)], name: &str, label_part: &str) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l.contains(label_part))
        .map(|s| s.2)
        .unwrap_or_else(|| panic!("no sample {name}{{..{label_part}..}}"))
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_move() {
    let rig = Rig::start(&["alpha", "beta"], "").await;
    let r = rig.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let before = parse_prometheus(&r.body);
    assert_eq!(
        sample(
            &before,
            "tether_server_connections_total",
            "server=\"alpha\""
        ),
        0.0
    );
    assert_eq!(
        sample(
            &before,
            "tether_stick_table_capacity",
            "table=\"session-id\""
        ),
        1024.0
    );
    assert_eq!(sample(&before, "tether_server_up", "server=\"beta\""), 1.0);

    rig.connect(&client_hello(&[1; 32])).await;
    rig.connect(PLAIN).await;
    let mut after = Vec::new();
    for _ in 0..50 {
        after = parse_prometheus(&rig.get("/metrics").await.body);
        if sample(&after, "tether_frontend_connections_current", "main") == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let total: f64 = ["alpha", "beta"]
        .iter()
        .map(|s| {
            sample(
                &after,
                "tether_server_connections_total",
                &format!("server=\"{s}\""),
            )
        })
        .sum();
    assert_eq!(total, 2.0);
    assert_eq!(
        sample(&after, "tether_frontend_connections_total", "main"),
        2.0
    );
    assert_eq!(
        sample(
            &after,
            "tether_affinity_outcomes_total",
            "outcome=\"miss-unknown\""
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "tether_affinity_outcomes_total",
            "reason=\"not-tls\""
        ),
        1.0
    );
    assert_eq!(
        sample(&after, "tether_stick_table_misses_total", "session-id"),
        1.0
    );
}

#[tokio::test]
async fn last_check_shows_status_and_duration_after_a_check() {
    let rig = Rig::start(&["alpha", "beta"], "").await;
    // Checks run every 1 s in the rig; wait for the first one.
    let mut json = serde_json::Value::Null;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        json = rig.get("/;json").await.json();
        if json.to_string().contains("L4OK") {
            break;
        }
    }
    let text = json.to_string();
    assert!(text.contains("\"status\":\"L4OK\""), "{json:#}");
    let page = rig.get("/").await.body;
    assert!(
        page.contains("L4OK in "),
        "HTML shows the last check:\n{page}"
    );
}
