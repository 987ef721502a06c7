//! `expect` rules, HAProxy's `tcp-check expect` and `http-check expect`: a matcher over the bytes
//! received since the last send, negation, `min-recv`, and the statuses and messages a match or a
//! mismatch ends the check with.

use super::http;
use super::status::{CheckStatus, Verdict};
use super::CheckError;

/// Longest regular expression program compiled for a check (bounds memory for hostile configs).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What a matcher makes of the bytes received so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Not enough bytes to decide.
    NeedMore,
    /// The pattern is there; `info` is what the check reports on success.
    Match {
        /// The protocol's code (HTTP status...).
        code: Option<u32>,
        /// The server's words.
        info: Vec<u8>,
    },
    /// The pattern is not there.
    NoMatch {
        /// The protocol's code.
        code: Option<u32>,
        /// The server's words or what was missing.
        info: Vec<u8>,
    },
    /// Not the protocol at all: fails whatever the negation, with this status.
    Invalid {
        /// `L7RSP` or `L6RSP`.
        status: CheckStatus,
        /// What was wrong.
        info: Vec<u8>,
    },
}

/// A protocol's own matcher (MySQL packets, the PostgreSQL startup answer...): bytes and
/// whether the server has closed in, a judgement out.
pub type CustomMatch = fn(&[u8], bool) -> Judgement;

/// What an expect rule looks for.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// `string`: the bytes appear anywhere.
    String(Vec<u8>),
    /// `rstring`: the regular expression matches the bytes read as text.
    Rstring(regex::Regex),
    /// `binary`: the bytes (written in hex) appear anywhere.
    Binary(Vec<u8>),
    /// `rbinary`: the regular expression matches the bytes written in upper-case hex.
    Rbinary(regex::Regex),
    /// HTTP `status`: the status code is in one of the ranges.
    HttpStatus(Vec<(u32, u32)>),
    /// HTTP `rstatus`: the regular expression matches the status code.
    HttpRstatus(regex::Regex),
    /// HTTP `string`: the body contains the bytes.
    HttpBody(Vec<u8>),
    /// HTTP `rstring`: the regular expression matches the body.
    HttpRbody(regex::Regex),
    /// A protocol's own rule.
    Custom(CustomMatch),
}

/// One expect rule.
#[derive(Clone, Debug)]
pub struct Expect {
    /// What to look for.
    pub matcher: Matcher,
    /// `!`: the check passes when the pattern is absent.
    pub inverse: bool,
    /// Decide only once this many bytes are in (or the server closed).
    pub min_recv: Option<usize>,
    /// Status when the rule passes and is the last one.
    pub ok: CheckStatus,
    /// Status when it fails.
    pub error: CheckStatus,
    /// Status when the answer does not come in time.
    pub timeout: CheckStatus,
    /// Message on success instead of the server's words.
    pub on_success: Option<String>,
    /// Message on failure instead of the server's words.
    pub on_error: Option<String>,
}

/// How an expect rule ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Wait for more bytes.
    NeedMore,
    /// The rule holds; the verdict is used if it is the last rule.
    Pass(Verdict),
    /// The check fails with this verdict.
    Fail(Verdict),
}

impl Expect {
    /// A rule with tcp-check's statuses (`L7OK`, `L7RSP`, `L7TOUT`).
    pub fn new(matcher: Matcher) -> Expect {
        Expect {
            matcher,
            inverse: false,
            min_recv: None,
            ok: CheckStatus::L7Ok,
            error: CheckStatus::L7Rsp,
            timeout: CheckStatus::L7Tout,
            on_success: None,
            on_error: None,
        }
    }

    /// Judges `buf` (bytes since the last send); `eof` when no more will come.
    pub fn eval(&self, buf: &[u8], eof: bool) -> Outcome {
        if let Some(min) = self.min_recv {
            if buf.len() < min && !eof {
                return Outcome::NeedMore;
            }
        }
        let waits_on_mismatch = self.min_recv.is_none() && self.is_content();
        let (matched, code, info) = match self.matcher.judge(buf, eof) {
            Judgement::NeedMore if !eof => return Outcome::NeedMore,
            Judgement::NeedMore if buf.is_empty() => (false, None, b"empty response".to_vec()),
            Judgement::NeedMore => (false, None, b"truncated response".to_vec()),
            Judgement::NoMatch { .. } if waits_on_mismatch && !eof && !self.inverse => {
                return Outcome::NeedMore
            }
            Judgement::NoMatch { code, info } => (false, code, info),
            Judgement::Match { code, info } => (true, code, info),
            Judgement::Invalid { status, info } => {
                return Outcome::Fail(Verdict::new(status, None, info))
            }
        };
        if matched != self.inverse {
            let info = self
                .on_success
                .as_deref()
                .map(str::as_bytes)
                .unwrap_or(&info);
            Outcome::Pass(Verdict::new(self.ok, code, info))
        } else {
            let info = self.on_error.as_deref().map(str::as_bytes).unwrap_or(&info);
            Outcome::Fail(Verdict::new(self.error, code, info))
        }
    }

