//! Who may see and who may act: credentials with roles, the check of each request, and the
//! refusal of a cross-site write.
//!
//! # The rules
//! * **Credentials.** A bearer token (`Authorization: Bearer …`, for scripts) or HTTP Basic
//!   (what a browser prompts for). A token is also accepted as the password of a Basic login
//!   with any user name, so a browser can use it. Compared in constant time.
//! * **Roles.** A viewer reads every page; an operator also acts (every `POST`). With no
//!   credentials configured (allowed on a loopback address only), every request is an
//!   operator, or a viewer when the dashboard is read-only.
//! * **Cross-site writes.** A browser attaches Basic credentials to any request to the site,
//!   so a `POST` is refused unless the browser says it came from this site
//!   (`Sec-Fetch-Site: same-origin`, or an `Origin` equal to the request's own). A request
//!   carrying a bearer token was written by a script, not forged by a page, and passes.
//! * **Where it listens.** A non-loopback address without credentials is refused before the
//!   listener opens ([`Access::check_listen`]).

use std::net::SocketAddr;

use axum::http::{HeaderMap, Method, StatusCode, header};

/// What a credential allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads every page.
    Viewer,
    /// Reads and acts: pause, retry, cancel, delete, flush.
    Operator,
}

/// One accepted credential.
#[derive(Clone)]
enum Credential {
    Token(String),
    Basic { user: String, password: String },
}

/// The credentials the dashboard accepts, each with its role.
#[derive(Clone, Default)]
pub struct Access {
    credentials: Vec<(Credential, Role)>,
    read_only: bool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets themselves.
        f.debug_struct("Access").field("credentials", &self.credentials.len()).field("read_only", &self.read_only).finish()
    }
}

/// Why a credential or a listen address was refused at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// A token shorter than 16 characters is guessable.
    #[error("a dashboard token must be at least 16 characters")]
    ShortToken,
    /// `--basic-auth` takes `USER:PASSWORD`.
    #[error("basic auth takes USER:PASSWORD (a non-empty user, a password of at least 8 characters)")]
    BadBasic,
    /// Listening off loopback with nobody to check.
    #[error(
        "refusing to serve the dashboard on {0} without credentials: anyone who reaches it could retry, cancel and delete tasks; give --auth-token or --basic-auth, or listen on 127.0.0.1"
    )]
    OpenListen(SocketAddr),
}

impl Access {
    /// No credentials: for a loopback listener only.
    pub fn open() -> Self {
        Self::default()
    }

    /// Accepts `token` (at least 16 characters) with `role`.
    pub fn token(mut self, token: impl Into<String>, role: Role) -> Result<Self, AccessError> {
        let token = token.into();
        if token.chars().count() < 16 {
            return Err(AccessError::ShortToken);
        }
        self.credentials.push((Credential::Token(token), role));
        Ok(self)
    }

    /// Accepts the Basic login `user:password` with `role`.
    pub fn basic(mut self, user_password: &str, role: Role) -> Result<Self, AccessError> {
        let (user, password) = user_password.split_once(':').ok_or(AccessError::BadBasic)?;
        if user.is_empty() || password.chars().count() < 8 {
            return Err(AccessError::BadBasic);
        }
        self.credentials.push((Credential::Basic { user: user.into(), password: password.into() }, role));
        Ok(self)
    }

    /// Caps every role at viewer: nothing can be changed from the dashboard.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Whether any credential is configured.
    pub fn is_open(&self) -> bool {
        self.credentials.is_empty()
    }

    /// Refuses a non-loopback `addr` when no credential is configured.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), AccessError> {
        if self.is_open() && !addr.ip().is_loopback() {
            return Err(AccessError::OpenListen(addr));
        }
        Ok(())
    }

    /// The role of a request with `headers`, and whether it authenticated with a bearer token;
    /// `None` when credentials are configured and none matches.
    fn role_of(&self, headers: &HeaderMap) -> Option<(Role, bool)> {
        let cap = |r: Role| if self.read_only { Role::Viewer } else { r };
        if self.is_open() {
            return Some((cap(Role::Operator), false));
        }
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())?;
        let (bearer, basic) = match given.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => (Some(rest.trim().as_bytes().to_vec()), None),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => (None, decode_basic(rest.trim())),
            _ => return None,
        };
        // Every credential is compared, matched or not, so the time says nothing of which.
        let mut found = None;
        for (credential, role) in &self.credentials {
            let hit = match (credential, &bearer, &basic) {
                (Credential::Token(t), Some(b), _) => same(t.as_bytes(), b),
                (Credential::Token(t), _, Some((_, p))) => same(t.as_bytes(), p.as_bytes()),
                (Credential::Basic { user, password }, _, Some((u, p))) => {
                    same(user.as_bytes(), u.as_bytes()) & same(password.as_bytes(), p.as_bytes())
                }
                _ => false,
            };
            if hit && found.is_none_or(|(r, _)| *role > r) {
                found = Some((*role, bearer.is_some()));
            }
        }
        found.map(|(r, b)| (cap(r), b))
    }
}

