//! A check's verdict in HAProxy's words: the status code the stats page shows (`L7OK`,
//! `L4CON`...), HAProxy's description of it, the protocol code (an HTTP status, a MySQL error)
//! and a short message from the server.

/// HAProxy's check status codes (`doc/management.txt`, "check_status"), those a check can end
/// with here.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckStatus {
    /// Layer 4 check passed: the connection was accepted.
    L4Ok,
    /// Layer 4 timeout: no connection in time.
    L4Tout,
    /// Layer 4 connection problem: refused, reset, unreachable.
    L4Con,
    /// Layer 6 check passed (SSL hello answered).
    L6Ok,
    /// Layer 6 timeout.
    L6Tout,
    /// Layer 6 invalid response.
    L6Rsp,
    /// Layer 7 check passed.
    L7Ok,
    /// Layer 7 timeout: connected, but no valid answer in time.
    L7Tout,
    /// Layer 7 invalid response: not the protocol expected.
    L7Rsp,
    /// Layer 7 wrong status: a valid answer saying no (HTTP 503, MySQL error).
    L7Sts,
    /// An agent answered without a health word: nothing changes (HAProxy `CHECKED`).
    Checked,
}

impl CheckStatus {
    /// The code as HAProxy writes it (`check_status` in the stats CSV).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::L4Ok => "L4OK",
            CheckStatus::L4Tout => "L4TOUT",
            CheckStatus::L4Con => "L4CON",
            CheckStatus::L6Ok => "L6OK",
            CheckStatus::L6Tout => "L6TOUT",
            CheckStatus::L6Rsp => "L6RSP",
            CheckStatus::L7Ok => "L7OK",
            CheckStatus::L7Tout => "L7TOUT",
            CheckStatus::L7Rsp => "L7RSP",
            CheckStatus::L7Sts => "L7STS",
            CheckStatus::Checked => "CHECKED",
        }
    }

    /// HAProxy's description of the code (`check_desc` in the stats CSV).
    pub fn description(self) -> &'static str {
        match self {
            CheckStatus::L4Ok => "Layer4 check passed",
            CheckStatus::L4Tout => "Layer4 timeout",
            CheckStatus::L4Con => "Layer4 connection problem",
            CheckStatus::L6Ok => "Layer6 check passed",
            CheckStatus::L6Tout => "Layer6 timeout",
            CheckStatus::L6Rsp => "Layer6 invalid response",
            CheckStatus::L7Ok => "Layer7 check passed",
            CheckStatus::L7Tout => "Layer7 timeout",
            CheckStatus::L7Rsp => "Layer7 invalid response",
            CheckStatus::L7Sts => "Layer7 wrong status",
            CheckStatus::Checked => "No status change",
        }
    }

    /// Whether the check passed (counts towards `rise`).
    pub fn is_ok(self) -> bool {
        matches!(
            self,
            CheckStatus::L4Ok | CheckStatus::L6Ok | CheckStatus::L7Ok
        )
    }

    /// Parses HAProxy's spelling (`ok-status L6OK`).
    pub fn parse(s: &str) -> Option<CheckStatus> {
        ALL.iter()
            .copied()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
    }
}

const ALL: [CheckStatus; 11] = [
    CheckStatus::L4Ok,
    CheckStatus::L4Tout,
    CheckStatus::L4Con,
    CheckStatus::L6Ok,
    CheckStatus::L6Tout,
    CheckStatus::L6Rsp,
    CheckStatus::L7Ok,
    CheckStatus::L7Tout,
    CheckStatus::L7Rsp,
    CheckStatus::L7Sts,
    CheckStatus::Checked,
];

impl std::fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The end of one check: what the stats page and the health log line show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The status code.
    pub status: CheckStatus,
    /// The protocol's own code, when it has one (HTTP status, SMTP reply, MySQL error).
    pub code: Option<u32>,
    /// A short message: the server's words (HTTP reason, Redis reply) or what went wrong.
    /// Printable ASCII only, at most [`Verdict::MAX_INFO`] bytes.
    pub info: String,
}

impl Verdict {
    /// Longest `info` kept: enough for an error line, short enough for a stats cell.
    pub const MAX_INFO: usize = 128;

    /// A verdict; `info` is cut to [`Verdict::MAX_INFO`] and its control bytes replaced, so a
    /// server cannot forge log lines or stats cells.
    pub fn new(status: CheckStatus, code: Option<u32>, info: impl AsRef<[u8]>) -> Verdict {
        Verdict {
            status,
            code,
            info: printable(info.as_ref()),
        }
    }

    /// HAProxy's reason text in a health log line: `Layer7 wrong status, code: 503, info:
    /// "Service Unavailable"`.
    pub fn reason(&self) -> String {
        let mut s = self.status.description().to_string();
        if let Some(c) = self.code {
            s.push_str(&format!(", code: {c}"));
        }
        if !self.info.is_empty() {
            s.push_str(&format!(", info: \"{}\"", self.info));
        }
        s
    }
}

/// `bytes` as printable ASCII: other bytes become `.`, at most [`Verdict::MAX_INFO`] long.
fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(Verdict::MAX_INFO)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_only_ok_codes_pass() {
        for c in ALL {
            assert_eq!(CheckStatus::parse(c.as_str()), Some(c));
            assert_eq!(c.is_ok(), c.as_str().ends_with("OK"), "{c}");
        }
        assert_eq!(CheckStatus::parse("l7sts"), Some(CheckStatus::L7Sts));
        assert_eq!(CheckStatus::parse("L9OK"), None);
    }

    #[test]
    fn info_is_printable_and_bounded() {
        let v = Verdict::new(CheckStatus::L7Rsp, None, b"bad\r\nline\x00");
        assert_eq!(v.info, "bad..line.");
        let v = Verdict::new(CheckStatus::L7Rsp, None, vec![b'a'; 1000]);
        assert_eq!(v.info.len(), Verdict::MAX_INFO);
        let v = Verdict::new(CheckStatus::L7Sts, Some(503), "Service Unavailable");
        assert_eq!(
            v.reason(),
            "Layer7 wrong status, code: 503, info: \"Service Unavailable\""
        );
    }
}
