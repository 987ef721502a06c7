//! Shared by the runtime API tests: the stats rig plus runtime API sockets (one per level) in a
//! private temp directory, and the real clients run as child processes.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tether::runtime_api::{serve_runtime_api, RuntimeApiListener};
use tether_core::config::{AdminLevel, AdminSocket};

use crate::stats_support::Rig;

/// A temp directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tether-rtapi-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The stats rig with three runtime API sockets: `admin.sock`, `operator.sock`, `user.sock`.
pub struct ApiRig {
    pub rig: Rig,
    pub dir: TempDir,
    pub admin: RuntimeApiListener,
    pub operator: RuntimeApiListener,
    pub user: RuntimeApiListener,
}

impl ApiRig {
    pub async fn start(tag: &str, names: &[&str]) -> ApiRig {
        let rig = Rig::start(names, "admin = true").await;
        let dir = TempDir::new(tag);
        let open = |level: AdminLevel, file: &str| {
            let config = AdminSocket {
                socket: dir.path(file).to_string_lossy().into_owned(),
                mode: "600".into(),
                level,
            };
            serve_runtime_api(config, rig.daemon.view())
        };
        let admin = open(AdminLevel::Admin, "admin.sock").await.unwrap();
        let operator = open(AdminLevel::Operator, "operator.sock").await.unwrap();
        let user = open(AdminLevel::User, "user.sock").await.unwrap();
        ApiRig {
            rig,
            dir,
            admin,
            operator,
            user,
        }
    }

    pub fn admin_sock(&self) -> String {
        self.admin.path().to_string_lossy().into_owned()
    }
}

/// Fails with the install command when `tool` is not on the PATH.
pub fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is missing: install it (apt-get install -y {package}); .ci/run does"
    );
}

/// `echo INPUT | socat stdio unix-connect:SOCK`, as an operator types it; returns stdout.
pub async fn socat(sock: &Path, input: &str) -> String {
    require("socat", "socat");
    let sock = sock.to_path_buf();
    let input = input.to_string();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new("socat")
            .args(["-t", "5", "stdio"])
            .arg(format!("unix-connect:{}", sock.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("socat starts");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "socat failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap()
}

/// The rows of `show stat` (header first), split on commas, the trailing empty cell dropped.
pub fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let l = l.strip_prefix("# ").unwrap_or(l);
            let mut cells: Vec<String> = l.split(',').map(str::to_string).collect();
            assert_eq!(
                cells.pop().as_deref(),
                Some(""),
                "rows end with a comma: {l}"
            );
            cells
        })
        .collect()
}

/// The `status` cell of server `name` in a `show stat` answer.
pub fn status_of(text: &str, backend: &str, name: &str) -> String {
    let rows = csv_rows(text);
    let col = rows[0].iter().position(|c| c == "status").unwrap();
    rows.iter()
        .find(|r| r[0] == backend && r[1] == name)
        .unwrap_or_else(|| panic!("no row for {backend}/{name} in\n{text}"))[col]
        .clone()
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `within`.
pub async fn wait_for<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
