//! `option redis-check`: send `PING` as a RESP array, pass on `+PONG`.
//!
//! A Redis that is loading its dataset answers `-LOADING ...` and fails with `L7STS` and that
//! line, as in HAProxy.

use super::expect::{Expect, Matcher};
use super::status::CheckStatus;
use super::Step;

/// The request: `*1\r\n$4\r\nPING\r\n`.
pub const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// The steps of a Redis check.
pub(super) fn steps() -> Vec<Step> {
    let mut e = Expect::new(Matcher::String(b"+PONG\r\n".to_vec()));
    e.error = CheckStatus::L7Sts;
    e.on_success = Some("Redis server is ok".into());
    vec![Step::Send(PING.to_vec()), Step::Expect(e)]
}

#[cfg(test)]
mod tests {
    use super::super::probe::tests::run;
    use super::super::CheckProtocol;
    use super::*;

    #[test]
    fn pong_passes_an_error_fails_with_its_line() {
        let (sent, v) = run(&CheckProtocol::Redis, &[b"+PO", b"NG\r\n"]);
        assert_eq!(sent, PING);
        assert_eq!(
            (v.status, v.info.as_str()),
            (CheckStatus::L7Ok, "Redis server is ok")
        );
        let (_, v) = run(
            &CheckProtocol::Redis,
            &[b"-LOADING Redis is loading the dataset in memory\r\n", b""],
        );
        assert_eq!(v.status, CheckStatus::L7Sts);
        assert!(v.info.starts_with("did not match"), "{}", v.info);
    }
}
