//! `tether check` on an haproxy.cfg refuses what `tether run --haproxy` refuses: both go through
//! the import and then the native validation, and check names the haproxy.cfg line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// HAProxy accepts weights up to 256 only; tether's validation says so too, after the import.
const CFG: &str = "\
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend main
    bind 127.0.0.1:9
    default_backend app
backend app
    server s1 127.0.0.1:9 weight 10
    server s2 127.0.0.1:9 weight 300
";

fn scratch(tag: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tether-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, text).unwrap();
    path
}

fn tether(args: &[&str], file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .arg(file)
        .env("TETHER_LOG", "info")
        .output()
        .unwrap()
}

#[test]
fn check_reports_on_its_line_what_run_refuses() {
    let path = scratch("check-run", CFG);
    let name = path.display().to_string();

    let run = tether(&["run", "--haproxy"], &path);
    let run_err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "run must refuse: {run_err}");
    assert!(run_err.contains("weight 300 above 256"), "{run_err}");

    let check = tether(&["check"], &path);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "check must fail too: {report}");
    assert!(
        report.contains(&format!(
            "{name}:13: error: backend[0].server[1].weight: weight 300 above 256"
        )),
        "{report}"
    );
    assert!(
        report.ends_with("1 error(s), 0 warning(s), 0 note(s)\n"),
        "{report}"
    );

    let fixed = scratch("check-run-fixed", &CFG.replace("weight 300", "weight 200"));
    let check = tether(&["check"], &fixed);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
    let _ = std::fs::remove_dir_all(fixed.parent().unwrap());
}

/// The case: a backend's `tcp-request content reject if !internal_networks` used to pass
/// `check` and then stop `run`, whose advice was to delete the restriction. Now both accept it
/// and the running daemon enforces it.
#[test]
fn a_backend_source_restriction_passes_check_and_run_enforces_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = format!(
        "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    \
         timeout server 30s\nfrontend main\n    bind 127.0.0.1:{port}\n    default_backend app\n\
         backend app\n    acl internal_networks src 10.0.0.0/8\n    \
         tcp-request content reject if !internal_networks\n    server s1 127.0.0.1:9\n"
    );
    let path = scratch("check-run-acl", &cfg);
    let check = tether(&["check"], &path);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{report}");
    assert!(report.contains("0 error(s)"), "{report}");

    let mut run = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["run", "--haproxy"])
        .arg(&path)
        .env("TETHER_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut refused = false;
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Read;
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0u8; 16];
            // 127.0.0.1 is not internal: closed at once, nothing forwarded.
            refused = matches!(s.read(&mut buf), Ok(0) | Err(_));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = run.kill();
    let out = run.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(refused, "{log}");
    assert!(
        log.contains("route=!internal_networks refused=yes"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// Runs `tether run --haproxy FILE` and expects it to refuse within 10 s (a daemon that starts
/// serving is killed and the test fails).
fn run_refuses(path: &Path) -> String {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["run", "--haproxy"])
        .arg(path)
        .env("TETHER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            assert!(!status.success(), "run accepted it: {err}");
            return err;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "run started serving a config check refuses: {}",
        path.display()
    );
}

/// `check` fails with every `(line, text)` among its errors, and `run` refuses the file too.
fn check_and_run_refuse(tag: &str, text: &str, expected: &[(usize, &str)]) {
    let path = scratch(tag, text);
    let name = path.display().to_string();
    let check = tether(&["check"], &path);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "check passed: {report}");
    for (line, what) in expected {
        let located = format!("{name}:{line}: error: ");
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&located) && l.contains(what)),
            "no error {what:?} at line {line}:\n{report}"
        );
    }
    run_refuses(&path);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

const DEFAULTS: &str =
    "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    \
                        timeout server 30s\n";

#[test]
fn an_empty_file_is_refused_by_both() {
    check_and_run_refuse("empty", "", &[(0, "no frontend")]);
    check_and_run_refuse("comments-only", "# nothing here\n\n", &[(0, "no frontend")]);
}

#[test]
fn duplicate_frontend_and_backend_names_are_reported_at_the_second() {
    let text = format!(
        "{DEFAULTS}frontend main\n    bind 127.0.0.1:19101\n    default_backend app\n\
         frontend main\n    bind 127.0.0.1:19102\n    default_backend app\n\
         backend app\n    server s1 127.0.0.1:9\nbackend app\n    server s2 127.0.0.1:9\n"
    );
    check_and_run_refuse(
        "dup-names",
        &text,
        &[
            (9, "duplicate frontend name \"main\""),
            (14, "duplicate backend name \"app\""),
        ],
    );
}

#[test]
fn bad_numbers_are_reported_at_their_keyword_with_a_real_hint() {
    let text = format!(
        "global\n    maxconn -1\n{DEFAULTS}frontend main\n    bind 127.0.0.1:19103\n    \
         default_backend app\nbackend app\n    server s1 127.0.0.1:9 weight 99999999999\n"
    );
    check_and_run_refuse(
        "numbers",
        &text,
        &[(2, "`maxconn -1`"), (12, "weight 99999999999")],
    );
    let report =
        String::from_utf8_lossy(&tether(&["check"], &scratch("numbers-hint", &text)).stdout)
            .into_owned();
    assert!(report.contains("write e.g. `maxconn 4000`"), "{report}");
    assert!(!report.contains("write u32"), "{report}");
}

#[test]
fn an_undefined_backend_is_reported_at_the_line_that_names_it() {
    let text = format!(
        "{DEFAULTS}frontend main\n    bind 127.0.0.1:19104\n    default_backend nope\n\
         backend app\n    server s1 127.0.0.1:9\n"
    );
    check_and_run_refuse(
        "undefined-backend",
        &text,
        &[(8, "uses backend nope which is not defined")],
    );
}

#[test]
fn two_frontends_on_one_address_are_refused_by_both() {
    for (second, tag) in [("127.0.0.1:19105", "same-addr"), ("*:19105", "wildcard")] {
        let text = format!(
            "{DEFAULTS}frontend a\n    bind 127.0.0.1:19105\n    default_backend app\n\
             frontend b\n    bind {second}\n    default_backend app\n\
             backend app\n    server s1 127.0.0.1:9\n"
        );
        check_and_run_refuse(tag, &text, &[(10, "which frontend a already listens on")]);
    }
}
