//! Real TLS peers for tests: rustls backends, `openssl s_server` and HAProxy.
//!
//! These are not mocks: each backend is a real TLS server on 127.0.0.1 with its own certificate,
//! session cache and ticket keys, so session affinity (or its absence) is observable exactly as in
//! a deployment. The probe's tests and the daemon's integration tests share them. This crate is
//! only ever a dev-dependency, so the certificate issuer (rcgen) stays out of the `tether` binary.
#![forbid(unsafe_code)]

mod certificate;
mod haproxy;
mod openssl;
mod process;
mod tls_backend;

pub use certificate::{ScratchDir, SelfSignedCert};
pub use haproxy::Haproxy;
pub use openssl::{OpensslServer, OpensslServerConfig};
pub use process::{free_port, machine_load, wait_until_listening};
pub use tls_backend::{TlsBackend, TlsBackendConfig};

use std::net::SocketAddr;
use std::path::PathBuf;

/// Which TLS versions a test backend speaks, so a test can force one resumption mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersions {
    /// TLS 1.2 only: session IDs and RFC 5077 tickets.
    Tls12,
    /// TLS 1.3 only: PSK tickets.
    Tls13,
    /// Both, the usual deployment.
    Both,
}

/// Why a test peer could not be started; tests print it, so it says what to install or check.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// Socket, file or process I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// rustls refused the server configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// rcgen could not issue the self-signed certificate.
    #[error("certificate generation: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A required program is not installed.
    #[error("{program} not found at {path}: {hint}")]
    MissingProgram {
        /// The program's name.
        program: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// What to do about it.
        hint: &'static str,
    },
    /// A spawned server never started listening, or exited early.
    #[error("{what} did not start listening on {addr}: {detail}")]
    NotReady {
        /// The server.
        what: String,
        /// The address it should listen on.
        addr: SocketAddr,
        /// Exit status and captured log, when known.
        detail: String,
    },
}

impl TestbedError {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
