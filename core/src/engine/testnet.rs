//! An in-memory network for the engine's unit tests: a listener is an entry in a table, a
//! connection is a `tokio::io::duplex` pair, a datagram a message on a channel. No socket and no real time, so tests run under
//! tokio's paused clock and replay exactly. An address without a listener refuses (RST); a
//! blackholed address never answers (a crashed host dropping SYNs), so connects hang until the
//! caller's timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

use super::net::Net;

type Incoming = (DuplexStream, SocketAddr);
type Datagram = (Vec<u8>, SocketAddr);

#[derive(Default)]
struct Table {
    listeners: BTreeMap<String, mpsc::UnboundedSender<Incoming>>,
    blackholed: BTreeSet<String>,
    connects: BTreeMap<String, u64>,
    next_port: u16,
    next_client: u16,
    datagrams: BTreeMap<SocketAddr, mpsc::UnboundedSender<Datagram>>,
    hosts: BTreeMap<String, Vec<IpAddr>>,
}

/// The in-memory network; clones share one address table.
#[derive(Clone, Default)]
pub(crate) struct MemNet {
    table: Arc<Mutex<Table>>,
}

/// A bound in-memory listener; dropping it unbinds the address.
pub(crate) struct MemListener {
    addr: String,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Incoming>>,
    table: Arc<Mutex<Table>>,
}

impl Drop for MemListener {
    fn drop(&mut self) {
        lock(&self.table).listeners.remove(&self.addr);
    }
}

fn lock(t: &Mutex<Table>) -> MutexGuard<'_, Table> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// A bound in-memory datagram socket; dropping it unbinds the address.
pub(crate) struct MemDatagram {
    addr: SocketAddr,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Datagram>>,
    table: Arc<Mutex<Table>>,
}

impl Drop for MemDatagram {
    fn drop(&mut self) {
        lock(&self.table).datagrams.remove(&self.addr);
    }
}

impl MemNet {
    /// What the system resolver answers for `host` (nothing: not found).
    pub(crate) fn set_host(&self, host: &str, addrs: Vec<IpAddr>) {
        lock(&self.table).hosts.insert(host.to_owned(), addrs);
    }

    /// Makes `addr` drop every connection attempt silently (or answer again).
    pub(crate) fn blackhole(&self, addr: &str, on: bool) {
        let mut t = lock(&self.table);
        if on {
            t.blackholed.insert(addr.to_owned());
        } else {
            t.blackholed.remove(addr);
        }
    }

    /// Connection attempts made to `addr` so far.
    pub(crate) fn connects(&self, addr: &str) -> u64 {
        lock(&self.table).connects.get(addr).copied().unwrap_or(0)
    }

    /// A server on `addr` that writes `name` to each connection, then waits for the client to
    /// close. Ends (unbinding the address) when the returned handle is aborted.
    pub(crate) async fn server(&self, addr: &str, name: &str) -> tokio::task::JoinHandle<()> {
        let listener = self.bind(addr).await.expect("test server binds");
        let (net, name) = (self.clone(), name.to_owned());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = net.accept(&listener).await else {
                    return;
                };
                let name = name.clone();
                tokio::spawn(async move {
                    let _ = s.write_all(name.as_bytes()).await;
                    let mut sink = [0u8; 64];
                    while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        })
    }
}

impl Net for MemNet {
    type Listener = MemListener;
    type Stream = DuplexStream;
    type ReadHalf = ReadHalf<DuplexStream>;
    type WriteHalf = WriteHalf<DuplexStream>;
    type Datagram = MemDatagram;

    async fn bind_datagram(&self, addr: &str) -> io::Result<MemDatagram> {
        let mut addr: SocketAddr = addr
            .parse()
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut t = lock(&self.table);
        if addr.port() == 0 {
            t.next_port += 1;
            addr.set_port(40000 + t.next_port);
        }
        if t.datagrams.contains_key(&addr) {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        t.datagrams.insert(addr, tx);
        Ok(MemDatagram {
            addr,
            rx: tokio::sync::Mutex::new(rx),
            table: self.table.clone(),
        })
    }

    /// Delivers to the socket bound on `to`, if any (else the datagram is lost, as UDP's).
    async fn send_to<'a>(
        socket: &'a MemDatagram,
        buf: &'a [u8],
        to: SocketAddr,
    ) -> io::Result<usize> {
        if let Some(tx) = lock(&socket.table).datagrams.get(&to) {
            let _ = tx.send((buf.to_vec(), socket.addr));
        }
        Ok(buf.len())
    }

    async fn recv_from<'a>(
        socket: &'a MemDatagram,
        buf: &'a mut [u8],
    ) -> io::Result<(usize, SocketAddr)> {
        let mut rx = socket.rx.lock().await;
        let (bytes, from) = rx.recv().await.ok_or(io::ErrorKind::NotConnected)?;
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Ok((n, from))
    }

    async fn lookup_host(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        if let Ok(ip) = host.parse() {
            return Ok(vec![ip]);
        }
        lock(&self.table)
            .hosts
            .get(host)
            .cloned()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    async fn bind(&self, addr: &str) -> io::Result<MemListener> {
        let mut t = lock(&self.table);
        let addr = match addr.strip_suffix(":0") {
            Some(host) => {
                t.next_port += 1;
                format!("{host}:{}", 40000 + t.next_port)
            }
            None => addr.to_owned(),
        };
        if t.listeners.contains_key(&addr) {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        t.listeners.insert(addr.clone(), tx);
        Ok(MemListener {
            addr,
            rx: tokio::sync::Mutex::new(rx),
            table: self.table.clone(),
        })
    }

    fn local_addr(listener: &MemListener) -> io::Result<SocketAddr> {
        listener
            .addr
            .parse()
            .map_err(|_| io::ErrorKind::InvalidInput.into())
    }

    async fn accept(&self, listener: &MemListener) -> io::Result<(DuplexStream, SocketAddr)> {
        let mut rx = listener.rx.lock().await;
        rx.recv().await.ok_or(io::ErrorKind::NotConnected.into())
    }

    async fn connect(&self, addr: &str) -> io::Result<DuplexStream> {
        let sent = {
            let mut t = lock(&self.table);
            *t.connects.entry(addr.to_owned()).or_insert(0) += 1;
            if t.blackholed.contains(addr) {
                None
            } else {
                t.next_client += 1;
                let peer = SocketAddr::from(([127, 0, 0, 2], t.next_client));
                let (ours, theirs) = tokio::io::duplex(64 * 1024);
                let queued = t
                    .listeners
                    .get(addr)
                    .is_some_and(|tx| tx.send((theirs, peer)).is_ok());
                Some(queued.then_some(ours))
            }
        };
        match sent {
            None => std::future::pending().await,
            Some(Some(stream)) => Ok(stream),
            Some(None) => Err(io::ErrorKind::ConnectionRefused.into()),
        }
    }

    fn split(stream: DuplexStream) -> (Self::ReadHalf, Self::WriteHalf) {
        tokio::io::split(stream)
    }
}

/// A log sink that drops everything, for tests that read states rather than logs.
pub(crate) fn quiet() -> std::sync::Arc<dyn crate::engine::log::LogSink> {
    struct Quiet;
    impl crate::engine::log::LogSink for Quiet {
        fn record(&self, _: &crate::engine::ConnectionRecord) {}
    }
    std::sync::Arc::new(Quiet)
}
