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
