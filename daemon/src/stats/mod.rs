//! The stats and admin listener: the HTML page, HAProxy's CSV (`<uri>;csv`), JSON (`<uri>;json`),
//! Prometheus metrics (`/metrics`), admin actions (POST to `<uri>`) and the stick-table API
//! (`<base>/table/...`), over a small HTTP/1.1 server (HTTPS with `[stats.tls]`), with optional
//! Basic authentication; admin posts must come from the page itself ([`csrf`]), and slow clients
//! cannot hold every connection ([`slots`]).
//!
//! It reads the runtime through a [`DaemonView`], so after a reload it shows (and acts on) the new
//! configuration while keeping its own socket.

pub mod admin;
pub mod auth;
pub mod csrf;
pub mod csv;
pub mod html;
pub mod json;
pub mod metrics;
pub mod peers;
pub mod server;
pub mod slots;
pub mod snapshot;
pub mod table;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use tether_core::config::Stats;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::run::DaemonView;
use admin::AdminRequest;
use auth::{admin_decision, Credentials};
use csrf::AdminToken;
use server::{percent_encode, Request, Response, StallBudget};
use slots::{ConnectionSlots, Slot};

/// Most stats connections open at once; a newcomer evicts the oldest one still waiting for its
/// request.
const MAX_CONNECTIONS: usize = 64;

/// The running stats listener. Dropping it stops the listener.
#[derive(Debug)]
pub struct StatsListener {
    addr: SocketAddr,
    task: JoinHandle<()>,
    /// The listening socket, for handing over to a successor process (an upgrade).
    socket: std::os::fd::OwnedFd,
}

impl StatsListener {
    /// Where it listens (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A copy of the listening socket, for a successor process to accept on.
    pub fn socket(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        self.socket.try_clone()
    }
}

impl Drop for StatsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `config.bind`, loads the credentials, and serves in a background task until the
/// returned listener is dropped. Fails at once when the address cannot be bound or the password
/// cannot be read, so a misconfiguration stops the daemon at startup.
pub async fn serve_stats(config: Stats, view: DaemonView) -> Result<StatsListener> {
    let credentials = config.auth.as_ref().map(Credentials::load).transpose()?;
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let token =
        AdminToken::generate().context("stats: reading /dev/urandom for the admin token")?;
    let role = crate::upgrade::inherited::Role::Stats;
    let socket = match crate::upgrade::inherited::take_tcp(role, &config.bind) {
        Some(inherited) => TcpListener::from_std(inherited)?,
        None => TcpListener::bind(&config.bind)
            .await
            .with_context(|| format!("stats: cannot bind {}", config.bind))?,
    };
    let addr = socket.local_addr()?;
    let handover = std::os::fd::AsFd::as_fd(&socket).try_clone_to_owned()?;
    if config.admin && credentials.is_none() && !config.admin_without_auth {
        tracing::warn!(%addr, "stats admin actions are refused: no auth (set admin-without-auth = true to open them anyway)");
    }
    if config.cleartext_auth_off_loopback() {
        tracing::warn!(%addr, "stats Basic auth over plain HTTP off loopback: the password crosses the network in clear; add [stats.tls]");
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, uri = %config.uri, scheme, "stats listening");
    let site = Arc::new(Site {
        config,
        view,
        credentials,
        scheme,
        token,
        stalls: StallBudget::default(),
    });
    let task = tokio::spawn(accept_loop(socket, site, tls));
    Ok(StatsListener {
        addr,
        task,
        socket: handover,
    })
}

