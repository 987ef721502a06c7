//! The simulated network: turmoil's TCP, behind the engine's [`Net`] trait.
//!
//! With this, the balancer host runs exactly the engine the daemon runs; only the sockets differ.

use std::io;
use std::net::SocketAddr;

use tether_core::engine::Net;
use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use turmoil::net::{TcpListener, TcpStream};

/// turmoil's TCP. Addresses are `"host:port"`; host names resolve inside the simulation.
#[derive(Clone, Copy, Debug, Default)]
pub struct TurmoilNet;

impl Net for TurmoilNet {
    type Listener = TcpListener;
    type Stream = TcpStream;
    type ReadHalf = OwnedReadHalf;
    type WriteHalf = OwnedWriteHalf;

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
