//! `option pgsql-check user U`: a StartupMessage (protocol 3.0) for user U; an ErrorResponse
//! fails with the server's message (`L7RSP`), an Authentication request the check can pass
//! (ok, cleartext, MD5...) succeeds, anything else is `L7STS`.

use super::expect::{Expect, Judgement, Matcher};
use super::status::CheckStatus;
use super::Step;

/// The StartupMessage for `user`: length, version 3.0, `user\0U\0`, terminating `\0`.
pub fn startup(user: &str) -> Vec<u8> {
    let len = (15 + user.len()) as u32;
    let mut m = len.to_be_bytes().to_vec();
    m.extend_from_slice(&[0, 3, 0, 0]);
    m.extend_from_slice(b"user\0");
    m.extend_from_slice(user.as_bytes());
    m.extend_from_slice(&[0, 0]);
    m
}

/// Not an ErrorResponse (`E`); its message fields follow byte 6.
fn not_error(buf: &[u8], _eof: bool) -> Judgement {
    if buf.first() == Some(&b'E') {
        let msg = buf.get(6..).unwrap_or_default();
        let msg = msg.split(|&b| b == 0).next().unwrap_or_default().to_vec();
        Judgement::NoMatch {
            code: None,
            info: msg,
        }
    } else {
        Judgement::Match {
            code: None,
            info: Vec::new(),
        }
    }
}

/// An Authentication message (`R`, length 8, 10 or 12) asking for no, cleartext, Kerberos,
/// MD5, SCM or GSS authentication: the server knows the user and will talk.
fn auth_request(buf: &[u8], _eof: bool) -> Judgement {
    let ok = buf.len() >= 9
        && buf[0] == b'R'
        && buf[1..4] == [0, 0, 0]
        && matches!(buf[4], 0x08 | 0x0A | 0x0C)
        && buf[5..8] == [0, 0, 0]
        && matches!(buf[8], 0 | 2..=6);
    if ok {
        Judgement::Match {
            code: None,
            info: Vec::new(),
        }
    } else {
        Judgement::NoMatch {
            code: None,
            info: Vec::new(),
        }
    }
}

/// The steps of a PostgreSQL check as `user`.
pub(super) fn steps(user: &str) -> Vec<Step> {
    let mut not_err = Expect::new(Matcher::Custom(not_error));
    not_err.min_recv = Some(5);
    let mut auth = Expect::new(Matcher::Custom(auth_request));
    auth.min_recv = Some(9);
    auth.error = CheckStatus::L7Sts;
    auth.on_success = Some("PostgreSQL server is ok".into());
    auth.on_error = Some("PostgreSQL unknown error".into());
    vec![
        Step::connect_default(),
        Step::Send(startup(user)),
        Step::Expect(not_err),
        Step::Expect(auth),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::probe::tests::run;
    use super::super::{CheckProtocol, DbUser};
    use super::*;

    fn pg() -> CheckProtocol {
        CheckProtocol::Pgsql(DbUser {
            user: "haproxy".into(),
            ..DbUser::default()
        })
    }

    #[test]
    fn startup_message_bytes() {
        let m = startup("haproxy");
        assert_eq!(m.len(), 22);
        assert_eq!(&m[..8], &[0, 0, 0, 22, 0, 3, 0, 0]);
        assert_eq!(&m[8..], b"user\0haproxy\0\0");
    }

    #[test]
    fn trust_and_md5_pass_errors_fail_with_the_message() {
        let (sent, v) = run(&pg(), &[&[b'R', 0, 0, 0], &[8, 0, 0, 0, 0]]);
        assert_eq!(sent, startup("haproxy"));
        assert_eq!(
            (v.status, v.info.as_str()),
            (CheckStatus::L7Ok, "PostgreSQL server is ok")
        );
        let (_, v) = run(&pg(), &[&[b'R', 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4]]);
        assert_eq!(v.status, CheckStatus::L7Ok, "md5 request");
        let err = b"E\0\0\0\x30SFATAL\0C28000\0Mno pg_hba.conf entry\0\0";
        let (_, v) = run(&pg(), &[err]);
        assert_eq!((v.status, v.info.as_str()), (CheckStatus::L7Rsp, "FATAL"));
        let (_, v) = run(&pg(), &[b"Not a PostgreSQL response"]);
        assert_eq!(
            (v.status, v.info.as_str()),
            (CheckStatus::L7Sts, "PostgreSQL unknown error")
        );
        let scram = [b'R', 0, 0, 0, 0x17, 0, 0, 0, 0x0A];
        let (_, v) = run(&pg(), &[&scram, b"SCRAM-SHA-256\0\0"]);
        assert_eq!(
            v.status,
            CheckStatus::L7Sts,
            "SASL is not an answer the check can pass"
        );
    }
}
