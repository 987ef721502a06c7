//! Moving bytes both ways at once, with idle timeouts, half-close, and a tap on the server's side.
//!
//! The two directions are independent futures joined in the connection's task, so a peer that
//! stops reading never stalls the other direction. Server bytes are never held back: the tap sees
//! a chunk (to learn affinity keys from the cleartext handshake) right before it is written.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, Instant};

use super::buffers;
use super::clock::Clock;
use super::sessions::Kill;
use super::termination::Termination;

/// Size of each direction's buffer.
pub const FORWARD_BUF: usize = 32 * 1024;

/// Writes bytes that the end of the stream follows at once ([`super::Net::poll_write_last`]):
/// the transport may hold them for the FIN, so both leave in one segment.
pub type WriteLast<W> = fn(Pin<&mut W>, &mut Context<'_>, &[u8]) -> Poll<io::Result<usize>>;

/// Waits until a read half can be read without waiting (bytes, its end, or an error) and takes
/// no buffer to do so ([`super::Net::read_readiness`]).
pub type ReadReady<R> = fn(Pin<&mut R>, &mut Context<'_>) -> Poll<io::Result<()>>;

/// Moves bytes from a source straight to a destination inside the kernel (Linux `splice(2)`
/// through a pipe), never copying them to user space ([`super::Net::splice`]). The transport
/// keeps whatever it needs (the pipe, the bytes in it) in the read half, so the call can be
/// dropped and made again at any point without losing a byte.
pub type Splice<R, W> = fn(Pin<&mut R>, Pin<&mut W>, &mut Context<'_>) -> Poll<Spliced>;

/// What one [`Splice`] call did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Spliced {
    /// This many bytes reached the destination.
    Moved(usize),
    /// The source ended and every byte read from it has reached the destination.
    End,
    /// Reading the source failed (reset...).
    ReadError,
    /// Writing the destination failed.
    WriteError,
    /// This pair cannot splice (another kind of socket, no pipe to be had): copy instead. No
    /// byte has moved.
    Unavailable,
}

/// What the transport offers the forwarder beyond `AsyncRead`/`AsyncWrite`.
pub struct IoHooks<R, W> {
    /// How bytes that the end of the stream follows are written.
    pub write_last: WriteLast<W>,
    /// How to wait for a source without holding a buffer; `None`: the transport cannot, and
    /// each direction keeps its buffer while it waits in `read`.
    pub read_ready: Option<ReadReady<R>>,
    /// How to move bytes without copying them, once the engine no longer looks at them and a
    /// read has filled a whole buffer (a bulk transfer, as HAProxy's `option splice-auto`);
    /// `None`: always copy.
    pub splice: Option<Splice<R, W>>,
}

impl<R, W> Clone for IoHooks<R, W> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R, W> Copy for IoHooks<R, W> {}

impl<R, W: AsyncWrite> IoHooks<R, W> {
    /// Hooks for a transport with neither hint: plain writes, buffers kept while waiting.
    pub fn plain() -> Self {
        IoHooks {
            write_last: plain_write_last::<W>,
            read_ready: None,
            splice: None,
        }
    }
}

/// A [`WriteLast`] for transports with no such hint: a plain write.
pub fn plain_write_last<W: AsyncWrite>(
    w: Pin<&mut W>,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    w.poll_write(cx, buf)
}

/// How one direction ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PumpEnd {
    /// The source closed its side cleanly; the destination's write side was shut down, or
    /// left for the caller's close when the other direction had reached EOF too.
    Eof,
    /// Reading the source failed (reset...).
    ReadError,
    /// Writing the destination failed.
    WriteError,
    /// Nothing moved in either direction for the idle timeout.
    Idle,
    /// The other direction failed and cancelled this one.
    Aborted,
}

/// The result of forwarding.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Forwarded {
    /// Bytes client → server.
    pub up: u64,
    /// Bytes server → client.
    pub down: u64,
    /// How the client → server direction ended.
    pub up_end: PumpEnd,
    /// How the server → client direction ended.
    pub down_end: PumpEnd,
    /// tether closed the connection itself, on a change of server state.
    pub killed: Option<Kill>,
}

impl Forwarded {
    /// HAProxy's termination state for a connection that reached the data phase.
    pub fn termination(&self) -> Termination {
        use PumpEnd::*;
        if let Some(k) = self.killed {
            return k.termination();
        }
        match (self.up_end, self.down_end) {
            (ReadError, _) | (_, WriteError) => Termination::CLIENT_ABORT,
            (_, ReadError) | (WriteError, _) => Termination::SERVER_ABORT,
            (Idle, _) => Termination::CLIENT_IDLE,
            (_, Idle) => Termination::SERVER_IDLE,
            _ => Termination::NORMAL,
        }
    }
}

