//! `tether convert haproxy.cfg`: the equivalent native TOML, or every reason there is none.

use super::load::load;
use crate::finding::{Finding, Severity};
use std::fmt;
use tether_core::config::Config;

/// A haproxy.cfg that cannot be converted: its error findings (and the rest, for context).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConvertError {
    /// Every finding, errors included.
    pub findings: Vec<Finding>,
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self
            .findings
            .iter()
            .filter(|x| x.severity == Severity::Error);
        for (i, e) in errors.enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Imports and validates a haproxy.cfg ([`load`]). Warnings and notes come back with the
/// config; any error (HAProxy would refuse the file, or tether cannot honour it) fails the
/// conversion.
pub fn convert_haproxy(
    path_for_messages: &str,
    text: &str,
) -> Result<(Config, Vec<Finding>), ConvertError> {
    let im = load(path_for_messages, text);
    if im.has_errors() {
        return Err(ConvertError {
            findings: im.findings,
        });
    }
    Ok((im.config, im.findings))
}

/// Prints a config as native TOML that [`tether_core::config::load_toml`] reads back to an equal
/// config: every setting written out explicitly, so defaults changing later cannot change it.
pub fn to_toml(config: &Config) -> String {
    let body = toml::to_string(config).unwrap_or_else(|e| format!("# cannot print: {e}\n"));
    format!(
        "# tether configuration (durations: ms s m h d; sizes: k m g = powers of 1024)\n\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_config_haproxy_would_refuse() {
        let e = convert_haproxy("x.cfg", "global\n  log local2\n").unwrap_err();
        assert!(e.to_string().starts_with("x.cfg:2: error:"), "{e}");
    }
}
