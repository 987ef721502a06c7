//! HAProxy's `agent-check`: a second TCP check to the server's agent (`agent-port`), which
//! answers one ASCII line of words that set the server's weight (`75%`), admin state (`ready`,
//! `drain`, `maint`), health (`up`, `down`, `stopped`, `fail`, with `#reason`) and
//! `maxconn:N`.
//!
//! As HAProxy 2.6 (`src/tcpcheck.c`, `tcpcheck_agent_expect_reply`): the line ends at the first
//! CR or LF, a NUL before it leaves the line incomplete (ignored); words are split by spaces,
//! tabs and commas, compared without case, the last of a kind wins and the first unknown word
//! is reported. An agent that cannot be reached changes nothing: only its words act on the
//! server. The words are parsed here, sans-IO; the engine applies the [`AgentEffect`].

use super::expect::{Expect, Judgement, Matcher};
use super::status::{CheckStatus, Verdict};
use super::{Plan, Step};
use crate::server::state::{AdminState, MAX_WEIGHT};

/// What the agent said about the server's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentHealth {
    /// `up`: the agent's part of the health is good again.
    Up,
    /// `down`, `stopped` or `fail`: the server is DOWN whatever its health check says.
    Down,
}

/// The words of one agent line, as written (last of each kind).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentAnswer {
    /// The health word and how it was spelt (`down`, `stopped`, `fail`, `up`).
    pub health: Option<(AgentHealth, String)>,
    /// `ready`, `drain` or `maint`.
    pub admin: Option<AdminState>,
    /// A weight word (starts with a digit and holds a `%`), e.g. `50%`.
    pub weight: Option<String>,
    /// The value of `maxconn:N`.
    pub maxconn: Option<String>,
    /// The first word not understood.
    pub error: Option<String>,
    /// The text after `#`.
    pub description: String,
}

/// What an answer does to the server, and the verdict shown for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentEffect {
    /// New agent health, if the line had a health word.
    pub health: Option<AgentHealth>,
    /// New admin state.
    pub admin: Option<AdminState>,
    /// New weight, 0..=256.
    pub weight: Option<u32>,
    /// New connection limit.
    pub maxconn: Option<u32>,
    /// The agent status for the stats page (`L7OK` on `up`, `L7STS` on a down word, else
    /// `CHECKED`) with HAProxy's description (`via agent : down (reason)`).
    pub verdict: Verdict,
}

/// The plan of an agent check: connect, write `send` if set (`agent-send`), read one line.
pub fn plan(send: Option<&str>) -> Plan {
    let mut steps = Vec::new();
    if let Some(s) = send.filter(|s| !s.is_empty()) {
        steps.push(Step::Send(s.as_bytes().to_vec()));
    }
    let mut e = Expect::new(Matcher::Custom(line_judge));
    e.error = CheckStatus::Checked;
    steps.push(Step::Expect(e));
    Plan::from_steps(steps)
}

/// Waits for a whole line (or the agent's close); the line itself is read by [`judge`].
fn line_judge(buf: &[u8], eof: bool) -> Judgement {
    if complete_line(buf).is_some() || eof {
        Judgement::Match {
            code: None,
            info: Vec::new(),
        }
    } else {
        Judgement::NeedMore
    }
}

/// The line in `buf`: the bytes before the first CR or LF, `None` when there is none or a NUL
/// comes first (HAProxy scans a NUL-terminated buffer).
pub fn complete_line(buf: &[u8]) -> Option<&[u8]> {
    let end = buf.iter().position(|&b| matches!(b, b'\r' | b'\n' | 0))?;
    (buf[end] != 0).then_some(&buf[..end])
}

/// The effect of one agent check: `verdict` is the probe's, `received` what the agent wrote;
/// `initial_weight` is the configured weight a `NN%` is relative to. A failed probe (refused,
/// timeout) changes nothing.
pub fn judge(verdict: Verdict, received: &[u8], initial_weight: u32) -> AgentEffect {
    let none = |verdict| AgentEffect {
        health: None,
        admin: None,
        weight: None,
        maxconn: None,
        verdict,
    };
    if !verdict.status.is_ok() {
        return none(verdict);
    }
    match complete_line(received) {
        Some(line) => AgentAnswer::parse(line).effect(initial_weight),
        None => none(Verdict::new(
            CheckStatus::Checked,
            None,
            "Ignoring incomplete line from agent",
        )),
    }
}

