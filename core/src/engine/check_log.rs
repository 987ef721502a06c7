//! HAProxy 2.6's health-check log lines, word for word, so log tooling written for HAProxy
//! keeps matching: the per-result line of `option log-health-checks` (`src/check.c`,
//! `set_server_check_status`) and the `Server b/s is DOWN|UP` transition lines
//! (`src/server.c`, `srv_update_status` with `srv_append_status`).

use super::backend::HealthStep;
use crate::server::check::Verdict;
use crate::server::Transition;

/// The server a line is about.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// Backend name.
    pub backend: &'a str,
    /// Server name.
    pub server: &'a str,
    /// A backup server (`backup ` / `Backup ` in the lines).
    pub backup: bool,
}

/// How a check (or an agent's check) went.
#[derive(Clone, Copy, Debug)]
pub struct Checked<'a> {
    /// The check's verdict.
    pub verdict: &'a Verdict,
    /// How long the check took, ms.
    pub duration_ms: u128,
}

/// The backend right after a transition: the counts HAProxy appends to its line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Census {
    /// Non-backup servers that take traffic.
    pub active: usize,
    /// Backup servers that would.
    pub backup: usize,
    /// The server's open connections.
    pub sessions: u64,
    /// Connections waiting in the server's queue.
    pub queued: u64,
}

/// `, reason: DESC[, code: N][, info: "..."], check duration: Nms`: a check's part of a line.
pub fn status_part(c: &Checked<'_>) -> String {
    format!(
        ", reason: {}, check duration: {}ms",
        c.verdict.reason(),
        c.duration_ms
    )
}

/// `Health check for [backup ]server b/s succeeded|failed, reason: ..., status: 1/2 UP.`;
/// `drain` when the server's weight is 0 (HAProxy writes `DRAIN` for an UP one).
pub fn check_line(who: &Subject<'_>, c: &Checked<'_>, step: &HealthStep, drain: bool) -> String {
    let (x, y) = step.progress;
    let state = match (step.up, drain) {
        (false, _) => "DOWN",
        (true, true) => "DRAIN",
        (true, false) => "UP",
    };
    format!(
        "Health check for {}server {}/{} {}{}, status: {x}/{y} {state}.",
        if who.backup { "backup " } else { "" },
        who.backend,
        who.server,
        if c.verdict.status.is_ok() {
            "succeeded"
        } else {
            "failed"
        },
        status_part(c)
    )
}

/// `Server b/s is DOWN<cause>. N active and M backup servers left. ...` or its UP twin. The
/// cause is a check's [`status_part`], ` via b/s` for a tracking server, or empty when
/// `log-health-checks` has already logged the reason on the check's own line (as HAProxy does).
pub fn transition_line(who: &Subject<'_>, t: Transition, n: &Census, cause: &str) -> String {
    let head = format!(
        "{}Server {}/{} is {}{cause}",
        if who.backup { "Backup " } else { "" },
        who.backend,
        who.server,
        match t {
            Transition::Up => "UP",
            Transition::Down => "DOWN",
        },
    );
    let on_backup = if n.backup > 0 && n.active == 0 {
        " Running on backup."
    } else {
        ""
    };
    match t {
        Transition::Down => format!(
            "{head}. {} active and {} backup servers left.{on_backup} {} sessions active, 0 \
             requeued, {} remaining in queue.",
            n.active, n.backup, n.sessions, n.queued
        ),
        Transition::Up => format!(
            "{head}. {} active and {} backup servers online.{on_backup} 0 sessions requeued, \
             {} total in queue.",
            n.active, n.backup, n.queued
        ),
    }
}

/// HAProxy's info for a failed connect: the system's message without Rust's ` (os error N)`.
pub fn os_error_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" (os error ") {
        Some((message, _)) if e.raw_os_error().is_some() => message.to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::check::CheckStatus;

    const WHO: Subject<'static> = Subject {
        backend: "b",
        server: "s1",
        backup: false,
    };

    fn checked(verdict: &Verdict) -> Checked<'_> {
        Checked {
            verdict,
            duration_ms: 0,
        }
    }

    #[test]
    fn lines_read_as_haproxy_2_6_writes_them() {
        let refused = Verdict::new(CheckStatus::L4Con, None, "Connection refused");
        let step = HealthStep {
            transition: Some(Transition::Down),
            moved: true,
            progress: (0, 2),
            up: false,
        };
        assert_eq!(
            check_line(&WHO, &checked(&refused), &step, false),
            "Health check for server b/s1 failed, reason: Layer4 connection problem, info: \
             \"Connection refused\", check duration: 0ms, status: 0/2 DOWN."
        );
        let census = Census {
            active: 1,
            ..Census::default()
        };
        assert_eq!(
            transition_line(
                &WHO,
                Transition::Down,
                &census,
                &status_part(&checked(&refused))
            ),
            "Server b/s1 is DOWN, reason: Layer4 connection problem, info: \"Connection \
             refused\", check duration: 0ms. 1 active and 0 backup servers left. 0 sessions \
             active, 0 requeued, 0 remaining in queue."
        );
        let ok = Verdict::new(CheckStatus::L4Ok, None, "");
        let census = Census {
            active: 2,
            ..Census::default()
        };
        assert_eq!(
            transition_line(&WHO, Transition::Up, &census, &status_part(&checked(&ok))),
            "Server b/s1 is UP, reason: Layer4 check passed, check duration: 0ms. 2 active and 0 \
             backup servers online. 0 sessions requeued, 0 total in queue."
        );
        assert_eq!(
            transition_line(&WHO, Transition::Up, &census, ""),
            "Server b/s1 is UP. 2 active and 0 backup servers online. 0 sessions requeued, 0 \
             total in queue."
        );
        assert_eq!(
            transition_line(&WHO, Transition::Up, &census, " via app/s0"),
            "Server b/s1 is UP via app/s0. 2 active and 0 backup servers online. 0 sessions \
             requeued, 0 total in queue."
        );
        let e = std::io::Error::from_raw_os_error(libc_econnrefused());
        assert_eq!(os_error_text(&e), "Connection refused");
    }

    /// ECONNREFUSED on Linux.
    fn libc_econnrefused() -> i32 {
        111
    }
}
