//! `option ssl-hello-chk`: an SSLv3 ClientHello, passed when the server answers with a TLS
//! handshake or alert record (`L6OK`), whatever it thinks of the offer.
//!
//! The hello offers the 39 classic cipher suites HAProxy lists (0x0001-0x001B, 0x002F-0x003A) and
//! its 28-byte random `HAPROXYSSLCHK\nHAPROXYSSLCHK\n`; HAProxy writes the current time in the
//! first four random bytes, tether zeros (the core reads no clock; servers do not look).

use super::expect::{Expect, Judgement, Matcher};
use super::status::CheckStatus;
use super::Step;

/// The ClientHello record as sent.
pub fn client_hello() -> Vec<u8> {
    let mut suites: Vec<u16> = (0x0001..=0x001B).collect();
    suites.extend(0x002F..=0x003A);
    let mut body = vec![0x03, 0x00, 0, 0, 0, 0];
    body.extend_from_slice(b"HAPROXYSSLCHK\nHAPROXYSSLCHK\n");
    body.push(0); // no session id
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // null compression
    let mut hs = vec![0x01, 0, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x00, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend(hs);
    rec
}

/// A handshake (0x16) or alert (0x15) record header: the server speaks SSL/TLS.
fn tls_record(buf: &[u8], _eof: bool) -> Judgement {
    match buf.first() {
        Some(0x15 | 0x16) => Judgement::Match {
            code: None,
            info: Vec::new(),
        },
        _ => Judgement::NoMatch {
            code: None,
            info: b"not an SSL/TLS record".to_vec(),
        },
    }
}

/// The steps of an SSL hello check.
pub(super) fn steps() -> Vec<Step> {
    let mut e = Expect::new(Matcher::Custom(tls_record));
    e.min_recv = Some(5);
    e.ok = CheckStatus::L6Ok;
    e.error = CheckStatus::L6Rsp;
    e.timeout = CheckStatus::L6Tout;
    vec![Step::Send(client_hello()), Step::Expect(e)]
}

#[cfg(test)]
mod tests {
    use super::super::probe::tests::run;
    use super::super::CheckProtocol;
    use super::*;

    #[test]
    fn hello_has_haproxy_layout() {
        let h = client_hello();
        assert_eq!(h.len(), 5 + 0x79);
        assert_eq!(
            &h[..9],
            &[0x16, 0x03, 0x00, 0x00, 0x79, 0x01, 0x00, 0x00, 0x75]
        );
        assert_eq!(&h[h.len() - 2..], &[1, 0]);
        assert_eq!(
            &h[43..46],
            &[0, 0x00, 0x4E],
            "empty session id, 78 bytes of suites"
        );
    }

    #[test]
    fn alert_or_handshake_passes_anything_else_fails() {
        let (sent, v) = run(&CheckProtocol::SslHello, &[&[0x15, 3], &[3, 0, 2]]);
        assert_eq!(sent, client_hello());
        assert_eq!(v.status, CheckStatus::L6Ok);
        let (_, v) = run(&CheckProtocol::SslHello, &[&[0x16, 3, 3, 0, 0x40]]);
        assert_eq!(v.status, CheckStatus::L6Ok);
        let (_, v) = run(&CheckProtocol::SslHello, &[b"HTTP/1.1 400 Bad"]);
        assert_eq!(v.status, CheckStatus::L6Rsp);
        let (_, v) = run(&CheckProtocol::SslHello, &[&[0x17], b""]);
        assert_eq!(v.status, CheckStatus::L6Rsp, "closed before 5 bytes");
        let (_, v) = run(&CheckProtocol::SslHello, &[b""]);
        assert_eq!(v.status, CheckStatus::L6Rsp, "closed at once");
    }
}
