//! Hitless upgrade of the real binary (`kill -USR2`) under a steady load of real TLS clients:
//! several upgrades in a row, the binary file replaced in between as a package upgrade does;
//! no client connection fails, sessions learned before resume on the same server after, an
//! established connection drains on the old process, and a unix datagram socket standing in for
//! systemd's receives `READY=1`, `RELOADING=1` and the new `MAINPID=` each time.

mod common;

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, native_toml, Resume, TlsClient};
use tether_testbed::{free_port, ScratchDir, TlsBackend, TlsBackendConfig, TlsVersions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn tls12(name: &str) -> TlsBackendConfig {
    TlsBackendConfig::new(name)
        .versions(TlsVersions::Tls12)
        .tickets(false)
}

/// The daemon under test and the systemd stand-in; kills whatever process serves last.
struct Upgradable {
    dir: ScratchDir,
    exe: PathBuf,
    config: PathBuf,
    log: PathBuf,
    notify: UnixDatagram,
    first: Child,
    pid: u32,
}

impl Drop for Upgradable {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
        let _ = self.first.kill();
        let _ = self.first.wait();
    }
}

impl Upgradable {
    /// Installs a copy of the binary in a scratch directory (so it can be replaced) and starts
    /// it with `config`, `NOTIFY_SOCKET` pointing at a datagram socket of ours.
    fn start(label: &str, config: &str) -> Upgradable {
        let dir = ScratchDir::create(label).unwrap();
        let exe = dir.path().join("bin").join("tether");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        install(&exe, Path::new(env!("CARGO_BIN_EXE_tether")));
        let config_path = dir.path().join("tether.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("tether.log");
        let notify_path = dir.path().join("notify");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let spawn = || {
            Command::new(&exe)
                .arg("run")
                .arg("-c")
                .arg(&config_path)
                .env("TETHER_LOG", "info")
                .env("NOTIFY_SOCKET", &notify_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
        };
        // Another test of this process copying its binary may have forked a child holding the
        // copy open for writing a moment (ETXTBSY): try again shortly.
        let mut first = spawn();
        for _ in 0..50 {
            match &first {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(Duration::from_millis(20));
                    first = spawn();
                }
                _ => break,
            }
        }
        let first = first.unwrap();
        let pid = first.id();
        Upgradable {
            dir,
            exe,
            config: config_path,
            log,
            notify,
            first,
            pid,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The next notification datagram.
    fn notification(&self) -> String {
        let mut buf = [0u8; 1024];
        match self.notify.recv(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) => panic!("no notification ({e}): {}", self.log()),
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.pid.to_string();
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }

    /// `kill -USR2`, then what systemd would see: reloading, then the new main PID, ready.
    fn upgrade(&mut self) -> u32 {
        let old = self.pid;
        self.signal("-USR2");
        let reloading = self.notification();
        assert!(
            reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{reloading:?}"
        );
        let handed = self.notification();
        let new: u32 = handed
            .strip_prefix("MAINPID=")
            .and_then(|r| r.strip_suffix("\nREADY=1\n"))
            .unwrap_or_else(|| panic!("{handed:?}: {}", self.log()))
            .parse()
            .unwrap();
        assert_ne!(new, old);
        self.pid = new;
        old
    }
}

/// Copies `from` to `to` through a temporary file renamed over it: the old inode lives on in
/// processes running it, as after a package upgrade.
fn install(to: &Path, from: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// Whether `pid` has exited (gone, or a zombie waiting for its parent).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// One client of the steady load: resumes its own session on every connection.
async fn client_loop(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
) -> String {
    let client = TlsClient::new(Resume::SessionId);
    let home = client
        .connect(addr)
        .await
        .expect("first connection")
        .backend;
    while !stop.load(Ordering::Relaxed) {
        match client.connect(addr).await {
            Ok(mut c) => {
                let echoed = c.echo("ping\n").await;
                let wrong = if c.backend != home || !c.resumed {
                    Some(format!(
                        "went to {} resumed={} instead of resuming on {home}",
                        c.backend, c.resumed
                    ))
                } else {
                    echoed.err().map(|e| format!("echo: {e}"))
                };
                c.close().await;
                match wrong {
                    Some(w) => failures.lock().unwrap().push(w),
                    None => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(e) => failures.lock().unwrap().push(format!("connect: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    home
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrades_under_tls_load_refuse_nothing_and_keep_sessions() {
    let mut backends = Vec::new();
    for i in 1..=3 {
        backends.push(TlsBackend::start(tls12(&format!("node{i}"))).await.unwrap());
    }
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr()).collect();
    let bind = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let stats = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    // Two threads, a listener each: the successor takes both sockets over.
    let config = native_toml(
        "threads = 2",
        "",
        "affinity = [\"session-id\"]",
        "check = false",
        &addrs,
    )
    .replace("127.0.0.1:0", &bind.to_string())
    .replace("grace = \"1s\"", "grace = \"20s\"")
        + &format!("\n[stats]\nbind = \"{stats}\"\n");
    let mut d = Upgradable::start("e2e-upgrade", &config);
    assert_eq!(d.notification(), "READY=1\n", "{}", d.log());

    // Learned before any upgrade: one sticky client, one connection held open.
    let sticky = TlsClient::new(Resume::SessionId);
    let first = sticky.connect(bind).await.unwrap();
    let home = first.backend.clone();
    first.close().await;
    let mut first_held = TlsClient::new(Resume::SessionId)
        .connect(bind)
        .await
        .unwrap();
    first_held.echo("before\n").await.unwrap();
    let mut held = Some(first_held);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(client_loop(
                bind,
                stop.clone(),
                ok.clone(),
                failures.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    for round in 1..=3 {
        if round > 1 {
            // A new version is installed over the running file.
            install(&d.exe, Path::new(env!("CARGO_BIN_EXE_tether")));
        }
        let before = ok.load(Ordering::Relaxed);
        let old = d.upgrade();
        if round == 1 {
            // The connection from before still works on the draining process, which waits
            // for it (grace is 20 s), then ends.
            let mut held = held.take().expect("held once");
            held.echo("during\n")
                .await
                .expect("established connection drains");
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(
                !exited(old),
                "the old process left before its connection ended"
            );
            held.echo("still\n").await.unwrap();
            held.close().await;
        }
        assert!(
            eventually(Duration::from_secs(10), || exited(old)).await,
            "round {round}: the old process {old} did not exit after draining: {}",
            d.log()
        );
        let exe = std::fs::read_link(format!("/proc/{}/exe", d.pid)).unwrap();
        assert_eq!(
            exe, d.exe,
            "round {round}: runs the file on disk, not a deleted inode"
        );
        let grown = ok.load(Ordering::Relaxed);
        assert!(
            eventually(Duration::from_secs(5), || ok.load(Ordering::Relaxed)
                > grown + 20)
            .await,
            "round {round}: the load stalled after the upgrade ({before} -> {grown})"
        );
    }

    stop.store(true, Ordering::Relaxed);
    let homes: Vec<String> = futures_join(load).await;
    let failed = failures.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "{} failed: {failed:?}\n{}",
        failed.len(),
        d.log()
    );
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "too little load to prove anything"
    );
    assert!(homes.iter().all(|h| h.starts_with("node")));

    let again = sticky.connect(bind).await.unwrap();
    assert_eq!(
        (again.backend.as_str(), again.resumed),
        (home.as_str(), true),
        "the session learned before the upgrades"
    );
    again.close().await;

    // The stats listener came along too.
    let mut s = tokio::net::TcpStream::connect(stats)
        .await
        .expect("stats answers");
    s.write_all(b"GET /stats HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 ");

    let log = d.log();
    assert!(log.contains("stick tables carried over"), "{log}");
    // Both threads' listeners were handed over (none closed unclaimed) and both accept.
    assert!(!log.contains("handed-over socket closed"), "{log}");
    let mut s = tokio::net::TcpStream::connect(stats).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut metrics = String::new();
    s.read_to_string(&mut metrics).await.unwrap();
    for thread in ["0", "1"] {
        let line = format!("tether_thread_connections_total{{thread=\"{thread}\"}} ");
        let accepted: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line}in {metrics}"))
            .parse()
            .unwrap();
        assert!(
            accepted > 0,
            "thread {thread} of the last process accepted nothing"
        );
    }
    d.signal("-TERM");
    assert!(
        eventually(Duration::from_secs(10), || exited(d.pid)).await,
        "the last process ignores SIGTERM"
    );
    let _ = d.dir.path();
    let _ = &d.config;
}

async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_new_binary_that_fails_to_start_leaves_the_old_one_serving() {
    let backend = TlsBackend::start(tls12("node1")).await.unwrap();
    let bind = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let config = native_toml("", "", "", "check = false", &[backend.addr()])
        .replace("127.0.0.1:0", &bind.to_string());
    let d = Upgradable::start("e2e-upgrade-broken", &config);
    assert_eq!(d.notification(), "READY=1\n", "{}", d.log());
    // The "new version" exits at once without taking over.
    let broken = d.dir.path().join("broken.sh");
    std::fs::write(&broken, "#!/bin/sh\nexit 3\n").unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&broken, &d.exe).unwrap();
    d.signal("-USR2");
    assert!(d.notification().starts_with("RELOADING=1\n"));
    assert_eq!(
        d.notification(),
        "READY=1\n",
        "back to ready, same main process"
    );
    assert!(d.log().contains("upgrade abandoned"), "{}", d.log());
    assert!(!exited(d.pid));
    let c = TlsClient::new(Resume::SessionId)
        .connect(bind)
        .await
        .unwrap();
    assert_eq!(c.backend, "node1");
    c.close().await;
    // A broken configuration is refused the same way: the new process exits before ready.
    install(&d.exe, Path::new(env!("CARGO_BIN_EXE_tether")));
    std::fs::write(&d.config, "this is not toml").unwrap();
    d.signal("-USR2");
    assert!(d.notification().starts_with("RELOADING=1\n"));
    assert_eq!(d.notification(), "READY=1\n");
    let c = TlsClient::new(Resume::SessionId)
        .connect(bind)
        .await
        .unwrap();
    assert_eq!(c.backend, "node1");
    c.close().await;
}

/// With a `[peers]` section, the table it shares crosses the upgrade over HAProxy's peers
/// protocol (the old process connects to the new one under the local peer name and teaches
/// it), not over the handover channel: sessions learned before resume on the same server
/// after, and the log says which path ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_pushes_a_peers_shared_table_over_the_peers_protocol() {
    let mut backends = Vec::new();
    for i in 1..=3 {
        backends.push(TlsBackend::start(tls12(&format!("node{i}"))).await.unwrap());
    }
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr()).collect();
    let bind = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let peers = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let config = native_toml(
        "",
        "",
        "affinity = [\"session-id\"]\n[backend.stick-table]\npeers = \"mesh\"",
        "check = false",
        &addrs,
    )
    .replace("127.0.0.1:0", &bind.to_string())
        + &format!(
            "\n[peers]\nname = \"mesh\"\nlocal = \"lb1\"\nbind = \"{peers}\"\n\
             [[peers.peer]]\nname = \"lb1\"\naddress = \"{peers}\"\n"
        );
    let mut d = Upgradable::start("e2e-upgrade-peers", &config);
    assert_eq!(d.notification(), "READY=1\n", "{}", d.log());
    let mut learned = Vec::new();
    for _ in 0..6 {
        let client = TlsClient::new(Resume::SessionId);
        let c = client.connect(bind).await.unwrap();
        learned.push((client, c.backend.clone()));
        c.close().await;
    }
    let old = d.upgrade();
    assert!(
        eventually(Duration::from_secs(10), || exited(old)).await,
        "the old process did not exit: {}",
        d.log()
    );
    let log = d.log();
    assert!(
        log.contains("shared stick tables pushed over the peers protocol"),
        "{log}"
    );
    assert!(
        log.contains("received from the previous process over the peers protocol"),
        "{log}"
    );
    assert!(
        !log.contains("sending them over the handover channel instead"),
        "{log}"
    );
    for (client, home) in &learned {
        let c = client.connect(bind).await.unwrap();
        assert_eq!((&c.backend, c.resumed), (home, true), "{}", d.log());
        c.close().await;
    }
}

/// Reads every notification already queued, without waiting.
fn drain_notifications(d: &Upgradable) -> Vec<String> {
    d.notify.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = d.notify.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    d.notify.set_nonblocking(false).unwrap();
    got
}

/// Issue 17 §3: 20 SIGHUPs 100 ms apart (each reloading a changed weight), then 5 SIGUSR2
/// upgrades back to back (each signalled as soon as the previous successor is ready, the old
/// processes still draining), all under a steady TLS load: not one client connection fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hup_and_usr2_storms_under_tls_load_fail_nothing() {
    let mut backends = Vec::new();
    for i in 1..=3 {
        backends.push(TlsBackend::start(tls12(&format!("node{i}"))).await.unwrap());
    }
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr()).collect();
    let bind = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let config_with_weight = |w: u32| {
        native_toml(
            "",
            "",
            "affinity = [\"session-id\"]",
            &format!("check = false\nweight = {w}"),
            &addrs,
        )
        .replace("127.0.0.1:0", &bind.to_string())
        .replace("grace = \"1s\"", "grace = \"20s\"")
    };
    let mut d = Upgradable::start("e2e-storm", &config_with_weight(1));
    assert_eq!(d.notification(), "READY=1\n", "{}", d.log());

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(client_loop(
                bind,
                stop.clone(),
                ok.clone(),
                failures.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before_hups = ok.load(Ordering::Relaxed);
    for i in 0..20u32 {
        std::fs::write(&d.config, config_with_weight(1 + i % 3)).unwrap();
        d.signal("-HUP");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reloads = d.log().matches("configuration reloaded").count();
    // Signals that arrive during a reload coalesce (as for any Unix daemon): most, not all.
    assert!(
        reloads >= 10,
        "only {reloads} of 20 SIGHUPs reloaded: {}",
        d.log()
    );
    let during_hups = ok.load(Ordering::Relaxed) - before_hups;
    drain_notifications(&d);

    let mut old = Vec::new();
    let before_usr2 = ok.load(Ordering::Relaxed);
    for _ in 0..5 {
        old.push(d.upgrade());
    }
    for pid in &old {
        assert!(
            eventually(Duration::from_secs(15), || exited(*pid)).await,
            "old process {pid} never finished draining: {}",
            d.log()
        );
    }
    let grown = ok.load(Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || ok.load(Ordering::Relaxed)
            > grown + 20)
        .await,
        "the load stalled after the upgrades"
    );
    stop.store(true, Ordering::Relaxed);
    futures_join(load).await;
    let failed = failures.lock().unwrap().clone();
    eprintln!(
        "storm: {reloads} reloads of 20 SIGHUPs ({during_hups} connections meanwhile), 5 \
         upgrades ({} connections meanwhile), {} connections in all, {} failed",
        grown - before_usr2,
        ok.load(Ordering::Relaxed),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} failed: {failed:?}\n{}",
        failed.len(),
        d.log()
    );
    assert!(during_hups > 50, "too little load during the SIGHUP storm");
    assert!(
        grown - before_usr2 > 20,
        "too little load during the upgrades"
    );
    d.signal("-TERM");
    assert!(eventually(Duration::from_secs(10), || exited(d.pid)).await);
}
