//! The connection a health check runs over: the runner's stream as it is, or wrapped in a rustls
//! client session (`check-ssl`, `tcp-check connect ssl`). tokio-rustls works over any
//! `AsyncRead + AsyncWrite`, so checks over TLS run alike on tokio sockets and turmoil's.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use std::net::IpAddr;

use rustls::pki_types::ServerName;

use crate::server::check::{Sni, TlsClient};

/// A check's connection.
pub(super) enum CheckConn<S> {
    /// In clear.
    Plain(S),
    /// Inside a TLS session (boxed: the session state is large).
    Tls(Box<TlsStream<S>>),
}

/// Does the TLS handshake of `client` over `stream`, sending `sni`; the error is rustls's (or
/// the socket's) words for the check's verdict.
pub(super) async fn handshake<S>(
    client: &TlsClient,
    sni: &Sni,
    stream: S,
) -> Result<CheckConn<S>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = match sni {
        Sni::Server => client.server_name.clone(),
        Sni::Absent => ServerName::IpAddress(IpAddr::from([0, 0, 0, 0]).into()),
        Sni::Name(n) => ServerName::try_from(n.to_string())
            .map_err(|_| format!("sni `{n}` is not a host name"))?,
    };
    let connector = TlsConnector::from(client.config.clone());
    match connector.connect(name, stream).await {
        Ok(tls) => Ok(CheckConn::Tls(Box::new(tls))),
        Err(e) => Err(e.to_string()),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for CheckConn<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            CheckConn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            CheckConn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for CheckConn<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            CheckConn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            CheckConn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            CheckConn::Plain(s) => Pin::new(s).poll_flush(cx),
            CheckConn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            CheckConn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            CheckConn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
