//! What to do after a failed connect to a server: retry it, go elsewhere, or give up.
//!
//! Sans-IO: [`Attempts`] is fed each failure with `now` and answers with a [`RetryDecision`]
//! carrying the earliest time of the next attempt; the engine sleeps until then, picks a server
//! if told to redispatch (with [`Attempts::avoid`] in the pick context) and connects again.
//!
//! HAProxy 2.6 in TCP mode (`back_handle_st_cer` and `stream_choose_redispatch`), which this
//! module follows:
//! - `retries N` allows N retries, so N + 1 attempts in all. Only connection failures are
//!   retried; once connected, nothing is.
//! - With `option redispatch [n]` (tether's default `Interval(-1)`), a retry goes to another
//!   server when any of these holds, counting retries from 1:
//!   - the current server is no longer UP;
//!   - `n > 0` and the retry number is a multiple of `n` (`1` = every retry);
//!   - `n < 0` and the retry number is a multiple of `N + 1 + n` (`-1` = the last retry; values
//!     at or below `-N` mean every retry here, where HAProxy would divide by zero or less);
//!   - the connection is not sticky, the algorithm is not a hash, and more than one server is
//!     usable: a roundrobin/leastconn/first connection does not care which server it gets, so
//!     it moves on at every retry.
//!
//!   Otherwise (and always without `option redispatch`) it retries the same server.
//! - A redispatch clears stickiness, as HAProxy clears `SF_DIRECT`: the next retries follow the
//!   non-sticky rule. The stick table then records the server actually used.
//! - Turnaround: after an *error* (refused, reset, unreachable; not a connect timeout, which
//!   has already waited) HAProxy waits `min(1 s, timeout connect)` before retrying, but only when
//!   it retries the same server or when at most one server is usable. A redispatch to another
//!   server goes at once. HAProxy 2.6 also waited before a redispatch for non-roundrobin
//!   algorithms (leastconn, first); later versions dropped that and tether follows them, as the
//!   design asks that roundrobin and leastconn connections redispatch immediately.
//! - tether's own `redispatch_on_refused`: a refused connect redispatches at once, sticky or not,
//!   when another server is usable (a refusing server has nothing listening; waiting a second to
//!   knock again rarely helps).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::balance::Algorithm;
use crate::server::ServerId;
use crate::time::Timestamp;

/// When a retry may go to another server (HAProxy `option redispatch <interval>`). In a native
/// config: `redispatch = false | true | N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Redispatch {
    /// Never: retries stay on the chosen server (HAProxy without `option redispatch`).
    Never,
    /// Every n-th retry when positive, the |n|-th retry counted from the last when negative
    /// (`-1` = the last retry, HAProxy's default for `option redispatch`); 0 is the same as
    /// `Never`.
    Interval(i32),
}

impl Default for Redispatch {
    fn default() -> Self {
        Redispatch::Interval(-1)
    }
}

impl Serialize for Redispatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Redispatch::Never => s.serialize_bool(false),
            Redispatch::Interval(n) => s.serialize_i64(i64::from(*n)),
        }
    }
}

impl<'de> Deserialize<'de> for Redispatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Bool(bool),
            Int(i64),
        }
        let bad = || {
            serde::de::Error::custom(
                "invalid redispatch: expected false, true, or a retry interval such as -1",
            )
        };
        match Repr::deserialize(d).map_err(|_| bad())? {
            Repr::Bool(false) | Repr::Int(0) => Ok(Redispatch::Never),
            Repr::Bool(true) => Ok(Redispatch::Interval(-1)),
            Repr::Int(n) => i32::try_from(n)
                .map(Redispatch::Interval)
                .map_err(|_| bad()),
        }
    }
}

/// A backend's retry settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (HAProxy `retries`, default 3).
    pub retries: u32,
    /// When a retry may change server.
    pub redispatch: Redispatch,
    /// Redispatch at once when a connect is refused (tether extension).
    pub redispatch_on_refused: bool,
    /// The connect timeout; it caps the turnaround before a retry on the same server. Zero means
    /// unset (turnaround 1 s).
    pub connect_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 3,
            redispatch: Redispatch::default(),
            redispatch_on_refused: false,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The pause before retrying after a connect error: `min(1 s, timeout connect)`.
    pub fn turnaround(&self) -> Duration {
        let one_second = Duration::from_secs(1);
        if self.connect_timeout.is_zero() {
            one_second
        } else {
            self.connect_timeout.min(one_second)
        }
    }
}

