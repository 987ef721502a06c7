//! The everyday keywords of real-world TCP configs, imported from haproxy.cfg and run over
//! loopback side by side with HAProxy 2.6 on the same file (issue 19): `timeout tunnel`,
//! `timeout client-fin`/`server-fin`,
//! `option tcpka`/`clitcpka`/`srvtcpka`, server `disabled`, `balance random`, `nbthread`
//! (the worker threads of `tether run`), unix-socket servers (`unix@PATH`, `/PATH`,
//! `abns@NAME`), `resolvers` + `init-addr` against a real DNS server (dnsmasq), `bind ...
//! defer-accept`, and server `id`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{closed_within, echo_roundtrip, EchoBackend};
use tether_testbed::{free_port, Haproxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Imports `cfg` as `tether run --haproxy` does and starts the daemon.
async fn start_tether(cfg: &str) -> common::Running {
    let im = tether::haproxy::import::import("keywords.cfg", cfg);
    assert!(!im.has_errors(), "{:#?}", im.findings);
    common::start_config(&im.config).await
}

/// Starts HAProxy on `cfg` (whose first listener is `first`) and waits for `last` to listen.
async fn start_haproxy(cfg: &str, first: SocketAddr, last: SocketAddr) -> Haproxy {
    let h = Haproxy::start(cfg, first).await.expect("haproxy runs");
    let up = common::eventually(Duration::from_secs(3), || {
        std::net::TcpStream::connect(last).is_ok()
    })
    .await;
    assert!(up, "haproxy listens on {last}:\n{}", h.log());
    h
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Two listens on the same echo server with 300 ms client and server timeouts; `tunnel` adds
/// `timeout tunnel 10s`.
fn tunnel_config(plain: u16, tunnel: u16, server: SocketAddr) -> String {
    format!(
        "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 300ms\n  \
         timeout server 300ms\nlisten plain\n  bind 127.0.0.1:{plain}\n  server s1 {server}\n\
         listen tunnel\n  bind 127.0.0.1:{tunnel}\n  timeout tunnel 10s\n  server s1 {server}\n"
    )
}

/// Whether a connection through `fe` still works after 1 s idle (past client and server
/// timeouts).
async fn survives_idle(fe: SocketAddr) -> bool {
    let mut s = TcpStream::connect(fe).await.unwrap();
    assert_eq!(echo_roundtrip(&mut s, b"one").await.unwrap(), b"one");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let alive = matches!(echo_roundtrip(&mut s, b"two").await.as_deref(), Ok(b"two"));
    alive && !closed_within(&mut s, Duration::from_millis(50)).await
}

#[tokio::test]
async fn timeout_tunnel_replaces_client_and_server_timeouts_like_haproxy() {
    let echo = EchoBackend::start().await;
    let tether = start_tether(&tunnel_config(
        free_port().unwrap(),
        free_port().unwrap(),
        echo.addr,
    ))
    .await;
    let addrs = tether.daemon.local_addrs();
    let (p, t) = (free_port().unwrap(), free_port().unwrap());
    let haproxy = start_haproxy(&tunnel_config(p, t, echo.addr), loopback(p), loopback(t)).await;
    for (who, plain, tunnel) in [
        ("tether", addrs["plain"], addrs["tunnel"]),
        ("haproxy", loopback(p), loopback(t)),
    ] {
        assert!(
            !survives_idle(plain).await,
            "{who}: without tunnel the 300ms timeouts close an idle connection"
        );
        assert!(
            survives_idle(tunnel).await,
            "{who}: timeout tunnel 10s keeps it open:\n{}",
            haproxy.log()
        );
    }
}

/// The `tr` (timer) column of the /proc/net/tcp line of the IPv4 socket `local` → `remote`:
/// 2 while a keepalive timer runs.
fn timer_of(local: SocketAddr, remote: SocketAddr) -> Option<u8> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => unreachable!("loopback IPv4 only"),
    };
    let (l, r) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp (Linux)");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&l.as_str()) && f.get(2) == Some(&r.as_str()))
            .then(|| f[5].split(':').next().and_then(|t| t.parse().ok()))
            .flatten()
    })
}

