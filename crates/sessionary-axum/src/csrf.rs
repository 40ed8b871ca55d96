//! Cross-site request forgery (CSRF) protection: session-bound tokens and origin checks.
//!
//! Two defences, both applied by [`CsrfLayer`] to every request with an unsafe method
//! (anything but `GET`, `HEAD`, `OPTIONS`, `TRACE`):
//!
//! 1. **Origin checks** ([`check_request_origin`]): `Sec-Fetch-Site: cross-site` is refused;
//!    without `Sec-Fetch-Site` the `Origin` header must name this site or an allowed origin
//!    (`Origin: null` is refused); without `Origin`, the `Referer`'s origin is checked; with
//!    neither, the token alone decides.
//! 2. **A session-bound token** ([`token_for`], [`verify_token`]): the value is
//!    `HMAC-SHA256(session.csrf_secret, "sessionary-csrf-v1")`, rendered masked with fresh
//!    random bytes on every render (so no two pages carry the same bytes, against BREACH-style
//!    compression attacks), and compared in constant time. The token travels in the
//!    `x-csrf-token` header (for `fetch`) or in the `csrf_token` field of an
//!    `application/x-www-form-urlencoded` body (for HTML forms).
//!
//! Every response, safe method or not, gets `Vary: Sec-Fetch-Site, Origin` appended.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, http::StatusCode, routing::{get, post}};
//! use sessionary_axum::csrf::{CsrfConfig, CsrfLayer, token_for};
//! use sessionary_axum::{Session, SessionConfig, SessionLayer};
//! use sessionary_core::{MemoryStore, SessionManager};
//!
//! /// Renders a form carrying a fresh masked token of the caller's session.
//! async fn form(session: Session) -> Result<String, StatusCode> {
//!     session.insert("cart", 0).await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
//!     let record = session.record().ok_or(StatusCode::INTERNAL_SERVER_ERROR)?;
//!     let token = token_for(&record.csrf_secret).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
//!     Ok(format!(r#"<form method="post" action="/cart">
//!         <input type="hidden" name="csrf_token" value="{token}"></form>"#))
//! }
//!
//! let manager = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;
//! let app: Router = Router::new()
//!     .route("/cart", get(form).post(|| async { "added" }))
//!     // Inside the session layer (in axum the last `.layer` is the outermost), which
//!     // puts the request's `Session` (with its CSRF secret) into the extensions.
//!     .layer(CsrfLayer::new(
//!         CsrfConfig::new().with_allowed_origin("https://shop.example"),
//!     ))
//!     .layer(SessionLayer::new(manager, SessionConfig::new()));
//! # Ok::<(), sessionary_core::Error>(())
//! ```
//!
//! # What the session layer provides
//!
//! The layer reads the session's secret from the request extensions: from the
//! [`crate::Session`] that [`crate::SessionLayer`] inserts into every request, when its
//! cookie verified to a live session, else from a [`CsrfSecretExt`] (for applications
//! that run this layer without [`crate::SessionLayer`]). The session layer must run
//! *before* this layer (so add [`CsrfLayer`] to the router before the session layer).
//! An unsafe request without a secret is refused with [`CsrfRejection::MissingSession`]:
//! a visitor needs a session, created on a `GET` that renders the form, before posting
//! it. (The session layer no longer inserts a [`CsrfSecretExt`] of its own; read
//! `Session::record()` for the secret.)
//!
//! # Security
//!
//! - Requests carrying `Authorization: Bearer ...` are exempt by default
//!   ([`CsrfConfig::with_exempt_bearer`]): a cross-site page cannot attach that header without
//!   a CORS preflight. This holds only if the application's CORS policy does not let foreign
//!   origins send `Authorization` with credentials, and only if handlers of such requests do
//!   not fall back to the cookie session.
//! - The request's own origin is built from the `Host` header and the configured scheme
//!   (`https` by default). Behind a proxy that rewrites `Host`, list the public origin with
//!   [`CsrfConfig::with_allowed_origin`].
//! - Forms sent as `multipart/form-data` are not parsed: such requests must carry the token in
//!   the header.
//! - Login forms need a token too (login CSRF): render them from a pre-login session.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{Scheme, Uri};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};
use sessionary_core::record::CsrfSecret;
use subtle::ConstantTimeEq as _;
use tower::{Layer, Service};