async fn accept_loop(socket: TcpListener, site: Arc<Site>, tls: Option<TlsAcceptor>) {
    let slots = ConnectionSlots::new(MAX_CONNECTIONS);
    loop {
        let (stream, client) = match socket.accept().await {
            Ok((s, peer)) => (s, peer.ip()),
            Err(e) => {
                tracing::warn!("stats accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Full of requests being answered: close the newcomer (it may retry at once).
        let Some(slot) = slots.admit() else {
            continue;
        };
        let (site, tls) = (site.clone(), tls.clone());
        tokio::spawn(async move {
            let state = slot.state.clone();
            tokio::select! {
                biased;
                _ = state.evicted() => {}
                _ = connection(stream, client, &site, tls, &slot) => {}
            }
        });
    }
}

/// One stats connection from `client`: the TLS handshake when configured (bounded by the
/// request deadline), then HTTP requests.
async fn connection(
    stream: TcpStream,
    client: IpAddr,
    site: &Site,
    tls: Option<TlsAcceptor>,
    slot: &Slot,
) {
    match tls {
        None => serve_http(stream, client, site, slot).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(server::REQUEST_DEADLINE, acceptor.accept(stream)).await;
            if let Ok(Ok(tls_stream)) = handshake {
                serve_http(tls_stream, client, site, slot).await;
            }
        }
    }
}

async fn serve_http<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    client: IpAddr,
    site: &Site,
    slot: &Slot,
) {
    server::serve_connection(
        stream,
        |req| site.handle(req, client),
        |answering| slot.state.set_answering(answering),
        &site.stalls,
    )
    .await;
}

/// The `monitor-uri` answer, HAProxy's own words.
const MONITOR_OK: &str = "<html><body><h1>200 OK</h1>\nService ready.\n</body></html>\n";

/// The answer when `monitor fail` holds: HAProxy's 503 error page.
const MONITOR_FAIL: &str = "<html><body><h1>503 Service Unavailable</h1>\nNo server is available \
     to handle this request.\n</body></html>\n";

/// Everything a request handler reads.
struct Site {
    config: Stats,
    view: DaemonView,
    credentials: Option<Credentials>,
    /// `http` or `https`: the origin admin posts must come from.
    scheme: &'static str,
    token: AdminToken,
    /// What responses stalled on their readers may hold, listener-wide.
    stalls: StallBudget,
}

/// What a path under the stats URI asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Page { status: Option<&'a str> },
    Csv,
    Json,
    Metrics,
    Table(&'a str),
    NotFound,
}

fn route<'a>(uri: &str, path: &'a str) -> Route<'a> {
    let base = uri.trim_end_matches('/');
    if path == "/metrics" || path == format!("{base}/metrics") {
        return Route::Metrics;
    }
    if let Some(rest) = path.strip_prefix(&format!("{base}/table")) {
        if rest.is_empty() || rest.starts_with('/') {
            return Route::Table(rest.trim_start_matches('/'));
        }
    }
    let (page, options) = match path.split_once(';') {
        Some((p, o)) => (p, o),
        None => (path, ""),
    };
    if page.trim_end_matches('/') != base {
        return Route::NotFound;
    }
    let mut status = None;
    for o in options.split(';') {
        match o {
            "csv" => return Route::Csv,
            "json" => return Route::Json,
            o if o.starts_with("st=") => status = Some(&o[3..]),
            _ => {}
        }
    }
    Route::Page { status }
}

impl Site {
    /// The `monitor-uri` answer: 503 when a `monitor fail` condition holds, else 200.
    fn monitor(&self) -> Response {
        let runtime = self.view.runtime();
        let fails = self.config.monitor_fail.iter().any(|m| {
            // A reload may have removed the backend: no servers left to count.
            let nbsrv = runtime.backends.get(&m.backend).map_or(0, |b| b.nbsrv());
            m.fails(nbsrv)
        });
        let (status, body) = if fails {
            (503, MONITOR_FAIL)
        } else {
            (200, MONITOR_OK)
        };
        Response::new(status, "text/html", body).with_header("Cache-Control", "no-cache")
    }

