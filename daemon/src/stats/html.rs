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

const STYLE: &str = "body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse;margin-bottom:1em}\
th,td{border:1px solid #999;padding:2px 6px;text-align:right}th{background:#20466e;color:#fff}\
td.name{text-align:left}tr.UP td.status{background:#c0f0c0}tr.DOWN td.status{background:#f0a0a0}\
tr.MAINT td.status{background:#c0c0f0}tr.DRAIN td.status{background:#f0e0a0}tr.total{font-weight:bold}\
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
    if let Some(v) = opts.version {
        let _ = writeln!(h, "<p class=\"version\">tether version {}</p>", escape(v));
    }
    let _ = writeln!(h, "<p>current connections: {}</p>", snap.actconn);
    let dropped = crate::syslog::dropped();
    let _ = writeln!(h, "<p id=\"dropped-logs\">log lines dropped: {dropped}</p>");
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
            "<h2>frontend {}</h2>\n<table id=\"fe-{}\"><tr><th>bind</th><th>backend</th><th>status</th><th>sessions cur</th><th>sessions total</th></tr>\
             <tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td class=\"status\">OPEN</td><td>{}</td><td>{}</td></tr></table>",
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

    // Affinity: hits, learned, then every miss by its cause.
    let _ = write!(
        h,
        "<table class=\"affinity\" id=\"aff-{}\"><tr><th>affinity outcome</th><th>connections</th></tr>",
        escape(&b.name)
    );
    let _ = write!(
        h,
        "<tr><td class=\"name\">hit</td><td>{}</td></tr><tr><td class=\"name\">learned</td><td>{}</td></tr>",
        b.outcome("hit"),
        b.outcome("learned")
    );
    for (o, n) in &b.outcomes {
        if matches!(o, AffinityOutcome::Hit | AffinityOutcome::Learned) {
            continue;
        }
        let _ = write!(
            h,
            "<tr><td class=\"name\">{}</td><td>{}</td></tr>",
            escape(&o.label()),
            n
        );
    }
    let _ = writeln!(
        h,
        "<tr><td class=\"name\">no server (NOSRV)</td><td>{}</td></tr></table>",
        b.nosrv
    );

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
        "<tr class=\"{class}\" id=\"srv-{}-{}\"><td class=\"name\">{}{}</td><td class=\"name\">{}</td><td class=\"status\">{}</td><td>{}</td>\
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
