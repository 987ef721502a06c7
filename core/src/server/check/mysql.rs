//! `option mysql-check [user U [post-41|pre-41]]`: without a user, the server's initial
//! handshake must not be an error packet; with one, HAProxy's client authentication packet
//! (no password) and a `COM_QUIT` are sent at once, and the packet after the handshake must be
//! an OK packet. An error packet fails with `L7STS`, its error code and message. A pass is
//! `L7OK` with code 0 and no text, as HAProxy 2.6 reports it on its stats socket (seen beside a
//! real MariaDB: `e2e_health_checks::mysql_check_verdicts_match_haproxy_on_real_mariadb`).

use super::expect::{Expect, Judgement, Matcher};
use super::status::CheckStatus;
use super::Step;

/// Largest packet the check reads (the buffer bound keeps it smaller anyway).
const MAX_PACKET: usize = super::MAX_RESPONSE;

/// The authentication packet (sequence 1) for `user` followed by `COM_QUIT`.
pub fn auth_packet(user: &str, post41: bool) -> Vec<u8> {
    let mut body = Vec::new();
    if post41 {
        body.extend_from_slice(&[0x00, 0x82, 0x00, 0x00]); // capabilities: 4.1 protocol, secure auth
        body.extend_from_slice(&[0x00, 0x80, 0x00, 0x01]); // max packet
        body.push(0x21); // utf8
        body.extend_from_slice(&[0; 23]);
    } else {
        body.extend_from_slice(&[0x00, 0x80]);
        body.extend_from_slice(&[0x00, 0x00, 0x01]);
    }
    body.extend_from_slice(user.as_bytes());
    body.extend_from_slice(&[0, 0]); // end of user, empty auth response
    let len = body.len() as u32;
    let mut p = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, 1];
    p.extend(body);
    p.extend_from_slice(&[1, 0, 0, 0, 1]); // COM_QUIT
    p
}

/// The packet starting at `offset`: waits for all of it, fails on an error packet.
fn packet(buf: &[u8], offset: usize, eof: bool) -> Judgement {
    let Some(head) = buf.get(offset..offset + 4) else {
        return if eof { invalid() } else { Judgement::NeedMore };
    };
    let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
    if len > MAX_PACKET {
        return invalid();
    }
    let Some(p) = buf.get(offset + 4..offset + 4 + len) else {
        return if eof { invalid() } else { Judgement::NeedMore };
    };
    if p.first() == Some(&0xff) {
        let code = p.get(1..3).map(|c| u32::from(c[0]) | u32::from(c[1]) << 8);
        return Judgement::NoMatch {
            code,
            info: p.get(3..).unwrap_or_default().to_vec(),
        };
    }
    passed()
}

/// HAProxy 2.6's pass: code 0, no text.
fn passed() -> Judgement {
    Judgement::Match {
        code: Some(0),
        info: Vec::new(),
    }
}

fn invalid() -> Judgement {
    Judgement::Invalid {
        status: CheckStatus::L7Rsp,
        info: b"invalid or truncated MySQL packet".to_vec(),
    }
}

fn handshake(buf: &[u8], eof: bool) -> Judgement {
    packet(buf, 0, eof)
}
/// The packet after the handshake must be an OK packet (0x00).
fn auth_ok(buf: &[u8], eof: bool) -> Judgement {
    let hs = buf.get(..3).map_or(0, |h| {
        usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16
    });
    packet(buf, 4 + hs, eof)
}

fn rule(m: fn(&[u8], bool) -> Judgement) -> Step {
    let mut e = Expect::new(Matcher::Custom(m));
    e.error = CheckStatus::L7Sts;
    Step::Expect(e)
}

/// The steps of a MySQL check, authenticating as `user` when given.
pub(super) fn steps(user: Option<&str>, post41: bool) -> Vec<Step> {
    match user {
        None => vec![Step::connect_default(), rule(handshake)],
        Some(u) => vec![
            Step::connect_default(),
            Step::Send(auth_packet(u, post41)),
            rule(handshake),
            rule(auth_ok),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::super::probe::tests::run;
    use super::super::{CheckProtocol, DbUser};
    use super::*;

    /// A MariaDB 10.11 style initial handshake, sequence 0.
    fn handshake() -> Vec<u8> {
        let mut body = vec![10];
        body.extend_from_slice(b"5.5.5-10.11.6-MariaDB-0+deb12u1\0");
        body.extend_from_slice(&[1, 0, 0, 0]);
        body.extend_from_slice(b"abcdefgh\0");
        body.extend_from_slice(&[0xfe, 0xf7, 0x2d, 0x02, 0, 0xff, 0x81, 0x15]);
        body.extend_from_slice(&[0; 10]);
        body.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
        let mut p = vec![body.len() as u8, 0, 0, 0];
        p.extend(body);
        p
    }

    fn user() -> CheckProtocol {
        CheckProtocol::Mysql(DbUser {
            user: "haproxy".into(),
            ..DbUser::default()
        })
    }

    #[test]
    fn auth_packet_bytes() {
        let p = auth_packet("haproxy", true);
        assert_eq!(&p[..4], &[7 + 27 + 7, 0, 0, 1]);
        assert_eq!(&p[p.len() - 5..], &[1, 0, 0, 0, 1]);
        let p = auth_packet("haproxy", false);
        assert_eq!(&p[..4], &[7 + 7, 0, 0, 1]);
    }

    #[test]
    fn handshake_alone_passes_with_code_0_as_haproxy_reports_it() {
        let none = CheckProtocol::Mysql(DbUser::default());
        let hs = handshake();
        let (sent, v) = run(&none, &[&hs[..10], &hs[10..]]);
        assert!(sent.is_empty());
        assert_eq!(
            (v.status, v.code, v.info.as_str()),
            (CheckStatus::L7Ok, Some(0), "")
        );
    }

    #[test]
    fn user_check_needs_an_ok_packet() {
        let hs = handshake();
        let ok = [7, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0];
        let (sent, v) = run(&user(), &[&hs, &ok[..5], &ok[5..]]);
        assert_eq!(sent, auth_packet("haproxy", true));
        assert_eq!(v.status, CheckStatus::L7Ok);
        let mut denied = vec![0, 0, 0, 2, 0xff, 0x15, 0x04];
        denied.extend_from_slice(b"#28000Access denied for user 'haproxy'");
        denied[0] = (denied.len() - 4) as u8;
        let (_, v) = run(&user(), &[&hs, &denied]);
        assert_eq!((v.status, v.code), (CheckStatus::L7Sts, Some(1045)));
        assert!(v.info.contains("Access denied"), "{}", v.info);
        let (_, v) = run(&user(), &[&hs[..20], b""]);
        assert_eq!(v.status, CheckStatus::L7Rsp, "truncated handshake");
        let host_blocked = [4, 0, 0, 0, 0xff, 0x69, 0x04, b'x'];
        let (_, v) = run(&user(), &[&host_blocked]);
        assert_eq!((v.status, v.code), (CheckStatus::L7Sts, Some(1129)));
    }
}