impl AgentAnswer {
    /// Reads one line (without its CR/LF).
    pub fn parse(line: &[u8]) -> AgentAnswer {
        let mut a = AgentAnswer::default();
        let mut rest = line;
        loop {
            while let [b' ' | b'\t' | b',', tail @ ..] = rest {
                rest = tail;
            }
            match rest {
                [] => break,
                [b'#', tail @ ..] => {
                    let d = tail
                        .iter()
                        .position(|&b| !matches!(b, b' ' | b'\t' | b'\n'));
                    a.description = text(&tail[d.unwrap_or(tail.len())..]);
                    break;
                }
                _ => {}
            }
            let end = rest
                .iter()
                .position(|&b| matches!(b, b' ' | b'\t' | b',' | b'\n'))
                .unwrap_or(rest.len());
            a.word(&rest[..end]);
            rest = &rest[end..];
        }
        a
    }

    fn word(&mut self, w: &[u8]) {
        let is = |k: &str| w.eq_ignore_ascii_case(k.as_bytes());
        if is("up") {
            self.health = Some((AgentHealth::Up, "up".into()));
        } else if ["down", "stopped", "fail"].iter().any(|k| is(k)) {
            self.health = Some((AgentHealth::Down, text(w)));
        } else if is("ready") {
            self.admin = Some(AdminState::Ready);
        } else if is("drain") {
            self.admin = Some(AdminState::Drain);
        } else if is("maint") {
            self.admin = Some(AdminState::Maint);
        } else if w.first().is_some_and(u8::is_ascii_digit) && w.contains(&b'%') {
            self.weight = Some(text(w));
        } else if w.len() >= 8 && w[..8].eq_ignore_ascii_case(b"maxconn:") {
            self.maxconn = Some(text(&w[8..]));
        } else if self.error.is_none() {
            self.error = Some(text(w));
        }
    }

    /// What the answer does to a server configured with `initial_weight`, with HAProxy's
    /// messages: a health word reports `via agent : WORD (why)`, otherwise the first unknown
    /// word, then the first warning (a weight or maxconn that does not parse).
    pub fn effect(&self, initial_weight: u32) -> AgentEffect {
        let mut warning = None;
        let weight = self.weight.as_deref().and_then(|w| {
            relative_weight(w, initial_weight)
                .map_err(|e| warning = warning.or(Some(e)))
                .ok()
        });
        let maxconn = self.maxconn.as_deref().and_then(|m| {
            parse_maxconn(m)
                .map_err(|e| warning = warning.or(Some(e)))
                .ok()
        });
        let error = self.error.as_deref();
        let (status, info) = match &self.health {
            Some((h, word)) => {
                let mut why = self.description.as_str();
                if why.is_empty() || *h == AgentHealth::Up {
                    why = error.or(warning).unwrap_or(why);
                }
                let status = match h {
                    AgentHealth::Up => CheckStatus::L7Ok,
                    AgentHealth::Down => CheckStatus::L7Sts,
                };
                match why {
                    "" => (status, format!("via agent : {word}")),
                    w => (status, format!("via agent : {word} ({w})")),
                }
            }
            None => match (error, warning) {
                (Some(e), _) => (
                    CheckStatus::Checked,
                    format!("agent reports an error : {e}"),
                ),
                (None, Some(w)) => (CheckStatus::Checked, format!("agent warns : {w}")),
                (None, None) => (CheckStatus::Checked, String::new()),
            },
        };
        AgentEffect {
            health: self.health.as_ref().map(|(h, _)| *h),
            admin: self.admin,
            weight,
            maxconn,
            verdict: Verdict::new(status, None, info),
        }
    }
}

