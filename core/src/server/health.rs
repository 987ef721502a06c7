//! Health counting, HAProxy style: pure state fed with check results, no probes and no clock.
//!
//! HAProxy keeps one counter per server, `health`, from 0 to `rise + fall - 1`. Values below
//! `rise` mean DOWN, values from `rise` up mean UP. A passed check adds one, and once the counter
//! reaches `rise` it jumps to the top (`rise + fall - 1`, "OK now"); a failed check takes one
//! away, and once it drops below `rise` it falls to 0. Hence: an UP server at the top needs `fall`
//! consecutive failures to go DOWN, a DOWN server needs `rise` consecutive successes to come UP,
//! and a single success while UP restores the full margin (`src/check.c`,
//! `set_server_check_status`).
//!
//! **Starting state.** A server starts UP with the counter *at* `rise` (HAProxy's `server.c`
//! initialises `check.health = check.rise`): it takes traffic from the start, one passed check
//! gives it the full `fall` margin, but a failure before any success takes it DOWN at once. That
//! is the "never-checked server goes DOWN on its first failure" behaviour.
//!
//! The caller runs the probes (the daemon with tokio, the simulator with turmoil) and asks
//! [`Health::next_check`] when to run the next one; live connection results can feed the same
//! counter ([`Health::on_connect_result`], HAProxy `observe layer4`).

use std::time::Duration;

use crate::time::Timestamp;

/// Health-check settings of a server (HAProxy `inter`, `fastinter`, `downinter`, `rise`, `fall`,
/// `observe layer4`, `error-limit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    /// Interval between checks of a steady server (HAProxy default 2 s).
    pub inter: Duration,
    /// Interval while the counter is between the extremes (rising or falling); `inter` if unset.
    pub fastinter: Option<Duration>,
    /// Interval while the server is fully DOWN; `inter` if unset.
    pub downinter: Option<Duration>,
    /// Consecutive successes that bring a DOWN server UP (default 2). At least 1.
    pub rise: u32,
    /// Consecutive failures that take an UP server DOWN (default 3). At least 1.
    pub fall: u32,
    /// Feed live connect results into the counter (passive health, HAProxy `observe layer4`).
    pub observe: bool,
    /// Consecutive live connect failures that count as one failed check (HAProxy `error-limit`,
    /// default 10). At least 1.
    pub error_limit: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            inter: Duration::from_secs(2),
            fastinter: None,
            downinter: None,
            rise: 2,
            fall: 3,
            observe: false,
            error_limit: 10,
        }
    }
}

impl HealthConfig {
    /// How long one TCP-connect check may wait for its connection, HAProxy 2.6's rule
    /// (`doc/configuration.txt`, `timeout check`; `src/tcpcheck.c`):
    ///
    /// > If set, HAProxy uses min("timeout connect", "inter") as a connect timeout for check and
    /// > "timeout check" as an additional read timeout. [...] If "timeout check" is not set
    /// > HAProxy uses "inter" for complete check timeout (connect + read).
    ///
    /// So without `timeout check` the whole check gets `inter`; with it, the connect part gets
    /// `min(timeout connect, inter)`. A layer-4 check ends once connected and reads nothing,
    /// so the read bound that `timeout check` sets never applies to it: only its presence
    /// matters here. One function, so the daemon and the simulator cannot drift apart again.
    pub fn check_connect_timeout(
        &self,
        timeout_connect: Duration,
        timeout_check: Option<Duration>,
    ) -> Duration {
        match timeout_check {
            Some(_) => timeout_connect.min(self.inter),
            None => self.inter,
        }
    }
}

/// A change of operational state worth acting on (balancer update, log line, stats).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Transition {
    /// The server just came UP.
    Up,
    /// The server just went DOWN.
    Down,
}

/// The health counter of one checked server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    config: HealthConfig,
    counter: u32,
    consecutive_errors: u32,
}

impl Health {
    /// A server that has never been checked: UP, counter at `rise` (see the module doc).
    pub fn new(config: HealthConfig) -> Self {
        let config = HealthConfig {
            rise: config.rise.max(1),
            fall: config.fall.max(1),
            error_limit: config.error_limit.max(1),
            ..config
        };
        Health {
            counter: config.rise,
            config,
            consecutive_errors: 0,
        }
    }

