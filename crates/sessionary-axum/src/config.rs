//! Cookie and redirect settings of the [`crate::SessionLayer`].

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::device::TrustedProxies;

/// The prefix that binds a cookie to one origin (RFC 6265bis `__Host-`): it
/// requires `Secure`, `Path=/` and no `Domain`.
pub const HOST_PREFIX: &str = "__Host-";

/// The default cookie name.
pub const DEFAULT_COOKIE_NAME: &str = "__Host-session";

/// The cookie name used by [`DangerousConfig::allow_insecure_http`].
pub const INSECURE_COOKIE_NAME: &str = "session";

/// The default page HTML requests are sent to when their session ended.
pub const DEFAULT_EXPIRED_PATH: &str = "/session-expired";

/// The default path of the session status route ([`crate::routes`]).
pub const DEFAULT_STATUS_PATH: &str = "/session/status";

/// The default path of the session events route ([`crate::routes`]).
pub const DEFAULT_EVENTS_PATH: &str = "/session/events";

/// The default lead time of the `expiring` event ([`crate::routes`]).
pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(60);

/// The `SameSite` attribute of the session cookie.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SameSite {
    /// Sent on same-site requests and top-level cross-site navigations (the default).
    #[default]
    Lax,
    /// Sent on same-site requests only (admin areas).
    Strict,
}

impl SameSite {
    /// The attribute value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Lax => "Lax",
            Self::Strict => "Strict",
        }
    }
}

/// A cookie name that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The name is empty, too long, or has characters outside the RFC 6265 token set.
    InvalidCookieName,
}

