//! Self-signed certificates named after their backend, and scratch directories to write them to.
//!
//! The probe tells backends apart by their certificate, so every test backend gets its own key and
//! a subject CN equal to its name.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use super::TestbedError;

/// A certificate and its key, in the DER form rustls wants and the PEM form openssl wants.
#[derive(Debug)]
pub struct SelfSignedCert {
    /// The backend name, also the subject CN and the only SAN.
    pub name: String,
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
    key_der: Vec<u8>,
}

impl SelfSignedCert {
    /// Issue a fresh ECDSA P-256 certificate with subject CN = `name`.
    pub fn generate(name: &str) -> Result<Self, TestbedError> {
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, name);
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            name: name.to_string(),
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        })
    }

    /// The private key in the form rustls takes.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// SHA-256 of the certificate, the identity `tether probe` reports for this backend.
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(self.cert_der.as_ref()).into()
    }

    /// Write `NAME.crt` and `NAME.key` into `dir`; returns (certificate path, key path).
    pub fn write_pem(&self, dir: &Path) -> Result<(PathBuf, PathBuf), TestbedError> {
        let cert = dir.join(format!("{}.crt", self.name));
        let key = dir.join(format!("{}.key", self.name));
        std::fs::write(&cert, &self.cert_pem)
            .map_err(|e| TestbedError::io(format!("writing {}", cert.display()), e))?;
        std::fs::write(&key, &self.key_pem)
            .map_err(|e| TestbedError::io(format!("writing {}", key.display()), e))?;
        Ok((cert, key))
    }
}

/// A directory under the system temp dir, unique to this process, removed on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Create `$TMPDIR/tether-testbed-PID-N-LABEL`, replacing a stale one left by a dead process.
    pub fn create(label: &str) -> Result<Self, TestbedError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let safe: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path =
            std::env::temp_dir().join(format!("tether-testbed-{}-{n}-{safe}", std::process::id()));
        if path.exists() {
            let _ = std::fs::remove_dir_all(&path);
        }
        std::fs::create_dir_all(&path)
            .map_err(|e| TestbedError::io(format!("creating {}", path.display()), e))?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_carries_the_name_and_a_stable_fingerprint() {
        // The subject CN itself is read back by the probe's tests (`probe::certificate`).
        let cert = SelfSignedCert::generate("node-a").unwrap();
        assert_eq!(cert.name, "node-a");
        assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(cert.fingerprint(), cert.fingerprint());
        let other = SelfSignedCert::generate("node-a").unwrap();
        assert_ne!(
            cert.fingerprint(),
            other.fingerprint(),
            "fresh key per backend"
        );
    }

    #[test]
    fn scratch_dirs_are_distinct_and_removed() {
        let a = ScratchDir::create("x").unwrap();
        let b = ScratchDir::create("x").unwrap();
        assert_ne!(a.path(), b.path());
        let p = a.path().to_path_buf();
        assert!(p.is_dir());
        drop(a);
        assert!(!p.exists());
    }
}
