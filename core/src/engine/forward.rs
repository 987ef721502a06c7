//! Moving bytes both ways at once, with idle timeouts, half-close, and a tap on the server's side.
//!
//! The two directions are independent futures joined in the connection's task, so a peer that
//! stops reading never stalls the other direction. Server bytes are never held back: the tap sees
//! a chunk (to learn affinity keys from the cleartext handshake) right before it is written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};

use super::clock::Clock;

/// Size of each direction's buffer.
pub const FORWARD_BUF: usize = 32 * 1024;

/// How one direction ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PumpEnd {
    /// The source closed its side cleanly; the destination's write side was shut down.
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
}

impl Forwarded {
    /// HAProxy's termination state for a connection that reached the data phase.
    pub fn termination(&self) -> [char; 2] {
        use PumpEnd::*;
        match (self.up_end, self.down_end) {
            (ReadError, _) | (_, WriteError) => ['C', 'D'],
            (_, ReadError) | (WriteError, _) => ['S', 'D'],
            (Idle, _) => ['c', 'D'],
            (_, Idle) => ['s', 'D'],
            _ => ['-', '-'],
        }
    }
}

/// Timing of a forwarding session.
#[derive(Copy, Clone, Debug)]
pub struct ForwardTimeouts {
    /// Idle limit while waiting on the client.
    pub client: Duration,
    /// Idle limit while waiting on the server.
    pub server: Duration,
}

struct Shared {
    clock: Clock,
    /// Milliseconds (clock timestamps) of the last byte moved in either direction.
    last_activity: AtomicU64,
}

impl Shared {
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
#[allow(clippy::too_many_arguments)]
pub async fn forward<CR, CW, SR, SW, T>(
    clock: Clock,
    client_r: &mut CR,
    client_w: &mut CW,
    server_r: &mut SR,
    server_w: &mut SW,
    timeouts: ForwardTimeouts,
    mut tap: T,
) -> Forwarded
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    SR: AsyncRead + Unpin,
    SW: AsyncWrite + Unpin,
    T: FnMut(&[u8]) -> bool,
{
    let shared = Shared {
        clock,
        last_activity: AtomicU64::new(clock.now().as_millis()),
    };
    let abort_up = Notify::new();
    let abort_down = Notify::new();
    let mut tapping = true;
    let up = pump(
        &shared,
        client_r,
        server_w,
        timeouts.client,
        &abort_up,
        &abort_down,
        |_: &[u8]| {},
    );
    let down = pump(
        &shared,
        server_r,
        client_w,
        timeouts.server,
        &abort_down,
        &abort_up,
        |chunk: &[u8]| {
            if tapping {
                tapping = tap(chunk);
            }
        },
    );
    let ((up, up_end), (down, down_end)) = tokio::join!(up, down);
    Forwarded {
        up,
        down,
        up_end,
        down_end,
    }
}

async fn pump<R, W>(
    shared: &Shared,
    r: &mut R,
    w: &mut W,
    idle: Duration,
    my_abort: &Notify,
    other_abort: &Notify,
    mut tap: impl FnMut(&[u8]),
) -> (u64, PumpEnd)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; FORWARD_BUF];
    let mut total = 0u64;
    let timer = sleep_until(shared.idle_deadline(idle));
    tokio::pin!(timer);
    let end = loop {
        let n = tokio::select! {
            biased;
            _ = my_abort.notified() => break PumpEnd::Aborted,
            r = r.read(&mut buf) => match r {
                Ok(0) => {
                    let _ = w.shutdown().await;
                    break PumpEnd::Eof;
                }
                Ok(n) => n,
                Err(_) => break PumpEnd::ReadError,
            },
            _ = &mut timer => {
                let deadline = shared.idle_deadline(idle);
                if deadline <= Instant::now() {
                    break PumpEnd::Idle;
                }
                timer.as_mut().reset(deadline);
                continue;
            }
        };
        shared.touch();
        tap(&buf[..n]);
        let wrote = tokio::select! {
            biased;
            _ = my_abort.notified() => break PumpEnd::Aborted,
            w = w.write_all(&buf[..n]) => w,
        };
        if wrote.is_err() {
            break PumpEnd::WriteError;
        }
        total += n as u64;
    };
    if !matches!(end, PumpEnd::Eof) {
        // Failure or idleness ends the whole connection: stop the other direction too.
        other_abort.notify_one();
    }
    (total, end)
}
