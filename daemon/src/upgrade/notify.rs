//! systemd's readiness protocol (`sd_notify`), spoken directly: one datagram of `KEY=VALUE`
//! lines to the unix socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
//! namespace). Without the variable (not started by systemd) every call is a no-op.
//!
//! A `Type=notify-reload` unit learns from it when tether is ready (`READY=1`), reloading
//! (`RELOADING=1` with `MONOTONIC_USEC`), stopping (`STOPPING=1`), and which process is the
//! service's main one after a hitless upgrade (`MAINPID=`).

use std::ffi::OsString;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets to its notification socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Where notifications go: systemd's socket, or nowhere.
#[derive(Debug, Clone)]
pub struct Notifier {
    target: Option<OsString>,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` names (none when unset or empty).
    pub fn from_env() -> Self {
        Notifier::to(std::env::var_os(NOTIFY_SOCKET).filter(|s| !s.is_empty()))
    }

    /// A notifier sending to `target` (a path or `@abstract`), or nowhere.
    pub fn to(target: Option<OsString>) -> Self {
        Notifier { target }
    }

    /// Whether a service manager listens.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// The service is up: listening and serving.
    pub fn ready(&self) -> io::Result<()> {
        self.send("READY=1\n")
    }

    /// A reload started (configuration, or an upgrade); [`Notifier::ready`] ends it.
    pub fn reloading(&self) -> io::Result<()> {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\n",
            monotonic_usec()
        ))
    }

    /// `pid` is the service's main process from now on, and it is ready (the end of an
    /// upgrade: the old process hands the service over and goes on only to drain).
    pub fn handed_over(&self, pid: u32) -> io::Result<()> {
        self.send(&format!("MAINPID={pid}\nREADY=1\n"))
    }

    /// The service is stopping.
    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1\n")
    }

    /// A free-form status line (`systemctl status` shows it).
    pub fn status(&self, text: &str) -> io::Result<()> {
        let line: String = text.chars().filter(|c| *c != '\n').collect();
        self.send(&format!("STATUS={line}\n"))
    }

    /// Sends one notification datagram. Never waits: a manager whose queue is full (it reads
    /// nothing, or a signal storm outran it) gets an error the caller logs, and the daemon keeps
    /// serving and reloading (a blocking send stalled the signal loop for good).
    fn send(&self, message: &str) -> io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let addr = socket_addr(target)?;
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        let sent = socket.send_to_addr(message.as_bytes(), &addr)?;
        if sent != message.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "notification datagram truncated",
            ));
        }
        Ok(())
    }
}

/// `$NOTIFY_SOCKET` as an address: `@name` is abstract, anything else a path.
fn socket_addr(target: &OsString) -> io::Result<SocketAddr> {
    let bytes = target.as_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None if bytes.starts_with(b"/") => SocketAddr::from_pathname(target),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{NOTIFY_SOCKET}={}: neither an absolute path nor @abstract",
                target.to_string_lossy()
            ),
        )),
    }
}

/// `CLOCK_MONOTONIC` in microseconds: systemd matches `RELOADING=1` against it.
fn monotonic_usec() -> u128 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u128 * 1_000_000 + t.tv_nsec as u128 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A datagram socket standing in for systemd's, at a path in a scratch directory.
    fn manager() -> (tempdir::Dir, UnixDatagram, Notifier) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (dir, socket, Notifier::to(Some(path.into_os_string())))
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a notification arrives");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    mod tempdir {
        /// A directory removed on drop.
        pub struct Dir(pub std::path::PathBuf);

        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "tether-notify-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_manager_that_reads_nothing_never_blocks_the_sender() {
        let (_dir, _socket, notifier) = manager();
        let (done, finished) = std::sync::mpsc::channel();
        // Far more than a unix datagram queue holds (`net.unix.max_dgram_qlen`, 10 by default).
        std::thread::spawn(move || {
            let results: Vec<bool> = (0..100).map(|_| notifier.ready().is_ok()).collect();
            let _ = done.send(results);
        });
        let results = finished
            .recv_timeout(Duration::from_secs(5))
            .expect("sd_notify blocked on a full manager queue");
        assert!(results[0], "the first notification is delivered");
        assert!(
            results.iter().any(|ok| !ok),
            "a full queue is reported as an error"
        );
    }

    #[test]
    fn each_state_arrives_as_one_datagram_of_lines() {
        let (_dir, socket, notifier) = manager();
        assert!(notifier.is_active());
        notifier.ready().unwrap();
        assert_eq!(receive(&socket), "READY=1\n");
        notifier.reloading().unwrap();
        let reloading = receive(&socket);
        let usec: u128 = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .and_then(|rest| rest.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("{reloading:?}"))
            .parse()
            .unwrap();
        assert!(usec > 0 && usec <= monotonic_usec(), "{usec}");
        notifier.handed_over(4242).unwrap();
        assert_eq!(receive(&socket), "MAINPID=4242\nREADY=1\n");
        notifier.status("draining\n3 left").unwrap();
        assert_eq!(receive(&socket), "STATUS=draining3 left\n");
        notifier.stopping().unwrap();
        assert_eq!(receive(&socket), "STOPPING=1\n");
    }

    #[test]
    fn abstract_sockets_are_named_with_an_at_sign() {
        let name = format!("tether-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Notifier::to(Some(format!("@{name}").into()))
            .ready()
            .unwrap();
        assert_eq!(receive(&socket), "READY=1\n");
    }

    #[test]
    fn without_a_manager_nothing_is_sent_and_bad_addresses_are_errors() {
        let none = Notifier::to(None);
        assert!(!none.is_active());
        none.ready().unwrap();
        let relative = Notifier::to(Some("run/notify".into()));
        let err = relative.ready().unwrap_err();
        assert!(err.to_string().contains("absolute path"), "{err}");
        let (dir, socket, _) = manager();
        drop(socket);
        let gone = Notifier::to(Some(dir.0.join("notify").into_os_string()));
        assert!(gone.ready().is_err(), "a vanished manager is an error");
    }
}
