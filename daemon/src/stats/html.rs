//! The stats page: per frontend, backend and server the state, last check, weight, sessions,
//! bytes, errors, retries, redispatches and affinity outcomes, with admin forms per server when
//! admin actions are enabled. Plain HTML and a little CSS, no script, so it works in any browser,
//! in `curl` and in headless test runs.

use std::fmt::Write as _;
use std::time::Duration;

use tether_core::affinity::AffinityOutcome;

use super::snapshot::{BackendView, ServerView, Snapshot};

/// What the page needs besides the snapshot.
#[derive(Debug, Clone, Default)]
pub struct PageOptions<'a> {
    /// Where admin forms post (the stats URI).
    pub uri: &'a str,
    /// Browser auto-refresh period.
    pub refresh: Option<Duration>,
    /// The version to show, `None` with `hide-version`.
    pub version: Option<&'a str>,
    /// Show admin forms.
    pub admin: bool,
    /// The admin token the forms carry (see [`super::csrf`]).
    pub token: &'a str,
    /// Result of the previous admin action (`;st=...`), shown as a banner.
    pub status: Option<&'a str>,
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// HAProxy's stats page look: a title bar per proxy, header rows in cyan, each server row in the
/// colour of its state (the legend at the top says which), totals in bold.
const STYLE: &str = "body{font-family:Arial,Helvetica,sans-serif;font-size:12px;margin:8px;color:#000;background:#fff}\
h1{font-size:17px;margin:0 0 8px;padding:5px 8px;background:#20466e;color:#fff}\
h2{font-size:13px;margin:14px 0 0;padding:3px 8px;background:#b00040;color:#ffff40;display:inline-block;min-width:30em}\
h2.frontend{background:#6040b0}h2.peers{background:#006060}\
table{border-collapse:collapse;margin-bottom:6px}\
th,td{border:1px solid #a0a0a0;padding:2px 6px;text-align:right;white-space:nowrap}\
th{background:#20d0d0;color:#000;text-align:center}\
td.name{text-align:left}td.status{font-weight:bold}\
tr.UP td,tr.OPEN td,tr.no-check td,td.UP{background:#c0ffc0}tr.DOWN td,td.DOWN{background:#ff9090}\
tr.MAINT td,td.MAINT{background:#c0c0ff}tr.DRAIN td,td.DRAIN{background:#ffd080}\
tr.total td{background:#e0e0c0;font-weight:bold}tr.total.DOWN td{background:#ff9090}\
table.info td{text-align:left}table.legend td{padding:2px 10px}\
.side{display:flex;gap:14px;align-items:flex-start;flex-wrap:wrap}\
.banner{padding:4px;background:#ffd}";

/// Renders the page.
pub fn render(snap: &Snapshot, opts: &PageOptions<'_>) -> String {
    let mut h = String::new();
    h.push_str(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tether statistics</title>",
    );
    if let Some(r) = opts.refresh {
        let _ = write!(
            h,
            "<meta http-equiv=\"refresh\" content=\"{}\">",
            r.as_secs().max(1)
        );
    }
    let _ = write!(
        h,
        "<style>{STYLE}</style></head><body>\n<h1>tether statistics</h1>\n"
    );
    info(&mut h, snap, opts);
    if let Some(st) = opts.status {
        let _ = writeln!(
            h,
            "<p class=\"banner\" id=\"action-status\">last action: {}</p>",
            escape(st)
        );
    }

    for f in &snap.frontends {
        let _ = writeln!(
            h,
            "<h2 class=\"frontend\">frontend {}</h2>\n<table id=\"fe-{}\"><tr><th>bind</th><th>backend</th><th>status</th><th>sessions cur</th><th>sessions total</th></tr>\
             <tr class=\"OPEN\"><td class=\"name\">{}</td><td class=\"name\">{}</td><td class=\"status\">OPEN</td><td>{}</td><td>{}</td></tr></table>",
            escape(&f.name),
            escape(&f.name),
            escape(&f.binds.join(" ")),
            escape(&f.backend),
            f.current,
            f.accepted
        );
    }
    for b in &snap.backends {
        backend(&mut h, b, opts);
    }
    h.push_str("</body></html>\n");
    h
}