    /// The counter of a server that was already checked under `previous` (a reload): a DOWN
    /// server stays DOWN until `rise` checks pass, an UP one stays UP.
    pub fn continuing(config: HealthConfig, previous: &Health) -> Self {
        let mut h = Health::new(config);
        if !previous.is_up() {
            h.counter = 0;
        }
        h
    }

    /// The settings in use (with `rise`, `fall` and `error_limit` raised to at least 1).
    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    fn top(&self) -> u32 {
        self.config.rise + self.config.fall - 1
    }

    /// Is the server UP as far as checks are concerned?
    pub fn is_up(&self) -> bool {
        self.counter >= self.config.rise
    }

    /// The raw HAProxy counter, 0..=rise+fall-1.
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// The stats page's "n/m" status: while UP, how many failures are left of `fall`; while DOWN,
    /// how many successes were seen of `rise` (HAProxy's "UP 2/3", "DOWN 1/2").
    pub fn progress(&self) -> (u32, u32) {
        if self.is_up() {
            (self.counter - self.config.rise + 1, self.config.fall)
        } else {
            (self.counter, self.config.rise)
        }
    }

    /// Leaving maintenance: UP at once, the next check deciding (HAProxy sets the counter to
    /// `rise`, "start OK but check immediately"; a failure then takes it DOWN).
    pub fn restart(&mut self) {
        self.counter = self.config.rise;
    }

    /// Record the result of one health check; returns the state change it causes, if any.
    pub fn on_check(&mut self, ok: bool) -> Option<Transition> {
        let was_up = self.is_up();
        if ok {
            if self.counter < self.top() {
                self.counter += 1;
                if self.counter >= self.config.rise {
                    self.counter = self.top();
                }
            }
        } else if self.counter > 0 {
            self.counter -= 1;
            if self.counter < self.config.rise {
                self.counter = 0;
            }
        }
        match (was_up, self.is_up()) {
            (false, true) => Some(Transition::Up),
            (true, false) => Some(Transition::Down),
            _ => None,
        }
    }

    /// Record the outcome of a live connection attempt (passive health). Ignored unless
    /// `observe` is set. A success clears the error streak but never raises a server (only
    /// checks do, as in HAProxy); every `error_limit` consecutive failures count as one failed
    /// check.
    pub fn on_connect_result(&mut self, ok: bool) -> Option<Transition> {
        if !self.config.observe {
            return None;
        }
        if ok {
            self.consecutive_errors = 0;
            return None;
        }
        self.consecutive_errors += 1;
        if self.consecutive_errors < self.config.error_limit {
            return None;
        }
        self.consecutive_errors = 0;
        self.on_check(false)
    }

    /// When the next check is due if the last one ran at `now`: `inter` for a steady UP server,
    /// `downinter` for a fully DOWN one, `fastinter` in between (HAProxy `srv_getinter`).
    pub fn next_check(&self, now: Timestamp) -> Timestamp {
        now + self.interval()
    }

