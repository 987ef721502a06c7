//! The stats as JSON (`<uri>;json`): the same snapshot as the page, for scripts that would rather
//! not parse CSV.

use serde_json::{json, Value};

use super::snapshot::{ServerView, Snapshot};

/// Renders the snapshot; `version` is left out when the page hides it.
pub fn render(snap: &Snapshot, version: Option<&str>) -> Value {
    let frontends: Vec<Value> = snap
        .frontends
        .iter()
        .map(|f| {
            json!({
                "name": f.name,
                "binds": f.binds,
                "backend": f.backend,
                "current": f.current,
                "accepted": f.accepted,
            })
        })
        .collect();
    let backends: Vec<Value> = snap
        .backends
        .iter()
        .map(|b| {
            let outcomes: serde_json::Map<String, Value> = b
                .outcomes
                .iter()
                .map(|(o, n)| (o.label(), json!(n)))
                .collect();
            json!({
                "name": b.name,
                "status": b.status(),
                "nosrv": b.nosrv,
                "affinity": outcomes,
                "servers": b.servers.iter().map(server).collect::<Vec<_>>(),
                "tables": b.tables.iter().map(|t| json!({
                    "table": t.kind,
                    "entries": t.stats.entries,
                    "capacity": t.stats.capacity,
                    "occupancy": t.occupancy(),
                    "hits": t.stats.hits,
                    "misses": t.stats.misses,
                    "learned": t.stats.learned,
                    "sets": t.stats.sets,
                    "evicted": t.stats.evicted,
                    "expired": t.stats.expired,
                    "refused": t.stats.refused,
                    "removed": t.stats.removed,
                })).collect::<Vec<_>>(),
                "ticket_keys": b.ticket_keys.as_ref().map(|k| json!({
                    "servers": k.servers.iter().map(|(name, names, unnamed)| json!({
                        "server": name,
                        "names": names,
                        "unnamed": unnamed,
                    })).collect::<Vec<_>>(),
                    "shared": k.shared,
                })),
            })
        })
        .collect();
    let mut v = json!({
        "actconn": snap.actconn,
        "dropped_logs": crate::syslog::dropped(),
        "frontends": frontends,
        "backends": backends,
    });
    if let Some(version) = version {
        v["version"] = json!(version);
    }
    v
}

fn server(s: &ServerView) -> Value {
    json!({
        "name": s.name,
        "address": s.address,
        "status": s.status(),
        "admin": s.admin,
        "oper": s.oper,
        "check": s.check,
        "check_progress": [s.progress.0, s.progress.1],
        "weight": s.weight,
        "effective_weight": s.effective_weight,
        "backup": s.backup,
        "current": s.current,
        "max": s.max,
        "total": s.total,
        "bytes_in": s.bytes_in,
        "bytes_out": s.bytes_out,
        "connect_errors": s.connect_errors,
        "retries": s.retries,
        "redispatches": s.redispatches,
        "check_failures": s.check_failures,
        "check_downs": s.check_downs,
        "last_change_s": s.last_change_s,
        "last_check": s.last_check.as_ref().map(|c| serde_json::json!({
            "status": c.status,
            "code": c.code,
            "desc": c.desc,
            "duration_ms": c.duration_ms,
            "age_ms": c.age_ms,
            "info": c.info,
        })),
    })
}
