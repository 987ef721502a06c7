//! Health checks beyond a TCP connect, over loopback with real servers, side by side with
//! HAProxy 2.6 on the same haproxy.cfg (issue 19).
//!
//! The Patroni pattern: three database nodes, each with an HTTP health endpoint on another port;
//! only the primary answers 200 to `OPTIONS /primary`, the replicas 503. `option httpchk` in a
//! TCP listen must send every connection to the primary. The health endpoint is a tiny HTTP
//! responder here (it is the thing checked); the data ports are plain TCP servers that say their
//! name. The Redis check runs against a real `redis-server`, `pgsql-check` against PostgreSQL,
//! `ldap-check` against slapd, `mysql-check` against MariaDB and `smtpchk` against aiosmtpd,
//! the last two compared field by field with HAProxy's `show stat` on the same haproxy.cfg.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tether_testbed::{free_port, wait_until_listening, Haproxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A data port that writes `name` to every client, then closes.
async fn named_server(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(name.as_bytes()).await;
            });
        }
    });
    addr
}

/// An HTTP health endpoint answering `status` to any request (Patroni's REST API role check).
async fn health_endpoint(status: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1024];
                let _ = s.read(&mut buf).await;
                let body =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    addr
}

/// Connects to `fe` and reads what the server says.
async fn who(fe: SocketAddr) -> String {
    let mut s = TcpStream::connect(fe).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut out))
        .await
        .expect("server answers")
        .unwrap();
    out
}

/// Imports `cfg` as `tether check` / `run` would and starts the daemon.
async fn start_tether(cfg: &str) -> common::Running {
    let im = tether::haproxy::import::import("patroni.cfg", cfg);
    assert!(!im.has_errors(), "{:#?}", im.findings);
    common::start_config(&im.config).await
}

#[tokio::test]
async fn patroni_httpchk_sends_every_connection_to_the_primary_like_haproxy() {
    let mut servers = String::new();
    for (i, (name, status)) in [
        ("pg1", "503 Service Unavailable"),
        ("pg2", "200 OK"),
        ("pg3", "503 Service Unavailable"),
    ]
    .into_iter()
    .enumerate()
    {
        let data = named_server(name).await;
        let health = health_endpoint(status).await;
        servers.push_str(&format!(
            "  server pg{} {data} maxconn 100 check port {}\n",
            i + 1,
            health.port()
        ));
    }
    let config = |port: u16| {
        format!(
            "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 4s\n  timeout client 30m\n  \
             timeout server 30m\n  timeout check 2s\nlisten master\n  bind 127.0.0.1:{port}\n  \
             option httpchk OPTIONS /primary\n  http-check expect status 200\n  \
             default-server inter 200ms fall 1 rise 1 on-marked-down shutdown-sessions\n{servers}"
        )
    };
    // tether imports the very same file (`on-marked-down` included).
    let tether = start_tether(&config(0)).await;
    let hport = free_port().unwrap();
    let haproxy_addr: SocketAddr = format!("127.0.0.1:{hport}").parse().unwrap();
    let haproxy = Haproxy::start(&config(hport), haproxy_addr)
        .await
        .expect("haproxy runs");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..12 {
        assert_eq!(
            who(tether.addr).await,
            "pg2",
            "tether connection {i} reached a replica"
        );
        assert_eq!(
            who(haproxy.frontend()).await,
            "pg2",
            "haproxy connection {i}:\n{}",
            haproxy.log()
        );
    }
}

