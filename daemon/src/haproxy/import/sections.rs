//! Cutting the directives into sections (`global`, `defaults`, `frontend`, `backend`, `listen`,
//! `peers`, `resolvers`),
//! as HAProxy does; sections tether has no equivalent for are reported and skipped whole.

use super::Importer;
use crate::haproxy::lexer::Directive;

/// The sections tether imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Global,
    Defaults,
    Frontend,
    Backend,
    Listen,
    Peers,
    Resolvers,
}

/// One section: its header line and the directives under it.
pub(super) struct Section {
    pub(super) kind: Kind,
    pub(super) header: Directive,
    pub(super) body: Vec<Directive>,
}

impl Importer<'_> {
    /// Groups directives under their section headers.
    pub(super) fn sections(&mut self, directives: Vec<Directive>) -> Vec<Section> {
        let mut out: Vec<Section> = Vec::new();
        let mut skipping = false;
        for d in directives {
            let kind = match d.keyword() {
                "global" => Some(Kind::Global),
                "defaults" => Some(Kind::Defaults),
                "frontend" => Some(Kind::Frontend),
                "backend" => Some(Kind::Backend),
                "listen" => Some(Kind::Listen),
                "peers" => Some(Kind::Peers),
                "resolvers" => Some(Kind::Resolvers),
                "userlist" | "mailers" | "program" | "cache" | "ring" | "http-errors"
                | "crt-store" => {
                    self.error(
                        d.line,
                        format!("unsupported section `{}`", d.text()),
                        "tether has no equivalent; the whole section is skipped",
                        "remove the section",
                    );
                    skipping = true;
                    continue;
                }
                _ => None,
            };
            match kind {
                Some(kind) => {
                    skipping = false;
                    out.push(Section {
                        kind,
                        header: d,
                        body: Vec::new(),
                    });
                }
                None if skipping => {}
                None => match out.last_mut() {
                    Some(s) => s.body.push(d),
                    None => self.error(
                        d.line,
                        format!("`{}` outside any section", d.text()),
                        "HAProxy rejects directives before the first section",
                        "put it under `global`, `defaults`, `frontend`, `backend` or `listen`",
                    ),
                },
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text};

    #[test]
    fn unsupported_sections_are_skipped_whole_with_one_error() {
        let im = import_text(
            "mailers p\n  mailer a 127.0.0.1:1024\n  mailer b 127.0.0.1:1025\nglobal\n  maxconn 7\n",
        );
        let e = errors(&im);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].line, 1);
        assert!(e[0].what.contains("unsupported section `mailers p`"));
        assert_eq!(
            im.config.global.maxconn, 7,
            "the next section is read again"
        );
    }

    #[test]
    fn a_directive_before_any_section_is_an_error() {
        let im = import_text("maxconn 5\nglobal\n  maxconn 6\n");
        let e = errors(&im);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].line, 1);
        assert!(e[0].what.contains("outside any section"));
        assert_eq!(im.config.global.maxconn, 6);
    }
}
