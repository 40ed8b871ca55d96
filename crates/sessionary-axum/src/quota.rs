//! Quotas per session: units per route and bytes in and out, with limits from
//! the role policy ([`sessionary_core::Quotas`]), charged atomically in the store.
//!
//! [`QuotaLayer`] goes inside a [`crate::SessionLayer`] (it reads the request's
//! [`Session`]), usually on the routes it meters:
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use sessionary_axum::{QuotaLayer, SessionConfig, SessionLayer};
//! use sessionary_core::{MemoryStore, SessionManager};
//!
//! let manager = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;
//! let app: Router = Router::new()
//!     .route(
//!         "/files/{name}",
//!         get(|| async { "file contents" })
//!             .layer(QuotaLayer::new().with_units("downloads", 1).with_bytes()),
//!     )
//!     .layer(SessionLayer::new(manager, SessionConfig::new()));
//! # Ok::<(), sessionary_core::Error>(())
//! ```
//!
//! # What is charged, and when
//!
//! - **Units** ([`QuotaLayer::with_units`]) are charged *before* the handler
//!   runs, one atomic store step each: of 50 parallel requests against a limit
//!   of 5, exactly 5 reach the handler; the others get `429` and the handler
//!   never runs. A charged unit is not given back if the handler then fails.
//! - **Request bodies** ([`QuotaLayer::with_bytes`]): with a `Content-Length`,
//!   a body over the role's `upload_max` is refused with `413` and one within
//!   it is charged to `bytes_in` in one step before the handler runs (`429`
//!   when over budget); nothing of the body is read either way. Without a
//!   length, the body is counted as the handler reads it: each frame is charged
//!   before the handler sees it, a frame that would pass `upload_max` fails
//!   with a length-limit error (axum's extractors answer `413`) and one that
//!   would pass the budget fails the body with [`QuotaBodyError`].
//! - **Response bodies** ([`QuotaLayer::with_bytes`]): a body of known size is
//!   charged to `bytes_out` in one step before the response starts, so an
//!   over-budget response is replaced by a clean `429`. Other bodies (streams)
//!   are charged frame by frame, each frame before it is passed on; when a
//!   frame would pass the budget the stream ends with [`QuotaBodyError`] (the
//!   client sees a cut connection, never more than the budget). What was passed
//!   on is charged exactly: the count equals the bytes of the body. Responses
//!   to `HEAD` are not charged. After the handler, only a refusal by the limit
//!   changes the response: if the session ended meanwhile (sign-out) or the
//!   store fails, the bytes pass uncounted (with a warning in the log).
//!
//! # Sessions
//!
//! A request with a session is charged to it, by its role policy's limits; a
//! quota without a limit there is counted, never refused. A request without a
//! session is charged only when the *anonymous* policy limits that quota: an
//! anonymous session is then created for it (like a first write); otherwise it
//! passes uncounted. A per-session quota therefore bounds a session, not a
//! client that discards its cookie.
//!
//! Refusals emit [`sessionary_core::EventKind::QuotaRefused`] (metrics count
//! them) and answer [`QuotaRejection`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Request, StatusCode, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::Limited;
use pin_project_lite::pin_project;
use sessionary_core::{
    Charge, Error, QuotaKind, Quotas, SessionManager, SessionRecord, Timestamp, Usage, Window,
};
use tower::{Layer, Service};

use crate::extract::Session;
use crate::rejection::{PROBLEM_JSON, SessionRejection};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Meters the wrapped routes: units per request and, with
/// [`QuotaLayer::with_bytes`], request and response body bytes. See the
/// [module docs](self) for when each is charged.
#[derive(Clone, Debug, Default)]
pub struct QuotaLayer {
    units: Arc<[(String, u64)]>,
    bytes: bool,
}

impl QuotaLayer {
    /// A layer that charges nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Charges `n` units of quota `name` per request, before the handler runs.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid unit name
    /// ([`sessionary_core::quota::valid_unit_name`]): a programming error.
    #[must_use]
    pub fn with_units(self, name: &str, n: u64) -> Self {
        if let Err(e) = sessionary_core::quota::valid_unit_name(name) {
            panic!("QuotaLayer::with_units({name:?}): {e}");
        }
        let mut units = self.units.to_vec();
        units.push((name.to_owned(), n));
        Self {
            units: units.into(),
            ..self
        }
    }

