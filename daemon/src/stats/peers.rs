//! The peers section on the stats page, `<uri>;json` (`"peers"`) and `/metrics`
//! (`tether_peer_*`): per remote peer its connection state, the age of the last hello and of the
//! last message received, updates sent, received and pending, resyncs and errors.

use std::fmt::Write as _;

use serde_json::{json, Value};
use tether_core::engine::peers::PeerStatus;
use tether_core::Timestamp;

use super::html::escape as escape_html;
use crate::run::DaemonView;

/// The peers' status at one moment.
pub struct Peers {
    local: String,
    rows: Vec<PeerStatus>,
    now: Timestamp,
}

fn age(now: Timestamp, t: Option<Timestamp>) -> Option<u64> {
    t.map(|t| now.0.saturating_sub(t.0))
}

impl Peers {
    /// Reads the status from the view (empty without a peers section).
    pub fn take(view: &DaemonView) -> Self {
        let p = view.peers();
        Peers {
            local: p.map(|p| p.local_name()).unwrap_or_default(),
            rows: p.map(|p| p.status()).unwrap_or_default(),
            now: view.context().clock.now(),
        }
    }

    /// `"peers"` in the JSON stats: `null` without a peers section.
    pub fn json(&self) -> Value {
        if self.local.is_empty() {
            return Value::Null;
        }
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "address": r.address,
                    "state": r.state.as_str(),
                    "last_hello_age_ms": age(self.now, r.last_hello),
                    "last_message_age_ms": age(self.now, r.last_rx),
                    "updates_sent": r.updates_sent,
                    "updates_received": r.updates_received,
                    "updates_pending": r.pending,
                    "resyncs_received": r.resyncs_received,
                    "resyncs_sent": r.resyncs_sent,
                    "errors": r.errors,
                    "last_error": r.last_error,
                    "collisions": r.collisions,
                })
            })
            .collect();
        json!({ "local": self.local, "peers": rows })
    }

    /// Prometheus families, one sample per peer.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        type Get = fn(&PeerStatus) -> u64;
        let families: [(&str, &str, &str, Get); 7] = [
            (
                "tether_peer_up",
                "gauge",
                "1 when the peer session is open.",
                |r| u64::from(r.state == tether_core::engine::peers::PeerState::Open),
            ),
            (
                "tether_peer_updates_sent_total",
                "counter",
                "Stick-table updates sent to the peer.",
                |r| r.updates_sent,
            ),
            (
                "tether_peer_updates_received_total",
                "counter",
                "Stick-table updates received from the peer and applied.",
                |r| r.updates_received,
            ),
            (
                "tether_peer_updates_pending",
                "gauge",
                "Local updates the peer has not acknowledged yet.",
                |r| r.pending,
            ),
            (
                "tether_peer_resyncs_received_total",
                "counter",
                "Full resyncs the peer taught us.",
                |r| r.resyncs_received,
            ),
            (
                "tether_peer_resyncs_sent_total",
                "counter",
                "Full resyncs we taught the peer.",
                |r| r.resyncs_sent,
            ),
            (
                "tether_peer_errors_total",
                "counter",
                "Peer connections that ended in an error.",
                |r| r.errors,
            ),
        ];
        for (name, kind, help, get) in families {
            if self.rows.is_empty() {
                break;
            }
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for r in &self.rows {
                let _ = writeln!(out, "{name}{{peer=\"{}\"}} {}", escape(&r.name), get(r));
            }
        }
        if !self.rows.is_empty() {
            let name = "tether_peer_last_message_age_seconds";
            let _ = writeln!(out, "# HELP {name} Seconds since anything was received from the peer.\n# TYPE {name} gauge");
            for r in &self.rows {
                if let Some(a) = age(self.now, r.last_rx) {
                    let _ = writeln!(
                        out,
                        "{name}{{peer=\"{}\"}} {}",
                        escape(&r.name),
                        a as f64 / 1000.0
                    );
                }
            }
        }
        out
    }

    /// The page with a peers table before its end.
    pub fn into_page(self, page: String) -> String {
        if self.local.is_empty() {
            return page;
        }
        let mut t = format!(
            "<h2 class=\"peers\">peers (local: {})</h2>\n<table>\n<tr><th>peer</th><th>address</th><th>state</th><th>last hello</th><th>last message</th><th>sent</th><th>received</th><th>pending</th><th>resyncs in/out</th><th>errors</th><th>last error</th></tr>\n",
            escape_html(&self.local)
        );
        for r in &self.rows {
            let ms = |t| age(self.now, t).map_or("-".to_string(), |a| format!("{a} ms ago"));
            let _ = writeln!(
                t,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td></tr>",
                escape_html(&r.name),
                escape_html(&r.address),
                r.state.as_str(),
                ms(r.last_hello),
                ms(r.last_rx),
                r.updates_sent,
                r.updates_received,
                r.pending,
                r.resyncs_received,
                r.resyncs_sent,
                r.errors,
                escape_html(r.last_error.as_deref().unwrap_or("")),
            );
        }
        t.push_str("</table>\n");
        match page.rfind("</body>") {
            Some(i) => format!("{}{t}{}", &page[..i], &page[i..]),
            None => page + &t,
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
