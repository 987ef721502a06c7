//! Descriptor exhaustion (issue 17 §0.2): the daemon runs under `prlimit --nofile=64:64` with
//! far more idle clients than it has descriptors. The accept loop must pause instead of
//! spinning (a bounded number of `accept failed` lines, little CPU), the server must stay UP
//! (a local `EMFILE` is never the server's fault, for live connects and health checks alike),
//! and once the clients leave a new client is served.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout, Instant};

/// Idle clients held open: well above the 64 descriptors the daemon may use.
const IDLE_CLIENTS: usize = 150;
/// How long the exhaustion lasts while lines and CPU are counted.
const HELD: Duration = Duration::from_secs(4);

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An echo server: every connection gets its bytes back until it closes.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Sends a line through the balancer and expects it back.
async fn echoed(front: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect(front).await.map_err(|e| e.to_string())?;
    s.write_all(b"ping\n").await.map_err(|e| e.to_string())?;
    let mut got = [0u8; 5];
    match timeout(Duration::from_secs(3), s.read_exact(&mut got)).await {
        Ok(Ok(_)) if &got == b"ping\n" => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

fn spawn_daemon(dir: &Path, front: SocketAddr, server: SocketAddr) -> Daemon {
    let config = format!(
        "[global]\nmaxconn = 1000\n\
         [[frontend]]\nname = \"main\"\nbind = [\"{front}\"]\nbackend = \"app\"\n\
         inspect-delay = \"1s\"\n\
         [[backend]]\nname = \"app\"\naffinity = [\"session-id\"]\ntimeout-connect = \"1s\"\n\
         [backend.check]\ninter = \"100ms\"\nrise = 1\nfall = 2\n\
         [[backend.server]]\nname = \"s1\"\naddress = \"{server}\"\n"
    );
    let path = dir.join("tether.toml");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(dir.join("tether.log")).unwrap();
    let child = Command::new("prlimit")
        .args(["--nofile=64:64", "--"])
        .arg(env!("CARGO_BIN_EXE_tether"))
        .args(["run", "-c"])
        .arg(&path)
        .env("TETHER_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("prlimit not runnable ({e}): install it with `apt-get install -y util-linux`")
        });
    Daemon(child)
}

#[tokio::test]
async fn out_of_descriptors_pauses_accepting_then_recovers_and_blames_no_server() {
    let dir = std::env::temp_dir().join(format!("tether-fd-exhaustion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let read_log = || std::fs::read_to_string(dir.join("tether.log")).unwrap_or_default();
    let server = echo_server().await;
    let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut daemon = spawn_daemon(&dir, front, server);
    let give_up = Instant::now() + Duration::from_secs(10);
    while echoed(front).await.is_err() {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            panic!("tether exited ({status}): {}", read_log());
        }
        assert!(Instant::now() < give_up, "never served: {}", read_log());
        sleep(Duration::from_millis(50)).await;
    }
    assert!(
        read_log().contains("needs about"),
        "no warning that maxconn 1000 needs more than 64 descriptors: {}",
        read_log()
    );

    let mut idle = Vec::new();
    for _ in 0..IDLE_CLIENTS {
        idle.push(TcpStream::connect(front).await.unwrap());
    }
    let pid = daemon.0.id();
    let cpu_before = cpu_ticks(pid);
    let started = Instant::now();
    sleep(HELD).await;
    let cpu = cpu_ticks(pid) - cpu_before;
    let wall = started.elapsed().as_secs_f64();
    let text = read_log();
    let accept_lines = text.matches("accept failed").count();
    assert!(
        accept_lines >= 1,
        "descriptors never ran out: the test proves nothing\n{text}"
    );
    // One line per 5 s interval per listener, plus the first: 4 s of exhaustion, at most 2
    // (the listener flaps between full and free as inspect timeouts close clients).
    assert!(
        accept_lines <= 2,
        "{accept_lines} accept-failure lines in {wall:.1} s: one per loop turn?"
    );
    let share = cpu as f64 / clock_ticks_per_second() as f64 / wall;
    eprintln!(
        "{IDLE_CLIENTS} idle clients, 64 descriptors: {accept_lines} accept-failure line(s) in \
         {wall:.1} s, daemon CPU {:.1}% of a core",
        share * 100.0
    );
    assert!(
        share < 0.3,
        "the daemon used {:.0}% of a core while out of descriptors: spinning?",
        share * 100.0
    );

    drop(idle);
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut last = Ok(());
    while Instant::now() < give_up {
        last = echoed(front).await;
        if last.is_ok() {
            break;
        }
        sleep(Duration::from_millis(100)).await;
    }
    let text = read_log();
    assert!(
        last.is_ok(),
        "no client served after descriptors freed: {last:?}\n{text}"
    );
    for blame in ["is DOWN", "marked down", "SC "] {
        assert!(
            !text.contains(blame),
            "server blamed for a local error ({blame:?}):\n{text}"
        );
    }
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
