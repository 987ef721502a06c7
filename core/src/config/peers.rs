//! `[peers]`: the HAProxy peers section that replicates stick tables between balancers.
//!
//! ```toml
//! [peers]
//! name = "mypeers"                 # the section; a backend's stick-table says peers = "mypeers"
//! local = "lb1"                    # this process's peer name (haproxy `localpeer`, `-L`)
//! bind = "127.0.0.1:10000"         # where peers connect to us
//! [[peers.peer]]
//! name = "lb2"
//! address = "127.0.0.1:10001"
//! ```

use serde::{Deserialize, Serialize};

/// A peers section: who we are, where we listen, whom we replicate with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PeersSection {
    /// The section's name, which backends' stick tables refer to.
    #[serde(default = "default_section")]
    pub name: String,
    /// This process's peer name: must match what the other peers call us.
    pub local: String,
    /// Where to accept peer connections (`None`: connect out only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// The other peers (a `peer` line naming `local` is our own bind, not a remote).
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerEntry>,
}

/// One remote peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PeerEntry {
    /// Its peer name.
    pub name: String,
    /// Its peers address, `host:port`.
    pub address: String,
}

fn default_section() -> String {
    "peers".to_owned()
}

impl PeersSection {
    /// The remote peers: every entry but our own name.
    pub fn remotes(&self) -> impl Iterator<Item = &PeerEntry> {
        self.peers.iter().filter(move |p| p.name != self.local)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_toml;

    const BASE: &str = "[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:9443\"]\nbackend = \"app\"\n\n[[backend]]\nname = \"app\"\n[backend.stick-table]\npeers = \"mesh\"\n[[backend.server]]\nname = \"s1\"\naddress = \"127.0.0.1:8443\"\n";

    #[test]
    fn peers_section_loads() {
        let text = format!("{BASE}\n[peers]\nname = \"mesh\"\nlocal = \"lb1\"\nbind = \"127.0.0.1:10000\"\n[[peers.peer]]\nname = \"lb2\"\naddress = \"127.0.0.1:10001\"\n");
        let c = load_toml("t.toml", &text).unwrap();
        let p = c.peers.unwrap();
        assert_eq!((p.local.as_str(), p.remotes().count()), ("lb1", 1));
        assert_eq!(c.backends[0].stick_table.peers.as_deref(), Some("mesh"));
    }

    #[test]
    fn unknown_section_and_bad_address_name_their_line() {
        let e = load_toml("t.toml", BASE).unwrap_err().to_string();
        assert!(
            e.contains("t.toml:9") && e.contains("\"mesh\", which is not defined"),
            "{e}"
        );
        let text = format!("{BASE}\n[peers]\nname = \"mesh\"\nlocal = \"lb1\"\n[[peers.peer]]\nname = \"lb2\"\naddress = \"nowhere\"\n");
        let e = load_toml("t.toml", &text).unwrap_err().to_string();
        assert!(e.contains("has no port"), "{e}");
    }
}
