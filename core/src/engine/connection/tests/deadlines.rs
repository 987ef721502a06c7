//! Deadlines never move backwards (issue 17 §1), over random event sequences.
//!
//! The machine's deadline ([`Connection::poll_timeout`]) belongs to its step: inspect (from
//! accept), queue and connect (from when the step began), turnaround (until the retry).
//! What holds, and is asserted after every input:
//! - within one step the deadline never moves, earlier or later (a byte does not slide it);
//! - a step's deadline is never before the moment the step began, and is exactly that moment
//!   plus the step's timeout (the turnaround: plus its wait, or nothing when it redispatches at
//!   once), so a driver never sleeps past it nor wakes before the time it was meant to wait.
//!
//! What may move earlier by design: a *new* step's deadline is measured from when that step
//! began, as HAProxy measures `timeout queue` and `timeout connect`, so it can come before the
//! previous step's (a hello complete at 10 ms with a 2 s inspect delay, then a 1 s queue). The
//! forwarding idle deadline (in `forward.rs`, after the machine) likewise switches to the
//! shorter `timeout client-fin`/`server-fin` once the other direction has ended.

use proptest::prelude::*;

use super::*;

/// A backend with two servers, s1 limited to `maxconn` when set (so connections queue).
fn config(inspect_ms: u64, connect_ms: u64, queue_ms: u64, retries: u32, maxconn: bool) -> String {
    let maxconn = if maxconn { "maxconn = 1" } else { "" };
    format!(
        r#"
[[frontend]]
name = "main"
bind = ["127.0.0.1:9443"]
backend = "app"
inspect-delay = "{inspect_ms}ms"

[[backend]]
name = "app"
balance = "roundrobin"
affinity = ["session-id"]
retries = {retries}
timeout-connect = "{connect_ms}ms"
timeout-queue = "{queue_ms}ms"

[[backend.server]]
name = "s1"
address = "127.0.0.1:1001"
{maxconn}

[[backend.server]]
name = "s2"
address = "127.0.0.1:1002"
"#
    )
}

/// The step a deadline belongs to: phase kind and server.
fn step(phase: &Phase) -> (std::mem::Discriminant<Phase>, Option<ServerId>) {
    let server = match *phase {
        Phase::Queue { server, .. } | Phase::Connect { server, .. } => Some(server),
        Phase::Forward { server } => Some(server),
        _ => None,
    };
    (std::mem::discriminant(phase), server)
}

/// The deadline a step that began at `began` must have.
fn expected(c: &Connection<'_>, began: Instant) -> Vec<Option<Instant>> {
    let t = &c.be.timeouts;
    match c.phase {
        Phase::Inspect => vec![Some(c.start + c.fe.inspect_delay)],
        Phase::Queue { .. } => vec![deadline(began, t.queue)],
        Phase::Connect { .. } => vec![deadline(began, t.connect)],
        Phase::Turnaround { .. } => {
            let wait = c.be.retry.turnaround();
            vec![Some(began), Some(began + wait)]
        }
        Phase::Forward { .. } | Phase::Closing { .. } => vec![None],
    }
}

/// The step in progress and its deadline.
struct Track {
    key: (std::mem::Discriminant<Phase>, Option<ServerId>),
    deadline: Option<Instant>,
}

impl Track {
    fn new(c: &Connection<'_>) -> Self {
        Track {
            key: step(&c.phase),
            deadline: c.poll_timeout(),
        }
    }

    /// Checks the deadline after an input at `now`.
    fn observe(
        &mut self,
        c: &Connection<'_>,
        now: Instant,
        t0: Instant,
    ) -> Result<(), TestCaseError> {
        let d = c.poll_timeout();
        if step(&c.phase) == self.key {
            prop_assert_eq!(d, self.deadline, "the deadline of {:?} moved", c.phase);
            return Ok(());
        }
        *self = Track::new(c);
        prop_assert!(d.is_none_or(|d| d >= now), "{:?} set in the past", c.phase);
        prop_assert!(
            expected(c, now).contains(&d),
            "{:?}: deadline {:?}, began {:?}",
            c.phase,
            d.map(|d| d - t0),
            now - t0
        );
        Ok(())
    }
}

/// The driver does what `action` asks, the outcome chosen by `pick` (a timeout at the
/// deadline, as the driver's timer fires); false once the connection is over.
fn act(c: &mut Connection<'_>, action: Action, now: &mut Instant, pick: u8, hello: &[u8]) -> bool {
    let timeout = |c: &mut Connection<'_>, now: &mut Instant| {
        *now = c.poll_timeout().map_or(*now, |d| d.max(*now));
        c.handle_timeout(*now);
    };
    match action {
        Action::ReadClient { max } => match pick % 4 {
            0 | 1 => {
                let have = c.inspect_buffer().len().min(hello.len());
                let n = (usize::from(pick) * 7 % 200 + 1).min(max);
                feed(c, &hello[have..(have + n).min(hello.len())]);
            }
            2 => timeout(c, now),
            _ => c.on_client_read(0),
        },
        Action::TakeSlot { .. } => match pick % 3 {
            0 => c.on_slot(*now, Ok(())),
            1 => c.on_slot(*now, Err(QueueError::Full)),
            _ => timeout(c, now),
        },
        Action::Connect { .. } => match pick % 5 {
            0 => c.on_connect(*now, Ok(c.first_bytes().len())),
            1 => c.on_connect(*now, Err(ConnectFailure::Refused)),
            2 => c.on_connect(*now, Err(ConnectFailure::Other)),
            3 => timeout(c, now),
            _ => c.on_connect(*now, Err(ConnectFailure::Local)),
        },
        Action::Sleep => timeout(c, now),
        Action::Forward { .. } => {
            c.on_forwarded(Some(forwarded(PumpEnd::Eof, PumpEnd::Eof)));
            return false;
        }
        Action::Close { .. } => return false,
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_deadline_never_moves_within_its_step_and_never_precedes_its_start(
        inspect_ms in 1u64..3000,
        connect_ms in 0u64..3000,
        queue_ms in 0u64..3000,
        retries in 0u32..4,
        maxconn in any::<bool>(),
        // Time between inputs, in microseconds: sub-millisecond instants included.
        events in proptest::collection::vec((0u64..1_500_000, any::<u8>()), 1..40),
    ) {
        let text = config(inspect_ms, connect_ms, queue_ms, retries, maxconn);
        let config = load_toml("deadlines.toml", &text).expect("test config loads");
        let rig = Rig::new(build(&config, None).expect("test config builds"));
        let hello = client_hello(&[9; 32], "d.example", None);
        let mut c = rig.connection();
        let mut now = rig.at(0);
        let mut track = Track::new(&c);
        for (gap_us, pick) in events {
            now += Duration::from_micros(gap_us);
            let action = c.poll(now);
            track.observe(&c, now, rig.t0)?;
            let more = act(&mut c, action, &mut now, pick, &hello);
            track.observe(&c, now, rig.t0)?;
            if !more {
                break;
            }
            c.poll(now);
            track.observe(&c, now, rig.t0)?;
        }
    }
}
