//! The simulated network: turmoil's TCP and UDP, behind the engine's [`Net`] trait.
//!
//! With this, the balancer host runs exactly the engine the daemon runs; only the sockets differ.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tether_core::engine::Net;
use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use turmoil::net::{TcpListener, TcpStream, UdpSocket};

/// turmoil's TCP. Addresses are `"host:port"`; host names resolve inside the simulation.
#[derive(Clone, Copy, Debug, Default)]
pub struct TurmoilNet;

impl Net for TurmoilNet {
    type Listener = TcpListener;
    type Stream = TcpStream;
    type ReadHalf = OwnedReadHalf;
    type WriteHalf = OwnedWriteHalf;
    type Datagram = UdpSocket;

    async fn bind_datagram(&self, addr: &str) -> io::Result<UdpSocket> {
        UdpSocket::bind(addr.to_owned()).await
    }

    async fn send_to<'a>(
        socket: &'a UdpSocket,
        buf: &'a [u8],
        to: SocketAddr,
    ) -> io::Result<usize> {
        socket.send_to(buf, to).await
    }

    async fn recv_from<'a>(
        socket: &'a UdpSocket,
        buf: &'a mut [u8],
    ) -> io::Result<(usize, SocketAddr)> {
        socket.recv_from(buf).await
    }

    /// turmoil's host names: the simulated hosts (turmoil gives an unknown name an address
    /// nothing listens on, as it does for a connect).
    async fn lookup_host(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        Ok(vec![turmoil::lookup(host.to_owned())])
    }

    async fn bind(&self, addr: &str) -> io::Result<TcpListener> {
        TcpListener::bind(addr.to_owned()).await
    }

    fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn accept(&self, listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        listener.accept().await
    }

    async fn connect(&self, addr: &str) -> io::Result<TcpStream> {
        TcpStream::connect(addr.to_owned()).await
    }

    fn split(stream: TcpStream) -> (OwnedReadHalf, OwnedWriteHalf) {
        stream.into_split()
    }
}
