//! `balance` and `hash-balance-factor`: how a backend picks a server when no stick rule does.

use super::proxy::Draft;
use super::Importer;
use crate::haproxy::lexer::Directive;
use tether_core::config::{BalanceAlgorithm, HashKey};

impl Importer<'_> {
    /// `balance roundrobin|static-rr|leastconn|first|source`.
    pub(super) fn balance(&mut self, p: &mut Draft, d: &Directive) {
        let backend = &mut p.backend;
        match d.word(1) {
            "roundrobin" | "static-rr" => backend.balance = BalanceAlgorithm::RoundRobin,
            "leastconn" => backend.balance = BalanceAlgorithm::LeastConn,
            "first" => backend.balance = BalanceAlgorithm::First,
            "source" => {
                backend.balance = BalanceAlgorithm::Hash;
                backend.hash_key = Some(HashKey::Source);
            }
            _ => self.unsupported(d, &p.context()),
        }
    }

    /// `hash-balance-factor PERCENT` (bounded load for hashing).
    pub(super) fn hash_balance_factor(&mut self, p: &mut Draft, d: &Directive) {
        p.backend.hash_balance_factor = self.number(d, 1, "hash-balance-factor 150");
        p.back_origins.push((".hash-balance-factor".into(), d.line));
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{errors, import_text};
    use tether_core::config::{BalanceAlgorithm, HashKey};

    fn balanced(line: &str) -> super::super::Import {
        import_text(&format!(
            "backend b\n  timeout connect 1s\n  timeout server 1s\n  {line}\n  \
             server s1 127.0.0.1:8443\n"
        ))
    }

    #[test]
    fn each_algorithm_maps_to_its_native_one() {
        for (line, algo, key) in [
            ("balance roundrobin", BalanceAlgorithm::RoundRobin, None),
            ("balance static-rr", BalanceAlgorithm::RoundRobin, None),
            ("balance leastconn", BalanceAlgorithm::LeastConn, None),
            ("balance first", BalanceAlgorithm::First, None),
            (
                "balance source",
                BalanceAlgorithm::Hash,
                Some(HashKey::Source),
            ),
        ] {
            let im = balanced(line);
            assert!(im.findings.is_empty(), "{line}: {:?}", im.findings);
            assert_eq!(im.config.backends[0].balance, algo, "{line}");
            assert_eq!(im.config.backends[0].hash_key, key, "{line}");
        }
    }

    #[test]
    fn unknown_algorithms_are_errors_and_the_factor_is_kept() {
        let e = errors(&balanced("balance uri"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].line, 4);
        let im = balanced("hash-balance-factor 150");
        assert_eq!(im.config.backends[0].hash_balance_factor, Some(150));
    }
}
