//! The `peers` section (`peer NAME ADDR:PORT` lines, or HAProxy 2.x's `bind` + `server` form)
//! and `localpeer` in `global`: imported into `[peers]`. The line naming the local peer gives
//! the address to listen on; a backend's `stick-table ... peers NAME` shares its table.

use super::sections::Section;
use super::Importer;
use crate::finding::Severity;
use tether_core::config::peers::{PeerEntry, PeersSection};

/// What the `peers` section said, before `localpeer` (which may come later) is known.
#[derive(Debug, Default)]
pub(super) struct PendingPeers {
    pub(super) section: Option<PeersSection>,
    pub(super) localpeer: Option<String>,
    /// The explicit `bind` line, if any.
    bind: Option<String>,
    /// `stick-table ... peers NAME`: line and name.
    pub(super) uses: Vec<(usize, String)>,
}

impl Importer<'_> {
    /// Imports one `peers NAME` section (tether runs one per process).
    pub(super) fn peers(&mut self, s: &Section) {
        if self.peers.section.is_some() {
            self.error(
                s.header.line,
                format!("second peers section `{}`", s.header.text()),
                "tether replicates with one peers section per process",
                "share every table through one peers section",
            );
            return;
        }
        let mut section = PeersSection {
            name: s.header.word(1).to_string(),
            local: String::new(),
            bind: None,
            peers: Vec::new(),
        };
        for d in &s.body {
            match d.keyword() {
                "peer" | "server" if !d.word(1).is_empty() => {
                    let address = d.word(2).to_string();
                    if address.is_empty() && d.keyword() == "peer" {
                        self.error(
                            d.line,
                            format!("`{}` has no address", d.text()),
                            "HAProxy rejects it",
                            "peer lb2 10.0.0.2:10000",
                        );
                        continue;
                    }
                    section.peers.push(PeerEntry {
                        name: d.word(1).to_string(),
                        address,
                    });
                }
                "bind" => self.peers.bind = Some(d.word(1).to_string()),
                "disabled" | "enabled" | "log" | "shards" | "default-server" | "default-bind" => {
                    self.finding(
                        Severity::Warning,
                        d.line,
                        format!("`{}` in peers is ignored", d.text()),
                        "tether does not implement it for peers",
                        "remove it",
                    )
                }
                "table" => self.error(
                    d.line,
                    format!(
                        "`{}`: tables declared in peers sections are not supported",
                        d.text()
                    ),
                    "tether shares a backend's own table",
                    "declare the table in the backend: stick-table ... peers NAME",
                ),
                _ => self.unsupported(d, "peers"),
            }
        }
        self.peers.section = Some(section);
    }

    /// Completes `[peers]` once `global` is read: the local name (`localpeer`, else the host
    /// name, as HAProxy) and the address to listen on.
    pub(super) fn finish_peers(&mut self) {
        let defined = self.peers.section.as_ref().map(|s| s.name.clone());
        for (line, name) in std::mem::take(&mut self.peers.uses) {
            if Some(&name) != defined.as_ref() {
                self.error(
                    line,
                    format!("stick table shared with peers \"{name}\", which is not defined"),
                    "HAProxy refuses the config: unknown peers section",
                    format!("add `peers {name}` with a `peer` line per balancer"),
                );
            }
        }
        let Some(mut section) = self.peers.section.take() else {
            return;
        };
        section.local = self.peers.localpeer.clone().unwrap_or_else(host_name);
        let own = section.peers.iter().find(|p| p.name == section.local);
        section.bind = self
            .peers
            .bind
            .clone()
            .or_else(|| own.map(|p| p.address.clone()))
            .filter(|a| !a.is_empty());
        section
            .peers
            .retain(|p| !p.address.is_empty() || p.name == section.local);
        self.config.peers = Some(section);
    }
}

/// The host name, as HAProxy's default local peer name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text};

    #[test]
    fn peers_section_localpeer_and_table() {
        let im = import_text(
            "global\n  localpeer lb1\npeers mesh\n  peer lb1 127.0.0.1:10000\n  peer hap 127.0.0.1:10001\n\
             frontend f\n  bind 127.0.0.1:9443\n  default_backend app\n\
             backend app\n  stick-table type binary len 32 size 1k expire 1m peers mesh\n  stick on src\n  server s1 127.0.0.1:8443\n",
        );
        assert!(errors(&im).is_empty(), "{:?}", errors(&im));
        let p = im.config.peers.as_ref().expect("peers imported");
        assert_eq!((p.name.as_str(), p.local.as_str()), ("mesh", "lb1"));
        assert_eq!(p.bind.as_deref(), Some("127.0.0.1:10000"));
        assert_eq!(
            p.remotes().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["hap"]
        );
        assert_eq!(
            im.config.backends[0].stick_table.peers.as_deref(),
            Some("mesh")
        );
    }

    #[test]
    fn a_table_naming_an_unknown_peers_section_is_an_error() {
        let im = import_text(
            "frontend f\n  bind 127.0.0.1:9443\n  default_backend app\n\
             backend app\n  stick-table type binary len 32 size 1k expire 1m peers nope\n  stick on src\n  server s1 127.0.0.1:8443\n",
        );
        let e = errors(&im);
        assert!(e.iter().any(|f| f.what.contains("peers \"nope\"")), "{e:?}");
    }
}
