//! The tower middleware: reads the session cookie, verifies it once, and writes
//! the cookie back only when the handler changed the session.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, UNIX_EPOCH};

use axum::response::IntoResponse;
use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use pin_project_lite::pin_project;
use sessionary_core::token::TOKEN_LEN;
use sessionary_core::{
    Device, EndReason, Error, Mismatch, SessionManager, SessionRecord, SessionToken,
};
use tower::{Layer, Service};

use crate::config::{SessionConfig, accepts_html, is_local_path};
use crate::device::client_ip;
use crate::extract::Session;
use crate::rejection::{ExpiredMarker, NotSignedInMarker, SessionRejection, StepUpMarker};

/// The response header that says when the session ends (RFC 3339, UTC).
pub const EXPIRES_HEADER: HeaderName = HeaderName::from_static("sessionary-expires");

/// `Sec-Fetch-Site` (not among `http`'s constants), named once instead of
/// parsed from a string on every request.
pub(crate) const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

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
///
/// A layer keeps [`COPIES`] copies of it, each behind an `Arc` of its own, and a
/// thread takes its references from its own copy (see [`LayerShared::mine`]):
/// threads serving requests at the same time then do not all write one reference
/// count (one cache line moving between cores on every clone and drop, and axum
/// clones the service for every request). Aligned so that the fields sit on cache
/// lines apart from the reference count.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct LayerShared {
    pub(crate) manager: SessionManager,
    pub(crate) config: SessionConfig,
    /// Every copy of this state, this one included.
    copies: OnceLock<Box<[Weak<LayerShared>]>>,
}

/// Copies of a layer's [`LayerShared`] (a power of two).
const COPIES: usize = 16;

impl LayerShared {
    /// A reference to the calling thread's copy (to `this` if that copy is gone).
    fn mine(this: &Arc<Self>) -> Arc<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        let slot = SLOT.with(|s| *s);
        this.copies
            .get()
            .and_then(|c| c.get(slot % c.len()))
            .and_then(Weak::upgrade)
            .unwrap_or_else(|| Arc::clone(this))
    }
}

impl SessionLayer {
    /// A layer issuing cookies as `config` says.
    pub fn new(manager: SessionManager, config: SessionConfig) -> Self {
        let copies: Vec<Arc<LayerShared>> = (0..COPIES)
            .map(|_| {
                Arc::new(LayerShared {
                    manager: manager.clone(),
                    config: config.clone(),
                    copies: OnceLock::new(),
                })
            })
            .collect();
        let weak: Box<[Weak<LayerShared>]> = copies.iter().map(Arc::downgrade).collect();
        for c in &copies {
            let _ = c.copies.set(weak.clone());
        }
        Self {
            shared: Arc::clone(&copies[0]),
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
#[derive(Debug)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<LayerShared>,
}

impl<S: Clone> Clone for SessionService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            // The clone serves requests on this thread (axum clones per request).
            shared: LayerShared::mine(&self.shared),
        }
    }
}

