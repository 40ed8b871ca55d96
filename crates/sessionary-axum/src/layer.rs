//! The tower middleware: reads the session cookie, verifies it once, and writes
//! the cookie back only when the handler changed the session.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use sessionary_core::{EndReason, SessionManager, SessionRecord};
use tower::{Layer, Service};

use crate::config::{SessionConfig, is_local_path};
use crate::csrf::CsrfSecretExt;
use crate::extract::Session;
use crate::rejection::{ExpiredMarker, NotSignedInMarker};

/// The response header that says when the session ends (RFC 3339, UTC).
pub const EXPIRES_HEADER: HeaderName = HeaderName::from_static("sessionary-expires");

/// The length of a session token's text form (43 base64url characters).
const TOKEN_LEN: usize = sessionary_core::token::TOKEN_LEN;

/// Adds sessions to every request of the wrapped service.
///
/// Per request: the session cookie is read and, if well formed, verified with one
/// [`SessionManager::verify`] (one store read; a touch at most once per touch
/// interval), or, for `GET`/`HEAD` requests to a passive path
/// ([`SessionConfig::with_passive_path`], by default `/session/status` and
/// `/session/events`), with [`SessionManager::status`], which never extends it. A malformed value is treated as no cookie and never reaches the
/// store. Handlers reach the session through the [`Session`],
/// [`crate::CurrentUser`], [`crate::RequireRole`] and [`crate::RequireAal`]
/// extractors. Afterwards, `Set-Cookie` is sent only if the handler created,
/// rotated or ended the session; every response of a live session carries
/// `Sessionary-Expires`.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use axum::{Router, routing::get};
/// use sessionary_axum::{SessionConfig, SessionLayer};
/// use sessionary_core::{MemoryStore, SessionManager};
///
/// let manager = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(SessionLayer::new(manager, SessionConfig::new()));
/// # Ok::<(), sessionary_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SessionLayer {
    shared: Arc<LayerShared>,
}

/// What every request of one layer shares: one reference count to bump per
/// request instead of one per field.
#[derive(Debug)]
pub(crate) struct LayerShared {
    pub(crate) manager: SessionManager,
    pub(crate) config: SessionConfig,
}

impl SessionLayer {
    /// A layer issuing cookies as `config` says.
    pub fn new(manager: SessionManager, config: SessionConfig) -> Self {
        Self {
            shared: Arc::new(LayerShared { manager, config }),
        }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<LayerShared>,
}

/// The response future of [`SessionService`].
pub struct ResponseFuture<E> {
    inner: Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>,
}

impl<E> fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S, B> Service<Request<B>> for SessionService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let mut token =
            read_token(req.headers(), self.shared.config.cookie_name()).map(str::to_owned);
        // A `SameSite=Strict` route group: a cross-site request would not have
        // carried a strict cookie, so it is served without the session.
        if token.is_some()
            && req
                .headers()
                .get("sec-fetch-site")
                .map(HeaderValue::as_bytes)
                == Some(b"cross-site")
            && self.shared.config.is_strict_path(req.uri().path())
        {
            token = None;
        }
        // Status polling and event streams must not count as activity.
        let passive = matches!(*req.method(), Method::GET | Method::HEAD)
            && self.shared.config.is_passive_path(req.uri().path());
        // Only kept for HTML requests, which may need a redirect with `return_to`.
        let html_uri = accepts_html(req.headers()).then(|| req.uri().clone());
        let session = Session::new(Arc::clone(&self.shared));
        req.extensions_mut().insert(session.clone());
        ResponseFuture {
            inner: Box::pin(async move {
                if let Some(token) = token {
                    let verified = if passive {
                        session.manager().status(&token).await
                    } else {
                        session.manager().verify(&token).await
                    };
                    if let Ok(record) = &verified {
                        // For `CsrfLayer`, which runs inside this layer.
                        req.extensions_mut()
                            .insert(CsrfSecretExt(record.csrf_secret.clone()));
                    }
                    session.presented(token, verified);
                }
                let mut res = inner.call(req).await?;
                finish(&session, &mut res, html_uri.as_ref());
                Ok(res)
            }),
        }
    }
}