/// The keepalive timers of the balancer's two sockets for one idle connection through `fe` to
/// `server` (which serves only this connection): (client side, server side).
async fn keepalive_timers(fe: SocketAddr, server: SocketAddr) -> (bool, bool) {
    let mut c = TcpStream::connect(fe).await.unwrap();
    assert_eq!(echo_roundtrip(&mut c, b"ka").await.unwrap(), b"ka");
    let me = c.local_addr().unwrap();
    // The balancer's server-side socket: the established one whose peer is the server (the
    // kernel may list a line twice when the table changes while it is read).
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let to_server: Vec<u16> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            let remote = u16::from_str_radix(f.get(2)?.rsplit(':').next()?, 16).ok()?;
            (remote == server.port() && f.get(3) == Some(&"01")).then_some(port)
        })
        .collect::<std::collections::BTreeSet<u16>>()
        .into_iter()
        .collect();
    assert_eq!(
        to_server.len(),
        1,
        "one connection to {server}: {to_server:?}"
    );
    let server_side = timer_of(loopback(to_server[0]), server) == Some(2);
    let client_side = timer_of(fe, me) == Some(2);
    drop(c);
    (client_side, server_side)
}

/// Four listens, each to its own server: `option tcpka` (both sides), `clitcpka`, `srvtcpka`,
/// and none.
fn tcpka_config(ports: [u16; 4], servers: [SocketAddr; 4]) -> String {
    let mut cfg = "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  \
                   timeout server 30s\n"
        .to_string();
    let options = [
        "  option tcpka\n",
        "  option clitcpka\n",
        "  option srvtcpka\n",
        "",
    ];
    for (i, name) in ["both", "cli", "srv", "none"].into_iter().enumerate() {
        cfg.push_str(&format!(
            "listen {name}\n  bind 127.0.0.1:{}\n{}  server s1 {}\n",
            ports[i], options[i], servers[i]
        ));
    }
    cfg
}

async fn echo_servers() -> (Vec<EchoBackend>, [SocketAddr; 4]) {
    let mut echoes = Vec::new();
    for _ in 0..4 {
        echoes.push(EchoBackend::start().await);
    }
    let addrs = [0, 1, 2, 3].map(|i| echoes[i].addr);
    (echoes, addrs)
}

#[tokio::test]
async fn tcpka_options_turn_keepalive_on_for_their_side_like_haproxy() {
    let ports = || [(); 4].map(|_| free_port().unwrap());
    let (_t_echo, t_servers) = echo_servers().await;
    let tether = start_tether(&tcpka_config(ports(), t_servers)).await;
    let a = tether.daemon.local_addrs();
    let (_h_echo, h_servers) = echo_servers().await;
    let h = ports();
    let haproxy = start_haproxy(&tcpka_config(h, h_servers), loopback(h[0]), loopback(h[3])).await;
    let expected = [(true, true), (true, false), (false, true), (false, false)];
    for (who, fes, servers) in [
        (
            "tether",
            [a["both"], a["cli"], a["srv"], a["none"]],
            t_servers,
        ),
        ("haproxy", h.map(loopback), h_servers),
    ] {
        for i in 0..4 {
            assert_eq!(
                keepalive_timers(fes[i], servers[i]).await,
                expected[i],
                "{who} {}: (client side, server side) keepalive:\n{}",
                fes[i],
                haproxy.log()
            );
        }
    }
}

/// The extra serving threads of process `pid` (tether names them `tether-1`, `tether-2`...;
/// the main thread serves too).
fn workers_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc (Linux)")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("tether-"))
        .count()
}

/// Kills the daemon when the test ends, whatever happens.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn nbthread_sets_the_worker_threads_of_tether_run() {
    let dir = std::env::temp_dir().join(format!("tether-nbthread-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The main thread is the first of the N; the others are named tether-1, tether-2...
    for (nbthread, workers) in [(1, 0), (3, 2)] {
        let port = free_port().unwrap();
        let cfg = dir.join(format!("nbthread-{nbthread}.cfg"));
        std::fs::write(
            &cfg,
            format!(
                "global\n  nbthread {nbthread}\ndefaults\n  mode tcp\n  timeout connect 1s\n  \
                 timeout client 1s\n  timeout server 1s\nlisten l\n  bind 127.0.0.1:{port}\n  \
                 server s1 127.0.0.1:9\n"
            ),
        )
        .unwrap();
        let child = Child(
            std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
                .arg("run")
                .arg("--haproxy")
                .arg(&cfg)
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("tether runs"),
        );
        // At most 10 s (200 tries 50 ms apart) for the daemon to listen.
        let listening = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::net::TcpStream::connect(loopback(port)).is_ok()
        });
        assert!(listening, "tether listens on {port}");
        assert_eq!(workers_of(child.0.id()), workers, "nbthread {nbthread}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A data port that writes `name` to every client, then closes.
async fn named_server(name: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = tokio::io::AsyncWriteExt::write_all(&mut s, name.as_bytes()).await;
            });
        }
    });
    addr
}

