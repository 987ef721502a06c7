//! A testbed server that goes silent, as a lost host or one cut off by a partition does, on
//! plain loopback (no packet filter, no privileges).
//!
//! - New connections: its port is held by a listener that never accepts, with a one-place accept
//!   queue that a connection of our own fills at once. The kernel then drops every further SYN
//!   unanswered, so a connect waits for its timeout, as to a lost host (a crashed process's
//!   port answers RST instead).
//! - Open connections: their sockets stay open but move no byte until the server heals (or is
//!   rebooted, when they are dropped: a rebooted host answers with resets). The kernel still
//!   acknowledges what arrives, which a real lost host does not; the balancer sees the same
//!   thing either way — no answer until its timeout.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use anyhow::{Context as _, Result};
use socket2::{Domain, SockRef, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The port of a silent server: a listener that never accepts, its queue kept full.
pub struct SilentPort {
    /// The listener bound for the silence (none when it silences the server's own).
    _listener: Option<Socket>,
    _plug: Socket,
}

impl SilentPort {
    /// Silences the server's own `listener` in place, so the port never refuses in between:
    /// its queue shrinks to one place and a connection of ours fills it (connections already
    /// queued stay there, frozen, until the server accepts again). The server must have
    /// stopped accepting on it, and keeps it open.
    pub fn over(listener: &TcpListener) -> Result<Self> {
        SockRef::from(listener).listen(0)?;
        Ok(SilentPort {
            _listener: None,
            _plug: plug(listener.local_addr()?)?,
        })
    }

    /// Holds `addr` silent. The server's own listener must be closed already.
    pub fn hold(addr: SocketAddr) -> Result<Self> {
        let listener = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        listener.set_reuse_address(true)?;
        listener
            .bind(&addr.into())
            .with_context(|| format!("holding {addr} silent"))?;
        listener.listen(0)?;
        let plug = plug(addr)?;
        Ok(SilentPort {
            _listener: Some(listener),
            _plug: plug,
        })
    }
}

/// A connection of ours to `addr`, started without waiting: listen(0) queues one connection,
/// this one, and every later SYN is dropped unanswered (if the queue is full already, ours
/// waits in vain with the others).
fn plug(addr: SocketAddr) -> Result<Socket> {
    let plug = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    plug.set_nonblocking(true)?;
    match plug.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e).with_context(|| format!("filling {addr}'s accept queue")),
    }
    Ok(plug)
}

/// Whether a server's connections may move bytes (false: silent).
pub type Gate = watch::Receiver<bool>;

type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server-side stream that stops moving bytes while its server is silent.
pub struct GatedStream<S = TcpStream> {
    io: S,
    gate: Gate,
    wait: Option<Wait>,
}

impl<S> GatedStream<S> {
    /// `io`, moving bytes only while `gate` says open.
    pub fn new(io: S, gate: Gate) -> Self {
        GatedStream {
            io,
            gate,
            wait: None,
        }
    }

    /// Ready once the gate is open; registers the task to be woken when it opens.
    fn poll_open(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if *self.gate.borrow() {
                self.wait = None;
                return Poll::Ready(());
            }
            let gate = &self.gate;
            let wait = self.wait.get_or_insert_with(|| {
                let mut rx = gate.clone();
                rx.mark_unchanged();
                Box::pin(async move {
                    if rx.changed().await.is_err() {
                        // The server is gone for good: stay silent until dropped.
                        std::future::pending::<()>().await;
                    }
                })
            });
            ready!(wait.as_mut().poll(cx));
            self.wait = None;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GatedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_open(cx));
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GatedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_open(cx));
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_open(cx));
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_open(cx));
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_silent_port_lets_connects_time_out_instead_of_refusing() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        // Nothing there: refused at once.
        let refused = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        let silent = SilentPort::hold(addr).unwrap();
        for _ in 0..3 {
            let attempt =
                tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await;
            assert!(attempt.is_err(), "no answer while silent: {attempt:?}");
        }
        drop(silent);
        let refused = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[tokio::test]
    async fn a_listener_silenced_in_place_never_refuses_and_accepts_again_after() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let silent = SilentPort::over(&listener).unwrap();
        for _ in 0..3 {
            let attempt =
                tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await;
            assert!(attempt.is_err(), "no answer while silent: {attempt:?}");
        }
        drop(silent);
        SockRef::from(&listener).listen(1024).unwrap();
        let accepting = tokio::spawn(async move {
            loop {
                let _ = listener.accept().await;
            }
        });
        let back = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await;
        assert!(matches!(back, Ok(Ok(_))), "accepts again: {back:?}");
        accepting.abort();
    }

    #[tokio::test]
    async fn a_gated_stream_moves_nothing_while_closed_and_resumes_when_opened() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (open, gate) = watch::channel(true);
        let mut server = GatedStream::new(server, gate);
        client.write_all(b"one").await.unwrap();
        let mut buf = [0u8; 3];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"one");

        open.send_replace(false);
        client.write_all(b"two").await.unwrap();
        let stalled = tokio::time::timeout(Duration::from_millis(300), server.read(&mut buf)).await;
        assert!(stalled.is_err(), "read while silent: {stalled:?}");
        let reply = tokio::spawn(async move {
            server.write_all(b"ack").await.unwrap();
            server
        });
        let mut got = [0u8; 3];
        let early = tokio::time::timeout(Duration::from_millis(300), client.read(&mut got)).await;
        assert!(early.is_err(), "wrote while silent: {early:?}");

        open.send_replace(true);
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ack");
        let mut server = reply.await.unwrap();
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"two", "nothing lost while silent");
    }
}