/// Timing of a forwarding session.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ForwardTimeouts {
    /// Idle limit while waiting on the client; zero: none (HAProxy `timeout client 0`).
    pub client: Duration,
    /// Idle limit while waiting on the server; zero: none (HAProxy `timeout server 0`).
    pub server: Duration,
    /// Idle limit on the client once the server's end was passed on to it (HAProxy
    /// `timeout client-fin`); `None`: `client` still applies.
    pub client_fin: Option<Duration>,
    /// Idle limit on the server once the client's end was passed on to it (HAProxy
    /// `timeout server-fin`); `None`: `server` still applies.
    pub server_fin: Option<Duration>,
}

/// The idle limits of one direction's source: while both directions are open, and once the
/// other direction has ended (its destination, this source, is half-closed).
#[derive(Copy, Clone, Debug)]
struct IdleLimits {
    open: Duration,
    half_closed: Option<Duration>,
}

struct Shared {
    clock: Clock,
    /// Milliseconds (clock timestamps) of the last byte moved in either direction.
    last_activity: AtomicU64,
    /// Whether each direction (up, down) has read EOF from its source.
    eof: [AtomicBool; 2],
    /// Set for a direction (up, down) when the other one failed or went idle: stop too.
    abort: [AtomicBool; 2],
    /// Each direction's idle limits (up: the client's, down: the server's).
    limits: [IdleLimits; 2],
    /// Whether each direction is waiting for its source (the only wait its limit times).
    reading: [AtomicBool; 2],
    /// Set for a direction by the idle watch when its source stayed silent past its limit.
    idle: [AtomicBool; 2],
}

impl Shared {
    /// A direction's idle limit now: once the other direction has ended (this source is
    /// half-closed) its `half_closed` limit, if it has one.
    fn limit(&self, dir: usize) -> Duration {
        let limits = self.limits[dir];
        match limits.half_closed {
            Some(h) if self.eof[1 - dir].load(Ordering::Relaxed) => h,
            _ => limits.open,
        }
    }

    /// The waiting direction whose limit ends the connection first, with that limit; a zero
    /// limit is none (HAProxy `timeout client 0`). On a tie, the client's side.
    fn first_to_expire(&self) -> Option<(usize, Duration)> {
        [UP, DOWN]
            .into_iter()
            .filter(|&d| self.reading[d].load(Ordering::Relaxed))
            .map(|d| (d, self.limit(d)))
            .filter(|(_, l)| !l.is_zero())
            .min_by_key(|&(_, l)| l)
    }

    fn touch(&self) {
        self.last_activity
            .store(self.clock.now().as_millis(), Ordering::Relaxed);
    }

    fn idle_deadline(&self, idle: Duration) -> Instant {
        let last = crate::Timestamp(self.last_activity.load(Ordering::Relaxed));
        self.clock.instant(last) + idle
    }
}

/// Forwards until both directions end. `tap` sees every server→client chunk while it returns
/// `true`; once it returns `false` it is not called again.
///
/// A direction that reads EOF while the other is still open shuts its destination's write side
/// down (half-close). Once both have read EOF the connection is over and a shutdown would only
/// precede the close by a syscall, so the later one (or both, when their EOFs arrive together)
/// skips it: **the caller must drop the streams as soon as this returns**, and closing them
/// sends those FINs (their receive queues are drained, so a close is a clean FIN, not a reset).
///
/// When a source's end is already waiting behind the bytes just read (a server that answers and
/// closes), the last bytes go out through [`IoHooks::write_last`] and the FIN follows at once, so the
/// transport can send both in one segment and the peer acknowledges once, as HAProxy does.
///
/// When `killed` is ready first, both directions stop at once (their streams closed by the
/// caller) and the result carries the reason; pass `std::future::pending()` for none.
///
/// Not an `async fn`, which would store its arguments twice for the connection's lifetime.
#[allow(clippy::too_many_arguments)]
pub fn forward<'a, R, W, T, K>(
    clock: Clock,
    client_r: &'a mut R,
    client_w: &'a mut W,
    server_r: &'a mut R,
    server_w: &'a mut W,
    timeouts: ForwardTimeouts,
    io: IoHooks<R, W>,
    mut tap: T,
    killed: K,
) -> impl Future<Output = Forwarded> + 'a
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    T: FnMut(&[u8]) -> bool + 'a,
    K: Future<Output = Kill> + 'a,
{
    // Made before the future, which then keeps only these (not the timeouts and clock too).
    let shared = Shared {
        clock,
        last_activity: AtomicU64::new(clock.now().as_millis()),
        eof: [AtomicBool::new(false), AtomicBool::new(false)],
        abort: [AtomicBool::new(false), AtomicBool::new(false)],
        limits: [
            IdleLimits {
                open: timeouts.client,
                half_closed: timeouts.client_fin,
            },
            IdleLimits {
                open: timeouts.server,
                half_closed: timeouts.server_fin,
            },
        ],
        reading: [AtomicBool::new(false), AtomicBool::new(false)],
        idle: [AtomicBool::new(false), AtomicBool::new(false)],
    };
    async move {
        let mut tapping = true;
        let tap_down = |chunk: &[u8]| {
            if tapping {
                tapping = tap(chunk);
            }
            tapping
        };
        // The directions are made inside the joined block, not before it: a future built outside
        // and moved in is stored twice in the block's state (as the captured value and inside the
        // join), which made a connection's flow 1.3 KiB larger.
        let both = async {
            tokio::join!(
                pump(&shared, UP, client_r, server_w, &io, |_: &[u8]| false),
                pump(&shared, DOWN, server_r, client_w, &io, tap_down),
            )
        };
        let timer = sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut watch = idle_watch(&shared, timer.as_mut());
        tokio::pin!(both, killed);
        let mut kill = None;
        let ((up, up_end), (down, down_end)) = tokio::select! {
            biased;
            done = &mut both => done,
            never = &mut watch => match never {},
            why = &mut killed => {
                kill = Some(why);
                // Both directions see their flag on this very poll (each checks it first).
                for a in &shared.abort {
                    a.store(true, Ordering::Relaxed);
                }
                both.await
            }
        };
        Forwarded {
            up,
            down,
            up_end,
            down_end,
            killed: kill,
        }
    }
}