    /// A content search, which waits for more bytes on a mismatch (HAProxy without
    /// `min-recv`); protocol matchers decide for themselves.
    fn is_content(&self) -> bool {
        matches!(
            self.matcher,
            Matcher::String(_) | Matcher::Rstring(_) | Matcher::Binary(_) | Matcher::Rbinary(_)
        )
    }

    /// Parses HAProxy's `tcp-check expect` words (after `expect`): options, `!`, the match
    /// keyword and its pattern, in any order as HAProxy allows.
    pub fn parse_tcp(words: &[String]) -> Result<Expect, CheckError> {
        parse(words, false)
    }

    /// Parses HAProxy's `http-check expect` words.
    pub fn parse_http(words: &[String]) -> Result<Expect, CheckError> {
        parse(words, true)
    }
}

impl Matcher {
    fn judge(&self, buf: &[u8], eof: bool) -> Judgement {
        let found = |hit: bool, what: &dyn std::fmt::Display| {
            if hit {
                Judgement::Match {
                    code: None,
                    info: Vec::new(),
                }
            } else {
                Judgement::NoMatch {
                    code: None,
                    info: format!("did not match content '{what}'").into_bytes(),
                }
            }
        };
        match self {
            Matcher::String(s) | Matcher::Binary(s) => {
                found(contains(buf, s), &String::from_utf8_lossy(s))
            }
            Matcher::Rstring(re) => found(re.is_match(&String::from_utf8_lossy(buf)), re),
            Matcher::Rbinary(re) => found(re.is_match(&hex(buf)), re),
            Matcher::HttpStatus(_) | Matcher::HttpRstatus(_) => http::judge_status(self, buf, eof),
            Matcher::HttpBody(_) | Matcher::HttpRbody(_) => http::judge_body(self, buf, eof),
            Matcher::Custom(f) => f(buf, eof),
        }
    }
}

/// Whether `needle` occurs in `hay` (an empty needle always does).
pub(super) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// `bytes` in upper-case hex, as HAProxy matches `rbinary`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Decodes HAProxy's hex strings (`send-binary`, `expect binary`).
pub fn unhex(s: &str) -> Result<Vec<u8>, CheckError> {
    let bad = || {
        CheckError::new(
            format!("`{s}` is not an even number of hex digits"),
            "write bytes as hex pairs, e.g. 2a310d0a",
        )
    };
    if s.len() % 2 != 0 {
        return Err(bad());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

/// Compiles a pattern with a bounded program size.
pub(super) fn regex(pattern: &str) -> Result<regex::Regex, CheckError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            CheckError::new(
                format!("bad regular expression `{pattern}`: {e}"),
                "write a regular expression, e.g. ^2[0-9]{2}",
            )
        })
}

/// HTTP `status` codes: `200`, `200-399`, `200,301-302`.
fn status_ranges(s: &str) -> Result<Vec<(u32, u32)>, CheckError> {
    let bad = || {
        CheckError::new(
            format!("`{s}` is not a status code list"),
            "write e.g. status 200 or status 200-399",
        )
    };
    s.split(',')
        .map(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let a: u32 = a.trim().parse().map_err(|_| bad())?;
            let b: u32 = b.trim().parse().map_err(|_| bad())?;
            if a > b || b > 999 {
                return Err(bad());
            }
            Ok((a, b))
        })
        .collect()
}

fn matcher(kind: &str, pattern: &str, http: bool) -> Result<Matcher, CheckError> {
    Ok(match (kind, http) {
        ("string", false) => Matcher::String(pattern.as_bytes().to_vec()),
        ("rstring", false) => Matcher::Rstring(regex(pattern)?),
        ("binary", false) => Matcher::Binary(unhex(pattern)?),
        ("rbinary", false) => Matcher::Rbinary(regex(pattern)?),
        ("status", true) => Matcher::HttpStatus(status_ranges(pattern)?),
        ("rstatus", true) => Matcher::HttpRstatus(regex(pattern)?),
        ("string", true) => Matcher::HttpBody(pattern.as_bytes().to_vec()),
        ("rstring", true) => Matcher::HttpRbody(regex(pattern)?),
        _ => {
            let kinds = if http {
                "status, rstatus, string or rstring"
            } else {
                "string, rstring, binary or rbinary"
            };
            return Err(CheckError::new(
                format!("unsupported expect match `{kind}`"),
                format!("write one of {kinds}"),
            ));
        }
    })
}

fn parse(words: &[String], http: bool) -> Result<Expect, CheckError> {
    let mut inverse = false;
    let mut found: Option<Matcher> = None;
    let mut opts: Vec<(&str, &str)> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        let arg = words.get(i + 1).map(String::as_str);
        match (w, arg) {
            ("!", _) => inverse = true,
            (_, Some(a)) if OPTIONS.contains(&w) => {
                opts.push((w, a));
                i += 1;
            }
            (_, Some(a)) if found.is_none() => {
                let (neg, kind) = w.strip_prefix('!').map_or((false, w), |k| (true, k));
                inverse |= neg;
                found = Some(matcher(kind, a, http)?);
                i += 1;
            }
            _ => {
                return Err(CheckError::new(
                    format!("unexpected `{w}` in expect"),
                    "write e.g. expect status 200, or expect string +PONG",
                ))
            }
        }
        i += 1;
    }
    let Some(m) = found else {
        return Err(CheckError::new(
            "expect without a pattern",
            "write e.g. expect status 200",
        ));
    };
    let mut e = Expect::new(m);
    e.inverse = inverse;
    if http {
        e.error = if matches!(e.matcher, Matcher::HttpStatus(_) | Matcher::HttpRstatus(_)) {
            CheckStatus::L7Sts
        } else {
            CheckStatus::L7Rsp
        };
    }
    for (k, v) in opts {
        apply_option(&mut e, k, v)?;
    }
    Ok(e)
}

