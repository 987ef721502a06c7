//! Where the daemon's configuration comes from: a native TOML file, an imported haproxy.cfg, or
//! the quick command-line form. SIGHUP re-reads the same source.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use tether_core::config::{self, Config};

/// A configuration source, re-readable on reload.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    /// `tether run -c tether.toml`.
    Toml(PathBuf),
    /// `tether run --haproxy haproxy.cfg`.
    Haproxy(PathBuf),
    /// `tether run --listen ... --server ...`: built once from the command line.
    Inline(Box<Config>),
}

/// The quick form: one frontend, one backend, servers named s1, s2, ...
#[derive(Clone, Debug, Default)]
pub struct QuickForm {
    /// Listening address.
    pub listen: String,
    /// Server addresses.
    pub servers: Vec<String>,
    /// Affinity chain, e.g. `session-id,ticket`.
    pub affinity: Option<String>,
    /// Balancing algorithm name.
    pub balance: Option<String>,
    /// Accept PROXY protocol headers.
    pub accept_proxy: bool,
}

impl QuickForm {
    /// The equivalent native configuration, validated like a file would be.
    pub fn to_config(&self) -> Result<Config> {
        if self.servers.is_empty() {
            bail!("--listen needs at least one --server ADDRESS:PORT");
        }
        let mut text = String::new();
        text.push_str("[[frontend]]\nname = \"main\"\n");
        text.push_str(&format!("bind = [{:?}]\nbackend = \"app\"\n", self.listen));
        if self.accept_proxy {
            text.push_str("accept-proxy = true\n");
        }
        text.push_str("\n[[backend]]\nname = \"app\"\n");
        if let Some(b) = &self.balance {
            text.push_str(&format!("balance = {b:?}\n"));
        }
        if let Some(a) = &self.affinity {
            let keys: Vec<String> = a
                .split(',')
                .map(|k| format!("{:?}", k.trim()))
                .filter(|k| k != "\"\"")
                .collect();
            text.push_str(&format!("affinity = [{}]\n", keys.join(", ")));
        }
        for (i, s) in self.servers.iter().enumerate() {
            text.push_str(&format!(
                "\n[[backend.server]]\nname = \"s{}\"\naddress = {s:?}\n",
                i + 1
            ));
        }
        config::load_toml("<command line>", &text).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

impl ConfigSource {
    /// Reads and validates the configuration. Every problem is reported at once.
    pub fn load(&self) -> Result<Config> {
        match self {
            ConfigSource::Inline(c) => Ok((**c).clone()),
            ConfigSource::Toml(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                config::load_toml(&path.display().to_string(), &text)
                    .map_err(|e| anyhow::anyhow!("{e}"))
            }
            ConfigSource::Haproxy(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let (config, findings) =
                    crate::haproxy::convert_haproxy(&path.display().to_string(), &text)
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                for f in findings {
                    tracing::warn!("{f}");
                }
                Ok(config)
            }
        }
    }
}
