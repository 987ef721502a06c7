//! Where each part of an imported config was written in haproxy.cfg, so that problems found
//! afterwards on the native config ([`tether_core::config::Config::validate`], which names
//! key paths such as `backend[0].server[2].weight`) point at the line to change.

use std::collections::BTreeMap;

/// Native key paths (`backend[0]`, `backend[0].server[1]`, `stats.bind`...) and the
/// haproxy.cfg line that wrote each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(BTreeMap<String, usize>);

impl Origins {
    /// Records that `path` was written at `line` (a later directive replaces an earlier one).
    pub fn note(&mut self, path: &str, line: usize) {
        self.0.insert(path.to_string(), line);
    }

    /// The line of `key_path`, or of its longest recorded parent (`backend[0].server[2]` for
    /// `backend[0].server[2].address`); 0 when none is known.
    pub fn line_of(&self, key_path: &str) -> usize {
        let mut path = key_path;
        loop {
            if let Some(&line) = self.0.get(path) {
                return line;
            }
            match path.rfind(['.', '[']) {
                Some(cut) if cut > 0 => path = &path[..cut],
                _ => return 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Origins;

    #[test]
    fn the_longest_recorded_parent_gives_the_line() {
        let mut o = Origins::default();
        o.note("backend[1]", 20);
        o.note("backend[1].server[0]", 24);
        o.note("backend[10]", 90);
        assert_eq!(o.line_of("backend[1].server[0].weight"), 24);
        assert_eq!(o.line_of("backend[1].server[1].address"), 20);
        assert_eq!(o.line_of("backend[1].stick-table.size"), 20);
        assert_eq!(o.line_of("backend[10].check"), 90);
        assert_eq!(o.line_of("backend[2]"), 0);
        assert_eq!(o.line_of("frontend"), 0);
    }
}
