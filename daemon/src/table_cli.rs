//! `tether table`: list, show, set and clear stick-table entries of a running daemon, through its
//! stats listener's table API (see [`crate::stats::table`]).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats::auth::basic_authorization;
use crate::stats::server::percent_encode;

/// Largest response the client reads.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// `tether table` arguments.
#[derive(Args, Debug, Clone)]
pub struct TableArgs {
    /// The stats listener: `http://HOST:PORT/URI` (or `HOST:PORT`).
    #[arg(long, default_value = "http://127.0.0.1:1936/")]
    pub stats: String,
    /// User for Basic authentication.
    #[arg(long)]
    pub user: Option<String>,
    /// Environment variable holding the password.
    #[arg(long, default_value = "TETHER_STATS_PASSWORD")]
    pub password_env: String,
    /// File whose first line is the password (instead of the environment variable).
    #[arg(long)]
    pub password_file: Option<String>,
    /// Print the JSON the daemon answered.
    #[arg(long)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: TableCommand,
}

/// A table operation.
#[derive(Subcommand, Debug, Clone)]
pub enum TableCommand {
    /// List entries, sorted by key.
    List {
        /// Backend name.
        backend: String,
        /// Table kind (session-id, ticket, psk, rule); default: the backend's first table.
        #[arg(long)]
        table: Option<String>,
        /// Only entries pointing at this server.
        #[arg(long)]
        server: Option<String>,
        /// Skip this many entries.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one key.
    Show {
        /// Backend name.
        backend: String,
        /// The key in hex.
        key: String,
        /// Table kind.
        #[arg(long)]
        table: Option<String>,
    },
    /// Point a key at a server.
    Set {
        /// Backend name.
        backend: String,
        /// The key in hex.
        key: String,
        /// Server name.
        server: String,
        /// Table kind.
        #[arg(long)]
        table: Option<String>,
    },
    /// Remove one key.
    Clear {
        /// Backend name.
        backend: String,
        /// The key in hex.
        key: String,
        /// Table kind.
        #[arg(long)]
        table: Option<String>,
    },
    /// Remove every entry of a table.
    ClearAll {
        /// Backend name.
        backend: String,
        /// Table kind.
        #[arg(long)]
        table: Option<String>,
    },
}

/// Where the stats listener is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    host_port: String,
    base: String,
}

fn parse_endpoint(url: &str) -> Result<Endpoint> {
    if let Some(rest) = url.strip_prefix("https://") {
        bail!("the stats listener speaks plain HTTP; use http://{rest}");
    }
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host_port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host_port.is_empty() {
        bail!("--stats {url:?}: say HOST:PORT, e.g. http://127.0.0.1:1936/");
    }
    let host_port = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:80")
    };
    Ok(Endpoint {
        host_port,
        base: path.trim_end_matches('/').to_string(),
    })
}

