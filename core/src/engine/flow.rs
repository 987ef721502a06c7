//! The async driver of a connection: performs what [`Connection`] asks on a [`Net`].
//!
//! Written once for every network; the daemon runs it on tokio sockets, the simulator on turmoil
//! sockets. All decisions (inspection, affinity, retries, timeouts, the log record) are the state
//! machine's, in [`super::connection`]; this file only reads, connects, sleeps and forwards.
//! Time comes from `tokio::time::Instant` (virtual under turmoil) and every `select!` is
//! `biased;`, so a simulation replays identically for a seed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep_until, timeout_at, Instant};

use crate::retry::ConnectFailure;

use super::clock::Clock;
use super::connection::{Action, Connection};
use super::forward::forward;
use super::frontend::Frontend;
use super::log::LogSink;
use super::net::Net;

/// What every connection shares: the network, the clock, where records go, process counters.
pub struct Context<N: Net> {
    /// The network.
    pub net: N,
    /// The clock.
    pub clock: Clock,
    /// Where finished connections are reported.
    pub sink: Arc<dyn LogSink>,
    /// Connections open in the process (`%ac`).
    pub actconn: AtomicU64,
    /// The most connections open at once since the memory watcher last took it: a peak between
    /// two of its ticks is not missed.
    pub actconn_peak: AtomicU64,
    /// Connections accepted by each accepting thread (HAProxy's `show activity` `accq`): how
    /// evenly the system spreads them over the threads' listeners.
    pub accepted_by_thread: Box<[AtomicU64]>,
}

impl<N: Net> Context<N> {
    /// A context on `net`, reporting to `sink`, for a process accepting on one thread.
    pub fn new(net: N, sink: Arc<dyn LogSink>) -> Self {
        Self::with_threads(net, sink, 1)
    }

