//! HAProxy's `log` lines in `global`: `log ADDR [len N] [format F] FACILITY [LEVEL [MINLEVEL]]`,
//! imported as native `[[log]]` targets (RFC 3164/5424 syslog over UDP or a unix datagram
//! socket, or stdout/stderr).

use super::Importer;
use crate::haproxy::lexer::Directive;
use tether_core::config::log::{
    Destination, Facility, LogTarget, Severity, SyslogFormat, LEN_RANGE,
};

/// Reads the words after `log` into a target; the error names what is wrong.
pub(crate) fn parse_log(words: &[&str]) -> Result<LogTarget, String> {
    let (&address, mut rest) = words.split_first().ok_or("no log address")?;
    Destination::parse(address)?;
    let mut len = None;
    let mut format = SyslogFormat::default();
    loop {
        match rest {
            ["len", n, tail @ ..] => {
                let n: usize = n
                    .parse()
                    .map_err(|_| format!("len {n:?} is not a number"))?;
                if !LEN_RANGE.contains(&n) {
                    return Err(format!("len {n} is out of range {LEN_RANGE:?}"));
                }
                len = Some(n);
                rest = tail;
            }
            ["format", f, tail @ ..] => {
                format = SyslogFormat::parse(f).ok_or_else(|| {
                    format!("log format {f:?} is not supported (rfc3164, rfc5424 or raw)")
                })?;
                rest = tail;
            }
            ["sample", ..] => return Err("log sampling (`sample`) is not supported".into()),
            _ => break,
        }
    }
    let [facility, levels @ ..] = rest else {
        return Err("no facility (e.g. local0)".into());
    };
    let facility =
        Facility::parse(facility).ok_or_else(|| format!("unknown facility {facility:?}"))?;
    let level = |w: &str| Severity::parse(w).ok_or_else(|| format!("unknown level {w:?}"));
    let mut target = LogTarget::new(address, facility);
    target.format = format;
    if let Some(n) = len {
        target.len = n;
    }
    match levels {
        [] => {}
        [max] => target.level = level(max)?,
        [max, min] => {
            target.level = level(max)?;
            target.min_level = Some(level(min)?);
        }
        [_, _, extra, ..] => return Err(format!("unexpected {extra:?} after the levels")),
    }
    Ok(target)
}

impl Importer<'_> {
    /// A `log` line with a destination: one more target.
    pub(super) fn log_target(&mut self, d: &Directive) {
        let words: Vec<&str> = d.words[1..].iter().map(String::as_str).collect();
        match parse_log(&words) {
            Ok(t) => {
                self.origins
                    .note(&format!("log[{}]", self.config.logs.len()), d.line);
                self.config.logs.push(t);
            }
            Err(why) => self.error(
                d.line,
                format!("`{}`: {why}", d.text()),
                "HAProxy refuses it or tether cannot send logs there",
                "write e.g. `log 127.0.0.1:514 local0`, `log /dev/log len 4096 format rfc5424 \
                 local0 info` or `log stdout format raw local0`",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text};
    use super::*;

    #[test]
    fn every_haproxy_form_is_read() {
        let t = parse_log(&["127.0.0.1:1514", "local3"]).unwrap();
        assert_eq!(
            (t.facility, t.format, t.len),
            (Facility::Local3, SyslogFormat::Rfc3164, 1024)
        );
        let t = parse_log(&[
            "/dev/log", "len", "4096", "format", "rfc5424", "daemon", "info", "notice",
        ])
        .unwrap();
        assert_eq!(t.address, "/dev/log");
        assert_eq!(
            (t.len, t.format, t.facility),
            (4096, SyslogFormat::Rfc5424, Facility::Daemon)
        );
        assert_eq!(
            (t.level, t.min_level),
            (Severity::Info, Some(Severity::Notice))
        );
        let t = parse_log(&["stdout", "format", "raw", "local0"]).unwrap();
        assert_eq!(t.format, SyslogFormat::Raw);
    }

    #[test]
    fn bad_forms_say_why() {
        for (words, why) in [
            (&["127.0.0.1", "local9"][..], "unknown facility"),
            (&["127.0.0.1", "format", "short", "local0"], "not supported"),
            (&["127.0.0.1", "len", "9"], "out of range"),
            (&["127.0.0.1"], "no facility"),
            (&["ring@buf", "local0"], "not supported"),
            (&["127.0.0.1", "local0", "info", "err", "x"], "unexpected"),
        ] {
            let e = parse_log(words).unwrap_err();
            assert!(e.contains(why), "{words:?}: {e}");
        }
    }

    #[test]
    fn global_log_lines_become_targets() {
        let im = import_text(
            "global\n  log 127.0.0.1:514 local0\n  log /dev/log local1 notice\n  \
             log stdout format raw daemon\n",
        );
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
        let addrs: Vec<_> = im.config.logs.iter().map(|t| t.address.as_str()).collect();
        assert_eq!(addrs, ["127.0.0.1:514", "/dev/log", "stdout"]);
        assert!(im
            .findings
            .iter()
            .all(|f| f.line == 0 || !f.what.contains("log")));
    }

    #[test]
    fn a_bad_log_line_is_an_error_on_its_line() {
        let im = import_text("global\n  log 127.0.0.1 local0 loud\n");
        let e = errors(&im);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].line, 2);
        assert!(e[0].what.contains("unknown level"), "{}", e[0]);
    }
}
