//! The agent check loop (`agent-check`): every `agent-inter` the server's agent is asked for
//! its line, and the words are applied to the server (weight, ready/drain/maint, up/down,
//! maxconn). An agent that cannot be reached changes nothing, as in HAProxy. The words are
//! read by the sans-IO [`agent`](crate::server::check::agent) module; this loop only runs the
//! probe over the [`Net`] with the health check's time rules.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep, Instant};

use super::backend::Backend;
use super::check_log::{status_part, Checked};
use super::health::{last, run_probe, transitioned, Timing};
use super::log::LogSink;
use super::net::Net;
use crate::server::check::agent;
use crate::ServerId;

/// Asks `server`'s agent until `shutdown` turns true (or its sender is gone). Does nothing for
/// a server without an agent.
pub async fn check_agent<N: Net>(
    net: N,
    backend: Arc<Backend>,
    server: ServerId,
    sink: Arc<dyn LogSink>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slot = &backend.servers[server.index()];
    let Some(agent) = slot.agent.clone() else {
        return;
    };
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            _ = sleep(agent.inter) => {}
        }
        if *shutdown.borrow() {
            return;
        }
        let t0 = Instant::now();
        let mut probe = agent.plan.probe();
        let timing = Timing {
            connect: match backend.timeouts.check {
                Some(_) => backend.timeouts.connect.min(agent.inter),
                None => agent.inter,
            },
            read: backend.timeouts.check,
            whole: agent.inter,
        };
        let Some(verdict) = run_probe(&net, slot, &mut probe, &agent.address, timing).await else {
            continue;
        };
        let duration = t0.elapsed();
        let effect = agent::judge(verdict, probe.received(), slot.initial_weight);
        *slot.last_agent.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(last(&effect.verdict, duration));
        apply(&backend, server, &effect, duration, &*sink);
    }
}

/// Applies an agent's answer and logs what it changed.
fn apply(
    backend: &Arc<Backend>,
    server: ServerId,
    effect: &agent::AgentEffect,
    took: Duration,
    sink: &dyn LogSink,
) {
    if effect.admin.is_some() || effect.weight.is_some() || effect.maxconn.is_some() {
        tracing::info!(
            target: "tether::health",
            backend = %backend.name,
            server = %backend.servers[server.index()].name,
            admin = ?effect.admin,
            weight = ?effect.weight,
            maxconn = ?effect.maxconn,
            "agent answer applied"
        );
    }
    if let Some(t) = backend.agent_result(server, effect) {
        let checked = Checked {
            verdict: &effect.verdict,
            duration_ms: took.as_millis(),
        };
        transitioned(backend, server, t, &status_part(&checked), sink);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config;
    use crate::engine::runtime::build;
    use crate::engine::testnet::{quiet, MemNet};
    use crate::server::{AdminState, OperState, ServerState};

    /// Backend `app`: `s1` (weight 10) with an agent on port 5555 asked every 1 s (`hello\n`
    /// first), and `s2`, neither health-checked.
    fn backend() -> Arc<Backend> {
        let text = "[[frontend]]\nname = \"fe\"\nbind = [\"127.0.0.1:8000\"]\nbackend = \"app\"\n\
             [[backend]]\nname = \"app\"\n\
             [[backend.server]]\nname = \"s1\"\naddress = \"10.0.0.1:80\"\nweight = 10\ncheck = false\n\
             agent = { port = 5555, inter = \"1s\", send = \"hello\\n\" }\n\
             [[backend.server]]\nname = \"s2\"\naddress = \"10.0.0.2:80\"\ncheck = false\n";
        let config = config::load_toml("test.toml", text).expect("test config loads");
        build(&config, None).unwrap().backends["app"].clone()
    }

    /// An agent on 10.0.0.1:5555 that answers the current `line` once it has read the request.
    async fn agent(net: &MemNet, line: Arc<Mutex<&'static str>>) -> Arc<Mutex<Vec<u8>>> {
        let listener = net.bind("10.0.0.1:5555").await.unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (net, got) = (net.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = net.accept(&listener).await {
                let mut buf = vec![0u8; 64];
                let n = s.read(&mut buf).await.unwrap_or(0);
                *got.lock().unwrap() = buf[..n].to_vec();
                let answer = *line.lock().unwrap();
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        seen
    }

    fn s1(be: &Backend) -> ServerState {
        be.server_states()[0].clone()
    }

    #[tokio::test(start_paused = true)]
    async fn agent_words_drive_weight_admin_and_health_and_silence_changes_nothing() {
        let net = MemNet::default();
        let line = Arc::new(Mutex::new("drain\n"));
        let seen = agent(&net, line.clone()).await;
        let be = backend();
        let (_stop, rx) = watch::channel(false);
        tokio::spawn(check_agent(
            net.clone(),
            be.clone(),
            ServerId(0),
            quiet(),
            rx,
        ));
        let step = |answer: &'static str| {
            *line.lock().unwrap() = answer;
            sleep(Duration::from_secs(1))
        };
        sleep(Duration::from_millis(1100)).await;
        assert_eq!(seen.lock().unwrap().as_slice(), b"hello\n");
        assert_eq!(s1(&be).admin, AdminState::Drain);
        assert_eq!(s1(&be).effective_weight(), 0);
        let last = be.servers[0].last_agent.lock().unwrap().clone().unwrap();
        assert_eq!(last.status, "CHECKED");
        step("ready 50%\n").await;
        assert_eq!(
            (s1(&be).admin, s1(&be).effective_weight()),
            (AdminState::Ready, 5)
        );
        step("down #disk full\n").await;
        assert_eq!(s1(&be).oper, OperState::Down);
        let last = be.servers[0].last_agent.lock().unwrap().clone().unwrap();
        assert_eq!(
            (last.status, last.info.as_deref()),
            ("L7STS", Some("via agent : down (disk full)"))
        );
        assert_eq!(
            be.servers[0]
                .counters
                .check_downs
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        // A silent or unreachable agent changes nothing.
        step("").await;
        assert_eq!(s1(&be).oper, OperState::Down);
        net.blackhole("10.0.0.1:5555", true);
        sleep(Duration::from_secs(3)).await;
        assert_eq!(s1(&be).oper, OperState::Down);
        net.blackhole("10.0.0.1:5555", false);
        *line.lock().unwrap() = "up maxconn:7\n";
        sleep(Duration::from_millis(2500)).await;
        assert_eq!((s1(&be).oper, s1(&be).maxconn), (OperState::Up, 7));
        step("maint\n").await;
        assert_eq!(s1(&be).admin, AdminState::Maint);
        assert_eq!(
            be.server_states()[1].admin,
            AdminState::Ready,
            "s2 untouched"
        );
    }
}
