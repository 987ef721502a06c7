//! The daemon's file-descriptor budget: raise the soft `RLIMIT_NOFILE` to the hard limit at
//! start (as HAProxy does), and say so when `maxconn` needs more descriptors than remain.
//!
//! Every proxied connection holds two descriptors (client and server); listeners, health
//! checks, the stats listener and the runtime's own (epoll, eventfd, log) add a few. Running out
//! is survivable (listeners pause, see `tether_core::engine::listener::backoff`), but the
//! operator should learn it at start, not from a stalled service.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use tether_core::config::Config;

/// Descriptors the runtime and the process use besides listeners and connections.
const BASE: u64 = 32;

/// The descriptor limit before and after [`raise_to_hard`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit found at start (`None`: unlimited).
    pub before: Option<u64>,
    /// The soft limit now in force.
    pub soft: Option<u64>,
    /// The hard limit (the most an unprivileged process may raise the soft one to).
    pub hard: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (to the kernel's `fs.nr_open` when the
/// hard limit is "unlimited", which Linux refuses as a descriptor limit); on failure keeps the
/// old one.
pub fn raise_to_hard() -> NofileLimit {
    let now = getrlimit(Resource::Nofile);
    let mut limit = NofileLimit {
        before: now.current,
        soft: now.current,
        hard: now.maximum,
    };
    let target = now.maximum.or_else(nr_open);
    if target.is_some() && now.current != target {
        let wanted = Rlimit {
            current: target,
            maximum: now.maximum,
        };
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => limit.soft = getrlimit(Resource::Nofile).current,
            Err(e) => tracing::warn!(error = %e, "could not raise the descriptor limit"),
        }
    }
    limit
}

/// The kernel's ceiling on a process's descriptors.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Descriptors `config` may need at full load: two per connection up to the global `maxconn`,
/// two per splicing pipe, one per listener, one per concurrent health check, one for the stats
/// listener and its clients, plus the process's own.
pub fn needed(config: &Config) -> u64 {
    let conns = u64::from(config.global.maxconn) * 2 + u64::from(config.global.pipes()) * 2;
    let listeners: u64 = config.frontends.iter().map(|f| f.bind.len() as u64).sum();
    let checks: u64 = config
        .backends
        .iter()
        .flat_map(|b| &b.servers)
        .filter(|s| s.check)
        .count() as u64;
    let stats = if config.stats.is_some() { 1 + 64 } else { 0 };
    conns + listeners + checks + stats + BASE
}

/// Raises the limit and logs what the operator should know: the raise, and a warning with the
/// fix when `maxconn` needs more descriptors than the limit allows.
pub fn prepare(config: &Config) -> NofileLimit {
    let limit = raise_to_hard();
    if limit.before != limit.soft {
        tracing::info!(
            from = ?limit.before,
            to = ?limit.soft,
            "raised the soft descriptor limit (RLIMIT_NOFILE) to the hard limit"
        );
    }
    let need = needed(config);
    if let Some(soft) = limit.soft {
        if need > soft {
            tracing::warn!(
                maxconn = config.global.maxconn,
                needed = need,
                available = soft,
                "maxconn needs about {need} file descriptors (2 per connection and per splicing pipe, plus listeners and checks) \
                 but the limit is {soft}: accepts will pause when descriptors run out; \
                 raise the hard limit (ulimit -Hn, LimitNOFILE= in the systemd unit) or lower maxconn to {}",
                soft.saturating_sub(need - 2 * u64::from(config.global.maxconn)) / 2
            );
        }
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_counts_two_per_connection_and_pipe_plus_listeners_and_checks() {
        let text = "[global]\nmaxconn = 100\n\
             [[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\nbackend = \"app\"\n\
             [[backend]]\nname = \"app\"\n\
             [[backend.server]]\nname = \"s1\"\naddress = \"127.0.0.1:3\"\n\
             [[backend.server]]\nname = \"s2\"\naddress = \"127.0.0.1:4\"\ncheck = false\n";
        let config = tether_core::config::load_toml("t.toml", text).unwrap();
        // 100 connections: 200, and 25 pipes (a quarter of maxconn): 50.
        assert_eq!(needed(&config), 200 + 50 + 2 + 1 + BASE);
    }

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_to_hard();
        let expected = limit.hard.or_else(nr_open);
        assert_eq!(limit.soft, expected);
        assert_eq!(getrlimit(Resource::Nofile).current, expected);
    }
}
