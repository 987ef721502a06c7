//! Stick-table commands: `show table [NAME [FILTER]]` and `clear table NAME [key HEX]`.
//!
//! A backend's first table is named after the backend (as HAProxy names a backend's table);
//! every table also answers to `BACKEND.KIND` (`app.session-id`, `app.ticket`). Keys are binary,
//! written in hex (HAProxy 2.6 cannot address binary keys at all).

use std::fmt::Write as _;

use tether_core::engine::backend::Backend;
use tether_core::engine::peers::origin_label;
use tether_core::engine::tables::SharedTable;

use super::command::TableFilter;
use super::Ctx;
use crate::stats::table::decode_hex;

/// Every table with its runtime API name.
fn named<'a>(ctx: &Ctx<'a>) -> Vec<(String, &'a Backend, &'a SharedTable)> {
    let mut out = Vec::new();
    for b in ctx.runtime.backends.values() {
        for (i, t) in b.tables.iter().enumerate() {
            let name = if i == 0 {
                b.name.to_string()
            } else {
                format!("{}.{}", b.name, t.kind().key().as_str())
            };
            out.push((name, &**b, &**t));
        }
    }
    out
}

fn find<'a>(ctx: &Ctx<'a>, name: &str) -> Option<(String, &'a Backend, &'a SharedTable)> {
    let all = named(ctx);
    let by_kind = |(_, b, t): &(String, &Backend, &SharedTable)| {
        format!("{}.{}", b.name, t.kind().key().as_str()) == name
    };
    let pos = all
        .iter()
        .position(|(n, _, _)| n == name)
        .or_else(|| all.iter().position(by_kind))?;
    all.into_iter().nth(pos)
}

fn header(name: &str, t: &SharedTable) -> String {
    let s = t.stats();
    format!(
        "# table: {name}, type: binary, size:{}, used:{}\n",
        s.capacity, s.entries
    )
}

/// `show table [NAME [FILTER]]`.
pub fn show(ctx: &Ctx, name: Option<&str>, filter: Option<TableFilter>) -> String {
    let Some(name) = name else {
        return named(ctx).iter().map(|(n, _, t)| header(n, t)).collect();
    };
    let Some((name, backend, table)) = find(ctx, name) else {
        return "No such table\n".into();
    };
    let key = match filter {
        Some(TableFilter::Key(hex)) => match decode_hex(hex) {
            Some(k) if !k.is_empty() => Some(k),
            _ => return "Unable to parse key.\n".into(),
        },
        _ => None,
    };
    let mut out = header(&name, table);
    for (i, e) in table.entries(ctx.now).iter().enumerate() {
        let sid = backend.number(e.server);
        let keep = match filter {
            Some(TableFilter::ServerId(op, v)) => op.holds(sid, v),
            Some(TableFilter::Key(_)) => key.as_deref() == Some(e.key.as_bytes()),
            None => true,
        };
        if !keep {
            continue;
        }
        let server = backend
            .servers
            .get(e.server.index())
            .map_or("-", |s| &*s.name);
        let origin = origin_label(table, e.key.as_bytes(), ctx.peers);
        let _ = writeln!(
            out,
            "{:#x}: key={} use=0 exp={} server_id={sid} server_key={server} origin={}",
            i + 1,
            e.key.to_string().to_ascii_uppercase(),
            e.expires_at.0.saturating_sub(ctx.now.0),
            origin.as_deref().unwrap_or("-"),
        );
    }
    out
}

/// `clear table NAME [key HEX]`: empty on success, as HAProxy answers.
pub fn clear(ctx: &Ctx, name: &str, key: Option<&str>) -> String {
    let Some((name, _, table)) = find(ctx, name) else {
        return "No such table\n".into();
    };
    match key {
        None => {
            let n = table.len();
            table.clear();
            tracing::info!(table = %name, entries = n, "stick table cleared from the runtime API");
        }
        Some(hex) => match decode_hex(hex) {
            Some(k) if !k.is_empty() && k.len() <= tether_core::stick::MAX_KEY_LEN => {
                if table.remove(&k).is_some() {
                    tracing::info!(table = %name, key = %hex, "stick entry cleared from the runtime API");
                }
            }
            _ => return "Unable to parse key.\n".into(),
        },
    }
    String::new()
}
