//! `openssl s_server` as a backend: the reference TLS implementation, with its own session cache
//! and ticket keys per process, as an independent check on what rustls backends show.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;

use super::process::{free_port, ServerProcess};
use super::{ScratchDir, SelfSignedCert, TestbedError, TlsVersions};

/// How to start an `openssl s_server`.
#[derive(Debug, Clone)]
pub struct OpensslServerConfig {
    /// Backend name: the certificate CN.
    pub name: String,
    /// Versions offered (`-tls1_2`, `-tls1_3`, or both).
    pub versions: TlsVersions,
    /// Issue session tickets; `false` passes `-no_ticket` (TLS 1.2 then resumes by session ID).
    pub tickets: bool,
    /// `-www` (answer `GET /` with a status page, then close) rather than `-rev` (reverse lines).
    pub www: bool,
    /// The openssl binary.
    pub program: PathBuf,
}

impl OpensslServerConfig {
    /// Both versions, tickets on, `-www`, `openssl` from `PATH`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            versions: TlsVersions::Both,
            tickets: true,
            www: true,
            program: PathBuf::from("openssl"),
        }
    }

    /// Restrict the versions.
    pub fn versions(mut self, versions: TlsVersions) -> Self {
        self.versions = versions;
        self
    }

    /// Turn tickets on or off.
    pub fn tickets(mut self, tickets: bool) -> Self {
        self.tickets = tickets;
        self
    }
}

/// A running `openssl s_server` on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct OpensslServer {
    process: ServerProcess,
    addr: SocketAddr,
    cert: SelfSignedCert,
    // Dropped after the process: the certificate files must outlive it.
    _scratch: ScratchDir,
}

impl OpensslServer {
    /// Start the server on a free port and wait until it accepts connections.
    pub async fn start(config: OpensslServerConfig) -> Result<Self, TestbedError> {
        let cert = SelfSignedCert::generate(&config.name)?;
        let scratch = ScratchDir::create(&format!("openssl-{}", config.name))?;
        let (cert_path, key_path) = cert.write_pem(scratch.path())?;
        let mut last = None;
        // A free port can be taken between our check and openssl's bind: try a few.
        for _ in 0..5 {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
            let mut command = Command::new(&config.program);
            command
                .arg("s_server")
                .arg("-accept")
                .arg(addr.to_string())
                .arg("-cert")
                .arg(&cert_path)
                .arg("-key")
                .arg(&key_path)
                .arg(if config.www { "-www" } else { "-rev" });
            match config.versions {
                TlsVersions::Tls12 => {
                    command.arg("-tls1_2");
                }
                TlsVersions::Tls13 => {
                    command.arg("-tls1_3");
                }
                TlsVersions::Both => {}
            }
            if !config.tickets {
                command.arg("-no_ticket");
            }
            let log = scratch.path().join("s_server.log");
            let mut process = match ServerProcess::spawn("openssl s_server", command, &log) {
                Ok(p) => p,
                Err(TestbedError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    return Err(TestbedError::MissingProgram {
                        program: "openssl",
                        path: config.program.clone(),
                        hint: "install the openssl command-line tool (apt-get install openssl)",
                    })
                }
                Err(e) => return Err(e),
            };
            match process.ready(addr).await {
                Ok(()) => {
                    return Ok(Self {
                        process,
                        addr,
                        cert,
                        _scratch: scratch,
                    })
                }
                Err(e) => {
                    let retry = process.has_exited();
                    last = Some(e);
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| TestbedError::NotReady {
            what: "openssl s_server".into(),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            detail: "no attempt made".into(),
        }))
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its name (certificate CN).
    pub fn name(&self) -> &str {
        &self.cert.name
    }

    /// SHA-256 of its certificate, as the probe reports it.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.cert.fingerprint()
    }

    /// Its certificate, PEM: self-signed, so also the CA a client verifies it with.
    pub fn cert_pem(&self) -> &str {
        &self.cert.cert_pem
    }

    /// What s_server has logged so far.
    pub fn log(&self) -> String {
        self.process.log_text()
    }
}