/// Connects to `fe` and reads what the server says.
async fn who(fe: SocketAddr) -> String {
    let mut s = TcpStream::connect(fe).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read_to_string(&mut s, &mut out),
    )
    .await
    .expect("server answers")
    .unwrap();
    out
}

#[tokio::test]
async fn a_disabled_server_gets_no_connections_like_haproxy() {
    let (s1, s2) = (named_server("s1").await, named_server("s2").await);
    let config = |port: u16| {
        format!(
            "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 5s\n  \
             timeout server 5s\nlisten l\n  bind 127.0.0.1:{port}\n  server s1 {s1}\n  \
             server s2 {s2} disabled\n"
        )
    };
    let tether = start_tether(&config(free_port().unwrap())).await;
    let h = free_port().unwrap();
    let haproxy = start_haproxy(&config(h), loopback(h), loopback(h)).await;
    for (who_, fe) in [("tether", tether.addr), ("haproxy", loopback(h))] {
        for i in 0..6 {
            assert_eq!(
                who(fe).await,
                "s1",
                "{who_} connection {i}:\n{}",
                haproxy.log()
            );
        }
    }
}

/// A server that says `bye` and half-closes at once, then reads until the proxy closes its
/// side too; the receiver fires then.
async fn ending_server() -> (SocketAddr, tokio::sync::oneshot::Receiver<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"bye").await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        let _ = tx.send(());
    });
    (addr, rx)
}

/// A server that reads its client to the end, then keeps the connection open and silent.
async fn silent_server() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    addr
}

/// Four listens with 10 s client and server timeouts: `client_fin` and `server_fin` add a
/// 300 ms `timeout client-fin` / `server-fin`, `client_open` and `server_open` do not.
fn fin_config(ports: [u16; 4], ending: [SocketAddr; 2], silent: [SocketAddr; 2]) -> String {
    format!(
        "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  \
         timeout server 10s\nlisten client_fin\n  bind 127.0.0.1:{}\n  \
         timeout client-fin 300ms\n  server s1 {}\nlisten client_open\n  bind 127.0.0.1:{}\n  \
         server s1 {}\nlisten server_fin\n  bind 127.0.0.1:{}\n  timeout server-fin 300ms\n  \
         server s1 {}\nlisten server_open\n  bind 127.0.0.1:{}\n  server s1 {}\n",
        ports[0], ending[0], ports[1], ending[1], ports[2], silent[0], ports[3], silent[1]
    )
}

/// The server ends first; the client reads that end and stays open and silent: does the
/// proxy close the server's side within 1.5 s?
async fn half_closed_client_dropped(
    fe: SocketAddr,
    closed: tokio::sync::oneshot::Receiver<()>,
) -> bool {
    let mut c = TcpStream::connect(fe).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut got)).await;
    assert!(
        read.is_ok() && got == b"bye",
        "{fe}: the server's end reaches the client"
    );
    let dropped = tokio::time::timeout(Duration::from_millis(1500), closed)
        .await
        .is_ok();
    drop(c);
    dropped
}

/// The client ends first; the server reads that end and stays open and silent: does the
/// proxy close the client's side within 1.5 s?
async fn half_closed_server_dropped(fe: SocketAddr) -> bool {
    let mut c = TcpStream::connect(fe).await.unwrap();
    c.write_all(b"hi").await.unwrap();
    c.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_millis(1500), c.read_to_end(&mut got))
        .await
        .is_ok()
}