/// A real `redis-server` on a free loopback port, killed on drop.
struct Redis(std::process::Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis() -> Redis {
    let port = free_port().unwrap();
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server is needed: apt-get install -y redis-server");
    Redis(child, port)
}

#[tokio::test]
async fn redis_check_passes_a_real_redis_and_fails_a_non_redis_port() {
    let r = redis();
    let not_redis = health_endpoint("200 OK").await;
    assert!(
        wait_until_listening(
            format!("127.0.0.1:{}", r.1).parse().unwrap(),
            Duration::from_secs(5)
        )
        .await,
        "redis-server did not start"
    );
    let cfg = format!(
        "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
         backend cache\n  option redis-check\n  server r1 127.0.0.1:{} check inter 200ms\n  \
         server r2 {not_redis} check inter 200ms\nfrontend f\n  bind 127.0.0.1:0\n  default_backend cache\n",
        r.1
    );
    let t = start_tether(&cfg).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let rt = t.daemon.runtime();
    let be = &rt.backends["cache"];
    let last = |i: usize| {
        be.servers[i]
            .last_check
            .lock()
            .unwrap()
            .clone()
            .expect("checked")
    };
    assert_eq!(
        (last(0).status, last(0).info.as_deref()),
        ("L7OK", Some("Redis server is ok"))
    );
    assert_eq!(
        last(1).status,
        "L7STS",
        "an HTTP server is not Redis: {:?}",
        last(1)
    );
    let states = be.server_states();
    assert_eq!(states[1].oper, tether_core::server::OperState::Down);
    assert_eq!(states[0].oper, tether_core::server::OperState::Up);
}

#[tokio::test]
async fn ssl_hello_chk_passes_openssl_s_server_and_fails_a_plain_server_like_haproxy() {
    let tls =
        tether_testbed::OpensslServer::start(tether_testbed::OpensslServerConfig::new("tls1"))
            .await
            .expect("openssl s_server runs (apt-get install -y openssl)");
    let plain = named_server("plain").await;
    let config = |port: u16| {
        format!(
            "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
             listen tls\n  bind 127.0.0.1:{port}\n  option ssl-hello-chk\n  \
             server tls1 {} check inter 200ms fall 1 rise 1\n  server plain {plain} check inter 200ms fall 1 rise 1\n",
            tls.addr()
        )
    };
    let t = start_tether(&config(0)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let rt = t.daemon.runtime();
    let be = &rt.backends["tls"];
    let last = |i: usize| {
        be.servers[i]
            .last_check
            .lock()
            .unwrap()
            .clone()
            .expect("checked")
    };
    assert_eq!(last(0).status, "L6OK", "{:?}", last(0));
    assert_eq!(last(1).status, "L6RSP", "{:?}", last(1));
    // HAProxy on the same file routes every connection to the TLS server too.
    let hport = free_port().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{hport}").parse().unwrap();
    let haproxy = Haproxy::start(&config(hport), addr)
        .await
        .expect("haproxy runs");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..6 {
        assert!(
            !reaches_plain(haproxy.frontend()).await,
            "{}",
            haproxy.log()
        );
        assert!(
            !reaches_plain(t.addr).await,
            "tether sent a connection to the plain server"
        );
    }
}

/// Whether a connection through `fe` lands on the plain server (which speaks at once; the TLS
/// server waits for a ClientHello).
async fn reaches_plain(fe: SocketAddr) -> bool {
    let mut s = TcpStream::connect(fe).await.unwrap();
    let mut buf = [0u8; 5];
    matches!(
        tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await,
        Ok(Ok(5)) if &buf == b"plain"
    )
}

/// A real PostgreSQL 15 (Debian) in a scratch directory, as user `postgres` (it refuses root),
/// trusting every role but `nobody`, which pg_hba.conf rejects; stopped on drop.
struct Postgres {
    child: std::process::Child,
    dir: String,
    port: u16,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn postgres() -> Postgres {
    let bin = "/usr/lib/postgresql/15/bin";
    assert!(
        std::path::Path::new(bin).join("postgres").is_file(),
        "PostgreSQL 15 is needed: apt-get install -y postgresql"
    );
    let port = free_port().unwrap();
    let dir = format!("/tmp/tether-pg-{}-{port}", std::process::id());
    std::fs::create_dir_all(&dir).unwrap();
    let own = std::process::Command::new("chown")
        .args(["postgres", &dir])
        .status()
        .unwrap();
    assert!(own.success());
    let init = std::process::Command::new("su")
        .args(["postgres", "-s", "/bin/sh", "-c"])
        .arg(format!(
            "{bin}/initdb -D {dir}/data -U haproxy --auth=trust >/dev/null 2>&1"
        ))
        .status()
        .unwrap();
    assert!(init.success(), "initdb failed");
    // First match wins: the role `nobody` is refused with an ErrorResponse, others trusted.
    std::fs::write(
        format!("{dir}/data/pg_hba.conf"),
        "host all nobody 127.0.0.1/32 reject\nhost all all 127.0.0.1/32 trust\n",
    )
    .unwrap();
    let child = std::process::Command::new("su")
        .args(["postgres", "-s", "/bin/sh", "-c"])
        .arg(format!(
            "exec {bin}/postgres -D {dir}/data -p {port} -k {dir} -h 127.0.0.1 >{dir}/log 2>&1"
        ))
        .spawn()
        .unwrap();
    Postgres { child, dir, port }
}

#[tokio::test]
async fn pgsql_check_passes_a_trusted_role_and_fails_a_rejected_one_on_real_postgres() {
    let pg = postgres();
    let addr: SocketAddr = format!("127.0.0.1:{}", pg.port).parse().unwrap();
    assert!(
        wait_until_listening(addr, Duration::from_secs(20)).await,
        "postgres did not start"
    );
    let cfg = |user: &str| {
        format!(
            "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
             backend db\n  option pgsql-check user {user}\n  server pg1 {addr} check inter 200ms\n\
             frontend f\n  bind 127.0.0.1:0\n  default_backend db\n"
        )
    };
    for (user, status, info) in [
        ("haproxy", "L7OK", "PostgreSQL server is ok"),
        ("nobody", "L7RSP", "FATAL"), // pg_hba.conf reject: an ErrorResponse
    ] {
        let t = start_tether(&cfg(user)).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        let rt = t.daemon.runtime();
        let last = rt.backends["db"].servers[0]
            .last_check
            .lock()
            .unwrap()
            .clone()
            .expect("checked");
        assert_eq!(
            (last.status, last.info.as_deref()),
            (status, Some(info)),
            "user {user}"
        );
    }
}

/// A real OpenLDAP `slapd` on a free loopback port with `directives` added to an otherwise
/// empty configuration, killed on drop; its configuration lives in the scratch directory.
struct Slapd(
    std::process::Child,
    u16,
    #[allow(dead_code)] tether_testbed::ScratchDir,
);

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn slapd(directives: &str) -> Slapd {
    const SLAPD: &str = "/usr/sbin/slapd";
    assert!(
        std::path::Path::new(SLAPD).exists(),
        "{SLAPD} is needed: apt-get install -y slapd (.ci/run does)"
    );
    let dir = tether_testbed::ScratchDir::create("slapd").unwrap();
    let conf = dir.path().join("slapd.conf");
    let d = dir.path().display();
    std::fs::write(
        &conf,
        format!("pidfile {d}/slapd.pid\nargsfile {d}/slapd.args\n{directives}\n"),
    )
    .unwrap();
    let port = free_port().unwrap();
    let child = std::process::Command::new(SLAPD)
        .arg("-f")
        .arg(&conf)
        .args(["-h", &format!("ldap://127.0.0.1:{port}/"), "-d", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("slapd runs");
    Slapd(child, port, dir)
}

#[tokio::test]
async fn ldap_check_passes_real_slapd_and_fails_one_that_refuses_anonymous_binds() {
    let open = slapd("");
    let closed = slapd("disallow bind_anon");
    let not_ldap = health_endpoint("200 OK").await;
    for s in [&open, &closed] {
        let addr = format!("127.0.0.1:{}", s.1).parse().unwrap();
        assert!(
            wait_until_listening(addr, Duration::from_secs(5)).await,
            "slapd did not start"
        );
    }
    let cfg = format!(
        "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
         backend dir\n  option ldap-check\n  server open 127.0.0.1:{} check inter 200ms\n  \
         server closed 127.0.0.1:{} check inter 200ms\n  server web {not_ldap} check inter 200ms\n\
         frontend f\n  bind 127.0.0.1:0\n  default_backend dir\n",
        open.1, closed.1
    );
    let t = start_tether(&cfg).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let rt = t.daemon.runtime();
    let be = &rt.backends["dir"];
    let last = |i: usize| {
        be.servers[i]
            .last_check
            .lock()
            .unwrap()
            .clone()
            .expect("checked")
    };
    assert_eq!(
        (last(0).status, last(0).info.as_deref()),
        ("L7OK", Some("Success"))
    );
    // slapd answers inappropriateAuthentication (48) when anonymous binds are disallowed.
    assert_eq!(
        (last(1).status, last(1).code),
        ("L7STS", Some(48)),
        "{:?}",
        last(1)
    );
    assert_eq!(
        last(2).status,
        "L7RSP",
        "an HTTP server is not LDAP: {:?}",
        last(2)
    );
    let states = be.server_states();
    let up = |i: usize| states[i].oper == tether_core::server::OperState::Up;
    assert_eq!((up(0), up(1), up(2)), (true, false, false));
}

/// One server's check as HAProxy's `show stat` gives it: (backend, `UP`/`DOWN`, check status,
/// check code, last check text).
type CheckRow = (String, String, String, String, String);

/// Every backend's first server's check, from HAProxy's stats socket, each with whether a check
/// is running on it (`* ` before its status): HAProxy clears a running check's code and text, so
/// such a row says nothing of the last verdict.
async fn haproxy_checks(sock: &std::path::Path) -> Vec<(CheckRow, bool)> {
    let mut rows: Vec<_> = (common::haproxy_server_stats(sock).await.into_iter())
        .map(|r| {
            let col = |c: &str| r.get(c).cloned().unwrap_or_default();
            let up = if col("status").starts_with("UP") {
                "UP"
            } else {
                "DOWN"
            };
            let status = col("check_status");
            let running = status.starts_with("* ");
            let check = status.trim_start_matches("* ").to_string();
            let code = col("check_code");
            let row = (col("pxname"), up.to_string(), check, code, col("last_chk"));
            (row, running)
        })
        .collect();
    rows.sort();
    rows
}

/// The same rows from a running tether.
fn tether_checks(t: &common::Running) -> Vec<CheckRow> {
    let rt = t.daemon.runtime();
    let mut rows = Vec::new();
    for (name, be) in &rt.backends {
        let up = be.server_states()[0].oper == tether_core::server::OperState::Up;
        let last = be.servers[0].last_check.lock().unwrap().clone();
        rows.push((
            name.clone(),
            if up { "UP" } else { "DOWN" }.to_string(),
            last.as_ref().map_or("", |l| l.status).to_string(),
            last.as_ref()
                .and_then(|l| l.code)
                .map_or(String::new(), |c| c.to_string()),
            last.and_then(|l| l.info).unwrap_or_default(),
        ));
    }
    rows.sort();
    rows
}

/// Runs `backends` (haproxy.cfg text, one server each, checked every 300 ms) in tether and in
/// HAProxy 2.6 and returns each one's rows once both have settled on `want`'s states (or after
/// 8 s), HAProxy's sorted by backend.
async fn checks_side_by_side(backends: &str, want_up: &[&str]) -> (Vec<CheckRow>, Vec<CheckRow>) {
    let scratch = tether_testbed::ScratchDir::create("checks").unwrap();
    let sock = scratch.path().join("haproxy.sock");
    let cfg = |global: &str, port: u16| {
        format!(
            "global\n{global}defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  \
             timeout server 5s\n{backends}frontend f\n  bind 127.0.0.1:{port}\n  \
             default_backend {}\n",
            backends.split_whitespace().nth(1).expect("a backend")
        )
    };
    let t = start_tether(&cfg("", 0)).await;
    let port = free_port().unwrap();
    let global = format!("  stats socket {} level admin\n", sock.display());
    let haproxy = Haproxy::start(
        &cfg(&global, port),
        format!("127.0.0.1:{port}").parse().unwrap(),
    )
    .await
    .expect("haproxy runs (apt-get install -y haproxy)");
    let settled = |rows: &[CheckRow]| {
        rows.len() == want_up.len()
            && rows
                .iter()
                .zip(want_up)
                .all(|(r, w)| r.1 == *w && !r.2.is_empty())
    };
    // HAProxy's last finished verdict of each server: a sample taken while a check runs keeps
    // the one before it.
    let mut theirs: Vec<CheckRow> = Vec::new();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ours = tether_checks(&t);
        let sample = haproxy_checks(&sock).await;
        if theirs.len() != sample.len() {
            theirs = sample.iter().map(|(row, _)| row.clone()).collect();
        }
        for (last, (row, running)) in theirs.iter_mut().zip(sample) {
            if !running {
                *last = row;
            }
        }
        let agree = settled(&ours) && ours == theirs;
        if agree || tokio::time::Instant::now() > give_up {
            drop(haproxy);
            return (ours, theirs);
        }
    }
}

/// A real MariaDB (Debian's `mariadb-server`) in a scratch directory on a free loopback port,
/// with a password-less user `haproxy`; killed on drop.
struct Mariadb(
    std::process::Child,
    u16,
    #[allow(dead_code)] tether_testbed::ScratchDir,
);

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mariadb() -> Mariadb {
    let missing = "MariaDB is needed: apt-get install -y mariadb-server";
    let dir = tether_testbed::ScratchDir::create("mariadb").unwrap();
    let d = dir.path().display().to_string();
    let init = std::process::Command::new("mariadb-install-db")
        .args(["--no-defaults", "--user=root", "--skip-test-db"])
        .arg(format!("--datadir={d}/data"))
        .arg("--auth-root-authentication-method=normal")
        .output()
        .expect(missing);
    assert!(init.status.success(), "mariadb-install-db failed: {init:?}");
    std::fs::write(
        dir.path().join("init.sql"),
        "CREATE USER 'haproxy'@'127.0.0.1';\n",
    )
    .unwrap();
    let port = free_port().unwrap();
    let child = std::process::Command::new("mariadbd")
        .args(["--no-defaults", "--user=root", "--skip-name-resolve"])
        .args(["--bind-address=127.0.0.1", &format!("--port={port}")])
        .args([format!("--datadir={d}/data"), format!("--socket={d}/sock")])
        .args([
            format!("--init-file={d}/init.sql"),
            format!("--log-error={d}/err.log"),
        ])
        .spawn()
        .expect(missing);
    Mariadb(child, port, dir)
}

#[tokio::test]
async fn mysql_check_verdicts_match_haproxy_on_real_mariadb() {
    let db = mariadb();
    let addr: SocketAddr = format!("127.0.0.1:{}", db.1).parse().unwrap();
    assert!(
        wait_until_listening(addr, Duration::from_secs(20)).await,
        "mariadbd did not start"
    );
    let server = format!("  server s {addr} check inter 300ms\n");
    let backends = [
        "backend b1-handshake\n  option mysql-check\n",
        "backend b2-user\n  option mysql-check user haproxy\n",
        "backend b3-user-post41\n  option mysql-check user haproxy post-41\n",
        "backend b4-unknown-post41\n  option mysql-check user nobody post-41\n",
    ]
    .map(|b| format!("{b}{server}"))
    .concat();
    let (ours, theirs) = checks_side_by_side(&backends, &["UP", "UP", "UP", "DOWN"]).await;
    assert_eq!(ours, theirs, "tether, then HAProxy 2.6");
    assert_eq!(theirs[3].3, "1045", "access denied: {theirs:?}");
}

#[tokio::test]
async fn smtpchk_verdicts_match_haproxy_on_a_real_smtp_server() {
    // aiosmtpd (Debian's python3-aiosmtpd) is a real SMTP server.
    let port = free_port().unwrap();
    let mut smtpd = std::process::Command::new("/usr/bin/python3")
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .spawn()
        .expect("python3 is needed: apt-get install -y python3-aiosmtpd");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = wait_until_listening(addr, Duration::from_secs(10)).await;
    if !up {
        let _ = smtpd.kill();
        panic!("aiosmtpd did not start: apt-get install -y python3-aiosmtpd");
    }
    let banner = |text: &'static str| async move {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(text.as_bytes()).await;
            }
        });
        a
    };
    let not_smtp = banner("hello there\r\n").await;
    let refusing = banner("554 no SMTP service here\r\n").await;
    let backends = format!(
        "backend m1-helo\n  option smtpchk\n  server s {addr} check inter 300ms\n\
         backend m2-ehlo\n  option smtpchk EHLO check.example\n  server s {addr} check inter 300ms\n\
         backend m3-not-smtp\n  option smtpchk\n  server s {not_smtp} check inter 300ms\n\
         backend m4-554\n  option smtpchk\n  server s {refusing} check inter 300ms\n"
    );
    let (ours, theirs) = checks_side_by_side(&backends, &["UP", "UP", "DOWN", "DOWN"]).await;
    let _ = smtpd.kill();
    let _ = smtpd.wait();
    assert_eq!(ours, theirs, "tether, then HAProxy 2.6");
    assert_eq!(theirs[0].2, "L7OK", "{theirs:?}");
}

