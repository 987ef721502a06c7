//! Health checks over TLS (`check-ssl`, `verify`, `ca-file`, `check-sni`, `verifyhost`) against
//! real TLS servers on loopback, side by side with HAProxy 2.6 on the same haproxy.cfg (issue 19):
//! the Kubernetes control-plane pattern, `option httpchk GET /healthz` with `check check-ssl
//! verify none`, and certificate verification against a `ca-file`.
//!
//! The servers: `openssl s_server -www` (answers any GET with 200 over TLS), an in-process rustls
//! server answering `/healthz` with a chosen status, and a plain TCP HTTP server (no TLS). Both
//! balancers must reach the same verdict on every server: the same UP/DOWN and the same check
//! status (`L7OK`, `L7STS`, `L6RSP`).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tether_testbed::{
    free_port, Haproxy, OpensslServer, OpensslServerConfig, ScratchDir, SelfSignedCert,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An HTTPS endpoint with `cert` answering `status` to every request (an API server's
/// `/healthz`).
async fn https_endpoint(cert: &SelfSignedCert, status: &'static str) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert_der.clone()], cert.key_der())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = vec![0u8; 2048];
                let _ = tls.read(&mut buf).await;
                let body =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = tls.write_all(body.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// An HTTP server in clear answering 200: what `check-ssl` meets on a server without TLS.
async fn plain_http() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    addr
}

/// Each server's (status, check status) on HAProxy's stats socket (`show stat`), e.g.
/// ("UP", "L7OK"); the check in progress marker `* ` is dropped.
async fn haproxy_verdicts(sock: &std::path::Path, backend: &str) -> Vec<(String, String, String)> {
    common::haproxy_server_stats(sock)
        .await
        .into_iter()
        .filter(|r| r.get("pxname").is_some_and(|p| p == backend))
        .map(|r| {
            let col = |c: &str| r.get(c).cloned().unwrap_or_default();
            let check = col("check_status").trim_start_matches("* ").to_string();
            (col("svname"), col("status"), check)
        })
        .collect()
}

/// Each server's (name, UP/DOWN, last check status) in tether.
fn tether_verdicts(t: &common::Running, backend: &str) -> Vec<(String, String, String)> {
    let rt = t.daemon.runtime();
    let be = &rt.backends[backend];
    let states = be.server_states();
    be.servers
        .iter()
        .zip(states)
        .map(|(slot, st)| {
            let up = st.oper == tether_core::server::OperState::Up;
            let last = slot.last_check.lock().unwrap().clone();
            (
                slot.name.to_string(),
                if up { "UP" } else { "DOWN" }.to_string(),
                last.map_or("", |l| l.status).to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn check_ssl_verdicts_match_haproxy_on_real_tls_servers() {
    let scratch = ScratchDir::create("check-ssl").unwrap();
    // The kubeadm pattern: openssl s_server answers the GET with 200 over TLS.
    let openssl = OpensslServer::start(OpensslServerConfig::new("cp-openssl"))
        .await
        .expect("openssl s_server runs (apt-get install -y openssl)");
    let openssl_ca = scratch.path().join("openssl-ca.pem");
    std::fs::write(&openssl_ca, openssl.cert_pem()).unwrap();
    // rustls API servers: one healthy, one answering 503; their certificate names the host.
    let api = SelfSignedCert::generate("api.internal").unwrap();
    let (api_ca, _) = api.write_pem(scratch.path()).unwrap();
    let healthy = https_endpoint(&api, "200 OK").await;
    let sick = https_endpoint(&api, "503 Service Unavailable").await;
    let plain = plain_http().await;
    let stranger = SelfSignedCert::generate("stranger").unwrap();
    let (wrong_ca, _) = stranger.write_pem(scratch.path()).unwrap();
    let (openssl_ca, api_ca, wrong_ca) = (
        openssl_ca.display().to_string(),
        api_ca.display().to_string(),
        wrong_ca.display().to_string(),
    );
    let o = openssl.addr();
    // (server line, the verdict both balancers must reach)
    let servers = [
        (format!("openssl {o} check check-ssl verify none"), ("UP", "L7OK")),
        (format!("healthy {healthy} check check-ssl verify none"), ("UP", "L7OK")),
        (format!("sick {sick} check check-ssl verify none"), ("DOWN", "L7STS")),
        (format!("plain {plain} check check-ssl verify none"), ("DOWN", "L6RSP")),
        (format!("ca-right {o} check check-ssl verify required ca-file {openssl_ca}"), ("UP", "L7OK")),
        (format!("ca-wrong {o} check check-ssl verify required ca-file {wrong_ca}"), ("DOWN", "L6RSP")),
        (format!("host-right {healthy} check check-ssl ca-file {api_ca} verifyhost api.internal"), ("UP", "L7OK")),
        (format!("host-wrong {healthy} check check-ssl ca-file {api_ca} verifyhost db.internal"), ("DOWN", "L6RSP")),
        (format!("sni-right {healthy} check check-ssl ca-file {api_ca} check-sni api.internal"), ("UP", "L7OK")),
        (format!("sni-wrong {healthy} check check-ssl ca-file {api_ca} check-sni db.internal verifyhost api.internal"), ("DOWN", "L6RSP")),
    ];
    let lines: String = servers
        .iter()
        .map(|(l, _)| format!("    server {l}\n"))
        .collect();
    let config = |global: &str, port: u16| {
        format!(
            "global\n{global}defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    \
             timeout server 5s\nfrontend apiserver\n    bind 127.0.0.1:{port}\n    \
             default_backend apiserver\nbackend apiserver\n    option httpchk GET /healthz\n    \
             http-check expect status 200\n    default-server inter 300ms rise 1 fall 1\n{lines}"
        )
    };
    // tether: imported as `tether check` and `run --haproxy` do, CA files read as `run` does.
    let tether_cfg = config("    maxconn 100\n", 0);
    let im = tether::haproxy::load::load("apiserver.cfg", &tether_cfg);
    assert!(!im.has_errors(), "{:#?}", im.findings);
    let t = common::start_config(&im.config).await;
    // HAProxy 2.6 on the same servers, its state read on its stats socket.
    let sock = scratch.path().join("haproxy.sock");
    let hport = free_port().unwrap();
    let haproxy_cfg = config(
        &format!(
            "    maxconn 100\n    stats socket {} level admin\n",
            sock.display()
        ),
        hport,
    );
    let haproxy = Haproxy::start(&haproxy_cfg, format!("127.0.0.1:{hport}").parse().unwrap())
        .await
        .expect("haproxy runs (apt-get install -y haproxy)");
    let want: Vec<(String, String, String)> = servers
        .iter()
        .map(|(l, (up, status))| {
            let name = l.split(' ').next().unwrap().to_string();
            (name, up.to_string(), status.to_string())
        })
        .collect();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(8);
    let (mut ours, mut theirs);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ours = tether_verdicts(&t, "apiserver");
        theirs = haproxy_verdicts(&sock, "apiserver").await;
        if (ours == want && theirs == want) || tokio::time::Instant::now() > give_up {
            break;
        }
    }
    assert_eq!(ours, want, "tether");
    assert_eq!(theirs, want, "haproxy:\n{}", haproxy.log());
    // The reason tether gives for a refused certificate names it.
    let rt = t.daemon.runtime();
    let info = rt.backends["apiserver"].servers[5]
        .last_check
        .lock()
        .unwrap()
        .clone()
        .and_then(|l| l.info)
        .unwrap_or_default();
    assert!(info.starts_with("SSL handshake failure"), "{info}");
}

/// `check-ssl` with HAProxy's default `verify required` and no `ca-file`: HAProxy refuses to
/// start, and `tether check` refuses the file on the server's line, saying how to fix it.
#[tokio::test]
async fn verify_required_without_ca_file_is_refused_like_haproxy() {
    let cfg = "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    \
               timeout server 5s\nfrontend f\n    bind 127.0.0.1:{PORT}\n    default_backend b\n\
               backend b\n    option httpchk GET /healthz\n    \
               server cp1 127.0.0.1:16443 check check-ssl\n";
    let im = tether::haproxy::load::load("k8s.cfg", &cfg.replace("{PORT}", "0"));
    let errors: Vec<_> = im
        .findings
        .iter()
        .filter(|f| f.severity == tether::finding::Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, 11);
    assert!(errors[0].fix.contains("verify none"), "{}", errors[0].fix);
    let scratch = ScratchDir::create("check-ssl-refused").unwrap();
    let path = scratch.path().join("haproxy.cfg");
    std::fs::write(
        &path,
        cfg.replace("{PORT}", &free_port().unwrap().to_string()),
    )
    .unwrap();
    let out = std::process::Command::new(Haproxy::program().expect("haproxy installed"))
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "haproxy accepted it:\n{text}");
    assert!(text.contains("no CA file specified"), "{text}");
}
