//! The runtime API driven by `socat` one-liners, as operators script HAProxy: `show stat` is CSV
//! with every server, `set server ... state maint` and `disable server` move real traffic through
//! tether, levels refuse what they do not allow, and hostile clients neither panic the daemon nor
//! stall its data plane.

mod runtime_api_support;
mod stats_support;

use std::time::Duration;

use runtime_api_support::*;
use stats_support::PLAIN;
use tether::runtime_api::serve_runtime_api;
use tether_core::config::{AdminLevel, AdminSocket};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;

const NAMES: [&str; 3] = ["alpha", "beta", "gamma"];

async fn landed(api: &ApiRig, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(api.rig.connect(PLAIN).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_stat_is_csv_with_every_server() {
    let api = ApiRig::start("stat", &NAMES).await;
    let out = socat(api.admin.path(), "show stat\n").await;
    assert!(
        out.ends_with("\n\n"),
        "an answer ends with an empty line: {out:?}"
    );
    let rows = csv_rows(&out);
    assert_eq!(rows[0].len(), 128, "HAProxy 2.6's 128 columns");
    assert_eq!(&rows[0][..3], ["pxname", "svname", "qcur"]);
    assert!(rows.iter().all(|r| r.len() == rows[0].len()), "{out}");
    let names: Vec<&str> = rows[1..].iter().map(|r| r[1].as_str()).collect();
    assert_eq!(names, ["FRONTEND", "alpha", "beta", "gamma", "BACKEND"]);
    let http = api.rig.get("/;csv").await.body;
    assert_eq!(
        csv_rows(&http)[0],
        rows[0],
        "the HTTP CSV has the same columns"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maint_from_socat_moves_real_traffic() {
    let api = ApiRig::start("maint", &NAMES).await;
    let sock = api.admin.path();
    assert_eq!(
        socat(sock, "set server app/alpha state maint\n").await,
        "\n"
    );
    assert_eq!(
        status_of(&socat(sock, "show stat\n").await, "app", "alpha"),
        "MAINT"
    );
    let went = landed(&api, 6).await;
    assert!(!went.contains(&"alpha".to_string()), "{went:?}");
    assert!(went.contains(&"beta".to_string()) && went.contains(&"gamma".to_string()));
    assert_eq!(
        socat(sock, "set server app/alpha state ready\n").await,
        "\n"
    );
    let went = landed(&api, 6).await;
    assert!(went.contains(&"alpha".to_string()), "{went:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_and_enable_server() {
    let api = ApiRig::start("disable", &NAMES).await;
    let sock = api.admin.path();
    assert_eq!(socat(sock, "disable server app/beta\n").await, "\n");
    assert_eq!(
        status_of(&socat(sock, "show stat\n").await, "app", "beta"),
        "MAINT"
    );
    let went = landed(&api, 6).await;
    assert!(!went.contains(&"beta".to_string()), "{went:?}");
    assert_eq!(socat(sock, "enable server app/beta\n").await, "\n");
    assert_ne!(
        status_of(&socat(sock, "show stat\n").await, "app", "beta"),
        "MAINT"
    );
    let went = landed(&api, 6).await;
    assert!(went.contains(&"beta".to_string()), "{went:?}");
    assert_eq!(
        socat(sock, "disable server app/nope\n").await,
        "No such server.\n\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_refuse_what_they_do_not_allow() {
    let api = ApiRig::start("levels", &NAMES).await;
    let denied = "Permission denied\n\n";
    assert_eq!(
        socat(api.user.path(), "disable server app/alpha\n").await,
        denied
    );
    assert_eq!(
        socat(api.user.path(), "set weight app/alpha 9\n").await,
        denied
    );
    assert_eq!(socat(api.user.path(), "clear table app\n").await, denied);
    let stat = socat(api.user.path(), "show stat\n").await;
    assert_eq!(
        status_of(&stat, "app", "alpha"),
        "UP",
        "user can read; nothing changed"
    );
    assert_eq!(
        socat(api.operator.path(), "clear table app\n").await,
        denied
    );
    assert_eq!(
        socat(api.operator.path(), "set weight app/alpha 9\n").await,
        "\n"
    );
    assert_eq!(
        socat(api.user.path(), "get weight app/alpha\n").await,
        "9 (initial 1)\n\n"
    );
    assert_eq!(socat(api.admin.path(), "clear table app\n").await, "\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_commands_per_line_prompt_mode_and_unknown_commands() {
    let api = ApiRig::start("multi", &NAMES).await;
    let sock = api.admin.path();
    assert_eq!(
        socat(sock, "set weight app/alpha 7;get weight app/alpha\n").await,
        "\n7 (initial 1)\n\n"
    );
    let out = socat(sock, "prompt\nshow info\nget weight app/alpha\nquit\n").await;
    assert!(out.starts_with("\n> Name: tether\n"), "{out:?}");
    assert!(out.ends_with("\n> 7 (initial 1)\n\n> "), "{out:?}");
    let out = socat(sock, "frobnicate\n").await;
    assert!(
        out.starts_with("Unknown command, but maybe one of the following ones is a better match:"),
        "{out}"
    );
    let out = socat(sock, "show servers state app\n").await;
    assert!(
        out.starts_with("1\n# be_id be_name srv_id srv_name "),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.contains(" app ")).count(),
        3,
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_is_replaced_and_other_files_are_refused() {
    let api = ApiRig::start("bind", &NAMES).await;
    let view = api.rig.daemon.view();
    let config = |path: &std::path::Path| AdminSocket {
        socket: path.to_string_lossy().into_owned(),
        mode: "600".into(),
        level: AdminLevel::User,
    };
    let stale = api.dir.path("stale.sock");
    // A socket file nobody listens on, as a dead daemon leaves. Not a listener bound and
    // dropped here: a child another test forks at that moment (socat) would hold it open until
    // its exec, and the probe would find it in use.
    drop(std::os::unix::net::UnixDatagram::bind(&stale).unwrap());
    assert!(stale.exists(), "a dead daemon left its socket file");
    let l = serve_runtime_api(config(&stale), view.clone())
        .await
        .unwrap();
    assert!(socat(&stale, "show info\n")
        .await
        .starts_with("Name: tether"));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&stale).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let e = serve_runtime_api(config(&stale), view.clone())
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("in use"), "{e:#}");
    drop(l);
    assert!(
        !stale.exists(),
        "the listener removes its socket when it stops"
    );
    let file = api.dir.path("precious.txt");
    std::fs::write(&file, "keep me").unwrap();
    let e = serve_runtime_api(config(&file), view).await.unwrap_err();
    assert!(format!("{e:#}").contains("is not a socket"), "{e:#}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_never_stall_the_data_plane() {
    let api = ApiRig::start("hostile", &NAMES).await;
    let sock = api.admin.path().to_path_buf();
    // A line longer than the limit: refused, connection closed.
    let mut s = UnixStream::connect(&sock).await.unwrap();
    let _ = s.write_all(&vec![b'x'; 20_000]).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
        .await
        .expect("closed at once")
        .ok();
    assert!(String::from_utf8_lossy(&answer).starts_with("Line too long."));
    // Binary garbage: an answer, no panic.
    let mut s = UnixStream::connect(&sock).await.unwrap();
    s.write_all(b"\xff\xfe\x00show\x00 stat;;\xc3\x28 \x01\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("Unknown command"));
    // Idle clients hold every slot and say nothing; traffic still flows, and each is dropped
    // after its idle timeout.
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut s = UnixStream::connect(&sock).await.unwrap();
        s.write_all(b"prompt\nset timeout cli 1\n").await.unwrap();
        idle.push(s);
    }
    let went = landed(&api, 3).await;
    assert_eq!(went.len(), 3);
    let mut first = idle.remove(0);
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), first.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "an idle client is closed after `timeout cli`"
    );
    assert_eq!(String::from_utf8_lossy(&buf), "\n> \n> ");
    drop(idle);
    let out = socat(&sock, "show info\n").await;
    assert!(
        out.starts_with("Name: tether"),
        "served again once the idle ones left"
    );
}

/// The daemon binary, from an haproxy.cfg: `stats socket ... level user` is served, read-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_run_serves_an_imported_stats_socket() {
    let backend = stats_support::BannerBackend::start("solo").await;
    let dir = TempDir::new("run");
    let sock = dir.path("haproxy.sock");
    let cfg = dir.path("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  stats socket {} mode 600 level user\ndefaults\n  mode tcp\n  \
             timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
             frontend main\n  bind 127.0.0.1:{}\n  default_backend app\n\
             backend app\n  server solo {}\n",
            sock.display(),
            free_port(),
            backend.addr
        ),
    )
    .unwrap();
    /// Kills the daemon however the test ends.
    struct Daemon(std::process::Child);
    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _daemon = Daemon(
        std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
            .arg("run")
            .arg("--haproxy")
            .arg(&cfg)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let up = wait_for(Duration::from_secs(10), || sock.exists().then_some(())).await;
    assert!(up.is_some(), "tether run created the imported socket");
    let stat = socat(&sock, "show stat\n").await;
    assert_eq!(status_of(&stat, "app", "solo"), "no check");
    assert_eq!(
        socat(&sock, "disable server app/solo\n").await,
        "Permission denied\n\n"
    );
}
