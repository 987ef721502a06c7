//! One probe connection: connect, handshake, make the server talk, and describe what happened.

use std::net::SocketAddr;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{HandshakeKind, ProtocolVersion};
use sha2::{Digest, Sha256};
use tether_core::affinity::ticket_keys::{KeyName, NameSpan};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::certificate::{fingerprint, hex, subject_common_name};
use super::recording::RecordingStream;
use super::report::{BackendIdentity, ConnectionReport, ResumedBy};
use super::session_store::ChainSessionStore;
use super::wire::WireObservation;
use super::{ProbeOptions, Request};

/// The most of the server's first answer kept as a banner.
const BANNER_LIMIT: usize = 4096;

/// Open connection `index` of a chain and report it; failures become part of the report.
pub(super) async fn connect(
    index: usize,
    address: SocketAddr,
    server_name: ServerName<'static>,
    connector: &TlsConnector,
    store: &ChainSessionStore,
    host: &str,
    options: &ProbeOptions,
) -> ConnectionReport {
    store.begin_connection();
    let start = Instant::now();
    let deadline = start + options.timeout;
    let handshake = timeout(options.timeout, async {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        connector
            .connect(server_name, RecordingStream::new(tcp))
            .await
            .map_err(|e| format!("handshake: {e}"))
    })
    .await;
    let handshake_ms = start.elapsed().as_secs_f64() * 1000.0;
    let mut tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return ConnectionReport::failed(index, e, handshake_ms),
        Err(_) => {
            return ConnectionReport::failed(
                index,
                format!("timed out after {:?}", options.timeout),
                handshake_ms,
            )
        }
    };
    let linger = options
        .linger
        .min(deadline.saturating_duration_since(Instant::now()));
    let banner = converse(&mut tls, options.request, host, linger).await;
    let _ = timeout(Duration::from_millis(100), tls.shutdown()).await;
    describe(index, &tls, store, banner, handshake_ms)
}

/// Send the request and read the server's first line (processing TLS 1.3 tickets on the way).
async fn converse(
    tls: &mut TlsStream<RecordingStream<TcpStream>>,
    request: Request,
    host: &str,
    linger: Duration,
) -> Option<String> {
    if request == Request::Http {
        let get = format!("GET / HTTP/1.0\r\nHost: {host}\r\nUser-Agent: tether-probe\r\n\r\n");
        if tls.write_all(get.as_bytes()).await.is_err() || tls.flush().await.is_err() {
            return None;
        }
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let give_up = Instant::now() + linger;
    while !answer.contains(&b'\n') && answer.len() < BANNER_LIMIT {
        let left = give_up.saturating_duration_since(Instant::now());
        match timeout(left, tls.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let line = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line).trim_end().to_string();
    (!line.is_empty()).then(|| line.chars().take(80).collect())
}

fn describe(
    index: usize,
    tls: &TlsStream<RecordingStream<TcpStream>>,
    store: &ChainSessionStore,
    banner: Option<String>,
    handshake_ms: f64,
) -> ConnectionReport {
    let (io, conn) = tls.get_ref();
    let wire = WireObservation::from_streams(io.sent(), io.received());
    let activity = store.activity();
    let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
    let tls13 = conn.protocol_version() == Some(ProtocolVersion::TLSv1_3);
    let resumed_by = resumed.then(|| {
        if tls13 {
            ResumedBy::Psk
        } else if wire.offered_ticket.is_some() {
            ResumedBy::Ticket
        } else {
            ResumedBy::SessionId
        }
    });
    let backend = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| {
            let fingerprint = fingerprint(leaf.as_ref());
            let name = subject_common_name(leaf.as_ref())
                .unwrap_or_else(|| fingerprint.chars().take(8).collect());
            BackendIdentity {
                fingerprint,
                name,
                banner,
            }
        });
    // Session IDs are shown as sent (what a balancer sticks on); tickets as a digest, because
    // they start with the server's key name and look alike.
    let prefix = |bytes: &Vec<u8>| hex(&bytes[..bytes.len().min(8)]);
    let digest = |bytes: &Vec<u8>| hex(&Sha256::digest(bytes)[..8]);
    ConnectionReport {
        index,
        error: None,
        version: conn.protocol_version().map(version_name),
        resumed,
        resumed_by,
        backend,
        session_offered: activity.offered,
        offered_session_id: wire.offered_session_id.as_ref().map(prefix),
        server_session_id: wire.server_session_id.as_ref().map(prefix),
        offered_ticket: wire.offered_ticket.as_ref().map(digest),
        issued_ticket: wire.issued_ticket.as_ref().map(digest),
        offered_psk: wire.offered_psk_identity.as_ref().map(digest),
        offered_key_name: wire
            .offered_psk_identity
            .as_ref()
            .or(wire.offered_ticket.as_ref())
            .and_then(|t| KeyName::from_ticket(t, NameSpan::default())),
        issued_key_name: wire
            .issued_ticket
            .as_ref()
            .and_then(|t| KeyName::from_ticket(t, NameSpan::default())),
        sessions_received: activity.received,
        handshake_ms,
    }
}

fn version_name(version: ProtocolVersion) -> String {
    match version {
        ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        other => format!("{other:?}"),
    }
}