/// Times the connection's idleness with one timer for both directions: it runs out when the
/// last byte moved (either way) is older than the limit of a direction waiting for its source,
/// and marks that direction idle, which ends it and so the connection. A timer that runs out
/// early (bytes moved since it was set) is set again; a limit that changes (a half-close) or
/// a direction that stops or starts waiting sets it at once. Never completes.
fn idle_watch<'a>(
    shared: &'a Shared,
    mut timer: Pin<&'a mut tokio::time::Sleep>,
) -> impl Future<Output = std::convert::Infallible> + 'a {
    let mut armed = None;
    let mut fired = false;
    poll_fn(move |cx| {
        if fired {
            return Poll::Pending;
        }
        let Some((dir, limit)) = shared.first_to_expire() else {
            return Poll::Pending;
        };
        if armed != Some((dir, limit)) {
            timer.as_mut().reset(shared.idle_deadline(limit));
            armed = Some((dir, limit));
        }
        while timer.as_mut().poll(cx).is_ready() {
            let deadline = shared.idle_deadline(limit);
            if deadline <= Instant::now() {
                shared.idle[dir].store(true, Ordering::Relaxed);
                fired = true;
                // The direction sees its flag when the task runs again (it runs in this task).
                cx.waker().wake_by_ref();
                break;
            }
            timer.as_mut().reset(deadline);
        }
        Poll::Pending
    })
}

/// Index of the client → server direction in [`Shared::eof`].
const UP: usize = 0;
/// Index of the server → client direction in [`Shared::eof`].
const DOWN: usize = 1;

