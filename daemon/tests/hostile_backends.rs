//! Backends that misbehave under load (issue 17 §3): one accepts and never answers, one resets
//! every connection mid-transfer, one flaps (its process dies and comes back every second), two
//! are healthy. Steady clients run through a real daemon on loopback; every client failure must
//! be a connection that was on a failing server, and the count must match exactly what the
//! failing servers did (every connection to the silent and the resetting server, and every
//! connection the flapping one dropped before it had echoed everything).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{native_toml, start_toml};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout, Instant};

/// What each client sends, twice per connection; the echo of both is a success.
const MSG: &[u8] = b"ping\n";
/// How long the load runs.
const LOAD: Duration = Duration::from_secs(5);
/// Concurrent clients.
const CLIENTS: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Behaviour {
    /// Echoes everything.
    Echo,
    /// Accepts, reads, never writes.
    Silent,
    /// Echoes the first message, then resets the connection (SO_LINGER 0).
    ResetMidway,
}

/// A backend with a behaviour and counters of what it did.
struct Backend {
    addr: SocketAddr,
    /// Connections accepted.
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut s: TcpStream, behaviour: Behaviour, echoed: Arc<AtomicU64>) {
    let mut buf = [0u8; 64];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match behaviour {
            Behaviour::Silent => continue,
            Behaviour::Echo | Behaviour::ResetMidway => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                echoed.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        if behaviour == Behaviour::ResetMidway {
            // Linger 0 does not block on drop: the close sends RST at once.
            #[allow(deprecated)]
            let _ = s.set_linger(Some(Duration::ZERO));
            return;
        }
    }
}

impl Backend {
    async fn start(behaviour: Behaviour) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    r = listener.accept() => {
                        let Ok((s, _)) = r else { continue };
                        count.fetch_add(1, Ordering::Relaxed);
                        conns.spawn(serve(s, behaviour, Arc::new(AtomicU64::new(0))));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Backend {
            addr,
            accepted,
            task,
        }
    }
}

