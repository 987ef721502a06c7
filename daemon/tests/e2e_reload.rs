//! Process limits and configuration changes under traffic: global maxconn pauses accepting
//! (nothing is refused), a reload keeps established connections and the stick table, and the
//! real binary reloads on SIGHUP and exits cleanly on SIGTERM.

mod common;

use std::io::Read as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{echo_roundtrip, eventually, native_toml, start_toml, EchoBackend, Resume, TlsClient};
use tether_core::affinity::AffinityOutcome;
use tether_testbed::{free_port, wait_until_listening, TlsBackend, TlsBackendConfig, TlsVersions};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn global_maxconn_pauses_accepting_without_refusing() {
    let echo = EchoBackend::start().await;
    let toml = native_toml("maxconn = 5", "", "", "check = false", &[echo.addr]);
    let running = start_toml(&toml).await;
    let mut open = Vec::new();
    for i in 0..5 {
        let mut s = TcpStream::connect(running.addr).await.unwrap();
        assert_eq!(
            echo_roundtrip(&mut s, b"hi").await.unwrap(),
            b"hi",
            "conn {i}"
        );
        open.push(s);
    }
    // The sixth completes the TCP handshake in the kernel backlog but is not accepted.
    let mut sixth = TcpStream::connect(running.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut sixth, b"waiting")
        .await
        .unwrap();
    let mut buf = [0u8; 7];
    let early = tokio::time::timeout(Duration::from_millis(400), sixth.read_exact(&mut buf)).await;
    assert!(
        early.is_err(),
        "the 6th connection must wait, not be served or refused"
    );
    assert_eq!(echo.accepted.load(std::sync::atomic::Ordering::Relaxed), 5);
    // One closes: the sixth is accepted and served, its early bytes intact.
    drop(open.remove(0));
    tokio::time::timeout(Duration::from_secs(2), sixth.read_exact(&mut buf))
        .await
        .expect("served once a slot frees")
        .unwrap();
    assert_eq!(&buf, b"waiting");
    drop(open);
    drop(sixth);
    let recs = running.sink.wait_for(6).await;
    assert!(
        recs.iter().all(|r| r.server.is_some()),
        "{}",
        running.sink.lines()
    );
}

fn tls12(name: &str) -> TlsBackendConfig {
    TlsBackendConfig::new(name)
        .versions(TlsVersions::Tls12)
        .tickets(false)
}

#[tokio::test]
async fn reload_under_traffic_keeps_connections_and_stick_table() {
    let mut backends = Vec::new();
    for i in 1..=3 {
        backends.push(TlsBackend::start(tls12(&format!("node{i}"))).await.unwrap());
    }
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr()).collect();
    let toml = native_toml("", "", "", "check = false", &addrs);
    let mut running = start_toml(&toml).await;

    // Long-lived connections and one sticky client.
    let mut long = Vec::new();
    for _ in 0..3 {
        let mut c = TlsClient::new(Resume::SessionId)
            .connect(running.addr)
            .await
            .unwrap();
        c.echo("before\n").await.unwrap();
        long.push(c);
    }
    let sticky = TlsClient::new(Resume::SessionId);
    let first = sticky.connect(running.addr).await.unwrap();
    let home = first.backend.clone();
    first.close().await;

    // Reload with a changed configuration (a fourth server, other retries) while traffic flows.
    backends.push(TlsBackend::start(tls12("node4")).await.unwrap());
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr()).collect();
    let new_toml = native_toml("", "", "retries = 2", "check = false", &addrs);
    let new_config = tether_core::config::load_toml("new.toml", &new_toml).unwrap();
    let traffic = {
        let addr = running.addr;
        tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..20 {
                let c = TlsClient::new(Resume::SessionId).connect(addr).await;
                if let Ok(c) = c {
                    c.close().await;
                    ok += 1;
                }
            }
            ok
        })
    };
    let new_rt =
        tether_core::engine::runtime::build(&new_config, Some(running.daemon.runtime())).unwrap();
    running.daemon.reload(new_rt).await.unwrap();
    assert_eq!(
        traffic.await.unwrap(),
        20,
        "no connection failed across the reload"
    );
    assert_eq!(running.daemon.runtime().backends["app"].servers.len(), 4);

    for c in &mut long {
        c.echo("after\n")
            .await
            .expect("established connection survives reload");
    }
    let again = sticky.connect(running.addr).await.unwrap();
    assert_eq!(again.backend, home);
    assert!(again.resumed);
    let port = again.stream.get_ref().0.get_ref().local_addr().unwrap();
    again.close().await;
    // 1 sticky + 20 during the reload + this one have closed.
    let recs = running.sink.wait_for(22).await;
    let rec = recs.iter().find(|r| r.client == port).expect("logged");
    assert_eq!(
        rec.affinity,
        AffinityOutcome::Hit,
        "{}",
        running.sink.lines()
    );
    for c in long {
        c.close().await;
    }
}

fn binary_config(bind: SocketAddr, servers: &[SocketAddr]) -> String {
    native_toml("", "", "", "check = false", servers).replace("127.0.0.1:0", &bind.to_string())
}

#[tokio::test]
async fn the_binary_reloads_on_sighup_and_exits_zero_on_sigterm() {
    let b1 = TlsBackend::start(tls12("node1")).await.unwrap();
    let b2 = TlsBackend::start(tls12("node2")).await.unwrap();
    let dir = tether_testbed::ScratchDir::create("e2e-binary").unwrap();
    let path = dir.path().join("tether.toml");
    let log = dir.path().join("tether.log");
    let bind = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    std::fs::write(&path, binary_config(bind, &[b1.addr()])).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("run")
        .arg("-c")
        .arg(&path)
        .env("TETHER_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until_listening(bind, Duration::from_secs(10)).await,
        "tether listens: {}",
        read_log()
    );
    let c = TlsClient::new(Resume::SessionId)
        .connect(bind)
        .await
        .unwrap();
    assert_eq!(c.backend, "node1");
    c.close().await;

    // Point the only server elsewhere and reload.
    std::fs::write(&path, binary_config(bind, &[b2.addr()])).unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    assert!(
        eventually(Duration::from_secs(5), || read_log()
            .contains("configuration reloaded"))
        .await,
        "reload logged: {}",
        read_log()
    );
    let c = TlsClient::new(Resume::SessionId)
        .connect(bind)
        .await
        .unwrap();
    assert_eq!(c.backend, "node2", "the reloaded configuration serves");
    c.close().await;

    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut status = None;
    for _ in 0..250 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("tether did not exit after SIGTERM: {}", read_log())
    });
    assert!(status.success(), "exit status {status}: {}", read_log());
    let mut text = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("stopping"), "{text}");
    assert!(
        text.contains(" main app/s1 "),
        "connections logged in tcplog form: {text}"
    );
}
