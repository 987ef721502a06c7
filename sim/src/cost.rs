//! Server CPU cost: what a handshake costs and how a server with a few cores queues them.
//!
//! Affinity matters because a resumed handshake is cheap and a full one is not. Without a cost
//! model every handshake takes network time only, so the simulator cannot say how many cores a
//! deployment needs or what a crash's burst of full handshakes does to the survivors. With one,
//! each server is a FIFO multi-core queue in simulated time: a handshake waits for the first
//! free core, then holds it for its cost; when more than `backlog` handshakes are waiting, a
//! new connection is refused, as a full accept queue drops it. Everything is integer
//! microseconds of simulated time: no clock is read and no number drawn here.

use std::cell::RefCell;
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// The CPU cost model of every server, as written under `[servers.cost]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CostSpec {
    /// Cores per server: handshakes served at once.
    pub cores: u32,
    /// Handshakes that may wait for a core; one more and the connection is refused.
    #[serde(default = "default_backlog")]
    pub backlog: u32,
    /// The certificate's key type the costs were measured with (documentation, e.g. "rsa-2048").
    #[serde(default = "default_key")]
    pub key: String,
    /// TLS 1.2 handshake costs.
    pub tls12: HandshakeCost,
    /// TLS 1.3 handshake costs (default: the TLS 1.2 ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls13: Option<HandshakeCost>,
    /// CPU per KB of response payload, in microseconds (record encryption; 0: free).
    #[serde(default)]
    pub payload_us_per_kb: f64,
}

fn default_backlog() -> u32 {
    // Linux's default somaxconn (4096) is far beyond any queue a handshake survives; 511 is
    // what nginx and HAProxy ask for, and what `openssl s_server` gets.
    511
}

fn default_key() -> String {
    "rsa-2048".to_owned()
}

/// The CPU one handshake takes on the server, full and resumed, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HandshakeCost {
    /// A full handshake (key exchange and certificate signature).
    pub full_us: u64,
    /// A resumed (abbreviated) handshake.
    pub resumed_us: u64,
}

