//! The one path from haproxy.cfg text to a configuration tether runs: [`import()`], then, when
//! HAProxy would accept the file, the same [`Config::validate`] a native config goes through.
//! `tether check`, `tether convert`, `tether run --haproxy` and the simulator all call [`load`],
//! so `check` passes exactly the files `run` starts with.

use super::import::{import, Import};
use crate::finding::{Finding, Severity};
use tether_core::config::Config;

/// Imports a haproxy.cfg and validates the result; each validation problem becomes an error
/// finding on the haproxy.cfg line that wrote the setting (0 when no line is known).
///
/// Validation only runs on an import without errors: those already say what to fix, and the
/// native problems they cause (a server without an address...) would repeat them.
pub fn load(file: &str, text: &str) -> Import {
    let mut im = import(file, text);
    if im.has_errors() {
        return im;
    }
    let mut problems = validation_findings(file, &im);
    if problems.is_empty() {
        problems.extend(build_finding(file, &im));
    }
    if problems.is_empty() {
        let line_of = |path: &str| im.origins.line_of(path);
        problems.extend(crate::check::routes::route_findings(
            file, &im.config, &line_of,
        ));
        problems.extend(unresolvable_findings(file, &im));
    }
    if !problems.is_empty() {
        im.findings.extend(problems);
        im.findings.sort_by_key(|f| (f.line, f.severity));
    }
    im
}

/// What `run` would still refuse after validation: the runtime build (rules the engine does not
/// evaluate, list files gone...). `check` calls this too, so the two never disagree.
fn build_finding(file: &str, im: &Import) -> Option<Finding> {
    if let Some(f) = ca_file_finding(file, im) {
        return Some(f);
    }
    let cas = crate::ca_files::read(&im.config).ok()?;
    let e = tether_core::engine::runtime::build_with_cas(&im.config, None, 0, &cas).err()?;
    Some(Finding::new(
        Severity::Error,
        file,
        0,
        e.to_string(),
        "tether refuses to run this config (`run --haproxy` stops here)",
        "see the message for what to write instead",
    ))
}

