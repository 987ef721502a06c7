//! Timed events: faults and operations applied at fixed simulated times.
//!
//! Affinity is tested by what goes wrong: a server crash loses its session cache, a restart
//! with per-server ticket keys invalidates tickets, a drain moves new clients elsewhere. Events
//! that act on hosts or links go to turmoil; those that act on the balancer's view of its
//! servers (drain/maint/ready, add/remove) go through the [`crate::balancer::BalancerHost`] seam.

use serde::{Deserialize, Serialize};

use crate::scenario::SimDuration;

fn default_drain() -> SimDuration {
    SimDuration(std::time::Duration::from_secs(10))
}

/// One event, as written in the scenario.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct EventSpec {
    /// Simulated time at which it happens.
    pub at: SimDuration,
    /// What happens.
    #[serde(flatten)]
    pub action: Action,
}

/// What an event does. Servers are named by their index (0-based) in the server list.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// The server process crashes on a host that stays up: its port refuses new connections at
    /// once (the kernel answers a SYN with RST, so a balancer retries elsewhere within
    /// milliseconds), its open connections are closed, its session cache is lost.
    Crash {
        /// Server index.
        server: usize,
    },
    /// The whole server host is lost (power, kernel panic, network gone): it goes silent, so
    /// new connections wait for their connect timeout and open ones hang until a timeout; its
    /// session cache is lost. `restart` boots it again.
    HostDown {
        /// Server index.
        server: usize,
    },
    /// The server software starts again after `crash` or `host-down` (new boot: empty cache,
    /// new per-server ticket keys).
    Restart {
        /// Server index.
        server: usize,
    },
    /// The link between the balancer and the server is cut: silent, as `host-down`, but the
    /// server keeps running (and keeps its cache) behind the cut.
    Partition {
        /// Server index.
        server: usize,
    },
    /// The link is restored.
    Heal {
        /// Server index.
        server: usize,
    },
    /// Admin: the balancer sends no new clients to this server but honours affinity.
    Drain {
        /// Server index.
        server: usize,
    },
    /// Admin: the balancer sends nothing new to this server.
    Maint {
        /// Server index.
        server: usize,
    },
    /// Admin: the server is back in rotation.
    Ready {
        /// Server index.
        server: usize,
    },
    /// A new server host starts and joins the balancer's pool.
    AddServer,
    /// The balancer stops using this server (its host keeps running for existing connections).
    RemoveServer {
        /// Server index.
        server: usize,
    },
    /// The balancer host restarts (its in-memory state is lost unless it persists it).
    RestartBalancer,
    /// A balancer instance crashes: routers withdraw it at once (DNS still lists it), its
    /// connections and its tables are lost.
    CrashInstance {
        /// Instance index (0-based, in order of creation).
        instance: usize,
    },
    /// An instance starts again (new process, empty tables; its peers refill them when
    /// replicating) and is announced again.
    RestartInstance {
        /// Instance index.
        instance: usize,
    },
    /// A new balancer instance starts with the current server list and is announced and listed.
    AddInstance,
    /// An instance is withdrawn from routing and DNS; it keeps serving what it has.
    RemoveInstance {
        /// Instance index.
        instance: usize,
    },
    /// A rolling upgrade of one instance: withdrawn now, restarted as a new process after
    /// `drain` (its connections have had that long to finish), then announced again.
    UpgradeInstance {
        /// Instance index.
        instance: usize,
        /// How long the instance drains before its process is replaced.
        #[serde(default = "default_drain")]
        drain: SimDuration,
    },
    /// The instance loses its links to every other instance (peers); clients still reach it.
    PartitionPeers {
        /// Instance index.
        instance: usize,
    },
    /// The instance's links to the other instances are restored.
    HealPeers {
        /// Instance index.
        instance: usize,
    },
    /// Changes the one-way latency of the balancer↔server link, or of clients↔balancer.
    Latency {
        /// Server index; absent for the client side.
        #[serde(default)]
        server: Option<usize>,
        /// New one-way latency.
        latency: SimDuration,
    },
}