/// What the handler did to the cookie.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum CookieChange {
    /// Nothing: no `Set-Cookie`.
    #[default]
    Keep,
    /// A new token was issued (created, signed in, regenerated).
    Set,
    /// The session ended (logout).
    Remove,
}

/// Writes the session's headers on the way out.
fn finish(session: &Session, res: &mut Response, html_uri: Option<&Uri>) {
    if res.status() == StatusCode::UNAUTHORIZED {
        if let Some(uri) = html_uri {
            let config = session.config();
            if let Some(marker) = res.extensions().get::<ExpiredMarker>() {
                *res = expired_redirect(config, marker.0, uri);
            } else if let (Some(path), Some(_)) = (
                config.sign_in_path(),
                res.extensions().get::<NotSignedInMarker>(),
            ) {
                *res = see_other(format!("{path}?return_to={}", return_to(uri)));
            }
        }
    }
    let state = session.lock();
    let config = session.config();
    let headers = res.headers_mut();
    match state.change {
        CookieChange::Keep => {}
        CookieChange::Set => {
            if let (Some(token), Some(record)) = (&state.token, &state.record) {
                let now = session.manager().now();
                if let Some(v) = set_cookie(config, token, record, now.as_millis()) {
                    headers.append(header::SET_COOKIE, v);
                    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                }
            }
        }
        CookieChange::Remove => {
            if let Some(v) = removal_cookie(config) {
                headers.append(header::SET_COOKIE, v);
            }
            headers.insert(
                HeaderName::from_static("clear-site-data"),
                HeaderValue::from_static("\"cookies\""),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
    if state.change != CookieChange::Remove {
        if let Some(record) = &state.record {
            if let Ok(v) = HeaderValue::from_bytes(&record.expires_at().rfc3339_bytes()) {
                headers.insert(EXPIRES_HEADER, v);
            }
        }
    }
}

/// The session cookie's value, if present and shaped like a session token.
/// Anything else (too long, wrong alphabet, wrong length) counts as no cookie.
pub(crate) fn read_token<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            let Some((n, v)) = pair.trim_start().split_once('=') else {
                continue;
            };
            if n == name {
                // The first cookie of that name decides; `__Host-` keeps others from
                // planting one.
                return is_token_shaped(v).then_some(v);
            }
        }
    }
    None
}

/// Whether `v` is spelled like a session token: [`TOKEN_LEN`] characters of the
/// base64url alphabet, the last one carrying no stray bits (32 bytes are 256 of
/// the 258 bits of 43 characters). This is exactly what
/// [`SessionToken::parse`](sessionary_core::SessionToken::parse)
/// accepts, checked without decoding: the manager decodes the token once more
/// anyway (and refuses it before any store access if it were not a token).
fn is_token_shaped(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == TOKEN_LEN
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        // The last character's value must be a multiple of 4: `A`, `E`, `I`, ...
        && b.last().is_some_and(|&c| base64url_value(c) % 4 == 0)
}

/// The 6-bit value of a base64url character (the caller checked the alphabet).
fn base64url_value(c: u8) -> u8 {
    match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        _ => 63,
    }
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.as_bytes().windows(9).any(|w| w == b"text/html"))
}

fn attributes(config: &SessionConfig) -> String {
    format!(
        "; Path=/{}; HttpOnly; SameSite={}",
        if config.is_secure() { "; Secure" } else { "" },
        config.same_site().as_str()
    )
}

