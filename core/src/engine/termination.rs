//! How a connection ended, in HAProxy's two-character termination state (`SC`, `cD`, `--`...),
//! so log tooling written for HAProxy's `option tcplog` reads tether's lines unchanged.

use std::fmt;

use serde::{Serialize, Serializer};

/// The first character: what ended the connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum EndCause {
    /// `-`: a normal end, both sides closed.
    Normal,
    /// `C`: the client aborted or its side failed.
    ClientAbort,
    /// `S`: the server aborted, refused, or was unusable.
    ServerAbort,
    /// `P`: the proxy refused the connection (a broken PROXY header).
    ProxyError,
    /// `c`: the client-side idle timeout (`timeout client`).
    ClientTimeout,
    /// `s`: the server-side timeout (`timeout server`, `timeout queue`).
    ServerTimeout,
    /// `R`: a resource of the balancer itself ran out (descriptors, memory), not the server.
    LocalResource,
    /// `D`: tether closed it because its server was marked DOWN (`on-marked-down
    /// shutdown-sessions`).
    ServerDown,
    /// `U`: tether closed it, on a backup server, because an active server came UP
    /// (`on-marked-up shutdown-backup-sessions`).
    ServerUp,
}

/// The second character: where the connection was when it ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum EndPhase {
    /// `-`: after a normal end.
    Closed,
    /// `R`: waiting for the request (inspection).
    Request,
    /// `Q`: waiting in a server's queue.
    Queue,
    /// `C`: connecting to a server.
    Connect,
    /// `D`: forwarding data.
    Data,
}

/// HAProxy's termination state of one connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Termination {
    /// What ended it.
    pub cause: EndCause,
    /// Where it was.
    pub phase: EndPhase,
}

impl Termination {
    /// `--`: both sides closed normally.
    pub const NORMAL: Termination = Termination::new(EndCause::Normal, EndPhase::Closed);
    /// `CR`: the client closed before sending anything.
    pub const CLIENT_CLOSED_EARLY: Termination =
        Termination::new(EndCause::ClientAbort, EndPhase::Request);
    /// `PR`: a required PROXY header was broken.
    pub const BAD_PROXY_HEADER: Termination =
        Termination::new(EndCause::ProxyError, EndPhase::Request);
    /// `PR`: a route rule refused the connection (HAProxy's `tcp-request ... reject`).
    pub const DENIED: Termination = Termination::new(EndCause::ProxyError, EndPhase::Request);
    /// `RC`: connecting failed for lack of a local descriptor or memory (HAProxy's
    /// `SF_ERR_RESOURCE`); the server was never reached.
    pub const LOCAL_RESOURCE: Termination =
        Termination::new(EndCause::LocalResource, EndPhase::Connect);
    /// `SC`: no usable server, or every connect attempt failed.
    pub const NO_SERVER: Termination = Termination::new(EndCause::ServerAbort, EndPhase::Connect);
    /// `SQ`: the server's queue was full (`maxqueue`).
    pub const QUEUE_FULL: Termination = Termination::new(EndCause::ServerAbort, EndPhase::Queue);
    /// `sQ`: `timeout queue` passed.
    pub const QUEUE_TIMEOUT: Termination =
        Termination::new(EndCause::ServerTimeout, EndPhase::Queue);
    /// `CD`: the client failed while data moved.
    pub const CLIENT_ABORT: Termination = Termination::new(EndCause::ClientAbort, EndPhase::Data);
    /// `SD`: the server failed while data moved.
    pub const SERVER_ABORT: Termination = Termination::new(EndCause::ServerAbort, EndPhase::Data);
    /// `cD`: the client went idle for `timeout client`.
    pub const CLIENT_IDLE: Termination = Termination::new(EndCause::ClientTimeout, EndPhase::Data);
    /// `sD`: the server went idle for `timeout server`.
    pub const SERVER_IDLE: Termination = Termination::new(EndCause::ServerTimeout, EndPhase::Data);
    /// `D-`: closed because its server was marked DOWN. HAProxy 2.6 logs no phase for it
    /// (seen side by side in `e2e_shutdown_sessions.rs`), so neither does tether.
    pub const KILLED_DOWN: Termination = Termination::new(EndCause::ServerDown, EndPhase::Closed);
    /// `U-`: closed, on a backup server, because an active server came UP.
    pub const KILLED_UP: Termination = Termination::new(EndCause::ServerUp, EndPhase::Closed);

    /// A termination state from its two parts.
    pub const fn new(cause: EndCause, phase: EndPhase) -> Self {
        Termination { cause, phase }
    }

    /// The two characters HAProxy logs.
    pub fn chars(self) -> [char; 2] {
        let cause = match self.cause {
            EndCause::Normal => '-',
            EndCause::ClientAbort => 'C',
            EndCause::ServerAbort => 'S',
            EndCause::ProxyError => 'P',
            EndCause::ClientTimeout => 'c',
            EndCause::ServerTimeout => 's',
            EndCause::LocalResource => 'R',
            EndCause::ServerDown => 'D',
            EndCause::ServerUp => 'U',
        };
        let phase = match self.phase {
            EndPhase::Closed => '-',
            EndPhase::Request => 'R',
            EndPhase::Queue => 'Q',
            EndPhase::Connect => 'C',
            EndPhase::Data => 'D',
        };
        [cause, phase]
    }
}

impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b] = self.chars();
        write!(f, "{a}{b}")
    }
}

impl Serialize for Termination {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_print_as_haproxy_logs_them() {
        let all = [
            (Termination::NORMAL, "--"),
            (Termination::CLIENT_CLOSED_EARLY, "CR"),
            (Termination::BAD_PROXY_HEADER, "PR"),
            (Termination::NO_SERVER, "SC"),
            (Termination::LOCAL_RESOURCE, "RC"),
            (Termination::QUEUE_FULL, "SQ"),
            (Termination::QUEUE_TIMEOUT, "sQ"),
            (Termination::CLIENT_ABORT, "CD"),
            (Termination::SERVER_ABORT, "SD"),
            (Termination::CLIENT_IDLE, "cD"),
            (Termination::SERVER_IDLE, "sD"),
            (Termination::KILLED_DOWN, "D-"),
            (Termination::KILLED_UP, "U-"),
        ];
        for (t, text) in all {
            assert_eq!(t.to_string(), text);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{text}\""));
        }
    }
}
