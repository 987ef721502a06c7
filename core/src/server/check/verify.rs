//! How a rustls client judges a server's certificate, for the clients tether runs against its
//! own backends: health checks (`verify none` / `verify required`), and the probe, the load
//! generator and the calibration, which identify a backend by its certificate rather than
//! authenticate it. In every case the handshake's signatures are checked against the
//! certificate, so a completed session really was with the holder of that certificate's key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Accepts every certificate chain (HAProxy's `verify none`); verifies the handshake's
/// signatures with the crypto provider's algorithms.
#[derive(Debug)]
pub struct AnyServerCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyServerCertificate {
    /// Uses `algorithms` (the crypto provider's) for handshake signatures.
    pub fn new(algorithms: WebPkiSupportedAlgorithms) -> Self {
        Self { algorithms }
    }
}

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// HAProxy's `verify required`: the chain must lead to one of `roots`, and the certificate must
/// carry `name` when a name is expected; signatures as [`AnyServerCertificate`] checks them.
#[derive(Debug)]
pub struct ChainToCa {
    roots: Arc<RootCertStore>,
    name: Option<ServerName<'static>>,
    signatures: AnyServerCertificate,
}

impl ChainToCa {
    /// Verifies against `roots` (and `name`, when given) with `algorithms`.
    pub fn new(
        roots: Arc<RootCertStore>,
        name: Option<ServerName<'static>>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Self {
        Self {
            roots,
            name,
            signatures: AnyServerCertificate::new(algorithms),
        }
    }
}

impl ServerCertVerifier for ChainToCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.signatures.algorithms.all,
        )?;
        if let Some(name) = &self.name {
            rustls::client::verify_server_name(&cert, name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_verify_schemes()
    }
}

/// A client that speaks only TLS 1.3 (`tls13`) or only TLS 1.2 and identifies servers by their
/// certificates without authenticating them: the probe's, the load generator's and the
/// calibration's. Each call makes its own verifier, and rustls resumes only sessions made with
/// the same verifier instance, so one configuration per session store. Resumption is rustls'
/// default until the caller sets `resumption`.
pub fn identifying_client(tls13: bool) -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyServerCertificate::new(
        provider.signature_verification_algorithms,
    ));
    let version: &'static rustls::SupportedProtocolVersion = if tls13 {
        &rustls::version::TLS13
    } else {
        &rustls::version::TLS12
    };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::{ClientConnection, ProtocolVersion, ServerConfig, ServerConnection};

    fn server(name: &str) -> (Arc<ServerConfig>, CertificateDer<'static>) {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let cert = ck.cert.der().clone();
        let key = PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        (Arc::new(config), cert)
    }

    /// A whole handshake in memory; the version negotiated, or the first error either side met.
    fn handshake(
        client: ClientConfig,
        server: Arc<ServerConfig>,
    ) -> Result<ProtocolVersion, rustls::Error> {
        let name = ServerName::try_from("backend.test").unwrap();
        let mut c = ClientConnection::new(Arc::new(client), name)?;
        let mut s = ServerConnection::new(server)?;
        pump(&mut c, &mut s)?;
        Ok(c.protocol_version().expect("negotiated"))
    }

    fn pump(c: &mut ClientConnection, s: &mut ServerConnection) -> Result<(), rustls::Error> {
        for _ in 0..20 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            if !buf.is_empty() {
                s.read_tls(&mut &buf[..]).unwrap();
                s.process_new_packets()?;
            }
            let mut back = Vec::new();
            s.write_tls(&mut back).unwrap();
            if !back.is_empty() {
                c.read_tls(&mut &back[..]).unwrap();
                c.process_new_packets()?;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn an_identifying_client_accepts_any_certificate_in_the_version_asked_for() {
        let (srv, _) = server("some-other-name.test");
        for (tls13, want) in [
            (false, ProtocolVersion::TLSv1_2),
            (true, ProtocolVersion::TLSv1_3),
        ] {
            let client = identifying_client(tls13).expect("ring supports both versions");
            assert_eq!(handshake(client, srv.clone()), Ok(want), "tls13 = {tls13}");
        }
    }

    /// Presents one certificate and signs with another's key, as a man in the middle would.
    #[derive(Debug)]
    struct ForeignKey(Arc<rustls::sign::CertifiedKey>);

    impl rustls::server::ResolvesServerCert for ForeignKey {
        fn resolve(
            &self,
            _: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    #[test]
    fn a_certificate_without_its_key_fails_the_handshake_in_either_version() {
        let (_, cert) = server("backend.test");
        let other = rcgen::generate_simple_self_signed(vec!["x.test".into()]).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::try_from(other.key_pair.serialize_der()).unwrap();
        let signer = provider.key_provider.load_private_key(key).unwrap();
        let certified = rustls::sign::CertifiedKey::new(vec![cert], signer);
        let srv = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(ForeignKey(Arc::new(certified))));
        let srv = Arc::new(srv);
        for tls13 in [false, true] {
            let client = identifying_client(tls13).unwrap();
            assert!(handshake(client, srv.clone()).is_err(), "tls13 = {tls13}");
        }
    }

    fn chain_to(root: &CertificateDer<'static>, name: Option<&str>) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots.add(root.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let name = name.map(|n| ServerName::try_from(n.to_string()).unwrap());
        let verifier = ChainToCa::new(
            Arc::new(roots),
            name,
            provider.signature_verification_algorithms,
        );
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    }

    #[test]
    fn a_chain_must_lead_to_the_ca_and_carry_the_expected_name() {
        let (srv, cert) = server("api.test");
        let (_, stranger) = server("api.test");
        assert!(handshake(chain_to(&cert, None), srv.clone()).is_ok());
        assert!(handshake(chain_to(&cert, Some("api.test")), srv.clone()).is_ok());
        assert!(handshake(chain_to(&cert, Some("db.test")), srv.clone()).is_err());
        assert!(handshake(chain_to(&stranger, None), srv).is_err());
    }
}