#[tokio::test]
async fn fin_timeouts_close_a_half_closed_connection_like_haproxy() {
    for who in ["tether", "haproxy"] {
        let (e0, closed0) = ending_server().await;
        let (e1, closed1) = ending_server().await;
        let silent = [silent_server().await, silent_server().await];
        let ports = [(); 4].map(|()| free_port().unwrap());
        let cfg = fin_config(ports, [e0, e1], silent);
        let (_tether, _haproxy, fe): (_, _, Vec<SocketAddr>) = if who == "tether" {
            let t = start_tether(&cfg).await;
            let a = t.daemon.local_addrs();
            let fe = ["client_fin", "client_open", "server_fin", "server_open"]
                .map(|n| a[n])
                .to_vec();
            (Some(t), None, fe)
        } else {
            // Probed by bind, not by connecting: each server behind it takes one connection.
            let h = Haproxy::start_unprobed(&cfg, &ports.map(loopback))
                .await
                .expect("haproxy runs");
            (None, Some(h), ports.map(loopback).to_vec())
        };
        assert!(
            half_closed_client_dropped(fe[0], closed0).await,
            "{who}: timeout client-fin 300ms closes a half-closed idle client"
        );
        assert!(
            !half_closed_client_dropped(fe[1], closed1).await,
            "{who}: without client-fin, timeout client 10s keeps it"
        );
        assert!(
            half_closed_server_dropped(fe[2]).await,
            "{who}: timeout server-fin 300ms closes a half-closed idle server"
        );
        assert!(
            !half_closed_server_dropped(fe[3]).await,
            "{who}: without server-fin, timeout server 10s keeps it"
        );
    }
}

/// Two listens over a refusing server and an echo server (roundrobin, `retries 2`,
/// `option redispatch 1`): `conn_failure` lists `retry-on conn-failure`, `http_only` only
/// classes of HTTP retries.
fn retry_on_config(ports: [u16; 2], refusing: SocketAddr, echo: SocketAddr) -> String {
    format!(
        "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 5s\n  timeout server 5s\n  \
         retries 2\n  option redispatch 1\nlisten conn_failure\n  bind 127.0.0.1:{}\n  \
         retry-on conn-failure\n  server refusing {refusing}\n  server echo {echo}\n\
         listen http_only\n  bind 127.0.0.1:{}\n  retry-on empty-response 503\n  \
         server refusing {refusing}\n  server echo {echo}\n",
        ports[0], ports[1]
    )
}

