//! The relay's buffers on real sockets: an idle connection holds none, and bytes arrive whole and
//! in order through the daemon whatever the buffers do (bulk both ways with half-close, spliced
//! past the first buffer; a client that resets mid-stream).
//!
//! Heap use is counted by a global allocator in this test binary: the live bytes of the whole
//! process (daemon, backend and clients) before and after connections go idle.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::{native_toml, start_toml, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// The system allocator, keeping a count of the bytes currently allocated.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is forwarded to `System` with the caller's arguments unchanged; the
// counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The tests of this file run one at a time: the heap count is the whole process's.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An echo backend that holds no buffer while a connection is idle (readiness, then a read
/// into the stack), so the heap it uses per connection is its task alone.
async fn lean_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut chunk = [0u8; 512];
                loop {
                    if s.readable().await.is_err() {
                        return;
                    }
                    match s.try_read(&mut chunk) {
                        Ok(0) => return,
                        Ok(n) => {
                            let mut rest = &chunk[..n];
                            while !rest.is_empty() {
                                if s.writable().await.is_err() {
                                    return;
                                }
                                match s.try_write(rest) {
                                    Ok(k) => rest = &rest[k..],
                                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                                    Err(_) => return,
                                }
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
            });
        }
    });
    addr
}

async fn daemon_to(backend: SocketAddr) -> Running {
    start_toml(&native_toml(
        "",
        "inspect-delay = \"100ms\"",
        "",
        "check = false",
        &[backend],
    ))
    .await
}

/// Live heap bytes once allocations have stopped moving (the daemon's tasks have settled).
async fn settled_live() -> i64 {
    let mut last = LIVE.load(Ordering::Relaxed);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let now = LIVE.load(Ordering::Relaxed);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_hold_no_relay_buffer() {
    let _serial = SERIAL.lock().await;
    const N: usize = 200;
    let backend = lean_echo().await;
    let d = daemon_to(backend).await;
    // Warm-up: whatever is allocated once (pools, registrations) is allocated now.
    let mut warm = TcpStream::connect(d.addr).await.unwrap();
    roundtrip(&mut warm, b"warm-up: not TLS").await;
    let mut conns = Vec::with_capacity(N);
    let before = settled_live().await;
    for i in 0..N {
        let mut c = TcpStream::connect(d.addr).await.unwrap();
        // Bytes both ways: each direction has read, written and gone back to waiting.
        roundtrip(&mut c, format!("hello {i}, not TLS").as_bytes()).await;
        conns.push(c);
    }
    let idle = settled_live().await;
    let per_conn = (idle - before) / N as i64;
    eprintln!("live heap per idle forwarded connection: {per_conn} bytes");
    // Everything a forwarded connection keeps (task, machine, inspect buffer, socket
    // registrations, the test's own streams and backend task), without the two 32 KiB
    // relay buffers (64 KiB) it used to hold while idle.
    assert!(
        per_conn < 16 * 1024,
        "{per_conn} heap bytes per idle connection (a relay buffer is 32 KiB)"
    );
    // The connections still work after idling.
    for (i, c) in conns.iter_mut().enumerate().step_by(37) {
        roundtrip(c, format!("again {i}").as_bytes()).await;
    }
    drop(conns);
    d.daemon.shutdown(Duration::from_secs(1)).await;
}

async fn roundtrip(c: &mut TcpStream, msg: &[u8]) {
    c.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    timeout(Duration::from_secs(5), c.read_exact(&mut got))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(got, msg);
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

/// A backend that reads the client's stream to its end, then answers `answer` and closes.
async fn read_all_then_answer(
    answer: Vec<u8>,
) -> (SocketAddr, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got).await;
        let _ = tx.send(got);
        let _ = s.write_all(&answer).await;
        let _ = s.shutdown().await;
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_both_ways_with_half_close_arrives_whole_and_in_order() {
    let _serial = SERIAL.lock().await;
    // Not a multiple of a buffer; the first bytes are not TLS, so inspection ends at once.
    let up = pattern(3_000_017, 3);
    let down = pattern(2_000_029, 11);
    let (backend, got_up) = read_all_then_answer(down.clone()).await;
    let d = daemon_to(backend).await;
    let spliced_before = tether::net::splice::spliced_bytes();
    let mut c = TcpStream::connect(d.addr).await.unwrap();
    let (mut r, mut w) = c.split();
    let send = async {
        // Written in uneven pieces, with pauses, so the relay sees both full and short reads.
        for (i, piece) in up.chunks(65_521).enumerate() {
            w.write_all(piece).await.unwrap();
            if i % 7 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        // Half-close: the answer comes only after the server has seen the end.
        w.shutdown().await.unwrap();
    };
    let mut answer = Vec::new();
    let recv = r.read_to_end(&mut answer);
    let ((), n) = timeout(Duration::from_secs(30), async { tokio::join!(send, recv) })
        .await
        .expect("transfer completes");
    n.unwrap();
    let at_server = got_up.await.unwrap();
    assert_eq!(at_server.len(), up.len());
    assert!(at_server == up, "client → server bytes differ");
    assert_eq!(answer.len(), down.len());
    assert!(answer == down, "server → client bytes differ");
    let recs = d.sink.wait_for(1).await;
    assert_eq!(recs[0].bytes_up, up.len() as u64);
    assert_eq!(recs[0].bytes_down, down.len() as u64);
    // Past the first full buffer of each direction the kernel moved the bytes (splice).
    let spliced = tether::net::splice::spliced_bytes() - spliced_before;
    assert!(
        spliced >= (up.len() + down.len()) as u64 / 2,
        "only {spliced} bytes spliced"
    );
    d.daemon.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reset_mid_stream_delivers_an_exact_prefix_and_closes_the_server() {
    let _serial = SERIAL.lock().await;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    let d = daemon_to(backend).await;
    let up = pattern(1_000_003, 5);
    let c = TcpStream::connect(d.addr).await.unwrap();
    let (mut s, _) = l.accept().await.unwrap();
    let mut c = c;
    c.write_all(&up[..400_000]).await.unwrap();
    // Let some of it through, then reset: SO_LINGER 0 makes the close an RST.
    let mut head = vec![0u8; 100_000];
    s.read_exact(&mut head).await.unwrap();
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
    let mut rest = Vec::new();
    let r = timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("the server's side closes after the client's reset");
    let _ = r; // a reset may reach the server as an error after the prefix
    head.extend_from_slice(&rest);
    assert!(
        head.len() <= 400_000,
        "{} bytes: more than was sent",
        head.len()
    );
    assert!(
        head[..] == up[..head.len()],
        "the server got something other than a prefix"
    );
    let recs = d.sink.wait_for(1).await;
    assert_eq!(
        recs[0].termination.to_string().as_bytes()[0],
        b'C',
        "{}",
        d.sink.lines()
    );
    d.daemon.shutdown(Duration::from_secs(1)).await;
}
