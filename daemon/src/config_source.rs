//! Where the daemon's configuration comes from: a native TOML file, an imported haproxy.cfg, or
//! the quick command-line form. SIGHUP re-reads the same source.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde::de::{DeserializeOwned, IntoDeserializer as _};
use tether_core::config::{
    self, AffinityKey, Backend, Config, ConfigError, ConfigErrors, Frontend, Server,
};

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
    /// Hand connections over only with their first bytes (`TCP_DEFER_ACCEPT`).
    pub defer_accept: bool,
}

/// Why the quick form does not make a configuration.
#[derive(Debug, thiserror::Error)]
pub enum QuickFormError {
    /// No `--server` given.
    #[error("--listen needs at least one --server ADDRESS:PORT")]
    NoServer,
    /// `--balance` or `--affinity` names something tether does not know.
    #[error("--{flag} {value}: {reason}")]
    UnknownName {
        /// The option, without dashes.
        flag: &'static str,
        /// What was written.
        value: String,
        /// The valid names.
        reason: String,
    },
    /// The configuration fails the checks every configuration goes through.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

/// Reads one kebab-case name (`roundrobin`, `session-id`) as the config enum spelling it.
fn named<T: DeserializeOwned>(flag: &'static str, value: &str) -> Result<T, QuickFormError> {
    T::deserialize(value.into_deserializer()).map_err(|e: serde::de::value::Error| {
        QuickFormError::UnknownName {
            flag,
            value: value.to_string(),
            reason: e.to_string(),
        }
    })
}

impl QuickForm {
    /// The equivalent native configuration (frontend `main`, backend `app`), built directly
    /// and validated like a file would be.
    pub fn to_config(&self) -> Result<Config, QuickFormError> {
        if self.servers.is_empty() {
            return Err(QuickFormError::NoServer);
        }
        let mut frontend = Frontend::named("main", "app");
        frontend.bind = vec![self.listen.clone()];
        frontend.accept_proxy = self.accept_proxy;
        frontend.defer_accept = self.defer_accept;
        let mut backend = Backend::named("app");
        if let Some(b) = &self.balance {
            backend.balance = named("balance", b)?;
        }
        if let Some(a) = &self.affinity {
            let keys = a.split(',').map(str::trim).filter(|k| !k.is_empty());
            backend.affinity = Some(
                keys.map(|k| named::<AffinityKey>("affinity", k))
                    .collect::<Result<_, _>>()?,
            );
        }
        backend.servers = self
            .servers
            .iter()
            .enumerate()
            .map(|(i, address)| Server::new(&format!("s{}", i + 1), address))
            .collect();
        let config = Config {
            frontends: vec![frontend],
            backends: vec![backend],
            ..Config::default()
        };
        let problems = config.validate();
        if !problems.is_empty() {
            let placed = problems
                .into_iter()
                .map(|p| ConfigError {
                    file: "<command line>".to_string(),
                    ..p
                })
                .collect();
            return Err(QuickFormError::Invalid(ConfigErrors(placed)));
        }
        Ok(config)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn form(affinity: Option<&str>, balance: Option<&str>) -> QuickForm {
        QuickForm {
            listen: "127.0.0.1:9443".into(),
            servers: vec!["127.0.0.1:8443".into(), "node2.example:8443".into()],
            affinity: affinity.map(Into::into),
            balance: balance.map(Into::into),
            accept_proxy: true,
            defer_accept: true,
        }
    }

    /// The same form written as a file, as `to_config` used to build it: the oracle.
    fn as_toml(f: &QuickForm) -> Config {
        let mut text = format!(
            "[[frontend]]\nname = \"main\"\nbind = [{:?}]\nbackend = \"app\"\n\
             accept-proxy = {}\ndefer-accept = {}\n\n[[backend]]\nname = \"app\"\n",
            f.listen, f.accept_proxy, f.defer_accept
        );
        if let Some(b) = &f.balance {
            text.push_str(&format!("balance = {b:?}\n"));
        }
        if let Some(a) = &f.affinity {
            let keys: Vec<String> = a
                .split(',')
                .map(|k| format!("{:?}", k.trim()))
                .filter(|k| k != "\"\"")
                .collect();
            text.push_str(&format!("affinity = [{}]\n", keys.join(", ")));
        }
        for (i, s) in f.servers.iter().enumerate() {
            text.push_str(&format!(
                "\n[[backend.server]]\nname = \"s{}\"\naddress = {s:?}\n",
                i + 1
            ));
        }
        config::load_toml("oracle.toml", &text).unwrap()
    }

    #[test]
    fn builds_what_the_equivalent_file_loads() {
        for f in [
            form(None, None),
            form(Some("session-id, ticket,,psk,source"), Some("leastconn")),
            form(Some(""), Some("hash")),
        ] {
            assert_eq!(f.to_config().unwrap(), as_toml(&f), "{f:?}");
        }
    }

    #[test]
    fn refuses_unknown_names_missing_servers_and_bad_addresses() {
        let e = form(None, Some("fastest")).to_config().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--balance fastest: unknown variant"),
            "{e}"
        );
        let e = form(Some("session-id,cookie"), None)
            .to_config()
            .unwrap_err();
        assert!(e.to_string().starts_with("--affinity cookie:"), "{e}");
        let mut f = form(None, None);
        f.servers.clear();
        assert!(matches!(f.to_config(), Err(QuickFormError::NoServer)));
        let mut f = form(None, None);
        f.listen = "*:9443".into();
        let e = f.to_config().unwrap_err().to_string();
        assert!(
            e.starts_with("<command line>:0: frontend[0].bind: invalid bind address"),
            "{e}"
        );
    }
}
