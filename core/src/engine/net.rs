//! The network the engine runs on.
//!
//! The engine is written once, generic over [`Net`]; the daemon passes tokio sockets and the
//! simulator passes turmoil sockets. A transport is a type, not a cargo feature, because features
//! unify across the workspace and the daemon and simulator live in one.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};

/// A TCP-like network: bind, accept, connect and split streams into independent halves.
///
/// Addresses are `"host:port"` strings so that both real addresses and turmoil host names work.
pub trait Net: Clone + Send + Sync + 'static {
    /// A bound listening socket.
    type Listener: Send + Sync + 'static;
    /// A connected byte stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The read half of a split [`Net::Stream`].
    type ReadHalf: AsyncRead + Unpin + Send + 'static;
    /// The write half of a split [`Net::Stream`].
    type WriteHalf: AsyncWrite + Unpin + Send + 'static;

    /// A bound datagram (UDP) socket, for DNS queries to the `resolvers` name servers.
    type Datagram: Send + Sync + 'static;

    /// Binds a datagram socket on `addr` (`"0.0.0.0:0"`: any port).
    fn bind_datagram(&self, addr: &str) -> impl Future<Output = io::Result<Self::Datagram>> + Send;
    /// Sends one datagram to `to`.
    fn send_to<'a>(
        socket: &'a Self::Datagram,
        buf: &'a [u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;
    /// Receives one datagram into `buf`: its length and sender.
    fn recv_from<'a>(
        socket: &'a Self::Datagram,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send + 'a;
    /// The system resolver (HAProxy `init-addr libc`): the addresses of `host`.
    fn lookup_host(&self, host: &str) -> impl Future<Output = io::Result<Vec<IpAddr>>> + Send;

    /// Binds a listener on `addr`.
    fn bind(&self, addr: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Binds a listener on `addr` that further listeners may share ([`Net::bind_sibling`]),
    /// for a process accepting on several threads. The default binds a plain listener.
    fn bind_shared(&self, addr: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        self.bind(addr)
    }
    /// Another listener on the address `first` (bound by [`Net::bind_shared`] for the
    /// configured `bind`) is bound to, registered with the runtime the caller is in: the
    /// system spreads incoming connections over them (Linux `SO_REUSEPORT`), so each thread
    /// accepts its own without waking the others. The default transport cannot.
    fn bind_sibling(&self, bind: &str, first: &Self::Listener) -> io::Result<Self::Listener> {
        let _ = (bind, first);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this transport has one listener per address",
        ))
    }
    /// Hands connections over only once their first bytes have arrived (HAProxy's
    /// `defer-accept`, Linux `TCP_DEFER_ACCEPT`); a transport without it does nothing.
    fn defer_accept(listener: &Self::Listener) -> io::Result<()> {
        let _ = listener;
        Ok(())
    }

    /// The address a listener is bound to (the port the system chose for `"host:0"`).
    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr>;
    /// Accepts the next connection, with the peer's address.
    fn accept(
        &self,
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
    /// Opens a connection to `addr`. The engine bounds it with the connect timeout.
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Opens a connection to `addr` and sends what it can of `first` (the client's buffered
    /// bytes) as soon as the connection allows, returning how much went. A transport may send
    /// on the connection the moment its handshake has completed, which on loopback and other
    /// same-host paths is already true when `connect` returns, sparing a trip through the event
    /// loop and the readiness check per connection. The default connects, then sends nothing:
    /// the engine writes `first` itself.
    fn connect_sending(
        &self,
        addr: &str,
        first: &[u8],
    ) -> impl Future<Output = io::Result<(Self::Stream, usize)>> + Send {
        let _ = first;
        let connect = self.connect(addr);
        async move { Ok((connect.await?, 0)) }
    }

    /// The local address of an accepted connection (its read half), for the PROXY header sent
    /// to a server; the default does not know it and the bind address is used.
    fn local_addr_of(read: &Self::ReadHalf) -> Option<SocketAddr> {
        let _ = read;
        None
    }

    /// The local and peer addresses of an outgoing connection, for the PROXY header a health
    /// check sends; the default does not know them (the header then says `UNKNOWN`).
    fn stream_addrs(stream: &Self::Stream) -> Option<(SocketAddr, SocketAddr)> {
        let _ = stream;
        None
    }

    /// Turns TCP keepalive probes on for a connection (HAProxy `option tcpka`); the default
    /// transport has none and does nothing.
    fn set_keepalive(stream: &Self::Stream) {
        let _ = stream;
    }

    /// Splits a stream so both directions can be driven at once without a lock.
    fn split(stream: Self::Stream) -> (Self::ReadHalf, Self::WriteHalf);

    /// Disposes of a write half whose direction is finished. The default drops it; a transport
    /// whose write half shuts the socket down on drop can skip that redundant syscall, the
    /// socket closing when its read half goes.
    fn finish_write(write: Self::WriteHalf) {
        drop(write);
    }

    /// Writes bytes that the end of the stream follows at once: the engine shuts the write side
    /// down (or closes the socket) right after. A transport may hold them so that they leave in
    /// one segment with the FIN, sparing a segment and the peer's second acknowledgement per
    /// short connection (Linux `MSG_MORE`, as HAProxy sends a response whose end it has seen).
    /// The default is a plain write.
    fn poll_write_last(
        write: Pin<&mut Self::WriteHalf>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        super::forward::plain_write_last(write, cx, buf)
    }

    /// How to wait until a read half can be read without waiting (bytes, its end or an error)
    /// while holding no buffer: the forwarder then takes a buffer only when bytes are there and
    /// gives it back once drained, so an idle connection holds none. `None` (the default): the
    /// transport cannot tell, and each direction keeps a buffer while it waits in `read`.
    fn read_readiness() -> Option<super::forward::ReadReady<Self::ReadHalf>> {
        None
    }

    /// How to move a bulk transfer's bytes without copying them through user space, once the
    /// engine no longer looks at them; `None` (the default): the forwarder always copies.
    fn splice() -> Option<super::forward::Splice<Self::ReadHalf, Self::WriteHalf>> {
        None
    }

    /// The forwarder's hooks for this transport.
    fn io_hooks() -> super::forward::IoHooks<Self::ReadHalf, Self::WriteHalf> {
        super::forward::IoHooks {
            write_last: Self::poll_write_last,
            read_ready: Self::read_readiness(),
            splice: Self::splice(),
        }
    }
}