/// HAProxy's `server_parse_weight_change_request` for an agent word: `N%` of the configured
/// weight, clamped to 256; a bare number 0..=256 after trailing garbage is refused, as HAProxy
/// does (the word holds a `%` somewhere).
pub fn relative_weight(word: &str, initial_weight: u32) -> Result<u32, &'static str> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err("Empty weight string empty or preceded by garbage");
    }
    // strtol saturates; HAProxy then caps a relative weight at 25600%.
    let w: u64 = word[..digits].parse().unwrap_or(u64::MAX);
    if &word[digits..] == "%" {
        let w = w.min(25600);
        let w = u64::from(initial_weight.min(MAX_WEIGHT)) * w / 100;
        return Ok(w.min(u64::from(MAX_WEIGHT)) as u32);
    }
    if w > u64::from(MAX_WEIGHT) {
        return Err("Absolute weight can only be between 0 and 256 inclusive.");
    }
    Err("Trailing garbage in weight string")
}

/// The value of `maxconn:N` (HAProxy `server_parse_maxconn_change_request`).
pub fn parse_maxconn(value: &str) -> Result<u32, &'static str> {
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err("maxconn string empty or preceded by garbage");
    }
    if digits != value.len() {
        return Err("Trailing garbage in maxconn string");
    }
    Ok(value.parse().unwrap_or(u32::MAX))
}