/// The process at a glance, and the legend of the state colours.
fn info(h: &mut String, snap: &Snapshot, opts: &PageOptions<'_>) {
    let servers: usize = snap.backends.iter().map(|b| b.servers.len()).sum();
    h.push_str("<div class=\"side\"><table class=\"info\"><tr><th colspan=\"2\">process</th></tr>");
    if let Some(v) = opts.version {
        let _ = write!(
            h,
            "<tr><td>version</td><td class=\"version\">tether version {}</td></tr>",
            escape(v)
        );
    }
    let _ = write!(
        h,
        "<tr><td>current connections</td><td>{}</td></tr>\
         <tr><td>frontends / backends / servers</td><td>{} / {} / {}</td></tr>\
         <tr><td>log lines dropped</td><td id=\"dropped-logs\">{}</td></tr></table>",
        snap.actconn,
        snap.frontends.len(),
        snap.backends.len(),
        servers,
        crate::syslog::dropped()
    );
    h.push_str(
        "<table class=\"legend\"><tr><th colspan=\"2\">server state</th></tr>\
         <tr><td class=\"UP\">UP</td><td class=\"name\">serving (checked, or not checked)</td></tr>\
         <tr><td class=\"DOWN\">DOWN</td><td class=\"name\">failed its health checks</td></tr>\
         <tr><td class=\"DRAIN\">DRAIN</td><td class=\"name\">sticky clients only, no new ones</td></tr>\
         <tr><td class=\"MAINT\">MAINT</td><td class=\"name\">in maintenance, no traffic</td></tr></table></div>\n",
    );
}

fn backend(h: &mut String, b: &BackendView, opts: &PageOptions<'_>) {
    let _ = writeln!(h, "<h2>backend {}</h2>", escape(&b.name));
    let _ = write!(
        h,
        "<table id=\"be-{}\"><tr><th>server</th><th>address</th><th>status</th><th>last check</th><th>weight</th>\
         <th>sessions cur</th><th>sessions max</th><th>sessions total</th><th>bytes in</th><th>bytes out</th>\
         <th>conn errors</th><th>retries</th><th>redispatches</th>{}</tr>",
        escape(&b.name),
        if opts.admin { "<th>admin</th>" } else { "" }
    );
    for s in &b.servers {
        server(h, b, s, opts);
    }
    let _ = writeln!(
        h,
        "<tr class=\"total {}\"><td class=\"name\">BACKEND</td><td></td><td class=\"status\">{}</td><td></td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}</tr></table>",
        b.status(),
        b.status(),
        b.sum(|s| u64::from(s.effective_weight)),
        b.sum(|s| s.current),
        b.sum(|s| s.max),
        b.sum(|s| s.total),
        b.sum(|s| s.bytes_in),
        b.sum(|s| s.bytes_out),
        b.sum(|s| s.connect_errors),
        b.sum(|s| s.retries),
        b.sum(|s| s.redispatches),
        if opts.admin { "<td></td>" } else { "" }
    );

    // Affinity: hits, learned, then every miss by its cause, each with its share.
    let total: u64 = b.outcomes.iter().map(|(_, n)| n).sum::<u64>() + b.nosrv;
    let share = |n: u64| match total {
        0 => "-".to_string(),
        t => format!("{:.1}%", n as f64 * 100.0 / t as f64),
    };
    let _ = write!(
        h,
        "<div class=\"side\"><table class=\"affinity\" id=\"aff-{}\"><tr><th>affinity outcome</th><th>connections</th><th>share</th></tr>",
        escape(&b.name)
    );
    let mut row = |label: &str, n: u64| {
        let _ = write!(
            h,
            "<tr><td class=\"name\">{}</td><td>{n}</td><td>{}</td></tr>",
            escape(label),
            share(n)
        );
    };
    row("hit", b.outcome("hit"));
    row("learned", b.outcome("learned"));
    for (o, n) in &b.outcomes {
        if !matches!(o, AffinityOutcome::Hit | AffinityOutcome::Learned) {
            row(&o.label(), *n);
        }
    }
    row("no server (NOSRV)", b.nosrv);
    h.push_str("</table>");

    if !b.tables.is_empty() {
        h.push_str("<table class=\"tables\"><tr><th>stick table</th><th>entries</th><th>capacity</th><th>occupancy</th><th>hits</th><th>misses</th><th>learned</th><th>evicted</th><th>expired</th></tr>");
        for t in &b.tables {
            let _ = write!(
                h,
                "<tr><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                t.kind,
                t.stats.entries,
                t.stats.capacity,
                t.occupancy() * 100.0,
                t.stats.hits,
                t.stats.misses,
                t.stats.learned,
                t.stats.evicted,
                t.stats.expired
            );
        }
        h.push_str("</table>\n");
    }
    if let Some(k) = &b.ticket_keys {
        ticket_keys(h, k);
    }
    h.push_str("</div>\n");
}

