//! Stick tables and stick rules: `stick-table type|len|size|expire|nopurge`, `stick on|match|
//! store-request|store-response SAMPLE [table T] [if|unless COND]`, and the samples tether reads.

use super::proxy::Draft;
use super::Importer;
use crate::haproxy::lexer::Directive;
use tether_core::config::{
    parse_duration, parse_size, Backend, Sample, StickAction, StickKeyType, StickRule,
};

impl Importer<'_> {
    /// `stick-table ARGS...`: the backend's table.
    pub(super) fn stick_table(&mut self, d: &Directive, backend: &mut Backend) {
        let mut i = 1;
        let table = &mut backend.stick_table;
        table.nopurge = false;
        while i < d.words.len() {
            let key = d.word(i);
            let val = d.word(i + 1).to_string();
            match key {
                "type" => {
                    table.key_type = self.key_type(d, &val);
                    if table.key_type == StickKeyType::Ip {
                        table.key_len = 4;
                    }
                    i += 2;
                }
                "len" => {
                    match val.parse() {
                        Ok(n) => table.key_len = n,
                        Err(_) => self.error(
                            d.line,
                            format!("stick-table len `{val}`"),
                            "not a whole number",
                            "len 32",
                        ),
                    }
                    i += 2;
                }
                "size" => {
                    match parse_size(&val) {
                        Ok(n) => table.size = n,
                        Err(e) => self.error(
                            d.line,
                            format!("stick-table size: {e}"),
                            "HAProxy rejects it",
                            "size 60k",
                        ),
                    }
                    i += 2;
                }
                "expire" => {
                    match parse_duration(&val) {
                        Ok(t) => table.expire = t,
                        Err(e) => self.error(
                            d.line,
                            format!("stick-table expire: {e}"),
                            "HAProxy rejects it",
                            "expire 60m",
                        ),
                    }
                    i += 2;
                }
                "nopurge" => {
                    table.nopurge = true;
                    i += 1;
                }
                "peers" => {
                    self.peers.uses.push((d.line, val.clone()));
                    table.peers = Some(val);
                    i += 2;
                }
                other => {
                    self.error(
                        d.line,
                        format!("unsupported stick-table argument `{other}`"),
                        "tether tables store key → server only (no counters)",
                        "stick-table type binary len 32 size 60k expire 60m",
                    );
                    i += 2;
                }
            }
        }
    }

    /// `type binary|ip|string` (anything else is an error, read as binary).
    fn key_type(&mut self, d: &Directive, val: &str) -> StickKeyType {
        match val {
            "binary" => StickKeyType::Binary,
            "ip" => StickKeyType::Ip,
            "string" => StickKeyType::String,
            _ => {
                self.error(
                    d.line,
                    format!("stick-table type `{val}` is not supported"),
                    "tether keys are binary, ip or string",
                    "stick-table type binary len 32 size 60k expire 60m",
                );
                StickKeyType::Binary
            }
        }
    }

    /// `stick ...`: a rule, kept with its line for the rule advice.
    pub(super) fn stick(&mut self, p: &mut Draft, d: &Directive) {
        if let Some(rule) = self.stick_rule(d, &p.acls) {
            p.back_origins
                .push((format!(".haproxy.stick[{}]", p.rules.stick.len()), d.line));
            p.lines.stick.push(d.line);
            p.rules.stick.push(rule);
        }
    }

    /// The sample a rule reads: `payload_lv(OFFSET,LEN)` (any `req.`/`res.` spelling),
    /// `req_ssl_sni` or `src`.
    fn sample(&mut self, d: &Directive, text: &str) -> Option<Sample> {
        let lv = text
            .strip_prefix("req.")
            .or_else(|| text.strip_prefix("res."))
            .or_else(|| text.strip_prefix("req_"))
            .unwrap_or(text);
        if let Some(args) = lv
            .strip_prefix("payload_lv(")
            .and_then(|r| r.strip_suffix(')'))
        {
            if let Ok(s) = format!("payload-lv({args})").parse::<Sample>() {
                return Some(s);
            }
        }
        match text {
            "req_ssl_sni" | "req.ssl_sni" => Some(Sample::Sni),
            "src" => Some(Sample::Src),
            _ => {
                let why = if text.contains("mqtt") {
                    "tether reads payload_lv(OFFSET,LEN), req.ssl_sni and src; it does not parse \
                     MQTT, so it cannot stick a client ID to a broker"
                } else {
                    "tether reads payload_lv(OFFSET,LEN), req.ssl_sni and src"
                };
                self.error(
                    d.line,
                    format!("unsupported sample `{text}`"),
                    why,
                    format!(
                        "tether cannot stick on `{text}`: keep this backend on HAProxy (`stick \
                         on src` would stick the client address instead, a different affinity)"
                    ),
                );
                None
            }
        }
    }

    fn stick_rule(&mut self, d: &Directive, acls: &super::acl::Acls) -> Option<StickRule> {
        let action = match d.word(1) {
            "on" => StickAction::On,
            "match" => StickAction::Match,
            "store-request" => StickAction::StoreRequest,
            "store-response" => StickAction::StoreResponse,
            _ => {
                self.unsupported(d, "a stick rule");
                return None;
            }
        };
        let sample = self.sample(d, d.word(2))?;
        let mut at = 3;
        if d.word(3) == "table" {
            self.error(
                d.line,
                "stick rules on another backend's table are not supported",
                "tether keeps one table per backend",
                "remove `table NAME`",
            );
            at = 5;
        }
        let when = self.condition(d, at, acls)?;
        Some(StickRule {
            action,
            sample,
            when,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text};
    use std::time::Duration;
    use tether_core::config::{Condition, Sample, StickAction, StickKeyType};

    fn backend(lines: &str) -> super::super::Import {
        import_text(&format!(
            "backend b\n  timeout connect 1s\n  timeout server 1s\n  tcp-request inspect-delay 5s\n\
             {lines}  server s1 127.0.0.1:8443\n"
        ))
    }

    #[test]
    fn table_arguments() {
        let im = backend("  stick-table type ip size 60k expire 30m nopurge\n");
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        let t = &im.config.backends[0].stick_table;
        assert_eq!(t.key_type, StickKeyType::Ip);
        assert_eq!(t.key_len, 4, "ip keys are 4 bytes");
        assert_eq!(t.size, 60 * 1024);
        assert_eq!(t.expire, Duration::from_secs(1800));
        assert!(t.nopurge);
        let im = backend("  stick-table type string len 12\n");
        let t = &im.config.backends[0].stick_table;
        assert_eq!(
            (t.key_type, t.key_len, t.nopurge),
            (StickKeyType::String, 12, false)
        );
    }

    #[test]
    fn bad_table_arguments_are_errors() {
        let im = backend("  stick-table type integer len x size big expire later store gpc0\n");
        let what: Vec<String> = errors(&im).iter().map(|f| f.what.clone()).collect();
        assert_eq!(what.len(), 5, "{what:?}");
        assert!(what[0].contains("type `integer`"));
        assert!(what[4].contains("`store`"));
    }

    #[test]
    fn rules_keep_action_sample_and_condition() {
        let im = backend(
            "  stick-table type binary len 32 size 1k\n  acl hello req_ssl_hello_type 1\n  \
             stick on req.payload_lv(43,1) if hello\n  stick match req_ssl_sni\n  \
             stick store-request req.ssl_sni unless hello\n",
        );
        assert!(errors(&im).is_empty(), "{:?}", im.findings);
        let r = &im.config.backends[0].haproxy.as_ref().unwrap().stick;
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].action, StickAction::On);
        assert_eq!(
            r[0].sample,
            Sample::PayloadLv {
                offset: 43,
                len_size: 1
            }
        );
        assert_eq!(r[0].when, Condition::ClientHello);
        assert_eq!(
            (r[1].action, &r[1].sample),
            (StickAction::Match, &Sample::Sni)
        );
        assert_eq!(r[1].when, Condition::Always);
        assert_eq!(r[2].when, Condition::Not(Box::new(Condition::ClientHello)));
    }

    #[test]
    fn unsupported_rules_are_errors() {
        let im = backend(
            "  stick-table type binary len 32 size 1k\n  stick forget src\n  stick on base32\n  \
             stick on src table other\n",
        );
        let e: Vec<usize> = errors(&im).iter().map(|f| f.line).collect();
        assert_eq!(e, [6, 7, 8]);
    }

    /// Issue 19 defect 3: an MQTT client-ID stick rule was "fixed" to the TLS session ID.
    #[test]
    fn an_mqtt_stick_rule_says_tether_cannot_instead_of_a_wrong_fix() {
        let im = backend(
            "  stick-table type string len 32 size 100k expire 30m\n  \
             stick on req.payload(0,0),mqtt_field_value(connect,client_identifier)\n",
        );
        let e = errors(&im);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].why.contains("MQTT"), "{}", e[0].why);
        assert!(
            e[0].fix.starts_with("tether cannot stick on"),
            "{}",
            e[0].fix
        );
        assert!(!e[0].fix.contains("payload_lv(43,1)"), "{}", e[0].fix);
    }
}
