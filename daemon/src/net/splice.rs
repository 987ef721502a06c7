//! Bulk bytes moved by the kernel: `splice(2)` from the source socket into a pipe and from the
//! pipe into the destination socket, so they are never copied to user space (HAProxy's
//! `option splice-auto`). The engine asks for it once it no longer looks at a direction's bytes
//! and a read has filled a whole buffer ([`tether_core::engine::forward::Splice`]).
//!
//! The pipe belongs to the source's read half and lives as long as it: the bytes in it are the
//! direction's only state, so a splice call can be dropped and made again at any point. Pipes
//! are bounded ([`set_max_pipes`], HAProxy's `maxpipes`, default a quarter of `maxconn`); a
//! connection that finds none left copies as before. Their capacity is the system's unless
//! [`set_pipe_size`] asks for more (HAProxy's `tune.pipesize`): a 256 KiB pipe moves a bulk
//! stream in a third of the `splice` calls of the default 64 KiB one.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tether_core::engine::forward::Spliced;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::{ReadHalf, WriteHalf};

/// Pipes that may exist at once; 0 turns splicing off (HAProxy's `nosplice`).
static MAX_PIPES: AtomicUsize = AtomicUsize::new(0);
/// Pipes that exist now.
static PIPES: AtomicUsize = AtomicUsize::new(0);
/// Bytes moved by splicing since the process started (the stats' `tether_spliced_bytes_total`).
static SPLICED_BYTES: AtomicU64 = AtomicU64::new(0);
/// Capacity asked for each new pipe; 0 keeps the system's.
static PIPE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// Most bytes one call moves before it lets the connection's other work run: four pipefuls of
/// the system's size (one step may pass it by a pipeful when `pipe-size` is larger).
const MOVE_PER_CALL: usize = 256 * 1024;

/// Sets how many pipes may exist at once (each holds two descriptors and up to 64 KiB of
/// kernel memory); 0 turns splicing off.
pub fn set_max_pipes(n: usize) {
    MAX_PIPES.store(n, Ordering::Relaxed);
}

/// Sets the capacity asked for each new pipe (`None`: the system's). When the kernel refuses it
/// (the user's `fs.pipe-user-pages-soft` is spent), the pipe keeps the capacity it was made with.
pub fn set_pipe_size(bytes: Option<usize>) {
    PIPE_SIZE.store(bytes.unwrap_or(0), Ordering::Relaxed);
}

/// Bytes moved by splicing since the process started.
pub fn spliced_bytes() -> u64 {
    SPLICED_BYTES.load(Ordering::Relaxed)
}

/// Pipes in use now.
pub fn pipes_in_use() -> usize {
    PIPES.load(Ordering::Relaxed)
}

/// A pipe and how many bytes it holds (read from the source, not yet in the destination).
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    held: usize,
    /// How the direction ended, met after bytes that were reported first.
    ended: Option<Spliced>,
}

impl Pipe {
    /// A new non-blocking pipe, if the bound allows one and the system gives it.
    fn new() -> Option<Pipe> {
        let max = MAX_PIPES.load(Ordering::Relaxed);
        PIPES
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            PIPES.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(error = %io::Error::last_os_error(), "no pipe for splicing");
            return None;
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        resize(&write, PIPE_SIZE.load(Ordering::Relaxed));
        Some(Pipe {
            read,
            write,
            held: 0,
            ended: None,
        })
    }
}