/// Runs one table command; exit status 0 on success, 1 when the daemon refused or found nothing.
pub async fn run(args: TableArgs) -> Result<ExitCode> {
    let endpoint = parse_endpoint(&args.stats)?;
    let auth = match &args.user {
        Some(user) => {
            let password = match &args.password_file {
                Some(f) => std::fs::read_to_string(f)
                    .with_context(|| format!("reading --password-file {f}"))?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
                None => std::env::var(&args.password_env).with_context(|| {
                    format!("--user given: set the password in ${}", args.password_env)
                })?,
            };
            Some(basic_authorization(user, &password))
        }
        None => None,
    };
    let enc = |s: &str| percent_encode(s);
    let with_table = |mut q: Vec<String>, t: &Option<String>| {
        if let Some(t) = t {
            q.push(format!("table={}", enc(t)));
        }
        q
    };
    let (method, path, query) = match &args.command {
        TableCommand::List {
            backend,
            table,
            server,
            offset,
            limit,
        } => {
            let mut q = vec![format!("offset={offset}"), format!("limit={limit}")];
            if let Some(s) = server {
                q.push(format!("server={}", enc(s)));
            }
            (
                "GET",
                format!("/table/{}", enc(backend)),
                with_table(q, table),
            )
        }
        TableCommand::Show {
            backend,
            key,
            table,
        } => (
            "GET",
            format!("/table/{}/{}", enc(backend), enc(key)),
            with_table(vec![], table),
        ),
        TableCommand::Set {
            backend,
            key,
            server,
            table,
        } => (
            "PUT",
            format!("/table/{}/{}", enc(backend), enc(key)),
            with_table(vec![format!("server={}", enc(server))], table),
        ),
        TableCommand::Clear {
            backend,
            key,
            table,
        } => (
            "DELETE",
            format!("/table/{}/{}", enc(backend), enc(key)),
            with_table(vec![], table),
        ),
        TableCommand::ClearAll { backend, table } => (
            "DELETE",
            format!("/table/{}", enc(backend)),
            with_table(vec![], table),
        ),
    };
    let mut target = format!("{}{path}", endpoint.base);
    if !query.is_empty() {
        target.push('?');
        target.push_str(&query.join("&"));
    }
    let (status, body) = request(&endpoint.host_port, method, &target, auth.as_deref()).await?;
    let value: Value = serde_json::from_slice(&body).unwrap_or_else(
        |_| serde_json::json!({ "error": String::from_utf8_lossy(&body).trim().to_string() }),
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    }
    if !(200..300).contains(&status) {
        let msg = value["error"].as_str().unwrap_or("request refused");
        eprintln!("tether table: HTTP {status}: {msg}");
        return Ok(ExitCode::FAILURE);
    }
    if !args.json {
        print_human(&args.command, &value);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_human(command: &TableCommand, v: &Value) {
    let line = |e: &Value| {
        format!(
            "{} {} expires-in={}s from={}",
            e["key"].as_str().unwrap_or("?"),
            e["server"].as_str().unwrap_or("?"),
            e["expires_in_ms"].as_u64().unwrap_or(0) / 1000,
            e["origin"].as_str().unwrap_or("-")
        )
    };
    match command {
        TableCommand::List { .. } => {
            for e in v["entries"].as_array().into_iter().flatten() {
                println!("{}", line(e));
            }
            println!(
                "# {} table of {}: {} entries shown of {}",
                v["table"].as_str().unwrap_or("?"),
                v["backend"].as_str().unwrap_or("?"),
                v["entries"].as_array().map_or(0, Vec::len),
                v["total"]
            );
        }
        TableCommand::Show { .. } => println!("{}", line(v)),
        TableCommand::Set { .. } => println!(
            "{} -> {} ({})",
            v["key"].as_str().unwrap_or("?"),
            v["server"].as_str().unwrap_or("?"),
            v["result"].as_str().unwrap_or("?")
        ),
        TableCommand::Clear { key, .. } => println!(
            "cleared {key} (was on {})",
            v["server"].as_str().unwrap_or("?")
        ),
        TableCommand::ClearAll { .. } => println!("cleared {} entries", v["cleared"]),
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body.
async fn request(
    host_port: &str,
    method: &str,
    target: &str,
    authorization: Option<&str>,
) -> Result<(u16, Vec<u8>)> {
    let exchange = async {
        let mut s = TcpStream::connect(host_port)
            .await
            .with_context(|| format!("connecting to the stats listener at {host_port}"))?;
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\nContent-Length: 0\r\n"
        );
        if let Some(a) = authorization {
            head.push_str(&format!("Authorization: {a}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).await?;
        let mut buf = Vec::new();
        (&mut s)
            .take(MAX_RESPONSE as u64)
            .read_to_end(&mut buf)
            .await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .context("the stats listener did not answer within 30 s")??;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .context("malformed HTTP status line")?;
    Ok((status, buf[end + 4..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = parse_endpoint("http://127.0.0.1:1936/").unwrap();
        assert_eq!(
            (e.host_port.as_str(), e.base.as_str()),
            ("127.0.0.1:1936", "")
        );
        let e = parse_endpoint("127.0.0.1:9/stats/").unwrap();
        assert_eq!(
            (e.host_port.as_str(), e.base.as_str()),
            ("127.0.0.1:9", "/stats")
        );
        assert!(parse_endpoint("https://x:1/").is_err());
        assert!(parse_endpoint("http:///").is_err());
    }
}
