//! The production network: tokio TCP sockets, and unix stream sockets for servers written
//! `unix@PATH`, `/PATH` or `abns@NAME`.

pub mod splice;
mod stream;
pub mod unix;

pub use stream::{ReadHalf, Stream, WriteHalf};

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tether_core::config::UnixAddress;
use tether_core::engine::forward::{ReadReady, Splice};
use tether_core::engine::Net;
use tokio::io::{AsyncWrite, Interest};
use tokio::net::{TcpListener, TcpStream};

/// A frontend's listener on `addr`: the one the predecessor handed over, else a fresh one.
fn bind_listener(addr: &str, reuse_port: bool) -> io::Result<TcpListener> {
    use crate::upgrade::inherited::{take_tcp, Role};
    if let Some(inherited) = take_tcp(Role::Frontend, addr) {
        return TcpListener::from_std(inherited);
    }
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    listen_on(addr, reuse_port)
}

/// A fresh listener on `addr`, registered with the caller's runtime.
fn listen_on(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    // Linux hands TCP_NODELAY down from the listener to every accepted socket: one
    // setsockopt here instead of one per connection.
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// tokio's TCP, with Nagle off on both sides (the engine forwards as soon as bytes arrive).
/// Accepted sockets inherit TCP_NODELAY from the listener (Linux).
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

impl Net for TokioNet {
    type Listener = TcpListener;
    type Stream = Stream;
    type ReadHalf = ReadHalf;
    type WriteHalf = WriteHalf;
    type Datagram = tokio::net::UdpSocket;

    async fn bind_datagram(&self, addr: &str) -> io::Result<tokio::net::UdpSocket> {
        tokio::net::UdpSocket::bind(addr).await
    }

    async fn send_to<'a>(
        socket: &'a tokio::net::UdpSocket,
        buf: &'a [u8],
        to: SocketAddr,
    ) -> io::Result<usize> {
        socket.send_to(buf, to).await
    }

    async fn recv_from<'a>(
        socket: &'a tokio::net::UdpSocket,
        buf: &'a mut [u8],
    ) -> io::Result<(usize, SocketAddr)> {
        socket.recv_from(buf).await
    }

    /// getaddrinfo (on tokio's blocking pool), as HAProxy's `init-addr libc`.
    async fn lookup_host(&self, host: &str) -> io::Result<Vec<std::net::IpAddr>> {
        let addrs = tokio::net::lookup_host((host, 0)).await?;
        Ok(addrs.map(|a| a.ip()).collect())
    }

    /// A socket handed over by the process this one replaces (an upgrade) is taken as is;
    /// otherwise a fresh one is bound.
    async fn bind(&self, addr: &str) -> io::Result<TcpListener> {
        bind_listener(addr, false)
    }

    /// As [`TokioNet::bind`], with `SO_REUSEPORT` so that [`TokioNet::bind_sibling`] can add
    /// the listeners of the other threads.
    async fn bind_shared(&self, addr: &str) -> io::Result<TcpListener> {
        bind_listener(addr, true)
    }

    /// The next socket the predecessor handed over for `bind` (its threads' listeners come
    /// in order), else a fresh `SO_REUSEPORT` socket on `first`'s address. Fails when `first`
    /// was bound without `SO_REUSEPORT` (a predecessor running one thread handed it over).
    fn bind_sibling(&self, bind: &str, first: &TcpListener) -> io::Result<TcpListener> {
        use crate::upgrade::inherited::{take_tcp, Role};
        if let Some(inherited) = take_tcp(Role::Frontend, bind) {
            return TcpListener::from_std(inherited);
        }
        let addr = first.local_addr()?;
        listen_on(addr, true)
    }

    /// `TCP_DEFER_ACCEPT` of one second, as HAProxy sets it: the kernel completes the
    /// handshake but wakes `accept` only when data comes (or, past a retransmitted SYN-ACK,
    /// on the client's next ACK), so a connection arrives with its ClientHello readable.
    fn defer_accept(listener: &TcpListener) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let seconds: libc::c_int = 1;
        // SAFETY: the fd is an open TCP socket owned by `listener`; the option value is a
        // valid `c_int` of the length given, as setsockopt requires.
        let rc = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&seconds as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    fn local_addr_of(read: &ReadHalf) -> Option<SocketAddr> {
        match read {
            ReadHalf::Tcp(r, _) => r.local_addr().ok(),
            ReadHalf::Unix(_) => None,
        }
    }

    fn stream_addrs(stream: &Stream) -> Option<(SocketAddr, SocketAddr)> {
        let tcp = stream.as_tcp()?;
        Some((tcp.local_addr().ok()?, tcp.peer_addr().ok()?))
    }

    /// SO_KEEPALIVE with the system's probe timers, as HAProxy's `option tcpka` sets it.
    fn set_keepalive(stream: &Stream) {
        let Some(tcp) = stream.as_tcp() else {
            return; // a unix socket has no keepalive probes
        };
        if let Err(e) = SockRef::from(tcp).set_keepalive(true) {
            tracing::debug!("SO_KEEPALIVE: {e}");
        }
    }

    async fn accept(&self, listener: &TcpListener) -> io::Result<(Stream, SocketAddr)> {
        let (s, peer) = listener.accept().await?;
        Ok((Stream::Tcp(s), peer))
    }

    async fn connect(&self, addr: &str) -> io::Result<Stream> {
        if let Some(unix) = UnixAddress::parse(addr) {
            return Ok(Stream::Unix(unix::connect(unix).await?));
        }
        let s = TcpStream::connect(addr).await?;
        let _ = s.set_nodelay(true);
        Ok(Stream::Tcp(s))
    }

    /// Non-blocking `connect`, then at once a `send` of the client's first bytes: on a
    /// same-host path the handshake completed inside `connect`, so the bytes leave without
    /// waiting for the event loop to report the socket writable (and without the
    /// `getsockopt(SO_ERROR)` that confirms a connect). Elsewhere the `send` finds the
    /// connection still opening (`EAGAIN`) and this waits for writability as `connect` does;
    /// a refused connect shows as the error of either.
    async fn connect_sending(&self, addr: &str, first: &[u8]) -> io::Result<(Stream, usize)> {
        let Ok(sa) = addr.parse::<SocketAddr>() else {
            // A host name (resolved and connected by tokio) or a unix socket: the engine
            // sends `first`.
            return Ok((self.connect(addr).await?, 0));
        };
        let socket = Socket::new(
            Domain::for_address(sa),
            Type::STREAM.nonblocking(),
            Some(Protocol::TCP),
        )?;
        socket.set_tcp_nodelay(true)?;
        match socket.connect(&sa.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let sent = if first.is_empty() {
            0
        } else {
            match socket.send_with_flags(first, libc::MSG_NOSIGNAL) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            }
        };
        let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;
        if sent == 0 {
            stream.writable().await?;
            if let Some(e) = stream.take_error()? {
                return Err(e);
            }
        }
        Ok((Stream::Tcp(stream), sent))
    }

    fn split(stream: Stream) -> (ReadHalf, WriteHalf) {
        stream.into_split()
    }

    fn finish_write(write: WriteHalf) {
        // Dropping an OwnedWriteHalf calls shutdown(Write) again; the engine already sent it.
        write.forget();
    }

    /// `send(MSG_MORE)`: the kernel keeps a short last chunk queued, and the shutdown or close
    /// that follows puts the FIN on it, so the response and the end leave in one segment.
    /// A unix socket has no segments to spare: a plain write.
    fn poll_write_last(
        write: Pin<&mut WriteHalf>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let stream: &TcpStream = match write.get_mut() {
            WriteHalf::Tcp(w) => AsRef::<TcpStream>::as_ref(&*w),
            WriteHalf::Unix(w) => return Pin::new(w).poll_write(cx, buf),
        };
        poll_io(stream, Interest::WRITABLE, cx, || {
            SockRef::from(stream).send_with_flags(buf, libc::MSG_MORE | libc::MSG_NOSIGNAL)
        })
    }

    /// tokio's readiness of the socket: waiting on it takes no buffer and no syscall.
    fn read_readiness() -> Option<ReadReady<ReadHalf>> {
        Some(|read, cx| match read.get_mut() {
            ReadHalf::Tcp(r, _) => r.as_ref().poll_read_ready(cx),
            ReadHalf::Unix(r) => r.as_ref().poll_read_ready(cx),
        })
    }

    /// `splice(2)` through a pipe between TCP sockets, within the pipes allowed.
    fn splice() -> Option<Splice<ReadHalf, WriteHalf>> {
        Some(splice::poll_splice)
    }
}

