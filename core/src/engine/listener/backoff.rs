//! What an accept loop does after a failed `accept`: pause, and whether to say so.
//!
//! When the process is out of descriptors (`EMFILE`) the pending connection stays in the
//! kernel's backlog and the listening socket stays readable, so a loop that simply tries again
//! spins a core and writes one log line per turn. HAProxy pauses the listener instead and
//! resumes it later; this does the same, sans-IO: fed each result with `now`, it answers with
//! the pause before the next `accept` (doubling up to [`MAX_PAUSE`] while the exhaustion lasts)
//! and at most one log line per [`LOG_INTERVAL`], carrying the count of failures it held back.

use std::time::Duration;

use tokio::time::Instant;

/// The first pause after an exhaustion error.
pub const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause: a listener resumes within this once descriptors are free again.
pub const MAX_PAUSE: Duration = Duration::from_millis(500);
/// At most one log line per listener per interval while accepts fail.
pub const LOG_INTERVAL: Duration = Duration::from_secs(5);
/// Consecutive failures of any kind after which the listener pauses as for exhaustion (an
/// error that repeats on every call would spin just the same).
const PERSISTENT: u32 = 16;

/// The next step after a failed accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AfterFailure {
    /// How long to leave the listener alone (zero: accept again at once).
    pub pause: Duration,
    /// `Some(n)`: write a log line now; `n` failures since the previous line were not logged.
    pub log: Option<u64>,
}

/// The failure history of one listener.
#[derive(Clone, Debug, Default)]
pub struct AcceptBackoff {
    consecutive: u32,
    pause: Duration,
    unlogged: u64,
    last_log: Option<Instant>,
    episode: u64,
    /// A failure line was written and no recovery line since.
    said_paused: bool,
}

impl AcceptBackoff {
    /// An accept failed at `now`; `exhausted` when the error was a local resource shortage
    /// ([`crate::retry::local_exhaustion`]).
    pub fn on_failure(&mut self, now: Instant, exhausted: bool) -> AfterFailure {
        self.consecutive = self.consecutive.saturating_add(1);
        self.episode = self.episode.saturating_add(1);
        let pause = if exhausted || self.consecutive >= PERSISTENT {
            self.pause = (self.pause * 2).clamp(FIRST_PAUSE, MAX_PAUSE);
            self.pause
        } else {
            Duration::ZERO
        };
        let due = self
            .last_log
            .is_none_or(|at| now.saturating_duration_since(at) >= LOG_INTERVAL);
        let log = if due {
            self.last_log = Some(now);
            self.said_paused = true;
            Some(std::mem::take(&mut self.unlogged))
        } else {
            self.unlogged += 1;
            None
        };
        AfterFailure { pause, log }
    }

    /// An accept succeeded: the pause starts over. `Some(n)`: the first success after `n`
    /// failures, and a failure line was written (worth one line saying the listener
    /// recovered). The line interval spans episodes: a listener flapping between full and free
    /// still writes at most a failure line and a recovery line per [`LOG_INTERVAL`].
    pub fn on_success(&mut self) -> Option<u64> {
        self.consecutive = 0;
        self.pause = Duration::ZERO;
        let failed = std::mem::take(&mut self.episode);
        if !std::mem::take(&mut self.said_paused) {
            return None;
        }
        Some(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn exhaustion_pauses_doubling_to_the_cap_and_logs_once_per_interval() {
        let t0 = Instant::now();
        let mut b = AcceptBackoff::default();
        let mut t = 0;
        let mut pauses = Vec::new();
        let mut logs = Vec::new();
        for _ in 0..40 {
            let step = b.on_failure(at(t0, t), true);
            pauses.push(step.pause.as_millis() as u64);
            if let Some(n) = step.log {
                logs.push((t, n));
            }
            t += step.pause.as_millis() as u64;
        }
        assert_eq!(&pauses[..7], &[10, 20, 40, 80, 160, 320, 500]);
        assert!(pauses[7..].iter().all(|&p| p == 500));
        // 40 failures over ~17 s: a line at 0, then one per 5 s with the count held back.
        assert_eq!(logs[0], (0, 0));
        assert_eq!(logs.len(), 4, "{logs:?}");
        let held: u64 = logs.iter().map(|(_, n)| n).sum();
        assert_eq!(held + logs.len() as u64 + b.unlogged, 40);
    }

    #[test]
    fn a_success_resets_the_pause_and_reports_the_episode_once() {
        let t0 = Instant::now();
        let mut b = AcceptBackoff::default();
        for i in 0..5 {
            b.on_failure(at(t0, i), true);
        }
        assert_eq!(b.on_success(), Some(5));
        assert_eq!(b.on_success(), None);
        let step = b.on_failure(at(t0, 10), true);
        assert_eq!(step.pause, FIRST_PAUSE, "the pause starts over");
        assert_eq!(
            step.log, None,
            "a new episode within the interval stays quiet"
        );
        assert_eq!(b.on_success(), None, "nor does its end");
        let step = b.on_failure(at(t0, 5_000), true);
        assert_eq!(
            step.log,
            Some(5),
            "the next line counts the 5 failures held back"
        );
    }

    #[test]
    fn flapping_writes_two_lines_per_interval_at_most() {
        let t0 = Instant::now();
        let mut b = AcceptBackoff::default();
        let mut lines = 0;
        // 20 s of: a failure, then a success 100 ms later.
        for i in 0..200 {
            lines += usize::from(b.on_failure(at(t0, i * 100), true).log.is_some());
            lines += usize::from(b.on_success().is_some());
        }
        assert_eq!(lines, 8, "4 intervals, a failure and a recovery line each");
    }

    #[test]
    fn a_stray_error_does_not_pause_but_a_repeating_one_does() {
        let t0 = Instant::now();
        let mut b = AcceptBackoff::default();
        assert_eq!(b.on_failure(t0, false).pause, Duration::ZERO);
        for _ in 1..PERSISTENT - 1 {
            assert_eq!(b.on_failure(t0, false).pause, Duration::ZERO);
        }
        assert_eq!(b.on_failure(t0, false).pause, FIRST_PAUSE);
    }

    proptest! {
        /// Whatever the mix of errors and their timing: pauses stay within the cap, and log
        /// lines never come closer than the interval, so N failures over T seconds write at
        /// most T / interval + 1 failure lines.
        #[test]
        fn lines_are_bounded_by_time_not_by_failures(
            steps in proptest::collection::vec((0u64..2_000, any::<bool>(), any::<bool>()), 1..400)
        ) {
            let t0 = Instant::now();
            let mut b = AcceptBackoff::default();
            let mut t = 0u64;
            let mut last_line: Option<u64> = None;
            for (gap, exhausted, success) in steps {
                t += gap;
                if success {
                    b.on_success();
                    continue;
                }
                let step = b.on_failure(at(t0, t), exhausted);
                prop_assert!(step.pause <= MAX_PAUSE);
                if step.log.is_some() {
                    if let Some(prev) = last_line {
                        prop_assert!(t - prev >= LOG_INTERVAL.as_millis() as u64);
                    }
                    last_line = Some(t);
                }
            }
        }
    }
}