pin_project! {
    /// The response future of [`SessionService`]: the inner service's future, then
    /// the session's headers. Not boxed when the session was settled before the
    /// inner service was called (a store that answers at once, such as
    /// [`sessionary_core::MemoryStore`], or no cookie); boxed when the store must be
    /// awaited first.
    pub struct ResponseFuture<F, E> {
        #[pin]
        kind: Kind<F, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, E> {
        /// The session is settled; the inner service was called.
        Ready {
            #[pin]
            inner: F,
            finish: Option<Finish>,
        },
        /// The store must be awaited first.
        Waiting {
            fut: Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>,
        },
    }
}

/// What the response needs once the inner service answered.
struct Finish {
    session: Session,
    /// Boxed: only HTML requests have one, and the future stays small.
    html_uri: Option<Box<Uri>>,
}

impl<F, E> fmt::Debug for ResponseFuture<F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Ready { inner, finish: f } => {
                let mut res = ready!(inner.poll(cx))?;
                if let Some(Finish { session, html_uri }) = f.take() {
                    finish(&session, &mut res, html_uri.as_deref());
                }
                Poll::Ready(Ok(res))
            }
            KindProj::Waiting { fut } => fut.as_mut().poll(cx),
        }
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
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = &self.shared;
        let mut token = read_token(req.headers(), shared.config.cookie_name());
        // A `SameSite=Strict` route group: a cross-site request would not have
        // carried a strict cookie, so it is served without the session.
        if token.is_some()
            && req.headers().get(SEC_FETCH_SITE).map(HeaderValue::as_bytes) == Some(b"cross-site")
            && shared.config.is_strict_path(req.uri().path())
        {
            token = None;
        }
        // Status polling and event streams must not count as activity.
        let passive = matches!(*req.method(), Method::GET | Method::HEAD)
            && shared.config.is_passive_path(req.uri().path());
        // Only kept for HTML requests, which may need a redirect with `return_to`.
        let html_uri = accepts_html(req.headers()).then(|| Box::new(req.uri().clone()));
        // `shared` is already this thread's copy (see `Clone`).
        let session = Session::new(Arc::clone(shared));
        // `CsrfLayer`, inside this layer, reads the session's CSRF secret from it.
        req.extensions_mut().insert(session.clone());
        if let Some(token) = token {
            // Decoded and hashed once, here.
            let hash = token.hash();
            let (gate_now, later) = match session.manager().verify_hash_now(&hash, !passive) {
                Ok(verified) => (gate(&session, &req, verified), None),
                Err(later) => (Gate::Later, Some(later)),
            };
            if let Gate::Pass(verified) = gate_now {
                session.presented(token, verified);
            } else {
                // The service that was driven to readiness serves this request,
                // later; a clone takes its place.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                return ResponseFuture {
                    kind: Kind::Waiting {
                        fut: Box::pin(async move {
                            let mut g = gate_now;
                            if let Some(later) = later {
                                let verified = session.manager().verify_later(&hash, later).await;
                                g = gate(&session, &req, verified);
                            }
                            match g {
                                Gate::Mismatch(rec, mismatch, device) => {
                                    let acted = session
                                        .manager()
                                        .on_binding_mismatch(&rec, mismatch, device)
                                        .await;
                                    g = gate(&session, &req, acted);
                                }
                                Gate::Follow(rec, device) => {
                                    let followed =
                                        session.manager().follow_device(&rec, device).await;
                                    g = Gate::Pass(followed);
                                }
                                _ => {}
                            }
                            match g {
                                Gate::Held => {
                                    return Ok(held(session.config(), html_uri.as_deref()));
                                }
                                Gate::Pass(verified) => session.presented(token, verified),
                                // `gate` after `on_binding_mismatch` never finds
                                // another mismatch (the session follows the
                                // device, is held, or ended); refuse if it did.
                                Gate::Mismatch(..) | Gate::Follow(..) | Gate::Later => {
                                    return Ok(held(session.config(), html_uri.as_deref()));
                                }
                            }
                            let mut res = inner.call(req).await?;
                            finish(&session, &mut res, html_uri.as_deref());
                            Ok(res)
                        }),
                    },
                };
            }
        }
        ResponseFuture {
            kind: Kind::Ready {
                inner: self.inner.call(req),
                finish: Some(Finish { session, html_uri }),
            },
        }
    }
}

/// What the layer does with a verified cookie before the handler runs.
enum Gate {
    /// Go on with this result.
    Pass(Result<Arc<SessionRecord>, Error>),
    /// The session's binding broke: act on it (a store write) first.
    Mismatch(Arc<SessionRecord>, Mismatch, Device),
    /// No change, but the session should take the request's user agent
    /// (a browser update under the `label` rule): one quiet write first.
    Follow(Arc<SessionRecord>, Device),
    /// The session is held for a step-up and the path is not exempt.
    Held,
    /// The store must be awaited before anything is known.
    Later,
}

