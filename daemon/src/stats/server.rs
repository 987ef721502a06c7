//! A small HTTP/1.1 server for the stats listener: request line, headers and an optional
//! `Content-Length` body, every part bounded, keep-alive with an idle timeout, and a whole-request
//! deadline (HAProxy's `timeout http-request`): a client dribbling a byte at a time cannot hold a
//! connection past [`REQUEST_DEADLINE`] however often it sends. Responses are bounded the same
//! way: a client that asks for a large page and never reads it is cut at [`RESPONSE_DEADLINE`],
//! and stops counting as "answering" (so a newcomer may take its place) after [`STALLED_AFTER`].
//!
//! The stats page is read by browsers, `curl`, Prometheus and `tether table`; none of them needs
//! more than this, and a hand-sized parser keeps hostile input bounded without a new dependency.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Largest request head (request line plus headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body (admin forms and table API calls are tiny).
pub const MAX_BODY: usize = 64 * 1024;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;
/// Requests served on one connection before it is closed.
const MAX_REQUESTS_PER_CONNECTION: usize = 100;
/// How long a connection may sit idle between two reads.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a whole request (head and body) may take from its first wait, however the bytes
/// trickle in; a keep-alive connection waiting for its next request is closed after it too.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How long one response may take to go out, however slowly the client reads it (HAProxy's
/// `timeout client` while writing).
pub const RESPONSE_DEADLINE: Duration = Duration::from_secs(10);
/// A response still being written after this long is stalled on its reader: the connection no
/// longer counts as answering, so a newcomer to a full listener may evict it.
pub const STALLED_AFTER: Duration = Duration::from_secs(1);
/// Most bytes the responses stalled on their readers may hold at once on one listener (each
/// holds its whole rendered page): past it, a response that stalls is cut at once instead of at
/// [`RESPONSE_DEADLINE`], so clients that never read cannot pin a page copy each.
pub const STALL_BUDGET: usize = 16 << 20;

/// The bytes held by stalled responses on one listener, bounded by a limit; shared by its
/// connections.
#[derive(Debug, Clone)]
pub struct StallBudget {
    held: Arc<AtomicUsize>,
    limit: usize,
}

impl Default for StallBudget {
    fn default() -> Self {
        StallBudget::new(STALL_BUDGET)
    }
}

impl StallBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        StallBudget {
            held: Arc::default(),
            limit,
        }
    }

    /// Holds `bytes` for a stalled response, or `None` when that would pass the limit (the first
    /// stalled response is always let through, however large: a lone slow reader keeps its
    /// page).
    fn hold(&self, bytes: usize) -> Option<StallHold> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held == 0 || held.saturating_add(bytes) <= self.limit).then(|| held + bytes)
            })
            .ok()?;
        Some(StallHold {
            budget: self.clone(),
            bytes,
        })
    }
}

/// Bytes held in a [`StallBudget`] until the stalled response ends.
struct StallHold {
    budget: StallBudget,
    bytes: usize,
}

impl Drop for StallHold {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// One parsed request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, percent-decoded, without the query string.
    pub path: String,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Headers with lower-case names, in order.
    pub headers: Vec<(String, String)>,
    /// The body (empty without `Content-Length`).
    pub body: Vec<u8>,
    /// Whether the client asked to keep the connection open.
    pub keep_alive: bool,
}

impl Request {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Form fields from an `application/x-www-form-urlencoded` body, then the query string.
    pub fn form(&self) -> Vec<(String, String)> {
        let mut fields = parse_urlencoded(&String::from_utf8_lossy(&self.body));
        fields.extend(self.query.iter().cloned());
        fields
    }
}

/// Why a request could not be read; each maps to a status code or a silent close.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The client closed before sending a complete request (or between requests).
    #[error("connection closed")]
    Closed,
    /// The request was malformed.
    #[error("bad request: {0}")]
    Bad(&'static str),
    /// The head or body exceeded its bound.
    #[error("request too large")]
    TooLarge,
    /// The client was too slow.
    #[error("timed out")]
    Timeout,
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A plain-text response, for errors.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        let mut b = body.into();
        if !b.ends_with('\n') {
            b.push('\n');
        }
        Self::new(status, "text/plain; charset=utf-8", b)
    }

    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Self::new(status, "application/json", body)
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Serves requests on one connection until it closes, errs, times out or asks to close.
/// `answering` is told when a whole request has arrived (`true`) and when its response is out
/// (`false`): a connection between the two is never evicted. A response that stalls holds its
/// bytes in `budget` until it ends, or is cut when the budget is spent.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    handler: impl Fn(&Request) -> Response,
    answering: impl Fn(bool),
    budget: &StallBudget,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let deadline = Instant::now() + REQUEST_DEADLINE;
        let req = match read_request(&mut stream, &mut buf, deadline).await {
            Ok(r) => r,
            Err(RequestError::Closed | RequestError::Io(_)) => return,
            Err(e) => {
                let status = match e {
                    RequestError::TooLarge => 413,
                    RequestError::Timeout => 408,
                    _ => 400,
                };
                let _ = write_response(&mut stream, &Response::text(status, e.to_string()), false)
                    .await;
                return;
            }
        };
        answering(true);
        let resp = handler(&req);
        let written = write_bounded(&mut stream, &resp, req.keep_alive, &answering, budget).await;
        answering(false);
        if written.is_err() || !req.keep_alive {
            return;
        }
    }
}