/// Servers whose host name the system resolver does not know now while their `init-addr`
/// (default `last,libc`) has no fallback (`none` or an IP). Without `resolvers` HAProxy 2.6
/// refuses to start ("could not resolve address"), and so does `run`, since `check` and `run`
/// both come here; with `resolvers` it warns and starts the server in maintenance until DNS
/// answers, as tether does.
fn unresolvable_findings(file: &str, im: &Import) -> Vec<Finding> {
    use std::net::ToSocketAddrs;
    use tether_core::config::resolvers::{default_init_addr, InitAddr};
    let mut out = Vec::new();
    for (i, b) in im.config.backends.iter().enumerate() {
        for (j, s) in b.servers.iter().enumerate() {
            let Some((host, _)) = s.address.rsplit_once(':') else {
                continue;
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.parse::<std::net::IpAddr>().is_ok() {
                continue;
            }
            let init = s.init_addr.clone().unwrap_or_else(default_init_addr);
            let fallback = init
                .iter()
                .any(|m| matches!(m, InitAddr::None | InitAddr::Ip(_)));
            if fallback || !init.contains(&InitAddr::Libc) && s.resolvers.is_some() {
                continue;
            }
            if (host, 0)
                .to_socket_addrs()
                .is_ok_and(|mut a| a.next().is_some())
            {
                continue;
            }
            let line = im.origins.line_of(&format!("backend[{i}].server[{j}]"));
            let what = format!("server {}: cannot resolve `{host}` at startup", s.name);
            out.push(match &s.resolvers {
                Some(_) => Finding::new(
                    Severity::Warning,
                    file,
                    line,
                    what,
                    "it starts in maintenance until its resolvers answer, as in HAProxy \
                     (\"disabling server\")",
                    "correct the name, or write `init-addr last,libc,none` to say so",
                ),
                None => Finding::new(
                    Severity::Error,
                    file,
                    line,
                    what,
                    "HAProxy refuses to start (\"could not resolve address\"), and so does tether",
                    match im.config.resolvers.first() {
                        Some(r) => format!(
                            "correct the name, or add `resolvers {} init-addr last,libc,none` so \
                             the server waits in maintenance until DNS knows it",
                            r.name
                        ),
                        None => "correct the name, or declare a `resolvers` section and add \
                                 `resolvers NAME init-addr last,libc,none` to the server so it \
                                 waits in maintenance until DNS knows it"
                            .to_string(),
                    },
                ),
            });
        }
    }
    out
}

/// A `ca-file` that cannot be read, on the line of the first server naming it (HAProxy refuses
/// to start too: "unable to load").
fn ca_file_finding(file: &str, im: &Import) -> Option<Finding> {
    for (i, b) in im.config.backends.iter().enumerate() {
        for (j, s) in b.servers.iter().enumerate() {
            let Some(ca) = b.check_tls(s).and_then(|t| t.ca_file.as_deref()) else {
                continue;
            };
            if let Err(e) = std::fs::read(ca) {
                return Some(Finding::new(
                    Severity::Error,
                    file,
                    im.origins.line_of(&format!("backend[{i}].server[{j}]")),
                    format!("server {}: cannot read ca-file {ca}: {e}", s.name),
                    "HAProxy refuses to start too (\"unable to load\"), and so does tether",
                    "write the path of a readable PEM file of CA certificates",
                ));
            }
        }
    }
    None
}

/// [`Config::validate`] on the imported config, as findings located in the haproxy.cfg.
fn validation_findings(file: &str, im: &Import) -> Vec<Finding> {
    Config::validate(&im.config)
        .into_iter()
        .map(|p| {
            Finding::new(
                Severity::Error,
                file,
                im.origins.line_of(&p.key_path),
                format!("{}: {}", p.key_path, p.message),
                "tether refuses to run this config (`run --haproxy` and `convert` stop here)",
                p.fix,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::load;
    use crate::finding::Severity;

    const CFG: &str = "global\n  maxconn 100\ndefaults\n  timeout connect 5s\n  \
        timeout client 30s\n  timeout server 30s\nfrontend f\n  bind 127.0.0.1:9443\n  \
        default_backend b\nbackend b\n  stick-table type ip size 1m expire 30m\n  \
        server s1 127.0.0.1:8443 check\n  server s2 127.0.0.1:8444\n";

    /// The error findings as (line, what).
    fn errors(text: &str) -> Vec<(usize, String)> {
        load("v.cfg", text)
            .findings
            .into_iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| (f.line, f.what))
            .collect()
    }

    #[test]
    fn a_clean_config_has_no_validation_errors() {
        assert_eq!(errors(CFG), []);
    }

    #[test]
    fn validation_problems_point_at_the_line_that_wrote_them() {
        let cases = [
            (
                "  server s2 127.0.0.1:8444\n",
                "  server s2 127.0.0.1:8444 weight 300\n",
                13,
                "backend[0].server[1].weight: weight 300 above 256",
            ),
            (
                "  server s2 127.0.0.1:8444\n",
                "  server s1 127.0.0.1:8444\n",
                13,
                "backend[0].server[1].name: duplicate server name \"s1\"",
            ),
            (
                "  maxconn 100\n",
                "  maxconn 0\n",
                2,
                "global.maxconn: maxconn 0 would never accept a connection",
            ),
            (
                "  bind 127.0.0.1:9443\n",
                "  bind localhost:9443\n",
                8,
                "frontend[0].bind: invalid bind address \"localhost:9443\"",
            ),
            (
                "  stick-table type ip size 1m expire 30m\n",
                "  stick-table type ip size 1m expire 30m\n  tcp-request inspect-delay 1s\n  \
                 stick on req.payload_lv(43,1)\n",
                13,
                "backend[0].haproxy.stick[0].sample: sample payload-lv(43,1) does not fit a \
                 stick table of type Ip",
            ),
        ];
        for (from, to, line, what) in cases {
            let text = CFG.replace(from, to);
            assert_eq!(errors(&text), [(line, what.to_string())], "{to}");
        }
    }

    #[test]
    fn import_errors_are_not_repeated_by_validation() {
        let text = CFG.replace("127.0.0.1:8444", "check");
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].1.contains("has no address"), "{e:?}");
    }

    #[test]
    fn an_unresolvable_server_name_stops_run_unless_resolvers_wait_for_it() {
        let cfg = "resolvers dns\n  nameserver ns1 127.0.0.1:53\n".to_string()
            + &CFG.replace("127.0.0.1:8444", "nowhere.invalid:8444");
        let e = errors(&cfg);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, 15);
        assert!(e[0].1.contains("cannot resolve `nowhere.invalid`"), "{e:?}");
        let waits = cfg.replace("nowhere.invalid:8444", "nowhere.invalid:8444 resolvers dns");
        assert!(errors(&waits).is_empty());
        let im = load("v.cfg", &waits);
        assert!(im
            .findings
            .iter()
            .any(|f| f.severity == Severity::Warning && f.what.contains("cannot resolve")));
        let none = cfg.replace(
            "nowhere.invalid:8444",
            "nowhere.invalid:8444 resolvers dns init-addr none",
        );
        assert!(load("v.cfg", &none)
            .findings
            .iter()
            .all(|f| !f.what.contains("cannot resolve")));
        assert!(errors(&CFG.replace("127.0.0.1:8444", "localhost:8444")).is_empty());
    }
}
