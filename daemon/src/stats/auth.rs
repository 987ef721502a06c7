//! HTTP Basic authentication for the stats listener, and the rule deciding who may change state.
//!
//! The password comes from a file or an environment variable, or, for an imported haproxy.cfg,
//! from the `stats auth user:password` text itself (with a warning); it is kept in a [`Secret`]
//! that never prints, and is compared in constant time. Admin actions
//! (server state, stick-table edits) need authentication unless `admin-without-auth` opens them
//! explicitly: a loopback bind does not protect them from the operator's own browser.

use anyhow::{bail, Context as _, Result};
use tether_core::config::StatsAuth;

/// A password that never appears in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps a password.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The credentials the listener accepts.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: Secret,
}

impl Credentials {
    /// Reads the password named by the config: the first line of `password-file`, the value of
    /// `password-env`, or the clear text imported from HAProxy's `stats auth user:password`
    /// (served as HAProxy does, with a warning). Errors name the source, never the value.
    pub fn load(auth: &StatsAuth) -> Result<Self> {
        let password = match (&auth.password_file, &auth.password_env, &auth.password) {
            (Some(path), _, _) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("stats auth: reading password-file {path}"))?;
                text.lines().next().unwrap_or("").to_string()
            }
            (None, Some(var), _) => std::env::var(var).with_context(|| {
                format!("stats auth: environment variable {var} is not set (password-env)")
            })?,
            (None, None, Some(clear)) => {
                tracing::warn!(
                    user = %auth.user,
                    "stats auth: the password is written in clear in the configuration; \
                     serving with it as HAProxy does. Move it to a password-file (mode 0600)"
                );
                clear.0.clone()
            }
            (None, None, None) => {
                bail!(
                    "stats auth: set password-file or password-env for user {}",
                    auth.user
                )
            }
        };
        if password.is_empty() {
            bail!("stats auth: the password for user {} is empty", auth.user);
        }
        Ok(Credentials {
            user: auth.user.clone(),
            password: Secret::new(password.into_bytes()),
        })
    }

    /// Does an `Authorization` header value carry these credentials?
    pub fn accepts(&self, authorization: Option<&str>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some(encoded) = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
        else {
            return false;
        };
        let Some(decoded) = base64_decode(encoded.trim()) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        // Evaluate both comparisons whatever the first says.
        let user_ok = constant_time_eq(user, self.user.as_bytes());
        let password_ok = constant_time_eq(password, &self.password.0);
        user_ok & password_ok
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// Whether a state-changing request may proceed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AdminDecision {
    /// Go ahead.
    Allowed,
    /// `admin = true` is not set in `[stats]`.
    Disabled,
    /// The listener is reachable from other hosts and nobody authenticated.
    NeedsAuth,
}

impl AdminDecision {
    /// What to tell the client when refused.
    pub fn explain(self) -> &'static str {
        match self {
            AdminDecision::Allowed => "allowed",
            AdminDecision::Disabled => {
                "admin actions are disabled; set admin = true in [stats] to allow them"
            }
            AdminDecision::NeedsAuth => {
                "admin actions need authentication; add auth = { user = ..., password-file = ... } to [stats] (or admin-without-auth = true if you accept that any web page could drive them)"
            }
        }
    }
}

/// The admin rule: enabled in the config, and either authenticated or explicitly opened
/// without credentials (`admin-without-auth`). A loopback bind is no longer enough: any web
/// page the operator's browser opens can reach 127.0.0.1.
pub fn admin_decision(
    admin_enabled: bool,
    authenticated: bool,
    without_auth: bool,
) -> AdminDecision {
    if !admin_enabled {
        AdminDecision::Disabled
    } else if authenticated || without_auth {
        AdminDecision::Allowed
    } else {
        AdminDecision::NeedsAuth
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (for `Authorization: Basic`).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` on any invalid character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits & 0xff) as u8);
        }
    }
    Some(out)
}

/// The `Authorization` header value for `user:password`.
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64_encode(format!("{user}:{password}").as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn creds() -> Credentials {
        Credentials {
            user: "admin".into(),
            password: Secret::new(b"s3cret:x".to_vec()),
        }
    }

    #[test]
    fn accepts_only_the_right_pair() {
        let c = creds();
        assert!(c.accepts(Some(&basic_authorization("admin", "s3cret:x"))));
        assert!(!c.accepts(Some(&basic_authorization("admin", "s3cret"))));
        assert!(!c.accepts(Some(&basic_authorization("root", "s3cret:x"))));
        assert!(!c.accepts(Some("Bearer abc")));
        assert!(!c.accepts(Some("Basic !!!")));
        assert!(!c.accepts(None));
    }

    #[test]
    fn an_imported_clear_password_is_served() {
        let auth = StatsAuth {
            user: "admin".into(),
            password_file: None,
            password_env: None,
            password: Some(tether_core::config::ClearPassword("secret".into())),
        };
        let c = Credentials::load(&auth).unwrap();
        assert!(c.accepts(Some(&basic_authorization("admin", "secret"))));
        assert!(!c.accepts(Some(&basic_authorization("admin", "secrets"))));
        let none = StatsAuth {
            password: None,
            ..auth
        };
        assert!(Credentials::load(&none).is_err());
    }

    #[test]
    fn the_password_never_prints() {
        assert!(!format!("{:?}", creds()).contains("s3cret"));
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn admin_needs_auth_even_on_loopback_unless_opened_explicitly() {
        assert_eq!(admin_decision(false, true, true), AdminDecision::Disabled);
        assert_eq!(admin_decision(true, false, false), AdminDecision::NeedsAuth);
        assert_eq!(admin_decision(true, true, false), AdminDecision::Allowed);
        assert_eq!(admin_decision(true, false, true), AdminDecision::Allowed);
    }

    proptest! {
        #[test]
        fn base64_round_trips(data in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }

        #[test]
        fn constant_time_eq_agrees_with_eq(a in proptest::collection::vec(any::<u8>(), 0..8),
                                           b in proptest::collection::vec(any::<u8>(), 0..8)) {
            prop_assert_eq!(constant_time_eq(&a, &b), a == b);
        }

        #[test]
        fn arbitrary_headers_never_panic(h in ".{0,80}") {
            let _ = creds().accepts(Some(&h));
        }
    }
}
