//! The stats listener attacked (issue 17 §0.3–§0.5) on a real daemon over loopback:
//! cross-site admin posts are refused and change nothing while the page's own form works; 70
//! clients trickling header bytes do not lock `/;csv` out; the page is served over real TLS
//! (native `[stats] tls`, and an imported `bind ... ssl crt FILE`) and never in clear there.

mod stats_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use stats_support::*;
use tether::stats::auth::basic_authorization;
use tether::stats::serve_stats;
use tether_core::config::{Stats, StatsTls};
use tether_core::server::AdminState;
use tether_testbed::{ScratchDir, SelfSignedCert};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};
use tokio_rustls::TlsConnector;

const PASSWORD_ENV: &str = "TETHER_STATS_HARDENING_PASSWORD";

/// A forged post: what it tries, its headers, its body.
type Forgery<'a> = (&'a str, Vec<(&'a str, &'a str)>, String);

fn admin_state(rig: &Rig, server: usize) -> AdminState {
    rig.daemon.runtime().backends["app"].server_states()[server].admin
}

/// The admin token the page renders into its forms.
async fn page_token(rig: &Rig, auth: &str) -> String {
    let page = http(
        rig.stats_addr(),
        "GET",
        "/",
        &[("Authorization", auth)],
        b"",
    )
    .await;
    let at = page
        .body
        .find("name=\"token\" value=\"")
        .expect("admin forms")
        + 20;
    page.body[at..at + 32].to_string()
}

#[tokio::test]
async fn cross_site_admin_posts_are_refused_and_the_pages_own_form_works() {
    std::env::set_var(PASSWORD_ENV, "pw");
    let rig = Rig::start(
        &["alpha"],
        &format!("admin = true\nauth = {{ user = \"ops\", password-env = \"{PASSWORD_ENV}\" }}"),
    )
    .await;
    let stats = rig.stats_addr();
    // The browser holds the operator's cached Basic credentials and sends them along.
    let auth = basic_authorization("ops", "pw");
    let token = page_token(&rig, &auth).await;
    let own = format!("http://{stats}");
    let form = "application/x-www-form-urlencoded";
    let maint = format!("b=app&s=alpha&action=maint&token={token}");
    let forged: [Forgery; 5] = [
        (
            "cross-origin",
            vec![("Origin", "http://evil.example"), ("Content-Type", form)],
            maint.clone(),
        ),
        (
            "Origin: null",
            vec![("Origin", "null"), ("Content-Type", form)],
            maint.clone(),
        ),
        (
            "text/plain body without token",
            vec![
                ("Origin", "http://evil.example"),
                ("Content-Type", "text/plain"),
            ],
            "b=app&s=alpha&action=maint".into(),
        ),
        (
            "same origin but no token",
            vec![("Origin", own.as_str()), ("Content-Type", "text/plain")],
            "b=app&s=alpha&action=maint".into(),
        ),
        (
            "neither Origin nor Referer",
            vec![("Content-Type", form)],
            maint.clone(),
        ),
    ];
    for (what, mut headers, body) in forged {
        headers.push(("Authorization", &auth));
        let r = http(stats, "POST", "/", &headers, body.as_bytes()).await;
        assert_eq!(r.status, 403, "{what}: {}", r.body);
        assert_eq!(
            admin_state(&rig, 0),
            AdminState::Ready,
            "{what} put alpha in maintenance"
        );
    }
    let r = http(
        stats,
        "POST",
        "/",
        &[
            ("Origin", &own),
            ("Content-Type", form),
            ("Authorization", &auth),
        ],
        maint.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 303, "the page's own form: {}", r.body);
    assert_eq!(admin_state(&rig, 0), AdminState::Maint);
}