/// How many of four connections through `fe` get their echo.
async fn echoed_of_four(fe: SocketAddr) -> usize {
    let mut n = 0;
    for _ in 0..4 {
        let mut s = TcpStream::connect(fe).await.unwrap();
        if matches!(echo_roundtrip(&mut s, b"x").await.as_deref(), Ok(b"x")) {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn retry_on_without_conn_failure_stops_connect_retries_like_haproxy() {
    let echo = EchoBackend::start().await;
    let refusing = common::closed_port().await;
    let tether = start_tether(&retry_on_config(
        [free_port().unwrap(), free_port().unwrap()],
        refusing,
        echo.addr,
    ))
    .await;
    let a = tether.daemon.local_addrs();
    let ports = [free_port().unwrap(), free_port().unwrap()];
    let haproxy = start_haproxy(
        &retry_on_config(ports, refusing, echo.addr),
        loopback(ports[0]),
        loopback(ports[1]),
    )
    .await;
    for (who, retried, not_retried) in [
        ("tether", a["conn_failure"], a["http_only"]),
        ("haproxy", loopback(ports[0]), loopback(ports[1])),
    ] {
        assert_eq!(
            echoed_of_four(retried).await,
            4,
            "{who}: conn-failure: a refused connect is retried on the echo server:\n{}",
            haproxy.log()
        );
        assert_eq!(
            echoed_of_four(not_retried).await,
            2,
            "{who}: no conn-failure: the connections sent to the refusing server fail:\n{}",
            haproxy.log()
        );
    }
}

/// A data port that writes `name` to every client, then waits for the client to close.
async fn holding_server(name: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(name.as_bytes()).await;
                let mut sink = [0u8; 64];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// How many of `n` connections, each closed before the next, went to `s2` (weight 3 of 4).
async fn weighted_share(fe: SocketAddr, n: usize) -> usize {
    let mut s2 = 0;
    for _ in 0..n {
        s2 += usize::from(who(fe).await == "s2");
    }
    s2
}

/// Connections held open at once, per server name: two draws keep them even.
async fn held_spread(fe: SocketAddr, n: usize) -> (Vec<TcpStream>, Vec<usize>) {
    let mut held = Vec::new();
    let mut per = vec![0usize; 4];
    for _ in 0..n {
        let mut s = TcpStream::connect(fe).await.unwrap();
        let mut buf = [0u8; 8];
        let k = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("server answers")
            .unwrap();
        let name = String::from_utf8_lossy(&buf[..k]).into_owned();
        per[name.trim_start_matches('h').parse::<usize>().unwrap() - 1] += 1;
        held.push(s);
    }
    (held, per)
}

#[tokio::test]
async fn balance_random_follows_weights_and_evens_open_connections_like_haproxy() {
    let (s1, s2) = (named_server("s1").await, named_server("s2").await);
    let mut holders = Vec::new();
    for name in ["h1", "h2", "h3", "h4"] {
        holders.push(holding_server(name).await);
    }
    let config = |weighted: u16, held: u16| {
        let mut c = format!(
            "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  \
             timeout server 30s\nlisten weighted\n  bind 127.0.0.1:{weighted}\n  \
             balance random\n  server s1 {s1} weight 1\n  server s2 {s2} weight 3\n\
             listen held\n  bind 127.0.0.1:{held}\n  balance random(2)\n"
        );
        for (i, h) in holders.iter().enumerate() {
            c += &format!("  server h{} {h}\n", i + 1);
        }
        c
    };
    let tether = start_tether(&config(free_port().unwrap(), free_port().unwrap())).await;
    let a = tether.daemon.local_addrs();
    let (w, h) = (free_port().unwrap(), free_port().unwrap());
    let haproxy = start_haproxy(&config(w, h), loopback(w), loopback(h)).await;
    for (who_, weighted, held) in [
        ("tether", a["weighted"], a["held"]),
        ("haproxy", loopback(w), loopback(h)),
    ] {
        // 400 draws at 3/4: 300 expected, sigma 8.7.
        let share = weighted_share(weighted, 400).await;
        assert!(
            (255..=345).contains(&share),
            "{who_}: s2 got {share} of 400\n{}",
            haproxy.log()
        );
        // 100 open connections over 4 servers: the less loaded of two draws each time keeps
        // them within a few of 25 (one draw would spread them about ±4.3 each).
        let (_open, per) = held_spread(held, 100).await;
        let spread = per.iter().max().unwrap() - per.iter().min().unwrap();
        assert!(
            spread <= 6,
            "{who_}: open connections per server {per:?}\n{}",
            haproxy.log()
        );
    }
}

/// A unix stream socket server at `addr` (bound as HAProxy binds it, `abns@` names padded):
/// says `name` and a newline, then echoes every byte, and half-closes once the client has.
fn unix_echo(addr: &str, name: &'static str) {
    use tether_core::config::UnixAddress;
    let unix = UnixAddress::parse(addr).expect("a unix address");
    let socket = socket2::Socket::new(
        socket2::Domain::UNIX,
        socket2::Type::STREAM.nonblocking(),
        None,
    )
    .unwrap();
    socket
        .bind(&tether::net::unix::sockaddr(unix).unwrap())
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    socket.listen(64).unwrap();
    let l = tokio::net::UnixListener::from_std(socket.into()).unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                w.write_all(format!("{name}\n").as_bytes()).await?;
                tokio::io::copy(&mut r, &mut w).await?;
                w.shutdown().await
            });
        }
    });
}

/// Sends `payload` through `fe`, half-closes, and reads until the server's end: the server's
/// name and what came back.
async fn through_unix(fe: SocketAddr, payload: &[u8]) -> (String, Vec<u8>) {
    let s = TcpStream::connect(fe).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let send = async {
        w.write_all(payload).await.unwrap();
        w.shutdown().await.unwrap();
        w
    };
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), r.read_to_end(&mut got));
    let (_w, read) = tokio::join!(send, read);
    read.unwrap_or_else(|_| panic!("{fe}: the server's end comes back, got {} bytes", got.len()))
        .unwrap();
    let nl = got.iter().position(|&b| b == b'\n').unwrap_or(got.len());
    let name = String::from_utf8_lossy(&got[..nl]).into_owned();
    let rest = got.get(nl + 1..).unwrap_or_default().to_vec();
    (name, rest)
}