/// Settings of the session cookie and of expiry redirects.
///
/// [`SessionConfig::new`] gives the secure defaults: cookie `__Host-session`,
/// `Secure`, `HttpOnly`, `Path=/`, no `Domain`, `SameSite=Lax`, expired HTML
/// requests redirected to `/session-expired`, `GET`/`HEAD` requests to
/// `/session/status` and `/session/events` verified without extending the
/// session (see [`SessionConfig::with_passive_path`]), `expiring` sent 60 s
/// before the end.
///
/// # Examples
///
/// ```
/// use sessionary_axum::{SameSite, SessionConfig};
///
/// // An admin route group: same cookie, `SameSite=Strict`.
/// let admin = SessionConfig::new().with_same_site(SameSite::Strict);
/// assert_eq!(admin.cookie_name(), "__Host-session");
///
/// // Plain-HTTP local development only: no `Secure`, so no `__Host-` prefix.
/// let dev = SessionConfig::new().dangerous().allow_insecure_http();
/// assert_eq!(dev.cookie_name(), "session");
/// assert!(!dev.is_secure());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    name: Cow<'static, str>,
    same_site: SameSite,
    secure: bool,
    expired_path: Cow<'static, str>,
    passive_paths: Vec<Cow<'static, str>>,
    strict_prefixes: Vec<Cow<'static, str>>,
    sign_in_path: Option<Cow<'static, str>>,
    expiry_warning: Duration,
    trusted_proxies: Arc<TrustedProxies>,
    step_up_path: Option<Cow<'static, str>>,
    hold_exempt: Vec<Cow<'static, str>>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionConfig {
    /// The secure defaults.
    pub fn new() -> Self {
        Self {
            name: Cow::Borrowed(DEFAULT_COOKIE_NAME),
            same_site: SameSite::Lax,
            secure: true,
            expired_path: Cow::Borrowed(DEFAULT_EXPIRED_PATH),
            passive_paths: vec![
                Cow::Borrowed(DEFAULT_STATUS_PATH),
                Cow::Borrowed(DEFAULT_EVENTS_PATH),
            ],
            strict_prefixes: Vec::new(),
            sign_in_path: None,
            expiry_warning: DEFAULT_EXPIRY_WARNING,
            trusted_proxies: Arc::default(),
            step_up_path: None,
            hold_exempt: Vec::new(),
        }
    }

    /// Sets `SameSite` (`Strict` for an admin route group).
    #[must_use]
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Sets the cookie name. The `__Host-` prefix is added when missing (and kept
    /// unless [`DangerousConfig::allow_insecure_http`] drops `Secure`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidCookieName`] if the name is empty, longer than 64
    /// bytes, or not an RFC 6265 token.
    pub fn with_cookie_name(mut self, name: &str) -> Result<Self, ConfigError> {
        let bare = name.strip_prefix(HOST_PREFIX).unwrap_or(name);
        if bare.is_empty() || bare.len() > 64 || !bare.bytes().all(is_token_byte) {
            return Err(ConfigError::InvalidCookieName);
        }
        self.name = if self.secure {
            Cow::Owned(format!("{HOST_PREFIX}{bare}"))
        } else {
            Cow::Owned(bare.to_owned())
        };
        Ok(self)
    }

    /// Sets the page HTML requests are redirected to (`303`) when their session
    /// ended, with `?reason=...&return_to=...`. Must be a local path (`/...`);
    /// anything else keeps the current path.
    #[must_use]
    pub fn with_expired_path(mut self, path: &str) -> Self {
        if is_local_path(path) && !path.contains(['?', '#']) {
            self.expired_path = Cow::Owned(path.to_owned());
        }
        self
    }

    /// Adds a passive path: `GET` and `HEAD` requests whose path is exactly
    /// `path` have their session checked with [`SessionManager::status`]
    /// instead of [`SessionManager::verify`], so they never extend it (status
    /// polling, event streams). The defaults are `/session/status` and
    /// `/session/events`; add the full paths here if [`crate::session_routes`]
    /// is nested under a prefix. Anything but a local path (`/...`) is ignored.
    ///
    /// The layer decides before routing, which is why this is a path list and
    /// not a per-route marker: the route is not known yet when the cookie is
    /// verified.
    ///
    /// [`SessionManager::status`]: sessionary_core::SessionManager::status
    /// [`SessionManager::verify`]: sessionary_core::SessionManager::verify
    #[must_use]
    pub fn with_passive_path(mut self, path: &str) -> Self {
        if is_local_path(path) && !path.contains(['?', '#']) {
            self.passive_paths.push(Cow::Owned(path.to_owned()));
        }
        self
    }

    /// Makes a route group `SameSite=Strict`: requests whose path is `prefix` or
    /// lies under it (`/admin` covers `/admin` and `/admin/...`) ignore the
    /// session cookie when the browser says they come from another site
    /// (`Sec-Fetch-Site: cross-site`), exactly as it would not have sent a
    /// `Strict` cookie. A link from another site into the group then arrives
    /// signed out, while the rest of the site keeps `Lax` (links from other
    /// sites to the shop stay signed in). The cookie itself keeps the
    /// configured attribute: one cookie serves every route group. Anything but
    /// a local path is ignored.
    #[must_use]
    pub fn with_strict_prefix(mut self, prefix: &str) -> Self {
        if is_local_path(prefix) && !prefix.contains(['?', '#']) {
            let p = prefix.trim_end_matches('/');
            self.strict_prefixes
                .push(Cow::Owned(if p.is_empty() { "/".into() } else { p.into() }));
        }
        self
    }

    /// Sets the sign-in page: a [`crate::SessionRejection::NotSignedIn`]
    /// answered to an HTML request (`Accept: text/html`) becomes a `303` to
    /// `path?return_to=<the requested local path>` instead of a `401` problem.
    /// Must be a local path (`/...`) without query; anything else is ignored.
    #[must_use]
    pub fn with_sign_in_path(mut self, path: &str) -> Self {
        if is_local_path(path) && !path.contains(['?', '#']) {
            self.sign_in_path = Some(Cow::Owned(path.to_owned()));
        }
        self
    }

    /// The sign-in page HTML requests without a session are sent to, if set.
    pub fn sign_in_path(&self) -> Option<&str> {
        self.sign_in_path.as_deref()
    }

    /// Whether `path` belongs to a `SameSite=Strict` route group
    /// ([`SessionConfig::with_strict_prefix`]).
    pub fn is_strict_path(&self, path: &str) -> bool {
        under_any(&self.strict_prefixes, path)
    }

    /// The reverse proxies whose `Forwarded`/`X-Forwarded-For` headers give the
    /// client IP, for the binding check ([`sessionary_core::Binding`]) and the
    /// [`crate::ClientDevice`] extractor. None by default: the client is the
    /// TCP peer (serve with `into_make_service_with_connect_info::<SocketAddr>()`).
    #[must_use]
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = Arc::new(proxies);
        self
    }

    /// The trusted proxies ([`Self::with_trusted_proxies`]).
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted_proxies
    }

    /// Sets the step-up page. A session held after a binding mismatch
    /// ([`sessionary_core::SessionRecord::step_up_required`]) may only reach
    /// this page, the sign-in page, the expired page, the passive paths and the
    /// [`Self::with_step_up_exempt`] prefixes; any other HTML request is sent
    /// there with `303` and `?return_to=`, any other request gets `403`
    /// `step-up-required`. Must be a local path without query.
    #[must_use]
    pub fn with_step_up_path(mut self, path: &str) -> Self {
        if is_local_path(path) && !path.contains(['?', '#']) {
            self.step_up_path = Some(Cow::Owned(path.to_owned()));
        }
        self
    }

    /// The step-up page, if set.
    pub fn step_up_path(&self) -> Option<&str> {
        self.step_up_path.as_deref()
    }

    /// Lets a held session reach `prefix` and what lies under it (sign-out,
    /// a re-authentication page, static assets). Anything but a local path is
    /// ignored.
    #[must_use]
    pub fn with_step_up_exempt(mut self, prefix: &str) -> Self {
        if is_local_path(prefix) && !prefix.contains(['?', '#']) {
            let p = prefix.trim_end_matches('/');
            self.hold_exempt
                .push(Cow::Owned(if p.is_empty() { "/".into() } else { p.into() }));
        }
        self
    }

    /// Whether a session held for a step-up may reach `path`.
    pub fn is_hold_exempt(&self, path: &str) -> bool {
        self.step_up_path.as_deref() == Some(path)
            || self.sign_in_path.as_deref() == Some(path)
            || self.expired_path == path
            || self.is_passive_path(path)
            || under_any(&self.hold_exempt, path)
    }

    /// Sets how long before the session's end the events stream sends
    /// `expiring` (default 60 s).
    #[must_use]
    pub fn with_expiry_warning(mut self, lead: Duration) -> Self {
        self.expiry_warning = lead;
        self
    }

    /// Risky switches, for local development only.
    pub fn dangerous(self) -> DangerousConfig {
        DangerousConfig { config: self }
    }

    /// The cookie name.
    pub fn cookie_name(&self) -> &str {
        &self.name
    }

    /// The `SameSite` attribute.
    pub fn same_site(&self) -> SameSite {
        self.same_site
    }

    /// Whether the cookie carries `Secure` (always, unless made dangerous).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The page expired HTML requests are redirected to.
    pub fn expired_path(&self) -> &str {
        &self.expired_path
    }

    /// Whether `GET`/`HEAD` requests to `path` must not extend the session.
    pub fn is_passive_path(&self, path: &str) -> bool {
        self.passive_paths.iter().any(|p| p == path)
    }

    /// How long before the session's end the events stream sends `expiring`.
    pub fn expiry_warning(&self) -> Duration {
        self.expiry_warning
    }
}