use crate::extract::Session;
use crate::rejection::PROBLEM_JSON;

/// Message authenticated with the session's CSRF secret to derive the token value.
const TOKEN_CONTEXT: &[u8] = b"sessionary-csrf-v1";
/// Length of the token value and of the mask, in bytes.
const VALUE_LEN: usize = 32;
/// Length of a rendered (masked, base64url without padding) token, in characters.
pub const TOKEN_LEN: usize = 86;
/// The `Vary` value appended to every response.
const VARY_VALUE: &str = "Sec-Fetch-Site, Origin";
/// The problem type of every CSRF failure.
const PROBLEM_TYPE: &str = "/problems/csrf-failed";

/// A CSRF secret for [`CsrfLayer`], inserted into request extensions by an application
/// that does not use [`crate::SessionLayer`] (whose [`crate::Session`] provides the secret
/// of a live session, and takes precedence).
///
/// # Examples
///
/// ```
/// use sessionary_axum::csrf::CsrfSecretExt;
/// use sessionary_core::record::CsrfSecret;
///
/// let mut request = http::Request::new(axum::body::Body::empty());
/// request
///     .extensions_mut()
///     .insert(CsrfSecretExt(CsrfSecret([7; 32])));
/// ```
#[derive(Clone)]
pub struct CsrfSecretExt(pub CsrfSecret);

impl fmt::Debug for CsrfSecretExt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfSecretExt(REDACTED)")
    }
}

/// The system random number generator failed, so no token could be rendered.
///
/// (`ring`'s error carries no detail, so there is no `source`.)
#[derive(Debug)]
pub struct CsrfTokenError {
    _private: (),
}

impl fmt::Display for CsrfTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the system random number generator failed while masking a CSRF token")
    }
}

impl std::error::Error for CsrfTokenError {}

/// The unmasked token value: `HMAC-SHA256(secret, "sessionary-csrf-v1")`.
fn token_value(secret: &CsrfSecret) -> [u8; VALUE_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &secret.0);
    let tag = hmac::sign(&key, TOKEN_CONTEXT);
    let mut value = [0u8; VALUE_LEN];
    value.copy_from_slice(tag.as_ref());
    value
}

/// Renders a fresh masked CSRF token for the session owning `secret`.
///
/// The token is `base64url(mask || (mask XOR value))` with a fresh random 32-byte mask, so
/// every call returns a different [`TOKEN_LEN`]-character string, each accepted by
/// [`verify_token`] for the same secret.
///
/// # Examples
///
/// ```
/// use sessionary_axum::csrf::{token_for, verify_token};
/// use sessionary_core::record::CsrfSecret;
///
/// let secret = CsrfSecret([1; 32]);
/// let token = token_for(&secret)?;
/// assert!(verify_token(&secret, &token));
/// # Ok::<(), sessionary_axum::csrf::CsrfTokenError>(())
/// ```
///
/// # Errors
///
/// [`CsrfTokenError`] if the system random number generator fails.
pub fn token_for(secret: &CsrfSecret) -> Result<String, CsrfTokenError> {
    let value = token_value(secret);
    let mut out = [0u8; 2 * VALUE_LEN];
    let (mask, masked) = out.split_at_mut(VALUE_LEN);
    SystemRandom::new()
        .fill(mask)
        .map_err(|ring::error::Unspecified| CsrfTokenError { _private: () })?;
    for ((m, v), o) in mask.iter().zip(value.iter()).zip(masked.iter_mut()) {
        *o = m ^ v;
    }
    Ok(URL_SAFE_NO_PAD.encode(out))
}