/// What `ticket-key` affinity learned: key names per server (hex), shared and unnamed states.
fn ticket_keys(h: &mut String, k: &super::snapshot::TicketKeysView) {
    h.push_str("<table class=\"ticket-keys\"><tr><th>ticket key names</th><th>state</th></tr>");
    for (name, names, unnamed) in &k.servers {
        let state = if *unnamed {
            "unnamed: tickets carry no stable key name, falls through".to_string()
        } else if names.is_empty() {
            "no name learned yet".to_string()
        } else {
            names.join(" ")
        };
        let _ = write!(
            h,
            "<tr><td class=\"name\">{}</td><td>{}</td></tr>",
            escape(name),
            escape(&state)
        );
    }
    for name in &k.shared {
        let _ = write!(
            h,
            "<tr><td class=\"name\">shared</td><td>{} (several servers accept it, falls through)</td></tr>",
            escape(name)
        );
    }
    h.push_str("</table>\n");
}

fn server(h: &mut String, b: &BackendView, s: &ServerView, opts: &PageOptions<'_>) {
    let last_check = if s.check {
        match &s.last_check {
            Some(c) => format!("{}; {} failed checks", c.describe(), s.check_failures),
            None => format!("not checked yet; {} failed checks", s.check_failures),
        }
    } else {
        "no check".to_string()
    };
    let class = s.status().replace(' ', "-");
    let _ = write!(
        h,
        "<tr class=\"{class}\" id=\"srv-{}-{}\"><td class=\"name\">{}{}</td><td class=\"name\">{}</td><td class=\"status\">{}</td><td class=\"name\">{}</td>\
         <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        escape(&b.name),
        escape(&s.name),
        escape(&s.name),
        if s.backup { " (backup)" } else { "" },
        escape(&s.address),
        escape(&s.status_detail()),
        escape(&last_check),
        if s.effective_weight == s.weight {
            s.weight.to_string()
        } else {
            format!("{}/{}", s.effective_weight, s.weight)
        },
        s.current,
        s.max,
        s.total,
        s.bytes_in,
        s.bytes_out,
        s.connect_errors,
        s.retries,
        s.redispatches
    );
    if opts.admin {
        let _ = write!(
            h,
            "<td class=\"name\"><form method=\"post\" action=\"{}\" class=\"admin\">\
             <input type=\"hidden\" name=\"b\" value=\"{}\"><input type=\"hidden\" name=\"s\" value=\"{}\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <button type=\"submit\" name=\"action\" value=\"ready\">ready</button>\
             <button type=\"submit\" name=\"action\" value=\"drain\">drain</button>\
             <button type=\"submit\" name=\"action\" value=\"maint\">maint</button>\
             <input type=\"number\" name=\"weight\" min=\"0\" max=\"256\" value=\"{}\" size=\"3\">\
             <button type=\"submit\" name=\"action\" value=\"weight\">set weight</button></form></td>",
            escape(opts.uri),
            escape(&b.name),
            escape(&s.name),
            escape(opts.token),
            s.weight
        );
    }
    h.push_str("</tr>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn refresh_and_version_are_optional() {
        let snap = Snapshot {
            frontends: vec![],
            backends: vec![],
            actconn: 0,
        };
        let page = render(
            &snap,
            &PageOptions {
                uri: "/",
                refresh: Some(Duration::from_secs(5)),
                version: None,
                admin: false,
                token: "",
                status: None,
            },
        );
        assert!(page.contains("http-equiv=\"refresh\" content=\"5\""));
        assert!(!page.contains("tether version"));
        let page = render(
            &snap,
            &PageOptions {
                version: Some("1.2.3"),
                ..Default::default()
            },
        );
        assert!(page.contains("tether version 1.2.3") && !page.contains("refresh"));
    }
}
