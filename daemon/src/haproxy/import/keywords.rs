//! Which `bind` and `server` options take a value, as HAProxy 2.6 reads them, so that an option
//! tether does not implement is reported with its value (`verify none`) and the value is never
//! read as an option of its own (`none`).

/// `bind` options followed by one value (HAProxy 2.6 `bind_kws`, TCP and SSL).
const BIND_WITH_VALUE: &[&str] = &[
    "alpn",
    "backlog",
    "ca-file",
    "ca-ignore-err",
    "ca-sign-file",
    "ca-sign-pass",
    "ca-verify-file",
    "ciphers",
    "ciphersuites",
    "client-sigalgs",
    "crl-file",
    "crt",
    "crt-ignore-err",
    "crt-list",
    "curves",
    "ecdhe",
    "gid",
    "group",
    "id",
    "interface",
    "level",
    "maxconn",
    "mode",
    "mss",
    "name",
    "namespace",
    "nice",
    "npn",
    "process",
    "proto",
    "severity-output",
    "sigalgs",
    "ssl-max-ver",
    "ssl-min-ver",
    "tcp-ut",
    "thread",
    "uid",
    "user",
    "verify",
];

/// `bind` options that make HAProxy terminate TLS on the listening side.
pub(super) const BIND_TLS: &[&str] = &[
    "ssl",
    "crt",
    "crt-list",
    "ca-file",
    "verify",
    "alpn",
    "npn",
    "ciphers",
    "ciphersuites",
    "curves",
    "ecdhe",
    "ssl-min-ver",
    "ssl-max-ver",
    "strict-sni",
    "crl-file",
    "no-tls-tickets",
    "allow-0rtt",
    "generate-certificates",
];

/// `server` (and `default-server`) options followed by one value.
const SERVER_WITH_VALUE: &[&str] = &[
    "addr",
    "agent-addr",
    "agent-inter",
    "agent-port",
    "agent-send",
    "alpn",
    "ca-file",
    "check-alpn",
    "check-proto",
    "check-sni",
    "ciphers",
    "ciphersuites",
    "cookie",
    "crl-file",
    "crt",
    "curves",
    "downinter",
    "error-limit",
    "fall",
    "fastinter",
    "id",
    "init-addr",
    "inter",
    "log-proto",
    "max-reuse",
    "maxconn",
    "maxqueue",
    "minconn",
    "namespace",
    "npn",
    "observe",
    "on-error",
    "on-marked-down",
    "on-marked-up",
    "pool-low-conn",
    "pool-max-conn",
    "pool-purge-delay",
    "port",
    "proto",
    "proxy-v2-options",
    "redir",
    "resolve-net",
    "resolve-opts",
    "resolve-prefer",
    "resolvers",
    "rise",
    "set-proxy-v2-tlv-fmt",
    "shard",
    "sigalgs",
    "slowstart",
    "sni",
    "source",
    "ssl-max-ver",
    "ssl-min-ver",
    "tcp-ut",
    "track",
    "usesrc",
    "verify",
    "verifyhost",
    "weight",
    "ws",
];

/// A server-side option word that HAProxy would read as an option, for spotting one written
/// where the address belongs.
pub(super) fn is_server_option(word: &str) -> bool {
    SERVER_WITH_VALUE.contains(&word)
        || matches!(
            word,
            "check"
                | "no-check"
                | "backup"
                | "disabled"
                | "enabled"
                | "ssl"
                | "check-ssl"
                | "send-proxy"
                | "send-proxy-v2"
                | "send-proxy-v2-ssl"
                | "send-proxy-v2-ssl-cn"
                | "check-send-proxy"
                | "agent-check"
                | "resolve-prefer"
        )
}

/// One option with its value, if it takes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Opt<'a> {
    /// The option keyword.
    pub(super) name: &'a str,
    /// Its value (`""` when it takes none, or the line ends where it belongs).
    pub(super) value: &'a str,
    /// Whether the option takes a value.
    pub(super) takes_value: bool,
}

impl Opt<'_> {
    /// The option as written (`verify none`).
    pub(super) fn text(&self) -> String {
        if self.takes_value {
            format!("{} {}", self.name, self.value)
        } else {
            self.name.to_string()
        }
    }
}

/// Groups `words` into options, each with its value when its keyword takes one.
fn options<'a>(words: &'a [String], with_value: &[&str]) -> Vec<Opt<'a>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let name = words[i].as_str();
        let takes_value = with_value.contains(&name);
        let value = if takes_value {
            i += 1;
            words.get(i).map(String::as_str).unwrap_or("")
        } else {
            ""
        };
        out.push(Opt {
            name,
            value,
            takes_value,
        });
        i += 1;
    }
    out
}

/// The options of a `bind` line after its address.
pub(super) fn bind_options(words: &[String]) -> Vec<Opt<'_>> {
    options(words, BIND_WITH_VALUE)
}

/// The options of a `server` line after its address (or of a `default-server` line).
pub(super) fn server_options(words: &[String]) -> Vec<Opt<'_>> {
    options(words, SERVER_WITH_VALUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn values_stay_with_their_option() {
        let w = words("ssl crt /a.pem verify required ca-file /ca.pem accept-proxy");
        let o: Vec<String> = bind_options(&w).iter().map(Opt::text).collect();
        assert_eq!(
            o,
            [
                "ssl",
                "crt /a.pem",
                "verify required",
                "ca-file /ca.pem",
                "accept-proxy"
            ]
        );
        let w = words("check port 8008 verify none send-proxy-v2 inter");
        let o: Vec<String> = server_options(&w).iter().map(Opt::text).collect();
        assert_eq!(
            o,
            [
                "check",
                "port 8008",
                "verify none",
                "send-proxy-v2",
                "inter "
            ]
        );
    }
}
