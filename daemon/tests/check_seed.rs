//! `tether check` on the user's haproxy.cfg (tests/fixtures/seed-haproxy.cfg): every mistake the
//! design names is found, on its exact line, with a why and a concrete fix.

use std::path::Path;
use tether::check::{check_file, CheckReport, Finding, Severity};

fn report() -> CheckReport {
    check_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-haproxy.cfg"))
}

/// The one finding on `line` whose `what` contains `needle`.
fn at(r: &CheckReport, line: usize, needle: &str) -> Finding {
    let hits: Vec<&Finding> = r
        .findings
        .iter()
        .filter(|f| f.line == line && f.what.contains(needle))
        .collect();
    assert_eq!(hits.len(), 1, "line {line} `{needle}` in:\n{r}");
    let f = hits[0].clone();
    assert!(!f.why.is_empty() && !f.fix.is_empty(), "{f}");
    f
}

#[test]
fn log_without_address_is_the_error_haproxy_reports() {
    let f = at(&report(), 5, "has no log address");
    assert_eq!(f.severity, Severity::Error);
    assert!(f
        .why
        .contains("log : expects <address> and <facility> as arguments"));
    assert!(f.why.contains("nothing is logged"));
    assert!(f.fix.contains("log 127.0.0.1:514 local2"));
}

#[test]
fn listen_line_address_is_rejected_as_haproxy_2_6_does() {
    let f = at(&report(), 64, "on the `listen stats` line");
    assert_eq!(f.severity, Severity::Error);
    assert!(f
        .why
        .contains("please use the 'bind' keyword for listening addresses."));
    assert_eq!(f.fix, "listen stats\n    bind *:1936");
}

#[test]
fn each_server_without_address_is_an_error() {
    let r = report();
    for (line, name) in [(59, "node1"), (60, "node2"), (61, "node3"), (62, "node5")] {
        let f = at(&r, line, &format!("server lanneluc-{name} has no address"));
        assert_eq!(f.severity, Severity::Error);
        assert!(f.why.contains("could not resolve address 'check'"));
        assert!(
            f.fix
                .starts_with(&format!("server lanneluc-{name} 10.0.0.")),
            "{}",
            f.fix
        );
        assert!(f.fix.ends_with(":443 check"), "{}", f.fix);
    }
}

#[test]
fn store_response_never_fires_so_affinity_is_learned_backwards() {
    let f = at(&report(), 58, "never stores anything");
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.why.contains("learned backwards"));
    assert!(f.fix.contains("tcp-response inspect-delay 5s"));
}

#[test]
fn tls13_random_session_ids_fill_the_table() {
    let f = at(&report(), 55, "including TLS 1.3");
    assert!(f.why.contains("32 fresh random bytes"));
    assert!(
        f.why.contains("61440"),
        "table size from `size 60k`: {}",
        f.why
    );
    assert!(f
        .fix
        .contains("affinity = [\"session-id\", \"ticket\", \"psk\", \"source\"]"));
}

#[test]
fn tickets_bypass_session_id_affinity() {
    let f = at(&report(), 55, "tickets bypass");
    assert!(f.why.contains("empty session ID"));
    assert!(f.fix.contains("stick on src"));
}

#[test]
fn http_options_on_tcp_proxies() {
    let r = report();
    for (line, text) in [
        (18, "option httplog"),
        (20, "option http-server-close"),
        (24, "timeout http-request 10s"),
        (29, "timeout http-keep-alive 10s"),
    ] {
        let f = at(&r, line, text);
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.what.contains("main, app"), "{}", f.what);
    }
    // The tcp-mode settings in the same defaults raise nothing.
    assert!(
        !r.findings
            .iter()
            .any(|f| [22, 25, 26, 27, 28].contains(&f.line)),
        "{r}"
    );
}

#[test]
fn pidfile_directory_and_process_directives() {
    let r = report();
    let f = at(&r, 7, "is a directory");
    assert_eq!(f.fix, "pidfile /var/run/haproxy.pid");
    for (line, text) in [(6, "chroot"), (9, "user"), (10, "group")] {
        assert_eq!(at(&r, line, text).severity, Severity::Warning);
    }
    assert_eq!(at(&r, 13, "stats socket").severity, Severity::Info);
}

#[test]
fn plaintext_stats_credentials_are_flagged_without_echoing_the_password() {
    let r = report();
    let f = at(&r, 69, "in clear");
    assert!(f.fix.contains("password-file"));
    // And Basic auth on *:1936 without TLS (issue 17 §0.3).
    let f = at(&r, 64, "plain HTTP");
    assert!(f.fix.contains("ssl crt"), "{}", f.fix);
    assert!(
        !r.to_string().contains("clu8ter8"),
        "the report must not repeat the password"
    );
}

#[test]
fn whole_report_is_one_pass_with_errors() {
    let r = report();
    assert!(r.has_errors());
    assert_eq!(r.count(Severity::Error), 6, "{r}");
    let text = r.to_string();
    assert!(text.contains("seed-haproxy.cfg:5: error:"));
    assert!(
        text.ends_with("6 error(s), 13 warning(s), 3 note(s)"),
        "{text}"
    );
    let lines: Vec<usize> = r.findings.iter().map(|f| f.line).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "sorted by line");
}

/// The fixed seed (what the findings tell the user to write) passes HAProxy 2.6's own check and
/// tether's: the fixes are real.
#[test]
fn applying_the_fixes_gives_a_config_both_accept() {
    let seed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-haproxy.cfg"),
    )
    .unwrap();
    let mut fixed = seed
        .replace("    log local2\n", "    log 127.0.0.1:514 local2\n")
        .replace("listen stats *:1936\n", "listen stats\n    bind *:1936\n");
    for (i, n) in ["node1", "node2", "node3", "node5"].iter().enumerate() {
        fixed = fixed.replace(
            &format!("server  lanneluc-{n} check"),
            &format!("server  lanneluc-{n} 127.0.0.{}:443 check", i + 1),
        );
    }
    let r = tether::check::check_text("fixed.cfg", tether::check::ConfigKind::Haproxy, &fixed);
    assert!(!r.has_errors(), "{r}");
    // HAProxy itself agrees: a missing HAProxy is a failure, never a silent skip.
    let haproxy = Path::new("/usr/sbin/haproxy");
    assert!(
        haproxy.exists(),
        "/usr/sbin/haproxy is needed: apt-get install -y haproxy (scripts/packages.txt; \
         ./scripts/test installs it)"
    );
    let dir = std::env::temp_dir().join(format!("tether-check-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("fixed.cfg");
    std::fs::write(&cfg, &fixed).unwrap();
    let out = std::process::Command::new(haproxy)
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "haproxy -c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
