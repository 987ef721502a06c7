//! No usable server: the client is closed at once and the log says `<NOSRV>` with `SC`, as
//! HAProxy does.

mod common;

use std::time::Duration;

use common::{closed_port, closed_within, eventually, native_toml, start_toml};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn all_servers_down_closes_the_client_at_once_with_nosrv_sc() {
    let addrs = vec![closed_port().await, closed_port().await];
    let toml = native_toml(
        "",
        "inspect-delay = \"2s\"",
        "[backend.check]\ninter = \"100ms\"\nfall = 1\nrise = 2",
        "",
        &addrs,
    );
    let running = start_toml(&toml).await;
    let backend = running.daemon.runtime().backends["app"].clone();
    assert!(
        eventually(Duration::from_secs(3), || backend
            .server_states()
            .iter()
            .all(|s| !s.usable_for_balance()))
        .await,
        "checks mark both servers DOWN"
    );

    let t0 = tokio::time::Instant::now();
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    // A non-TLS first byte ends inspection at once, so only server choice remains.
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    assert!(
        closed_within(&mut s, Duration::from_millis(500)).await,
        "closed at once"
    );
    assert!(t0.elapsed() < Duration::from_millis(500));
    let recs = running.sink.wait_for(1).await;
    let r = &recs[0];
    assert_eq!(r.server, None, "{}", running.sink.lines());
    assert_eq!(r.termination.to_string(), "SC");
    assert_eq!(r.bytes_down, 0);
    let line = r.tcplog("-");
    assert!(line.contains(" main app/<NOSRV> "), "{line}");
    assert!(line.contains(" SC "), "{line}");
}
