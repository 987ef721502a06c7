//! What is known about a connection when a rule is evaluated.

use std::net::{IpAddr, SocketAddr};

use crate::tls::ClientHello;

/// A connection's addresses and what inspection found, borrowed from the inspect buffer.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The client address (from the PROXY header when there is one).
    pub source: IpAddr,
    /// The address and port the client connected to.
    pub destination: SocketAddr,
    /// What the client's first bytes were.
    pub hello: HelloFacts<'a>,
}

/// What inspection found in the client's first bytes.
#[derive(Debug, Clone)]
pub enum HelloFacts<'a> {
    /// A complete ClientHello.
    Hello(ClientHello<'a>),
    /// Bytes that are not a TLS handshake.
    NotTls,
    /// Nothing usable: no bytes in time, the client closed, or a broken or oversize hello.
    Nothing,
}
