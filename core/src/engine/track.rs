//! `track`: a server that does no checks of its own follows another server's state (in its
//! backend or another). The tracked server publishes its operational state at every change;
//! this loop applies it to the tracker, whose own changes are published in turn, so chains
//! follow too. Validation refuses loops and unchecked tracked servers.

use std::sync::Arc;

use tokio::sync::watch;

use super::backend::{Backend, Tracked};
use super::health::transitioned;
use super::log::LogSink;
use crate::ServerId;

/// Makes `server` follow `tracked` (a backend and one of its servers) until `shutdown` turns
/// true (a reload restarts the loop). It waits on the tracked server's `state_changed`, which
/// wakes several trackers of one server in the order they began waiting, so a simulation
/// replays exactly.
pub async fn follow_track(
    backend: Arc<Backend>,
    server: ServerId,
    tracked: (Arc<Backend>, ServerId),
    sink: Arc<dyn LogSink>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slot = &tracked.0.servers[tracked.1.index()];
    let mut seen: Option<Tracked> = None;
    loop {
        let changed = slot.state_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let state = slot.published();
        if seen != Some(state) {
            seen = Some(state);
            if let Some(t) = backend.track_result(server, state) {
                // HAProxy names the tracked server: `Server app/s2 is DOWN via app/s1. ...`.
                let via = (backend.servers[server.index()].track.as_ref())
                    .map_or(String::new(), |(b, s)| format!(" via {b}/{s}"));
                transitioned(&backend, server, t, &via, &*sink);
            }
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = changed => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config;
    use crate::engine::health::check_server;
    use crate::engine::runtime::build;
    use crate::engine::testnet::{quiet, MemNet};
    use crate::server::OperState;

    #[tokio::test(start_paused = true)]
    async fn a_tracker_follows_the_tracked_servers_checks_along_a_chain() {
        let text = "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:8000\"]\nbackend = \"app\"\n\
             [[backend]]\nname = \"app\"\n[backend.check]\ninter = \"1s\"\nrise = 1\nfall = 1\n\
             [[backend.server]]\nname = \"s1\"\naddress = \"10.0.0.1:80\"\n\
             [[backend.server]]\nname = \"s2\"\naddress = \"10.0.0.2:80\"\ncheck = false\ntrack = \"s1\"\n\
             [[backend]]\nname = \"other\"\n\
             [[backend.server]]\nname = \"t\"\naddress = \"10.0.0.3:80\"\ncheck = false\ntrack = \"app/s2\"\n";
        let config = config::load_toml("test.toml", text).expect("test config loads");
        let rt = build(&config, None).unwrap();
        let (app, other) = (rt.backends["app"].clone(), rt.backends["other"].clone());
        let net = MemNet::default();
        let server = net.server("10.0.0.1:80", "s1").await;
        let (_stop, rx) = watch::channel(false);
        tokio::spawn(check_server(
            net.clone(),
            app.clone(),
            ServerId(0),
            quiet(),
            rx.clone(),
        ));
        let watch_of = |b: &Arc<Backend>, i: u32| (b.clone(), ServerId(i));
        tokio::spawn(follow_track(
            app.clone(),
            ServerId(1),
            watch_of(&app, 0),
            quiet(),
            rx.clone(),
        ));
        tokio::spawn(follow_track(
            other.clone(),
            ServerId(0),
            watch_of(&app, 1),
            quiet(),
            rx,
        ));
        let opers = || (app.server_states()[1].oper, other.server_states()[0].oper);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(opers(), (OperState::Up, OperState::Up));
        server.abort();
        let _ = server.await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(app.server_states()[0].oper, OperState::Down);
        assert_eq!(opers(), (OperState::Down, OperState::Down));
        let _server = net.server("10.0.0.1:80", "s1").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(opers(), (OperState::Up, OperState::Up));
    }
}
