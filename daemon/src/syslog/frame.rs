//! Syslog framing of one log line: RFC 3164 (BSD), RFC 5424 (IETF) or raw, cut to the
//! target's `len` as HAProxy does.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tether_core::config::log::SyslogFormat;

use crate::logsink::civil_from_days;

/// What every line from this process carries besides its text.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The host name field.
    pub hostname: String,
    /// The program name (the tag / APP-NAME).
    pub tag: String,
    /// The process id (PROCID).
    pub pid: u32,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The framed message for `line` at `time` with priority `pri`, at most `len` bytes (cut on a
/// character boundary). Timestamps are UTC (RFC 5424 says so with `Z`; RFC 3164 has no zone).
pub fn frame(
    format: SyslogFormat,
    pri: u8,
    time: SystemTime,
    origin: &Origin,
    line: &str,
    len: usize,
) -> String {
    let d = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let (hh, mm, ss) = ((secs % 86_400) / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::with_capacity(line.len() + 80);
    let Origin { hostname, tag, pid } = origin;
    match format {
        SyslogFormat::Rfc3164 => {
            let mon = MONTHS[(m - 1) as usize];
            let _ = write!(
                out,
                "<{pri}>{mon} {day:>2} {hh:02}:{mm:02}:{ss:02} {hostname} {tag}[{pid}]: "
            );
        }
        SyslogFormat::Rfc5424 => {
            let us = d.subsec_micros();
            let _ = write!(
                out,
                "<{pri}>1 {y:04}-{m:02}-{day:02}T{hh:02}:{mm:02}:{ss:02}.{us:06}Z {hostname} {tag} {pid} - - "
            );
        }
        SyslogFormat::Raw => {}
    }
    out.push_str(line);
    if out.len() > len {
        let mut cut = len;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn origin() -> Origin {
        Origin {
            hostname: "lb1".into(),
            tag: "tether".into(),
            pid: 42,
        }
    }

    // 2026-12-05T09:03:07.123456Z
    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(1_796_461_387_123_456)
    }

    #[test]
    fn rfc3164_layout() {
        let f = frame(SyslogFormat::Rfc3164, 134, at(), &origin(), "hello", 1024);
        assert_eq!(f, "<134>Dec  5 09:03:07 lb1 tether[42]: hello");
    }

    #[test]
    fn rfc5424_layout() {
        let f = frame(SyslogFormat::Rfc5424, 134, at(), &origin(), "hello", 1024);
        assert_eq!(
            f,
            "<134>1 2026-12-05T09:03:07.123456Z lb1 tether 42 - - hello"
        );
    }

    #[test]
    fn raw_is_the_line_and_len_cuts() {
        assert_eq!(
            frame(SyslogFormat::Raw, 1, at(), &origin(), "hello", 1024),
            "hello"
        );
        assert_eq!(
            frame(SyslogFormat::Raw, 1, at(), &origin(), "héllo", 2),
            "h"
        );
    }

    proptest! {
        /// A frame never exceeds `len` and always starts with its PRI (unless raw).
        #[test]
        fn frame_is_bounded(line in ".{0,300}", len in 1usize..400, pri in 0u8..192, secs in 0u64..4_000_000_000) {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            for format in [SyslogFormat::Rfc3164, SyslogFormat::Rfc5424, SyslogFormat::Raw] {
                let f = frame(format, pri, t, &origin(), &line, len);
                prop_assert!(f.len() <= len);
                let full = frame(format, pri, t, &origin(), &line, usize::MAX);
                prop_assert!(full.starts_with(&f));
                if format != SyslogFormat::Raw {
                    let head = format!("<{pri}>");
                    prop_assert!(full.starts_with(&head));
                }
            }
        }
    }
}