/// Waits until `stream` is ready for `interest` (read or write), then runs the non-blocking
/// `op` on it; an `op` that would block clears tokio's readiness and the wait starts again.
fn poll_io<T>(
    stream: &TcpStream,
    interest: Interest,
    cx: &mut Context<'_>,
    mut op: impl FnMut() -> io::Result<T>,
) -> Poll<io::Result<T>> {
    loop {
        let readiness = if interest.is_readable() {
            stream.poll_read_ready(cx)
        } else {
            stream.poll_write_ready(cx)
        };
        ready!(readiness)?;
        match stream.try_io(interest, &mut op) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return Poll::Ready(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let net = TokioNet;
        let listener = net.bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let (accepted, _) = net.accept(&listener).await.unwrap();
        assert!(
            accepted.as_tcp().unwrap().nodelay().unwrap(),
            "TCP_NODELAY inherited from the listener"
        );
        let outgoing = net.connect(&addr.to_string()).await.unwrap();
        assert!(outgoing.as_tcp().unwrap().nodelay().unwrap());
        drop(client.await.unwrap());
    }

    #[tokio::test]
    async fn connect_sending_sends_at_once_on_loopback_and_reports_refusal() {
        use tokio::io::AsyncReadExt;
        let net = TokioNet;
        let listener = net.bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hello = b"\x16\x03\x01 client bytes";
        let (stream, sent) = net.connect_sending(&addr, hello).await.unwrap();
        // The loopback handshake completes inside connect: everything went with it.
        assert_eq!(sent, hello.len());
        assert!(stream.as_tcp().unwrap().nodelay().unwrap());
        let (mut accepted, _) = net.accept(&listener).await.unwrap();
        let mut got = vec![0u8; hello.len()];
        accepted.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, hello);

        // Nothing to send: connected, nothing sent.
        let (_quiet, sent) = net.connect_sending(&addr, b"").await.unwrap();
        assert_eq!(sent, 0);

        // A closed port is refused, with or without bytes to send (the engine's retry policy
        // tells refusals apart).
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        for first in [&b""[..], &hello[..]] {
            let err = net.connect_sending(&closed, first).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        }
    }

    #[tokio::test]
    async fn a_deferred_listener_hands_a_connection_over_with_its_first_bytes() {
        use tokio::io::AsyncWriteExt;
        for defer in [false, true] {
            let net = TokioNet;
            let listener = net.bind("127.0.0.1:0").await.unwrap();
            if defer {
                TokioNet::defer_accept(&listener).unwrap();
            }
            let addr = listener.local_addr().unwrap();
            let mut client = TcpStream::connect(addr).await.unwrap();
            // Connected (the kernel completed the handshake), nothing sent yet.
            let early =
                tokio::time::timeout(Duration::from_millis(300), net.accept(&listener)).await;
            assert_eq!(
                early.is_ok(),
                !defer,
                "accepted before any byte: {}",
                early.is_ok()
            );
            client.write_all(b"\x16\x03\x01").await.unwrap();
            let accepted = match early {
                Ok(a) => a.unwrap().0,
                Err(_) => {
                    tokio::time::timeout(Duration::from_secs(2), net.accept(&listener))
                        .await
                        .expect("accepted once bytes came")
                        .unwrap()
                        .0
                }
            };
            let mut peek = [0u8; 3];
            let tcp = accepted.as_tcp().unwrap();
            let n = tokio::time::timeout(Duration::from_secs(2), tcp.peek(&mut peek))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&peek[..n], b"\x16\x03\x01");
        }
    }

    /// Most of a connection's heap is its flow's future (the task boxes it): in view here, so
    /// that growing it is a decision (issue 14, memory per connection).
    #[tokio::test]
    async fn a_connection_flow_stays_within_its_size() {
        use tether_core::engine::log::{ConnectionRecord, LogSink};
        struct Quiet;
        impl LogSink for Quiet {
            fn record(&self, _: &ConnectionRecord) {}
        }
        let config = crate::config_source::QuickForm {
            listen: "127.0.0.1:0".into(),
            servers: vec!["127.0.0.1:1".into()],
            affinity: Some("session-id,ticket".into()),
            balance: None,
            accept_proxy: false,
            defer_accept: false,
        }
        .to_config()
        .unwrap();
        let rt = tether_core::engine::runtime::build(&config, None).unwrap();
        let ctx = tether_core::engine::flow::Context::new(TokioNet, std::sync::Arc::new(Quiet));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, peer) = l.accept().await.unwrap();
        let flow = tether_core::engine::flow::handle(&ctx, &rt.frontends[0], Stream::Tcp(s), peer);
        let size = std::mem::size_of_val(&flow);
        let connection = std::mem::size_of::<tether_core::engine::Connection>();
        eprintln!("flow future {size} B, of which the connection's state machine {connection} B");
        // mimalloc rounds it up to a size class: at most 1.75 KiB, or each connection takes 2.
        assert!(
            size <= 1792,
            "the flow future is {size} B (1,792 B at stop 32, 2,528 B at stop 30, 3,528 B at \
             stop 28)"
        );
    }

    /// Segments the socket has received (`tcpi_segs_in` of `TCP_INFO`).
    fn segments_in(s: &TcpStream) -> u32 {
        use std::os::fd::AsRawFd;
        // SAFETY: an all-zero `tcp_info` is a valid value of this plain C struct.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: the fd is an open TCP socket owned by `s`; `info` and `len` are valid for
        // writes of `len` bytes, as getsockopt requires.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        assert_eq!(
            rc,
            0,
            "getsockopt(TCP_INFO): {}",
            io::Error::last_os_error()
        );
        info.tcpi_segs_in
    }

    /// Sends `data` on a fresh loopback connection, the last write through `poll_write_last`
    /// when `last`, then shuts the write side down; returns what the receiver read and how many
    /// segments it received in all (handshake included).
    async fn send_then_end(data: &[u8], last: bool) -> (Vec<u8>, u32) {
        use std::future::poll_fn;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let net = TokioNet;
        let listener = net.bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let sender = net.connect(&addr).await.unwrap();
        let (mut receiver, _) = net.accept(&listener).await.unwrap();
        let (_r, mut w) = TokioNet::split(sender);
        if last {
            let mut rest = data;
            while !rest.is_empty() {
                let n = poll_fn(|cx| TokioNet::poll_write_last(Pin::new(&mut w), cx, rest))
                    .await
                    .unwrap();
                rest = &rest[n..];
            }
        } else {
            w.write_all(data).await.unwrap();
        }
        w.shutdown().await.unwrap();
        let mut got = Vec::new();
        receiver.read_to_end(&mut got).await.unwrap();
        (got, segments_in(receiver.as_tcp().unwrap()))
    }

    #[tokio::test]
    async fn last_bytes_leave_with_the_fin() {
        let data = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec();
        let (plain, plain_segs) = send_then_end(&data, false).await;
        let (last, last_segs) = send_then_end(&data, true).await;
        assert_eq!(plain, data);
        assert_eq!(last, data);
        // SYN, ACK, then data and FIN: separate after a plain write, one segment after MSG_MORE.
        assert_eq!(
            last_segs + 1,
            plain_segs,
            "segments received: {last_segs} with poll_write_last, {plain_segs} without"
        );
        // Larger than a loopback segment: full segments go at once, the tail waits for the FIN.
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (got, _) = send_then_end(&big, true).await;
        assert_eq!(got, big);
    }
}