/// How a connect attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectFailure {
    /// The server answered with a reset (nothing listening).
    Refused,
    /// No answer within the connect timeout.
    Timeout,
    /// Any other error (unreachable, reset during connect...).
    Other,
    /// The balancer itself ran out of descriptors, buffers or memory before anything reached
    /// the server (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): never the server's fault, so it is
    /// neither counted against its health nor a reason to try another server (HAProxy's
    /// `SF_ERR_RESOURCE`, logged `RC`).
    Local,
}

impl ConnectFailure {
    /// Classifies a failed connect as the retry policy sees it.
    pub fn of(e: &std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            ConnectFailure::Refused
        } else if local_exhaustion(e) {
            ConnectFailure::Local
        } else {
            ConnectFailure::Other
        }
    }
}

/// Did a socket call fail because this process or host ran out of a local resource (file
/// descriptors, socket buffers, kernel memory) rather than because of the peer? An accept loop
/// pauses on these; a connect reports them as [`ConnectFailure::Local`].
pub fn local_exhaustion(e: &std::io::Error) -> bool {
    if e.kind() == std::io::ErrorKind::OutOfMemory {
        return true;
    }
    #[cfg(unix)]
    {
        matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// The engine's next step after a failed connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Connect again to the same server, not before the given time.
    RetrySame {
        /// Earliest time of the next attempt.
        not_before: Timestamp,
    },
    /// Pick another server (with [`Attempts::avoid`]), then [`Attempts::set_server`], and connect
    /// not before the given time.
    Redispatch {
        /// Earliest time of the next attempt.
        not_before: Timestamp,
    },
    /// No retries left: close the client.
    GiveUp,
}

/// What the backend looks like when a connect fails; HAProxy's decision depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryContext {
    /// Is the server that just failed still UP (health checks may have marked it DOWN)?
    pub target_up: bool,
    /// How many non-backup servers are usable for balancing (HAProxy `srv_act`).
    pub usable_servers: usize,
}

impl RetryContext {
    /// The failed server is still UP and others are usable: the common case.
    pub const SEVERAL_UP: RetryContext = RetryContext {
        target_up: true,
        usable_servers: 2,
    };
}

/// The connect attempts of one client connection.
#[derive(Clone, Debug)]
pub struct Attempts {
    policy: RetryPolicy,
    current: ServerId,
    sticky: bool,
    deterministic: bool,
    retries: u32,
    redispatched: bool,
    failed: Vec<ServerId>,
}

impl Attempts {
    /// Start with the first attempt going to `first`; `sticky` when it came from the stick table.
    pub fn new(policy: &RetryPolicy, first: ServerId, sticky: bool) -> Self {
        Attempts {
            policy: *policy,
            current: first,
            sticky,
            deterministic: false,
            retries: 0,
            redispatched: false,
            failed: Vec::new(),
        }
    }

    /// Tell the attempts which algorithm balanced the connection: a hash algorithm would send it
    /// to the same server again, so it does not redispatch on every retry (HAProxy
    /// `BE_LB_KIND_HI`).
    pub fn with_algorithm(mut self, algorithm: &Algorithm) -> Self {
        self.deterministic = algorithm.is_deterministic();
        self
    }

    /// A connect to the current server failed; assumes it is still UP and others are usable.
    pub fn on_failure(&mut self, failure: ConnectFailure, now: Timestamp) -> RetryDecision {
        self.on_failure_in(failure, now, RetryContext::SEVERAL_UP)
    }

    /// A connect to the current server failed, with the backend's state at that moment.
    pub fn on_failure_in(
        &mut self,
        failure: ConnectFailure,
        now: Timestamp,
        ctx: RetryContext,
    ) -> RetryDecision {
        if !self.failed.contains(&self.current) {
            self.failed.push(self.current);
        }
        if self.retries >= self.policy.retries {
            return RetryDecision::GiveUp;
        }
        self.retries += 1;
        let several = ctx.usable_servers > 1;
        let by_policy = match self.policy.redispatch {
            Redispatch::Never | Redispatch::Interval(0) => false,
            Redispatch::Interval(k) => {
                !ctx.target_up
                    || interval_reached(k, self.retries, self.policy.retries)
                    || (!self.sticky && !self.deterministic && several)
            }
        };
        let on_refused =
            self.policy.redispatch_on_refused && failure == ConnectFailure::Refused && several;
        let redispatch = by_policy || on_refused;
        let wait = failure != ConnectFailure::Timeout && (!redispatch || !several);
        let not_before = if wait {
            now + self.policy.turnaround()
        } else {
            now
        };
        if redispatch {
            self.sticky = false;
            RetryDecision::Redispatch { not_before }
        } else {
            RetryDecision::RetrySame { not_before }
        }
    }

    /// Servers that failed this connection, for [`crate::balance::PickContext::avoid`].
    pub fn avoid(&self) -> &[ServerId] {
        &self.failed
    }

