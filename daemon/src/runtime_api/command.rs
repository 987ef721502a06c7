//! The runtime API's command language, parsed from the raw bytes of one command (a line is split
//! on `;` first). Pure: no runtime, no IO, so every hostile byte sequence is unit tested.
//!
//! Errors carry HAProxy 2.6's own wording, so scripts that match on its replies keep working.

use tether_core::config::AdminLevel;
use tether_core::server::MAX_WEIGHT;

/// Most words read from one command; the rest are ignored (no command takes more than 6).
pub const MAX_WORDS: usize = 16;

/// `backend/server`, as the commands name a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// Backend name.
    pub backend: &'a str,
    /// Server name.
    pub server: &'a str,
}

/// A weight as written: absolute, or a percentage of the server's configured weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightSpec {
    /// `0..=256`.
    Absolute(u32),
    /// `N%` of the initial weight.
    Percent(u32),
}

/// What to do to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerChange {
    /// `state ready` / `enable server`.
    Ready,
    /// `state drain`.
    Drain,
    /// `state maint` / `disable server`.
    Maint,
    /// `weight N` / `set weight`.
    Weight(WeightSpec),
}

/// A `show table NAME` filter: `data.server_id OP N` or `key HEX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFilter<'a> {
    /// Entries whose server id (1-based) compares so with the value.
    ServerId(Compare, u32),
    /// The entry with this hex key.
    Key(&'a str),
}

/// HAProxy's comparison operators for table filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// `eq`
    Eq,
    /// `ne`
    Ne,
    /// `lt`
    Lt,
    /// `le`
    Le,
    /// `gt`
    Gt,
    /// `ge`
    Ge,
}

impl Compare {
    /// Whether `left OP right` holds.
    pub fn holds(self, left: u32, right: u32) -> bool {
        match self {
            Compare::Eq => left == right,
            Compare::Ne => left != right,
            Compare::Lt => left < right,
            Compare::Le => left <= right,
            Compare::Gt => left > right,
            Compare::Ge => left >= right,
        }
    }
}

/// `show stat`'s selection, as HAProxy's: a proxy (by `iid` or name, `-1` for all), a type
/// mask (1 frontends, 2 backends, 4 servers, `-1` all), a server id (`-1` all), and whether to
/// leave out servers that are not up (`up`) or in maintenance (`no-maint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFilter<'a> {
    /// `None`: every proxy.
    pub proxy: Option<ProxySelector<'a>>,
    /// Bit mask of row types.
    pub types: i32,
    /// Server id, `-1` for all.
    pub sid: i32,
    /// Only servers that are up.
    pub up: bool,
    /// Leave servers in maintenance out.
    pub no_maint: bool,
}

impl StatFilter<'_> {
    /// Everything.
    pub const ALL: StatFilter<'static> = StatFilter {
        proxy: None,
        types: -1,
        sid: -1,
        up: false,
        no_maint: false,
    };
}

/// A proxy named by `iid` or by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxySelector<'a> {
    /// Its `iid` column.
    Iid(i32),
    /// Its name.
    Name(&'a str),
}