    /// A context for a process accepting on `threads` threads.
    pub fn with_threads(net: N, sink: Arc<dyn LogSink>, threads: usize) -> Self {
        Context {
            net,
            clock: Clock::start(),
            sink,
            actconn: AtomicU64::new(0),
            actconn_peak: AtomicU64::new(0),
            accepted_by_thread: (0..threads.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// Runs one client connection to completion and reports it to the sink.
///
/// The connection is counted, its machine made and its stream split when this is called; the
/// future does the rest. Not an `async fn`: one stores its arguments twice (as arguments and as
/// locals), and this future lives as long as the connection.
pub fn handle<'a, N: Net>(
    ctx: &'a Context<N>,
    fe: &'a Frontend,
    client: N::Stream,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> + 'a {
    let open = ctx.actconn.fetch_add(1, Ordering::Relaxed) + 1;
    // A load first: the read-modify-write only runs while the peak is climbing.
    if open > ctx.actconn_peak.load(Ordering::Relaxed) {
        ctx.actconn_peak.fetch_max(open, Ordering::Relaxed);
    }
    fe.current.fetch_add(1, Ordering::Relaxed);
    let mut conn = Connection::new(fe, ctx.clock, &ctx.actconn, peer, Instant::now());
    if fe.tcp_keepalive {
        N::set_keepalive(&client);
    }
    let (mut cr, mut cw) = N::split(client);
    async move {
        // A server's `maxconn` slot, held while connecting and connected.
        let mut permit = None;
        let mut server = None;
        loop {
            match conn.poll(Instant::now()) {
                Action::ReadClient { max } => read_client(&mut conn, &mut cr, max).await,
                Action::TakeSlot { server } => {
                    let slot = &conn.backend().servers[server.index()];
                    let leave = conn.backend().redistributes_queue();
                    let r = slot.take_slot_until(conn.poll_timeout(), leave).await;
                    conn.on_slot(Instant::now(), r.map(|p| permit = p));
                }
                Action::Connect { server: s } => {
                    let header = conn.proxy_header(s, || N::local_addr_of(&cr));
                    let r = match header {
                        None => connect_server(ctx, &conn, s, conn.first_bytes()).await,
                        Some(h) => connect_with_header(ctx, &conn, s, h).await,
                    };
                    // Not through a closure: a local a closure borrowed stays in the flow's
                    // state for the connection's life, even once moved out.
                    let r = match r {
                        Ok((stream, sent)) => {
                            if conn.backend().servers[s.index()].tcp_keepalive {
                                N::set_keepalive(&stream);
                            }
                            server = Some(stream);
                            Ok(sent)
                        }
                        Err(e) => {
                            permit = None;
                            Err(e)
                        }
                    };
                    conn.on_connect(Instant::now(), r);
                }
                Action::Sleep => {
                    sleep_until(deadline(&conn)).await;
                    conn.handle_timeout(Instant::now());
                }
                Action::Forward {
                    timeouts,
                    server: id,
                } => {
                    // Moved out, not taken: a local left holding `None`, or a temporary
                    // `take()` made, would stay in the flow's state beside the halves.
                    let fwd = match server {
                        Some(s) => {
                            let to = (id, s);
                            forward_to::<N>(ctx, &mut conn, &mut cr, &mut cw, to, timeouts).await
                        }
                        None => None,
                    };
                    // Closed now, before the bookkeeping and the log line: `forward` leaves
                    // the FINs it skipped to this close (see `forward_to`).
                    N::finish_write(cw);
                    drop(cr);
                    conn.on_forwarded(fwd);
                    break;
                }
                Action::Close { shutdown } => {
                    if shutdown {
                        let _ = cw.shutdown().await;
                    }
                    break;
                }
            }
        }
        drop(permit);
        let logged = !fe.dont_log_null || conn.client_sent_data();
        let rec = conn.finish(Instant::now());
        if logged {
            ctx.sink.record(&rec);
        }
        fe.current.fetch_sub(1, Ordering::Relaxed);
        ctx.actconn.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Connects to server `s` within the connect deadline, sending what it can of `first`.
async fn connect_server<N: Net>(
    ctx: &Context<N>,
    conn: &Connection<'_>,
    s: crate::ServerId,
    first: &[u8],
) -> Result<(N::Stream, usize), ConnectFailure> {
    let addr = conn.backend().servers[s.index()].connect_address();
    let connect = ctx.net.connect_sending(&addr, first);
    let r = match conn.poll_timeout() {
        Some(until) => timeout_at(until, connect).await,
        None => Ok(connect.await),
    };
    match r {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(ConnectFailure::of(&e)),
        Err(_) => Err(ConnectFailure::Timeout),
    }
}

/// Connects to a `send-proxy` server: the PROXY header goes first, whole, in the connect's
/// first segment with the client's bytes when they fit; returns how many client bytes went.
async fn connect_with_header<N: Net>(
    ctx: &Context<N>,
    conn: &Connection<'_>,
    s: crate::ServerId,
    mut header: Vec<u8>,
) -> Result<(N::Stream, usize), ConnectFailure> {
    let header_len = header.len();
    header.extend_from_slice(conn.first_bytes());
    let (mut stream, sent) = connect_server(ctx, conn, s, &header).await?;
    if sent < header_len {
        let rest = &header[sent..header_len];
        let write = stream.write_all(rest);
        let r = match conn.poll_timeout() {
            Some(until) => timeout_at(until, write).await,
            None => Ok(write.await),
        };
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ConnectFailure::of(&e)),
            Err(_) => return Err(ConnectFailure::Timeout),
        }
    }
    Ok((stream, sent.saturating_sub(header_len)))
}

/// The deadline of the machine's current step (every waiting step has one).
fn deadline(conn: &Connection<'_>) -> Instant {
    conn.poll_timeout().unwrap_or_else(Instant::now)
}

/// Reads straight into the inspect buffer's spare capacity (no chunk on the task's stack, no
/// zeroing) until the inspect deadline.
async fn read_client<R: AsyncRead + Unpin>(conn: &mut Connection<'_>, cr: &mut R, max: usize) {
    let until = deadline(conn);
    let buf = conn.inspect_buffer();
    buf.reserve(max);
    let mut limited = (&mut *cr).take(max as u64);
    tokio::select! {
        biased;
        r = limited.read_buf(buf) => conn.on_client_read(r.unwrap_or(0)),
        _ = sleep_until(until) => conn.handle_timeout(Instant::now()),
    }
}

/// Writes what the connect did not send of the client's first bytes, then forwards both ways
/// until both directions end, feeding the server's bytes to the machine. `None`: the first write
/// failed. Both connections are closed on return. The connection is in its server's session
/// register meanwhile, when a change of the server's state may close it.
///
/// Not an `async fn` (which would store its arguments twice); the server's stream is split and
/// its session entered before the future is made, so only the halves are kept in it.
fn forward_to<'a, 'c: 'a, N: Net>(
    ctx: &'a Context<N>,
    conn: &'a mut Connection<'c>,
    cr: &'a mut N::ReadHalf,
    cw: &'a mut N::WriteHalf,
    (id, server): (crate::ServerId, N::Stream),
    timeouts: super::forward::ForwardTimeouts,
) -> impl std::future::Future<Output = Option<super::forward::Forwarded>> + use<'a, 'c, N> {
    let slot = &conn.backend().servers[id.index()];
    let session = slot.track_sessions.then(|| slot.sessions.enter());
    let (mut sr, mut sw) = N::split(server);
    async move {
        let rest = conn.unsent();
        let prefix_ok = rest.is_empty() || sw.write_all(rest).await.is_ok();
        if prefix_ok {
            conn.first_bytes_delivered();
        }
        let fwd = if prefix_ok {
            let tap = |chunk: &[u8]| conn.on_server_bytes(Instant::now(), chunk);
            // Pinned here and lent: `forward` pins what it is given, and a future it took by
            // value would be stored twice in its state (as given and as pinned).
            let killed = std::pin::pin!(async {
                match &session {
                    Some(s) => s.killed().await,
                    None => std::future::pending().await,
                }
            });
            let f = forward(
                ctx.clock,
                cr,
                cw,
                &mut sr,
                &mut sw,
                timeouts,
                N::io_hooks(),
                tap,
                killed,
            );
            Some(f.await)
        } else {
            None
        };
        // Both directions are done: their explicit shutdowns were sent where needed, so let the
        // sockets close on drop without a second shutdown each. The server's close now; the
        // caller closes the client's at once: `forward` leaves the FINs it skipped to them.
        N::finish_write(sw);
        drop(sr);
        fwd
    }
}
