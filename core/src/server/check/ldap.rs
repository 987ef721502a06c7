//! `option ldap-check`: an anonymous LDAPv3 simple bind; the server must answer with a
//! BindResponse whose resultCode is 0 (RFC 4511 §4.2.2).
//!
//! As HAProxy 2.6: an answer that is not an LDAPv3 message fails with `L7RSP` ("Not LDAPv3
//! protocol"), a BindResponse with another resultCode with `L7STS`. The answer is read as BER
//! over `&[u8]`, every length bounds-checked, and judged only once the whole message is in.

use super::expect::{Expect, Judgement, Matcher};
use super::status::CheckStatus;
use super::Step;

/// BindRequest, messageID 1, version 3, empty name, simple authentication with an empty
/// password (what HAProxy sends).
pub const BIND_REQUEST: &[u8] = &[
    0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00,
];

/// A BER tag-length header at the start of `buf`: (tag, content length, header length);
/// `None` when more bytes are needed, `Err` when the length cannot be an LDAP one.
fn header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, ()> {
    let (Some(&tag), Some(&first)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if first & 0x80 == 0 {
        return Ok(Some((tag, usize::from(first), 2)));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return Err(());
    }
    let Some(bytes) = buf.get(2..2 + n) else {
        return Ok(None);
    };
    let len = bytes.iter().fold(0usize, |l, b| (l << 8) | usize::from(*b));
    Ok(Some((tag, len, 2 + n)))
}

fn invalid() -> Judgement {
    Judgement::Invalid {
        status: CheckStatus::L7Rsp,
        info: b"Not LDAPv3 protocol".to_vec(),
    }
}

/// Judges the server's answer to [`BIND_REQUEST`].
fn bind_response(buf: &[u8], eof: bool) -> Judgement {
    match judge(buf) {
        Ok(Some(j)) => j,
        Ok(None) if !eof => Judgement::NeedMore,
        _ => invalid(),
    }
}

fn judge(buf: &[u8]) -> Result<Option<Judgement>, ()> {
    let Some((tag, len, at)) = header(buf)? else {
        return Ok(None);
    };
    if tag != 0x30 {
        return Err(());
    }
    let Some(msg) = buf.get(at..at + len) else {
        return Ok(None);
    };
    // messageID: an INTEGER; then the protocolOp, which must be a BindResponse.
    let Some((0x02, id_len, id_at)) = header(msg)? else {
        return Err(());
    };
    let op = msg.get(id_at + id_len..).ok_or(())?;
    let Some((0x61, op_len, op_at)) = header(op)? else {
        return Err(());
    };
    let result = op.get(op_at..op_at + op_len).ok_or(())?;
    // resultCode: ENUMERATED, one byte for every code RFC 4511 defines.
    let code = match result {
        [0x0a, 0x01, code, ..] => u32::from(*code),
        _ => return Err(()),
    };
    Ok(Some(if code == 0 {
        Judgement::Match {
            code: Some(0),
            info: b"Success".to_vec(),
        }
    } else {
        Judgement::NoMatch {
            code: Some(code),
            info: b"See RFC: http://tools.ietf.org/html/rfc4511#section-4.1.9".to_vec(),
        }
    }))
}

/// The steps of an LDAP check.
pub(super) fn steps() -> Vec<Step> {
    let mut e = Expect::new(Matcher::Custom(bind_response));
    e.error = CheckStatus::L7Sts;
    vec![Step::Send(BIND_REQUEST.to_vec()), Step::Expect(e)]
}

#[cfg(test)]
mod tests {
    use super::super::probe::tests::run;
    use super::super::CheckProtocol;
    use super::*;
    use proptest::prelude::*;

    /// A BindResponse with `code`, as OpenLDAP sends it.
    fn response(code: u8) -> Vec<u8> {
        vec![
            0x30, 0x0c, 0x02, 0x01, 0x01, 0x61, 0x07, 0x0a, 0x01, code, 0x04, 0x00, 0x04, 0x00,
        ]
    }

    #[test]
    fn success_passes_split_anywhere() {
        let r = response(0);
        for cut in 1..r.len() {
            let (sent, v) = run(&CheckProtocol::Ldap, &[&r[..cut], &r[cut..]]);
            assert_eq!(sent, BIND_REQUEST);
            assert_eq!((v.status, v.info.as_str()), (CheckStatus::L7Ok, "Success"));
        }
    }

    #[test]
    fn a_refused_bind_fails_with_its_code() {
        // 49: invalidCredentials; 53: unwillingToPerform (anonymous binds disabled).
        for code in [49u8, 53] {
            let (_, v) = run(&CheckProtocol::Ldap, &[&response(code), b""]);
            assert_eq!(v.status, CheckStatus::L7Sts, "{code}");
            assert_eq!(v.code, Some(u32::from(code)));
        }
    }

    #[test]
    fn a_long_form_length_is_read() {
        let mut r = vec![0x30, 0x81, 0x0c];
        r.extend_from_slice(&response(0)[2..]);
        let (_, v) = run(&CheckProtocol::Ldap, &[&r, b""]);
        assert_eq!(v.status, CheckStatus::L7Ok);
    }

    #[test]
    fn not_ldap_is_l7rsp() {
        for answer in [
            &b"HTTP/1.0 400 Bad Request\r\n\r\n"[..],
            &[0x30, 0x03, 0x02, 0x01, 0x01],
            &[0x30, 0x85, 1, 2, 3, 4, 5],
        ] {
            let (_, v) = run(&CheckProtocol::Ldap, &[answer, b""]);
            assert_eq!(v.status, CheckStatus::L7Rsp, "{answer:?}");
            assert_eq!(v.info, "Not LDAPv3 protocol");
        }
    }

    proptest! {
        /// Hostile bytes never panic and always end in a verdict once the server closes.
        #[test]
        fn any_answer_gets_a_verdict(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let (_, v) = run(&CheckProtocol::Ldap, &[&bytes, b""]);
            prop_assert!(matches!(v.status, CheckStatus::L7Ok | CheckStatus::L7Sts | CheckStatus::L7Rsp | CheckStatus::L7Tout), "{v:?}");
        }
    }
}