/// `Set-Cookie` for a freshly issued token: persistent (until the absolute
/// expiry) for remember-me sessions, a browser-session cookie otherwise. The
/// cookie's lifetime is only a hint; the server enforces the timeouts.
fn set_cookie(
    config: &SessionConfig,
    token: &str,
    record: &SessionRecord,
    now_ms: i64,
) -> Option<HeaderValue> {
    let mut s = format!("{}={token}{}", config.cookie_name(), attributes(config));
    if record.remember {
        let ms = record
            .absolute_expires_at
            .millis_since(sessionary_core::Timestamp(now_ms));
        let secs = ms.max(0) / 1000;
        let at = UNIX_EPOCH
            + Duration::from_millis(
                u64::try_from(record.absolute_expires_at.0.max(0)).unwrap_or(0),
            );
        s.push_str(&format!(
            "; Max-Age={secs}; Expires={}",
            httpdate::fmt_http_date(at)
        ));
    }
    HeaderValue::try_from(s).ok()
}

/// The removal cookie: same name, `Path` and attributes, empty, already expired.
fn removal_cookie(config: &SessionConfig) -> Option<HeaderValue> {
    HeaderValue::try_from(format!(
        "{}={}; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        config.cookie_name(),
        attributes(config)
    ))
    .ok()
}

/// `303` to the expired page with the reason and the local path to return to.
fn expired_redirect(config: &SessionConfig, reason: EndReason, uri: &Uri) -> Response {
    see_other(format!(
        "{}?reason={}&return_to={}",
        config.expired_path(),
        reason.as_str(),
        return_to(uri)
    ))
}

/// The request's path and query, percent-encoded for a `return_to` parameter;
/// only a path on this origin, never `//host` or an absolute URL.
fn return_to(uri: &Uri) -> String {
    let here = uri.path_and_query().map_or("/", |pq| pq.as_str());
    percent_encode(if is_local_path(here) { here } else { "/" })
}

/// A `303` to `location`, not to be cached.
fn see_other(location: String) -> Response {
    let mut res = Response::new(axum::body::Body::empty());
    *res.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::try_from(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessionary_core::SessionToken;

    #[test]
    fn malformed_cookies_are_no_cookie() {
        let mut h = HeaderMap::new();
        let big = "A".repeat(10 * 1024);
        h.insert(
            header::COOKIE,
            HeaderValue::try_from(format!("__Host-session={big}"))
                .unwrap_or(HeaderValue::from_static("")),
        );
        assert_eq!(read_token(&h, "__Host-session"), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("__Host-session=$$$$"),
        );
        assert_eq!(read_token(&h, "__Host-session"), None);
    }

    #[test]
    fn token_shape_is_what_parse_accepts() {
        for _ in 0..64 {
            let Ok(token) = SessionToken::generate() else {
                panic!("no randomness");
            };
            let text = token.encode();
            assert!(is_token_shaped(&text));
            assert!(SessionToken::parse(&text).is_ok());
            // Every last character: accepted by the shape check exactly when
            // `parse` accepts it (no stray trailing bits).
            for c in (b'!'..=b'~').map(char::from) {
                let mut t = text[..TOKEN_LEN - 1].to_owned();
                t.push(c);
                assert_eq!(is_token_shaped(&t), SessionToken::parse(&t).is_ok(), "{t}");
            }
        }
        for bad in [
            "",
            "a",
            &"A".repeat(42),
            &"A".repeat(44),
            &format!("{}=", "A".repeat(42)),
        ] {
            assert!(!is_token_shaped(bad));
            assert!(SessionToken::parse(bad).is_err());
        }
        let mut odd = "A".repeat(TOKEN_LEN - 2);
        odd.push_str("+A");
        assert!(!is_token_shaped(&odd));
    }

    #[test]
    fn return_to_is_encoded_and_local() {
        assert_eq!(percent_encode("/a?b=c&d"), "/a%3Fb%3Dc%26d");
        let c = SessionConfig::new();
        let uri: Uri = "//evil.example/x".parse().unwrap_or_default();
        let res = expired_redirect(&c, EndReason::ExpiredIdle, &uri);
        let loc = res
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            loc,
            Some("/session-expired?reason=expired_idle&return_to=/")
        );
    }
}
