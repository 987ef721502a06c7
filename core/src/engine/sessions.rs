//! The established connections of one server, so that a change of its state can close them at
//! once: HAProxy's `on-marked-down shutdown-sessions` (a DOWN server's connections, logged `D-`)
//! and `on-marked-up shutdown-backup-sessions` (the backup servers' connections when an active
//! server comes back, logged `U-`).
//!
//! A connection enters the register when it starts forwarding, and only when its server has
//! such an option (the register costs nothing otherwise); it leaves when it ends. Its
//! [`Session::killed`] future is one more arm in the forwarder's wait: an atomic load on each
//! wake-up, and a lock of its own switch only when the task's waker changes (once). Killing
//! walks the register in entry order, so a simulation replays identically.

use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use super::termination::Termination;

/// Why tether closed an established connection itself.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kill {
    /// Its server was marked DOWN (`on-marked-down shutdown-sessions`): HAProxy's `D-`.
    Down,
    /// An active server came UP and this connection was on a backup server
    /// (`on-marked-up shutdown-backup-sessions`): HAProxy's `U-`.
    Up,
}

impl Kill {
    /// The termination state HAProxy logs for such a connection (`D-`, `U-`).
    pub fn termination(self) -> Termination {
        match self {
            Kill::Down => Termination::KILLED_DOWN,
            Kill::Up => Termination::KILLED_UP,
        }
    }

    fn code(self) -> u8 {
        match self {
            Kill::Down => 1,
            Kill::Up => 2,
        }
    }

    fn from_code(code: u8) -> Option<Kill> {
        match code {
            1 => Some(Kill::Down),
            2 => Some(Kill::Up),
            _ => None,
        }
    }
}

/// One connection's switch: set once by whoever kills it, read by its forwarder.
#[derive(Debug, Default)]
struct Switch {
    /// 0 while alive, else [`Kill::code`].
    killed: AtomicU8,
    /// The forwarding task, woken by a kill.
    waker: Mutex<Option<Waker>>,
}