/// Options of an expect rule that take one argument.
const OPTIONS: &[&str] = &[
    "min-recv",
    "ok-status",
    "error-status",
    "tout-status",
    "on-success",
    "on-error",
    "comment",
];

fn apply_option(e: &mut Expect, k: &str, v: &str) -> Result<(), CheckError> {
    let status = || {
        CheckStatus::parse(v).ok_or_else(|| {
            CheckError::new(
                format!("`{k} {v}`: unknown status"),
                "write e.g. L7OK, L7RSP or L7STS",
            )
        })
    };
    match k {
        "min-recv" => {
            let n: i64 = v.parse().map_err(|_| {
                CheckError::new(
                    format!("`min-recv {v}` is not a number"),
                    "write e.g. min-recv 5",
                )
            })?;
            e.min_recv = usize::try_from(n).ok().map(|n| n.min(super::MAX_RESPONSE));
        }
        "ok-status" => e.ok = status()?,
        "error-status" => e.error = status()?,
        "tout-status" => e.timeout = status()?,
        "on-success" => e.on_success = Some(v.to_string()),
        "on-error" => e.on_error = Some(v.to_string()),
        _ => {}
    }
    Ok(())
}

/// Splits a native-config rule into words as HAProxy's parser would: spaces separate, double
/// quotes group, a backslash takes the next character literally.
pub fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.extend(chars.next());
                any = true;
            }
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> Expect {
        Expect::parse_tcp(&split_words(s)).unwrap()
    }

    fn status(o: Outcome) -> Option<CheckStatus> {
        match o {
            Outcome::NeedMore => None,
            Outcome::Pass(v) | Outcome::Fail(v) => Some(v.status),
        }
    }

    #[test]
    fn string_waits_for_more_until_found_or_closed() {
        let e = tcp("string +PONG");
        assert_eq!(e.eval(b"+PO", false), Outcome::NeedMore);
        assert_eq!(status(e.eval(b"+PONG\r\n", false)), Some(CheckStatus::L7Ok));
        assert_eq!(status(e.eval(b"-ERR", true)), Some(CheckStatus::L7Rsp));
        assert_eq!(status(e.eval(b"", true)), Some(CheckStatus::L7Rsp));
    }

    #[test]
    fn negation_min_recv_and_statuses() {
        let e = tcp("min-recv 5 error-status L7STS ! rstring ^E");
        assert_eq!(e.eval(b"E", false), Outcome::NeedMore, "min-recv");
        assert_eq!(status(e.eval(b"ERROR", false)), Some(CheckStatus::L7Sts));
        assert_eq!(
            status(e.eval(b"R\0\0\0\x08", false)),
            Some(CheckStatus::L7Ok)
        );
        let e = tcp("binary 2a31 ok-status L6OK");
        assert_eq!(status(e.eval(b"xx*1", false)), Some(CheckStatus::L6Ok));
        let e = tcp("rbinary ^1[56]");
        assert_eq!(
            status(e.eval(&[0x16, 3, 1], false)),
            Some(CheckStatus::L7Ok)
        );
        assert_eq!(
            status(e.eval(&[0x17, 3, 1], true)),
            Some(CheckStatus::L7Rsp)
        );
    }

    #[test]
    fn messages_replace_the_server_words() {
        let e = tcp("string OK on-success \"all good\" on-error \"not ready\"");
        match e.eval(b"OK", false) {
            Outcome::Pass(v) => assert_eq!(v.info, "all good"),
            o => panic!("{o:?}"),
        }
        match e.eval(b"NO", true) {
            Outcome::Fail(v) => assert_eq!(v.info, "not ready"),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn bad_rules_are_errors_that_say_what_to_write() {
        for bad in [
            "",
            "string",
            "nonsense x",
            "binary 2a3",
            "rstring (",
            "min-recv x string a",
        ] {
            let e = Expect::parse_tcp(&split_words(bad)).unwrap_err();
            assert!(!e.fix.is_empty(), "{bad}: {e}");
        }
        assert!(Expect::parse_http(&split_words("binary 00")).is_err());
        assert!(Expect::parse_http(&split_words("status 2xx")).is_err());
    }

    #[test]
    fn words_split_like_haproxy() {
        assert_eq!(
            split_words(r#"string "a b" c\ d"#),
            ["string", "a b", "c d"]
        );
        assert_eq!(split_words("  "), Vec::<String>::new());
        assert_eq!(split_words(r#"on-error """#), ["on-error", ""]);
    }
}