    /// Counts request body bytes (`bytes_in`, capped by `upload_max`) and
    /// response body bytes (`bytes_out`).
    #[must_use]
    pub fn with_bytes(self) -> Self {
        Self {
            bytes: true,
            ..self
        }
    }
}

impl<S> Layer<S> for QuotaLayer {
    type Service = QuotaService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        QuotaService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`QuotaLayer`].
#[derive(Clone, Debug)]
pub struct QuotaService<S> {
    inner: S,
    layer: QuotaLayer,
}

/// The charges made for this request before the handler ran, one per unit of
/// [`QuotaLayer::with_units`], in the request's extensions: handlers show what
/// is left from it.
#[derive(Clone, Debug, Default)]
pub struct ChargedQuotas(pub Vec<Usage>);

impl ChargedQuotas {
    /// The usage of quota `name` after this request's charge.
    pub fn get(&self, name: &str) -> Option<&Usage> {
        self.0.iter().find(|u| u.quota == name)
    }
}

/// Why a metered request was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum QuotaRejection {
    /// A limit is reached: `429`, saying which quota and when it resets.
    Exceeded {
        /// The quota as it stands (nothing was charged).
        usage: Usage,
        /// The time of the refusal (for `Retry-After`).
        now: Timestamp,
    },
    /// The request body is larger than the role's `upload_max`: `413`.
    UploadTooLarge {
        /// The cap, in bytes.
        max: u64,
    },
    /// The session could not be charged (ended meanwhile, store down).
    Session(SessionRejection),
}

/// Put on every `429` of [`QuotaRejection::Exceeded`], for applications that
/// render their own page (the demo shop does).
#[derive(Clone, Debug)]
pub struct QuotaExceeded(pub Usage);

impl QuotaRejection {
    /// The problem type name (`/problems/<name>`).
    pub fn problem_type(&self) -> &'static str {
        match self {
            Self::Exceeded { .. } => "quota-exceeded",
            Self::UploadTooLarge { .. } => "upload-too-large",
            Self::Session(r) => r.problem_type(),
        }
    }
}

impl fmt::Display for QuotaRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exceeded { usage, .. } => {
                let limit = usage.limit.unwrap_or(usage.used);
                match usage.per {
                    Window::Session => write!(
                        f,
                        "the quota `{}` ({limit} per session) is used up; it starts again with a new session (this one ends at the latest at {})",
                        usage.quota,
                        usage.resets_at.to_rfc3339()
                    ),
                    Window::Every(_) => write!(
                        f,
                        "the quota `{}` ({limit} per {}) is used up until {}",
                        usage.quota,
                        usage.per,
                        usage.resets_at.to_rfc3339()
                    ),
                }
            }
            Self::UploadTooLarge { max } => {
                write!(f, "the request body is larger than the {max} bytes allowed")
            }
            Self::Session(r) => r.fmt(f),
        }
    }
}

impl std::error::Error for QuotaRejection {}

impl IntoResponse for QuotaRejection {
    fn into_response(self) -> Response {
        let (status, title) = match self {
            Self::Exceeded { .. } => (StatusCode::TOO_MANY_REQUESTS, "Quota exceeded"),
            Self::UploadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "Upload too large"),
            Self::Session(r) => return r.into_response(),
        };
        let mut doc = serde_json::json!({
            "type": format!("/problems/{}", self.problem_type()),
            "title": title,
            "status": status.as_u16(),
            "detail": self.to_string(),
        });
        let mut retry_after = None;
        match &self {
            Self::Exceeded { usage, now } => {
                doc["quota"] = usage.quota.clone().into();
                doc["limit"] = usage.limit.into();
                doc["used"] = usage.used.into();
                doc["per"] = usage.per.to_string().into();
                doc["resets_at"] = usage.resets_at.to_rfc3339().into();
                if let Window::Every(_) = usage.per {
                    // Whole seconds, rounded up: retrying earlier is refused again.
                    let ms = usage.resets_at.millis_since(*now).max(0);
                    retry_after = Some((ms + 999) / 1000);
                }
            }
            Self::UploadTooLarge { max } => doc["max_bytes"] = (*max).into(),
            Self::Session(_) => {}
        }
        let mut res = (status, doc.to_string()).into_response();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        // Per session: never cached.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(s) = retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Self::Exceeded { usage, .. } = self {
            res.extensions_mut().insert(QuotaExceeded(usage));
        }
        res
    }
}