/// One direction. A buffer is held only while bytes move: where the transport can wait for a
/// source without one ([`IoHooks::read_ready`]), it is taken when the source is readable and
/// given back once a read leaves it drained (not filled), so an idle connection holds none and
/// a bulk transfer keeps one buffer for as long as the source stays ahead. `tap` sees each
/// chunk before it is written and says whether it wants the next ones.
///
/// Once a read fills the whole buffer and `tap` wants no more, the direction splices
/// ([`IoHooks::splice`]) for the rest of the connection, unless the transport says it cannot.
///
/// Not an `async fn`: one stores its arguments twice (as arguments and as locals), and this
/// future lives as long as the connection, twice over.
#[allow(clippy::manual_async_fn)] // an `async fn` stores its arguments twice
fn pump<'a, R, W>(
    shared: &'a Shared,
    dir: usize,
    r: &'a mut R,
    w: &'a mut W,
    io: &'a IoHooks<R, W>,
    mut tap: impl FnMut(&[u8]) -> bool + 'a,
) -> impl Future<Output = (u64, PumpEnd)> + 'a
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    async move {
        let mut held: Option<Vec<u8>> = None;
        let mut total = 0u64;
        let abort = &shared.abort[dir];
        let reading = &shared.reading[dir];
        // `Some` while this direction moves bytes by splicing.
        let mut splice = None;
        let mut may_splice = io.splice.is_some();
        let end = loop {
            reading.store(true, Ordering::Relaxed);
            let step = tokio::select! {
                biased;
                () = aborted(abort) => break PumpEnd::Aborted,
                () = aborted(&shared.idle[dir]) => break PumpEnd::Idle,
                s = next_step(r, w, &mut held, io.read_ready, splice) => s,
            };
            reading.store(false, Ordering::Relaxed);
            let after = match step {
                Step::Read(after) => after,
                Step::Spliced(Spliced::Moved(n)) => {
                    shared.touch();
                    total += n as u64;
                    continue;
                }
                Step::Spliced(Spliced::End) => break end_of_stream(shared, dir, w).await,
                Step::Spliced(Spliced::ReadError) => break PumpEnd::ReadError,
                Step::Spliced(Spliced::WriteError) => break PumpEnd::WriteError,
                Step::Spliced(Spliced::Unavailable) => {
                    (splice, may_splice) = (None, false);
                    continue;
                }
            };
            let buf = held.get_or_insert_with(Vec::new);
            if buf.is_empty() {
                match after {
                    Ahead::End => break end_of_stream(shared, dir, w).await,
                    Ahead::Error => break PumpEnd::ReadError,
                    Ahead::Nothing => continue,
                }
            }
            shared.touch();
            let tapping = tap(buf);
            let write = match after {
                Ahead::End => io.write_last,
                Ahead::Nothing | Ahead::Error => plain_write_last::<W>,
            };
            let wrote = tokio::select! {
                biased;
                () = aborted(abort) => break PumpEnd::Aborted,
                w = write_through(w, buf, write) => w,
            };
            if wrote.is_err() {
                break PumpEnd::WriteError;
            }
            total += buf.len() as u64;
            let bulk = after == Ahead::Nothing && buf.len() == buf.capacity();
            if let Some(s) = settle_buffer(&mut held, io, may_splice && !tapping && bulk) {
                splice = Some(s);
            }
            match after {
                Ahead::Nothing => {}
                Ahead::End => break end_of_stream(shared, dir, w).await,
                Ahead::Error => break PumpEnd::ReadError,
            }
        };
        finish(shared, dir, held, end).await;
        (total, end)
    }
}

/// After a chunk went out: with `to_splice` (bulk, and nothing left to look at) the buffer goes
/// back and the kernel moves the bytes from now on (the splice to use is returned); a drained
/// buffer goes back too where the transport can wait without one; a full one is kept.
fn settle_buffer<R, W>(
    held: &mut Option<Vec<u8>>,
    io: &IoHooks<R, W>,
    to_splice: bool,
) -> Option<Splice<R, W>> {
    let drained = held.as_ref().is_some_and(|b| b.len() < b.capacity());
    if to_splice || (io.read_ready.is_some() && drained) {
        if let Some(b) = held.take() {
            buffers::give_back(b);
        }
    }
    to_splice.then_some(io.splice).flatten()
}

/// A direction has ended: its buffer goes back, and unless it ended cleanly the other direction
/// stops too.
async fn finish(shared: &Shared, dir: usize, held: Option<Vec<u8>>, end: PumpEnd) {
    if let Some(b) = held {
        buffers::give_back(b);
    }
    if !matches!(end, PumpEnd::Eof) {
        // Failure or idleness ends the whole connection: stop the other direction too. It
        // runs in this task (`forward` joins both), so waking the task is all it needs.
        shared.abort[1 - dir].store(true, Ordering::Relaxed);
        wake_task().await;
    }
}

/// What the wait for a source brought.
enum Step {
    /// Bytes read into the held buffer, and what was found behind them.
    Read(Ahead),
    /// What splicing did.
    Spliced(Spliced),
}

/// Splices when `splice` is set, else reads the next chunk ([`poll_next_chunk`]).
///
/// A poll function, not an `async fn`: this future is what each direction of an idle
/// connection waits in, and an `async fn` (with the reads it awaits) would be stored whole in
/// the connection's task, several times the size of these references.
fn next_step<'a, R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    r: &'a mut R,
    w: &'a mut W,
    held: &'a mut Option<Vec<u8>>,
    ready: Option<ReadReady<R>>,
    splice: Option<Splice<R, W>>,
) -> impl Future<Output = Step> + 'a {
    poll_fn(move |cx| match splice {
        Some(splice) => splice(Pin::new(&mut *r), Pin::new(&mut *w), cx).map(Step::Spliced),
        None => poll_next_chunk(r, held, ready, cx).map(Step::Read),
    })
}

