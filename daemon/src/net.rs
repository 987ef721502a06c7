//! The production network: tokio TCP sockets.

use std::io;
use std::net::SocketAddr;

use tether_core::engine::Net;
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
}
