//! Server addresses that name a unix stream socket instead of `HOST:PORT`, written as HAProxy
//! writes them: `unix@/run/app.sock`, a bare absolute path `/run/app.sock`, or `abns@name` (a
//! name in Linux's abstract namespace). The daemon's transport connects them; the simulator,
//! which models TCP only, refuses them by name.

/// Longest path or abstract name: `sun_path` holds 108 bytes, a path's terminating NUL or an
/// abstract name's leading one included.
pub const MAX_UNIX_NAME: usize = 107;

/// Where a unix-socket server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnixAddress<'a> {
    /// A socket file (`unix@PATH` or an absolute path).
    Path(&'a str),
    /// A name in Linux's abstract namespace (`abns@NAME`), zero-padded to the whole `sun_path`
    /// as HAProxy 2.6 binds and connects it.
    Abstract(&'a str),
}

impl UnixAddress<'_> {
    /// The unix socket `addr` names, `None` when it is a `HOST:PORT` address.
    pub fn parse(addr: &str) -> Option<UnixAddress<'_>> {
        if let Some(name) = addr.strip_prefix("abns@") {
            return Some(UnixAddress::Abstract(name));
        }
        if let Some(path) = addr.strip_prefix("unix@") {
            return Some(UnixAddress::Path(path));
        }
        addr.starts_with('/').then_some(UnixAddress::Path(addr))
    }

    /// What makes the address unusable, if anything.
    pub fn problem(&self) -> Option<String> {
        let (kind, name) = match self {
            UnixAddress::Path(p) => ("socket path", *p),
            UnixAddress::Abstract(n) => ("abstract socket name", *n),
        };
        if name.is_empty() {
            Some(format!("empty {kind}"))
        } else if name.len() > MAX_UNIX_NAME {
            Some(format!(
                "{kind} of {} bytes (at most {MAX_UNIX_NAME})",
                name.len()
            ))
        } else if name.contains('\0') {
            Some(format!("{kind} with a NUL byte"))
        } else {
            None
        }
    }
}

/// Whether a server address names a unix socket (a usable one or not).
pub fn is_unix_address(addr: &str) -> bool {
    UnixAddress::parse(addr).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_forms_parse_and_tcp_addresses_do_not() {
        use UnixAddress::*;
        assert_eq!(UnixAddress::parse("/run/a.sock"), Some(Path("/run/a.sock")));
        assert_eq!(
            UnixAddress::parse("unix@/run/a.sock"),
            Some(Path("/run/a.sock"))
        );
        assert_eq!(UnixAddress::parse("unix@rel.sock"), Some(Path("rel.sock")));
        assert_eq!(UnixAddress::parse("abns@app"), Some(Abstract("app")));
        for tcp in ["10.0.0.1:443", "db.local:5432", "[::1]:80", ""] {
            assert_eq!(UnixAddress::parse(tcp), None, "{tcp}");
        }
    }

    #[test]
    fn unusable_names_are_named() {
        let long = format!("/{}", "a".repeat(MAX_UNIX_NAME));
        for bad in ["unix@", "abns@", long.as_str(), "/a\0b"] {
            let p = UnixAddress::parse(bad).unwrap().problem();
            assert!(p.is_some(), "{bad:?}");
        }
        let fits = format!("/{}", "a".repeat(MAX_UNIX_NAME - 1));
        assert_eq!(UnixAddress::parse(&fits).unwrap().problem(), None);
    }
}
