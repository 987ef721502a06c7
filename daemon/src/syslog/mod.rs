//! Connection logs to HAProxy's `log` targets: syslog over UDP or a unix datagram socket
//! (RFC 3164/5424), or stdout/stderr.
//!
//! The data plane never waits for a log target: each line goes into a bounded queue with
//! `try_send`; one thread frames it and sends it with non-blocking sockets. A full queue, a
//! full socket buffer, an absent socket or a refused datagram drops the line and counts it
//! ([`dropped`], shown on the stats page, `show info` and the JSON/metrics views).

mod frame;
mod writer;

pub use frame::{frame, Origin};
pub use writer::{SyslogSender, QUEUE_LINES};

use std::sync::atomic::{AtomicU64, Ordering};

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log lines this process could not deliver to a target (queue full, target slow or absent),
/// counted once per target missed.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

fn count_dropped(n: u64) {
    DROPPED.fetch_add(n, Ordering::Relaxed);
}