impl<S> Service<Request<Body>> for QuotaService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The ready service serves this request; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        // A response to HEAD has no body on the wire, whatever its size hint says.
        let head = req.method() == http::Method::HEAD;
        Box::pin(async move {
            match before(&layer, req).await {
                Ok((req, session)) => {
                    let mut inner = inner;
                    let res = inner.call(req).await?;
                    Ok(match session {
                        Some(s) if layer.bytes && !head => after(&s, res).await,
                        _ => res,
                    })
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}

/// The quotas of the session's role, or of anonymous sessions without one.
fn quotas_of<'a>(manager: &'a SessionManager, record: Option<&SessionRecord>) -> &'a Quotas {
    match record {
        Some(r) => &manager.policy_for(r).quotas,
        None => &manager.policy().anonymous.quotas,
    }
}

/// The session to charge `kind` to: the request's, or a new anonymous one if
/// the anonymous policy limits `kind`; `None`: nothing to charge.
async fn charged_session(
    session: &Session,
    kind: QuotaKind<'_>,
) -> Result<Option<Arc<SessionRecord>>, QuotaRejection> {
    if let Some(r) = session.record() {
        return Ok(Some(r));
    }
    if quotas_of(session.manager(), None).limit(kind).is_none() {
        return Ok(None);
    }
    session
        .ensure()
        .await
        .map(Some)
        .map_err(QuotaRejection::Session)
}

async fn charge(
    manager: &SessionManager,
    record: &SessionRecord,
    kind: QuotaKind<'_>,
    by: u64,
) -> Result<Usage, QuotaRejection> {
    match manager.charge(record, kind, by).await {
        Ok(Charge::Granted(u)) => Ok(u),
        Ok(Charge::Refused(usage)) => Err(QuotaRejection::Exceeded {
            usage,
            now: manager.now(),
        }),
        Err(e) => Err(QuotaRejection::Session(e.into())),
    }
}

/// Charges units and a known request length; meters an unknown one.
async fn before(
    layer: &QuotaLayer,
    mut req: Request<Body>,
) -> Result<(Request<Body>, Option<Session>), QuotaRejection> {
    let Some(session) = req.extensions().get::<Session>().cloned() else {
        return Err(QuotaRejection::Session(SessionRejection::LayerMissing));
    };
    let manager = session.manager().clone();
    let mut charged = Vec::with_capacity(layer.units.len());
    for (name, n) in layer.units.iter() {
        let kind = QuotaKind::Unit(name);
        if let Some(record) = charged_session(&session, kind).await? {
            charged.push(charge(&manager, &record, kind, *n).await?);
        }
    }
    req.extensions_mut().insert(ChargedQuotas(charged));
    if !layer.bytes {
        return Ok((req, Some(session)));
    }
    let cap = quotas_of(&manager, session.record().as_deref()).upload_max;
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .or_else(|| req.body().size_hint().exact());
    if let (Some(max), Some(len)) = (cap, length) {
        if len > max {
            return Err(QuotaRejection::UploadTooLarge { max });
        }
    }
    let record = charged_session(&session, QuotaKind::BytesIn).await?;
    if record.is_none() {
        // So the response can be charged to the session the count needs.
        charged_session(&session, QuotaKind::BytesOut).await?;
    }
    match (length, record) {
        (Some(0), _) => {}
        (Some(len), Some(record)) => {
            charge(&manager, &record, QuotaKind::BytesIn, len).await?;
        }
        (None, record) => {
            let body = std::mem::take(req.body_mut());
            let manager = manager.clone();
            *req.body_mut() = match cap {
                Some(max) => {
                    let max = usize::try_from(max).unwrap_or(usize::MAX);
                    let limited = Limited::new(body, max);
                    Body::new(Metered::new(limited, manager, record, QuotaKind::BytesIn))
                }
                None => Body::new(Metered::new(body, manager, record, QuotaKind::BytesIn)),
            };
        }
        (Some(_), None) => {}
    }
    Ok((req, Some(session)))
}

/// Charges a response of known size in one step, or meters it as it streams.
///
/// The handler has done its work by now, so only a refusal by the limit
/// replaces its response; a session that ended meanwhile (sign-out) is not
/// charged, and a store failure is logged and the response passes uncounted.
async fn after(session: &Session, res: Response) -> Response {
    // The session now: the handler may have created, replaced or ended it.
    // None is created here (before() did, if the anonymous policy wants one).
    let Some(record) = session.record() else {
        return res;
    };
    let manager = session.manager().clone();
    match res.body().size_hint().exact() {
        Some(0) => res,
        Some(len) => match charge(&manager, &record, QuotaKind::BytesOut, len).await {
            Ok(_) => res,
            Err(rejection @ QuotaRejection::Exceeded { .. }) => rejection.into_response(),
            Err(other) => {
                uncounted(&other);
                res
            }
        },
        None => res.map(|b| Body::new(Metered::new(b, manager, Some(record), QuotaKind::BytesOut))),
    }
}

/// A charge after the handler that could not be made (not a refusal).
fn uncounted(why: &dyn fmt::Display) {
    tracing::warn!(error = %why, "quota: bytes not counted (the session ended or the store failed)");
}

/// A body failed because its session's byte budget ran out mid-stream
/// (`bytes_in` for a request body read by the handler, `bytes_out` for a
/// streamed response, which the client then sees cut off).
#[derive(Debug)]
pub struct QuotaBodyError {
    /// The quota as it stood (the refused frame was not charged).
    pub usage: Usage,
}

impl fmt::Display for QuotaBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the quota `{}` ran out mid-stream ({} of {} used, resets at {})",
            self.usage.quota,
            self.usage.used,
            self.usage.limit.unwrap_or(self.usage.used),
            self.usage.resets_at.to_rfc3339()
        )
    }
}

