//! haproxy.cfg lines → words, as HAProxy splits them, each directive keeping its line number.
//!
//! Words are separated by spaces and tabs; `#` outside quotes starts a comment; `\` escapes the
//! next character (`\xHH` a byte); double quotes group words and honour escapes; single quotes
//! group words literally. Quotes may sit inside a word (`a"b c"d` is one word `ab cd`). A line
//! with an unterminated quote or more than [`MAX_WORDS`] words is an error for that line only.

/// HAProxy's limit of words on one line (MAX_LINE_ARGS).
pub const MAX_WORDS: usize = 64;

/// One non-empty line of the file, split into words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// 1-based line number.
    pub line: usize,
    /// The words, unquoted and unescaped.
    pub words: Vec<String>,
}

impl Directive {
    /// The first word (the keyword).
    pub fn keyword(&self) -> &str {
        self.words.first().map(String::as_str).unwrap_or("")
    }

    /// Word `i`, or "" past the end.
    pub fn word(&self, i: usize) -> &str {
        self.words.get(i).map(String::as_str).unwrap_or("")
    }

    /// The words joined back with single spaces, for messages: a word that a space, a control
    /// character or a quote would split or hide is written back quoted and escaped as HAProxy
    /// reads it (`"PING\r\n"`), so a finding stays on one line and can be pasted back.
    pub fn text(&self) -> String {
        let words: Vec<String> = self.words.iter().map(|w| quoted(w)).collect();
        words.join(" ")
    }
}

/// `word` as it can be written on a config line: as is when it is plain, else double-quoted with
/// `\r`, `\n`, `\t`, `\"`, `\\` and `\xHH` escapes.
fn quoted(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| !c.is_control() && !matches!(c, ' ' | '"' | '\'' | '\\' | '#'));
    if plain {
        return word.to_string();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A line that could not be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Splits a whole file; bad lines become [`LexError`]s and the rest is still returned.
pub fn split_lines(text: &str) -> (Vec<Directive>, Vec<LexError>) {
    let mut directives = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        match split_words(raw) {
            Ok(words) if words.is_empty() => {}
            Ok(words) if words.len() > MAX_WORDS => errors.push(LexError {
                line,
                message: format!(
                    "too many words ({}; HAProxy allows {MAX_WORDS})",
                    words.len()
                ),
            }),
            Ok(words) => directives.push(Directive { line, words }),
            Err(message) => errors.push(LexError { line, message }),
        }
    }
    (directives, errors)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Splits one line into words.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let bytes = line.as_bytes();
    let mut words: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut in_word = false;
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match (quote, b) {
            (Some(b'\''), b'\'') | (Some(b'"'), b'"') => quote = None,
            (Some(b'\''), _) => cur.push(b),
            (_, b'\\') => {
                in_word = true;
                let next = bytes.get(i + 1).copied();
                match next {
                    None => return Err("line ends with a lone backslash".to_string()),
                    Some(b'x') => {
                        let hi = bytes.get(i + 2).copied().and_then(hex);
                        let lo = bytes.get(i + 3).copied().and_then(hex);
                        match (hi, lo) {
                            (Some(h), Some(l)) => {
                                cur.push(h * 16 + l);
                                i += 3;
                            }
                            _ => return Err("invalid \\x escape: expected two hex digits".into()),
                        }
                    }
                    Some(b'r') => {
                        cur.push(b'\r');
                        i += 1;
                    }
                    Some(b'n') => {
                        cur.push(b'\n');
                        i += 1;
                    }
                    Some(b't') => {
                        cur.push(b'\t');
                        i += 1;
                    }
                    Some(c) => {
                        cur.push(c);
                        i += 1;
                    }
                }
            }
            (Some(_), _) => cur.push(b),
            (None, b'"') | (None, b'\'') => {
                in_word = true;
                quote = Some(b);
            }
            (None, b'#') => break,
            (None, b' ') | (None, b'\t') | (None, b'\r') => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, _) => {
                in_word = true;
                cur.push(b);
            }
        }
        i += 1;
    }
    if let Some(q) = quote {
        return Err(format!(
            "unterminated {} quote",
            if q == b'"' { "double" } else { "single" }
        ));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words
        .into_iter()
        .map(|w| String::from_utf8_lossy(&w).into_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_like_haproxy() {
        assert_eq!(
            split_words("  stick on payload_lv(43,1) if clienthello  # learn").unwrap(),
            ["stick", "on", "payload_lv(43,1)", "if", "clienthello"]
        );
        assert_eq!(
            split_words(r#"stats auth "a b":'c d'"#).unwrap(),
            ["stats", "auth", "a b:c d"]
        );
        assert_eq!(
            split_words(r"x a\ b \#c \x41").unwrap(),
            ["x", "a b", "#c", "A"]
        );
        assert_eq!(split_words("'#'x").unwrap(), ["#x"]);
        assert_eq!(split_words("\"\"").unwrap(), [""]);
        assert!(split_words("bind \"*:1").is_err());
        assert!(split_words("bind x\\").is_err());
        assert!(split_words("# only a comment").unwrap().is_empty());
    }

    #[test]
    fn text_keeps_a_directive_on_one_line_and_reads_back_the_same() {
        let d = Directive {
            line: 1,
            words: ["tcp-check", "send", "PING\r\n", "a b", "q\"\\", "\u{1}", ""]
                .map(String::from)
                .to_vec(),
        };
        let t = d.text();
        assert_eq!(t, r#"tcp-check send "PING\r\n" "a b" "q\"\\" "\x01" """#);
        assert!(!t.contains(['\r', '\n']));
        assert_eq!(split_words(&t).unwrap(), d.words);
    }

    #[test]
    fn keeps_line_numbers_and_reports_bad_lines() {
        let (d, e) = split_lines("global\n\n  maxconn 10\nbad 'quote\n");
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].line, 3);
        assert_eq!(d[1].words, ["maxconn", "10"]);
        assert_eq!(e[0].line, 4);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in "(?s).{0,300}") {
            let (d, e) = split_lines(&s);
            prop_assert!(d.len() + e.len() <= s.lines().count());
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let s = String::from_utf8_lossy(&b);
            let _ = split_lines(&s);
        }

        #[test]
        fn text_reads_back_as_the_same_words(words in proptest::collection::vec("\\PC{0,8}|[\\x00-\\x1f \"'#\\\\a]{0,6}", 1..8)) {
            let d = Directive { line: 1, words };
            let t = d.text();
            prop_assert!(!t.contains(['\r', '\n']));
            prop_assert_eq!(split_words(&t).unwrap(), d.words);
        }

        #[test]
        fn plain_words_survive(words in proptest::collection::vec("[a-z0-9_.:()*,/-]{1,12}", 1..10)) {
            let line = words.join(" \t ");
            prop_assert_eq!(split_words(&line).unwrap(), words);
        }
    }
}
