//! Where each key of a TOML document sits: key path → line, for error messages.
//!
//! serde hands back values without positions, so semantic errors ("backend[0].server[2].address
//! is not HOST:PORT") need their line found again. A line scan over the TOML text is enough for
//! that: table headers, array-of-tables counters, `key = value` lines and inline tables that start
//! a line inside a multi-line array. When a path is not found exactly, its nearest ancestor's line
//! is used.

use std::collections::BTreeMap;

/// One located key.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    /// Index-form path, e.g. `backend[0].server[2].address`.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// The raw text after `=` on that line (empty for headers).
    pub value: String,
}

/// Every key and table header of a document, in document order.
#[derive(Debug, Default)]
pub(crate) struct KeyLines {
    entries: Vec<Located>,
}

fn unquote(part: &str) -> String {
    let p = part.trim();
    p.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| p.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(p)
        .to_string()
}

/// Splits at `sep` outside quotes.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == sep => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            None => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn find_outside_quotes(s: &str, target: char) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == target => return Some(i),
            None => {}
        }
    }
    None
}

impl KeyLines {
    /// Scans a TOML document. Never fails: unknown shapes are skipped.
    pub fn scan(text: &str) -> KeyLines {
        let mut entries = Vec::new();
        // Array-of-tables path (with ancestor indices resolved) → elements seen so far.
        let mut arrays: BTreeMap<String, usize> = BTreeMap::new();
        let mut table = String::new();
        // Inside a multi-line array value: (path of the key, inline tables seen, depth).
        let mut open_array: Option<(String, usize)> = None;
        let join = |a: &str, b: &str| {
            if a.is_empty() {
                b.to_string()
            } else {
                format!("{a}.{b}")
            }
        };
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let t = raw.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if let Some((key, count)) = open_array.as_mut() {
                if t.starts_with('{') {
                    entries.push(Located {
                        path: format!("{key}[{count}]"),
                        line,
                        value: t.to_string(),
                    });
                    *count += 1;
                }
                if t.starts_with(']') || t.ends_with(']') {
                    open_array = None;
                }
                continue;
            }
            let header = if let Some(inner) = t.strip_prefix("[[") {
                inner.find("]]").map(|e| (&inner[..e], true))
            } else if let Some(inner) = t.strip_prefix('[') {
                inner.find(']').map(|e| (&inner[..e], false))
            } else {
                None
            };
            if let Some((name, is_array)) = header {
                let parts: Vec<String> = split_outside_quotes(name, '.')
                    .into_iter()
                    .map(unquote)
                    .collect();
                let mut path = String::new();
                for (i, part) in parts.iter().enumerate() {
                    path = join(&path, part);
                    let last = i + 1 == parts.len();
                    if last && is_array {
                        let n = arrays.entry(path.clone()).or_insert(0);
                        *n += 1;
                        path = format!("{path}[{}]", *n - 1);
                    } else if let Some(n) = arrays.get(&path) {
                        path = format!("{path}[{}]", n.saturating_sub(1));
                    }
                }
                entries.push(Located {
                    path: path.clone(),
                    line,
                    value: String::new(),
                });
                table = path;
                continue;
            }
            if let Some(eq) = find_outside_quotes(t, '=') {
                let key: Vec<String> = split_outside_quotes(&t[..eq], '.')
                    .into_iter()
                    .map(unquote)
                    .collect();
                let mut path = table.clone();
                for k in &key {
                    path = join(&path, k);
                }
                let value = t[eq + 1..].trim().to_string();
                if value.starts_with('[') && !value.contains(']') {
                    open_array = Some((path.clone(), 0));
                }
                entries.push(Located { path, line, value });
            }
        }
        KeyLines { entries }
    }

    /// Line of `path`, or of its nearest located ancestor, or 1.
    pub fn line_of(&self, path: &str) -> usize {
        let mut p = path.to_string();
        loop {
            if let Some(e) = self.entries.iter().find(|e| e.path == p) {
                return e.line;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p.truncate(i),
                None => return 1,
            }
        }
    }

    /// Located keys under `prefix` (itself included), in document order.
    pub fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Located> + 'a {
        self.entries.iter().filter(move |e| {
            e.path == prefix
                || e.path.starts_with(&format!("{prefix}."))
                || e.path.starts_with(&format!("{prefix}["))
        })
    }

    /// The key path whose line is `line`, if one starts there.
    pub fn path_at(&self, line: usize) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.line == line)
            .map(|e| e.path.as_str())
    }
}

/// The line of key `path` (index form, `frontend[0].route[2]`) in TOML `text`, or of its
/// nearest ancestor, or 1: for messages about a config that loaded.
pub fn key_line(text: &str, path: &str) -> usize {
    KeyLines::scan(text).line_of(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_inside_arrays_of_tables() {
        let text = r#"
[global]
maxconn = 10

[[frontend]]
name = "a"

[[backend]]
name = "x"
[[backend.server]]
name = "s0"
[[backend.server]]
name = "s1"
address = "bad"

[[backend]]
name = "y"
[backend.haproxy]
stick = [
  { action = "on", sample = "src" },
  { action = "match", sample = "sni" },
]
[[backend.server]]
address = "z"
"#;
        let k = KeyLines::scan(text);
        assert_eq!(k.line_of("global.maxconn"), 3);
        assert_eq!(k.line_of("backend[0].server[1].address"), 14);
        assert_eq!(k.line_of("backend[0].server[1].weight"), 12);
        assert_eq!(k.line_of("backend[1].server[0].address"), 24);
        assert_eq!(k.line_of("backend[1].haproxy.stick[1].sample"), 21);
        assert_eq!(k.line_of("nothing"), 1);
        assert_eq!(k.path_at(14), Some("backend[0].server[1].address"));
    }
}
