//! The log thread: a bounded queue in front of non-blocking sends to each target.

use std::io::{self, Write as _};
use std::net::{ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::SystemTime;

use tether_core::config::log::{Destination, LogTarget, Severity};

use super::frame::{frame, Origin};

/// Lines waiting for the log thread at most; more are dropped and counted.
pub const QUEUE_LINES: usize = 4096;

/// One line to send: its text and when it was logged.
struct Entry {
    time: SystemTime,
    line: String,
    severity: Severity,
}

/// The handle the connection-log sink holds: queue a line, never wait.
#[derive(Debug)]
pub struct SyslogSender {
    tx: SyncSender<Entry>,
    targets: u64,
    dropped: Arc<AtomicU64>,
}

/// An opened target.
enum Output {
    Udp(UdpSocket),
    Unix(UnixDatagram, PathBuf),
    Stdout,
    Stderr,
}

impl Output {
    fn open(dest: &Destination) -> io::Result<Self> {
        Ok(match dest {
            Destination::Udp(hostport) => {
                let addr = hostport.to_socket_addrs()?.next().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("{hostport}: no address"))
                })?;
                let local = if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let sock = UdpSocket::bind(local)?;
                // Connected: an ICMP port unreachable comes back as ECONNREFUSED, so an
                // absent syslog server is counted rather than silently missed.
                sock.connect(addr)?;
                sock.set_nonblocking(true)?;
                Output::Udp(sock)
            }
            Destination::Unix(path) => {
                let sock = UnixDatagram::unbound()?;
                sock.set_nonblocking(true)?;
                Output::Unix(sock, path.clone())
            }
            Destination::Stdout => Output::Stdout,
            Destination::Stderr => Output::Stderr,
        })
    }

    /// Sends one framed message; any error (would block, absent, refused) is a drop.
    fn send(&self, msg: &str) -> io::Result<()> {
        match self {
            Output::Udp(s) => s.send(msg.as_bytes()).map(drop),
            // Sent by path each time: a syslog daemon that restarts (new socket) is found again.
            Output::Unix(s, path) => s.send_to(msg.as_bytes(), path).map(drop),
            Output::Stdout => writeln!(io::stdout().lock(), "{msg}"),
            Output::Stderr => writeln!(io::stderr().lock(), "{msg}"),
        }
    }
}

impl SyslogSender {
    /// Opens every target and starts the log thread; `None` when there are no targets. An
    /// address that cannot be opened (a UDP host that does not resolve) is an error here, at
    /// start, not a silent loss later.
    pub fn start(targets: &[LogTarget], origin: Origin) -> io::Result<Option<Self>> {
        if targets.is_empty() {
            return Ok(None);
        }
        let mut opened = Vec::with_capacity(targets.len());
        for t in targets {
            let dest = Destination::parse(&t.address)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let out = Output::open(&dest)
                .map_err(|e| io::Error::new(e.kind(), format!("log {}: {e}", t.address)))?;
            opened.push((t.clone(), out));
        }
        let (tx, rx) = sync_channel(QUEUE_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&dropped);
        std::thread::Builder::new()
            .name("tether-log".into())
            .spawn(move || run(rx, opened, origin, counter))?;
        Ok(Some(SyslogSender {
            tx,
            targets: targets.len() as u64,
            dropped,
        }))
    }

    /// Queues one connection log line (level `info`); never blocks.
    pub fn send(&self, time: SystemTime, line: String) {
        self.send_at(time, line, Severity::Info)
    }

    /// Queues one line at `severity` (a health check's `notice`, a server DOWN's `alert`);
    /// never blocks.
    pub fn send_at(&self, time: SystemTime, line: String, severity: Severity) {
        match self.tx.try_send(Entry {
            time,
            line,
            severity,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.drop_lines(self.targets)
            }
        }
    }

    /// Lines this sender dropped (each target missed counts once).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn drop_lines(&self, n: u64) {
        count(&self.dropped, n);
    }
}

fn count(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
    super::count_dropped(n);
}

/// The log thread: until every sender is gone, frame each line for each target and send it.
fn run(
    rx: Receiver<Entry>,
    targets: Vec<(LogTarget, Output)>,
    origin: Origin,
    dropped: Arc<AtomicU64>,
) {
    for entry in rx {
        for (target, out) in &targets {
            let Some(pri) = target.priority(entry.severity) else {
                continue;
            };
            let msg = frame(
                target.format,
                pri,
                entry.time,
                &origin,
                &entry.line,
                target.len,
            );
            if let Err(e) = out.send(&msg) {
                tracing::trace!("log {}: {e}", target.address);
                count(&dropped, 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::config::log::{Facility, SyslogFormat};

    fn origin() -> Origin {
        Origin {
            hostname: "h".into(),
            tag: "tether".into(),
            pid: 7,
        }
    }

    #[test]
    fn a_unix_receiver_gets_framed_lines() {
        let dir = std::env::temp_dir().join(format!("tether-syslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut t = LogTarget::new(path.display().to_string(), Facility::Local1);
        t.format = SyslogFormat::Rfc5424;
        let s = SyslogSender::start(&[t], origin()).unwrap().unwrap();
        s.send(SystemTime::UNIX_EPOCH, "line one".into());
        let mut buf = [0u8; 256];
        rx.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let n = rx.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(
            got,
            "<142>1 1970-01-01T00:00:00.000000Z h tether 7 - - line one"
        );
        assert_eq!(s.dropped(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_absent_unix_socket_counts_drops() {
        let t = LogTarget::new("/nonexistent/tether/log.sock", Facility::Local0);
        let s = SyslogSender::start(&[t], origin()).unwrap().unwrap();
        for _ in 0..3 {
            s.send(SystemTime::UNIX_EPOCH, "x".into());
        }
        // Up to 10 s (2000 naps of 5 ms) for the sender thread to try all three.
        for _ in 0..2000 {
            if s.dropped() >= 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(s.dropped(), 3);
        assert!(super::super::dropped() >= 3);
    }

    #[test]
    fn no_targets_no_thread() {
        assert!(SyslogSender::start(&[], origin()).unwrap().is_none());
    }
}
