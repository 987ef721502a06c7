//! Accepting connections: global and per-frontend `maxconn` pause accepting (as HAProxy's
//! listeners do) instead of rejecting; each connection runs the flow in its own task.

use std::sync::{Arc, RwLock};

use tokio::sync::{watch, Semaphore};

use super::flow::{handle, Context};
use super::frontend::Frontend;
use super::net::Net;

/// A frontend that can be swapped under a running listener (reload keeps the socket).
pub type FrontendHandle = Arc<RwLock<Arc<Frontend>>>;

/// A bound listener and the frontend it serves.
pub struct Listener<N: Net> {
    /// The bound socket.
    pub socket: N::Listener,
    /// The frontend (swappable).
    pub frontend: FrontendHandle,
}

/// Accepts until `shutdown` turns true or its sender is dropped. `global` holds one permit per connection the process may
/// have open; when none is left, accepting pauses until a connection ends.
pub async fn serve<N: Net>(
    ctx: Arc<Context<N>>,
    listener: Listener<N>,
    global: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let fe_limit = {
        let fe = read(&listener.frontend);
        fe.maxconn.map(|n| Arc::new(Semaphore::new(n)))
    };
    loop {
        let permit = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            p = global.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let fe_permit = match &fe_limit {
            None => None,
            Some(sem) => tokio::select! {
                biased;
                _ = stopped(&mut shutdown) => break,
                p = sem.clone().acquire_owned() => p.ok(),
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            r = ctx.net.accept(&listener.socket) => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let fe = read(&listener.frontend);
        fe.accepted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            // The flow's state machine is ~2 KiB: boxed, the task itself stays small, so
            // spawning and the scheduler's stage updates copy a pointer instead of the flow.
            Box::pin(handle(&ctx, &fe, stream, peer)).await;
            drop(fe_permit);
            drop(permit);
        });
    }
}

/// Resolves once `rx` says stop, or once nobody can say it any more (the owner is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn read(h: &FrontendHandle) -> Arc<Frontend> {
    h.read().unwrap_or_else(|e| e.into_inner()).clone()
}
