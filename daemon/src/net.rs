//! The production network: tokio TCP sockets.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use socket2::SockRef;
use tether_core::engine::Net;
use tokio::io::Interest;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// tokio's TCP, with Nagle off on both sides (the engine forwards as soon as bytes arrive).
/// Accepted sockets inherit TCP_NODELAY from the listener (Linux).
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

impl Net for TokioNet {
    type Listener = TcpListener;
    type Stream = TcpStream;
    type ReadHalf = OwnedReadHalf;
    type WriteHalf = OwnedWriteHalf;

    async fn bind(&self, addr: &str) -> io::Result<TcpListener> {
        let addr: SocketAddr = addr
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        // Linux hands TCP_NODELAY down from the listener to every accepted socket: one
        // setsockopt here instead of one per connection.
        socket.set_nodelay(true)?;
        socket.bind(addr)?;
        socket.listen(4096)
    }

    async fn accept(&self, listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        listener.accept().await
    }

    async fn connect(&self, addr: &str) -> io::Result<TcpStream> {
        let s = TcpStream::connect(addr).await?;
        let _ = s.set_nodelay(true);
        Ok(s)
    }

    fn split(stream: TcpStream) -> (OwnedReadHalf, OwnedWriteHalf) {
        stream.into_split()
    }

    fn finish_write(write: OwnedWriteHalf) {
        // Dropping an OwnedWriteHalf calls shutdown(Write) again; the engine already sent it.
        write.forget();
    }

    /// `send(MSG_MORE)`: the kernel keeps a short last chunk queued, and the shutdown or close
    /// that follows puts the FIN on it, so the response and the end leave in one segment.
    fn poll_write_last(
        write: Pin<&mut OwnedWriteHalf>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let write: &OwnedWriteHalf = write.get_mut();
        let stream: &TcpStream = write.as_ref();
        loop {
            ready!(stream.poll_write_ready(cx))?;
            let sent = stream.try_io(Interest::WRITABLE, || {
                SockRef::from(stream).send_with_flags(buf, libc::MSG_MORE | libc::MSG_NOSIGNAL)
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let net = TokioNet;
        let listener = net.bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let (accepted, _) = net.accept(&listener).await.unwrap();
        assert!(
            accepted.nodelay().unwrap(),
            "TCP_NODELAY inherited from the listener"
        );
        let outgoing = net.connect(&addr.to_string()).await.unwrap();
        assert!(outgoing.nodelay().unwrap());
        drop(client.await.unwrap());
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
        (got, segments_in(&receiver))
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
