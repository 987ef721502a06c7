//! Hitless upgrade (`kill -USR2`): the running tether starts its binary again — the file it was
//! started as, so a newly installed version runs — hands the new process its listening sockets
//! and stick tables, waits until it serves, tells systemd the new main PID, then stops
//! accepting and drains within `grace`. Both processes accept from the same kernel queues during
//! the switch, so no connection is refused or reset.
//!
//! - [`handover`]: the channel between the two processes (sockets as `SCM_RIGHTS`).
//! - [`inherited`]: received sockets, until the code that binds their address takes them.
//! - [`table_transfer`]: the stick-table entries carried over, by backend and server name,
//!   before the new process serves (every table, shared with peers or not).
//! - [`over_peers`]: tables a `[peers]` section shares are also pushed over HAProxy's peers
//!   protocol once the new process serves, as HAProxy's old process does.
//! - [`notify`]: `sd_notify` (`READY=1`, `RELOADING=1`, `MAINPID=`, `STOPPING=1`).
//! - [`successor`]: the old process's side; [`incoming`]: the new one's.

pub mod handover;
pub mod incoming;
pub mod inherited;
pub mod notify;
pub mod over_peers;
pub mod successor;
pub mod table_transfer;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Set in a successor's environment: its standard input is the handover channel.
pub const HANDOVER_ENV: &str = "TETHER_HANDOVER";

/// How long a successor may take from its start to serving before the upgrade is abandoned
/// (the old process then keeps serving).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How this process was started, so it can start its successor the same way: the program path
/// as given (made absolute against the starting directory, not resolved through symlinks or
/// `/proc/self/exe`, which names the deleted inode after a package upgrade replaced the file)
/// and the same arguments.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The program to run.
    pub exe: PathBuf,
    /// Its arguments (without the program name).
    pub args: Vec<OsString>,
}

impl Launch {
    /// This process's own launch, read from its arguments; call at startup, before anything
    /// could change the working directory.
    pub fn current() -> Launch {
        let mut argv = std::env::args_os();
        let program = PathBuf::from(argv.next().unwrap_or_else(|| "tether".into()));
        Launch {
            exe: absolute(program),
            args: argv.collect(),
        }
    }
}

/// A path with a directory part made absolute against the current directory; a bare name
/// stays as is (looked up in `PATH` when run, as a shell would).
fn absolute(program: PathBuf) -> PathBuf {
    if program.is_absolute() || program.components().count() < 2 {
        return program;
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(&program))
        .unwrap_or(program)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_path_is_kept_as_given_but_made_absolute() {
        assert_eq!(
            absolute("/usr/sbin/tether".into()),
            PathBuf::from("/usr/sbin/tether")
        );
        assert_eq!(absolute("tether".into()), PathBuf::from("tether"));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            absolute("./target/debug/tether".into()),
            cwd.join("./target/debug/tether")
        );
        let me = Launch::current();
        assert!(me.exe.is_absolute(), "{:?}", me.exe);
    }
}
