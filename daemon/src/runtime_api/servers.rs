//! Server commands: `set server B/S state|weight`, `enable|disable server`, `set|get weight`.
//! Changes go through the stats page's [`AdminRequest`], so both front doors act the same way.

use tether_core::server::MAX_WEIGHT;

use super::command::{ServerChange, Target, WeightSpec};
use super::Ctx;
use crate::stats::admin::{AdminAction, AdminError, AdminRequest};

/// Applies `change` to `target`; empty on success, as HAProxy answers.
pub fn set(ctx: &Ctx, target: Target, change: ServerChange) -> String {
    let action = match change {
        ServerChange::Ready => AdminAction::Ready,
        ServerChange::Drain => AdminAction::Drain,
        ServerChange::Maint => AdminAction::Maint,
        ServerChange::Weight(WeightSpec::Absolute(w)) => AdminAction::Weight(w),
        ServerChange::Weight(WeightSpec::Percent(p)) => {
            let initial = match slot_initial_weight(ctx, target) {
                Ok(w) => w,
                Err(e) => return e,
            };
            let w = u64::from(initial) * u64::from(p) / 100;
            AdminAction::Weight(w.min(u64::from(MAX_WEIGHT)) as u32)
        }
    };
    let request = AdminRequest {
        backend: target.backend.to_string(),
        servers: vec![target.server.to_string()],
        action,
    };
    match request.apply(ctx.runtime) {
        Ok(_) => String::new(),
        Err(e) => lookup_error(&e).to_string(),
    }
}

/// `get weight B/S`: "current (initial N)".
pub fn get_weight(ctx: &Ctx, target: Target) -> String {
    let initial = match slot_initial_weight(ctx, target) {
        Ok(w) => w,
        Err(e) => return e,
    };
    let backend = &ctx.runtime.backends[target.backend];
    let Some(id) = backend.server_id(target.server) else {
        return "No such server.\n".into();
    };
    let current = backend.state().servers[id.index()].weight;
    format!("{current} (initial {initial})\n")
}

fn slot_initial_weight(ctx: &Ctx, target: Target) -> Result<u32, String> {
    let backend = ctx
        .runtime
        .backends
        .get(target.backend)
        .ok_or_else(|| "No such backend.\n".to_string())?;
    let id = backend
        .server_id(target.server)
        .ok_or_else(|| "No such server.\n".to_string())?;
    Ok(backend.servers[id.index()].initial_weight)
}

fn lookup_error(e: &AdminError) -> &'static str {
    match e {
        AdminError::UnknownBackend(_) => "No such backend.\n",
        AdminError::UnknownServer { .. } => "No such server.\n",
        AdminError::BadForm(_) => "Invalid request.\n",
    }
}
