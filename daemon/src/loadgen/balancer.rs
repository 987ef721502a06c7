//! tether as the testbed's balancer: a child process of this very binary, configured from the
//! scenario's `[balancer.config]` (durations divided by the time scale), logging one JSON line
//! per connection, which is read back into the affinity outcomes the simulator reports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tether_core::affinity::{AffinityOutcome, MatchOutcome};
use tether_sim::metrics::{AffinityCounts, OutcomeEvent, TableTotals};
use tether_sim::scenario::SimDuration;

use super::clients::fleet_of_ip;

/// Keys whose duration values the time scale divides (intervals, timeouts, expiry, delays).
fn is_time_key(key: &str) -> bool {
    ["inter", "timeout", "expire", "delay", "grace"]
        .iter()
        .any(|k| key.contains(k))
}

/// Divides every duration of a configuration table by `scale` (at least 1 ms).
pub fn scale_durations(table: &mut toml::Table, scale: f64) {
    for (key, value) in table.iter_mut() {
        match value {
            toml::Value::String(s) if is_time_key(key) => {
                if let Ok(d) = SimDuration::parse(s) {
                    let ms = (d.get().as_secs_f64() * 1000.0 / scale).round().max(1.0);
                    *s = format!("{}ms", ms as u64);
                }
            }
            toml::Value::Table(t) => scale_durations(t, scale),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(t) = item {
                        scale_durations(t, scale);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Writes out the engine's default timeouts the scenario's configuration leaves out, so that
/// the time scale divides them too: a 10 s connect timeout left at 10 s while the clients'
/// timeouts are divided by 10 would make clients give up where the simulator's wait.
pub fn with_default_timeouts(table: &mut toml::Table) {
    use tether_core::config::defaults;
    let text = |d: Duration| toml::Value::String(format!("{}ms", d.as_millis()));
    let mut fill = |key: &str, pairs: &[(&str, Duration)]| {
        let section = table
            .entry(key)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = section {
            for (k, d) in pairs {
                t.entry(*k).or_insert_with(|| text(*d));
            }
        }
    };
    fill(
        "frontend",
        &[
            ("timeout-client", defaults::timeout_client()),
            ("inspect-delay", defaults::inspect_delay()),
        ],
    );
    fill(
        "backend",
        &[
            ("timeout-connect", defaults::timeout_connect()),
            ("timeout-server", defaults::timeout_server()),
        ],
    );
    if let Some(toml::Value::Table(check)) = table
        .get_mut("backend")
        .and_then(|b| b.as_table_mut())
        .and_then(|b| b.get_mut("check"))
    {
        check
            .entry("inter")
            .or_insert_with(|| text(defaults::inter()));
    }
}

/// The daemon's configuration: the scenario's backend settings, the testbed's servers, one
/// frontend on `listen`, JSON connection logs, the runtime API on `admin`.
pub fn config_text(
    scenario: Option<&toml::Value>,
    listen: SocketAddr,
    servers: &[(String, SocketAddr)],
    scale: f64,
    admin: &Path,
) -> Result<String> {
    let mut src = match scenario {
        Some(toml::Value::Table(t)) => t.clone(),
        Some(_) => bail!("[balancer.config] must be a table"),
        None => toml::Table::new(),
    };
    with_default_timeouts(&mut src);
    scale_durations(&mut src, scale);
    let mut doc = toml::Table::new();
    let mut global = match src.remove("global") {
        Some(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    global.insert("log-format".into(), "json".into());
    doc.insert("global".into(), global.into());
    let mut fe = match src.remove("frontend") {
        Some(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    fe.insert("name".into(), "main".into());
    fe.insert(
        "bind".into(),
        toml::Value::Array(vec![listen.to_string().into()]),
    );
    fe.insert("backend".into(), "app".into());
    doc.insert("frontend".into(), toml::Value::Array(vec![fe.into()]));
    let mut be = match src.remove("backend") {
        Some(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    be.insert("name".into(), "app".into());
    let list = servers
        .iter()
        .map(|(name, addr)| {
            let mut s = toml::Table::new();
            s.insert("name".into(), name.as_str().into());
            s.insert("address".into(), addr.to_string().into());
            toml::Value::Table(s)
        })
        .collect();
    be.insert("server".into(), toml::Value::Array(list));
    doc.insert("backend".into(), toml::Value::Array(vec![be.into()]));
    let mut api = toml::Table::new();
    api.insert("socket".into(), admin.display().to_string().into());
    api.insert("level".into(), "admin".into());
    doc.insert("admin".into(), api.into());
    Ok(toml::to_string(&doc)?)
}

/// The balancer child process; killed on drop.
pub struct TetherChild {
    child: Child,
    /// Its stderr (logs), one connection per JSON line.
    pub log: PathBuf,
}

impl TetherChild {
    /// Writes `config` into `dir` and starts `tether run -c` on it; waits until `listen` accepts.
    pub async fn start(dir: &Path, config: &str, listen: SocketAddr) -> Result<Self> {
        let file = dir.join("tether.toml");
        std::fs::write(&file, config).with_context(|| format!("writing {}", file.display()))?;
        let log = dir.join("balancer.log");
        // Appended: a restarted balancer adds to the same log.
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let exe = std::env::current_exe().context("finding the tether binary")?;
        let child = Command::new(exe)
            .arg("run")
            .arg("-c")
            .arg(&file)
            .env("TETHER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting the tether child")?;
        let mut me = TetherChild { child, log };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(listen).await.is_ok() {
                return Ok(me);
            }
            if let Some(status) = me.child.try_wait()? {
                let text = std::fs::read_to_string(&me.log).unwrap_or_default();
                bail!("tether exited ({status}) before listening:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("tether did not listen on {listen} within 5 s")
    }

    /// Stops the daemon (SIGTERM, then kill after a second) so its last log lines are written.
    pub async fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..40 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TetherChild {
    /// Rewrites the configuration and reloads it (SIGHUP: tables and connections are kept).
    pub async fn reload(&self, dir: &Path, config: &str) -> Result<()> {
        std::fs::write(dir.join("tether.toml"), config)?;
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("could not signal tether to reload");
        }
        // The daemon reloads asynchronously; give it a moment before the next event.
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(())
    }
}

/// Sends one runtime API command and returns the answer.
pub async fn admin(socket: &Path, command: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    s.write_all(format!("{command}\n").as_bytes()).await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await??;
    Ok(out)
}

/// Stick-table size and occupancy summed over `show table`'s headers.
pub fn table_totals(show_table: &str) -> Option<TableTotals> {
    let mut t = TableTotals::default();
    let mut any = false;
    for line in show_table.lines().filter(|l| l.starts_with("# table:")) {
        let field = |name: &str| -> Option<u64> {
            let rest = &line[line.find(name)? + name.len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        t.capacity += field("size:")?;
        t.entries += field("used:")?;
        any = true;
    }
    any.then_some(t)
}

impl Drop for TetherChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Milliseconds since midnight of a log date `05/Dec/2026:08:40:01.123`.
fn ms_of_day(date: &str) -> Option<u64> {
    let mut parts = date.splitn(4, ':').skip(1);
    let h: u64 = parts.next()?.parse().ok()?;
    let m: u64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some((h * 3600 + m * 60) * 1000 + (s * 1000.0).round() as u64)
}

/// Affinity outcomes from the daemon's JSON connection lines: per fleet (by source address)
/// and per scenario minute (accept time since `start_ms_of_day`, times `scale`).
pub fn affinity_from_log(text: &str, start_ms_of_day: u64, scale: f64) -> AffinityCounts {
    let mut counts = AffinityCounts::default();
    for line in text.lines() {
        let Some(json) = line.find('{').map(|i| &line[i..]) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
            continue;
        };
        let (Ok(outcome), Ok(matched)) = (
            serde_json::from_value::<AffinityOutcome>(v["affinity"].clone()),
            serde_json::from_value::<MatchOutcome>(v["matched"].clone()),
        ) else {
            continue;
        };
        let fleet = v["client"]
            .as_str()
            .and_then(|c| c.parse::<SocketAddr>().ok())
            .and_then(|a| fleet_of_ip(a.ip()));
        let day = 86_400_000;
        let minute = v["date"].as_str().and_then(ms_of_day).map_or(0, |t| {
            let since = (t + day - start_ms_of_day) % day;
            (since as f64 * scale) as u64 / 60_000
        });
        let event = OutcomeEvent {
            outcome,
            keyed: !matches!(matched, MatchOutcome::NoKey(_)),
            nosrv: v["server"].is_null(),
            keys_learned: v["learned"].as_u64().unwrap_or(0),
        };
        counts.add(fleet, minute, &event);
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_scale_and_sizes_do_not() {
        let mut t: toml::Table = toml::from_str(
            r#"[backend]
            timeout-connect = "10s"
            [backend.stick-table]
            size = "60k"
            expire = "60m"
            [backend.check]
            inter = "2s""#,
        )
        .unwrap();
        scale_durations(&mut t, 10.0);
        let be = &t["backend"];
        assert_eq!(be["timeout-connect"].as_str(), Some("1000ms"));
        assert_eq!(be["stick-table"]["expire"].as_str(), Some("360000ms"));
        assert_eq!(be["stick-table"]["size"].as_str(), Some("60k"));
        assert_eq!(be["check"]["inter"].as_str(), Some("200ms"));
    }

    #[test]
    fn table_headers_sum_up() {
        let text = "# table: app, type: binary, size:100, used:7\nkey=ab\n\
                    # table: app.ticket, type: binary, size:50, used:3\n";
        let t = table_totals(text).unwrap();
        assert_eq!((t.capacity, t.entries), (150, 10));
        assert!(table_totals("Unknown command\n").is_none());
    }

    #[test]
    fn log_dates_read_as_time_of_day() {
        assert_eq!(ms_of_day("05/Dec/2026:08:40:01.123"), Some(31_201_123));
        assert_eq!(ms_of_day("garbage"), None);
    }
}