/// The rows of a `show stat` CSV (HAProxy's stats socket or tether's stats page) for the
/// servers of `backend`, each as column name to value; the in-progress marker `* ` is dropped.
fn stat_rows(csv: &str, backend: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut lines = csv.lines();
    let header: Vec<String> = (lines
        .next()
        .unwrap_or("")
        .trim_start_matches("# ")
        .split(','))
    .map(String::from)
    .collect();
    lines
        .map(|l| {
            (header.iter().cloned())
                .zip(l.split(',').map(|v| v.trim_start_matches("* ").to_string()))
                .collect::<std::collections::BTreeMap<_, _>>()
        })
        .filter(|r| {
            r.get("pxname").is_some_and(|p| p == backend)
                && !["FRONTEND", "BACKEND"].contains(&r.get("svname").map_or("", |s| s.as_str()))
        })
        .collect()
}

/// HAProxy's `show stat` on its stats socket (empty while it is not up yet).
async fn haproxy_stat(sock: &std::path::Path) -> String {
    haproxy_cli(sock, "show stat").await
}

/// One command on HAProxy's stats socket, and its answer.
async fn haproxy_cli(sock: &std::path::Path, command: &str) -> String {
    let Ok(mut s) = tokio::net::UnixStream::connect(sock).await else {
        return String::new();
    };
    s.write_all(format!("{command}\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out)).await;
    out
}

/// tether's stats CSV, as its stats page serves it.
fn tether_stat(t: &common::Running) -> String {
    tether::stats::csv::render(&tether::stats::snapshot::take(t.daemon.runtime(), 0))
}

/// `columns` of each server of `backend` in a `show stat` CSV.
fn cells(csv: &str, backend: &str, columns: &[&str]) -> Vec<Vec<String>> {
    (stat_rows(csv, backend).iter())
        .map(|r| {
            columns
                .iter()
                .map(|c| r.get(*c).cloned().unwrap_or_default())
                .collect()
        })
        .collect()
}

/// Runs tether (imported as `tether check` does) and HAProxy 2.6 on `config(port, global)`;
/// HAProxy's stats socket is in `scratch`.
async fn side_by_side(
    config: impl Fn(u16, &str) -> String,
    scratch: &tether_testbed::ScratchDir,
) -> (common::Running, Haproxy, std::path::PathBuf) {
    let im = tether::haproxy::load::load("agent.cfg", &config(0, ""));
    assert!(!im.has_errors(), "{:#?}", im.findings);
    let tether = common::start_config(&im.config).await;
    let sock = scratch.path().join("haproxy.sock");
    let hport = free_port().unwrap();
    let global = format!("  stats socket {} level admin\n", sock.display());
    let haproxy = Haproxy::start(
        &config(hport, &global),
        format!("127.0.0.1:{hport}").parse().unwrap(),
    )
    .await
    .expect("haproxy runs (apt-get install -y haproxy)");
    (tether, haproxy, sock)
}

/// Waits until tether's and HAProxy's `columns` of `backend` both equal `want` (5 s at most);
/// returns them as last seen.
async fn converge(
    t: &common::Running,
    sock: &std::path::Path,
    backend: &str,
    columns: &[&str],
    want: &[Vec<String>],
) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ours = cells(&tether_stat(t), backend, columns);
        let theirs = cells(&haproxy_stat(sock).await, backend, columns);
        if (ours == want && theirs == want) || tokio::time::Instant::now() > give_up {
            return (ours, theirs);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many of `n` connections to `fe` reach `name`.
async fn share(fe: SocketAddr, name: &str, n: usize) -> usize {
    let mut hits = 0;
    for _ in 0..n {
        hits += usize::from(who(fe).await == name);
    }
    hits
}

/// An agent as HAProxy's `agent-check` asks it: each connection gets the current `line`, then
/// the agent closes.
async fn agent(line: std::sync::Arc<std::sync::Mutex<&'static str>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let answer = *line.lock().unwrap();
            tokio::spawn(async move {
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// A real agent (a TCP listener answering one line) switched at run time through `drain`,
/// `50%`, `down`, `up`, `maint` and `ready`: tether and HAProxy 2.6 on the same haproxy.cfg show
/// the same server status, weight and agent status, and spread connections alike.
#[tokio::test]
async fn agent_check_words_drive_state_weight_and_traffic_like_haproxy() {
    let scratch = tether_testbed::ScratchDir::create("agent-check").unwrap();
    let line = std::sync::Arc::new(std::sync::Mutex::new("ready\n"));
    let agent_addr = agent(line.clone()).await;
    let (s1, s2) = (named_server("s1").await, named_server("s2").await);
    let config = |port: u16, global: &str| {
        format!(
            "global\n  maxconn 100\n{global}defaults\n  mode tcp\n  timeout connect 1s\n  \
             timeout client 5s\n  timeout server 5s\nlisten app\n  bind 127.0.0.1:{port}\n  \
             balance roundrobin\n  default-server inter 100ms agent-inter 100ms\n  \
             server s1 {s1} weight 100 check agent-check agent-port {}\n  \
             server s2 {s2} weight 100 check\n",
            agent_addr.port()
        )
    };
    let (t, haproxy, sock) = side_by_side(config, &scratch).await;
    let columns = ["status", "agent_status"];
    // (answer, s1 status, agent status, s1 weight, s1's share of 12 connections)
    let steps: [(
        &'static str,
        &str,
        &str,
        &str,
        std::ops::RangeInclusive<usize>,
    ); 6] = [
        ("drain\n", "DRAIN (agent)", "CHECKED", "100", 0..=0),
        ("ready 50%\n", "UP", "CHECKED", "50", 3..=5),
        (
            "down #maintenance window\n",
            "DOWN (agent)",
            "L7STS",
            "50",
            0..=0,
        ),
        ("up\n", "UP", "L7OK", "50", 3..=5),
        ("maint\n", "MAINT", "CHECKED", "50", 0..=0),
        ("ready 100%\n", "UP", "CHECKED", "100", 6..=6),
    ];
    for (answer, status, agent_status, weight, s1_share) in steps {
        *line.lock().unwrap() = answer;
        let want = vec![
            vec![status.to_string(), agent_status.to_string()],
            vec!["UP".to_string(), String::new()],
        ];
        let (ours, theirs) = converge(&t, &sock, "app", &columns, &want).await;
        assert_eq!(ours, want, "tether after {answer:?}");
        assert_eq!(theirs, want, "haproxy after {answer:?}:\n{}", haproxy.log());
        // HAProxy's weight column is the server's weight (kept while draining or down).
        let h = cells(&haproxy_stat(&sock).await, "app", &["weight"]);
        let ours = t.daemon.runtime().backends["app"].server_states()[0].weight;
        assert_eq!(
            (ours.to_string(), h[0][0].as_str()),
            (weight.to_string(), weight),
            "{answer:?}"
        );
        let (a, b) = (
            share(t.addr, "s1", 12).await,
            share(haproxy.frontend(), "s1", 12).await,
        );
        assert!(
            s1_share.contains(&a),
            "tether sent {a} of 12 to s1 after {answer:?}"
        );
        assert!(
            s1_share.contains(&b),
            "haproxy sent {b} of 12 to s1 after {answer:?}"
        );
        if answer.starts_with("down") {
            // HAProxy clears the text while an agent check runs: wait for a finished one.
            let desc = ["last_agt"];
            let ours = cells(&tether_stat(&t), "app", &desc);
            let (_, theirs) = converge(&t, &sock, "app", &desc, &ours).await;
            assert_eq!(ours, theirs, "the agent's reason");
            assert_eq!(
                ours[0][0], "via agent : down (maintenance window)",
                "{ours:?}"
            );
        }
    }
}

/// `track`: s2 does no checks and follows s1; when s1's check endpoint closes, s1 and s2 go
/// DOWN and only s3 gets connections, in tether as in HAProxy 2.6; both come back with it. s1
/// put in maintenance takes s2 with it (`MAINT (via app/s1)`).
#[tokio::test]
async fn a_tracking_server_goes_down_with_the_tracked_one_like_haproxy() {
    let scratch = tether_testbed::ScratchDir::create("track").unwrap();
    let (s1, s2, s3) = (
        named_server("s1").await,
        named_server("s2").await,
        named_server("s3").await,
    );
    let check = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let check_addr = check.local_addr().unwrap();
    let endpoint = tokio::spawn(async move {
        while let Ok((s, _)) = check.accept().await {
            drop(s);
        }
    });
    let config = |port: u16, global: &str| {
        format!(
            "global\n  maxconn 100\n{global}defaults\n  mode tcp\n  timeout connect 1s\n  \
             timeout client 5s\n  timeout server 5s\nlisten app\n  bind 127.0.0.1:{port}\n  \
             balance roundrobin\n  default-server inter 100ms rise 1 fall 1\n  \
             server s1 {s1} check port {}\n  server s2 {s2} track s1\n  server s3 {s3} check\n",
            check_addr.port()
        )
    };
    let (t, haproxy, sock) = side_by_side(config, &scratch).await;
    let status = |v: [&str; 3]| v.iter().map(|s| vec![s.to_string()]).collect::<Vec<_>>();
    let (ours, theirs) = converge(&t, &sock, "app", &["status"], &status(["UP"; 3])).await;
    assert_eq!((ours, theirs), (status(["UP"; 3]), status(["UP"; 3])));
    // The operator puts s1 in maintenance (HAProxy's CLI; tether's admin path).
    let be = t.daemon.runtime().backends["app"].clone();
    let s1_id = tether_core::ServerId(0);
    be.set_admin(s1_id, Some(tether_core::server::AdminState::Maint), None);
    haproxy_cli(&sock, "set server app/s1 state maint").await;
    let want = status(["MAINT", "MAINT (via app/s1)", "UP"]);
    let (ours, theirs) = converge(&t, &sock, "app", &["status"], &want).await;
    assert_eq!(ours, want, "tether");
    assert_eq!(theirs, want, "haproxy:\n{}", haproxy.log());
    for fe in [t.addr, haproxy.frontend()] {
        assert_eq!(share(fe, "s3", 6).await, 6, "only s3 takes connections");
    }
    be.set_admin(s1_id, Some(tether_core::server::AdminState::Ready), None);
    haproxy_cli(&sock, "set server app/s1 state ready").await;
    let (ours, theirs) = converge(&t, &sock, "app", &["status"], &status(["UP"; 3])).await;
    assert_eq!((ours, theirs), (status(["UP"; 3]), status(["UP"; 3])));
    endpoint.abort();
    let _ = endpoint.await;
    let want = status(["DOWN", "DOWN", "UP"]);
    let (ours, theirs) = converge(&t, &sock, "app", &["status"], &want).await;
    assert_eq!(ours, want, "tether");
    assert_eq!(theirs, want, "haproxy:\n{}", haproxy.log());
    for fe in [t.addr, haproxy.frontend()] {
        assert_eq!(share(fe, "s3", 6).await, 6, "only s3 takes connections");
    }
    let back = TcpListener::bind(check_addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = back.accept().await {
            drop(s);
        }
    });
    let (ours, theirs) = converge(&t, &sock, "app", &["status"], &status(["UP"; 3])).await;
    assert_eq!((ours, theirs), (status(["UP"; 3]), status(["UP"; 3])));
    for fe in [t.addr, haproxy.frontend()] {
        assert_eq!(
            share(fe, "s2", 6).await,
            2,
            "the tracker takes its share again"
        );
    }
}

/// A server that counts the connections it accepts (each check is one), says `OK` and closes.
/// (HAProxy resets a connect-only check before the server can accept it: a check that waits for
/// an answer is one a server sees.)
async fn counting_server() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = s.write_all(b"OK\n").await;
            });
        }
    });
    (addr, count)
}

