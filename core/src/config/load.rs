//! Loading a native TOML configuration, with every problem reported at once.
//!
//! A syntax error stops everything (nothing after it can be trusted). Otherwise each section
//! (`[global]`, each `[[frontend]]`, each `[[backend]]`, `[stats]`) is read on its own so one bad
//! backend does not hide the problems of the next, then [`Config::validate`] adds the semantic
//! problems. Each [`ConfigError`] names file:line, the key, and what to write instead.

use super::locate::KeyLines;
use super::{AdminSocket, Backend, Config, Frontend, Global, Stats};
use serde::de::DeserializeOwned;
use std::fmt;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as given for messages.
    pub file: String,
    /// 1-based line (0 when not known, e.g. from [`Config::validate`] without a file).
    pub line: usize,
    /// 1-based column, when known (syntax errors).
    pub column: Option<usize>,
    /// Where in the document, e.g. `backend.app.server.s1.address` (names used when known,
    /// indices such as `backend[0]` otherwise).
    pub key_path: String,
    /// What is wrong.
    pub message: String,
    /// What to write instead.
    pub fix: String,
}

impl ConfigError {
    /// A problem not yet placed in a file (filled in by [`load_toml`]).
    pub fn at(
        key_path: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: String::new(),
            line: 0,
            column: None,
            key_path: key_path.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.is_empty() {
            write!(f, "{}:{}: ", self.file, self.line)?;
        }
        if !self.key_path.is_empty() {
            write!(f, "{}: ", self.key_path)?;
        }
        write!(f, "{}", self.message)?;
        if !self.fix.is_empty() {
            write!(f, ": {}", self.fix)?;
        }
        Ok(())
    }
}

/// Every problem found in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

const TOP_KEYS: [&str; 8] = [
    "global",
    "frontend",
    "backend",
    "stats",
    "admin",
    "peers",
    "log",
    "resolvers",
];

/// Reads a native configuration from TOML text; `path_for_messages` is only used in messages.
pub fn load_toml(path_for_messages: &str, text: &str) -> Result<Config, ConfigErrors> {
    let lines = KeyLines::scan(text);
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            return Err(ConfigErrors(vec![ConfigError {
                file: path_for_messages.to_string(),
                line,
                column: Some(column),
                key_path: lines.path_at(line).unwrap_or_default().to_string(),
                message: format!("TOML syntax error: {}", e.message().trim()),
                fix: "write `key = value` pairs under `[table]` headers; strings in double \
                      quotes, e.g. timeout-connect = \"10s\""
                    .to_string(),
            }]));
        }
    };

    load_parsed(path_for_messages, &table, &lines)
}

/// Loads a configuration already parsed as TOML (a section of another file, such as a
/// scenario's `[balancer.config]`), with the same checks as [`load_toml`]; errors name key
/// paths, and line 1 of `path_for_messages`, since no text is at hand.
pub fn load_table(path_for_messages: &str, table: &toml::Table) -> Result<Config, ConfigErrors> {
    load_parsed(path_for_messages, table, &KeyLines::default())
}

fn load_parsed(
    path_for_messages: &str,
    table: &toml::Table,
    lines: &KeyLines,
) -> Result<Config, ConfigErrors> {
    let mut cx = Context {
        file: path_for_messages,
        lines,
        errors: Vec::new(),
    };
    let mut config = Config::default();
    for (key, value) in table {
        match key.as_str() {
            "global" => {
                if let Some(g) = cx.section::<Global>(value, "global") {
                    config.global = g;
                }
            }
            "stats" => config.stats = cx.section::<Stats>(value, "stats"),
            "admin" => config.admin = cx.section::<AdminSocket>(value, "admin"),
            "peers" => config.peers = cx.section::<super::peers::PeersSection>(value, "peers"),
            "frontend" | "backend" | "log" | "resolvers" => match value.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let path = format!("{key}[{i}]");
                        if key == "resolvers" {
                            let r = cx.section::<super::resolvers::Resolvers>(item, &path);
                            config.resolvers.extend(r);
                        } else if key == "log" {
                            if let Some(t) = cx.section::<super::log::LogTarget>(item, &path) {
                                config.logs.push(t);
                            }
                        } else if key == "frontend" {
                            if let Some(f) = cx.section::<Frontend>(item, &path) {
                                config.frontends.push(f);
                            }
                        } else if let Some(b) = cx.section::<Backend>(item, &path) {
                            config.backends.push(b);
                        }
                    }
                }
                None => cx.push(
                    key,
                    format!("`{key}` must be an array of tables"),
                    format!("write each one under its own `[[{key}]]` header"),
                ),
            },
            other => cx.push(
                other,
                format!("unknown key `{other}`"),
                format!("valid top-level keys: {}", TOP_KEYS.join(", ")),
            ),
        }
    }
    if cx.errors.is_empty() {
        for e in config.validate() {
            let path = e.key_path.clone();
            cx.push(&path, e.message, e.fix);
        }
    }
    let mut errors = cx.errors;
    if errors.is_empty() {
        return Ok(config);
    }
    for e in &mut errors {
        e.key_path = named_path(table, &e.key_path);
    }
    errors.sort_by_key(|e| e.line);
    Err(ConfigErrors(errors))
}

