//! HTTPS for the stats page: the certificate chain and key from PEM files, as HAProxy's
//! `bind ... ssl crt FILE` reads them (one file holding both), or `[stats.tls]` with a
//! separate `key`.

use std::sync::Arc;

use anyhow::{anyhow, Context as _, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tether_core::config::StatsTls;
use tokio_rustls::TlsAcceptor;

/// Loads the certificate and key and builds the acceptor; fails with the file named when
/// either cannot be read or does not hold what it should.
pub fn acceptor(tls: &StatsTls) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .with_context(|| format!("stats tls: cannot read the certificate file {}", tls.cert))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("stats tls: bad PEM in {}", tls.cert))?;
    if certs.is_empty() {
        return Err(anyhow!(
            "stats tls: no CERTIFICATE block in {} (it must hold the chain, leaf first)",
            tls.cert
        ));
    }
    let key_file = tls.key.as_deref().unwrap_or(&tls.cert);
    let key = PrivateKeyDer::from_pem_file(key_file).with_context(|| {
        format!("stats tls: no private key in {key_file} (write it there, or set key = FILE)")
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("stats tls: protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!("stats tls: the key in {key_file} does not fit the certificate")
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