/// Sends one byte of a request head every 2 s until the server closes.
async fn trickle(stats: SocketAddr) {
    let Ok(mut s) = TcpStream::connect(stats).await else {
        return;
    };
    for b in b"GET /;csv HTTP/1.1\r\nHost: x\r\nX-Slow: "
        .iter()
        .chain([b'a'; 1000].iter())
    {
        if s.write_all(&[*b]).await.is_err() {
            return;
        }
        sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn slow_clients_do_not_lock_the_stats_page_out() {
    let rig = Rig::start(&["alpha"], "").await;
    let stats = rig.stats_addr();
    let mut slow = Vec::new();
    for _ in 0..70 {
        slow.push(tokio::spawn(trickle(stats)));
    }
    // Let every slow client connect and start dribbling.
    sleep(Duration::from_millis(500)).await;
    for round in 0..3 {
        let started = Instant::now();
        let r = timeout(Duration::from_secs(5), rig.get("/;csv"))
            .await
            .unwrap_or_else(|_| panic!("round {round}: /;csv unreachable behind 70 slow clients"));
        assert_eq!(r.status, 200);
        assert!(r.body.contains("app,alpha,"), "{}", r.body);
        assert!(started.elapsed() < Duration::from_secs(5));
        sleep(Duration::from_millis(700)).await;
    }
    for t in slow {
        t.abort();
    }
}

fn client_config(cert: &SelfSignedCert) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.cert_der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// One GET over TLS, verifying the certificate for `localhost`; the status and body.
async fn https_get(stats: SocketAddr, cert: &SelfSignedCert, auth: Option<&str>) -> (u16, String) {
    let tcp = TcpStream::connect(stats).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = TlsConnector::from(client_config(cert))
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the stats listener");
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    tls.write_all(
        format!("GET /;csv HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    (status, text)
}

/// A plain-HTTP request to a TLS listener gets no HTTP answer.
async fn cleartext_refused(stats: SocketAddr) {
    let mut s = TcpStream::connect(stats).await.unwrap();
    s.write_all(b"GET /;csv HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(
        !String::from_utf8_lossy(&out).contains("HTTP/1.1 200"),
        "served in clear on a TLS listener"
    );
}

#[tokio::test]
async fn native_stats_tls_serves_https_only() {
    let dir = ScratchDir::create("stats-tls-native").unwrap();
    let cert = SelfSignedCert::generate("localhost").unwrap();
    let (crt, key) = cert.write_pem(dir.path()).unwrap();
    let rig = Rig::start(
        &["alpha"],
        &format!(
            "tls = {{ cert = \"{}\", key = \"{}\" }}",
            crt.display(),
            key.display()
        ),
    )
    .await;
    let (status, body) = https_get(rig.stats_addr(), &cert, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("app,alpha,"), "{body}");
    cleartext_refused(rig.stats_addr()).await;
}

#[tokio::test]
async fn imported_ssl_crt_serves_https_with_basic_auth() {
    let dir = ScratchDir::create("stats-tls-import").unwrap();
    let cert = SelfSignedCert::generate("localhost").unwrap();
    // HAProxy's `crt` file: the certificate and the key in one PEM.
    let pem = dir.path().join("stats.pem");
    std::fs::write(&pem, format!("{}{}", cert.cert_pem, cert.key_pem)).unwrap();
    let cfg = format!(
        "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
         frontend main\n  bind 127.0.0.1:0\n  default_backend app\n\
         backend app\n  server alpha 127.0.0.1:9\n\
         listen stats\n  mode http\n  bind 127.0.0.1:0 ssl crt {}\n  stats enable\n  \
         stats uri /\n  stats auth admin:secret\n",
        pem.display()
    );
    let im = tether::haproxy::load("haproxy.cfg", &cfg);
    assert!(!im.has_errors(), "{:?}", im.findings);
    let imported = im.config.stats.clone().unwrap();
    assert!(imported.tls.is_some(), "ssl crt dropped on import");
    let rig = Rig::start(&["alpha"], "").await;
    let listener = serve_stats(imported, rig.daemon.view()).await.unwrap();
    let stats = listener.local_addr();
    let (status, _) = https_get(stats, &cert, None).await;
    assert_eq!(status, 401, "credentials still required over TLS");
    let auth = basic_authorization("admin", "secret");
    let (status, body) = https_get(stats, &cert, Some(&auth)).await;
    assert_eq!(status, 200, "{body}");
    cleartext_refused(stats).await;
}

#[tokio::test]
async fn a_bad_certificate_file_stops_the_listener_with_its_name() {
    let dir = ScratchDir::create("stats-tls-bad").unwrap();
    let cert = SelfSignedCert::generate("localhost").unwrap();
    let only_cert = dir.path().join("only-cert.pem");
    std::fs::write(&only_cert, &cert.cert_pem).unwrap();
    let rig = Rig::start(&["alpha"], "").await;
    let mut stats = Stats {
        bind: "127.0.0.1:0".into(),
        uri: "/".into(),
        refresh: None,
        hide_version: false,
        admin: false,
        admin_from: Vec::new(),
        auth: None,
        tls: Some(StatsTls {
            cert: only_cert.display().to_string(),
            key: None,
        }),
        admin_without_auth: false,
        monitor_uri: None,
        monitor_fail: Vec::new(),
    };
    let e = serve_stats(stats.clone(), rig.daemon.view())
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("no private key in"), "{e:#}");
    stats.tls.as_mut().unwrap().cert = dir.path().join("missing.pem").display().to_string();
    let e = serve_stats(stats, rig.daemon.view()).await.unwrap_err();
    assert!(format!("{e:#}").contains("missing.pem"), "{e:#}");
}