impl CostSpec {
    /// Checks the figures a run depends on; the message says what to write instead.
    pub fn validate(&self) -> Result<(), String> {
        if self.cores == 0 {
            return Err("servers.cost.cores must be at least 1".into());
        }
        if !(self.payload_us_per_kb.is_finite() && self.payload_us_per_kb >= 0.0) {
            return Err("servers.cost.payload_us_per_kb must be a number >= 0".into());
        }
        for (name, c) in [("tls12", Some(self.tls12)), ("tls13", self.tls13)] {
            if let Some(c) = c {
                if c.full_us == 0 || c.full_us > 10_000_000 || c.resumed_us > c.full_us {
                    return Err(format!(
                        "servers.cost.{name}: give 0 < full_us <= 10000000 and resumed_us <= full_us \
                         (measure them with `tether sim calibrate HOST:PORT`)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The handshake costs of one TLS version.
    pub fn handshake(&self, tls13: bool) -> HandshakeCost {
        if tls13 {
            self.tls13.unwrap_or(self.tls12)
        } else {
            self.tls12
        }
    }

    /// CPU of one handshake, in microseconds.
    pub fn handshake_us(&self, tls13: bool, resumed: bool) -> u64 {
        let c = self.handshake(tls13);
        if resumed {
            c.resumed_us
        } else {
            c.full_us
        }
    }

    /// CPU to encrypt `bytes` of payload, in microseconds (rounded up: any payload costs).
    pub fn payload_us(&self, bytes: u64) -> u64 {
        (bytes as f64 / 1024.0 * self.payload_us_per_kb).ceil() as u64
    }
}

/// Where a job landed in the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The job runs from `start_us` to `end_us` (simulated microseconds).
    Run {
        /// When a core takes it (at or after its arrival).
        start_us: u64,
        /// When it is done.
        end_us: u64,
    },
    /// The backlog was full: the connection is refused.
    Refused,
}

/// A FIFO queue in front of `cores` identical cores, in simulated time.
///
/// Jobs arrive in time order (the simulation's clock never goes back) with a known service
/// time, so each one's start is decided at arrival: the earliest a core is free, not before
/// it arrives. Started jobs are never pre-empted.
#[derive(Clone, Debug)]
pub struct CoreQueue {
    free_at_us: Vec<u64>,
    /// Start times of admitted jobs that had to wait, in order (they start in order).
    waiting: VecDeque<u64>,
    backlog: usize,
}

impl CoreQueue {
    /// An idle server with `cores` cores (at least one) and room for `backlog` waiting jobs.
    pub fn new(cores: u32, backlog: u32) -> Self {
        CoreQueue {
            free_at_us: vec![0; cores.max(1) as usize],
            waiting: VecDeque::new(),
            backlog: backlog as usize,
        }
    }

    /// Jobs waiting for a core at `now_us` (admitted, not started).
    pub fn waiting(&mut self, now_us: u64) -> usize {
        while self.waiting.front().is_some_and(|&s| s <= now_us) {
            self.waiting.pop_front();
        }
        self.waiting.len()
    }

    /// A job of `service_us` arriving at `now_us`; `may_refuse` false always admits it (work
    /// on a connection already accepted).
    pub fn submit(&mut self, now_us: u64, service_us: u64, may_refuse: bool) -> Admission {
        let waiting = self.waiting(now_us);
        // The first core to be free; ties go to the lowest index (deterministic).
        let (core, free) = self
            .free_at_us
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|&(i, t)| (t, i))
            .unwrap_or((0, 0));
        let start_us = free.max(now_us);
        if start_us > now_us {
            if may_refuse && waiting >= self.backlog {
                return Admission::Refused;
            }
            self.waiting.push_back(start_us);
        }
        let end_us = start_us.saturating_add(service_us);
        if let Some(f) = self.free_at_us.get_mut(core) {
            *f = end_us;
        }
        Admission::Run { start_us, end_us }
    }
}

/// One server boot's CPU: the cost model and the queue (a crash loses the queue).
#[derive(Debug)]
pub struct ServerCpu {
    /// The scenario's cost model.
    pub spec: CostSpec,
    /// The cores and the handshakes waiting for them.
    pub queue: RefCell<CoreQueue>,
}

impl ServerCpu {
    /// An idle server.
    pub fn new(spec: &CostSpec) -> Self {
        ServerCpu {
            spec: spec.clone(),
            queue: RefCell::new(CoreQueue::new(spec.cores, spec.backlog)),
        }
    }
}

/// Splits the busy interval `[start_us, end_us)` over minutes: (minute, microseconds) pairs.
pub fn busy_by_minute(start_us: u64, end_us: u64) -> Vec<(u64, u64)> {
    const MINUTE_US: u64 = 60_000_000;
    let mut out = Vec::new();
    let mut t = start_us;
    while t < end_us {
        let m = t / MINUTE_US;
        let edge = ((m + 1) * MINUTE_US).min(end_us);
        out.push((m, edge - t));
        t = edge;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_core_serves_in_order_and_the_backlog_refuses() {
        let mut q = CoreQueue::new(1, 1);
        assert_eq!(
            q.submit(0, 100, true),
            Admission::Run {
                start_us: 0,
                end_us: 100
            }
        );
        assert_eq!(
            q.submit(10, 100, true),
            Admission::Run {
                start_us: 100,
                end_us: 200
            }
        );
        assert_eq!(q.submit(20, 100, true), Admission::Refused, "backlog of 1");
        assert!(matches!(
            q.submit(20, 5, false),
            Admission::Run { start_us: 200, .. }
        ));
        // Once the waiting jobs started, there is room again.
        assert!(matches!(q.submit(250, 1, true), Admission::Run { .. }));
    }

    #[test]
    fn two_cores_take_two_at_once() {
        let mut q = CoreQueue::new(2, 10);
        for _ in 0..2 {
            assert!(matches!(
                q.submit(0, 100, true),
                Admission::Run { start_us: 0, .. }
            ));
        }
        assert!(matches!(
            q.submit(0, 100, true),
            Admission::Run { start_us: 100, .. }
        ));
    }

    #[test]
    fn busy_time_splits_at_minute_edges() {
        assert_eq!(
            busy_by_minute(59_999_000, 60_002_000),
            vec![(0, 1_000), (1, 2_000)]
        );
        assert!(busy_by_minute(5, 5).is_empty());
    }

    #[test]
    fn costs_fall_back_to_tls12_and_validate() {
        let text =
            "cores = 2\ntls12 = { full_us = 1000, resumed_us = 150 }\npayload_us_per_kb = 2.0";
        let c: CostSpec = toml::from_str(text).unwrap();
        assert_eq!(c.handshake_us(true, false), 1000);
        assert_eq!(c.handshake_us(false, true), 150);
        assert_eq!(c.payload_us(8_000), 16);
        assert!(c.validate().is_ok());
        let bad = CostSpec {
            cores: 0,
            ..c.clone()
        };
        assert!(bad.validate().unwrap_err().contains("cores"));
        let inverted = CostSpec {
            tls13: Some(HandshakeCost {
                full_us: 10,
                resumed_us: 20,
            }),
            ..c
        };
        assert!(inverted.validate().unwrap_err().contains("tls13"));
    }

    proptest! {
        /// Never more jobs on the cores than cores, none starts before it arrives, the queue
        /// never idles a core while a job waits (work-conserving), and jobs start in order.
        #[test]
        fn the_queue_is_a_fifo_multicore_server(
            cores in 1u32..5,
            jobs in proptest::collection::vec((0u64..2_000, 1u64..3_000), 1..60),
        ) {
            let mut q = CoreQueue::new(cores, u32::MAX);
            let mut now = 0;
            let mut runs = Vec::new();
            for (gap, service) in jobs {
                now += gap;
                let Admission::Run { start_us, end_us } = q.submit(now, service, true) else {
                    panic!("an unbounded backlog refuses nothing");
                };
                prop_assert!(start_us >= now);
                prop_assert_eq!(end_us - start_us, service);
                runs.push((now, start_us, end_us));
            }
            for w in runs.windows(2) {
                prop_assert!(w[1].1 >= w[0].1, "FIFO: starts in arrival order");
            }
            for &(arrival, start, _) in &runs {
                let busy = |t: u64| runs.iter().filter(|&&(_, s, e)| s <= t && t < e).count();
                prop_assert!(busy(start) <= cores as usize);
                if start > arrival {
                    // It waited: every core was busy just before it started.
                    prop_assert_eq!(busy(start - 1), cores as usize);
                }
            }
        }

        /// The busy time split over minutes adds up to the interval.
        #[test]
        fn busy_minutes_add_up(start in 0u64..500_000_000, len in 0u64..200_000_000) {
            let parts = busy_by_minute(start, start + len);
            prop_assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), len);
        }
    }
}
