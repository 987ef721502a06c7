//! Server `maxconn` with a queue: a full server makes connections wait (`timeout queue`), a full
//! queue (`maxqueue`) refuses at once, and the log says which (`sQ` / `SQ`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_core::engine::{ConnectionRecord, LogSink};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Records(Mutex<Vec<ConnectionRecord>>);

impl LogSink for Records {
    fn record(&self, rec: &ConnectionRecord) {
        self.0.lock().unwrap().push(rec.clone());
    }
}

/// A plain TCP echo server.
async fn echo_server() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn echo_once(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
        .await
        .expect("echo in time")
        .unwrap();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_server_queues_then_refuses() {
    let backend = echo_server().await;
    let toml = format!(
        r#"
[[frontend]]
name = "main"
bind = ["127.0.0.1:0"]
backend = "app"
inspect-delay = "200ms"

[[backend]]
name = "app"
timeout-queue = "400ms"
[[backend.server]]
name = "only"
address = "{backend}"
check = false
maxconn = 1
maxqueue = 1
"#
    );
    let config = tether_core::config::load_toml("queue.toml", &toml).unwrap();
    let rt = tether_core::engine::runtime::build(&config, None).unwrap();
    let records = Arc::new(Records::default());
    let daemon = tether::run::start(rt, records.clone()).await.unwrap();
    let addr = daemon.local_addrs()["main"];

    // A holds the only slot.
    let mut a = TcpStream::connect(addr).await.unwrap();
    assert_eq!(echo_once(&mut a, b"first").await, b"first");
    // B waits in the queue...
    let mut b = TcpStream::connect(addr).await.unwrap();
    b.write_all(b"second").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so C finds the queue full and is closed at once.
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"third").await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf))
        .await
        .expect("refused promptly")
        .unwrap_or(0);
    assert_eq!(n, 0, "a full queue closes the connection");
    // A leaves: B gets the slot and its bytes through.
    drop(a);
    let mut got = [0u8; 6];
    tokio::time::timeout(Duration::from_secs(2), b.read_exact(&mut got))
        .await
        .expect("B served after A left")
        .unwrap();
    assert_eq!(&got, b"second");
    // D waits longer than `timeout queue` while B holds the slot.
    let mut d = TcpStream::connect(addr).await.unwrap();
    d.write_all(b"fourth").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), d.read(&mut buf))
        .await
        .expect("queue timeout closes")
        .unwrap_or(0);
    assert_eq!(n, 0);
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let recs = records.0.lock().unwrap().clone();
    let flags: Vec<String> = recs.iter().map(|r| r.termination.to_string()).collect();
    assert!(
        flags.contains(&"SQ".to_string()),
        "queue full logged as SQ: {flags:?}"
    );
    assert!(
        flags.contains(&"sQ".to_string()),
        "queue timeout logged as sQ: {flags:?}"
    );
    let queued = recs
        .iter()
        .find(|r| r.bytes_up == 6 && r.termination.to_string() == "--")
        .expect("B's record");
    assert!(queued.tw_ms >= 50, "B's wait is in Tw: {}", queued.tw_ms);
    daemon.shutdown(Duration::from_secs(1)).await;
}
