//! Cross-site request forgery on the admin actions. A browser that holds the operator's cached
//! Basic credentials sends them with any request a hostile page makes it send, and a form post
//! (`application/x-www-form-urlencoded`, `text/plain`) needs no CORS preflight. So a state-
//! changing POST must (1) come from the stats page's own origin, by `Origin` or else `Referer`
//! (a missing pair, `Origin: null` or another origin is refused), and (2) carry the page's admin
//! token or a header no cross-site form can set (`X-Tether-Admin`), which would force a
//! preflight tether never approves. PUT and DELETE (the table API) always force a preflight;
//! they are refused only when a browser says they come from elsewhere.

use std::fmt::Write as _;

use super::auth::constant_time_eq;
use super::server::Request;

/// The header a script or CLI may send instead of the form token.
pub const ADMIN_HEADER: &str = "x-tether-admin";

/// A per-process secret the page's admin forms carry; a cross-site page cannot read it.
#[derive(Clone)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// 128 random bits from the kernel.
    pub fn generate() -> std::io::Result<Self> {
        use std::io::Read as _;
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        let mut hex = String::with_capacity(32);
        for b in bytes {
            let _ = write!(hex, "{b:02x}");
        }
        Ok(AdminToken(hex))
    }

    /// The value the page writes into its forms.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn matches(&self, offered: &str) -> bool {
        constant_time_eq(offered.as_bytes(), self.0.as_bytes())
    }
}

/// Why a state-changing request was refused as possibly cross-site.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Forged {
    /// `Origin: null` (a sandboxed frame, a file, a redirect chain).
    #[error("refused: Origin null (send the request from the stats page itself)")]
    NullOrigin,
    /// An `Origin` or `Referer` naming another site.
    #[error("refused: the request comes from another origin than the stats page")]
    CrossOrigin,
    /// Neither `Origin` nor `Referer`.
    #[error("refused: a POST without Origin or Referer (send one naming the stats page)")]
    NoOrigin,
    /// A simple request without the page's token.
    #[error("refused: missing admin token (use the stats page's form, or send X-Tether-Admin: 1)")]
    NoToken,
}

/// Checks a state-changing request; `scheme` is `http` or `https` as the listener serves.
pub fn check(req: &Request, scheme: &str, token: &AdminToken) -> Result<(), Forged> {
    let claimed = origin_of(req);
    if req.method != "POST" {
        // PUT and DELETE cannot be sent cross-site without a preflight; a CLI sends no Origin.
        return match claimed {
            Some(o) => same_origin(req, scheme, o),
            None => Ok(()),
        };
    }
    same_origin(req, scheme, claimed.ok_or(Forged::NoOrigin)?)?;
    let by_header = req.header(ADMIN_HEADER).is_some();
    let by_token = req
        .form()
        .iter()
        .any(|(k, v)| k == "token" && token.matches(v));
    if by_header || by_token {
        Ok(())
    } else {
        Err(Forged::NoToken)
    }
}

/// The `Origin` header, else the scheme and authority of the `Referer`.
fn origin_of(req: &Request) -> Option<&str> {
    if let Some(o) = req.header("origin") {
        return Some(o);
    }
    let referer = req.header("referer")?;
    let after_scheme = referer.find("://").map(|i| i + 3)?;
    let end = referer[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(referer.len(), |i| after_scheme + i);
    Some(&referer[..end])
}

fn same_origin(req: &Request, scheme: &str, origin: &str) -> Result<(), Forged> {
    if origin == "null" {
        return Err(Forged::NullOrigin);
    }
    let host = req.header("host").ok_or(Forged::CrossOrigin)?;
    let expected_len = scheme.len() + 3 + host.len();
    let same = origin.len() == expected_len
        && origin[..scheme.len()].eq_ignore_ascii_case(scheme)
        && origin[scheme.len()..].starts_with("://")
        && origin[scheme.len() + 3..].eq_ignore_ascii_case(host);
    if same {
        Ok(())
    } else {
        Err(Forged::CrossOrigin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(headers: &[(&str, &str)], body: &str) -> Request {
        Request {
            method: "POST".into(),
            path: "/".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
            ..Request::default()
        }
    }

    const HOST: (&str, &str) = ("host", "127.0.0.1:1936");

    #[test]
    fn the_pages_own_form_passes() {
        let t = AdminToken("abc".into());
        let body = "b=app&s=s1&action=maint&token=abc";
        let own = post(&[HOST, ("origin", "http://127.0.0.1:1936")], body);
        assert_eq!(check(&own, "http", &t), Ok(()));
        let by_referer = post(&[HOST, ("referer", "http://127.0.0.1:1936/;st=x")], body);
        assert_eq!(check(&by_referer, "http", &t), Ok(()));
        let tls = post(&[HOST, ("origin", "https://127.0.0.1:1936")], body);
        assert_eq!(check(&tls, "https", &t), Ok(()));
        assert_eq!(check(&tls, "http", &t), Err(Forged::CrossOrigin));
    }

    #[test]
    fn forged_posts_are_refused() {
        let t = AdminToken("abc".into());
        let good = "b=app&s=s1&action=maint&token=abc";
        let cases = [
            (
                post(&[HOST, ("origin", "http://evil.example")], good),
                Forged::CrossOrigin,
            ),
            (post(&[HOST, ("origin", "null")], good), Forged::NullOrigin),
            (post(&[HOST], good), Forged::NoOrigin),
            (
                post(
                    &[HOST, ("referer", "http://127.0.0.1:1936.evil.example/")],
                    good,
                ),
                Forged::CrossOrigin,
            ),
            (
                post(
                    &[HOST, ("origin", "http://127.0.0.1:1936")],
                    "b=app&s=s1&action=maint",
                ),
                Forged::NoToken,
            ),
            (
                post(
                    &[HOST, ("origin", "http://127.0.0.1:1936")],
                    "b=app&s=s1&action=maint&token=abd",
                ),
                Forged::NoToken,
            ),
        ];
        for (req, why) in cases {
            assert_eq!(check(&req, "http", &t), Err(why), "{:?}", req.headers);
        }
    }

    #[test]
    fn a_custom_header_replaces_the_token_and_put_needs_no_origin() {
        let t = AdminToken("abc".into());
        let scripted = post(
            &[
                HOST,
                ("origin", "http://127.0.0.1:1936"),
                (ADMIN_HEADER, "1"),
            ],
            "b=app&s=s1&action=maint",
        );
        assert_eq!(check(&scripted, "http", &t), Ok(()));
        let mut put = post(&[HOST], "");
        put.method = "PUT".into();
        assert_eq!(
            check(&put, "http", &t),
            Ok(()),
            "the table CLI sends no Origin"
        );
        put.headers
            .push(("origin".into(), "http://evil.example".into()));
        assert_eq!(check(&put, "http", &t), Err(Forged::CrossOrigin));
    }

    #[test]
    fn tokens_are_random_and_hidden_from_debug() {
        let a = AdminToken::generate().unwrap();
        let b = AdminToken::generate().unwrap();
        assert_eq!(a.as_str().len(), 32);
        assert_ne!(a.as_str(), b.as_str());
        assert!(!format!("{a:?}").contains(a.as_str()));
    }
}
