//! One client's conversation, as HAProxy's CLI holds it: each line's `;`-separated commands run
//! in order, each answer ends with an empty line (`"\n"`), or with `"\n> "` in interactive mode
//! (`prompt`); without `prompt` the connection closes after the first line. No IO here.

use std::time::Duration;

use tether_core::config::AdminLevel;

use super::command::{self, Command, Parsed};
use super::{servers, show, tables, Ctx};

/// HAProxy's default `timeout cli`.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(10);
/// The longest `set timeout cli` accepted (a longer one is capped).
pub const MAX_IDLE: Duration = Duration::from_secs(3600);

/// What the session has agreed with its client.
#[derive(Debug, Clone)]
pub struct Session {
    prompt: bool,
    level: AdminLevel,
    idle: Duration,
}

/// The answer to a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Bytes to send.
    pub output: String,
    /// Close the connection after sending.
    pub close: bool,
}

impl Session {
    /// A new session at the socket's level.
    pub fn new(level: AdminLevel) -> Self {
        Session {
            prompt: false,
            level,
            idle: DEFAULT_IDLE,
        }
    }

    /// How long the client may stay silent.
    pub fn idle_timeout(&self) -> Duration {
        self.idle
    }

    /// Runs one line (without its newline).
    pub fn line(&mut self, line: &[u8], ctx: &Ctx) -> Answer {
        let mut output = String::new();
        let mut quit = false;
        for part in command::split_commands(line) {
            let text = match command::parse(part) {
                Parsed::Empty => continue,
                Parsed::Invalid(e) => e.to_string(),
                Parsed::Unknown(first) => show::unknown(first),
                Parsed::Command(c) if c.level() > self.level => "Permission denied\n".into(),
                Parsed::Command(Command::Quit) => {
                    quit = true;
                    break;
                }
                Parsed::Command(c) => self.run(c, ctx),
            };
            output.push_str(&text);
            output.push_str(self.terminator());
        }
        if output.is_empty() && !quit && self.prompt {
            output.push_str(self.terminator());
        }
        Answer {
            output,
            close: quit || !self.prompt,
        }
    }

    fn terminator(&self) -> &'static str {
        if self.prompt {
            "\n> "
        } else {
            "\n"
        }
    }

    fn run(&mut self, c: Command, ctx: &Ctx) -> String {
        match c {
            Command::Help => show::help(),
            Command::Prompt => {
                self.prompt = !self.prompt;
                String::new()
            }
            Command::Quit => String::new(),
            Command::SetTimeoutCli(s) => {
                self.idle = Duration::from_secs(u64::from(s.max(1))).min(MAX_IDLE);
                String::new()
            }
            Command::Level(l) => {
                self.level = self.level.min(l);
                String::new()
            }
            Command::ShowInfo => show::info(ctx),
            Command::ShowStat(filter) => show::stat(ctx, &filter),
            Command::ShowServersState(b) => show::servers_state(ctx, b),
            Command::ShowTable(name, filter) => tables::show(ctx, name, filter),
            Command::ClearTable(name, key) => tables::clear(ctx, name, key),
            Command::SetServer(t, change) => servers::set(ctx, t, change),
            Command::GetWeight(t) => servers::get_weight(ctx, t),
        }
    }
}

#[cfg(test)]
mod tests;