/// One understood command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `help [...]`
    Help,
    /// `prompt`: toggle interactive mode.
    Prompt,
    /// `quit`
    Quit,
    /// `set timeout cli SECONDS`
    SetTimeoutCli(u32),
    /// `user` / `operator` / `admin`: lower the session's level (never raise it).
    Level(AdminLevel),
    /// `show info`
    ShowInfo,
    /// `show stat [{IID|PROXY} TYPE SID] [up|no-maint]`
    ShowStat(StatFilter<'a>),
    /// `show servers state [BACKEND]`
    ShowServersState(Option<&'a str>),
    /// `show table` (no name: the list of tables).
    ShowTable(Option<&'a str>, Option<TableFilter<'a>>),
    /// `clear table NAME [key HEX]`
    ClearTable(&'a str, Option<&'a str>),
    /// `set server`, `enable server`, `disable server`, `set weight`.
    SetServer(Target<'a>, ServerChange),
    /// `get weight B/S`
    GetWeight(Target<'a>),
}

impl Command<'_> {
    /// The level a session needs to run it.
    pub fn level(&self) -> AdminLevel {
        match self {
            Command::SetServer(..) => AdminLevel::Operator,
            Command::ClearTable(..) => AdminLevel::Admin,
            _ => AdminLevel::User,
        }
    }
}

/// What one command parsed into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Nothing but blanks.
    Empty,
    /// A command.
    Command(Command<'a>),
    /// A known command used wrongly: HAProxy's error text (ends with a newline when HAProxy's does).
    Invalid(&'static str),
    /// Not a command; the first word, for the "better match" list.
    Unknown(&'a str),
}

/// Splits a line into its `;`-separated commands.
pub fn split_commands(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| *b == b';')
}

/// Parses one command.
pub fn parse(command: &[u8]) -> Parsed<'_> {
    let mut words: [&str; MAX_WORDS] = [""; MAX_WORDS];
    let mut n = 0;
    for w in command
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .take(MAX_WORDS)
    {
        // A word that is not UTF-8 names nothing; it stays "" and matches no command or object.
        words[n] = std::str::from_utf8(w).unwrap_or("\u{fffd}");
        n += 1;
    }
    if n == 0 {
        return Parsed::Empty;
    }
    parse_words(&words[..n])
}

fn parse_words<'a>(w: &[&'a str]) -> Parsed<'a> {
    let arg = |i: usize| w.get(i).copied().unwrap_or("");
    let cmd = match (arg(0), arg(1)) {
        ("help", _) => Command::Help,
        ("prompt", _) => Command::Prompt,
        ("quit", _) => Command::Quit,
        (level @ ("user" | "operator" | "admin"), "") => {
            Command::Level(AdminLevel::parse(level).unwrap_or(AdminLevel::User))
        }
        ("show", "info") => Command::ShowInfo,
        ("show", "stat") => return show_stat(&w[2..]),
        ("show", "servers") if arg(2) == "state" => Command::ShowServersState(w.get(3).copied()),
        ("show", "table") => return show_table(w),
        ("clear", "table") => return clear_table(w),
        ("set", "timeout") => return set_timeout(w),
        ("set", "server") => return set_server(w),
        ("set", "weight") => {
            return with_target(arg(2), |t| match weight(arg(3)) {
                Ok(spec) => Parsed::Command(Command::SetServer(t, ServerChange::Weight(spec))),
                Err(e) => Parsed::Invalid(e),
            })
        }
        ("get", "weight") => {
            return with_target(arg(2), |t| Parsed::Command(Command::GetWeight(t)))
        }
        ("enable", "server") => {
            return with_target(arg(2), |t| {
                Parsed::Command(Command::SetServer(t, ServerChange::Ready))
            })
        }
        ("disable", "server") => {
            return with_target(arg(2), |t| {
                Parsed::Command(Command::SetServer(t, ServerChange::Maint))
            })
        }
        (first, _) => return Parsed::Unknown(first),
    };
    Parsed::Command(cmd)
}

fn with_target<'a>(word: &'a str, then: impl FnOnce(Target<'a>) -> Parsed<'a>) -> Parsed<'a> {
    match word.split_once('/') {
        Some((backend, server)) if !backend.is_empty() && !server.is_empty() => {
            then(Target { backend, server })
        }
        _ => Parsed::Invalid("Require 'backend/server'.\n"),
    }
}

fn set_server<'a>(w: &[&'a str]) -> Parsed<'a> {
    let arg = |i: usize| w.get(i).copied().unwrap_or("");
    with_target(arg(2), |t| match (arg(3), arg(4)) {
        ("state", "ready") => Parsed::Command(Command::SetServer(t, ServerChange::Ready)),
        ("state", "drain") => Parsed::Command(Command::SetServer(t, ServerChange::Drain)),
        ("state", "maint") => Parsed::Command(Command::SetServer(t, ServerChange::Maint)),
        ("state", _) => {
            Parsed::Invalid("'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n")
        }
        ("weight", v) => match weight(v) {
            Ok(spec) => Parsed::Command(Command::SetServer(t, ServerChange::Weight(spec))),
            Err(e) => Parsed::Invalid(e),
        },
        _ => Parsed::Invalid("'set server <srv>' only supports 'state' and 'weight' in tether.\n"),
    })
}