    fn handle(&self, req: &Request, client: IpAddr) -> Response {
        if self.config.monitor_uri.as_deref() == Some(req.path.as_str()) {
            // As HAProxy: before authentication, whatever the method.
            return self.monitor();
        }
        let authenticated = match &self.credentials {
            Some(c) => {
                if !c.accepts(req.header("authorization")) {
                    return Response::text(401, "authentication required")
                        .with_header("WWW-Authenticate", "Basic realm=\"tether stats\"");
                }
                true
            }
            None => false,
        };
        let admin = admin_decision(
            self.config.admin_for(client),
            authenticated,
            self.config.admin_without_auth,
        );
        let mutating = !matches!(req.method.as_str(), "GET" | "HEAD");
        if mutating {
            if let Err(forged) = csrf::check(req, self.scheme, &self.token) {
                tracing::warn!(method = %req.method, path = %req.path, origin = ?req.header("origin"), "stats: {forged}");
                return Response::text(403, forged.to_string());
            }
        }
        let runtime = self.view.runtime();
        let snap = || {
            snapshot::take(
                &runtime,
                self.view.context().actconn.load(Ordering::Relaxed),
            )
        };
        let peers = || peers::Peers::take(&self.view);
        let version = (!self.config.hide_version).then_some(env!("CARGO_PKG_VERSION"));
        let read_only = matches!(req.method.as_str(), "GET" | "HEAD");
        match route(&self.config.uri, &req.path) {
            Route::Metrics if read_only => {
                let threads = metrics::threads(&self.view.context().accepted_by_thread);
                let text = metrics::render(&snap()) + &threads + &peers().metrics();
                Response::new(200, metrics::CONTENT_TYPE, text)
            }
            Route::Csv if read_only => {
                Response::new(200, "text/csv; charset=utf-8", csv::render(&snap()))
            }
            Route::Json if read_only => {
                let mut v = json::render(&snap(), version);
                v["peers"] = peers().json();
                Response::json(200, &v)
            }
            Route::Table(rest) => {
                let now = self.view.context().clock.now();
                table::handle(&runtime, self.view.peers(), now, req, rest, admin)
            }
            Route::Page { status } if read_only => {
                let page = peers().into_page(html::render(
                    &snap(),
                    &html::PageOptions {
                        uri: &self.config.uri,
                        refresh: self.config.refresh,
                        version,
                        admin: admin == auth::AdminDecision::Allowed,
                        token: self.token.as_str(),
                        status,
                    },
                ));
                let mut resp = Response::new(200, "text/html; charset=utf-8", page);
                if let Some(r) = self.config.refresh {
                    resp = resp.with_header("Refresh", r.as_secs().max(1).to_string());
                }
                resp
            }
            Route::Page { .. } if req.method == "POST" => self.admin_post(req, admin, &runtime),
            Route::NotFound => Response::text(404, format!("nothing at {}", req.path)),
            _ => Response::text(405, format!("{} is not served at {}", req.method, req.path)),
        }
    }

    fn admin_post(
        &self,
        req: &Request,
        admin: auth::AdminDecision,
        runtime: &tether_core::engine::runtime::Runtime,
    ) -> Response {
        if admin != auth::AdminDecision::Allowed {
            return Response::text(403, admin.explain());
        }
        let outcome = AdminRequest::from_form(&req.form()).and_then(|a| a.apply(runtime));
        let status = match &outcome {
            Ok(n) => format!("DONE: {n} server(s) updated"),
            Err(e) => format!("ERROR: {e}"),
        };
        let page = self.config.uri.clone();
        let location = format!("{page};st={}", percent_encode(&status));
        let code = if outcome.is_ok() { 303 } else { 400 };
        if code == 400 {
            return Response::text(400, status);
        }
        Response::text(code, status).with_header("Location", location)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_haproxy_style_paths() {
        assert_eq!(route("/", "/"), Route::Page { status: None });
        assert_eq!(route("/", "/;csv"), Route::Csv);
        assert_eq!(route("/", "/;csv;norefresh"), Route::Csv);
        assert_eq!(route("/", "/;json"), Route::Json);
        assert_eq!(
            route("/", "/;st=DONE"),
            Route::Page {
                status: Some("DONE")
            }
        );
        assert_eq!(route("/", "/metrics"), Route::Metrics);
        assert_eq!(route("/", "/table/app/00"), Route::Table("app/00"));
        assert_eq!(route("/", "/tablex"), Route::NotFound);
        assert_eq!(route("/stats", "/stats"), Route::Page { status: None });
        assert_eq!(route("/stats", "/stats;csv"), Route::Csv);
        assert_eq!(route("/stats", "/stats/table/app"), Route::Table("app"));
        assert_eq!(route("/stats", "/metrics"), Route::Metrics);
        assert_eq!(route("/stats", "/other"), Route::NotFound);
    }
}