struct Context<'a> {
    file: &'a str,
    lines: &'a KeyLines,
    errors: Vec<ConfigError>,
}

impl Context<'_> {
    fn push(&mut self, index_path: &str, message: String, fix: String) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line: self.lines.line_of(index_path),
            column: None,
            key_path: index_path.to_string(),
            message,
            fix,
        });
    }

    /// Deserializes one section; on failure records a located error.
    fn section<T: DeserializeOwned>(&mut self, value: &toml::Value, path: &str) -> Option<T> {
        match value.clone().try_into::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                let msg = e.message().trim().to_string();
                let (key_path, message, fix) = self.explain(path, &msg);
                let line = self.lines.line_of(&key_path);
                self.errors.push(ConfigError {
                    file: self.file.to_string(),
                    line,
                    column: None,
                    key_path,
                    message,
                    fix,
                });
                None
            }
        }
    }

    /// Turns a serde message into (key path, message, fix), finding the key it is about.
    fn explain(&self, section: &str, msg: &str) -> (String, String, String) {
        let ticked = |prefix: &str| -> Option<String> {
            let rest = &msg[msg.find(prefix)? + prefix.len()..];
            let end = rest.find('`')?;
            Some(rest[..end].to_string())
        };
        if let Some(field) = ticked("unknown field `") {
            let path = self
                .lines
                .under(section)
                .find(|e| last_key(&e.path) == field)
                .map(|e| e.path.clone())
                .unwrap_or_else(|| section.to_string());
            let valid = msg
                .split_once("expected ")
                .map(|(_, v)| v.replace('`', ""))
                .unwrap_or_default();
            let fix = if valid.is_empty() {
                "remove it".to_string()
            } else {
                format!("remove it or use one of the valid keys: {valid}")
            };
            return (path, format!("unknown key `{field}`"), fix);
        }
        if let Some(field) = ticked("missing field `") {
            return (
                section.to_string(),
                format!("missing key `{field}`"),
                format!("add {}", example_for(&field)),
            );
        }
        // A value error: find the key whose written value the message quotes.
        let quoted = msg
            .split('"')
            .nth(1)
            .filter(|q| !q.is_empty())
            .map(str::to_string)
            .or_else(|| ticked("unknown variant `"));
        let located = quoted.as_ref().and_then(|q| {
            self.lines
                .under(section)
                .find(|e| !e.value.is_empty() && e.value.contains(q.as_str()))
        });
        let path = located
            .map(|e| e.path.clone())
            .unwrap_or_else(|| section.to_string());
        let key = last_key(&path).to_string();
        let fix = if msg.contains("duration") {
            format!("write a whole number with a unit, e.g. {key} = \"10s\" (ms, s, m, h, d)")
        } else if msg.contains("size") {
            format!("write a whole number with an optional k/m/g suffix, e.g. {key} = \"60k\"")
        } else if let Some((_, valid)) = msg.split_once("expected one of ") {
            format!("use one of: {}", valid.replace('`', ""))
        } else if let Some((_, expected)) = msg.split_once("expected ") {
            format!("write {expected} for `{key}`")
        } else {
            "see the configuration reference for this key".to_string()
        };
        (path, msg.to_string(), fix)
    }
}

fn last_key(path: &str) -> &str {
    let tail = path.rsplit('.').next().unwrap_or(path);
    tail.split('[').next().unwrap_or(tail)
}

fn example_for(field: &str) -> String {
    match field {
        "name" => "name = \"app\"".to_string(),
        "address" => "address = \"10.0.0.1:443\"".to_string(),
        "bind" => "bind = [\"0.0.0.0:9443\"]".to_string(),
        "backend" => "backend = \"app\" (the name of a [[backend]])".to_string(),
        "user" => "user = \"admin\"".to_string(),
        "action" => "action = \"on\"".to_string(),
        "sample" => "sample = \"payload-lv(43,1)\"".to_string(),
        other => format!("{other} = ..."),
    }
}

/// 1-based (line, column) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// `backend[0].server[2].address` → `backend.app.server.s1.address` where names are known.
fn named_path(table: &toml::Table, index_path: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut cursor: Option<&toml::Value> = None;
    for part in index_path.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let here = match cursor {
            None => table.get(key),
            Some(v) => v.get(key),
        };
        match (here, index) {
            (Some(v), Some(i)) => {
                let elem = v.get(i);
                match elem.and_then(|e| e.get("name")).and_then(|n| n.as_str()) {
                    Some(name) => out.push(format!("{key}.{name}")),
                    None => out.push(part.to_string()),
                }
                cursor = elem;
            }
            (v, _) => {
                out.push(part.to_string());
                cursor = v;
            }
        }
    }
    out.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_paths_use_names_when_present() {
        let t: toml::Table = r#"
[[backend]]
name = "app"
[[backend.server]]
name = "s1"
address = "x"
"#
        .parse()
        .unwrap();
        assert_eq!(
            named_path(&t, "backend[0].server[0].address"),
            "backend.app.server.s1.address"
        );
        assert_eq!(named_path(&t, "backend[3].name"), "backend[3].name");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
