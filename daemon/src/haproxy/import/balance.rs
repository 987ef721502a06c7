//! `balance` and `hash-balance-factor`: how a backend picks a server when no stick rule does.

use super::proxy::Draft;
use super::Importer;
use crate::finding::Severity;
use crate::haproxy::lexer::Directive;
use tether_core::balance::random;
use tether_core::config::{BalanceAlgorithm, HashKey};

impl Importer<'_> {
    /// `balance roundrobin|static-rr|leastconn|first|source|random[(<draws>)]`.
    pub(super) fn balance(&mut self, p: &mut Draft, d: &Directive) {
        let word = d.word(1);
        if word == "random" || word.starts_with("random(") {
            return self.balance_random(p, d);
        }
        let backend = &mut p.backend;
        match word {
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

    /// `balance random` or `random(<draws>)`, read as HAProxy 2.6 does (`random()` is 2).
    fn balance_random(&mut self, p: &mut Draft, d: &Directive) {
        let arg = d.word(1)["random".len()..].to_string();
        let draws =
            match arg.strip_prefix('(') {
                None if arg.is_empty() => None,
                Some(")") => None,
                Some(inner) => match inner.strip_suffix(')').map(str::parse::<u32>) {
                    Some(Ok(n)) if (1..=random::MAX_DRAWS).contains(&n) => Some(n),
                    _ => return self.error(
                        d.line,
                        format!(
                            "`{}`: the number of draws must be a whole number in 1..={}",
                            d.text(),
                            random::MAX_DRAWS
                        ),
                        "HAProxy rejects a missing parenthesis or a count below 1; tether bounds \
                         the draws of each pick",
                        "balance random(2)",
                    ),
                },
                None => return self.unsupported(d, &p.context()),
            };
        p.backend.balance = BalanceAlgorithm::Random;
        p.backend.random_draws = draws.filter(|&n| n != tether_core::balance::DEFAULT_DRAWS);
    }

    /// `hash-type consistent|map-based [FUNCTION] [avalanche]`: tether's hash balancing is
    /// consistent; `map-based` is honoured as consistent, with a warning saying what differs.
    pub(super) fn hash_type(&mut self, d: &Directive) {
        match d.word(1) {
            "consistent" => {}
            "map-based" => self.finding(
                Severity::Warning,
                d.line,
                "`hash-type map-based` is balanced with consistent hashing",
                "tether hashes consistently only: each client still lands on one stable server, \
                 but not on the server HAProxy's map-based table would pick, and a server going \
                 down moves only its own clients",
                "hash-type consistent",
            ),
            _ => self.error(
                d.line,
                format!("`{}`: unknown hash type", d.text()),
                "HAProxy accepts map-based or consistent",
                "hash-type consistent",
            ),
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

    /// `balance random` (issue 19's corpus): HAProxy's default of two draws, or `random(N)`.
    #[test]
    fn random_and_its_draws_are_imported() {
        for (line, draws) in [
            ("balance random", None),
            ("balance random()", None),
            ("balance random(2)", None),
            ("balance random(5)", Some(5)),
        ] {
            let im = balanced(line);
            assert!(im.findings.is_empty(), "{line}: {:?}", im.findings);
            assert_eq!(im.config.backends[0].balance, BalanceAlgorithm::Random);
            assert_eq!(im.config.backends[0].random_draws, draws, "{line}");
        }
        for bad in [
            "random(0)",
            "random(2",
            "random(x)",
            "random(1000)",
            "randomly",
        ] {
            let e = errors(&balanced(&format!("balance {bad}")));
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
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

    #[test]
    fn hash_type_consistent_is_what_tether_does() {
        let im = balanced("balance source\n  hash-type consistent sdbm avalanche");
        assert!(im.findings.is_empty(), "{:?}", im.findings);
        let im = balanced("balance source\n  hash-type map-based");
        let w: Vec<usize> = im.findings.iter().map(|f| f.line).collect();
        assert_eq!(w, [5]);
        assert!(errors(&im).is_empty());
        assert_eq!(errors(&balanced("hash-type modulo")).len(), 1);
    }
}