/// Whether `path` is one of `prefixes` or lies under one (`/a` covers `/a`
/// and `/a/...`, not `/ab`).
fn under_any(prefixes: &[Cow<'static, str>], path: &str) -> bool {
    prefixes.iter().any(|p| {
        p == "/"
            || path
                .strip_prefix(p.as_ref())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Switches that weaken the cookie; see [`SessionConfig::dangerous`].
///
/// # Security
///
/// Never use these in production: without `Secure` the token travels in clear
/// text over HTTP and the `__Host-` protection against cookie injection is gone.
#[derive(Debug)]
pub struct DangerousConfig {
    config: SessionConfig,
}

impl DangerousConfig {
    /// Drops `Secure` so the cookie works over plain `http://localhost`. Since
    /// `__Host-` requires `Secure`, the prefix is dropped too (`__Host-session`
    /// becomes `session`).
    pub fn allow_insecure_http(self) -> SessionConfig {
        let mut config = self.config;
        tracing::warn!("session cookie without Secure: for local development only");
        config.secure = false;
        config.name = if config.name == DEFAULT_COOKIE_NAME {
            Cow::Borrowed(INSECURE_COOKIE_NAME)
        } else {
            match config.name.strip_prefix(HOST_PREFIX) {
                Some(bare) => Cow::Owned(bare.to_owned()),
                None => config.name,
            }
        };
        config
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidCookieName => f.write_str("invalid cookie name"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Whether the request asks for HTML (a browser navigation or form post): an
/// `Accept` media range whose type is `text/html`, parameters and case aside.
/// Decides between pages and problem documents for refusals.
///
/// ```
/// use http::{HeaderMap, HeaderValue, header::ACCEPT};
/// use sessionary_axum::accepts_html;
/// let mut h = HeaderMap::new();
/// h.insert(ACCEPT, HeaderValue::from_static("text/html;q=0.9, */*;q=0.8"));
/// assert!(accepts_html(&h));
/// h.insert(ACCEPT, HeaderValue::from_static("application/json, text/htmlx"));
/// assert!(!accepts_html(&h));
/// ```
pub fn accepts_html(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|range| {
            let essence = range.split(|&b| b == b';').next().unwrap_or_default();
            essence.trim_ascii().eq_ignore_ascii_case(b"text/html")
        })
}

/// RFC 6265 `token` characters (RFC 9110 `tchar`).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `p` is a path on this origin: starts with one `/`, not `//` or `/\`
/// (which browsers read as another host), and has no control characters. Check
/// every `return_to` with it before redirecting there.
///
/// ```
/// use sessionary_axum::is_local_path;
/// assert!(is_local_path("/cart?x=1"));
/// assert!(!is_local_path("//evil.example") && !is_local_path("https://evil.example"));
/// ```
pub fn is_local_path(p: &str) -> bool {
    let b = p.as_bytes();
    b.first() == Some(&b'/')
        && !matches!(b.get(1), Some(b'/' | b'\\'))
        && !b.iter().any(|c| c.is_ascii_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_the_host_prefix() -> Result<(), ConfigError> {
        let c = SessionConfig::new().with_cookie_name("sid")?;
        assert_eq!(c.cookie_name(), "__Host-sid");
        let c = SessionConfig::new().with_cookie_name("__Host-sid")?;
        assert_eq!(c.cookie_name(), "__Host-sid");
        assert!(SessionConfig::new().with_cookie_name("a b").is_err());
        assert!(SessionConfig::new().with_cookie_name("").is_err());
        let dev = c.dangerous().allow_insecure_http();
        assert_eq!(dev.cookie_name(), "sid");
        Ok(())
    }

    #[test]
    fn passive_paths() {
        let c = SessionConfig::new();
        assert!(c.is_passive_path("/session/status"));
        assert!(c.is_passive_path("/session/events"));
        assert!(!c.is_passive_path("/session/extend"));
        let c = c
            .with_passive_path("/api/session/status")
            .with_passive_path("https://evil.example/");
        assert!(c.is_passive_path("/api/session/status"));
        assert!(!c.is_passive_path("https://evil.example/"));
        assert_eq!(c.expiry_warning(), DEFAULT_EXPIRY_WARNING);
    }

    #[test]
    fn local_paths_only() {
        assert!(is_local_path("/cart?x=1"));
        assert!(!is_local_path("//evil.example"));
        assert!(!is_local_path("/\\evil.example"));
        assert!(!is_local_path("https://evil.example/"));
        assert!(!is_local_path("/a\r\nb"));
        let c = SessionConfig::new().with_expired_path("https://evil.example/");
        assert_eq!(c.expired_path(), DEFAULT_EXPIRED_PATH);
    }
}