/// Whether `presented` is a valid masked CSRF token for the session owning `secret`.
///
/// Anything of the wrong length, not base64url, or for another secret is `false`; the
/// comparison of the unmasked value is constant-time. Input longer than [`TOKEN_LEN`] is
/// refused before decoding.
///
/// # Examples
///
/// ```
/// use sessionary_axum::csrf::verify_token;
/// use sessionary_core::record::CsrfSecret;
///
/// assert!(!verify_token(&CsrfSecret([1; 32]), "not a token"));
/// ```
pub fn verify_token(secret: &CsrfSecret, presented: &str) -> bool {
    if presented.len() != TOKEN_LEN {
        return false;
    }
    let mut raw = [0u8; 2 * VALUE_LEN + 2];
    let Ok(n) = URL_SAFE_NO_PAD.decode_slice(presented.as_bytes(), &mut raw) else {
        return false;
    };
    if n != 2 * VALUE_LEN {
        return false;
    }
    let (mask, masked) = raw[..n].split_at(VALUE_LEN);
    let mut unmasked = [0u8; VALUE_LEN];
    for ((u, m), x) in unmasked.iter_mut().zip(mask).zip(masked) {
        *u = m ^ x;
    }
    bool::from(unmasked.ct_eq(&token_value(secret)))
}

/// Configuration of the CSRF checks.
///
/// # Examples
///
/// ```
/// use sessionary_axum::csrf::CsrfConfig;
///
/// let config = CsrfConfig::new()
///     .with_allowed_origin("https://shop.example")
///     .with_body_limit(32 * 1024);
/// ```
#[derive(Clone, Debug)]
pub struct CsrfConfig {
    allowed_origins: Vec<String>,
    header_name: HeaderName,
    form_field: String,
    exempt_bearer: bool,
    body_limit: usize,
    scheme: Scheme,
}

impl Default for CsrfConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl CsrfConfig {
    /// Default limit on a form body buffered to find the token: 64 KiB.
    pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

    /// The defaults: no extra allowed origins, header `x-csrf-token`, form field
    /// `csrf_token`, bearer requests exempt, 64 KiB body limit, own scheme `https`.
    pub fn new() -> Self {
        Self {
            allowed_origins: Vec::new(),
            header_name: HeaderName::from_static("x-csrf-token"),
            form_field: "csrf_token".to_owned(),
            exempt_bearer: true,
            body_limit: Self::DEFAULT_BODY_LIMIT,
            scheme: Scheme::HTTPS,
        }
    }

    /// Also accepts requests from `origin` (`scheme://host[:port]`, e.g.
    /// `https://shop.example`), besides the request's own origin.
    ///
    /// # Panics
    ///
    /// If `origin` is not an `http` or `https` origin: this is configuration, checked at
    /// start-up.
    pub fn with_allowed_origin(mut self, origin: impl AsRef<str>) -> Self {
        let origin = origin.as_ref();
        match normalize_origin(origin) {
            Some(o) => self.allowed_origins.push(o),
            None => panic!("CsrfConfig: {origin:?} is not an http(s) origin"),
        }
        self
    }

    /// The header carrying the token for `fetch`/XHR requests (default `x-csrf-token`).
    pub fn with_header_name(mut self, name: HeaderName) -> Self {
        self.header_name = name;
        self
    }

    /// The form field carrying the token in url-encoded form bodies (default `csrf_token`).
    pub fn with_form_field(mut self, field: impl Into<String>) -> Self {
        self.form_field = field.into();
        self
    }

    /// Whether requests with `Authorization: Bearer ...` skip the checks (default `true`).
    pub fn with_exempt_bearer(mut self, exempt: bool) -> Self {
        self.exempt_bearer = exempt;
        self
    }

    /// Largest url-encoded form body buffered to look for the token (default 64 KiB).
    /// Larger form bodies are refused with [`CsrfRejection::BodyTooLarge`].
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The scheme of the request's own origin, combined with its `Host` (default `https`;
    /// use `http` only for plain-HTTP local development).
    pub fn with_scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// The token header name.
    pub fn header_name(&self) -> &HeaderName {
        &self.header_name
    }