/// Writes `resp` within [`RESPONSE_DEADLINE`], telling `answering` the connection is no longer
/// answering once the write has taken [`STALLED_AFTER`] (a reader that stopped reading), and
/// cutting it then if `budget` cannot hold it.
async fn write_bounded<S: AsyncWrite + Unpin>(
    stream: &mut S,
    resp: &Response,
    keep_alive: bool,
    answering: &impl Fn(bool),
    budget: &StallBudget,
) -> io::Result<()> {
    let write = write_response(stream, resp, keep_alive);
    tokio::pin!(write);
    if let Ok(done) = tokio::time::timeout(STALLED_AFTER, &mut write).await {
        return done;
    }
    answering(false);
    let Some(_hold) = budget.hold(resp.body.len()) else {
        return Err(io::Error::other("stalled responses hold the whole budget"));
    };
    let rest = RESPONSE_DEADLINE.saturating_sub(STALLED_AFTER);
    tokio::time::timeout(rest, write)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    resp: &Response,
    keep_alive: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    for (k, v) in &resp.headers {
        // Header values are built by this module's callers; strip line breaks all the same.
        let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&resp.body).await?;
    stream.flush().await
}

/// Reads one request by `deadline`; `buf` carries bytes read past the previous request
/// (pipelining).
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Request, RequestError> {
    let head_end = loop {
        if let Some(i) = find_head_end(buf) {
            break i;
        }
        if buf.len() >= MAX_HEAD {
            return Err(RequestError::TooLarge);
        }
        read_more(stream, buf, MAX_HEAD, deadline).await?;
    };
    let (mut req, body_len) = parse_head(&buf[..head_end])?;
    let body_start = head_end + 4;
    while buf.len() < body_start + body_len {
        read_more(stream, buf, body_start + body_len, deadline).await?;
    }
    req.body = buf[body_start..body_start + body_len].to_vec();
    buf.drain(..body_start + body_len);
    Ok(req)
}

async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    limit: usize,
    deadline: Instant,
) -> Result<(), RequestError> {
    let mut chunk = [0u8; 4096];
    let want = limit.saturating_sub(buf.len()).clamp(1, chunk.len());
    let until = deadline.min(Instant::now() + IDLE_TIMEOUT);
    let n = tokio::time::timeout_at(until, stream.read(&mut chunk[..want]))
        .await
        .map_err(|_| {
            if buf.is_empty() {
                RequestError::Closed
            } else {
                RequestError::Timeout
            }
        })??;
    if n == 0 {
        return Err(RequestError::Closed);
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Parses a request head (without the final blank line); returns the request and its body length.
pub fn parse_head(head: &[u8]) -> Result<(Request, usize), RequestError> {
    let text = std::str::from_utf8(head).map_err(|_| RequestError::Bad("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let line = lines.next().ok_or(RequestError::Bad("empty request"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Bad(
            "request line must be METHOD TARGET VERSION",
        ));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(RequestError::Bad("bad method"));
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(RequestError::Bad("only HTTP/1.0 and HTTP/1.1 are served")),
    };
    if !target.starts_with('/') {
        return Err(RequestError::Bad("target must be an absolute path"));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, parse_urlencoded(q)),
        None => (target, Vec::new()),
    };
    let mut headers = Vec::new();
    for l in lines {
        if headers.len() == MAX_HEADERS {
            return Err(RequestError::TooLarge);
        }
        let (k, v) = l
            .split_once(':')
            .ok_or(RequestError::Bad("header without a colon"))?;
        if k.is_empty() || k.contains(' ') {
            return Err(RequestError::Bad("bad header name"));
        }
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        path: percent_decode(path, false),
        query,
        headers,
        body: Vec::new(),
        keep_alive: false,
    };
    if req.header("transfer-encoding").is_some() {
        return Err(RequestError::Bad("chunked bodies are not accepted"));
    }
    let body_len = match req.header("content-length") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| RequestError::Bad("bad Content-Length"))?,
        None => 0,
    };
    if body_len > MAX_BODY {
        return Err(RequestError::TooLarge);
    }
    let connection = req.header("connection").map(str::to_ascii_lowercase);
    req.keep_alive = match connection.as_deref() {
        Some(c) if c.contains("close") => false,
        Some(c) if c.contains("keep-alive") => true,
        _ => http11,
    };
    Ok((req, body_len))
}

