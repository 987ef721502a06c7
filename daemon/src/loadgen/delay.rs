//! One-way network latency on loopback, without privileges or a packet scheduler: a relay
//! between a socket and an in-memory pipe that holds every chunk it reads for the link's
//! current latency before passing it on, in order, each direction on its own.
//!
//! As in the simulator, a chunk takes the latency the link has when it is sent (a `latency`
//! event slows what is sent after it), and chunks never overtake each other. A connect
//! completes at once on loopback (the kernel answers the SYN); the relay of the accepting side
//! adds the round trip the handshake would have taken to the first chunk it passes on, so the
//! first request arrives when it would have ([`Relay::accepted`]); the connecting side sleeps
//! the round trip before its connect ([`round_trip`]).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The current one-way latency of a link, in wall time.
pub type Link = watch::Receiver<Duration>;

/// Largest chunk read at once.
const CHUNK: usize = 16 * 1024;
/// Chunks in flight per direction (with [`CHUNK`]: at most 512 KiB held per direction).
const IN_FLIGHT: usize = 32;
/// The in-memory pipe between the relay and its user.
const PIPE: usize = 64 * 1024;

/// Twice the link's latency: how long a TCP connect over it takes.
pub fn round_trip(link: &Link) -> Duration {
    *link.borrow() * 2
}

/// A relay for one connection, built by [`Relay::new`] or [`Relay::accepted`].
pub struct Relay {
    link: Link,
    /// The first chunk towards the user is not passed on before this.
    first_not_before: Option<Instant>,
}

impl Relay {
    /// A relay over `link`.
    pub fn new(link: Link) -> Self {
        Relay {
            link,
            first_not_before: None,
        }
    }

    /// A relay for a connection accepted now: the peer's first chunk arrives no earlier than
    /// three one-way latencies from now (SYN, SYN-ACK, then the chunk).
    pub fn accepted(link: Link) -> Self {
        let not_before = Instant::now() + *link.borrow() * 3;
        Relay {
            link,
            first_not_before: Some(not_before),
        }
    }

    /// Splits into the stream the user reads and writes and the future that moves the bytes
    /// between it and `io` (it ends when both directions have ended; drop it to cut the link).
    pub fn start<S>(self, io: S) -> (DuplexStream, impl std::future::Future<Output = ()>)
    where
        S: AsyncRead + AsyncWrite,
    {
        let (user, inner) = tokio::io::duplex(PIPE);
        let moved = async move {
            let (io_read, io_write) = tokio::io::split(io);
            let (inner_read, inner_write) = tokio::io::split(inner);
            let towards_user = direction(
                io_read,
                inner_write,
                self.link.clone(),
                self.first_not_before,
            );
            let towards_peer = direction(inner_read, io_write, self.link, None);
            tokio::join!(towards_user, towards_peer);
        };
        (user, moved)
    }
}

/// What the reading side hands the writing side: bytes and when to pass them on. Reads never
/// yield empty data, so an empty chunk is the end of the source (EOF, or an error: the peer
/// reset); the destination is shut down then.
struct Chunk {
    bytes: Vec<u8>,
    at: Instant,
}

/// Moves `from` into `to`, each chunk held until its release time.
async fn direction<R, W>(from: R, to: W, link: Link, first_not_before: Option<Instant>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    tokio::join!(
        read_side(from, tx, link, first_not_before),
        write_side(rx, to)
    );
}

/// Reads as soon as bytes arrive and stamps each chunk with `arrival + latency`, never
/// earlier than the chunk before it.
async fn read_side<R: AsyncRead + Unpin>(
    mut from: R,
    tx: mpsc::Sender<Chunk>,
    link: Link,
    first_not_before: Option<Instant>,
) {
    let mut last = first_not_before.unwrap_or_else(Instant::now);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        last = (Instant::now() + *link.borrow()).max(last);
        let chunk = Chunk {
            bytes: buf[..n].to_vec(),
            at: last,
        };
        if tx.send(chunk).await.is_err() || n == 0 {
            return;
        }
    }
}

