//! Memory goes back to the system when connections go: the `tether` binary (mimalloc, its real
//! allocator) serves a few thousand connections that each move bytes both ways, they close, and
//! within seconds its RSS falls back most of the way to where it was before them.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout, Instant};

/// Connections open at once: enough to grow the RSS by megabytes.
const CONNS: usize = 3_000;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A backend that answers every chunk with 16 KiB (so the relay's server→client buffer fills
/// pages) and holds the connection until the client closes.
async fn answering_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let answer = vec![b'a'; 16 * 1024];
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn wait_listening(front: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(front).await.is_err() {
        assert!(Instant::now() < until, "tether never listened on {front}");
        sleep(Duration::from_millis(50)).await;
    }
}

async fn exchange(front: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(front).await.unwrap();
    c.write_all(b"GET / not-tls\r\n").await.unwrap();
    let mut got = vec![0u8; 16 * 1024];
    timeout(Duration::from_secs(10), c.read_exact(&mut got))
        .await
        .expect("answer in time")
        .unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_falls_back_once_connections_close() {
    let backend = answering_backend().await;
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["run", "--threads", "1", "--listen"])
        .arg(front.to_string())
        .arg("--server")
        .arg(backend.to_string())
        .env("TETHER_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _daemon = Daemon(child);
    wait_listening(front).await;
    sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);

    let mut open = Vec::with_capacity(CONNS);
    for _ in 0..CONNS / 100 {
        let batch = (0..100).map(|_| exchange(front));
        open.extend(futures_join(batch).await);
    }
    let peak = rss_kib(pid);
    assert!(
        peak > before + 8 * 1024,
        "{CONNS} connections should grow the RSS by megabytes: {before} → {peak} KiB"
    );
    drop(open);

    // Given back within a few ticks of the release check.
    let until = Instant::now() + Duration::from_secs(8);
    let mut now = rss_kib(pid);
    while now > before + (peak - before) / 3 && Instant::now() < until {
        sleep(Duration::from_millis(200)).await;
        now = rss_kib(pid);
    }
    assert!(
        now <= before + (peak - before) / 3,
        "RSS {before} KiB before, {peak} KiB with {CONNS} connections, still {now} KiB after they closed"
    );
    // Still serving afterwards.
    drop(exchange(front).await);
}

/// Runs the futures concurrently and collects their outputs.
async fn futures_join<F: std::future::Future<Output = TcpStream> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<TcpStream> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