    /// Retries made so far (the `+N` of the tcplog retries field).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Did the connection end up on another server than its first choice?
    pub fn redispatched(&self) -> bool {
        self.redispatched
    }

    /// The server the next attempt goes to.
    pub fn server(&self) -> ServerId {
        self.current
    }

    /// Is the connection still bound to its stick-table server?
    pub fn sticky(&self) -> bool {
        self.sticky
    }

    /// Record the server a redispatch pick chose.
    pub fn set_server(&mut self, s: ServerId) {
        if s != self.current {
            self.redispatched = true;
        }
        self.current = s;
    }
}

/// Does retry number `n` (from 1) of `retries` hit the redispatch interval `k` (non-zero)?
fn interval_reached(k: i32, n: u32, retries: u32) -> bool {
    let period = if k > 0 {
        i64::from(k)
    } else {
        (i64::from(retries) + 1 + i64::from(k)).max(1)
    };
    i64::from(n) % period == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::{Balancer, PickContext};
    use crate::server::ServerState;
    use proptest::prelude::*;

    fn policy(retries: u32, redispatch: Redispatch) -> RetryPolicy {
        RetryPolicy {
            retries,
            redispatch,
            redispatch_on_refused: false,
            connect_timeout: Duration::from_secs(10),
        }
    }

    fn arb_failure() -> impl Strategy<Value = ConnectFailure> {
        prop_oneof![
            Just(ConnectFailure::Refused),
            Just(ConnectFailure::Timeout),
            Just(ConnectFailure::Other),
            Just(ConnectFailure::Local)
        ]
    }

    fn arb_redispatch() -> impl Strategy<Value = Redispatch> {
        prop_oneof![
            Just(Redispatch::Never),
            (-6i32..6).prop_map(Redispatch::Interval)
        ]
    }

    #[test]
    fn seed_config_sticky_retries_then_redispatches_on_last() {
        // retries 3, option redispatch, timeout connect 10s: 4 attempts, the 4th elsewhere.
        let p = policy(3, Redispatch::Interval(-1));
        let mut a = Attempts::new(&p, ServerId(1), true);
        let t = Timestamp(0);
        let second = Timestamp(1000);
        let d = |x| RetryDecision::RetrySame { not_before: x };
        assert_eq!(a.on_failure(ConnectFailure::Refused, t), d(second));
        assert_eq!(a.on_failure(ConnectFailure::Refused, t), d(second));
        assert_eq!(
            a.on_failure(ConnectFailure::Refused, t),
            RetryDecision::Redispatch { not_before: t }
        );
        assert_eq!(a.avoid(), &[ServerId(1)]);
        a.set_server(ServerId(2));
        assert!(a.redispatched() && !a.sticky());
        assert_eq!(
            a.on_failure(ConnectFailure::Refused, t),
            RetryDecision::GiveUp
        );
        assert_eq!(a.retries(), 3);
        assert_eq!(a.avoid(), &[ServerId(1), ServerId(2)]);
    }

    #[test]
    fn turnaround_is_capped_by_connect_timeout_and_skipped_after_timeouts() {
        let mut p = policy(5, Redispatch::Never);
        p.connect_timeout = Duration::from_millis(300);
        let mut a = Attempts::new(&p, ServerId(0), false);
        let now = Timestamp(5000);
        assert_eq!(
            a.on_failure(ConnectFailure::Other, now),
            RetryDecision::RetrySame {
                not_before: Timestamp(5300)
            }
        );
        assert_eq!(
            a.on_failure(ConnectFailure::Timeout, now),
            RetryDecision::RetrySame { not_before: now }
        );
        p.connect_timeout = Duration::ZERO;
        assert_eq!(p.turnaround(), Duration::from_secs(1));
    }

    #[test]
    fn refused_redispatches_at_once_when_enabled() {
        let mut p = policy(3, Redispatch::Interval(-1));
        p.redispatch_on_refused = true;
        let mut a = Attempts::new(&p, ServerId(0), true);
        assert_eq!(
            a.on_failure(ConnectFailure::Refused, Timestamp(7)),
            RetryDecision::Redispatch {
                not_before: Timestamp(7)
            }
        );
        let mut b = Attempts::new(&p, ServerId(0), true);
        assert!(matches!(
            b.on_failure(ConnectFailure::Timeout, Timestamp(7)),
            RetryDecision::RetrySame { .. }
        ));
    }

    #[test]
    fn down_target_or_single_server_cases() {
        let p = policy(3, Redispatch::Interval(-1));
        let mut a = Attempts::new(&p, ServerId(0), true);
        let down = RetryContext {
            target_up: false,
            usable_servers: 3,
        };
        assert_eq!(
            a.on_failure_in(ConnectFailure::Refused, Timestamp(0), down),
            RetryDecision::Redispatch {
                not_before: Timestamp(0)
            }
        );
        // Non-sticky but only one usable server: retry it, after the turnaround.
        let mut b = Attempts::new(&p, ServerId(0), false);
        let alone = RetryContext {
            target_up: true,
            usable_servers: 1,
        };
        assert_eq!(
            b.on_failure_in(ConnectFailure::Refused, Timestamp(0), alone),
            RetryDecision::RetrySame {
                not_before: Timestamp(1000)
            }
        );
        // Hash backends do not redispatch on every retry.
        let mut c = Attempts::new(&p, ServerId(0), false).with_algorithm(&Algorithm::Hash {
            balance_factor: None,
        });
        assert!(matches!(
            c.on_failure(ConnectFailure::Other, Timestamp(0)),
            RetryDecision::RetrySame { .. }
        ));
    }

    proptest! {
        /// Whatever happens, a connection gets exactly retries + 1 attempts before giving up.
        #[test]
        fn attempts_are_retries_plus_one(
            retries in 0u32..10,
            redispatch in arb_redispatch(),
            on_refused in any::<bool>(),
            sticky in any::<bool>(),
            failures in proptest::collection::vec(arb_failure(), 12),
        ) {
            let mut p = policy(retries, redispatch);
            p.redispatch_on_refused = on_refused;
            let mut a = Attempts::new(&p, ServerId(0), sticky);
            let mut attempts = 1u32;
            for (i, f) in failures.iter().enumerate() {
                match a.on_failure(*f, Timestamp(i as u64)) {
                    RetryDecision::GiveUp => break,
                    RetryDecision::Redispatch { .. } => a.set_server(ServerId(attempts)),
                    RetryDecision::RetrySame { .. } => {}
                }
                attempts += 1;
            }
            prop_assert_eq!(attempts, retries + 1);
            prop_assert_eq!(a.retries(), retries);
        }

        /// A sticky connection retries the same server, after the turnaround on errors, until the
        /// redispatch point, where it redispatches.
        #[test]
        fn sticky_stays_until_the_redispatch_point(
            retries in 1u32..10,
            k in prop_oneof![(-12i32..0), (1i32..12)],
            failures in proptest::collection::vec(arb_failure(), 10),
            ct_ms in 0u64..3000,
        ) {
            let mut p = policy(retries, Redispatch::Interval(k));
            p.connect_timeout = Duration::from_millis(ct_ms);
            let expect_wait = if ct_ms == 0 { 1000 } else { ct_ms.min(1000) };
            let point = if k > 0 { k as u32 } else { (retries as i64 + 1 + k as i64).max(1) as u32 };
            let mut a = Attempts::new(&p, ServerId(4), true);
            let now = Timestamp(10_000);
            for (n, f) in (1..=retries).zip(failures) {
                let d = a.on_failure(f, now);
                if n < point {
                    let wait = if f == ConnectFailure::Timeout { 0 } else { expect_wait };
                    prop_assert_eq!(d, RetryDecision::RetrySame { not_before: Timestamp(10_000 + wait) });
                    prop_assert_eq!(a.server(), ServerId(4));
                } else {
                    prop_assert_eq!(d, RetryDecision::Redispatch { not_before: now }, "retry {}", n);
                    break;
                }
            }
        }

        /// Non-sticky round robin: every retry redispatches at once to a server that has not
        /// failed yet, while one is left.
        #[test]
        fn non_sticky_redispatch_avoids_failed_servers(
            n in 2usize..8,
            retries in 1u32..10,
            failures in proptest::collection::vec(arb_failure(), 10),
        ) {
            let s: Vec<ServerState> = (0..n).map(|i| ServerState::new(format!("s{i}"), 1)).collect();
            let mut b = Balancer::new(Algorithm::RoundRobin, &s);
            let first = b.pick(&s, &PickContext::EMPTY).unwrap();
            let p = policy(retries, Redispatch::Interval(-1));
            let mut a = Attempts::new(&p, first, false);
            let now = Timestamp(1);
            for f in failures {
                match a.on_failure(f, now) {
                    RetryDecision::GiveUp => break,
                    RetryDecision::RetrySame { .. } => prop_assert!(false, "non-sticky retried same"),
                    RetryDecision::Redispatch { not_before } => {
                        prop_assert_eq!(not_before, now);
                        let next = b.pick(&s, &PickContext { hash_key: None, avoid: a.avoid() }).unwrap();
                        if a.avoid().len() < n {
                            prop_assert!(!a.avoid().contains(&next), "{:?} in {:?}", next, a.avoid());
                        }
                        a.set_server(next);
                    }
                }
            }
        }
    }
}
