//! Health checks over TLS, as HAProxy's `check-ssl`, `verify`, `ca-file`, `check-sni` and
//! `verifyhost` run them: the check's connection is wrapped in a rustls client session before its
//! plan runs (an HTTPS `/healthz` check is what a Kubernetes control plane needs).
//!
//! Verification follows HAProxy 2.6: `verify required` (the default) checks the chain against the
//! CAs of `ca-file` and, when a name is known, the certificate's names against it: the SNI sent
//! (`check-sni`), else `verifyhost`; without either, names are not checked. `verify none` checks
//! nothing. Core reads no file: the caller hands the PEM bytes of each `ca-file` in [`CaFiles`].

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde::{Deserialize, Serialize};

use super::verify::{AnyServerCertificate, ChainToCa};
use super::CheckError;

/// The TLS settings of a server's health checks (native `check-tls = { ... }` on a server or
/// `[backend.check.tls]` for every server; HAProxy `check-ssl`, `verify`, `ca-file`,
/// `check-sni`, `verifyhost`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CheckTls {
    /// Checks connect over TLS (HAProxy `check-ssl`). Off: only `tcp-check connect ssl` steps
    /// do, with the settings below.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Whether the server's certificate is verified: `"required"` (HAProxy's default) or
    /// `"none"`.
    #[serde(default)]
    pub verify: Verify,
    /// PEM file of the CAs that must have signed the server's certificate (HAProxy `ca-file`);
    /// required with `verify = "required"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Server name sent in the TLS hello (HAProxy `check-sni`); also the name the certificate
    /// must carry when verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Name the certificate must carry when no `sni` is sent (HAProxy `verifyhost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifyhost: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for CheckTls {
    fn default() -> Self {
        CheckTls {
            enabled: true,
            verify: Verify::Required,
            ca_file: None,
            sni: None,
            verifyhost: None,
        }
    }
}

/// HAProxy's `verify` on a server line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verify {
    /// Accept any certificate (`verify none`).
    None,
    /// The certificate must chain to `ca-file` (and carry the expected name, when one is known).
    #[default]
    Required,
}

impl CheckTls {
    /// What makes these settings unusable, with its fix: `verify required` without `ca-file`
    /// (HAProxy refuses it too), or a name that is not a host name.
    pub fn problem(&self) -> Option<CheckError> {
        if self.verify == Verify::Required && self.ca_file.is_none() {
            return Some(CheckError::new(
                "verify is required (HAProxy's default) but no CA file is given",
                "add ca-file with the CA that signed the servers' certificates, or write \
                 verify none if the network is trusted",
            ));
        }
        for (key, name) in [("sni", &self.sni), ("verifyhost", &self.verifyhost)] {
            if let Some(n) = name {
                if ServerName::try_from(n.as_str()).is_err() {
                    return Some(CheckError::new(
                        format!("{key} `{n}` is not a host name"),
                        format!("write a host name, e.g. {key} api.example.com"),
                    ));
                }
            }
        }
        None
    }

    /// The name the certificate is checked against: the SNI sent, else `verifyhost`.
    fn expected_name(&self) -> Option<ServerName<'static>> {
        let name = self.sni.as_ref().or(self.verifyhost.as_ref())?;
        ServerName::try_from(name.clone()).ok()
    }
}

/// PEM bytes of the CA files a configuration names, by file name as written. The runner (the
/// daemon) reads them when it loads the configuration, so core does no file IO.
#[derive(Debug, Clone, Default)]
pub struct CaFiles(BTreeMap<String, Arc<[u8]>>);

impl CaFiles {
    /// Keeps the contents of `file`.
    pub fn insert(&mut self, file: impl Into<String>, pem: impl Into<Arc<[u8]>>) {
        self.0.insert(file.into(), pem.into());
    }

    /// The contents of `file`, when read.
    pub fn get(&self, file: &str) -> Option<&[u8]> {
        self.0.get(file).map(|b| &b[..])
    }
}

/// What a check needs to wrap its connection in TLS: the rustls client configuration and the
/// name to connect with, built once per server.
#[derive(Debug, Clone)]
pub struct TlsClient {
    /// The client configuration (verifier included).
    pub config: Arc<ClientConfig>,
    /// The name given to rustls: the SNI when one is set, else an address, so no SNI is sent.
    pub server_name: ServerName<'static>,
    /// Whether the check's default connections use TLS (`check-ssl`).
    pub default_on: bool,
}

