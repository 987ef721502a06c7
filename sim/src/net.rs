//! The simulated network: turmoil's TCP and UDP, behind the engine's [`Net`] trait.
//!
//! With this, the balancer host runs exactly the engine the daemon runs; only the sockets differ.
//!
//! One thing turmoil's TCP does not model is the SYN-ACK's way back: its connect completes when
//! the SYN arrives, one one-way latency after it left, where a kernel's completes a round trip
//! after it began. Every simulated connect ([`connect_tcp`]) therefore returns no sooner than
//! the link's round trip, read from the latencies the driver gave the links
//! ([`set_link_latency`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

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
        let mut pending = PendingConnect { addr, done: false };
        let stream = connect_tcp(addr.to_owned()).await;
        pending.done = true;
        stream
    }

    fn stream_addrs(stream: &TcpStream) -> Option<(SocketAddr, SocketAddr)> {
        Some((stream.local_addr().ok()?, stream.peer_addr().ok()?))
    }

    fn split(stream: TcpStream) -> (OwnedReadHalf, OwnedWriteHalf) {
        stream.into_split()
    }
}

/// The message latency of links the driver gives none (the turmoil builder's).
pub const DEFAULT_LINK_LATENCY: Duration = Duration::from_millis(1);

thread_local! {
    /// The one-way latency of each link the driver set on this thread's simulation, by the
    /// pair of host addresses (lower first).
    static LINKS: RefCell<BTreeMap<(IpAddr, IpAddr), Duration>> =
        const { RefCell::new(BTreeMap::new()) };
}

fn link_key(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    (a.min(b), a.max(b))
}

/// Sets the one-way latency between hosts `a` and `b` in both directions, in turmoil and for
/// [`connect_tcp`].
pub fn set_link_latency(sim: &turmoil::Sim<'_>, a: &str, b: &str, latency: Duration) {
    sim.set_link_latency(a, b, latency);
    let key = link_key(sim.lookup(a), sim.lookup(b));
    LINKS.with(|l| l.borrow_mut().insert(key, latency));
}

/// Forgets the link latencies of an earlier simulation on this thread.
pub fn forget_link_latencies() {
    LINKS.with(|l| l.borrow_mut().clear());
}

/// The one-way latency between two simulated hosts (none within a host).
fn link_latency(a: IpAddr, b: IpAddr) -> Duration {
    if a == b {
        return Duration::ZERO;
    }
    LINKS.with(|l| {
        l.borrow()
            .get(&link_key(a, b))
            .copied()
            .unwrap_or(DEFAULT_LINK_LATENCY)
    })
}

/// turmoil's TCP connect, completed when the SYN-ACK would be back: no sooner than the link's
/// round trip after it began. (When a step is longer than the round trip, turmoil's connect has
/// taken a step already and nothing more is waited: no timer, no extra step.)
pub async fn connect_tcp(addr: impl turmoil::ToSocketAddrs) -> io::Result<TcpStream> {
    let began = tokio::time::Instant::now();
    let stream = TcpStream::connect(addr).await?;
    let one_way = link_latency(stream.local_addr()?.ip(), stream.peer_addr()?.ip());
    let back = began + one_way * 2;
    if back > tokio::time::Instant::now() {
        tokio::time::sleep_until(back).await;
    }
    Ok(stream)
}

thread_local! {
    /// Connects dropped while in flight on this thread, by address (see [`PendingConnect`]).
    static ABANDONED: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
}

/// Counts a connect whose future is dropped before it completes: a connect timeout, or the
/// balancer's host restarted under it. turmoil then sends nothing, so a server that had already
/// accepted keeps that connection open for the rest of the run, where a kernel would have
/// answered its SYN-ACK (or closed the socket) with a RST. Invariants that count a server's
/// open connections allow for these.
struct PendingConnect<'a> {
    addr: &'a str,
    done: bool,
}

impl Drop for PendingConnect<'_> {
    fn drop(&mut self) {
        if !self.done {
            ABANDONED.with(|a| *a.borrow_mut().entry(self.addr.to_owned()).or_default() += 1);
        }
    }
}