/// Waits for the source, then reads into `held` (emptied first; taken only now when it is
/// `None`) what the source gives without waiting. An empty buffer with [`Ahead::End`] is the
/// source's end, with [`Ahead::Error`] a failed read.
///
/// With `ready`, the wait holds no buffer: readiness first, then the buffer. A wake-up that
/// finds nothing to read (readiness is a hint) gives the buffer back and waits again. Without
/// it, the wait is a `read` into the buffer, kept from one call to the next (a pending read
/// has put nothing in it, so emptying it again on the next poll loses nothing).
fn poll_next_chunk<R: AsyncRead + Unpin>(
    r: &mut R,
    held: &mut Option<Vec<u8>>,
    ready: Option<ReadReady<R>>,
    cx: &mut Context<'_>,
) -> Poll<Ahead> {
    let Some(ready) = ready else {
        let buf = held.get_or_insert_with(|| Vec::with_capacity(FORWARD_BUF));
        buf.clear();
        return match poll_read_once(r, buf, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => Poll::Ready(Ahead::End),
            // Whatever else the source already holds, its end included, is taken without
            // waiting, so that an end right behind these bytes leaves in the same segment.
            Poll::Ready(Ok(_)) => Poll::Ready(read_ready(r, buf, cx)),
            Poll::Ready(Err(_)) => Poll::Ready(Ahead::Error),
        };
    };
    loop {
        match ready(Pin::new(&mut *r), cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(Ahead::Error),
            Poll::Ready(Ok(())) => {}
        }
        // Read into spare capacity (never zeroed; pages are touched only as bytes arrive).
        let buf = held.get_or_insert_with(buffers::take);
        buf.clear();
        let after = read_ready(r, buf, cx);
        if !buf.is_empty() || after != Ahead::Nothing {
            return Poll::Ready(after);
        }
        if let Some(b) = held.take() {
            buffers::give_back(b);
        }
    }
}

/// One read into the spare capacity of `buf`: how many bytes it appended.
fn poll_read_once<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    std::pin::pin!(r.read_buf(buf)).poll(cx)
}

/// The source has ended: half-close the destination, unless the other direction has ended too
/// and the caller's close will send the FIN anyway.
async fn end_of_stream<W: AsyncWrite + Unpin>(shared: &Shared, dir: usize, w: &mut W) -> PumpEnd {
    shared.eof[dir].store(true, Ordering::Relaxed);
    let other = &shared.eof[1 - dir];
    if !other.load(Ordering::Relaxed) {
        // Both EOFs often arrive in one wake-up: let the other direction read its own before
        // deciding, so neither needs a shutdown.
        yield_once().await;
        if !other.load(Ordering::Relaxed) {
            let _ = w.shutdown().await;
        }
    }
    PumpEnd::Eof
}

/// What the source held beyond the bytes already read, found without waiting.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Ahead {
    /// Nothing more yet (or the buffer is full): the source is still open.
    Nothing,
    /// The source's end: no byte will follow those in the buffer.
    End,
    /// Reading failed; the bytes already in the buffer are still delivered.
    Error,
}

/// Appends to `buf` what `r` can give without waiting, and says whether its end came with it.
/// A read that would wait is not an error: it leaves the task registered for the source's
/// readiness and costs no system call on tokio's sockets, whose readiness a short read cleared
/// (all but a pending end, which stays set, so an end that has arrived is seen here).
fn read_ready<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, cx: &mut Context<'_>) -> Ahead {
    while buf.len() < buf.capacity() {
        let before = buf.len();
        match poll_read_once(r, buf, cx) {
            Poll::Pending => return Ahead::Nothing,
            Poll::Ready(Ok(0)) => return Ahead::End,
            Poll::Ready(Ok(_)) => debug_assert!(buf.len() > before),
            Poll::Ready(Err(_)) => return Ahead::Error,
        }
    }
    Ahead::Nothing
}

