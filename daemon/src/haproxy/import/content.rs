//! `tcp-request` / `tcp-response`: the inspect delays and the content accept/reject rules,
//! kept as written so HAProxy's evaluation order (and its quirks) survives the import.

use super::proxy::Draft;
use super::Importer;
use crate::haproxy::lexer::Directive;
use tether_core::config::{ContentAction, ContentRule};

impl Importer<'_> {
    /// `tcp-request|tcp-response inspect-delay T` or `... content accept|reject [COND]`.
    pub(super) fn content_rule(&mut self, p: &mut Draft, d: &Directive) {
        let request = d.keyword() == "tcp-request";
        match d.word(1) {
            "inspect-delay" => self.inspect_delay(p, d, request),
            "content" if p.back => {
                let action = match d.word(2) {
                    "accept" => Some(ContentAction::Accept),
                    "reject" => Some(ContentAction::Reject),
                    _ => None,
                };
                match (action, self.condition(d, 3, &p.acls)) {
                    (Some(action), Some(when)) => {
                        let rule = ContentRule { action, when };
                        if request {
                            p.lines.request_rules = d.line;
                            p.rules.request_content.push(rule);
                        } else {
                            p.rules.response_content.push(rule);
                        }
                    }
                    (None, _) => self.unsupported(d, &p.context()),
                    _ => {}
                }
            }
            _ => self.unsupported(d, &p.context()),
        }
    }

    /// How long the request (or response) rules wait for data; on a frontend the request delay
    /// is also how long tether waits for the ClientHello.
    fn inspect_delay(&mut self, p: &mut Draft, d: &Directive, request: bool) {
        if let Some(t) = self.duration(d, 2) {
            if request {
                p.rules.request_inspect_delay = Some(t);
                if p.front {
                    p.frontend.inspect_delay = t;
                }
            } else {
                p.rules.response_inspect_delay = Some(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text, BACKEND};
    use std::time::Duration;
    use tether_core::config::{Condition, ContentAction};

    #[test]
    fn delays_and_rules_land_on_their_side() {
        let im = import_text(
            "listen l\n  bind :9443\n  timeout client 1m\n  timeout connect 1s\n  \
             timeout server 1s\n  tcp-request inspect-delay 2s\n  \
             tcp-response inspect-delay 3s\n  tcp-request content reject\n  \
             tcp-response content accept if { rep_ssl_hello_type 2 }\n  \
             server s1 127.0.0.1:8443\n",
        );
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
        assert_eq!(im.config.frontends[0].inspect_delay, Duration::from_secs(2));
        let r = im.config.backends[0].haproxy.as_ref().unwrap();
        assert_eq!(r.request_inspect_delay, Some(Duration::from_secs(2)));
        assert_eq!(r.response_inspect_delay, Some(Duration::from_secs(3)));
        assert_eq!(r.request_content[0].action, ContentAction::Reject);
        assert_eq!(r.request_content[0].when, Condition::Always);
        assert_eq!(r.response_content[0].when, Condition::ServerHello);
    }

    #[test]
    fn a_frontend_keeps_the_delay_and_refuses_content_rules() {
        let im = import_text(&format!(
            "frontend f\n  bind :9443\n  default_backend b\n  timeout client 1m\n  \
             tcp-request inspect-delay 4s\n  tcp-request content accept\n  \
             tcp-request connection reject\n{BACKEND}"
        ));
        assert_eq!(im.config.frontends[0].inspect_delay, Duration::from_secs(4));
        let e: Vec<usize> = errors(&im).iter().map(|f| f.line).collect();
        assert_eq!(e, [6, 7]);
    }
}
