//! `option httpchk [METH] [URI] [VER]` with `http-check send` and `http-check expect`: the request
//! bytes, and reading the status line and body of the answer.
//!
//! HAProxy passes a server whose answer has a 2xx or 3xx status when no `http-check expect` is
//! written, reports `L7STS` with the reason phrase otherwise, and `L7RSP` for an answer that is
//! not HTTP.

use super::expect::{contains, Expect, Judgement, Matcher};
use super::status::CheckStatus;
use super::CheckError;
use serde::{Deserialize, Serialize};

/// An HTTP check (native `[backend.check.protocol.http]`, HAProxy `option httpchk` +
/// `http-check send` + `http-check expect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpCheck {
    /// Request method (HAProxy's default `OPTIONS`).
    #[serde(default = "default_method")]
    pub method: String,
    /// Request target.
    #[serde(default = "default_uri")]
    pub uri: String,
    /// Protocol version of the request line.
    #[serde(default = "default_version")]
    pub version: String,
    /// Header lines, `"Name: value"` each (`http-check send hdr Name value`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// Request body (`http-check send body`), sent with its content-length.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// `http-check expect` rules in HAProxy's words, in order (`"status 200"`, `"! rstring
    /// ^maint"`); none means a 2xx or 3xx status passes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<String>,
}

fn default_method() -> String {
    "OPTIONS".into()
}
fn default_uri() -> String {
    "/".into()
}
fn default_version() -> String {
    "HTTP/1.0".into()
}

impl Default for HttpCheck {
    fn default() -> Self {
        HttpCheck {
            method: default_method(),
            uri: default_uri(),
            version: default_version(),
            headers: Vec::new(),
            body: String::new(),
            expect: Vec::new(),
        }
    }
}

impl HttpCheck {
    /// The request as sent.
    pub fn request(&self) -> Result<Vec<u8>, CheckError> {
        let token = |s: &str, what: &str| {
            if s.is_empty() || s.bytes().any(|b| b <= b' ' || b == 0x7f) {
                Err(CheckError::new(
                    format!("http check {what} `{s}` is empty or holds spaces or control bytes"),
                    "write e.g. option httpchk OPTIONS /health HTTP/1.0",
                ))
            } else {
                Ok(())
            }
        };
        token(&self.method, "method")?;
        token(&self.uri, "uri")?;
        token(&self.version, "version")?;
        let mut r = format!("{} {} {}\r\n", self.method, self.uri, self.version);
        for h in &self.headers {
            if !h.contains(':') || h.contains(['\r', '\n']) {
                return Err(CheckError::new(
                    format!("http check header `{h}` is not `Name: value`"),
                    "write e.g. http-check send hdr Host db.example",
                ));
            }
            r.push_str(h);
            r.push_str("\r\n");
        }
        if !self.body.is_empty() {
            r.push_str(&format!("content-length: {}\r\n", self.body.len()));
        }
        r.push_str("\r\n");
        r.push_str(&self.body);
        Ok(r.into_bytes())
    }

    /// The expect rules, HAProxy's default (2xx or 3xx) when none is written.
    pub fn expects(&self) -> Result<Vec<Expect>, CheckError> {
        if self.expect.is_empty() {
            let mut e = Expect::new(Matcher::HttpStatus(vec![(200, 399)]));
            e.error = CheckStatus::L7Sts;
            return Ok(vec![e]);
        }
        self.expect
            .iter()
            .map(|s| Expect::parse_http(&super::expect::split_words(s)))
            .collect()
    }
}

/// The status line of an answer: code and reason phrase; `None` until its end is in.
fn status_line(buf: &[u8], eof: bool) -> Result<Option<(u32, &[u8])>, Judgement> {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        if eof || buf.len() >= super::MAX_RESPONSE {
            return Err(invalid(if buf.is_empty() {
                "empty response"
            } else {
                "truncated status line"
            }));
        }
        return if !buf.is_empty() && !b"HTTP/".starts_with(&buf[..buf.len().min(5)]) {
            Err(invalid("not an HTTP answer"))
        } else {
            Ok(None)
        };
    };
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let reason = parts.next().unwrap_or_default();
    if !version.starts_with(b"HTTP/") || code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return Err(invalid("not an HTTP answer"));
    }
    let code = code.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    Ok(Some((code, reason)))
}

fn invalid(info: &str) -> Judgement {
    Judgement::Invalid {
        status: CheckStatus::L7Rsp,
        info: info.as_bytes().to_vec(),
    }
}

/// Judges a `status` / `rstatus` matcher: decided by the status line alone.
pub(super) fn judge_status(m: &Matcher, buf: &[u8], eof: bool) -> Judgement {
    let (code, reason) = match status_line(buf, eof) {
        Err(j) => return j,
        Ok(None) => return Judgement::NeedMore,
        Ok(Some(s)) => s,
    };
    let hit = match m {
        Matcher::HttpStatus(ranges) => ranges.iter().any(|&(a, b)| (a..=b).contains(&code)),
        Matcher::HttpRstatus(re) => re.is_match(&code.to_string()),
        _ => false,
    };
    let (code, info) = (Some(code), reason.to_vec());
    if hit {
        Judgement::Match { code, info }
    } else {
        Judgement::NoMatch { code, info }
    }
}