    /// The token form field name.
    pub fn form_field(&self) -> &str {
        &self.form_field
    }

    fn is_allowed(&self, origin: &str, own: Option<&str>) -> bool {
        own == Some(origin) || self.allowed_origins.iter().any(|o| o == origin)
    }
}

/// Why a request was refused as a possible cross-site request forgery.
///
/// Its [`IntoResponse`] is a `403` `application/problem+json` (RFC 9457) with type
/// `/problems/csrf-failed`; [`CsrfRejection::into_response_for`] gives browsers asking for
/// `text/html` a small page instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CsrfRejection {
    /// `Sec-Fetch-Site: cross-site` on an unsafe method.
    CrossSiteRequest,
    /// `Origin: null` on an unsafe method.
    NullOrigin,
    /// `Origin` (or, without it, `Referer`) names neither this site nor an allowed origin.
    ForeignOrigin,
    /// No token in the header nor in the form body.
    MissingToken,
    /// A token was presented but is not valid for this session.
    InvalidToken,
    /// The form body exceeded the configured limit before the token could be read.
    BodyTooLarge,
    /// The request body could not be read.
    UnreadableBody,
    /// An unsafe request without a session: there is no secret to check a token against.
    MissingSession,
}

impl CsrfRejection {
    fn title(self) -> &'static str {
        match self {
            Self::CrossSiteRequest => "Cross-site request refused",
            Self::NullOrigin => "Request from an opaque origin refused",
            Self::ForeignOrigin => "Request from another origin refused",
            Self::MissingToken => "CSRF token missing",
            Self::InvalidToken => "CSRF token invalid",
            Self::BodyTooLarge => "Form too large to check",
            Self::UnreadableBody => "Request body unreadable",
            Self::MissingSession => "No session",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            Self::CrossSiteRequest => {
                "The browser reported this request as cross-site (Sec-Fetch-Site: cross-site)."
            }
            Self::NullOrigin => "The request's Origin header is null.",
            Self::ForeignOrigin => {
                "The request's Origin or Referer is neither this site nor an allowed origin."
            }
            Self::MissingToken => {
                "No CSRF token was found in the request's CSRF header or form field."
            }
            Self::InvalidToken => "The CSRF token does not belong to the current session.",
            Self::BodyTooLarge => {
                "The form body is larger than the limit for finding its CSRF token."
            }
            Self::UnreadableBody => "The request body could not be read to find its CSRF token.",
            Self::MissingSession => {
                "The request changes state but has no session to check its CSRF token against."
            }
        }
    }

    /// The reason code (`missing_token`, `invalid_token`, `foreign_origin`, ...),
    /// as in the problem document's `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::CrossSiteRequest => "cross_site_request",
            Self::NullOrigin => "null_origin",
            Self::ForeignOrigin => "foreign_origin",
            Self::MissingToken => "missing_token",
            Self::InvalidToken => "invalid_token",
            Self::BodyTooLarge => "body_too_large",
            Self::UnreadableBody => "unreadable_body",
            Self::MissingSession => "missing_session",
        }
    }

    /// The problem+json response, or an HTML page when the request's `Accept` header asks
    /// for `text/html` (a browser form submission).
    ///
    /// Either response carries the rejection as a response extension, so an
    /// outer middleware can render its own page for it.
    pub fn into_response_for(self, request_headers: &HeaderMap) -> Response {
        if crate::config::accepts_html(request_headers) {
            let mut res = self.html_response();
            res.extensions_mut().insert(self);
            res
        } else {
            self.into_response()
        }
    }

    fn html_response(self) -> Response {
        let body = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Request refused</title></head><body>\
             <h1>This form has expired or was refused</h1>\
             <p>For your security, the request was not carried out: {title}.</p>\
             <p>Go back, reload the page and try again.</p>\
             <p><a href=\"/\">Return to the site</a></p>\
             </body></html>\n",
            title = self.title()
        );
        (
            StatusCode::FORBIDDEN,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response()
    }
}

