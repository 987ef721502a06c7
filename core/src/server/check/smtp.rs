//! `option smtpchk [HELO|EHLO domain]`: the banner must be a 2xx reply, then the greeting
//! (`HELO localhost` unless written) must be answered 2xx (the whole reply, every line of a
//! multi-line one), then `QUIT` must be answered 2xx, whose code and text the check reports
//! (`221`, `Bye`), as HAProxy 2.6 does.

use super::expect::{Expect, Judgement, Matcher};
use super::status::CheckStatus;
use super::Step;

/// A reply line `NNN` followed by space, `\r` (or `-` where `more` allows a multi-line reply).
fn reply(buf: &[u8], first: u8, more: bool) -> Judgement {
    let Some(code) = buf.get(..3).filter(|c| c.iter().all(u8::is_ascii_digit)) else {
        return Judgement::NoMatch {
            code: None,
            info: line(buf).to_vec(),
        };
    };
    let code_n = code.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    let sep_ok = matches!(buf.get(3), Some(b' ' | b'\r')) || (more && buf.get(3) == Some(&b'-'));
    let text = line(buf.get(4..).unwrap_or_default());
    let text = text.strip_prefix(b" ").unwrap_or(text).to_vec();
    if sep_ok && (first == 0 || code[0] == first) {
        Judgement::Match {
            code: Some(code_n),
            info: text,
        }
    } else {
        Judgement::NoMatch {
            code: Some(code_n),
            info: text,
        }
    }
}

/// The first line without its end of line.
fn line(buf: &[u8]) -> &[u8] {
    let end = buf
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(buf.len());
    &buf[..end]
}

fn any_reply(buf: &[u8], _eof: bool) -> Judgement {
    reply(buf, 0, false)
}
fn banner_2xx(buf: &[u8], _eof: bool) -> Judgement {
    reply(buf, b'2', false)
}
/// A whole 2xx reply, multi-line or not (`250-mx\r\n250 8BITMIME\r\n`): waits for its last
/// line; the first line's code and text are reported.
fn greeting_2xx(buf: &[u8], eof: bool) -> Judgement {
    let mut last = buf;
    while last.first() == Some(&b'2') && last.get(3) == Some(&b'-') {
        match last.windows(2).position(|w| w == b"\r\n") {
            Some(end) => last = &last[end + 2..],
            None if eof => break,
            None => return Judgement::NeedMore,
        }
    }
    if last.len() < 4 && !eof {
        return Judgement::NeedMore;
    }
    // HAProxy reports the first line's code and text, whatever the verdict.
    let (code, info) = match reply(buf, 0, true) {
        Judgement::Match { code, info } | Judgement::NoMatch { code, info } => (code, info),
        other => return other,
    };
    match reply(last, b'2', false) {
        Judgement::Match { .. } => Judgement::Match { code, info },
        Judgement::NoMatch { .. } => Judgement::NoMatch { code, info },
        other => other,
    }
}
fn quit_2xx(buf: &[u8], _eof: bool) -> Judgement {
    reply(buf, b'2', true)
}

fn rule(m: fn(&[u8], bool) -> Judgement, error: CheckStatus) -> Step {
    let mut e = Expect::new(Matcher::Custom(m));
    e.min_recv = Some(4);
    e.error = error;
    Step::Expect(e)
}

/// The steps of an SMTP check greeting with `greeting` (`HELO localhost`).
pub(super) fn steps(greeting: &str) -> Vec<Step> {
    vec![
        Step::connect_default(),
        rule(any_reply, CheckStatus::L7Rsp),
        rule(banner_2xx, CheckStatus::L7Sts),
        Step::Send(format!("{greeting}\r\n").into_bytes()),
        rule(greeting_2xx, CheckStatus::L7Sts),
        Step::Send(b"QUIT\r\n".to_vec()),
        rule(quit_2xx, CheckStatus::L7Sts),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::probe::tests::run;
    use super::super::CheckProtocol;
    use super::*;

    fn smtp() -> CheckProtocol {
        CheckProtocol::Smtp(super::super::SmtpCheck::default())
    }

    #[test]
    fn banner_helo_and_quit_all_2xx() {
        let (sent, v) = run(
            &smtp(),
            &[
                b"220 mx ESMTP Postfix\r\n",
                b"250 mx\r\n",
                b"221 2.0.0 Bye\r\n",
            ],
        );
        assert_eq!(sent, b"HELO localhost\r\nQUIT\r\n");
        assert_eq!(
            (v.status, v.code, v.info.as_str()),
            (CheckStatus::L7Ok, Some(221), "2.0.0 Bye")
        );
    }

    #[test]
    fn a_multi_line_answer_is_read_whole_before_quit() {
        // The EHLO answer's second line arrives apart: it is not taken for QUIT's answer.
        let (sent, v) = run(
            &smtp(),
            &[
                b"220 mx\r\n",
                b"250-mx\r\n",
                b"250 8BITMIME\r\n",
                b"221 Bye\r\n",
            ],
        );
        assert_eq!(sent, b"HELO localhost\r\nQUIT\r\n");
        assert_eq!((v.status, v.info.as_str()), (CheckStatus::L7Ok, "Bye"));
        let (_, v) = run(&smtp(), &[b"220 mx\r\n", b"250-mx\r\n", b"550 no\r\n"]);
        assert_eq!((v.status, v.code), (CheckStatus::L7Sts, Some(250)));
        let (_, v) = run(&smtp(), &[b"220 mx\r\n", b"250 mx\r\n", b"502 no\r\n"]);
        assert_eq!(
            (v.status, v.code),
            (CheckStatus::L7Sts, Some(502)),
            "QUIT refused"
        );
    }

    #[test]
    fn busy_banner_is_l7sts_garbage_is_l7rsp() {
        let (sent, v) = run(&smtp(), &[b"421 mx busy\r\n"]);
        assert!(sent.is_empty(), "nothing sent after a refusal");
        assert_eq!(
            (v.status, v.code, v.info.as_str()),
            (CheckStatus::L7Sts, Some(421), "mx busy")
        );
        let (_, v) = run(&smtp(), &[b"+OK POP3 ready\r\n"]);
        assert_eq!(v.status, CheckStatus::L7Rsp);
        let (_, v) = run(&smtp(), &[b"220 mx\r\n", b"550 no\r\n"]);
        assert_eq!((v.status, v.code), (CheckStatus::L7Sts, Some(550)));
    }
}