/// Asks for `bytes` of capacity in the pipe behind `fd` (0: leave it); a refusal leaves it as it
/// was, which still splices.
fn resize(fd: &OwnedFd, bytes: usize) {
    let Ok(size) = libc::c_int::try_from(bytes) else {
        return;
    };
    if size == 0 {
        return;
    }
    // SAFETY: `fd` is an open pipe descriptor owned by the caller; F_SETPIPE_SZ reads no memory.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) } < 0 {
        tracing::debug!(error = %io::Error::last_os_error(), size, "pipe keeps its capacity");
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        PIPES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `splice(2)` between two descriptors without offsets, non-blocking on the pipe side.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: both descriptors are open for the call (owned by the caller's sockets and
    // pipe), and null offsets are allowed (both ends are a socket or a pipe).
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The engine's [`tether_core::engine::forward::Splice`] for the daemon's sockets: TCP to TCP.
pub fn poll_splice(
    r: Pin<&mut ReadHalf>,
    w: Pin<&mut WriteHalf>,
    cx: &mut Context<'_>,
) -> Poll<Spliced> {
    let (ReadHalf::Tcp(source, pipe), WriteHalf::Tcp(dest)) = (r.get_mut(), w.get_mut()) else {
        return Poll::Ready(Spliced::Unavailable);
    };
    let pipe = match pipe {
        Some(p) => p,
        None => match Pipe::new() {
            Some(p) => pipe.insert(Box::new(p)),
            None => return Poll::Ready(Spliced::Unavailable),
        },
    };
    if let Some(end) = pipe.ended.take() {
        return Poll::Ready(end);
    }
    let (source, dest): (&TcpStream, &TcpStream) = (source.as_ref(), dest.as_ref());
    let mut moved = 0;
    let outcome = loop {
        if moved >= MOVE_PER_CALL {
            break Poll::Ready(Spliced::Moved(moved));
        }
        let step = if pipe.held > 0 {
            drain(dest, pipe, cx).map(|r| r.map_err(|_| Spliced::WriteError))
        } else {
            fill(source, pipe, cx).map(|r| match r {
                Ok(0) => Err(Spliced::End),
                Ok(_) => Ok(0),
                Err(_) => Err(Spliced::ReadError),
            })
        };
        match step {
            Poll::Ready(Ok(n)) => moved += n,
            Poll::Ready(Err(end)) => break Poll::Ready(end),
            Poll::Pending => break Poll::Pending,
        }
    };
    if moved == 0 {
        return outcome;
    }
    SPLICED_BYTES.fetch_add(moved as u64, Ordering::Relaxed);
    // The bytes moved are reported first; an end met after them, next time (a socket reports
    // an error once, so it must not be met again).
    if let Poll::Ready(end @ (Spliced::End | Spliced::ReadError | Spliced::WriteError)) = outcome {
        pipe.ended = Some(end);
    }
    Poll::Ready(Spliced::Moved(moved))
}

/// Moves what the source holds into the (empty) pipe: the bytes moved, 0 at the source's end.
/// The pipe is empty, so EAGAIN can only mean the socket has nothing.
fn fill(source: &TcpStream, pipe: &mut Pipe, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    let (from, to) = (source.as_raw_fd(), pipe.write.as_raw_fd());
    let n = std::task::ready!(super::poll_io(source, Interest::READABLE, cx, || {
        splice(from, to, 1 << 20)
    }))?;
    pipe.held = n;
    Poll::Ready(Ok(n))
}

/// Moves what the pipe holds into the destination, as far as its send buffer takes it.
fn drain(dest: &TcpStream, pipe: &mut Pipe, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    let (from, to, held) = (pipe.read.as_raw_fd(), dest.as_raw_fd(), pipe.held);
    let n = std::task::ready!(super::poll_io(dest, Interest::WRITABLE, cx, || {
        splice(from, to, held)
    }))?;
    pipe.held -= n;
    Poll::Ready(Ok(n))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tether_core::engine::forward::{forward, ForwardTimeouts, Forwarded, PumpEnd};
    use tether_core::engine::{Clock, Net, Termination};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::{TcpListener, UnixStream};

    use super::*;
    use crate::net::{Stream, TokioNet};

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 12) as u8)
            .collect()
    }

    /// A connected TCP pair: (the far end, the proxy's end).
    async fn tcp_pair() -> (TcpStream, Stream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let far = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (near, _) = l.accept().await.unwrap();
        (far, Stream::Tcp(near))
    }

    /// Relays between the proxy's ends of the client and server connections as the engine
    /// does, with the daemon's hooks; `tap` sees server → client chunks while it wants them.
    async fn relay(client: Stream, server: Stream, tap: impl FnMut(&[u8]) -> bool) -> Forwarded {
        set_max_pipes(1024);
        let (mut cr, mut cw) = TokioNet::split(client);
        let (mut sr, mut sw) = TokioNet::split(server);
        let long = Duration::from_secs(60);
        let timeouts = ForwardTimeouts {
            client: long,
            server: long,
            client_fin: None,
            server_fin: None,
        };
        let hooks = TokioNet::io_hooks();
        let pending = std::future::pending();
        forward(
            Clock::start(),
            &mut cr,
            &mut cw,
            &mut sr,
            &mut sw,
            timeouts,
            hooks,
            tap,
            pending,
        )
        .await
    }

    /// Sends `out` in uneven pieces and half-closes, while reading the other way to the end.
    async fn exchange<S: AsyncRead + AsyncWrite>(peer: S, out: &[u8]) -> Vec<u8> {
        let (mut r, mut w) = tokio::io::split(peer);
        let send = async {
            for (i, piece) in out.chunks(100_003).enumerate() {
                w.write_all(piece).await.unwrap();
                if i % 9 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            w.shutdown().await.unwrap();
        };
        let mut got = Vec::new();
        let recv = r.read_to_end(&mut got);
        let ((), read) = tokio::join!(send, recv);
        read.unwrap();
        got
    }

    /// Relays `up` bytes client → server and `down` bytes back over real sockets; asserts both
    /// arrive whole and in order.
    async fn bulk_both_ways(up: usize, down: usize) -> Forwarded {
        let (up, down) = (pattern(up, 1), pattern(down, 2));
        let (client, client_side) = tcp_pair().await;
        let (server, server_side) = tcp_pair().await;
        let (fwd, at_client, at_server) = tokio::join!(
            relay(client_side, server_side, |_| false),
            exchange(client, &up),
            exchange(server, &down),
        );
        assert!(at_server == up, "client → server bytes differ");
        assert!(at_client == down, "server → client bytes differ");
        assert_eq!((fwd.up, fwd.down), (up.len() as u64, down.len() as u64));
        fwd
    }

    #[tokio::test]
    async fn bulk_both_ways_is_spliced_and_arrives_whole_and_in_order() {
        let before = spliced_bytes();
        let (up, down) = (6_000_011, 5_000_021);
        let fwd = bulk_both_ways(up, down).await;
        assert_eq!((fwd.up_end, fwd.down_end), (PumpEnd::Eof, PumpEnd::Eof));
        let spliced = spliced_bytes() - before;
        // Everything after each direction's first full buffer.
        assert!(
            spliced >= (up + down) as u64 * 9 / 10,
            "only {spliced} bytes spliced"
        );
    }

    /// The capacity the kernel gave the pipe behind `fd`.
    fn capacity(fd: &OwnedFd) -> i32 {
        // SAFETY: `fd` is an open pipe descriptor; F_GETPIPE_SZ reads no memory.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) }
    }

    #[tokio::test]
    async fn pipes_take_the_capacity_asked_for_and_carry_bulk_whole_and_in_order() {
        set_max_pipes(1024);
        let system = capacity(&Pipe::new().expect("a pipe").write);
        set_pipe_size(Some(256 * 1024));
        assert_eq!(capacity(&Pipe::new().expect("a pipe").write), 256 * 1024);
        bulk_both_ways(3_000_017, 2_000_029).await;
        set_pipe_size(None);
        assert_eq!(capacity(&Pipe::new().expect("a pipe").write), system);
    }

    #[tokio::test]
    async fn a_half_close_reaches_the_server_after_the_last_spliced_byte() {
        let up = pattern(4_000_037, 3);
        let answer = pattern(3_000_001, 4);
        let (client, client_side) = tcp_pair().await;
        let (mut server, server_side) = tcp_pair().await;
        let serve = async {
            // The answer goes only once the client's end has come, behind all its bytes.
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            server.write_all(&answer).await.unwrap();
            server.shutdown().await.unwrap();
            got
        };
        let (fwd, at_client, at_server) = tokio::join!(
            relay(client_side, server_side, |_| false),
            exchange(client, &up),
            serve,
        );
        assert!(at_server == up, "the server's bytes before the end differ");
        assert!(at_client == answer, "the answer differs");
        assert_eq!(fwd.termination(), Termination::NORMAL);
    }

    #[tokio::test]
    async fn a_server_reset_mid_transfer_ends_both_sides_with_an_exact_prefix() {
        let down = pattern(8_000_000, 5);
        let (mut client, client_side) = tcp_pair().await;
        let (mut server, server_side) = tcp_pair().await;
        let serve = async {
            server.write_all(&down[..3_000_000]).await.unwrap();
            socket2::SockRef::from(&server)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(server); // an RST, with bytes possibly still on the way
        };
        let read = async {
            let mut got = Vec::new();
            let _ = client.read_to_end(&mut got).await; // ends with the proxy's close or an error
            got
        };
        let relay = async {
            let fwd = relay(client_side, server_side, |_| false).await;
            fwd // the halves are dropped here: the client's side closes
        };
        let (fwd, (), got) = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(relay, serve, read)
        })
        .await
        .expect("the reset ends the connection");
        assert_eq!(fwd.down_end, PumpEnd::ReadError);
        assert_eq!(fwd.termination(), Termination::SERVER_ABORT);
        assert!(
            got.len() <= 3_000_000 && got[..] == down[..got.len()],
            "not a prefix"
        );
        assert_eq!(
            fwd.down,
            got.len() as u64,
            "counted what reached the client"
        );
    }

    #[tokio::test]
    async fn a_direction_the_engine_still_reads_is_never_spliced() {
        let down = pattern(3_000_017, 6);
        let (client, client_side) = tcp_pair().await;
        let (server, server_side) = tcp_pair().await;
        let mut seen = 0usize;
        let tap = |chunk: &[u8]| {
            seen += chunk.len();
            true
        };
        let (fwd, at_client, _) = tokio::join!(
            relay(client_side, server_side, tap),
            exchange(client, b""),
            exchange(server, &down),
        );
        assert!(at_client == down);
        assert_eq!(fwd.down, down.len() as u64);
        assert_eq!(
            seen,
            down.len(),
            "the tap saw every byte: none went around it"
        );
    }

    #[tokio::test]
    async fn a_unix_socket_server_cannot_splice_and_is_copied() {
        let up = pattern(2_000_003, 7);
        let (client, client_side) = tcp_pair().await;
        let (server, server_side) = UnixStream::pair().unwrap();
        let (fwd, _, at_server) = tokio::join!(
            relay(client_side, Stream::Unix(server_side), |_| false),
            exchange(client, &up),
            exchange(server, b""),
        );
        assert!(at_server == up);
        assert_eq!(fwd.up, up.len() as u64);
    }
}