impl std::error::Error for QuotaBodyError {}

pin_project! {
    /// A body whose data frames are each charged before they are passed on.
    struct Metered<B> {
        #[pin]
        inner: B,
        manager: SessionManager,
        record: Option<Arc<SessionRecord>>,
        kind: QuotaKind<'static>,
        pending: Option<(BoxFuture<Result<Charge, Error>>, Frame<Bytes>)>,
    }
}

impl<B> Metered<B> {
    fn new(
        inner: B,
        manager: SessionManager,
        record: Option<Arc<SessionRecord>>,
        kind: QuotaKind<'static>,
    ) -> Self {
        Self {
            inner,
            manager,
            record,
            kind,
            pending: None,
        }
    }
}

impl<B> HttpBody for Metered<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if let Some((fut, _)) = this.pending.as_mut() {
                let out = std::task::ready!(fut.as_mut().poll(cx));
                let Some((_, frame)) = this.pending.take() else {
                    unreachable!("pending was just polled")
                };
                return Poll::Ready(Some(match out {
                    Ok(Charge::Granted(_)) => Ok(frame),
                    Ok(Charge::Refused(usage)) => Err(Box::new(QuotaBodyError { usage })),
                    Err(e) => {
                        // The session ended mid-body or the store failed: the
                        // rest passes uncounted (see `after`).
                        uncounted(&e);
                        *this.record = None;
                        Ok(frame)
                    }
                }));
            }
            let frame = match std::task::ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => return Poll::Ready(None),
            };
            let len = frame.data_ref().map_or(0, |d| d.len() as u64);
            let Some(record) = this.record.as_ref().filter(|_| len > 0) else {
                return Poll::Ready(Some(Ok(frame)));
            };
            let manager = this.manager.clone();
            let record = Arc::clone(record);
            let kind = *this.kind;
            let fut: BoxFuture<Result<Charge, Error>> =
                Box::pin(async move { manager.charge(&record, kind, len).await });
            *this.pending = Some((fut, frame));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        if let Some((_, frame)) = &self.pending {
            let n = frame.data_ref().map_or(0, |d| d.len() as u64);
            hint.set_lower(hint.lower().saturating_add(n));
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper.saturating_add(n));
            }
        }
        hint
    }
}
