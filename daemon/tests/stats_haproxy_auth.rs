//! An haproxy.cfg whose `listen stats` has `stats auth admin:secret` runs as it does under
//! HAProxy: the daemon starts with no password file or variable, warns that the password is in
//! clear, and the page answers 401 without credentials and 200 with admin:secret. Its
//! `monitor-uri` answers without credentials, as HAProxy's does.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tether::stats::auth::basic_authorization;

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the daemon when the test ends, passed or not.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 GET of `/`; the status code.
fn get(addr: SocketAddr, authorization: Option<&str>) -> u16 {
    request(addr, "/", authorization).0
}

/// One HTTP/1.1 GET of `path`: the status code and the body.
fn request(addr: SocketAddr, path: &str, authorization: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn imported_stats_auth_serves_with_the_clear_password() {
    let stats = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cfg = format!(
        "global\n    maxconn 100\ndefaults\n    mode tcp\n    timeout connect 1s\n    \
         timeout client 10s\n    timeout server 10s\nfrontend main\n    bind {front}\n    \
         default_backend app\nbackend app\n    server s1 127.0.0.1:9\n\
         listen stats\n    mode http\n    bind {stats}\n    stats enable\n    stats uri /\n    \
         stats auth admin:secret\n"
    );
    let dir = std::env::temp_dir().join(format!("tether-stats-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let log = dir.join("tether.log");
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["run", "--haproxy"])
            .arg(&path)
            .env_remove("TETHER_STATS_PASSWORD")
            .env("TETHER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    // Up to 10 s (500 waits of 20 ms) for the stats listener.
    let mut waits = 0;
    while TcpStream::connect(stats).is_err() {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            panic!("tether exited ({status}): {}", read_log());
        }
        waits += 1;
        assert!(waits < 500, "stats never listened: {}", read_log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(stats, None), 401, "no credentials");
    assert_eq!(
        get(stats, Some(&basic_authorization("admin", "wrong"))),
        401,
        "a wrong password"
    );
    assert_eq!(
        get(stats, Some(&basic_authorization("admin", "secret"))),
        200,
        "admin:secret from the haproxy.cfg"
    );
    let text = read_log();
    assert!(text.contains("written in clear"), "warned: {text}");
    assert!(
        !text.contains("secret"),
        "the password is not logged: {text}"
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 19: `monitor-uri` in `listen stats` (an outside balancer's or orchestrator's probe)
/// answers 200 without credentials, while the page itself still asks for them: tether and
/// HAProxy 2.6 on the same file.
#[tokio::test]
async fn monitor_uri_answers_without_credentials_beside_haproxy() {
    let mut answers = Vec::new();
    for proxy in ["tether", "haproxy"] {
        let stats = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let cfg = format!(
            "global\n    maxconn 100\ndefaults\n    mode tcp\n    timeout connect 1s\n    \
             timeout client 10s\n    timeout server 10s\nfrontend main\n    bind {front}\n    \
             default_backend app\nbackend app\n    server s1 127.0.0.1:9\n\
             listen stats\n    mode http\n    bind {stats}\n    stats enable\n    stats uri /\n    \
             stats auth admin:secret\n    monitor-uri /healthz\n"
        );
        let _running: Box<dyn std::any::Any> = if proxy == "tether" {
            Box::new(start_tether(&cfg, stats))
        } else {
            Box::new(
                tether_testbed::Haproxy::start_unprobed(&cfg, &[stats, front])
                    .await
                    .expect("haproxy 2.6 runs (apt-get install -y haproxy)"),
            )
        };
        let probe = tokio::task::spawn_blocking(move || {
            (request(stats, "/healthz", None), request(stats, "/", None))
        })
        .await
        .unwrap();
        answers.push((proxy, probe));
    }
    for (proxy, ((status, body), (page, _))) in &answers {
        assert_eq!(*status, 200, "{proxy}: monitor-uri without credentials");
        assert!(body.contains("Service ready."), "{proxy}: {body:?}");
        assert_eq!(*page, 401, "{proxy}: the page still asks for credentials");
    }
}

/// The daemon on `cfg`, once its stats listener accepts.
fn start_tether(cfg: &str, stats: SocketAddr) -> Daemon {
    let dir = std::env::temp_dir().join(format!(
        "tether-monitor-{}-{}",
        std::process::id(),
        stats.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["run", "--haproxy"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..500 {
        if TcpStream::connect(stats).is_ok() {
            return daemon;
        }
        if let Some(status) = daemon.0.try_wait().unwrap() {
            panic!("tether exited ({status})");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the stats listener never accepted");
}

/// A TCP server on `addr` that accepts and closes, until the handle is aborted.
fn accepting(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let l = TcpListener::bind(addr).unwrap();
    l.set_nonblocking(true).unwrap();
    let l = tokio::net::TcpListener::from_std(l).unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            drop(s);
        }
    })
}

/// Asks `path` on each stats address until every one answers `status` (checks run every
/// 100 ms); returns the bodies.
async fn until_status(stats: &[SocketAddr], path: &'static str, status: u16) -> Vec<String> {
    let mut bodies = Vec::new();
    for &addr in stats {
        let mut last = (0, String::new());
        for _ in 0..100 {
            last = tokio::task::spawn_blocking(move || request(addr, path, None))
                .await
                .unwrap();
            if last.0 == status {
                break;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert_eq!(last.0, status, "{addr}: {}", last.1);
        bodies.push(last.1);
    }
    bodies
}

#[tokio::test]
async fn monitor_fail_answers_503_when_a_backend_has_no_server_beside_haproxy() {
    let app = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let up = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut app_server = accepting(app);
    let _up_server = accepting(up);
    let mut stats = Vec::new();
    let mut running: Vec<Box<dyn std::any::Any>> = Vec::new();
    for proxy in ["tether", "haproxy"] {
        let stat = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let cfg = format!(
            "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 10s\n    \
             timeout server 10s\nfrontend main\n    bind {front}\n    default_backend app\n\
             backend app\n    server s1 {app} check inter 100ms rise 1 fall 1\n\
             backend other\n    server s1 {up} check inter 100ms rise 1 fall 1\n\
             listen stats\n    mode http\n    bind {stat}\n    stats enable\n    stats uri /\n    \
             monitor-uri /healthz\n    acl app_dead nbsrv(app) lt 1\n    \
             monitor fail if app_dead\n    monitor fail if {{ nbsrv(other) lt 1 }}\n"
        );
        running.push(if proxy == "tether" {
            Box::new(start_tether(&cfg, stat))
        } else {
            Box::new(
                tether_testbed::Haproxy::start_unprobed(&cfg, &[stat, front])
                    .await
                    .expect("haproxy 2.6 runs (apt-get install -y haproxy)"),
            )
        });
        stats.push(stat);
    }
    // Both backends have a server: 200. `app` loses its only server: 503, HAProxy's page. It
    // comes back: 200 again.
    for body in until_status(&stats, "/healthz", 200).await {
        assert!(body.contains("Service ready."), "{body:?}");
    }
    app_server.abort();
    let _ = (&mut app_server).await;
    let bodies = until_status(&stats, "/healthz", 503).await;
    assert_eq!(bodies[0], bodies[1], "tether answers as HAProxy");
    assert!(bodies[0].contains("No server is available"), "{bodies:?}");
    let _app_server = accepting(app);
    until_status(&stats, "/healthz", 200).await;
}
