//! Accepting connections: global and per-frontend `maxconn` pause accepting (as HAProxy's
//! listeners do) instead of rejecting; each connection runs the flow in its own task. A failing
//! `accept` (out of descriptors) pauses the listener too ([`backoff`]), never spins.

pub mod backoff;

use std::sync::{Arc, RwLock};

use tokio::sync::{watch, Semaphore};

use self::backoff::AcceptBackoff;
use super::flow::{handle, Context};
use super::frontend::Frontend;
use super::net::Net;

/// A frontend that can be swapped under a running listener (reload keeps the socket).
pub type FrontendHandle = Arc<RwLock<Arc<Frontend>>>;

/// A bound listener and the frontend it serves.
pub struct Listener<N: Net> {
    /// The bound socket (shared with the [`Process`](super::Process) that owns it, which can
    /// hand it over to a successor process).
    pub socket: Arc<N::Listener>,
    /// The frontend (swappable).
    pub frontend: FrontendHandle,
    /// Which of the process's accepting threads serves this socket (0: the process's own).
    pub thread: usize,
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
    let mut failures = AcceptBackoff::default();
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
                drop((permit, fe_permit));
                let pause = accept_failed(&listener, &mut failures, &e);
                tokio::select! {
                    biased;
                    _ = stopped(&mut shutdown) => break,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        if let Some(failed) = failures.on_success() {
            let fe = read(&listener.frontend);
            tracing::info!(frontend = %fe.name, failed, "accepting again");
        }
        let fe = read(&listener.frontend);
        fe.accepted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(n) = ctx.accepted_by_thread.get(listener.thread) {
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
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

/// Notes a failed accept, logs it if a line is due, and returns how long to pause.
fn accept_failed<N: Net>(
    listener: &Listener<N>,
    failures: &mut AcceptBackoff,
    e: &std::io::Error,
) -> std::time::Duration {
    let exhausted = crate::retry::local_exhaustion(e);
    let step = failures.on_failure(tokio::time::Instant::now(), exhausted);
    if let Some(suppressed) = step.log {
        let fe = read(&listener.frontend);
        tracing::warn!(
            frontend = %fe.name,
            error = %e,
            pause_ms = step.pause.as_millis() as u64,
            suppressed,
            "accept failed; listener paused (suppressed: failures since the last such line)"
        );
    }
    step.pause
}

/// Resolves once `rx` says stop, or once nobody can say it any more (the owner is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn read(h: &FrontendHandle) -> Arc<Frontend> {
    h.read().unwrap_or_else(|e| e.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;
    use crate::config;
    use crate::engine::log::{ConnectionRecord, LogSink};
    use crate::engine::runtime::build;
    use crate::engine::testnet::MemNet;

    struct Quiet;

    impl LogSink for Quiet {
        fn record(&self, _: &ConnectionRecord) {}
    }

    /// A listener on 127.0.0.1:8000 for a frontend with `maxconn`, to server s1 at 10.0.0.1:80.
    async fn listener(net: &MemNet, maxconn: u32) -> (Listener<MemNet>, Arc<Frontend>) {
        let text = format!(
            "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:8000\"]\nbackend = \"app\"\n\
             maxconn = {maxconn}\n\
             [[backend]]\nname = \"app\"\n\
             [[backend.server]]\nname = \"s1\"\naddress = \"10.0.0.1:80\"\ncheck = false\n"
        );
        let config = config::load_toml("test.toml", &text).expect("test config loads");
        let fe = build(&config, None).unwrap().frontends[0].clone();
        let socket = net.bind(&fe.bind).await.unwrap();
        let frontend = Arc::new(RwLock::new(fe.clone()));
        (
            Listener {
                socket: Arc::new(socket),
                frontend,
                thread: 0,
            },
            fe,
        )
    }

    async fn greeting(s: &mut DuplexStream) -> Option<String> {
        let mut buf = [0u8; 16];
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }

    async fn open(net: &MemNet) -> DuplexStream {
        let mut s = net
            .connect("127.0.0.1:8000")
            .await
            .expect("listener answers");
        s.write_all(b"x").await.unwrap();
        s
    }

    #[tokio::test(start_paused = true)]
    async fn frontend_maxconn_pauses_accepting() {
        let net = MemNet::default();
        let _s1 = net.server("10.0.0.1:80", "s1").await;
        let (l, fe) = listener(&net, 1).await;
        let ctx = Arc::new(Context::new(net.clone(), Arc::new(Quiet)));
        let (_stop, rx) = watch::channel(false);
        tokio::spawn(serve(ctx, l, Arc::new(Semaphore::new(100)), rx));
        let mut first = open(&net).await;
        assert_eq!(greeting(&mut first).await.as_deref(), Some("s1"));
        let mut second = open(&net).await;
        assert_eq!(
            greeting(&mut second).await,
            None,
            "accepted above the frontend's maxconn"
        );
        assert_eq!(fe.accepted.load(Ordering::Relaxed), 1);
        drop(first);
        assert_eq!(greeting(&mut second).await.as_deref(), Some("s1"));
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_accepting_and_frees_the_address() {
        let net = MemNet::default();
        let (l, _) = listener(&net, 10).await;
        let ctx = Arc::new(Context::new(net.clone(), Arc::new(Quiet)));
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(serve(ctx, l, Arc::new(Semaphore::new(100)), rx));
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("serve ignored the stop")
            .unwrap();
        assert!(
            net.connect("127.0.0.1:8000").await.is_err(),
            "socket still open"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_stop_signal_ends_accepting() {
        let net = MemNet::default();
        let (l, _) = listener(&net, 10).await;
        let ctx = Arc::new(Context::new(net.clone(), Arc::new(Quiet)));
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(serve(ctx, l, Arc::new(Semaphore::new(100)), rx));
        drop(stop);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("serve outlived its owner")
            .unwrap();
    }
}