fn unix_config(ports: [u16; 2], dir: &str, abns: &str) -> String {
    format!(
        "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 5s\n  \
         timeout server 5s\nlisten lb\n  bind 127.0.0.1:{}\n  balance roundrobin\n  \
         server s1 unix@{dir}/s1.sock check inter 100ms fall 1 rise 1\n  \
         server s2 {dir}/s2.sock check inter 100ms fall 1 rise 1\n\
         listen pp\n  bind 127.0.0.1:{}\n  server s3 abns@{abns} send-proxy\n",
        ports[0], ports[1]
    )
}

#[tokio::test]
async fn unix_socket_servers_forward_balance_and_fail_checks_like_haproxy() {
    let dir = std::env::temp_dir().join(format!("tether-unixsrv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap().to_string();
    let abns = format!("tether-e2e-{}", std::process::id());
    unix_echo(&format!("unix@{d}/s1.sock"), "s1");
    unix_echo(&format!("{d}/s2.sock"), "s2");
    unix_echo(&format!("abns@{abns}"), "s3");
    let tether = start_tether(&unix_config(
        [free_port().unwrap(), free_port().unwrap()],
        &d,
        &abns,
    ))
    .await;
    let t = tether.daemon.local_addrs();
    let (hl, hp) = (free_port().unwrap(), free_port().unwrap());
    let haproxy = start_haproxy(
        &unix_config([hl, hp], &d, &abns),
        loopback(hl),
        loopback(hp),
    )
    .await;
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let sides = [
        ("tether", t["lb"], t["pp"]),
        ("haproxy", loopback(hl), loopback(hp)),
    ];
    for (who, lb, pp) in sides {
        // Both ways intact through a half-close, spread evenly over the two sockets.
        let mut names = Vec::new();
        for _ in 0..4 {
            let (name, back) = through_unix(lb, &payload).await;
            assert!(
                back == payload,
                "{who}: {} of {} bytes came back intact",
                back.len(),
                payload.len()
            );
            names.push(name);
        }
        names.sort();
        assert_eq!(names, ["s1", "s1", "s2", "s2"], "{who}:\n{}", haproxy.log());
        // The PROXY header to a unix server carries the client connection's addresses.
        let c = TcpStream::connect(pp).await.unwrap();
        let me = c.local_addr().unwrap();
        let (mut r, mut w) = c.into_split();
        w.write_all(b"x").await.unwrap();
        w.shutdown().await.unwrap();
        let mut got = String::new();
        tokio::time::timeout(Duration::from_secs(3), r.read_to_string(&mut got))
            .await
            .unwrap()
            .unwrap();
        let want = format!(
            "s3\nPROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\nx",
            me.port(),
            pp.port()
        );
        assert_eq!(got, want, "{who}");
    }
    // The first socket goes: both proxies' checks mark it DOWN (awaited, as a connection
    // sent to it before would wait out its connect retries), then everything goes to s2.
    std::fs::remove_file(dir.join("s1.sock")).unwrap();
    let lb = tether.daemon.runtime().backends["lb"].clone();
    let down = common::eventually(Duration::from_secs(3), || {
        lb.server_states()[0].oper == tether_core::server::OperState::Down
            && haproxy.log().contains("Server lb/s1 is DOWN")
    })
    .await;
    assert!(down, "s1 marked DOWN by both:\n{}", haproxy.log());
    for (who, lb, _) in sides {
        for i in 0..4 {
            let (name, back) = through_unix(lb, b"ping").await;
            assert_eq!(
                (name.as_str(), &back[..]),
                ("s2", &b"ping"[..]),
                "{who} {i}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// dnsmasq serving `hosts` (an addn-hosts file) on 127.0.0.1:`port`, authoritative for `.test`
/// (NXDOMAIN for names it does not list). SIGHUP re-reads the file.
struct Dnsmasq {
    child: std::process::Child,
    hosts: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Dnsmasq {
    fn start(port: u16, hosts: &str) -> Dnsmasq {
        let dir = std::env::temp_dir().join(format!("tether-dnsmasq-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hosts");
        std::fs::write(&file, hosts).unwrap();
        let child = std::process::Command::new("dnsmasq")
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--local=/test/",
                "--local-ttl=0",
                &format!("--addn-hosts={}", file.display()),
                &format!("--pid-file={}", dir.join("pid").display()),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("dnsmasq does not run ({e}): install the Debian package dnsmasq-base")
            });
        Dnsmasq {
            child,
            hosts: file,
            dir,
        }
    }

    /// Replaces the host file and has dnsmasq read it again.
    fn set_hosts(&self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).unwrap();
        let hup = std::process::Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(hup.success(), "kill -HUP dnsmasq");
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `name` servers on 127.0.0.2, .3 and .4, all on one port (returned).
async fn named_on_three_ips() -> u16 {
    for _ in 0..20 {
        let port = free_port().unwrap();
        let mut ok = true;
        let mut listeners = Vec::new();
        for ip in [2, 3, 4] {
            match tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, ip], port))).await {
                Ok(l) => listeners.push((l, ["A", "B", "C"][usize::from(ip - 2)])),
                Err(_) => ok = false,
            }
        }
        if !ok {
            continue;
        }
        for (l, name) in listeners {
            tokio::spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    let _ = s.write_all(name.as_bytes()).await;
                }
            });
        }
        return port;
    }
    panic!("no port free on 127.0.0.2-4");
}

