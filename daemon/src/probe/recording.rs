//! A transport wrapper that keeps a copy of the first bytes each way, so the probe can read the
//! cleartext handshake (session IDs, tickets) that rustls does not expose.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes kept per direction: a handshake with a certificate chain fits; the rest is encrypted
/// anyway.
pub const CAPTURE_LIMIT: usize = 64 * 1024;

/// `S` plus bounded copies of what was read and written.
#[derive(Debug)]
pub struct RecordingStream<S> {
    inner: S,
    read: Vec<u8>,
    written: Vec<u8>,
}

impl<S> RecordingStream<S> {
    /// Wrap `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            read: Vec::new(),
            written: Vec::new(),
        }
    }

    /// The first bytes received (up to [`CAPTURE_LIMIT`]).
    pub fn received(&self) -> &[u8] {
        &self.read
    }

    /// The first bytes sent (up to [`CAPTURE_LIMIT`]).
    pub fn sent(&self) -> &[u8] {
        &self.written
    }
}

fn keep(log: &mut Vec<u8>, bytes: &[u8]) {
    let room = CAPTURE_LIMIT.saturating_sub(log.len());
    log.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

impl<S: AsyncRead + Unpin> AsyncRead for RecordingStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            keep(&mut this.read, &buf.filled()[before..]);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RecordingStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            keep(&mut this.written, &buf[..n.min(buf.len())]);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn records_both_directions_within_the_limit() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut rec = RecordingStream::new(a);
        rec.write_all(b"hello").await.unwrap();
        b.write_all(&vec![7u8; CAPTURE_LIMIT + 10]).await.unwrap();
        let mut sink = vec![0u8; CAPTURE_LIMIT + 10];
        rec.read_exact(&mut sink).await.unwrap();
        let mut got = [0u8; 5];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        assert_eq!(rec.sent(), b"hello");
        assert_eq!(rec.received().len(), CAPTURE_LIMIT);
    }
}