/// Writes all of `data` with `write`: a plain write, or [`WriteLast`] when the end follows.
async fn write_through<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut data: &[u8],
    write: WriteLast<W>,
) -> io::Result<()> {
    while !data.is_empty() {
        let n = poll_fn(|cx| write(Pin::new(&mut *w), cx, data)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    Ok(())
}

/// Ready once `flag` is set. It registers no waker, unlike a `Notify`: whoever sets the flag
/// is the other direction, polled by the same `join!` in the same task, and wakes that task.
fn aborted(flag: &AtomicBool) -> impl Future<Output = ()> + '_ {
    poll_fn(move |_| {
        if flag.load(Ordering::Relaxed) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

/// Schedules the current task to be polled again, so the other direction sees its abort flag.
async fn wake_task() {
    poll_fn(|cx| {
        cx.waker().wake_by_ref();
        Poll::Ready(())
    })
    .await;
}

/// Returns `Pending` once, waking the task at once, so the other futures polled with this one
/// (the other direction, in `join!`) run before it continues. No syscall, no timer; unlike
/// `tokio::task::yield_now` it does not wait for the I/O driver.
async fn yield_once() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, split, DuplexStream, ReadHalf, WriteHalf};

    const LONG: Duration = Duration::from_secs(3600);

    fn timeouts(client: Duration, server: Duration) -> ForwardTimeouts {
        ForwardTimeouts {
            client,
            server,
            client_fin: None,
            server_fin: None,
        }
    }

    /// The proxy's two sockets (as halves) and the peers' ends.
    struct Wires {
        client_peer: DuplexStream,
        server_peer: DuplexStream,
        cr: ReadHalf<DuplexStream>,
        cw: WriteHalf<DuplexStream>,
        sr: ReadHalf<DuplexStream>,
        sw: WriteHalf<DuplexStream>,
    }

    fn wires(cap: usize) -> Wires {
        let (client_peer, proxy_client) = duplex(cap);
        let (server_peer, proxy_server) = duplex(cap);
        let (cr, cw) = split(proxy_client);
        let (sr, sw) = split(proxy_server);
        Wires {
            client_peer,
            server_peer,
            cr,
            cw,
            sr,
            sw,
        }
    }

    /// Forwards between the proxy's halves, then closes them at once, as the flow does.
    async fn forward_then_close<T: FnMut(&[u8]) -> bool>(
        (mut cr, mut cw): (ReadHalf<DuplexStream>, WriteHalf<DuplexStream>),
        (mut sr, mut sw): (ReadHalf<DuplexStream>, WriteHalf<DuplexStream>),
        limits: ForwardTimeouts,
        io: IoHooks<ReadHalf<DuplexStream>, WriteHalf<DuplexStream>>,
        tap: T,
    ) -> Forwarded {
        let f = forward(
            Clock::start(),
            &mut cr,
            &mut cw,
            &mut sr,
            &mut sw,
            limits,
            io,
            tap,
            std::future::pending(),
        )
        .await;
        drop((cr, cw, sr, sw));
        f
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[tokio::test]
    async fn bulk_both_ways_arrives_intact_and_half_close_propagates() {
        let Wires {
            mut client_peer,
            mut server_peer,
            cr,
            cw,
            sr,
            sw,
        } = wires(8 * 1024);
        // Larger than any buffer size, and not a multiple of one.
        let up_data = pattern(300_001, 1);
        let down_data = pattern(200_003, 7);
        let mut tapped = Vec::new();
        let fwd = forward_then_close(
            (cr, cw),
            (sr, sw),
            timeouts(LONG, LONG),
            IoHooks::plain(),
            |chunk| {
                tapped.extend_from_slice(chunk);
                tapped.len() < 1000
            },
        );
        let (u, d) = (up_data.clone(), down_data.clone());
        let client = async move {
            let (mut r, mut w) = split(&mut client_peer);
            let send = async {
                w.write_all(&u).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let recv = r.read_to_end(&mut got);
            let (_, n) = tokio::join!(send, recv);
            n.unwrap();
            got
        };
        let server = async move {
            let (mut r, mut w) = split(&mut server_peer);
            let send = async {
                w.write_all(&d).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let recv = r.read_to_end(&mut got);
            let (_, n) = tokio::join!(send, recv);
            n.unwrap();
            got
        };
        let (f, at_client, at_server) = tokio::join!(fwd, client, server);
        assert_eq!(at_client, down_data);
        assert_eq!(at_server, up_data);
        assert_eq!(f.up, up_data.len() as u64);
        assert_eq!(f.down, down_data.len() as u64);
        assert_eq!((f.up_end, f.down_end), (PumpEnd::Eof, PumpEnd::Eof));
        assert_eq!(f.termination(), Termination::NORMAL);
        // The tap saw a prefix of the server's bytes, and stopped once it said so.
        assert!(tapped.len() >= 1000, "tap saw {} bytes", tapped.len());
        assert!(tapped.len() < down_data.len());
        assert_eq!(tapped[..], down_data[..tapped.len()]);
    }

    #[tokio::test]
    async fn one_side_closing_leaves_the_other_direction_running() {
        let Wires {
            mut client_peer,
            mut server_peer,
            cr,
            cw,
            sr,
            sw,
        } = wires(1024);
        let fwd = forward_then_close(
            (cr, cw),
            (sr, sw),
            timeouts(LONG, LONG),
            IoHooks::plain(),
            |_| true,
        );
        let peers = async move {
            // The client sends its request and half-closes; the server sees EOF, then answers.
            client_peer.write_all(b"request").await.unwrap();
            client_peer.shutdown().await.unwrap();
            let mut req = Vec::new();
            server_peer.read_to_end(&mut req).await.unwrap();
            assert_eq!(req, b"request");
            server_peer.write_all(b"late answer").await.unwrap();
            server_peer.shutdown().await.unwrap();
            let mut answer = Vec::new();
            client_peer.read_to_end(&mut answer).await.unwrap();
            answer
        };
        let (f, answer) = tokio::join!(fwd, peers);
        assert_eq!(answer, b"late answer");
        assert_eq!((f.up, f.down), (7, 11));
        assert_eq!((f.up_end, f.down_end), (PumpEnd::Eof, PumpEnd::Eof));
    }

    thread_local! {
        /// Bytes written through [`counting_write_last`] on this thread.
        static WRITTEN_LAST: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// A [`WriteLast`] that counts what goes through it, then writes plainly.
    fn counting_write_last(
        w: Pin<&mut WriteHalf<DuplexStream>>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = w.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            WRITTEN_LAST.with(|c| c.set(c.get() + n));
        }
        r
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bytes_followed_by_the_end_go_out_as_the_last_write() {
        for server_closes in [true, false] {
            WRITTEN_LAST.with(|c| c.set(0));
            let Wires {
                mut client_peer,
                mut server_peer,
                cr,
                cw,
                sr,
                sw,
            } = wires(64 * 1024);
            // The server's answer (and, in the first case, its end) is there before forwarding
            // starts, as when a response and its FIN arrive in one wake-up.
            server_peer.write_all(b"answer then close").await.unwrap();
            if server_closes {
                server_peer.shutdown().await.unwrap();
            }
            let fwd = forward_then_close(
                (cr, cw),
                (sr, sw),
                timeouts(LONG, LONG),
                IoHooks {
                    write_last: counting_write_last,
                    read_ready: None,
                    splice: None,
                },
                |_| true,
            );
            let client = async {
                let mut got = vec![0u8; 17];
                client_peer.read_exact(&mut got).await.unwrap();
                if !server_closes {
                    // The server is still open: nothing was written as a last chunk; end it.
                    assert_eq!(WRITTEN_LAST.with(|c| c.get()), 0);
                    server_peer.shutdown().await.unwrap();
                }
                let mut rest = Vec::new();
                client_peer.read_to_end(&mut rest).await.unwrap();
                client_peer.shutdown().await.unwrap();
                assert!(rest.is_empty());
                got
            };
            let (f, got) = tokio::join!(fwd, client);
            assert_eq!(got, b"answer then close");
            assert_eq!(f.down, 17);
            assert_eq!(f.down_end, PumpEnd::Eof);
            let expected = if server_closes { 17 } else { 0 };
            assert_eq!(
                WRITTEN_LAST.with(|c| c.get()),
                expected,
                "server closes: {server_closes}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_ends_both_directions() {
        let Wires {
            mut client_peer,
            server_peer,
            mut cr,
            mut cw,
            mut sr,
            mut sw,
        } = wires(1024);
        let fwd = forward(
            Clock::start(),
            &mut cr,
            &mut cw,
            &mut sr,
            &mut sw,
            timeouts(Duration::from_secs(5), Duration::from_secs(30)),
            IoHooks::plain(),
            |_| true,
            std::future::pending(),
        );
        let client = async {
            // Activity resets the idle clock: 4 s of silence, a byte, 4 s more is not idle.
            tokio::time::sleep(Duration::from_secs(4)).await;
            client_peer.write_all(b"x").await.unwrap();
        };
        let start = Instant::now();
        let (f, ()) = tokio::join!(fwd, client);
        let took = start.elapsed();
        assert_eq!(f.up_end, PumpEnd::Idle);
        assert_eq!(f.down_end, PumpEnd::Aborted);
        assert_eq!(f.termination(), Termination::CLIENT_IDLE);
        assert_eq!(f.up, 1);
        assert!(
            took >= Duration::from_secs(9) && took < Duration::from_secs(10),
            "idle after {took:?}"
        );
        drop(server_peer);
    }

    /// HAProxy `timeout client-fin` / `server-fin`: once one side's end was passed on, the
    /// other side (now half-closed) gets its own, shorter idle limit.
    #[tokio::test(start_paused = true)]
    async fn the_shorter_limit_of_the_two_sides_ends_the_connection() {
        let Wires {
            client_peer,
            server_peer,
            mut cr,
            mut cw,
            mut sr,
            mut sw,
        } = wires(1024);
        let fwd = forward(
            Clock::start(),
            &mut cr,
            &mut cw,
            &mut sr,
            &mut sw,
            timeouts(Duration::from_secs(30), Duration::from_secs(5)),
            IoHooks::plain(),
            |_| true,
            std::future::pending(),
        );
        let start = Instant::now();
        let f = fwd.await;
        let took = start.elapsed();
        assert_eq!((f.up_end, f.down_end), (PumpEnd::Aborted, PumpEnd::Idle));
        assert_eq!(f.termination(), Termination::SERVER_IDLE);
        assert!(
            took >= Duration::from_secs(5) && took < Duration::from_secs(6),
            "idle after {took:?}"
        );
        drop((client_peer, server_peer));
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_closed_side_gets_its_fin_timeout() {
        for server_ends in [true, false] {
            let Wires {
                mut client_peer,
                mut server_peer,
                mut cr,
                mut cw,
                mut sr,
                mut sw,
            } = wires(1024);
            let limits = ForwardTimeouts {
                client_fin: Some(Duration::from_secs(2)),
                server_fin: Some(Duration::from_secs(3)),
                ..timeouts(Duration::from_secs(30), Duration::from_secs(30))
            };
            let fwd = forward(
                Clock::start(),
                &mut cr,
                &mut cw,
                &mut sr,
                &mut sw,
                limits,
                IoHooks::plain(),
                |_| true,
                std::future::pending(),
            );
            let ender = async {
                let (ending, other) = if server_ends {
                    (&mut server_peer, &mut client_peer)
                } else {
                    (&mut client_peer, &mut server_peer)
                };
                ending.write_all(b"bye").await.unwrap();
                ending.shutdown().await.unwrap();
                let mut got = Vec::new();
                other.read_to_end(&mut got).await.unwrap();
                got
            };
            let start = Instant::now();
            let (f, got) = tokio::join!(fwd, ender);
            let took = start.elapsed();
            assert_eq!(got, b"bye");
            let (fin, ends) = if server_ends {
                (Duration::from_secs(2), (PumpEnd::Idle, PumpEnd::Eof))
            } else {
                (Duration::from_secs(3), (PumpEnd::Eof, PumpEnd::Idle))
            };
            assert_eq!((f.up_end, f.down_end), ends, "server ends: {server_ends}");
            assert!(
                took >= fin && took < fin + Duration::from_secs(1),
                "server ends: {server_ends}: idle after {took:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_idle_timeout_never_fires() {
        let Wires {
            mut client_peer,
            mut server_peer,
            mut cr,
            mut cw,
            mut sr,
            mut sw,
        } = wires(1024);
        let fwd = forward(
            Clock::start(),
            &mut cr,
            &mut cw,
            &mut sr,
            &mut sw,
            timeouts(Duration::ZERO, Duration::ZERO),
            IoHooks::plain(),
            |_| true,
            std::future::pending(),
        );
        let peers = async {
            // An hour of silence, then a request, its answer, and a clean close.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            client_peer.write_all(b"ping").await.unwrap();
            let mut got = [0u8; 4];
            server_peer.read_exact(&mut got).await.unwrap();
            server_peer.write_all(b"pong").await.unwrap();
            client_peer.read_exact(&mut got).await.unwrap();
            client_peer.shutdown().await.unwrap();
            server_peer.shutdown().await.unwrap();
            (client_peer, server_peer)
        };
        // Bounded: a forwarder that gave up would leave the peers waiting for ever.
        let both = tokio::time::timeout(Duration::from_secs(7200), async {
            tokio::join!(fwd, peers)
        });
        let (f, _peers) = both.await.expect("the exchange completes");
        assert_eq!((f.up_end, f.down_end), (PumpEnd::Eof, PumpEnd::Eof));
        assert_eq!((f.up, f.down, f.termination()), (4, 4, Termination::NORMAL));
    }

    #[tokio::test]
    async fn a_dead_destination_aborts_the_other_direction() {
        let Wires {
            mut client_peer,
            server_peer,
            mut cr,
            mut cw,
            mut sr,
            mut sw,
        } = wires(1024);
        // The server is gone: writing to it fails, and the whole connection ends.
        drop(server_peer);
        let fwd = forward(
            Clock::start(),
            &mut cr,
            &mut cw,
            &mut sr,
            &mut sw,
            timeouts(LONG, LONG),
            IoHooks::plain(),
            |_| true,
            std::future::pending(),
        );
        let client = async {
            let _ = client_peer.write_all(b"hello?").await;
        };
        let (f, ()) = tokio::join!(fwd, client);
        assert_eq!(f.up_end, PumpEnd::WriteError);
        assert!(
            matches!(f.down_end, PumpEnd::Aborted | PumpEnd::Eof),
            "{:?}",
            f.down_end
        );
        assert_eq!(f.termination(), Termination::SERVER_ABORT);
    }
}