/// What the server says to a client connecting to `fe` from `source` (empty: no server).
async fn who_from(fe: SocketAddr, source: [u8; 4]) -> String {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((source, 0))).unwrap();
    let Ok(mut s) = sock.connect(fe).await else {
        return String::new();
    };
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut out)).await;
    out
}

fn resolvers_config(port: u16, dns: u16, data: u16) -> String {
    format!(
        "resolvers dns\n  nameserver ns1 127.0.0.1:{dns}\n  resolve_retries 2\n  \
         timeout resolve 200ms\n  timeout retry 200ms\n  hold valid 1s\n  hold nx 1s\n  \
         hold other 1s\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 5s\n  \
         timeout server 5s\nlisten l\n  bind 127.0.0.1:{port}\n  balance roundrobin\n  \
         stick-table type ip size 1k expire 10m\n  stick on src\n  \
         server app app.test:{data} resolvers dns resolve-prefer ipv4 init-addr none\n  \
         server fresh fresh.test:{data} resolvers dns resolve-prefer ipv4 init-addr none\n"
    )
}

/// Whether, within 5 s, a client from `source` gets `want`.
async fn eventually_who(fe: SocketAddr, source: [u8; 4], want: &str) -> bool {
    for _ in 0..100 {
        if who_from(fe, source).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn dns_moves_servers_and_stick_entries_follow_them_by_name_like_haproxy() {
    let data = named_on_three_ips().await;
    let dns_port = free_port().unwrap();
    let dns = Dnsmasq::start(dns_port, "127.0.0.2 app.test\n");
    let tether = start_tether(&resolvers_config(free_port().unwrap(), dns_port, data)).await;
    let h = free_port().unwrap();
    let haproxy = start_haproxy(
        &resolvers_config(h, dns_port, data),
        loopback(h),
        loopback(h),
    )
    .await;
    let fes = [("tether", tether.addr), ("haproxy", loopback(h))];
    // `app` comes up at its DNS address; `fresh` (init-addr none, NXDOMAIN) takes nothing, so
    // the client at 127.0.0.1 learns `app`.
    for (who_, fe) in fes {
        assert!(
            eventually_who(fe, [127, 0, 0, 1], "A").await,
            "{who_}: app up at A\n{}",
            haproxy.log()
        );
    }
    // `fresh` appears in DNS and comes out of maintenance: new clients are balanced to it.
    dns.set_hosts("127.0.0.2 app.test\n127.0.0.4 fresh.test\n");
    for (who_, fe) in fes {
        let mut seen_fresh = false;
        for i in 10..110 {
            if who_from(fe, [127, 0, 1, i]).await == "C" {
                seen_fresh = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            seen_fresh,
            "{who_}: fresh up once DNS knows it\n{}",
            haproxy.log()
        );
    }
    // `app` moves: the client that sticks to it follows it to B, every time; a new client is
    // still balanced over both servers.
    dns.set_hosts("127.0.0.3 app.test\n127.0.0.4 fresh.test\n");
    for (who_, fe) in fes {
        assert!(
            eventually_who(fe, [127, 0, 0, 1], "B").await,
            "{who_}: app moved to B\n{}",
            haproxy.log()
        );
        for _ in 0..4 {
            assert_eq!(
                who_from(fe, [127, 0, 0, 1]).await,
                "B",
                "{who_}: the stick entry names app"
            );
        }
        let mut fresh: Vec<String> = Vec::new();
        for i in 200..204 {
            fresh.push(who_from(fe, [127, 0, 2, i]).await);
        }
        assert!(
            fresh.contains(&"B".to_string()) && fresh.contains(&"C".to_string()),
            "{who_}: {fresh:?}"
        );
    }
}

/// With `bind ... defer-accept` tether's frontend sees a connection only once the client's first
/// bytes are there (the kernel holds it until then); without it, at once.
#[tokio::test]
async fn defer_accept_hands_a_connection_over_only_with_its_first_bytes() {
    let echo = EchoBackend::start().await;
    for defer in [false, true] {
        let option = if defer { " defer-accept" } else { "" };
        let cfg = format!(
            "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  \
             timeout server 5s\nlisten app\n  bind 127.0.0.1:0{option}\n  \
             server s1 {}\n",
            echo.addr
        );
        let d = start_tether(&cfg).await;
        let accepted = || {
            d.daemon.runtime().frontends[0]
                .accepted
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let mut c = TcpStream::connect(d.addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            accepted(),
            u64::from(!defer),
            "defer-accept {defer}: taken before any byte"
        );
        let back = echo_roundtrip(&mut c, b"not TLS, but the client speaks first").await;
        assert_eq!(back.unwrap(), b"not TLS, but the client speaks first");
        assert_eq!(accepted(), 1);
        d.daemon.shutdown(Duration::from_secs(1)).await;
    }
}

/// Server `id`: a server keeps the number it is given and the others are numbered as HAProxy
/// 2.6 numbers them (a, b id 1, c: 2, 1, 4): tether's stats show the same `sid` for every server
/// as HAProxy's `show stat` on the same file.
#[tokio::test]
async fn server_ids_number_the_servers_like_haproxy() {
    let scratch = tether_testbed::ScratchDir::create("server-ids").unwrap();
    let sock = scratch.path().join("haproxy.sock");
    let cfg = |global: &str, port: u16| {
        format!(
            "global\n{global}defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  \
             timeout server 5s\nlisten app\n  bind 127.0.0.1:{port}\n  server a 127.0.0.1:1\n  \
             server b 127.0.0.1:2 id 1\n  server c 127.0.0.1:3\n  server d 127.0.0.1:4 id 7\n  \
             server e 127.0.0.1:5\n  server f 127.0.0.1:6 backup\n"
        )
    };
    let t = start_tether(&cfg("", 0)).await;
    let port = free_port().unwrap();
    let global = format!("  stats socket {} level admin\n", sock.display());
    let _h = start_haproxy(&cfg(&global, port), loopback(port), loopback(port)).await;
    let sids = |rows: Vec<std::collections::BTreeMap<String, String>>| -> Vec<(String, String)> {
        (rows.into_iter())
            .map(|r| (r["svname"].clone(), r["sid"].clone()))
            .collect()
    };
    let mut theirs = Vec::new();
    for _ in 0..50 {
        theirs = sids(common::haproxy_server_stats(&sock).await);
        if !theirs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let snapshot = tether::stats::snapshot::take(t.daemon.runtime(), 0);
    let ours = sids(common::server_rows(&tether::stats::csv::render(&snapshot)));
    assert_eq!(ours, theirs, "tether, then HAProxy 2.6");
    let given: Vec<_> = (theirs.iter())
        .filter(|(name, _)| name == "b" || name == "d")
        .map(|(_, sid)| sid.as_str())
        .collect();
    assert_eq!(given, ["1", "7"], "explicit ids kept: {theirs:?}");
}
