//! Listening sockets a new process received from the one it replaces, until the code that
//! would bind the same address takes them: [`crate::net::TokioNet`] for frontends, the stats
//! listener for its own. Process-wide, as inherited descriptors are (systemd's `LISTEN_FDS`
//! works the same way); what nobody claims once the process serves is closed by [`close_rest`].

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::sync::Mutex;

static INHERITED: Mutex<Vec<(String, OwnedFd)>> = Mutex::new(Vec::new());

/// What a listening socket is for: part of its name in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A frontend's `bind`.
    Frontend,
    /// The stats listener.
    Stats,
}

/// The registry name of the socket for `role` bound on `bind` (as configured).
pub fn name(role: Role, bind: &str) -> String {
    match role {
        Role::Frontend => format!("frontend {bind}"),
        Role::Stats => format!("stats {bind}"),
    }
}

/// Keeps a received socket for whoever binds `name`.
pub fn offer(name: String, fd: OwnedFd) {
    lock().push((name, fd));
}

/// The inherited listener for `role` on `bind`, if one came: non-blocking, ready for tokio.
/// A socket that is not a TCP listener bound where the configuration says (a port of 0 matches
/// any) is closed and not returned, so the caller binds afresh.
pub fn take_tcp(role: Role, bind: &str) -> Option<TcpListener> {
    let wanted = name(role, bind);
    let fd = {
        let mut all = lock();
        let i = all.iter().position(|(n, _)| *n == wanted)?;
        all.remove(i).1
    };
    let listener = TcpListener::from(fd);
    let at = listener.local_addr().ok()?;
    let matches = match bind.parse::<SocketAddr>() {
        Ok(want) => want.ip() == at.ip() && (want.port() == 0 || want.port() == at.port()),
        Err(_) => false,
    };
    if !matches || listener.set_nonblocking(true).is_err() {
        tracing::warn!(%bind, %at, "inherited socket does not match its address; binding afresh");
        return None;
    }
    Some(listener)
}

/// Closes every inherited socket nobody took (addresses the new configuration dropped) and
/// returns their names.
pub fn close_rest() -> Vec<String> {
    lock().drain(..).map(|(name, _)| name).collect()
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(String, OwnedFd)>> {
    INHERITED.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test owns the process-wide registry (tests run in parallel threads).
    #[test]
    fn sockets_are_taken_by_role_and_address_once_and_the_rest_closed() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a_addr = a.local_addr().unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b_addr = b.local_addr().unwrap();
        offer(name(Role::Frontend, "127.0.0.1:0"), OwnedFd::from(a));
        offer(name(Role::Stats, &b_addr.to_string()), OwnedFd::from(b));
        let stray = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        offer(name(Role::Frontend, "127.0.0.2:1"), OwnedFd::from(stray));
        assert!(take_tcp(Role::Stats, "127.0.0.1:0").is_none(), "wrong role");
        let got = take_tcp(Role::Frontend, "127.0.0.1:0").expect("inherited");
        assert_eq!(got.local_addr().unwrap(), a_addr);
        assert!(
            take_tcp(Role::Frontend, "127.0.0.1:0").is_none(),
            "taken once"
        );
        // Bound elsewhere than its name says: refused (and closed).
        assert!(take_tcp(Role::Frontend, "127.0.0.2:1").is_none());
        assert_eq!(close_rest(), vec![format!("stats {b_addr}")]);
        assert!(close_rest().is_empty());
        // Closed: the port is free again.
        drop(got);
        std::net::TcpListener::bind(b_addr).expect("closed socket freed its port");
    }
}