    /// The wait between the check that just ended and the next one (see [`Health::next_check`]).
    pub fn interval(&self) -> Duration {
        let c = &self.config;
        if self.counter == self.top() {
            c.inter
        } else if self.counter == 0 {
            c.downinter.unwrap_or(c.inter)
        } else {
            c.fastinter.unwrap_or(c.inter)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(rise: u32, fall: u32) -> HealthConfig {
        HealthConfig {
            rise,
            fall,
            ..HealthConfig::default()
        }
    }

    #[test]
    fn check_timeout_is_inter_without_timeout_check() {
        let c = HealthConfig {
            inter: Duration::from_secs(2),
            ..HealthConfig::default()
        };
        // A long `timeout connect` does not stretch the check, a short one does not cut it.
        assert_eq!(
            c.check_connect_timeout(Duration::from_secs(10), None),
            Duration::from_secs(2)
        );
        assert_eq!(
            c.check_connect_timeout(Duration::from_millis(500), None),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn check_connect_timeout_is_min_of_connect_and_inter_with_timeout_check() {
        let c = HealthConfig {
            inter: Duration::from_secs(2),
            ..HealthConfig::default()
        };
        let check = Some(Duration::from_secs(10));
        assert_eq!(
            c.check_connect_timeout(Duration::from_millis(500), check),
            Duration::from_millis(500)
        );
        assert_eq!(
            c.check_connect_timeout(Duration::from_secs(10), check),
            Duration::from_secs(2),
            "the min keeps a very long timeout connect from slowing checks down"
        );
        // The value of `timeout check` bounds the read part, which a TCP check has not.
        assert_eq!(
            c.check_connect_timeout(Duration::from_millis(500), Some(Duration::from_millis(1))),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn never_checked_server_is_up_and_falls_on_first_failure() {
        let mut h = Health::new(HealthConfig::default());
        assert!(h.is_up());
        assert_eq!(h.on_check(false), Some(Transition::Down));
        assert_eq!(h.on_check(true), None);
        assert_eq!(h.on_check(true), Some(Transition::Up), "rise 2");
    }

    #[test]
    fn steady_server_needs_fall_failures() {
        let mut h = Health::new(HealthConfig::default());
        assert_eq!(h.on_check(true), None);
        assert_eq!(h.progress(), (3, 3));
        assert_eq!(h.on_check(false), None);
        assert_eq!(h.on_check(false), None);
        assert_eq!(h.progress(), (1, 3));
        assert_eq!(h.on_check(false), Some(Transition::Down));
        assert_eq!(h.progress(), (0, 2));
    }

    #[test]
    fn next_check_uses_fastinter_while_moving() {
        let c = HealthConfig {
            inter: Duration::from_secs(2),
            fastinter: Some(Duration::from_millis(500)),
            downinter: Some(Duration::from_secs(5)),
            ..HealthConfig::default()
        };
        let mut h = Health::new(c);
        let t = Timestamp(1000);
        // Counter at rise (2) of top 4: in between.
        assert_eq!(h.next_check(t), Timestamp(1500));
        h.on_check(true);
        assert_eq!(h.next_check(t), Timestamp(3000));
        h.on_check(false);
        assert_eq!(h.next_check(t), Timestamp(1500));
        h.on_check(false);
        h.on_check(false);
        assert!(!h.is_up());
        assert_eq!(h.next_check(t), Timestamp(6000));
    }

    #[test]
    fn passive_errors_count_only_when_observed() {
        let mut h = Health::new(HealthConfig::default());
        for _ in 0..100 {
            assert_eq!(h.on_connect_result(false), None);
        }
        assert!(h.is_up());
        let mut h = Health::new(HealthConfig {
            observe: true,
            error_limit: 3,
            ..HealthConfig::default()
        });
        h.on_check(true);
        assert_eq!(h.on_connect_result(false), None);
        assert_eq!(h.on_connect_result(false), None);
        assert_eq!(h.on_connect_result(true), None, "success clears the streak");
        assert_eq!(h.on_connect_result(false), None);
        assert_eq!(h.on_connect_result(false), None);
        assert_eq!(
            h.on_connect_result(false),
            None,
            "one failed check of fall 3"
        );
        assert_eq!(h.progress(), (2, 3));
        for _ in 0..5 {
            assert_eq!(h.on_connect_result(false), None);
        }
        assert_eq!(h.on_connect_result(false), Some(Transition::Down));
    }

    /// Reference model written as consecutive-result counting, independent of the counter.
    struct Model {
        up: bool,
        fails: u32,
        oks: u32,
        rise: u32,
        fall: u32,
    }

    impl Model {
        fn new(rise: u32, fall: u32) -> Self {
            Model {
                up: true,
                fails: fall - 1,
                oks: 0,
                rise,
                fall,
            }
        }
        fn step(&mut self, ok: bool) -> Option<Transition> {
            match (self.up, ok) {
                (true, true) => {
                    self.fails = 0;
                    None
                }
                (true, false) => {
                    self.fails += 1;
                    if self.fails >= self.fall {
                        self.up = false;
                        self.oks = 0;
                        Some(Transition::Down)
                    } else {
                        None
                    }
                }
                (false, true) => {
                    self.oks += 1;
                    if self.oks >= self.rise {
                        self.up = true;
                        self.fails = 0;
                        Some(Transition::Up)
                    } else {
                        None
                    }
                }
                (false, false) => {
                    self.oks = 0;
                    None
                }
            }
        }
    }

    proptest! {
        #[test]
        fn counter_matches_consecutive_model(
            rise in 1u32..6, fall in 1u32..6,
            results in proptest::collection::vec(any::<bool>(), 0..200),
        ) {
            let mut h = Health::new(cfg(rise, fall));
            let mut m = Model::new(rise, fall);
            for ok in results {
                prop_assert_eq!(h.on_check(ok), m.step(ok));
                prop_assert_eq!(h.is_up(), m.up);
                prop_assert!(h.counter() < rise + fall);
            }
        }
    }
}
