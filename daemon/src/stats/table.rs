//! The stick-table API, JSON over HTTP, used by `tether table` and by scripts:
//!
//! | request | effect |
//! |---|---|
//! | `GET <base>/table/BACKEND?table=KIND&server=S&offset=N&limit=N` | list entries, paged, by key |
//! | `GET <base>/table/BACKEND/HEXKEY` | show one entry |
//! | `PUT <base>/table/BACKEND/HEXKEY?server=S` | point the key at a server |
//! | `DELETE <base>/table/BACKEND/HEXKEY` | clear one key |
//! | `DELETE <base>/table/BACKEND` | clear the whole table |
//!
//! `table` picks the table of a backend with several (session-id, ticket, psk, rule); without it
//! the first one is used. Changes are admin actions.

use serde_json::{json, Value};
use tether_core::engine::backend::Backend;
use tether_core::engine::peers::{origin_label, PeersView};
use tether_core::engine::runtime::Runtime;
use tether_core::engine::tables::SharedTable;
use tether_core::stick::{Learn, StickEntry};
use tether_core::Timestamp;

use super::auth::AdminDecision;
use super::server::{Request, Response};

/// Most entries one list page returns.
pub const MAX_PAGE: usize = 10_000;
/// Entries per page when the client does not say.
pub const DEFAULT_PAGE: usize = 100;

/// Serves `rest` (the path after `table/`).
pub fn handle(
    runtime: &Runtime,
    peers: Option<&PeersView>,
    now: Timestamp,
    req: &Request,
    rest: &str,
    admin: AdminDecision,
) -> Response {
    let mut parts = rest.trim_matches('/').splitn(2, '/');
    let backend_name = parts.next().unwrap_or("");
    let key = parts.next();
    if backend_name.is_empty() {
        let names: Vec<&String> = runtime.backends.keys().collect();
        return Response::json(200, &json!({ "backends": names }));
    }
    let Some(backend) = runtime.backends.get(backend_name) else {
        return error(404, format!("no backend named {backend_name:?}"));
    };
    let table = match pick_table(backend, req.param("table")) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let mutating = matches!(req.method.as_str(), "PUT" | "POST" | "DELETE");
    if mutating && admin != AdminDecision::Allowed {
        return error(403, admin.explain().to_string());
    }
    let kind = table.kind().key().as_str();
    let entry = |e: &StickEntry| entry(backend, table, peers, e, now);
    match (req.method.as_str(), key) {
        ("GET", None) => list(backend, table, &entry, now, req),
        ("DELETE", None) => {
            let n = table.len();
            table.clear();
            tracing::info!(backend = %backend.name, table = kind, entries = n, "stick table cleared");
            Response::json(
                200,
                &json!({ "backend": backend.name, "table": kind, "cleared": n }),
            )
        }
        (method, Some(hex)) => {
            let Some(raw) = decode_hex(hex) else {
                return error(400, format!("key {hex:?} is not hexadecimal"));
            };
            if raw.is_empty() || raw.len() > tether_core::stick::MAX_KEY_LEN {
                return error(400, "a key is 1 to 64 bytes".to_string());
            }
            match method {
                "GET" => match table.get(&raw, now) {
                    Some(e) => Response::json(200, &entry(&e)),
                    None => error(404, format!("key {hex} is not in the {kind} table")),
                },
                "DELETE" => match table.remove(&raw) {
                    Some(s) => {
                        tracing::info!(backend = %backend.name, table = kind, key = %hex, "stick entry cleared");
                        Response::json(
                            200,
                            &json!({ "backend": backend.name, "table": kind, "removed": true,
                                     "server": server_name(backend, s) }),
                        )
                    }
                    None => error(404, format!("key {hex} is not in the {kind} table")),
                },
                "PUT" | "POST" => {
                    let form = req.form();
                    let Some(name) = form.iter().find(|(k, _)| k == "server").map(|(_, v)| v)
                    else {
                        return error(400, "say which server: ?server=NAME".to_string());
                    };
                    let Some(id) = backend.server_id(name) else {
                        return error(
                            404,
                            format!("backend {} has no server named {name:?}", backend.name),
                        );
                    };
                    let result = match table.set(&raw, id, now) {
                        Learn::Inserted { .. } => "inserted",
                        Learn::Updated { .. } => "updated",
                        Learn::Refreshed => "refreshed",
                        Learn::Refused => {
                            return error(409, format!("the {kind} table is full (nopurge)"))
                        }
                    };
                    tracing::info!(backend = %backend.name, table = kind, key = %hex, server = %name, "stick entry set");
                    match table.get(&raw, now) {
                        Some(e) => {
                            let mut v = entry(&e);
                            v["result"] = json!(result);
                            Response::json(200, &v)
                        }
                        None => error(500, "the entry vanished right after being set".to_string()),
                    }
                }
                _ => error(405, format!("{method} is not served here")),
            }
        }
        (method, None) => error(405, format!("{method} is not served here")),
    }
}

