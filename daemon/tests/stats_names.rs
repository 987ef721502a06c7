//! Names from the configuration carried into the stats outputs (issue 17 §3): a frontend,
//! backend (its stick table's name) and servers named with markup, quotes, `&`, commas and
//! backslashes — all of which the native config accepts — appear escaped on the HTML page,
//! as well-formed quoted fields in `/;csv`, and as escaped label values in `/metrics`, on a
//! real daemon. The admin form still acts on such a server, and the balancer keeps serving.

mod stats_support;

use std::sync::Arc;

use stats_support::*;
use tether::logsink::DaemonSink;
use tether::stats::serve_stats;
use tether_core::config::load_toml;
use tether_core::engine::runtime;
use tether_core::server::AdminState;

const FRONTEND: &str = r#"fe<script>alert("f")</script>&'"#;
const BACKEND: &str = r#"be<b>"x",y&amp;"#;
const SERVERS: [&str; 2] = [r#"<img/src=x/onerror=alert(1)>"#, r#"s"1,\n\"#];

/// A TOML basic string holding `s`.
fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A daemon whose every name is hostile, with its stats listener (admin on, no auth).
async fn start() -> (
    tether::run::Daemon,
    tether::stats::StatsListener,
    Vec<BannerBackend>,
) {
    let mut backends = Vec::new();
    for n in SERVERS {
        backends.push(BannerBackend::start(n).await);
    }
    let mut text = format!(
        "[[frontend]]\nname = {}\nbind = [\"127.0.0.1:0\"]\nbackend = {}\ninspect-delay = \"300ms\"\n\n\
         [[backend]]\nname = {}\nbalance = \"roundrobin\"\naffinity = [\"session-id\"]\n\n\
         [backend.stick-table]\nsize = \"1k\"\n\n",
        toml_str(FRONTEND),
        toml_str(BACKEND),
        toml_str(BACKEND)
    );
    for b in &backends {
        text.push_str(&format!(
            "[[backend.server]]\nname = {}\naddress = \"{}\"\n\n",
            toml_str(&b.name),
            b.addr
        ));
    }
    text.push_str("[stats]\nbind = \"127.0.0.1:0\"\nadmin = true\nadmin-without-auth = true\n");
    let config = load_toml("names.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let daemon = tether::run::start(
        runtime::build(&config, None).unwrap(),
        Arc::new(DaemonSink::default()),
    )
    .await
    .unwrap();
    let stats = serve_stats(config.stats.clone().unwrap(), daemon.view())
        .await
        .unwrap();
    (daemon, stats, backends)
}

/// HTML-escaped text, as a browser reads it back.
fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// RFC 4180 records: quoted fields may hold commas and doubled quotes.
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    for line in text.lines() {
        let (mut fields, mut field, mut quoted, mut chars) =
            (Vec::new(), String::new(), false, line.chars().peekable());
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                ('"', true) => quoted = false,
                ('"', false) if field.is_empty() => quoted = true,
                (',', false) => fields.push(std::mem::take(&mut field)),
                (c, _) => field.push(c),
            }
        }
        assert!(!quoted, "an unterminated quoted field: {line}");
        fields.push(field);
        records.push(fields);
    }
    records
}

/// The label values of one Prometheus sample line, unescaped per the exposition format.
fn prometheus_labels(line: &str) -> Vec<(String, String)> {
    let Some(open) = line.find('{') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut rest = line[open + 1..].chars();
    loop {
        let name: String = rest.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(rest.next(), Some('"'), "label {name} not quoted: {line}");
        let mut value = String::new();
        loop {
            match rest.next().expect("an unterminated label value") {
                '\\' => match rest.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => panic!("invalid escape {other:?} in {line}"),
                },
                '"' => break,
                '\n' => panic!("a raw newline in {line}"),
                c => value.push(c),
            }
        }
        out.push((name.trim_start_matches(',').to_string(), value));
        match rest.clone().next() {
            Some(',') => continue,
            Some('}') => break,
            other => panic!("{other:?} after a label value in {line}"),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_escaped_in_every_stats_output() {
    let (daemon, stats, backends) = start().await;
    let addr = stats.local_addr();
    let frontend = *daemon.local_addrs().get(FRONTEND).unwrap();
    // Traffic first, so every counter row exists and the balancer is shown serving.
    let served = connect_via(frontend, &client_hello(&[3; 32])).await;
    assert!(SERVERS.contains(&served.as_str()), "{served}");

    let page = http(addr, "GET", "/", &[], b"").await;
    assert_eq!(page.status, 200);
    for name in [FRONTEND, BACKEND, SERVERS[0], SERVERS[1]] {
        assert!(
            page.body.contains(&html(name)),
            "{name} not shown escaped on the page"
        );
    }
    for raw in ["<script>", "<img", "<b>", "\"x\""] {
        assert!(!page.body.contains(raw), "{raw} reached the page unescaped");
    }

    let csv = http(addr, "GET", "/;csv", &[], b"").await;
    assert_eq!(csv.status, 200);
    let records = csv_records(&csv.body);
    let width = records[0].len();
    assert!(
        records.iter().all(|r| r.len() == width),
        "a name broke the CSV columns:\n{}",
        csv.body
    );
    for name in SERVERS {
        assert!(
            records.iter().any(|r| r[0] == BACKEND && r[1] == name),
            "no row {BACKEND}/{name} read back from\n{}",
            csv.body
        );
    }
    assert!(records
        .iter()
        .any(|r| r[0] == FRONTEND && r[1] == "FRONTEND"));

    let metrics = http(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(metrics.status, 200);
    let mut seen = Vec::new();
    for line in metrics.body.lines().filter(|l| !l.starts_with('#')) {
        let (labels, value) = line.rsplit_once(' ').expect("a sample and its value");
        assert!(value.parse::<f64>().is_ok(), "not a sample: {line}");
        seen.extend(prometheus_labels(labels).into_iter().map(|(_, v)| v));
    }
    for name in [FRONTEND, BACKEND, SERVERS[0], SERVERS[1]] {
        assert!(
            seen.iter().any(|v| v == name),
            "{name} not read back from /metrics"
        );
    }

    // The page's admin form acts on the server whose name is markup.
    let fields = format!(
        "b={}&s={}&action=maint",
        tether::stats::server::percent_encode(BACKEND),
        tether::stats::server::percent_encode(SERVERS[0])
    );
    assert_eq!(admin_post(addr, &fields, None).await.status, 303);
    let state = daemon.runtime().backends[BACKEND].server_states()[0].admin;
    assert_eq!(state, AdminState::Maint);
    drop(backends);
}