/// A server process that dies every `period` (its connections closed, its port refusing) and
/// comes back `period` later on the same port. Counts the connections it dropped before they had
/// echoed both messages: exactly those clients fail.
struct Flapping {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    dropped_midway: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Flapping {
    async fn start(period: Duration) -> Flapping {
        let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = first.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let dropped_midway = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (acc, dropped, halt) = (accepted.clone(), dropped_midway.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut listener = Some(first);
            while !halt.load(Ordering::Relaxed) {
                let l = match listener.take() {
                    Some(l) => l,
                    None => TcpListener::bind(addr).await.expect("port taken back"),
                };
                let lives = Flapping::live(l, period, &acc).await;
                // The process dies: every open connection closes, whatever it was doing.
                for (handle, echoed) in lives {
                    handle.abort();
                    let _ = handle.await;
                    if echoed.load(Ordering::Relaxed) < 2 * MSG.len() as u64 {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                sleep(period).await;
            }
        });
        Flapping {
            addr,
            accepted,
            dropped_midway,
            stop,
            task,
        }
    }

    /// Serves for `period`; returns the connections still open (each with its echoed count).
    async fn live(
        listener: TcpListener,
        period: Duration,
        accepted: &AtomicU64,
    ) -> Vec<(tokio::task::JoinHandle<()>, Arc<AtomicU64>)> {
        let mut lives = Vec::new();
        let until = Instant::now() + period;
        // Then the backlog too: connections the kernel completed but nobody accepted would be
        // reset by the close, uncounted.
        loop {
            let next = if Instant::now() < until {
                tokio::time::timeout_at(until, listener.accept()).await
            } else {
                timeout(Duration::from_millis(2), listener.accept()).await
            };
            let Ok(Ok((s, _))) = next else {
                if Instant::now() < until {
                    continue;
                }
                break;
            };
            accepted.fetch_add(1, Ordering::Relaxed);
            let echoed = Arc::new(AtomicU64::new(0));
            let handle = tokio::spawn(serve(s, Behaviour::Echo, echoed.clone()));
            lives.push((handle, echoed));
        }
        lives.retain(|(h, _)| !h.is_finished());
        lives
    }
}

/// One connection: two echoed messages. `Err` carries the client's port for the records.
async fn one_connection(front: SocketAddr) -> Result<(), (u16, String)> {
    let mut s = TcpStream::connect(front)
        .await
        .map_err(|e| (0, format!("connect: {e}")))?;
    let port = s.local_addr().unwrap().port();
    for round in 0..2 {
        if round == 1 {
            // A pause mid-connection, so a server that dies has connections in flight.
            sleep(Duration::from_millis(100)).await;
        }
        let r = async {
            s.write_all(MSG).await?;
            let mut back = [0u8; MSG.len()];
            s.read_exact(&mut back).await?;
            Ok::<_, std::io::Error>(back)
        };
        match timeout(Duration::from_secs(5), r).await {
            Ok(Ok(back)) if back == MSG => {}
            other => return Err((port, format!("round {round}: {other:?}"))),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_backends_fail_only_their_own_connections() {
    let good1 = Backend::start(Behaviour::Echo).await;
    let good2 = Backend::start(Behaviour::Echo).await;
    let silent = Backend::start(Behaviour::Silent).await;
    let reset = Backend::start(Behaviour::ResetMidway).await;
    let flap = Flapping::start(Duration::from_secs(1)).await;
    let servers = [good1.addr, good2.addr, silent.addr, reset.addr, flap.addr];
    let toml = native_toml(
        "maxconn = 1000",
        "inspect-delay = \"200ms\"",
        "timeout-server = \"1s\"\ntimeout-connect = \"1s\"",
        "check = false",
        &servers,
    );
    let rig = start_toml(&toml).await;
    let front = rig.addr;

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + LOAD;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (ok, failed) = (ok.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    match one_connection(front).await {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(f) => {
                            failed.lock().unwrap().push(f);
                            0
                        }
                    };
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    flap.stop.store(true, Ordering::Relaxed);
    sleep(Duration::from_millis(300)).await;
    flap.task.abort();

    let failed = failed.lock().unwrap().clone();
    let total = ok.load(Ordering::Relaxed) as usize + failed.len();
    let records = rig.sink.wait_for(total).await;
    // Client ports are reused over thousands of short connections: a port may name several
    // records. A failure is matched to one of its port's records on a failing server (each used
    // once); the per-server totals below still have to come out exact.
    let mut by_port: BTreeMap<u16, Vec<_>> = BTreeMap::new();
    for r in &records {
        by_port.entry(r.client.port()).or_default().push(r);
    }
    let mut failures_per_server: BTreeMap<String, u64> = BTreeMap::new();
    for (port, why) in &failed {
        let same_port = by_port
            .get_mut(port)
            .unwrap_or_else(|| panic!("a failure without a record ({why})"));
        let on_failing = same_port
            .iter()
            .position(|r| matches!(r.server.as_deref(), Some("s3" | "s4" | "s5")));
        let Some(i) = on_failing else {
            let logs: Vec<String> = same_port.iter().map(|r| r.tcplog("-")).collect();
            panic!("a client failed on a healthy server ({why}): {logs:?}");
        };
        let rec = same_port.remove(i);
        let server = rec.server.as_deref().unwrap_or_default().to_owned();
        *failures_per_server.entry(server).or_default() += 1;
    }
    let expected = [
        ("s3", silent.accepted.load(Ordering::Relaxed)),
        ("s4", reset.accepted.load(Ordering::Relaxed)),
        ("s5", flap.dropped_midway.load(Ordering::Relaxed)),
    ];
    eprintln!(
        "{total} connections, {} ok, failures per server {failures_per_server:?}, \
         expected {expected:?}, flap accepted {}",
        ok.load(Ordering::Relaxed),
        flap.accepted.load(Ordering::Relaxed)
    );
    for (server, want) in expected {
        assert!(
            want > 0,
            "{server} never failed anything: the test proves nothing"
        );
        assert_eq!(
            failures_per_server.get(server).copied().unwrap_or(0),
            want,
            "client failures on {server} vs connections the server failed\n{}",
            rig.sink.lines()
        );
    }
    assert!(
        ok.load(Ordering::Relaxed) >= 50,
        "too little load served on the healthy servers"
    );
}