/// HAProxy's weight syntax: `N` (0..=256) or `N%` of the initial weight.
pub fn weight(text: &str) -> Result<WeightSpec, &'static str> {
    let (digits, percent) = match text.strip_suffix('%') {
        Some(d) => (d, true),
        None => (text, false),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        let leading = digits.bytes().take_while(u8::is_ascii_digit).count();
        return Err(if leading == 0 {
            "Empty weight string empty or preceded by garbage"
        } else {
            "Trailing garbage in weight string"
        });
    }
    // Saturate: a 40-digit weight is just "too large", not an overflow.
    let n: u32 = digits.parse().unwrap_or(u32::MAX);
    if percent {
        return if n == 0 {
            Err("Relative weight must be positive.\n")
        } else {
            Ok(WeightSpec::Percent(n))
        };
    }
    if n > MAX_WEIGHT {
        return Err("Absolute weight can only be between 0 and 256 inclusive.\n");
    }
    Ok(WeightSpec::Absolute(n))
}

fn set_timeout<'a>(w: &[&'a str]) -> Parsed<'a> {
    if w.get(2) != Some(&"cli") {
        return Parsed::Invalid("'set timeout' only supports 'cli'.\n");
    }
    match w.get(3).and_then(|v| v.parse::<u32>().ok()) {
        Some(s) => Parsed::Command(Command::SetTimeoutCli(s)),
        None => Parsed::Invalid("Expects an integer value.\n"),
    }
}

fn show_table<'a>(w: &[&'a str]) -> Parsed<'a> {
    let Some(name) = w.get(2).copied() else {
        return Parsed::Command(Command::ShowTable(None, None));
    };
    let filter = match (w.get(3).copied(), w.get(4).copied(), w.get(5).copied()) {
        (None, _, _) => None,
        (Some("key"), Some(k), _) => Some(TableFilter::Key(k)),
        (Some("data.server_id"), Some(op), Some(v)) => {
            let op = match op {
                "eq" => Compare::Eq,
                "ne" => Compare::Ne,
                "lt" => Compare::Lt,
                "le" => Compare::Le,
                "gt" => Compare::Gt,
                "ge" => Compare::Ge,
                _ => return Parsed::Invalid("Invalid data operator.\n"),
            };
            match v.parse() {
                Ok(n) => Some(TableFilter::ServerId(op, n)),
                Err(_) => return Parsed::Invalid("Require a valid integer value to compare against\n"),
            }
        }
        (Some(k), _, _) if k.starts_with("data.") => {
            return Parsed::Invalid("tether's tables store data.server_id only.\n")
        }
        _ => return Parsed::Invalid("Optional argument only supports \"data.<store_data_type>\" <operator> <value> and key <key>\n"),
    };
    Parsed::Command(Command::ShowTable(Some(name), filter))
}

fn show_stat<'a>(args: &[&'a str]) -> Parsed<'a> {
    let mut filter = StatFilter::ALL;
    let mut positional: Vec<&'a str> = Vec::new();
    for a in args {
        match *a {
            "up" => filter.up = true,
            "no-maint" => filter.no_maint = true,
            "desc" => {}
            "typed" | "json" => {
                return Parsed::Invalid(
                    "tether serves 'show stat' as CSV only (no typed or json).\n",
                )
            }
            p => positional.push(p),
        }
    }
    match positional[..] {
        [] => {}
        [proxy, types, sid] => {
            let (Ok(types), Ok(sid)) = (types.parse(), sid.parse()) else {
                return Parsed::Invalid("Require a valid type and server id.\n");
            };
            filter.proxy = match proxy.parse::<i32>() {
                Ok(-1) => None,
                Ok(iid) => Some(ProxySelector::Iid(iid)),
                Err(_) => Some(ProxySelector::Name(proxy)),
            };
            (filter.types, filter.sid) = (types, sid);
        }
        _ => return Parsed::Invalid("Require 'show stat [{<iid>|<proxy>} <type> <sid>]'.\n"),
    }
    Parsed::Command(Command::ShowStat(filter))
}

fn clear_table<'a>(w: &[&'a str]) -> Parsed<'a> {
    let Some(name) = w.get(2).copied() else {
        return Parsed::Invalid("table name expected\n");
    };
    match (w.get(3).copied(), w.get(4).copied()) {
        (None, _) => Parsed::Command(Command::ClearTable(name, None)),
        (Some("key"), Some(k)) => Parsed::Command(Command::ClearTable(name, Some(k))),
        _ => Parsed::Invalid("Optional argument only supports \"data.<store_data_type>\" <operator> <value> and key <key>\n"),
    }
}

#[cfg(test)]
mod tests;