/// `set server app/s1 state maint|ready` through each one's runtime API: in maintenance
/// neither checks the server (HAProxy pauses checks there); back to ready, both check it again.
#[tokio::test]
async fn checks_pause_in_maintenance_like_haproxy() {
    use std::sync::atomic::Ordering::SeqCst;
    let scratch = tether_testbed::ScratchDir::create("maint-checks").unwrap();
    let (ours_at, ours) = counting_server().await;
    let (theirs_at, theirs) = counting_server().await;
    let config = |port: u16, global: &str| {
        // tether's file has no `global` lines: each proxy checks its own counting server.
        let server = if global.is_empty() {
            ours_at
        } else {
            theirs_at
        };
        format!(
            "global\n{global}defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  \
             timeout server 5s\nlisten app\n  bind 127.0.0.1:{port}\n  option tcp-check\n  \
             tcp-check expect string OK\n  server s1 {server} check inter 100ms\n"
        )
    };
    let (t, _haproxy, sock) = side_by_side(config, &scratch).await;
    let api = scratch.path().join("tether.sock");
    let admin = tether_core::config::AdminSocket {
        socket: api.to_string_lossy().into_owned(),
        mode: "600".into(),
        level: tether_core::config::AdminLevel::Admin,
    };
    let _api = tether::runtime_api::serve_runtime_api(admin, t.daemon.view())
        .await
        .unwrap();
    let both = || (ours.load(SeqCst), theirs.load(SeqCst));
    assert!(
        common::eventually(Duration::from_secs(3), || both().0 >= 3 && both().1 >= 3).await,
        "checks run: {:?}",
        both()
    );
    for s in [&api, &sock] {
        let answer = haproxy_cli(s, "set server app/s1 state maint").await;
        assert_eq!(answer.trim(), "", "{}: {answer}", s.display());
    }
    // A check already under way may still land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_maint = both();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        both(),
        at_maint,
        "(tether, HAProxy) checks during 1.5 s of maintenance"
    );
    for s in [&api, &sock] {
        haproxy_cli(s, "set server app/s1 state ready").await;
    }
    assert!(
        common::eventually(Duration::from_secs(2), || {
            let now = both();
            now.0 >= at_maint.0 + 3 && now.1 >= at_maint.1 + 3
        })
        .await,
        "checks resume: {:?} after {at_maint:?}",
        both()
    );
}