impl Action {
    /// The balancer instance an event names, if it names one.
    pub fn instance(&self) -> Option<usize> {
        match *self {
            Action::CrashInstance { instance }
            | Action::RestartInstance { instance }
            | Action::RemoveInstance { instance }
            | Action::UpgradeInstance { instance, .. }
            | Action::PartitionPeers { instance }
            | Action::HealPeers { instance } => Some(instance),
            _ => None,
        }
    }

    /// A short human description for reports and plots.
    pub fn describe(&self) -> String {
        match self {
            Action::Crash { server } => format!("crash server {server}"),
            Action::HostDown { server } => format!("host-down server {server}"),
            Action::Restart { server } => format!("restart server {server}"),
            Action::Partition { server } => format!("partition server {server}"),
            Action::Heal { server } => format!("heal server {server}"),
            Action::Drain { server } => format!("drain server {server}"),
            Action::Maint { server } => format!("maint server {server}"),
            Action::Ready { server } => format!("ready server {server}"),
            Action::AddServer => "add server".to_owned(),
            Action::RemoveServer { server } => format!("remove server {server}"),
            Action::RestartBalancer => "restart balancer".to_owned(),
            Action::CrashInstance { instance } => format!("crash balancer instance {instance}"),
            Action::RestartInstance { instance } => {
                format!("restart balancer instance {instance}")
            }
            Action::AddInstance => "add balancer instance".to_owned(),
            Action::RemoveInstance { instance } => format!("remove balancer instance {instance}"),
            Action::UpgradeInstance { instance, drain } => {
                format!("upgrade balancer instance {instance} (drain {drain})")
            }
            Action::PartitionPeers { instance } => {
                format!("partition balancer instance {instance} from its peers")
            }
            Action::HealPeers { instance } => {
                format!("heal balancer instance {instance}'s peer links")
            }
            Action::Latency {
                server: Some(s),
                latency,
            } => format!("latency {latency} to server {s}"),
            Action::Latency {
                server: None,
                latency,
            } => format!("latency {latency} to clients"),
        }
    }
}

/// Events in the order they fire (by time, then by position in the file).
#[derive(Clone, Debug)]
pub struct Schedule {
    pending: Vec<EventSpec>,
    next: usize,
}

impl Schedule {
    /// Sorts `events` stably by time.
    pub fn new(events: &[EventSpec]) -> Self {
        let mut pending = events.to_vec();
        pending.sort_by_key(|e| e.at);
        Schedule { pending, next: 0 }
    }

    /// The events due at or before `elapsed_ms`, each returned once.
    pub fn due(&mut self, elapsed_ms: u64) -> Vec<EventSpec> {
        let start = self.next;
        while self
            .pending
            .get(self.next)
            .is_some_and(|e| e.at.get().as_millis() as u64 <= elapsed_ms)
        {
            self.next += 1;
        }
        self.pending[start..self.next].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        events: Vec<EventSpec>,
    }

    #[test]
    fn events_parse_and_fire_in_time_order() {
        let f: File = toml::from_str(
            r#"
            [[events]]
            at = "2m"
            action = "restart"
            server = 1
            [[events]]
            at = "60s"
            action = "crash"
            server = 1
            [[events]]
            at = "90s"
            action = "latency"
            latency = "50ms"
            "#,
        )
        .unwrap();
        let mut s = Schedule::new(&f.events);
        assert!(s.due(59_999).is_empty());
        assert_eq!(s.due(60_000)[0].action, Action::Crash { server: 1 });
        let later = s.due(200_000);
        assert_eq!(later.len(), 2);
        assert_eq!(later[1].action, Action::Restart { server: 1 });
        assert!(s.due(300_000).is_empty());
        assert_eq!(later[0].action.describe(), "latency 50ms to clients");
        let down: File =
            toml::from_str("[[events]]\nat = \"1s\"\naction = \"host-down\"\nserver = 3").unwrap();
        assert_eq!(down.events[0].action, Action::HostDown { server: 3 });
    }
}