/// Splits `a=1&b=2` into decoded pairs (`+` is a space).
pub fn parse_urlencoded(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` when `plus_is_space`); invalid escapes stay as written.
pub fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a value for a query string or form.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_request_with_query_and_body_length() {
        let (r, n) = parse_head(
            b"POST /stats?a=1&b=x%20y HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nConnection: close",
        )
        .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/stats");
        assert_eq!(r.param("b"), Some("x y"));
        assert_eq!(r.header("host"), Some("h"));
        assert_eq!(n, 12);
        assert!(!r.keep_alive);
    }

    #[test]
    fn http11_keeps_alive_by_default_and_http10_does_not() {
        assert!(parse_head(b"GET / HTTP/1.1").unwrap().0.keep_alive);
        assert!(!parse_head(b"GET / HTTP/1.0").unwrap().0.keep_alive);
    }

    #[test]
    fn refuses_oversized_bodies_chunked_and_bad_lines() {
        assert!(matches!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 9999999"),
            Err(RequestError::TooLarge)
        ));
        assert!(parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked").is_err());
        assert!(parse_head(b"GET /  HTTP/1.1").is_err());
        assert!(parse_head(b"GET http://x/ HTTP/1.1").is_err());
        assert!(parse_head(b"GET / HTTP/2").is_err());
    }

    #[test]
    fn decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("a%2Fb%zz%", false), "a/b%zz%");
        assert_eq!(percent_decode("a+b", true), "a b");
        assert_eq!(percent_decode(&percent_encode("s 1/é&="), true), "s 1/é&=");
    }

    /// A client that sends one header byte every 2 s, as slowloris does.
    async fn trickle(mut w: tokio::io::WriteHalf<tokio::io::DuplexStream>) {
        for b in b"GET /;csv HTTP/1.1\r\nHost: x\r\n".iter().cycle() {
            if w.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_request_ends_at_the_whole_request_deadline() {
        let (client, server) = tokio::io::duplex(1024);
        let (mut client_r, client_w) = tokio::io::split(client);
        tokio::spawn(trickle(client_w));
        let start = Instant::now();
        serve_connection(
            server,
            |_| Response::text(200, "ok"),
            |_| {},
            &StallBudget::default(),
        )
        .await;
        let took = start.elapsed();
        assert!(
            took <= REQUEST_DEADLINE + Duration::from_secs(2),
            "a client sending a byte every 2 s held the connection {took:?}"
        );
        let mut answer = String::new();
        client_r.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_inside_the_deadline_are_served_and_announced() {
        let (mut client, server) = tokio::io::duplex(4096);
        let seen = std::sync::Mutex::new(Vec::new());
        let budget = StallBudget::default();
        let serve = serve_connection(
            server,
            |r| Response::text(200, r.path.clone()),
            |a| seen.lock().unwrap().push(a),
            &budget,
        );
        let talk = async {
            client
                .write_all(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = String::new();
            client.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let ((), answer) = tokio::join!(serve, talk);
        assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
        assert_eq!(*seen.lock().unwrap(), [true, false, true, false]);
    }

    /// A client that asks for `body` bytes and reads nothing; resolves when the server ends the
    /// connection, with the time it took.
    async fn unread(budget: StallBudget, body: usize) -> Duration {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let start = Instant::now();
        let page = move |_: &Request| Response::text(200, "x".repeat(body));
        serve_connection(server, page, |_| {}, &budget).await;
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_responses_past_the_budget_are_cut_at_the_stall() {
        let budget = StallBudget::new(100_000);
        let first = tokio::spawn(unread(budget.clone(), 60_000));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let second = unread(budget.clone(), 60_000).await;
        assert!(
            second < STALLED_AFTER + Duration::from_millis(100),
            "the second stalled page fits no budget but lived {second:?}"
        );
        let first = first.await.unwrap();
        assert!(
            first >= RESPONSE_DEADLINE,
            "the first stalled page is held to the deadline, cut at {first:?}"
        );
        assert_eq!(
            budget.held.load(Ordering::Acquire),
            0,
            "every hold released"
        );
        let third = unread(budget, 60_000).await;
        assert!(third >= RESPONSE_DEADLINE, "the freed budget holds again");
    }

    proptest! {
        #[test]
        fn arbitrary_heads_never_panic(head in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_head(&head);
        }

        #[test]
        fn encode_then_decode_is_identity(s in ".{0,40}") {
            prop_assert_eq!(percent_decode(&percent_encode(&s), true), s);
        }
    }
}