/// Judges a body matcher: waits for the whole body (content-length, or the server closing).
pub(super) fn judge_body(m: &Matcher, buf: &[u8], eof: bool) -> Judgement {
    let code = match status_line(buf, eof) {
        Err(j) => return j,
        Ok(None) => return Judgement::NeedMore,
        Ok(Some((code, _))) => code,
    };
    let Some(head_end) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        return if eof || buf.len() >= super::MAX_RESPONSE {
            invalid("truncated headers")
        } else {
            Judgement::NeedMore
        };
    };
    let body = &buf[head_end..];
    let complete = content_length(&buf[..head_end]).is_some_and(|n| body.len() >= n);
    if !complete && !eof && buf.len() < super::MAX_RESPONSE {
        return Judgement::NeedMore;
    }
    let body = content_length(&buf[..head_end]).map_or(body, |n| &body[..n.min(body.len())]);
    let hit = match m {
        Matcher::HttpBody(s) => contains(body, s),
        Matcher::HttpRbody(re) => re.is_match(&String::from_utf8_lossy(body)),
        _ => false,
    };
    if hit {
        Judgement::Match {
            code: Some(code),
            info: Vec::new(),
        }
    } else {
        Judgement::NoMatch {
            code: Some(code),
            info: b"body did not match".to_vec(),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `content-length` of a header block, if present and a number.
fn content_length(head: &[u8]) -> Option<usize> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let (name, value) = line.split_at(line.iter().position(|&b| b == b':')?);
        if !name.eq_ignore_ascii_case(b"content-length") {
            return None;
        }
        std::str::from_utf8(&value[1..]).ok()?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::check::expect::Outcome;

    fn outcome(check: &HttpCheck, answer: &[u8], eof: bool) -> Outcome {
        check.expects().unwrap()[0].eval(answer, eof)
    }

    #[test]
    fn request_bytes_follow_option_httpchk() {
        let c = HttpCheck {
            method: "OPTIONS".into(),
            uri: "/primary".into(),
            ..HttpCheck::default()
        };
        assert_eq!(c.request().unwrap(), b"OPTIONS /primary HTTP/1.0\r\n\r\n");
        let c = HttpCheck {
            method: "GET".into(),
            version: "HTTP/1.1".into(),
            headers: vec!["Host: db".into()],
            body: "ping".into(),
            ..HttpCheck::default()
        };
        assert_eq!(
            c.request().unwrap(),
            b"GET / HTTP/1.1\r\nHost: db\r\ncontent-length: 4\r\n\r\nping"
        );
        let bad = HttpCheck {
            uri: "/a b".into(),
            ..HttpCheck::default()
        };
        assert!(bad.request().is_err());
        let bad = HttpCheck {
            headers: vec!["X\r\nY: z".into()],
            ..HttpCheck::default()
        };
        assert!(bad.request().is_err());
    }

    #[test]
    fn default_expect_passes_2xx_3xx_and_reports_the_reason() {
        let c = HttpCheck::default();
        match outcome(&c, b"HTTP/1.1 200 OK\r\n", false) {
            Outcome::Pass(v) => assert_eq!(
                (v.status, v.code, v.info.as_str()),
                (CheckStatus::L7Ok, Some(200), "OK")
            ),
            o => panic!("{o:?}"),
        }
        match outcome(&c, b"HTTP/1.1 503 Service Unavailable\r\n", false) {
            Outcome::Fail(v) => assert_eq!(
                (v.status, v.code, v.info.as_str()),
                (CheckStatus::L7Sts, Some(503), "Service Unavailable")
            ),
            o => panic!("{o:?}"),
        }
        assert!(matches!(
            outcome(&c, b"HTTP/1.0 302 Found\r\n", false),
            Outcome::Pass(_)
        ));
    }

    #[test]
    fn split_status_lines_wait_and_garbage_is_l7rsp() {
        let c = HttpCheck::default();
        assert_eq!(outcome(&c, b"HTTP/1.1 2", false), Outcome::NeedMore);
        assert_eq!(outcome(&c, b"HTT", false), Outcome::NeedMore);
        for (bytes, eof) in [
            (&b"SSH-2.0-OpenSSH\r\n"[..], false),
            (b"+PONG", false),
            (b"HTTP/1.1 2", true),
            (b"", true),
        ] {
            match outcome(&c, bytes, eof) {
                Outcome::Fail(v) => assert_eq!(v.status, CheckStatus::L7Rsp, "{bytes:?}"),
                o => panic!("{bytes:?}: {o:?}"),
            }
        }
    }

    #[test]
    fn body_rules_wait_for_the_body() {
        let c = HttpCheck {
            expect: vec!["string running".into()],
            ..HttpCheck::default()
        };
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nrun";
        assert_eq!(outcome(&c, head, false), Outcome::NeedMore);
        assert!(matches!(
            outcome(
                &c,
                b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nrunning",
                false
            ),
            Outcome::Pass(_)
        ));
        match outcome(&c, b"HTTP/1.1 200 OK\r\n\r\nstopped", true) {
            Outcome::Fail(v) => assert_eq!(v.status, CheckStatus::L7Rsp),
            o => panic!("{o:?}"),
        }
        let c = HttpCheck {
            expect: vec!["! rstring ^maint".into(), "status 200-299".into()],
            ..HttpCheck::default()
        };
        let e = c.expects().unwrap();
        assert!(matches!(
            e[0].eval(b"HTTP/1.1 200 OK\r\n\r\nready", true),
            Outcome::Pass(_)
        ));
        assert!(matches!(
            e[0].eval(b"HTTP/1.1 200 OK\r\n\r\nmaintenance", true),
            Outcome::Fail(_)
        ));
        assert!(matches!(
            e[1].eval(b"HTTP/1.1 301 Moved\r\n", false),
            Outcome::Fail(_)
        ));
    }
}