/// Writes each chunk at its release time; stops at the end or when the destination fails.
async fn write_side<W: AsyncWrite + Unpin>(mut rx: mpsc::Receiver<Chunk>, mut to: W) {
    while let Some(Chunk { bytes, at }) = rx.recv().await {
        wait_until(at).await;
        if bytes.is_empty() {
            let _ = to.shutdown().await;
            return;
        }
        if to.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// How much earlier than its deadline a wait asks tokio's timer to fire. The timer fires
/// late: it counts whole milliseconds, rounding up, and the poller's timeout is in
/// milliseconds too (measured here: 1.15 ms late on average, 0.5–1.9 ms). Every relayed hop
/// and every connect would take that much longer than its latency — ten times over in
/// scenario time at `--time-scale 10`, where it made a 20 ms client link's handshakes 60–70
/// scenario ms slower than the simulator's. Asked this much earlier, the mean is right
/// (±0.7 ms).
const TIMER_LEAD: Duration = Duration::from_millis(1);

/// Waits until about `at` (its mean error near zero, see [`TIMER_LEAD`]), without touching
/// the timer when that has passed (no latency).
pub async fn wait_until(at: Instant) {
    let wake = at.checked_sub(TIMER_LEAD).unwrap_or(at);
    if wake > Instant::now() {
        tokio::time::sleep_until(wake).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    const L: Duration = Duration::from_millis(60);

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn each_direction_takes_the_latency_and_keeps_every_byte_in_order() {
        let (mut client, server) = pair().await;
        let (_tx, link) = watch::channel(L);
        let (mut user, relay) = Relay::new(link).start(server);
        tokio::spawn(relay);
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let t0 = Instant::now();
        let writer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                client.write_all(&sent).await.unwrap();
                client.shutdown().await.unwrap();
                client
            })
        };
        let mut first = [0u8; 1];
        user.read_exact(&mut first).await.unwrap();
        let up = t0.elapsed();
        let mut got = first.to_vec();
        user.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, sent, "every byte, in order, then the end");
        assert!(
            up >= L - TIMER_LEAD,
            "arrived after {up:?}, before the latency"
        );
        assert!(up < L * 3, "arrived after {up:?}");

        let mut client = writer.await.unwrap();
        let t1 = Instant::now();
        user.write_all(b"reply").await.unwrap();
        user.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        let down = t1.elapsed();
        assert_eq!(back, b"reply");
        assert!(
            down >= L - TIMER_LEAD && down < L * 3,
            "reply after {down:?}"
        );
    }

    #[tokio::test]
    async fn a_latency_change_applies_to_what_is_sent_after_it() {
        let (mut client, server) = pair().await;
        let (set, link) = watch::channel(Duration::ZERO);
        let (mut user, relay) = Relay::new(link).start(server);
        tokio::spawn(relay);
        let mut b = [0u8; 1];
        let t = Instant::now();
        client.write_all(b"a").await.unwrap();
        user.read_exact(&mut b).await.unwrap();
        assert!(t.elapsed() < L, "no latency yet: {:?}", t.elapsed());
        set.send_replace(L);
        let t = Instant::now();
        client.write_all(b"b").await.unwrap();
        user.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"b");
        assert!(t.elapsed() >= L - TIMER_LEAD, "slowed: {:?}", t.elapsed());
    }

    #[tokio::test]
    async fn an_accepted_connection_first_hears_its_peer_after_the_connect_round_trip() {
        let (mut client, server) = pair().await;
        let (_tx, link) = watch::channel(L);
        let t = Instant::now();
        let (mut user, relay) = Relay::accepted(link).start(server);
        tokio::spawn(relay);
        client.write_all(b"hello").await.unwrap();
        let mut b = [0u8; 5];
        user.read_exact(&mut b).await.unwrap();
        let first = t.elapsed();
        assert!(first >= L * 3 - TIMER_LEAD, "first chunk after {first:?}");
    }

    #[tokio::test]
    async fn dropping_the_relay_cuts_the_connection() {
        let (mut client, server) = pair().await;
        let (_tx, link) = watch::channel(L);
        let (_user, relay) = Relay::new(link).start(server);
        drop(relay);
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(2), client.read(&mut b))
            .await
            .expect("the peer sees the close at once");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
}