/// Checks a verified session against the requesting client: failed
/// verifications are reported for the audit log, held sessions are stopped
/// outside the exempt paths, and the binding is compared. Costs nothing but a
/// policy lookup when the session's role binds nothing; otherwise the client
/// IP and a comparison of two short strings, without allocating.
fn gate<B>(
    session: &Session,
    req: &Request<B>,
    verified: Result<Arc<SessionRecord>, Error>,
) -> Gate {
    let manager = session.manager();
    let config = session.config();
    let rec = match verified {
        Ok(rec) => rec,
        Err(e) => {
            manager.report_failure(client_ip(req, config.trusted_proxies()), &e);
            return Gate::Pass(Err(e));
        }
    };
    if rec.step_up_required() {
        return if config.is_hold_exempt(req.uri().path()) {
            Gate::Pass(Ok(rec))
        } else {
            Gate::Held
        };
    }
    let binding = &manager.policy_for(&rec).binding;
    if binding.is_off() {
        return Gate::Pass(Ok(rec));
    }
    let ip = client_ip(req, config.trusted_proxies());
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    match binding.check(&rec.device, ip, ua) {
        None if binding.follows_user_agent(&rec.device, ua) => {
            let device = Device::new(ip, ua);
            Gate::Follow(rec, device)
        }
        None => Gate::Pass(Ok(rec)),
        Some(m) => Gate::Mismatch(rec, m, Device::new(ip, ua)),
    }
}

