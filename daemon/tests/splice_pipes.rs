//! Splicing stays within its pipes (`max-pipes`): a direction that finds none left copies, the
//! bytes arrive whole either way, and every pipe is closed with its connection. A test binary
//! of its own: the pipe bound and counters are the process's.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{native_toml, start_toml};
use tether::net::splice::{pipes_in_use, spliced_bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// One test at a time: they read the process's counters.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const UP: usize = 2_000_003;
const DOWN: usize = 1_500_007;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed) ^ (i >> 13) as u8)
        .collect()
}

/// A backend that reads each connection to its end, checks it, then answers `DOWN` bytes.
async fn backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.unwrap();
                assert!(got == pattern(UP, 1), "client → server bytes differ");
                s.write_all(&pattern(DOWN, 2)).await.unwrap();
                s.shutdown().await.unwrap();
            });
        }
    });
    addr
}

/// One client: `UP` bytes, half-close, then the answer, checked.
async fn exchange(to: SocketAddr) {
    let mut c = TcpStream::connect(to).await.unwrap();
    let (mut r, mut w) = c.split();
    let up = pattern(UP, 1);
    let send = async {
        // Not TLS (the pattern starts with byte 1): inspection is over at the first bytes; a
        // pause, so the rest comes as bulk.
        w.write_all(&up[..9]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        w.write_all(&up[9..]).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut answer = Vec::new();
    let (_, read) = tokio::join!(send, r.read_to_end(&mut answer));
    read.unwrap();
    assert!(answer == pattern(DOWN, 2), "server → client bytes differ");
}

/// What a run through a daemon with `max-pipes = pipes` did: bytes spliced, and the most pipes
/// seen open at once (sampled every 200 µs).
struct Run {
    spliced: u64,
    peak_pipes: usize,
}

/// Runs `clients` exchanges at once through a daemon with `max-pipes = pipes`.
async fn run_with(pipes: u32, clients: usize) -> Run {
    let server = backend().await;
    let d = start_toml(&native_toml(
        &format!("max-pipes = {pipes}"),
        "inspect-delay = \"100ms\"",
        "",
        "check = false",
        &[server],
    ))
    .await;
    let before = spliced_bytes();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = tokio::spawn({
        let done = done.clone();
        async move {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(pipes_in_use());
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            peak
        }
    });
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(exchange(d.addr)))
        .collect();
    let all = async {
        for t in tasks {
            t.await.unwrap();
        }
    };
    timeout(Duration::from_secs(30), all)
        .await
        .expect("transfers complete");
    d.sink.wait_for(clients).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak_pipes = sampler.await.unwrap();
    let spliced = spliced_bytes() - before;
    // Every pipe went with its connection.
    assert_eq!(
        pipes_in_use(),
        0,
        "pipes left open after the connections closed"
    );
    d.daemon.shutdown(Duration::from_secs(1)).await;
    Run {
        spliced,
        peak_pipes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pipes_nothing_is_spliced() {
    let _one = SERIAL.lock().await;
    let run = run_with(0, 2).await;
    assert_eq!((run.spliced, run.peak_pipes), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pipe_is_all_the_connections_share_and_the_rest_is_copied() {
    let _one = SERIAL.lock().await;
    let run = run_with(1, 4).await;
    // Four connections, eight bulk directions: never more than one pipe open, and it was used
    // (at least half of one direction went through it); the others copied, bytes checked.
    assert_eq!(run.peak_pipes, 1, "pipes open at once");
    assert!(
        run.spliced > (DOWN as u64) / 2,
        "{} bytes spliced",
        run.spliced
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pipes_enough_bulk_is_spliced_both_ways() {
    let _one = SERIAL.lock().await;
    let run = run_with(64, 4).await;
    let total = 4 * (UP + DOWN) as u64;
    assert!(
        run.spliced > total * 8 / 10,
        "{} of {total} bytes spliced",
        run.spliced
    );
    assert!(
        run.peak_pipes <= 8,
        "{} pipes for 8 directions",
        run.peak_pipes
    );
}