/// The connects abandoned in flight on this thread since the last call, by `host:port`, and
/// starts counting afresh (a simulation runs on one thread; call it before and after a run).
pub fn take_abandoned_connects() -> BTreeMap<String, u64> {
    ABANDONED.with(|a| std::mem::take(&mut *a.borrow_mut()))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::net::Ipv4Addr;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::Duration;

    use tether_core::config::load_toml;
    use tether_core::engine::runtime::build;
    use tether_core::engine::{ConnectionRecord, LogSink, Process};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The case [`PendingConnect`] exists for: the server accepted, the balancer's host went
    /// before its connect returned. turmoil never closes the server's end; the count says so.
    #[test]
    fn a_connect_dropped_after_the_server_accepted_is_counted_and_stays_open_at_the_server() {
        take_abandoned_connects();
        let mut sim = turmoil::Builder::new()
            .tick_duration(Duration::from_millis(1))
            .build();
        let (accepted, ended) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
        sim.host("balancer", || async {
            drop(TurmoilNet.connect("server:9").await?);
            let _left_in_flight = TurmoilNet.connect("server:9").await;
            std::future::pending().await
        });
        let (a, e) = (accepted.clone(), ended.clone());
        sim.host("server", move || {
            let (a, e) = (a.clone(), e.clone());
            async move {
                let listener = TcpListener::bind("0.0.0.0:9").await?;
                loop {
                    let (mut stream, _) = listener.accept().await?;
                    a.set(a.get() + 1);
                    let e = e.clone();
                    tokio::task::spawn_local(async move {
                        let _ = stream.read(&mut [0; 1]).await;
                        e.set(e.get() + 1);
                    });
                }
            }
        });
        sim.set_link_latency("balancer", "server", Duration::from_millis(10));
        while accepted.get() < 2 {
            sim.step().expect("step");
        }
        sim.crash("balancer");
        for _ in 0..1_000 {
            sim.step().expect("step");
        }
        assert_eq!(
            ended.get(),
            1,
            "the completed connect closed, the abandoned one did not"
        );
        let abandoned = take_abandoned_connects();
        assert_eq!(abandoned.get("server:9"), Some(&1), "{abandoned:?}");
    }

    /// A connect over a 40 ms link takes the round trip, 80 ms, as a kernel's does (turmoil's
    /// own takes the SYN's way only); within a host, none.
    #[test]
    fn a_connect_takes_the_links_round_trip() {
        forget_link_latencies();
        let mut sim = turmoil::Builder::new()
            .tick_duration(Duration::from_millis(1))
            .build();
        sim.host("server", || async {
            let listener = TcpListener::bind("0.0.0.0:9").await?;
            loop {
                let (stream, _) = listener.accept().await?;
                std::mem::forget(stream);
            }
        });
        sim.client("client", async {
            let t = tokio::time::Instant::now();
            let _s = connect_tcp("server:9").await?;
            let took = t.elapsed();
            assert!(
                (Duration::from_millis(80)..Duration::from_millis(83)).contains(&took),
                "connect took {took:?}"
            );
            Ok(())
        });
        set_link_latency(&sim, "client", "server", Duration::from_millis(40));
        sim.run().unwrap();
        forget_link_latencies();
    }

    struct Quiet;
    impl LogSink for Quiet {
        fn record(&self, _: &ConnectionRecord) {}
    }

    /// A DNS answer to `query`: the question copied, then one A record (compressed name).
    fn answer(query: &[u8], ip: Ipv4Addr) -> Vec<u8> {
        let mut m = query.to_vec();
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 1;
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        m.extend_from_slice(&ip.octets());
        m
    }

    /// The balancer in the simulation resolves a server's name over turmoil UDP, as the daemon
    /// does over real sockets.
    #[test]
    fn servers_resolve_over_simulated_udp() {
        // A fixed seed: turmoil draws message latencies from its RNG, entropy-seeded otherwise.
        let mut sim = turmoil::Builder::new().rng_seed(1).build();
        sim.host("dns", || async {
            let s = UdpSocket::bind("0.0.0.0:53").await?;
            let mut buf = [0u8; 512];
            loop {
                let (n, from) = s.recv_from(&mut buf).await?;
                let IpAddr::V4(app) = turmoil::lookup("app") else {
                    unreachable!()
                };
                s.send_to(&answer(&buf[..n], app), from).await?;
            }
        });
        sim.host("app", || async {
            let l = TcpListener::bind("0.0.0.0:80").await?;
            loop {
                let (mut s, _) = l.accept().await?;
                s.write_all(b"app").await?;
            }
        });
        sim.host("balancer", || async {
            let dns = SocketAddr::new(turmoil::lookup("dns"), 53);
            let text = format!(
                "[[frontend]]\nname = \"fe\"\nbind = [\"0.0.0.0:9000\"]\nbackend = \"b\"\n\
                 [[resolvers]]\nname = \"dns\"\n[[resolvers.nameserver]]\nname = \"ns\"\n\
                 address = \"{dns}\"\n[[backend]]\nname = \"b\"\n[[backend.server]]\n\
                 name = \"s1\"\naddress = \"app.example:80\"\ncheck = false\n\
                 resolvers = \"dns\"\nresolve-prefer = \"ipv4\"\ninit-addr = [\"none\"]\n"
            );
            let rt = build(&load_toml("t.toml", &text).unwrap(), None).unwrap();
            let p = Process::start(TurmoilNet, rt, Arc::new(Quiet))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(p);
            Ok(())
        });
        sim.client("client", async {
            // The server has no address (`init-addr none`) until the first answer: until then
            // the balancer closes connections at once; then every one reaches `app`.
            for _ in 0..50 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut s = TcpStream::connect("balancer:9000").await?;
                s.write_all(b"x").await?;
                let mut buf = [0u8; 3];
                if s.read_exact(&mut buf).await.is_ok() {
                    assert_eq!(&buf, b"app");
                    return Ok(());
                }
            }
            panic!("the server never got the address DNS gives");
        });
        sim.run().unwrap();
    }
}
