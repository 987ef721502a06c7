//! Man pages and shell completions generated from the CLI's clap definition, so what the
//! package installs never drifts from what `tether --help` says.
//!
//! `tether completions bash|zsh|fish` prints a completion script; the hidden `tether man DIR`
//! writes `tether.1` and one `tether-SUBCOMMAND.1` per subcommand (packaging/build-deb.sh runs
//! it before `cargo deb`).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// `tether completions SHELL`.
#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for: bash, zsh or fish.
    #[arg(value_parser = ["bash", "zsh", "fish"])]
    pub shell: String,
}

/// `tether man DIR` (hidden: a packaging step, not an operator's command).
#[derive(clap::Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    pub dir: PathBuf,
}

/// Writes the completion script for `shell` (bash, zsh or fish) of the command `cmd` to `out`.
pub fn write_completions(
    shell: &str,
    cmd: &mut clap::Command,
    out: &mut dyn Write,
) -> io::Result<()> {
    let shell = match shell {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no completions for shell {other:?}: use bash, zsh or fish"),
            ))
        }
    };
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, cmd, name, out);
    Ok(())
}

/// Writes `NAME.1` for `cmd` and `NAME-SUB.1` for each visible subcommand into `dir`; returns
/// the files written.
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd;
    cmd.build();
    let mut written = vec![write_page(&cmd, cmd.get_name(), dir)?];
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        // After `build`, a subcommand's display name is `tether-run`, its bin name `tether run`.
        let name = sub.get_display_name().unwrap_or_else(|| sub.get_name());
        written.push(write_page(sub, name, dir)?);
    }
    Ok(written)
}

fn write_page(cmd: &clap::Command, name: &str, dir: &Path) -> io::Result<PathBuf> {
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        // Subcommands carry no version of their own: every page names the package's.
        .source(format!("tether {}", env!("CARGO_PKG_VERSION")))
        .render(&mut buf)?;
    std::fs::write(&path, buf)?;
    Ok(path)
}