/// Bytes of the agent's line as text (non-printable bytes become `.`).
fn text(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '.'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn effect(line: &str, weight: u32) -> AgentEffect {
        AgentAnswer::parse(line.as_bytes()).effect(weight)
    }

    #[test]
    fn words_set_weight_admin_health_and_maxconn() {
        let e = effect("50%", 100);
        assert_eq!((e.weight, e.health, e.admin), (Some(50), None, None));
        assert_eq!(e.verdict.status, CheckStatus::Checked);
        let e = effect("DRAIN", 10);
        assert_eq!(e.admin, Some(AdminState::Drain));
        let e = effect("maint,75% maxconn:30", 8);
        assert_eq!(
            (e.admin, e.weight, e.maxconn),
            (Some(AdminState::Maint), Some(6), Some(30))
        );
        let e = effect("ready up", 1);
        assert_eq!(
            (e.admin, e.health),
            (Some(AdminState::Ready), Some(AgentHealth::Up))
        );
        assert_eq!(
            (e.verdict.status, e.verdict.info.as_str()),
            (CheckStatus::L7Ok, "via agent : up")
        );
    }

    #[test]
    fn down_words_carry_their_reason_and_the_last_health_word_wins() {
        for w in ["down", "stopped", "fail", "Fail"] {
            let e = effect(&format!("{w} #disk full"), 1);
            assert_eq!(e.health, Some(AgentHealth::Down), "{w}");
            assert_eq!(e.verdict.status, CheckStatus::L7Sts);
            assert_eq!(e.verdict.info, format!("via agent : {w} (disk full)"));
        }
        assert_eq!(effect("down up", 1).health, Some(AgentHealth::Up));
        assert_eq!(effect("up down", 1).health, Some(AgentHealth::Down));
        // After `#` nothing is a word.
        assert_eq!(effect("# down", 1).health, None);
    }

    #[test]
    fn odd_words_are_reported_and_bad_weights_warn() {
        let e = effect("hello 50% world", 100);
        assert_eq!(e.weight, Some(50));
        assert_eq!(e.verdict.info, "agent reports an error : hello");
        let e = effect("5x%", 100);
        assert_eq!(e.weight, None);
        assert_eq!(
            e.verdict.info,
            "agent warns : Trailing garbage in weight string"
        );
        assert_eq!(
            effect("up 999%x", 1).verdict.info,
            "via agent : up (Absolute weight can only be between 0 and 256 inclusive.)"
        );
        assert_eq!(effect("maxconn:-1", 1).maxconn, None);
        assert_eq!(effect("", 1).verdict.info, "");
    }

    #[test]
    fn weights_are_relative_and_clamped() {
        assert_eq!(relative_weight("100%", 10), Ok(10));
        assert_eq!(relative_weight("0%", 10), Ok(0));
        assert_eq!(relative_weight("1000%", 100), Ok(256));
        assert_eq!(
            relative_weight("99999999999999999999999%", 256),
            Ok(256),
            "saturates"
        );
        assert!(relative_weight("50", 10).is_err());
    }

    #[test]
    fn only_a_whole_line_is_read_and_failures_change_nothing() {
        let ok = Verdict::new(CheckStatus::L7Ok, None, "");
        assert_eq!(complete_line(b"drain\r\n"), Some(&b"drain"[..]));
        assert_eq!(complete_line(b"drain"), None);
        assert_eq!(complete_line(b"dr\0ain\n"), None, "a NUL ends the buffer");
        let e = judge(ok.clone(), b"drain", 1);
        assert_eq!(e.admin, None);
        assert_eq!(e.verdict.info, "Ignoring incomplete line from agent");
        assert_eq!(judge(ok, b"drain\nup\n", 1).health, None, "first line only");
        let refused = Verdict::new(CheckStatus::L4Con, None, "Connection refused");
        let e = judge(refused.clone(), b"down\n", 1);
        assert_eq!((e.health, e.verdict), (None, refused));
    }

    #[test]
    fn the_plan_sends_agent_send_then_waits_for_a_line() {
        use super::super::Io;
        let mut p = plan(Some("hello\n")).probe();
        assert!(matches!(p.poll(), Io::Connect { .. }));
        p.on_connected();
        assert_eq!(p.poll(), Io::Send(b"hello\n".to_vec()));
        p.on_sent();
        assert_eq!(p.poll(), Io::Recv);
        p.on_data(b"50");
        assert_eq!(p.poll(), Io::Recv, "no line yet");
        p.on_data(b"%\n");
        let Io::Done(v) = p.poll() else {
            panic!("done after a line")
        };
        assert_eq!(judge(v, p.received(), 10).weight, Some(5));
    }

    proptest! {
        /// Any bytes: no panic, a weight within 0..=256, printable bounded messages.
        #[test]
        fn arbitrary_bytes_never_panic_and_weights_stay_in_range(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            weight in 0u32..=1000,
        ) {
            let ok = Verdict::new(CheckStatus::L7Ok, None, "");
            let e = judge(ok, &bytes, weight);
            prop_assert!(e.weight.is_none_or(|w| w <= MAX_WEIGHT));
            prop_assert!(e.verdict.info.len() <= Verdict::MAX_INFO);
            prop_assert!(e.verdict.info.bytes().all(|b| (0x20..0x7f).contains(&b)));
        }

        /// Weight words from the agent's grammar stay within 0..=256 and follow the percentage.
        #[test]
        fn a_percentage_is_of_the_configured_weight(pct in 0u64..100_000, weight in 0u32..=256) {
            let w = relative_weight(&format!("{pct}%"), weight).unwrap();
            prop_assert_eq!(u64::from(w), (u64::from(weight) * pct.min(25600) / 100).min(256));
        }

        /// Parsing is a function of the line: the same words, written back, parse the same.
        #[test]
        fn parse_is_idempotent(line in "[a-zA-Z0-9%:#, \\t]{0,60}") {
            let a = AgentAnswer::parse(line.as_bytes());
            prop_assert_eq!(&a, &AgentAnswer::parse(line.as_bytes()));
            let mut again = String::new();
            if let Some((_, w)) = &a.health { again.push_str(w); again.push(' '); }
            match a.admin {
                Some(AdminState::Ready) => again.push_str("ready "),
                Some(AdminState::Drain) => again.push_str("drain "),
                Some(AdminState::Maint) => again.push_str("maint "),
                None => {}
            }
            if let Some(w) = &a.weight { again.push_str(w); again.push(' '); }
            if let Some(m) = &a.maxconn { again.push_str("maxconn:"); again.push_str(m); again.push(' '); }
            if let Some(e) = &a.error { again.push_str(e); again.push(' '); }
            if !a.description.is_empty() { again.push('#'); again.push_str(&a.description); }
            let b = AgentAnswer::parse(again.as_bytes());
            prop_assert_eq!(b.effect(100), a.effect(100));
        }
    }
}