impl TlsClient {
    /// Builds the client for `tls`; `ca_pem` is the content of its `ca-file`.
    pub fn new(tls: &CheckTls, ca_pem: Option<&[u8]>) -> Result<TlsClient, CheckError> {
        if let Some(e) = tls.problem() {
            return Err(e);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match tls.verify {
            Verify::None => Arc::new(AnyServerCertificate::new(
                provider.signature_verification_algorithms,
            )),
            Verify::Required => {
                let file = tls.ca_file.as_deref().unwrap_or_default();
                let pem = ca_pem.ok_or_else(|| {
                    CheckError::new(
                        format!("ca-file {file} was not read"),
                        "make the file readable by tether (a PEM file of CA certificates)",
                    )
                })?;
                Arc::new(ChainToCa::new(
                    Arc::new(roots(file, pem)?),
                    tls.expected_name(),
                    provider.signature_verification_algorithms,
                ))
            }
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CheckError::new(format!("TLS versions: {e}"), "report this bug"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let server_name = match &tls.sni {
            Some(n) => ServerName::try_from(n.clone()).map_err(|_| {
                CheckError::new(format!("sni `{n}` is not a host name"), "write a host name")
            })?,
            None => ServerName::IpAddress(IpAddr::from([0, 0, 0, 0]).into()),
        };
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
            default_on: tls.enabled,
        })
    }
}

/// The CA certificates of a PEM file; an error names the file when it holds none.
fn roots(file: &str, pem: &[u8]) -> Result<RootCertStore, CheckError> {
    let bad = |what: String| {
        CheckError::new(
            what,
            format!("write the CA certificates into {file} as PEM (-----BEGIN CERTIFICATE-----)"),
        )
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("ca-file {file}: bad PEM: {e}")))?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad(format!(
            "ca-file {file} holds no usable CA certificate"
        )));
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(toml_text: &str) -> CheckTls {
        toml::from_str(toml_text).expect("check TLS settings parse")
    }

    #[test]
    fn defaults_are_haproxys_check_ssl_with_verify_required() {
        let t = tls("");
        assert!(t.enabled);
        assert_eq!(t.verify, Verify::Required);
        assert_eq!(t, CheckTls::default());
        assert_eq!(tls("verify = \"none\"").verify, Verify::None);
        assert!(toml::from_str::<CheckTls>("verify = \"sometimes\"").is_err());
        assert!(toml::from_str::<CheckTls>("cafile = \"x\"").is_err());
    }

    #[test]
    fn verify_required_needs_a_ca_file_and_names_must_be_host_names() {
        let e = tls("").problem().expect("refused as HAProxy does");
        assert!(e.what.contains("no CA file"), "{}", e.what);
        assert!(e.fix.contains("ca-file") && e.fix.contains("verify none"));
        assert_eq!(tls("verify = \"none\"").problem(), None);
        assert_eq!(tls("ca-file = \"ca.pem\"").problem(), None);
        let e = tls("verify = \"none\"\nsni = \"not a name\"")
            .problem()
            .unwrap();
        assert!(e.what.contains("sni `not a name`"), "{}", e.what);
        assert!(tls("verify = \"none\"\nverifyhost = \"a b\"")
            .problem()
            .is_some());
    }

    #[test]
    fn the_client_sends_sni_only_when_set_and_refuses_an_unread_or_empty_ca_file() {
        let none = tls("verify = \"none\"");
        let c = TlsClient::new(&none, None).unwrap();
        assert!(matches!(c.server_name, ServerName::IpAddress(_)), "no SNI");
        let c = TlsClient::new(&tls("verify = \"none\"\nsni = \"api.internal\""), None).unwrap();
        assert_eq!(c.server_name.to_str(), "api.internal");
        let required = tls("ca-file = \"ca.pem\"");
        let e = TlsClient::new(&required, None).unwrap_err();
        assert!(e.what.contains("ca.pem was not read"), "{}", e.what);
        let e = TlsClient::new(&required, Some(b"not pem")).unwrap_err();
        assert!(e.what.contains("no usable CA"), "{}", e.what);
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap();
        assert!(TlsClient::new(&required, Some(ca.cert.pem().as_bytes())).is_ok());
    }

    #[test]
    fn ca_files_keep_contents_by_name() {
        let mut cas = CaFiles::default();
        cas.insert("a.pem", b"A".to_vec());
        assert_eq!(cas.get("a.pem"), Some(&b"A"[..]));
        assert_eq!(cas.get("b.pem"), None);
    }
}