/// `user:password` out of a Basic credential's base64.
fn decode_basic(b64: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// Byte equality in time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

/// Why a request was refused, as a status and a sentence.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) why: &'static str,
}

/// The role a request may act with, or why it is refused: credentials first, then, for a
/// write, the operator role and the same-site check.
pub(crate) fn admit(access: &Access, method: &Method, headers: &HeaderMap) -> Result<Role, Refusal> {
    let Some((role, bearer)) = access.role_of(headers) else {
        return Err(Refusal { status: StatusCode::UNAUTHORIZED, why: "credentials needed (a bearer token or a Basic login)" });
    };
    if method == Method::GET || method == Method::HEAD {
        return Ok(role);
    }
    if role < Role::Operator {
        return Err(Refusal { status: StatusCode::FORBIDDEN, why: "this action needs the operator role" });
    }
    if !bearer && !same_site(headers) {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            why: "cross-site request refused: a form post must come from this site (Sec-Fetch-Site: same-origin or a matching Origin)",
        });
    }
    Ok(role)
}

/// Whether the browser says the request came from a page of this site.
fn same_site(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return site == "same-origin";
    }
    match (get("origin"), get("host")) {
        (Some(origin), Some(host)) => {
            origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")).is_some_and(|rest| rest == host)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn basic_credentials_decode_as_browsers_send_them() {
        // "admin:s3cret-pass" as a browser encodes it.
        assert_eq!(decode_basic("YWRtaW46czNjcmV0LXBhc3M="), Some(("admin".into(), "s3cret-pass".into())));
        assert_eq!(decode_basic("not base64!"), None);
    }

    #[test]
    fn tokens_compare_equal_only_when_every_byte_is() {
        assert!(same(b"abcdefgh", b"abcdefgh"));
        assert!(!same(b"abcdefgh", b"abcdefgX"));
        assert!(!same(b"abcdefgh", b"abcdefg"));
        assert!(!same(b"", b"a"));
    }

    #[test]
    fn a_token_is_taken_as_bearer_or_as_a_basic_password() {
        let access = Access::open().token("0123456789abcdef", Role::Operator).expect("token");
        assert_eq!(access.role_of(&headers(&[("authorization", "Bearer 0123456789abcdef")])), Some((Role::Operator, true)));
        // "any:0123456789abcdef"
        assert_eq!(access.role_of(&headers(&[("authorization", "Basic YW55OjAxMjM0NTY3ODlhYmNkZWY=")])), Some((Role::Operator, false)));
        assert_eq!(access.role_of(&headers(&[("authorization", "Bearer 0123456789abcdeX")])), None);
        assert_eq!(access.role_of(&headers(&[])), None);
    }

    #[test]
    fn same_site_needs_the_fetch_metadata_or_a_matching_origin() {
        assert!(same_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_site(&headers(&[("sec-fetch-site", "cross-site"), ("origin", "http://a:1"), ("host", "a:1")])));
        assert!(same_site(&headers(&[("origin", "http://127.0.0.1:8080"), ("host", "127.0.0.1:8080")])));
        assert!(!same_site(&headers(&[("origin", "http://evil.example"), ("host", "127.0.0.1:8080")])));
        assert!(!same_site(&headers(&[("host", "127.0.0.1:8080")])));
    }

    #[test]
    fn short_tokens_and_malformed_logins_are_refused() {
        assert!(matches!(Access::open().token("short", Role::Operator), Err(AccessError::ShortToken)));
        assert!(matches!(Access::open().basic("nocolon", Role::Operator), Err(AccessError::BadBasic)));
        assert!(matches!(Access::open().basic("u:short", Role::Operator), Err(AccessError::BadBasic)));
    }
}
