//! `hatop` (Debian's curses HAProxy monitor) on tether's runtime API, driven in a detached tmux
//! on a private tmux server: it lists every server, and F10 on a server line (hatop's "disable
//! server") puts it in maintenance, which `show stat` confirms.

mod runtime_api_support;
mod stats_support;

use std::process::{Command, Output};
use std::time::Duration;

use runtime_api_support::*;

/// A private tmux server (`tmux -L NAME`) killed on drop.
struct Tmux {
    server: String,
}

impl Tmux {
    fn new() -> Tmux {
        require("tmux", "tmux");
        Tmux {
            server: format!("tether-hatop-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .args(["-L", &self.server])
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "hatop"]).stdout)
            .into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.server, "kill-server"])
            .output();
    }
}

/// The screen line of server `name` (hatop prints one row per server).
fn row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hatop_lists_the_servers_and_puts_one_in_maintenance() {
    require("hatop", "hatop");
    let api = ApiRig::start("hatop", &["alpha", "beta", "gamma"]).await;
    let tmux = Tmux::new();
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "hatop",
        "-x",
        "200",
        "-y",
        "50",
        &format!("hatop -s {}", api.admin_sock()),
    ]);
    let listed = wait_for(Duration::from_secs(15), || {
        let s = tmux.screen();
        ["alpha", "beta", "gamma", "BACKEND", "FRONTEND"]
            .iter()
            .all(|n| row(&s, n).is_some())
            .then_some(s)
    })
    .await;
    let screen =
        listed.unwrap_or_else(|| panic!("hatop never listed the servers:\n{}", tmux.screen()));
    assert!(screen.contains("tether Version:"), "{screen}");
    assert!(row(&screen, "alpha").unwrap().contains(" UP "), "{screen}");
    // The cursor starts on ">>> main"; alpha is four rows down (FRONTEND, blank, ">>> app").
    for _ in 0..4 {
        tmux.run(&["send-keys", "-t", "hatop", "Down"]);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    tmux.run(&["send-keys", "-t", "hatop", "F10"]);
    let mut stat = String::new();
    for _ in 0..50 {
        stat = socat(api.admin.path(), "show stat\n").await;
        if status_of(&stat, "app", "alpha") == "MAINT" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status_of(&stat, "app", "alpha"),
        "MAINT",
        "{}",
        tmux.screen()
    );
    assert_eq!(status_of(&stat, "app", "beta"), "UP");
    let shown = wait_for(Duration::from_secs(10), || {
        row(&tmux.screen(), "alpha")
            .is_some_and(|r| r.contains("MAINT"))
            .then_some(())
    })
    .await;
    assert!(
        shown.is_some(),
        "hatop shows alpha in MAINT:\n{}",
        tmux.screen()
    );
}