impl Switch {
    fn kill(&self, why: Kill) {
        if self
            .killed
            .compare_exchange(0, why.code(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

#[derive(Debug, Default)]
struct Register {
    next: u64,
    open: BTreeMap<u64, Arc<Switch>>,
}

/// The register of one server's established connections.
#[derive(Debug, Default)]
pub struct Sessions {
    register: Mutex<Register>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Register> {
        self.register.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection that starts forwarding; it leaves when the [`Session`] drops.
    pub fn enter(&self) -> Session<'_> {
        let switch = Arc::new(Switch::default());
        let mut r = self.lock();
        let id = r.next;
        r.next += 1;
        r.open.insert(id, switch.clone());
        Session {
            sessions: self,
            id,
            switch,
        }
    }

    /// Kills every registered connection; returns how many.
    pub fn kill_all(&self, why: Kill) -> usize {
        let switches: Vec<Arc<Switch>> = self.lock().open.values().cloned().collect();
        for s in &switches {
            s.kill(why);
        }
        switches.len()
    }

    /// Connections registered now.
    pub fn len(&self) -> usize {
        self.lock().open.len()
    }

    /// Whether no connection is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A registered connection; leaves the register on drop.
#[derive(Debug)]
pub struct Session<'a> {
    sessions: &'a Sessions,
    id: u64,
    switch: Arc<Switch>,
}

impl Session<'_> {
    /// Ready with the reason once the connection is killed. Each poll loads one atomic; the
    /// waker is stored only when it differs from the one stored last (a task's waker does not
    /// change, so once).
    pub fn killed(&self) -> impl Future<Output = Kill> + '_ {
        let mut stored: Option<Waker> = None;
        poll_fn(move |cx| {
            if let Some(k) = Kill::from_code(self.switch.killed.load(Ordering::Acquire)) {
                return Poll::Ready(k);
            }
            if !stored.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                stored = Some(cx.waker().clone());
                *self.switch.waker.lock().unwrap_or_else(|e| e.into_inner()) = stored.clone();
                // A kill between the load and the store found no waker: look again.
                if let Some(k) = Kill::from_code(self.switch.killed.load(Ordering::Acquire)) {
                    return Poll::Ready(k);
                }
            }
            Poll::Pending
        })
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.sessions.lock().open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_kill_wakes_every_registered_connection_once_and_leaving_unregisters() {
        let sessions = Sessions::default();
        let a = sessions.enter();
        let b = sessions.enter();
        assert_eq!(sessions.len(), 2);
        {
            let (ka, kb) = (a.killed(), b.killed());
            tokio::pin!(ka, kb);
            // Not killed yet: both wait.
            assert!(futures_poll(ka.as_mut()).is_pending());
            assert!(futures_poll(kb.as_mut()).is_pending());
            assert_eq!(sessions.kill_all(Kill::Down), 2);
            assert_eq!(ka.await, Kill::Down);
            // A second kill does not change the first reason.
            sessions.kill_all(Kill::Up);
            assert_eq!(kb.await, Kill::Down);
        }
        drop(a);
        assert_eq!(sessions.len(), 1);
        drop(b);
        assert!(sessions.is_empty());
        assert_eq!(sessions.kill_all(Kill::Down), 0);
    }

    #[tokio::test]
    async fn a_connection_entering_after_a_kill_is_alive() {
        let sessions = Sessions::default();
        sessions.kill_all(Kill::Down);
        let late = sessions.enter();
        let k = late.killed();
        tokio::pin!(k);
        assert!(futures_poll(k.as_mut()).is_pending());
    }

    mod through_the_engine {
        //! A whole process on the in-memory network: checks mark a server DOWN (or an active
        //! one UP) and its held connections close, or stay open without the option.

        use std::sync::Arc;
        use std::time::Duration;

        use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

        use crate::config;
        use crate::engine::log::{ConnectionRecord, LogSink};
        use crate::engine::runtime::build;
        use crate::engine::testnet::MemNet;
        use crate::engine::{Net, Process};

        /// Keeps every record.
        #[derive(Default)]
        struct Records(std::sync::Mutex<Vec<ConnectionRecord>>);

        impl LogSink for Records {
            fn record(&self, rec: &ConnectionRecord) {
                self.0.lock().unwrap().push(rec.clone());
            }
        }

        impl Records {
            /// The termination states of the connections to `server`.
            fn of(&self, server: &str) -> Vec<String> {
                let r = self.0.lock().unwrap();
                (r.iter())
                    .filter(|r| r.server.as_deref() == Some(server))
                    .map(|r| r.termination.to_string())
                    .collect()
            }
        }

        /// Frontend on 127.0.0.1:8000 to backend `app` (`balance first`, checks every second,
        /// rise 1, fall 1); each server `(name, extra lines)` listens on 10.0.0.N:80 and is
        /// checked on 10.0.0.N:81.
        async fn start(net: &MemNet, servers: &[(&str, &str)]) -> (Process<MemNet>, Arc<Records>) {
            let mut text = "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:8000\"]\n\
                            backend = \"app\"\n[[backend]]\nname = \"app\"\nbalance = \"first\"\n\
                            [backend.check]\ninter = \"1s\"\nrise = 1\nfall = 1\n"
                .to_string();
            for (i, (name, extra)) in servers.iter().enumerate() {
                text += &format!(
                    "[[backend.server]]\nname = \"{name}\"\naddress = \"10.0.0.{}:80\"\n\
                     check-port = 81\n{extra}\n",
                    i + 1
                );
            }
            let config = config::load_toml("test.toml", &text).expect("test config loads");
            let rt = build(&config, None).expect("test config builds");
            let records = Arc::new(Records::default());
            let p = Process::start(net.clone(), rt, records.clone())
                .await
                .unwrap();
            (p, records)
        }

        /// Opens a client connection and returns it with the name of the server it reached.
        async fn open(net: &MemNet) -> (DuplexStream, String) {
            let mut s = net
                .connect("127.0.0.1:8000")
                .await
                .expect("frontend answers");
            s.write_all(b"x").await.unwrap();
            let mut buf = [0u8; 16];
            let n = s.read(&mut buf).await.unwrap();
            (s, String::from_utf8_lossy(&buf[..n]).into_owned())
        }

        /// Whether the proxy closed `s` within `within`.
        async fn closed_within(s: &mut DuplexStream, within: Duration) -> bool {
            let mut buf = [0u8; 16];
            matches!(
                tokio::time::timeout(within, s.read(&mut buf)).await,
                Ok(Ok(0) | Err(_))
            )
        }

        /// Server 1 goes DOWN by its check; returns whether the held connection closed
        /// within a check interval, and the records.
        async fn held_through_down(extra: &str) -> (bool, Arc<Records>) {
            let net = MemNet::default();
            let _data1 = net.server("10.0.0.1:80", "s1").await;
            let check1 = net.server("10.0.0.1:81", "").await;
            let _data2 = net.server("10.0.0.2:80", "s2").await;
            let _check2 = net.server("10.0.0.2:81", "").await;
            let (_p, records) = start(&net, &[("s1", extra), ("s2", "")]).await;
            let (mut held, who) = open(&net).await;
            assert_eq!(who, "s1");
            check1.abort();
            let _ = check1.await;
            let closed = closed_within(&mut held, Duration::from_millis(1100)).await;
            let (_, after) = open(&net).await;
            assert_eq!(after, "s2", "a new connection goes to the server still UP");
            (closed, records)
        }

        #[tokio::test(start_paused = true)]
        async fn a_server_marked_down_by_checks_loses_its_connections_with_the_option() {
            let (closed, records) =
                held_through_down("on-marked-down = \"shutdown-sessions\"").await;
            assert!(closed, "the held connection was not closed");
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(records.of("s1"), ["D-"]);
        }

        #[tokio::test(start_paused = true)]
        async fn without_the_option_a_down_servers_connections_stay_open() {
            let (closed, records) = held_through_down("").await;
            assert!(!closed, "closed without on-marked-down");
            assert!(records.of("s1").is_empty());
        }

        /// A backup server serves while the active one is DOWN; the active one comes back UP.
        async fn backup_through_up(extra: &str) -> (bool, Arc<Records>) {
            let net = MemNet::default();
            let _data1 = net.server("10.0.0.1:80", "active").await;
            let _data2 = net.server("10.0.0.2:80", "backup").await;
            let _check2 = net.server("10.0.0.2:81", "").await;
            let (_p, records) =
                start(&net, &[("active", extra), ("backup", "backup = true")]).await;
            // The active server's check port is closed: DOWN at the first check.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let (mut held, who) = open(&net).await;
            assert_eq!(who, "backup");
            let _check1 = net.server("10.0.0.1:81", "").await;
            let closed = closed_within(&mut held, Duration::from_millis(1100)).await;
            let (_, after) = open(&net).await;
            assert_eq!(after, "active");
            (closed, records)
        }

        #[tokio::test(start_paused = true)]
        async fn an_active_server_marked_up_closes_the_backup_connections_with_the_option() {
            let (closed, records) =
                backup_through_up("on-marked-up = \"shutdown-backup-sessions\"").await;
            assert!(closed, "the backup connection was not closed");
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(records.of("backup"), ["U-"]);
        }

        #[tokio::test(start_paused = true)]
        async fn without_the_option_backup_connections_stay_open() {
            let (closed, records) = backup_through_up("").await;
            assert!(!closed, "closed without on-marked-up");
            assert!(records.of("backup").is_empty());
        }
    }

    /// Polls `f` once with a no-op waker.
    fn futures_poll<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(Waker::noop());
        f.poll(&mut cx)
    }
}
