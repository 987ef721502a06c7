//! The simulated network: turmoil's TCP, behind the engine's [`Net`] trait.
//!
//! With this, the balancer host runs exactly the engine the daemon runs; only the sockets differ.

use std::cell::RefCell;
use std::collections::BTreeMap;
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
        let mut pending = PendingConnect { addr, done: false };
        let stream = TcpStream::connect(addr.to_owned()).await;
        pending.done = true;
        stream
    }

    fn split(stream: TcpStream) -> (OwnedReadHalf, OwnedWriteHalf) {
        stream.into_split()
    }
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
    use std::rc::Rc;
    use std::time::Duration;

    use tokio::io::AsyncReadExt;

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
}