impl fmt::Display for CsrfRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.detail())
    }
}

impl std::error::Error for CsrfRejection {}

impl IntoResponse for CsrfRejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": PROBLEM_TYPE,
            "title": self.title(),
            "status": StatusCode::FORBIDDEN.as_u16(),
            "detail": self.detail(),
            "reason": self.reason(),
        });
        let mut res = (
            StatusCode::FORBIDDEN,
            [
                (header::CONTENT_TYPE, PROBLEM_JSON),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body.to_string(),
        )
            .into_response();
        res.extensions_mut().insert(self);
        res
    }
}

/// Whether the method cannot change state (ASVS 5 3.5.3) and so skips the checks.
fn is_safe_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// `scheme://host[:port]` in lower case, default port dropped; `None` for anything that is
/// not an `http(s)` URL with a host and no user info.
fn origin_of(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some(match authority.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// The normalized form of an `Origin` header value or configured origin: no path, query or
/// fragment allowed.
fn normalize_origin(origin: &str) -> Option<String> {
    let uri: Uri = origin.trim().parse().ok()?;
    let path_ok = matches!(
        uri.path_and_query().map(|p| p.as_str()),
        None | Some("" | "/")
    );
    if !path_ok {
        return None;
    }
    origin_of(&uri)
}

/// The request's own origin: the configured scheme and the `Host` header (or, for HTTP/2,
/// the URI's authority).
fn own_origin(parts: &Parts, config: &CsrfConfig) -> Option<String> {
    let host = match parts.headers.get(header::HOST) {
        Some(h) => h.to_str().ok()?.to_owned(),
        None => parts.uri.authority()?.as_str().to_owned(),
    };
    normalize_origin(&format!("{}://{host}", config.scheme.as_str()))
}

/// Checks the origin of an unsafe request: `Sec-Fetch-Site`, then `Origin`, then `Referer`.
///
/// Safe methods (`GET`, `HEAD`, `OPTIONS`, `TRACE`) always pass. For the others:
///
/// - `Sec-Fetch-Site: cross-site` is refused; `same-origin` and `none` (typed by the user)
///   pass; `same-site` passes only if `Origin` is the request's own origin or an allowed one.
/// - Without a known `Sec-Fetch-Site`, `Origin` must be the request's own origin or an
///   allowed one (`null` is refused); without `Origin`, the same goes for the `Referer`'s
///   origin; with neither, the check passes and the token decides.
///
/// The request's own origin is the configured scheme plus its `Host` header.
///
/// # Examples
///
/// ```
/// use sessionary_axum::csrf::{CsrfConfig, CsrfRejection, check_request_origin};
///
/// let (parts, ()) = http::Request::post("/cart")
///     .header("host", "shop.example")
///     .header("origin", "https://evil.example")
///     .body(())?
///     .into_parts();
/// assert_eq!(
///     check_request_origin(&parts, &CsrfConfig::new()),
///     Err(CsrfRejection::ForeignOrigin)
/// );
/// # Ok::<(), http::Error>(())
/// ```
///
/// # Errors
///
/// [`CsrfRejection::CrossSiteRequest`], [`CsrfRejection::NullOrigin`] or
/// [`CsrfRejection::ForeignOrigin`] as above.
pub fn check_request_origin(parts: &Parts, config: &CsrfConfig) -> Result<(), CsrfRejection> {
    if is_safe_method(&parts.method) {
        return Ok(());
    }
    let headers = &parts.headers;
    let own = own_origin(parts, config);
    let origin_header = headers.get(header::ORIGIN);
    let check_origin = |value: &HeaderValue| -> Result<(), CsrfRejection> {
        let value = value.to_str().map_err(|_| CsrfRejection::ForeignOrigin)?;
        if value.trim().eq_ignore_ascii_case("null") {
            return Err(CsrfRejection::NullOrigin);
        }
        match normalize_origin(value) {
            Some(o) if config.is_allowed(&o, own.as_deref()) => Ok(()),
            _ => Err(CsrfRejection::ForeignOrigin),
        }
    };

    let fetch_site = headers
        .get(crate::layer::SEC_FETCH_SITE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match fetch_site.as_deref() {
        Some("cross-site") => return Err(CsrfRejection::CrossSiteRequest),
        Some("same-origin" | "none") => return Ok(()),
        Some("same-site") => {
            // A sibling subdomain: only origins we know are trusted.
            return match origin_header {
                Some(v) => check_origin(v),
                None => Err(CsrfRejection::ForeignOrigin),
            };
        }
        // Absent (older browser, non-browser client) or an unknown value: fall back.
        _ => {}
    }

    if let Some(v) = origin_header {
        return check_origin(v);
    }
    if let Some(referer) = headers.get(header::REFERER) {
        let origin = referer
            .to_str()
            .ok()
            .and_then(|r| r.trim().parse::<Uri>().ok())
            .and_then(|u| origin_of(&u));
        return match origin {
            Some(o) if config.is_allowed(&o, own.as_deref()) => Ok(()),
            _ => Err(CsrfRejection::ForeignOrigin),
        };
    }
    Ok(())
}

/// Whether the request is authenticated by `Authorization: Bearer ...`.
fn has_bearer(headers: &HeaderMap) -> bool {
    // The same reading as the `Bearer`/`Caller` extractors: a malformed bearer
    // header is exempt here and refused there, never judged by the cookie.
    crate::bearer::bearer_header(headers) != crate::bearer::BearerHeader::Absent
}

/// Whether the body is `application/x-www-form-urlencoded`.
fn is_urlencoded_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` and `%XX`); `None` if
/// the result is not UTF-8 or longer than `max` bytes.
fn form_decode(raw: &[u8], max: usize) -> Option<String> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(raw.len().min(max));
    let mut i = 0;
    while i < raw.len() {
        if out.len() >= max {
            return None;
        }
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let decoded = raw
                    .get(i + 1)
                    .zip(raw.get(i + 2))
                    .and_then(|(&h, &l)| Some((hex(h)? << 4) | hex(l)?));
                match decoded {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The first value of `field` in a url-encoded body, if any. A value too long to be a token
/// comes back as an empty string (so it is reported invalid, not missing).
fn form_field_value(body: &[u8], field: &str) -> Option<String> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let mut kv = pair.splitn(2, |&b| b == b'=');
        let key = kv.next()?;
        if form_decode(key, field.len() + 1)?.as_str() != field {
            return None;
        }
        let value = kv.next().unwrap_or_default();
        Some(form_decode(value, TOKEN_LEN + 1).unwrap_or_default())
    })
}

/// Appends `Vary: Sec-Fetch-Site, Origin`, keeping any `Vary` already there.
fn append_vary(response: &mut Response) {
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static(VARY_VALUE));
}

/// A [`tower::Layer`] that applies the CSRF checks; see the [module docs](self).
///
/// # Examples
///
/// ```
/// use sessionary_axum::csrf::{CsrfConfig, CsrfLayer};
///
/// let layer = CsrfLayer::new(CsrfConfig::new());
/// ```
#[derive(Clone, Debug)]
pub struct CsrfLayer {
    config: Arc<CsrfConfig>,
}

impl CsrfLayer {
    /// A layer with the given configuration.
    pub fn new(config: CsrfConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for CsrfLayer {
    type Service = CsrfService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CsrfService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The CSRF middleware made by [`CsrfLayer`].
#[derive(Clone, Debug)]
pub struct CsrfService<S> {
    inner: S,
    config: Arc<CsrfConfig>,
}

/// The future returned by [`CsrfService`]: boxed, as the form body may have to be read
/// before the inner service is called.
pub type ResponseFuture<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

impl<S> Service<Request<Body>> for CsrfService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // Use the service that was polled ready; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let checked = check(parts, body, &config).await;
            let mut response = match checked {
                Ok(request) => inner.call(request).await?,
                Err((rejection, headers)) => rejection.into_response_for(&headers),
            };
            append_vary(&mut response);
            Ok(response)
        })
    }
}

/// Runs the checks; gives back the request to pass on, or the rejection and the request's
/// headers (to choose between HTML and problem+json).
async fn check(
    parts: Parts,
    body: Body,
    config: &CsrfConfig,
) -> Result<Request<Body>, (CsrfRejection, HeaderMap)> {
    if is_safe_method(&parts.method) || (config.exempt_bearer && has_bearer(&parts.headers)) {
        return Ok(Request::from_parts(parts, body));
    }
    let fail = |rejection: CsrfRejection, parts: Parts| Err((rejection, parts.headers));
    if let Err(rejection) = check_request_origin(&parts, config) {
        return fail(rejection, parts);
    }
    let secret = parts
        .extensions
        .get::<Session>()
        .and_then(Session::csrf_secret)
        .or_else(|| parts.extensions.get::<CsrfSecretExt>().map(|e| e.0.clone()));
    let Some(secret) = secret else {
        return fail(CsrfRejection::MissingSession, parts);
    };

    if let Some(value) = parts.headers.get(&config.header_name) {
        let valid = value
            .to_str()
            .is_ok_and(|token| verify_token(&secret, token.trim()));
        return if valid {
            Ok(Request::from_parts(parts, body))
        } else {
            fail(CsrfRejection::InvalidToken, parts)
        };
    }

    if !is_urlencoded_form(&parts.headers) {
        return fail(CsrfRejection::MissingToken, parts);
    }
    let declared_too_large = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > config.body_limit as u64);
    if declared_too_large {
        return fail(CsrfRejection::BodyTooLarge, parts);
    }
    let bytes: Bytes = match Limited::new(body, config.body_limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return fail(CsrfRejection::BodyTooLarge, parts),
        Err(_) => return fail(CsrfRejection::UnreadableBody, parts),
    };
    match form_field_value(&bytes, &config.form_field) {
        None => fail(CsrfRejection::MissingToken, parts),
        Some(token) if verify_token(&secret, &token) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        Some(_) => fail(CsrfRejection::InvalidToken, parts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_has_documented_length() {
        let token = token_for(&CsrfSecret([3; 32])).unwrap();
        assert_eq!(token.len(), TOKEN_LEN);
    }

    #[test]
    fn form_field_is_found_and_decoded() {
        let body = b"a=1&csrf%5Ftoken=ab%2Dc+d&csrf_token=second";
        assert_eq!(
            form_field_value(body, "csrf_token").as_deref(),
            Some("ab-c d")
        );
        assert_eq!(form_field_value(b"a=1&b=2", "csrf_token"), None);
        assert_eq!(
            form_field_value(b"csrf_token", "csrf_token").as_deref(),
            Some("")
        );
        let long = format!("csrf_token={}", "A".repeat(10_000));
        assert_eq!(
            form_field_value(long.as_bytes(), "csrf_token").as_deref(),
            Some("")
        );
    }

    #[test]
    fn origins_are_normalized() {
        assert_eq!(
            normalize_origin("HTTPS://Shop.Example:443").as_deref(),
            Some("https://shop.example")
        );
        assert_eq!(
            normalize_origin("http://localhost:3000").as_deref(),
            Some("http://localhost:3000")
        );
        assert_eq!(normalize_origin("https://shop.example/path"), None);
        assert_eq!(normalize_origin("https://user@shop.example"), None);
        assert_eq!(normalize_origin("ftp://shop.example"), None);
        assert_eq!(normalize_origin("null"), None);
    }

    #[test]
    fn bearer_detection() {
        let mut headers = HeaderMap::new();
        assert!(!has_bearer(&headers));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(!has_bearer(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert!(has_bearer(&headers));
    }
}