fn pick_table<'a>(backend: &'a Backend, wanted: Option<&str>) -> Result<&'a SharedTable, Response> {
    let mut tables = backend.tables.iter();
    let found = match wanted {
        Some(w) => tables.find(|t| t.kind().key().as_str() == w),
        None => tables.next(),
    };
    found.map(|t| &**t).ok_or_else(|| {
        let kinds: Vec<&str> = backend
            .tables
            .iter()
            .map(|t| t.kind().key().as_str())
            .collect();
        if kinds.is_empty() {
            error(
                404,
                format!(
                    "backend {} keeps no stick table (its affinity uses none)",
                    backend.name
                ),
            )
        } else {
            error(
                404,
                format!(
                    "backend {} has no {:?} table; it has: {}",
                    backend.name,
                    wanted.unwrap_or(""),
                    kinds.join(", ")
                ),
            )
        }
    })
}

fn list(
    backend: &Backend,
    table: &SharedTable,
    entry: &dyn Fn(&StickEntry) -> Value,
    now: Timestamp,
    req: &Request,
) -> Response {
    let server = match req.param("server") {
        Some(name) => match backend.server_id(name) {
            Some(id) => Some(id),
            None => {
                return error(
                    404,
                    format!("backend {} has no server named {name:?}", backend.name),
                )
            }
        },
        None => None,
    };
    let parse = |k: &str, default: usize| -> Result<usize, Response> {
        match req.param(k) {
            Some(v) => v
                .parse()
                .map_err(|_| error(400, format!("{k} must be a number"))),
            None => Ok(default),
        }
    };
    let offset = match parse("offset", 0) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let limit = match parse("limit", DEFAULT_PAGE) {
        Ok(v) => v.min(MAX_PAGE),
        Err(r) => return r,
    };
    let kind = table.kind().key().as_str();
    let all: Vec<StickEntry> = table
        .entries(now)
        .into_iter()
        .filter(|e| server.is_none_or(|s| e.server == s))
        .collect();
    let page: Vec<Value> = all.iter().skip(offset).take(limit).map(entry).collect();
    Response::json(
        200,
        &json!({
            "backend": backend.name,
            "table": kind,
            "total": all.len(),
            "offset": offset,
            "limit": limit,
            "entries": page,
        }),
    )
}

fn server_name(backend: &Backend, id: tether_core::ServerId) -> String {
    backend
        .servers
        .get(id.index())
        .map(|s| s.name.to_string())
        .unwrap_or_else(|| format!("#{}", id.0))
}

/// One entry; `origin` says where it came from (see [`origin_label`]), null when unknown.
fn entry(
    backend: &Backend,
    table: &SharedTable,
    peers: Option<&PeersView>,
    e: &StickEntry,
    now: Timestamp,
) -> Value {
    json!({
        "table": table.kind().key().as_str(),
        "key": e.key.to_string(),
        "server": server_name(backend, e.server),
        "expires_in_ms": e.expires_at.0.saturating_sub(now.0),
        "origin": origin_label(table, e.key.as_bytes(), peers),
    })
}

fn error(status: u16, message: String) -> Response {
    Response::json(status, &json!({ "error": message }))
}

/// Decodes a hex string (even length, any case); `None` otherwise.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    b.chunks(2)
        .map(|p| {
            let h = char::from(p[0]).to_digit(16)?;
            let l = char::from(p[1]).to_digit(16)?;
            Some((h * 16 + l) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hex_decoding() {
        assert_eq!(decode_hex("00aBff").unwrap(), [0, 0xab, 0xff]);
        assert!(decode_hex("abc").is_none());
        assert!(decode_hex("zz").is_none());
    }

    proptest! {
        #[test]
        fn hex_round_trips(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            prop_assert_eq!(decode_hex(&hex).unwrap(), data);
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,70}") {
            let _ = decode_hex(&s);
        }
    }
}
