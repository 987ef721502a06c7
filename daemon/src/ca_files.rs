//! The CA files a configuration names (`ca-file` in the servers' check TLS settings), read when
//! the configuration is loaded or reloaded and handed to the runtime build: core reads no file.

use anyhow::{Context as _, Result};
use tether_core::config::Config;
use tether_core::server::check::CaFiles;

/// Reads every CA file `config` names; an error names the file that cannot be read.
pub fn read(config: &Config) -> Result<CaFiles> {
    let mut cas = CaFiles::default();
    for file in config.ca_files() {
        let pem = std::fs::read(file).with_context(|| {
            format!("cannot read ca-file {file} (the CA certificates checks verify servers with)")
        })?;
        cas.insert(file, pem);
    }
    Ok(cas)
}

/// Builds the runtime for `config` as `run` does: its CA files read, then the build.
pub fn build(
    config: &Config,
    previous: Option<&tether_core::engine::runtime::Runtime>,
    table_seed: u64,
) -> Result<tether_core::engine::runtime::Runtime> {
    let cas = read(config)?;
    Ok(tether_core::engine::runtime::build_with_cas(
        config, previous, table_seed, &cas,
    )?)
}
