use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config;
use crate::dns::wire::tests::{respond, Rr};
use crate::engine::log::{ConnectionRecord, LogSink};
use crate::engine::runtime::build;
use crate::engine::testnet::MemNet;
use crate::engine::Process;

struct Quiet;
impl LogSink for Quiet {
    fn record(&self, _: &ConnectionRecord) {}
}

type Zone = Arc<Mutex<Option<Ipv4Addr>>>;

/// A name server on 127.0.0.53:53 that knows `app.test` at the zone's address (NXDOMAIN
/// while it has none) and has no AAAA record.
async fn name_server(net: &MemNet, zone: Zone) -> tokio::task::JoinHandle<()> {
    let socket = net.bind_datagram("127.0.0.53:53").await.unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = MemNet::recv_from(&socket, &mut buf).await {
            let q = &buf[..n];
            let aaaa = q[n - 3] == 28;
            let answer = match *zone.lock().unwrap() {
                None => respond(q, 3, &[]),
                Some(_) if aaaa => respond(q, 0, &[]),
                Some(ip) => respond(q, 0, &[("app.test", Rr::A(ip))]),
            };
            let _ = MemNet::send_to(&socket, &answer, from).await;
        }
    })
}

fn runtime() -> Runtime {
    let text = r#"
        [[frontend]]
        name = "fe"
        bind = ["127.0.0.1:8000"]
        backend = "app"
        [[resolvers]]
        name = "dns"
        hold = { nx = "1s" }
        [[resolvers.nameserver]]
        name = "ns1"
        address = "127.0.0.53:53"
        [[backend]]
        name = "app"
        stick-table = { type = "ip" }
        [backend.haproxy]
        stick = [{ action = "on", sample = "src" }]
        [[backend.server]]
        name = "s1"
        address = "app.test:80"
        check = false
        resolvers = "dns"
        resolve-prefer = "ipv4"
        init-addr = ["none"]
        [[backend.server]]
        name = "s2"
        address = "10.0.0.9:80"
        check = false
    "#;
    let config = config::load_toml("test.toml", text).expect("test config loads");
    build(&config, None).expect("test config builds")
}

async fn route(net: &MemNet) -> Option<String> {
    let mut s = net.connect("127.0.0.1:8000").await.ok()?;
    s.write_all(b"x").await.ok()?;
    let mut buf = [0u8; 16];
    match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn servers_follow_dns_and_stick_entries_follow_the_server() {
    let net = MemNet::default();
    let _a = net.server("127.0.0.2:80", "A").await;
    let _b = net.server("127.0.0.3:80", "B").await;
    let _c = net.server("10.0.0.9:80", "C").await;
    let zone: Zone = Arc::default();
    let _dns = name_server(&net, zone.clone()).await;
    let p = Process::start(net.clone(), runtime(), Arc::new(Quiet))
        .await
        .unwrap();
    let app = p.runtime().backends["app"].clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        app.server_states()[0].resolution_maint,
        "init-addr none, NXDOMAIN: no address"
    );
    assert!(!app.server_states()[0].usable_for_balance());

    *zone.lock().unwrap() = Some(Ipv4Addr::new(127, 0, 0, 2));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!app.server_states()[0].resolution_maint, "DNS answered");
    assert_eq!(
        app.servers[0].resolved(),
        Some("127.0.0.2:80".parse().unwrap())
    );

    // The client's source learns s1 (s2 out for a moment); roundrobin alone would alternate.
    app.set_admin(ServerId(1), Some(crate::server::AdminState::Maint), None);
    assert_eq!(route(&net).await.as_deref(), Some("A"));
    app.set_admin(ServerId(1), Some(crate::server::AdminState::Ready), None);
    assert_eq!(route(&net).await.as_deref(), Some("A"));

    *zone.lock().unwrap() = Some(Ipv4Addr::new(127, 0, 0, 3));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        app.servers[0].resolved(),
        Some("127.0.0.3:80".parse().unwrap())
    );
    for _ in 0..3 {
        assert_eq!(
            route(&net).await.as_deref(),
            Some("B"),
            "sticks to s1 at its new address"
        );
    }

    // NXDOMAIN beyond `hold nx`: s1 goes into maintenance, its clients move on.
    *zone.lock().unwrap() = None;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(app.server_states()[0].resolution_maint);
    assert_eq!(route(&net).await.as_deref(), Some("C"));
}

#[tokio::test(start_paused = true)]
async fn init_addr_tries_its_methods_in_order() {
    let net = MemNet::default();
    net.set_host("app.test", vec![IpAddr::from([127, 0, 0, 2])]);
    let rt = runtime();
    let app = rt.backends["app"].clone();
    let dns = app.servers[0].dns.clone().unwrap();
    let libc = ServerDns {
        init: vec![InitAddr::Last, InitAddr::Libc, InitAddr::None],
        ..dns.clone()
    };
    init_one(&net, &app, ServerId(0), &libc).await;
    assert_eq!(
        app.servers[0].resolved(),
        Some("127.0.0.2:80".parse().unwrap())
    );
    app.set_resolved(ServerId(0), None);
    let unknown = ServerDns {
        host: "nowhere.test".into(),
        init: vec![InitAddr::Libc, InitAddr::Ip(IpAddr::from([10, 0, 0, 7]))],
        ..dns
    };
    init_one(&net, &app, ServerId(0), &unknown).await;
    assert_eq!(
        app.servers[0].resolved(),
        Some("10.0.0.7:80".parse().unwrap())
    );
}
