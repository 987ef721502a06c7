//! Where the daemon's connection records go: a log line per connection (HAProxy `tcplog` layout,
//! JSON or an HAProxy `log-format` template) through tracing, stamped with the wall-clock accept
//! date, and to the configured `log` targets ([`crate::syslog`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tether_core::config::log::Severity;
use tether_core::config::LogFormat;
use tether_core::engine::{ConnectionRecord, LineContext, LogSink};

/// Writes one line per finished connection to the `tether::log` tracing target and to the
/// syslog/stdout targets, if any.
#[derive(Debug, Default)]
pub struct DaemonSink {
    /// The line format.
    pub format: LogFormat,
    /// `%H` in a `log-format` template.
    pub hostname: String,
    /// The `log` targets' queue (never blocks the connection that logs).
    pub syslog: Option<crate::syslog::SyslogSender>,
}

impl LogSink for DaemonSink {
    fn record(&self, rec: &ConnectionRecord) {
        // Formatting a line costs more than the rest of a short connection's bookkeeping:
        // skip it when connection logs are filtered out.
        let traced = tracing::enabled!(target: "tether::log", tracing::Level::INFO);
        if !traced && self.syslog.is_none() {
            return;
        }
        // The daemon is the edge: reading the wall clock here is its job, not the engine's.
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        let accepted = now
            .checked_sub(Duration::from_millis(rec.tt_ms))
            .unwrap_or(now);
        let date = accept_date(accepted);
        let line = match &self.format {
            LogFormat::Tcplog => rec.tcplog(&date),
            LogFormat::Json => rec.json(&date),
            LogFormat::Template(t) => rec.render(
                t,
                &LineContext {
                    accept_date: &date,
                    accept_unix: accepted
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                    hostname: &self.hostname,
                    pid: std::process::id(),
                },
            ),
        };
        if traced {
            tracing::info!(target: "tether::log", "{line}");
        }
        if let Some(s) = &self.syslog {
            s.send(now, line);
        }
    }

    /// Health-check results and server state changes go to the log targets too, as HAProxy
    /// sends them to the proxy's `log` servers (the engine has traced them already).
    fn event(&self, severity: Severity, line: &str) {
        if let Some(s) = &self.syslog {
            // The daemon is the edge: reading the wall clock here is its job.
            #[allow(clippy::disallowed_methods)]
            let now = SystemTime::now();
            s.send_at(now, line.to_string(), severity);
        }
    }
}

/// HAProxy's `%t` format: `25/Nov/2026:14:47:05.968` (UTC).
pub fn accept_date(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{day:02}/{}/{y}:{:02}:{:02}:{:02}.{:03}",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's civil-from-days algorithm.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_date_matches_haproxy_layout() {
        // 2026-11-25T14:47:05.968Z
        let t = UNIX_EPOCH + Duration::from_millis(1_795_618_025_968);
        assert_eq!(accept_date(t), "25/Nov/2026:14:47:05.968");
        assert_eq!(accept_date(UNIX_EPOCH), "01/Jan/1970:00:00:00.000");
        // Leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(accept_date(t), "29/Feb/2000:00:00:00.000");
    }
}