/// The answer to a held session outside the exempt paths: the step-up page for
/// HTML requests (when configured), else `403 step-up-required`.
fn held(config: &SessionConfig, html_uri: Option<&Uri>) -> Response {
    match (html_uri, config.step_up_path()) {
        (Some(uri), Some(path)) => see_other(format!("{path}?return_to={}", return_to(uri))),
        _ => SessionRejection::StepUpRequired.into_response(),
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
    } else if res.status() == StatusCode::FORBIDDEN {
        if let (Some(uri), Some(path), Some(_)) = (
            html_uri,
            session.config().step_up_path(),
            res.extensions().get::<StepUpMarker>(),
        ) {
            *res = see_other(format!("{path}?return_to={}", return_to(uri)));
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
                if let Some(v) = set_cookie(config, &token.encode(), record, now.as_millis()) {
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

/// The session cookie's token, if present and well formed (what
/// [`SessionToken::parse`] accepts). Anything else (too long, wrong alphabet,
/// wrong length) counts as no cookie, and never reaches the store.
pub(crate) fn read_token(headers: &HeaderMap, name: &str) -> Option<SessionToken> {
    for value in headers.get_all(header::COOKIE) {
        // Read as bytes: another cookie's non-ASCII value (set by a script, say)
        // must not hide the session cookie beside it; the token itself is
        // checked byte by byte by `parse_bytes`.
        let mut rest = value.as_bytes();
        loop {
            // `name=value` after optional white space (only spaces and tabs can
            // occur here); cookie names never contain `=` (see `SessionConfig`).
            let start = rest
                .iter()
                .position(|&b| b != b' ' && b != b'\t')
                .unwrap_or(rest.len());
            rest = &rest[start..];
            if let Some(v) = rest
                .strip_prefix(name.as_bytes())
                .and_then(|r| r.strip_prefix(b"="))
            {
                // The first cookie of that name decides (`__Host-` keeps others
                // from planting one). Its value runs to the next `;`: a token only
                // if that is exactly `TOKEN_LEN` characters away (`;` is not in the
                // token alphabet, so `parse_bytes` refuses a shorter value).
                return match v.get(TOKEN_LEN) {
                    None | Some(b';') => SessionToken::parse_bytes(v.get(..TOKEN_LEN)?).ok(),
                    Some(_) => None,
                };
            }
            let Some(next) = rest.iter().position(|&b| b == b';') else {
                break;
            };
            rest = &rest[next + 1..];
        }
    }
    None
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
        // HTTP dates have four-digit years (and `fmt_http_date` panics beyond):
        // a "never" policy gets the last second of 9999.
        const LAST_HTTP_DATE_MS: u64 = 253_402_300_799_000;
        let at = UNIX_EPOCH
            + Duration::from_millis(
                u64::try_from(record.absolute_expires_at.0.max(0))
                    .unwrap_or(0)
                    .min(LAST_HTTP_DATE_MS),
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

/// Everything but RFC 3986 unreserved characters and `/` is percent-encoded.
const RETURN_TO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, RETURN_TO).to_string()
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

    fn cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::try_from(v) {
            h.insert(header::COOKIE, v);
        }
        h
    }

    #[test]
    fn read_token_finds_the_first_cookie_of_its_name() {
        let (Ok(a), Ok(b)) = (SessionToken::generate(), SessionToken::generate()) else {
            panic!("no randomness");
        };
        let (a_text, b_text) = (a.encode(), b.encode());
        for (header, want) in [
            (format!("session={a_text}"), Some(&a)),
            (format!("x=1; session={a_text}"), Some(&a)),
            (format!("x=1;session={a_text}; session={b_text}"), Some(&a)),
            (format!("sessionx={b_text}; session={a_text}"), Some(&a)),
            (format!("xsession={b_text}"), None),
            (format!("session; session={a_text}"), Some(&a)),
            // The first of the name decides, even if it is not a token.
            (format!("session=nope; session={a_text}"), None),
            (format!("session={a_text}x"), None),
            (format!("x=1;\t  session={a_text}"), Some(&a)),
            (format!(" session={a_text};x=1"), Some(&a)),
            (format!("session={a_text} ;x=1"), None),
            (format!("a=session={a_text}"), None),
            (format!("session={};x=1", &a_text[..42]), None),
        ] {
            assert_eq!(
                read_token(&cookie(&header), "session").as_ref(),
                want,
                "{header}"
            );
        }
        let mut two = HeaderMap::new();
        two.append(header::COOKIE, HeaderValue::from_static("x=1"));
        if let Ok(v) = HeaderValue::try_from(format!("session={b_text}")) {
            two.append(header::COOKIE, v);
        }
        assert_eq!(read_token(&two, "session").as_ref(), Some(&b));
        // Another cookie's non-ASCII value does not hide the session cookie
        // beside it (browsers send every cookie in one header), and the first
        // session cookie still decides.
        let mut odd = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(format!("x=\u{e9}; session={a_text}").as_bytes()) {
            odd.append(header::COOKIE, v);
        }
        if let Ok(v) = HeaderValue::try_from(format!("session={b_text}")) {
            odd.append(header::COOKIE, v);
        }
        assert_eq!(read_token(&odd, "session"), Some(a));
        // A non-ASCII byte inside the session value itself is no token.
        let mut bad = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(format!("session=\u{e9}{}", &a_text[2..]).as_bytes())
        {
            bad.append(header::COOKIE, v);
        }
        assert_eq!(read_token(&bad, "session"), None);
    }

    #[test]
    fn read_token_accepts_what_parse_accepts() {
        for _ in 0..64 {
            let Ok(token) = SessionToken::generate() else {
                panic!("no randomness");
            };
            let text = token.encode();
            assert_eq!(read_token(&cookie(&format!("s={text}")), "s"), Some(token));
            // Every last character: accepted exactly when `parse` accepts it (no
            // stray trailing bits).
            for c in (b'!'..=b'~').map(char::from).filter(|&c| c != ';') {
                let mut t = text[..text.len() - 1].to_owned();
                t.push(c);
                assert_eq!(
                    read_token(&cookie(&format!("s={t}")), "s"),
                    SessionToken::parse(&t).ok(),
                    "{t}"
                );
            }
        }
        for bad in [
            "",
            "a",
            &"A".repeat(42),
            &"A".repeat(44),
            &format!("{}=", "A".repeat(42)),
        ] {
            assert_eq!(read_token(&cookie(&format!("s={bad}")), "s"), None);
        }
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

#[cfg(test)]
mod far_future {
    use super::*;
    use sessionary_core::{MemoryStore, NewSession, Policy, RolePolicy, UserId};

    /// A "never" remember-me policy must not make `Set-Cookie` panic (HTTP dates
    /// have four-digit years).
    #[tokio::test]
    async fn a_remember_me_cookie_beyond_year_9999_is_clamped()
    -> Result<(), Box<dyn std::error::Error>> {
        let forever = Duration::from_secs(u64::MAX / 4);
        let policy = Policy {
            default: RolePolicy {
                absolute_timeout: forever,
                remember_absolute_timeout: forever,
                remember_idle_timeout: forever,
                ..RolePolicy::default()
            },
            ..Policy::default()
        };
        let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
            .with_policy(policy)
            .build()?;
        let issued = manager
            .create(NewSession::user(UserId::new("alice")?).with_remember(true))
            .await?;
        let config = SessionConfig::new();
        let now = manager.now().as_millis();
        let v =
            set_cookie(&config, &issued.token.encode(), &issued.session, now).ok_or("no cookie")?;
        assert!(
            v.to_str()?
                .contains("Expires=Fri, 31 Dec 9999 23:59:59 GMT"),
            "{v:?}"
        );
        Ok(())
    }
}
