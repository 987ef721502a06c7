//! Server names compared with regular expressions (HAProxy's `-m reg`).
//!
//! A regex cannot go in the name index: a rule with one is evaluated in order, as HAProxy does,
//! while the other rules keep their indexed fast path. Patterns compile once per configuration
//! into one [`regex::bytes::RegexSet`]; matching is linear in the name (no backtracking), so a
//! hostile server name cannot stall a worker. Unicode mode is off, as names are ASCII and as
//! HAProxy's PCRE compiles them without UTF-8: `.` is any byte, `\w` ASCII.

use std::hash::{Hash, Hasher};

/// Most memory one compiled set may take (bounded: a config cannot ask for gigabytes).
const SIZE_LIMIT: usize = 4 << 20;

/// Patterns, any of which matching a server name makes the test hold.
#[derive(Clone)]
pub struct NameRegex {
    patterns: Vec<String>,
    ignore_case: bool,
    set: regex::bytes::RegexSet,
}

/// Why a pattern does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regular expression \"{pattern}\": {why}")]
pub struct RegexError {
    /// The pattern as written.
    pub pattern: String,
    /// What the regex compiler said.
    pub why: String,
}

impl NameRegex {
    /// Compiles `patterns` (searched anywhere in the name, as HAProxy does: anchor with `^` and
    /// `$`); `ignore_case` is HAProxy's `-i`.
    pub fn new(patterns: Vec<String>, ignore_case: bool) -> Result<Self, RegexError> {
        // Compile each alone first, so the error names the pattern at fault.
        for p in &patterns {
            builder(std::slice::from_ref(p), ignore_case)
                .build()
                .map_err(|e| RegexError {
                    pattern: p.clone(),
                    why: short(&e),
                })?;
        }
        let set = builder(&patterns, ignore_case)
            .build()
            .map_err(|e| RegexError {
                pattern: patterns.join(" "),
                why: short(&e),
            })?;
        Ok(NameRegex {
            patterns,
            ignore_case,
            set,
        })
    }

    /// The patterns as written.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether letters compare without case.
    pub fn ignore_case(&self) -> bool {
        self.ignore_case
    }

    /// Whether one pattern matches somewhere in `name`.
    pub fn matches(&self, name: &[u8]) -> bool {
        self.set.is_match(name)
    }
}

/// The regex error on one line: its last line (`error: unclosed group`), without the caret
/// diagram that only reads well in a terminal.
fn short(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or("").trim();
    last.strip_prefix("error: ").unwrap_or(last).to_owned()
}

fn builder(patterns: &[String], ignore_case: bool) -> regex::bytes::RegexSetBuilder {
    let mut b = regex::bytes::RegexSetBuilder::new(patterns);
    b.unicode(false)
        .case_insensitive(ignore_case)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(SIZE_LIMIT);
    b
}

impl PartialEq for NameRegex {
    fn eq(&self, other: &Self) -> bool {
        self.ignore_case == other.ignore_case && self.patterns == other.patterns
    }
}

impl Eq for NameRegex {}

impl Hash for NameRegex {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.patterns.hash(state);
        self.ignore_case.hash(state);
    }
}

impl std::fmt::Debug for NameRegex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameRegex")
            .field("patterns", &self.patterns)
            .field("ignore_case", &self.ignore_case)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::condition::{name_matches, NameMethod};
    use proptest::prelude::*;

    #[test]
    fn searches_unanchored_and_honours_case() {
        let r = NameRegex::new(vec![r"^api[0-9]+\.".into(), "internal".into()], false).unwrap();
        assert!(r.matches(b"api12.example.com"));
        assert!(r.matches(b"x.internal.example"));
        assert!(!r.matches(b"API12.example.com"));
        assert!(!r.matches(b"www.api1.example.com"));
        let i = NameRegex::new(vec![r"^api[0-9]+\.".into()], true).unwrap();
        assert!(i.matches(b"API7.example.com"));
        // Bytes that are not UTF-8 are matched, not refused.
        assert!(NameRegex::new(vec!["a.c".into()], false)
            .unwrap()
            .matches(b"a\xffc"));
    }

    #[test]
    fn a_bad_pattern_is_named_in_the_error() {
        let e = NameRegex::new(vec!["ok".into(), "api(".into()], false).unwrap_err();
        assert_eq!(e.pattern, "api(");
        assert!(
            e.to_string()
                .contains("invalid regular expression \"api(\""),
            "{e}"
        );
        let huge = NameRegex::new(vec!["[a-z]{1000}{1000}".into()], false).unwrap_err();
        assert!(huge.why.contains("size limit"), "{}", huge.why);
    }

    const PIECES: &[&str] = &["a", "A", ".", "ex", "example", "b", "-", "x"];

    fn literal() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(PIECES), 0..4).prop_map(|v| v.concat())
    }

    proptest! {
        /// A regex written from a literal matches exactly as the literal methods do.
        #[test]
        fn literal_regexes_agree_with_the_literal_methods(
            v in literal(), name in literal(), ic in any::<bool>()
        ) {
            let e = regex::escape(&v);
            for (method, pattern) in [
                (NameMethod::Exact, format!("^{e}$")),
                (NameMethod::Prefix, format!("^{e}")),
                (NameMethod::Suffix, format!("{e}$")),
                (NameMethod::Substring, e.clone()),
            ] {
                let r = NameRegex::new(vec![pattern.clone()], ic).unwrap();
                prop_assert_eq!(
                    r.matches(name.as_bytes()),
                    name_matches(method, ic, name.as_bytes(), v.as_bytes()),
                    "{} on {:?}", pattern, name
                );
            }
        }
    }
}
