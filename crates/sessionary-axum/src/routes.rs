//! Expiry signals for browsers: a status route that never extends the session,
//! an explicit "stay signed in" route, and a server-sent events stream.
//!
//! | Route | What |
//! |---|---|
//! | `GET /session/status` | The session's state as JSON; never extends it |
//! | `POST /session/extend` | Records activity now and answers like the status route |
//! | `GET /session/events` | SSE: `expiring`, `expired`, `revoked`, `data-changed` |
//!
//! The routes run behind [`crate::SessionLayer`]. The layer verifies `GET` and
//! `HEAD` requests to the status and events paths with
//! [`SessionManager::status`] instead of [`SessionManager::verify`], so polling
//! and listening never count as activity (see
//! [`crate::SessionConfig::with_passive_path`]; when the routes are nested under
//! a prefix, add the full paths there).
//!
//! `POST /session/extend` is an unsafe method: when the application uses
//! [`crate::csrf::CsrfLayer`], the request needs its CSRF token like any other
//! form post; these routes do not bypass it.
//!
//! # Status document
//!
//! ```json
//! { "authenticated": true, "user": "alice",
//!   "expires_at": "2026-11-26T05:00:00.000Z",
//!   "idle_expires_at": "2026-11-26T05:00:00.000Z",
//!   "absolute_expires_at": "2026-11-26T16:30:00.000Z",
//!   "seconds_left": 1800, "step_up_required": false }
//! ```
//!
//! `step_up_required` is `true` while the session is held after its device or
//! network changed ([`sessionary_core::Binding`]); status and events keep
//! working then, so a page can say so.
//!
//! Without a session: `{ "authenticated": false }` (200). A presented session
//! that ended: `401` problem with its `reason`.
//!
//! # Events
//!
//! | Event | Data | When |
//! |---|---|---|
//! | `expiring` | `{"expires_at", "seconds_left"}` | once, when the session is within the configured lead time ([`crate::SessionConfig::with_expiry_warning`], 60 s by default) of its end; again after an extension brought it back out of that window |
//! | `expired` | `{"reason"}` | the session ran out (`expired_idle`, `expired_absolute`); the stream ends |
//! | `revoked` | `{"reason"}` | the session was ended otherwise (logout on another tab, "manage sessions", admin, limit, ...); the stream ends |
//! | `data-changed` | `{"scope": "session" \| "user" \| "unknown"}` | this session's data or its user's data (all devices) changed; `unknown` after the stream fell behind the event bus and may have missed a change |
//!
//! When the session's token is replaced (sign-in, step-up) the stream ends
//! without an event; the browser's `EventSource` reconnects with the new
//! cookie. A keep-alive comment is sent every 15 s. If events were missed
//! (a slow reader) the session is re-checked with [`SessionManager::status`].
//! If the status check itself fails (store unavailable) the stream ends without
//! an event and the browser reconnects.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use axum::Router;
//! use sessionary_axum::{SessionConfig, SessionLayer, session_routes};
//! use sessionary_core::{MemoryStore, SessionManager};
//!
//! let manager = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;
//! let app: Router = Router::new()
//!     .merge(session_routes())
//!     .layer(SessionLayer::new(manager, SessionConfig::new()));
//! # Ok::<(), sessionary_core::Error>(())
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use http::{HeaderValue, header};
use serde_json::{Value, json};
use sessionary_core::{
    EndReason, Error, Event, EventKind, SessionId, SessionManager, SessionRecord, SessionToken,
    Timestamp, UserId,
};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::config::{DEFAULT_EVENTS_PATH, DEFAULT_STATUS_PATH};
use crate::extract::Session;
use crate::rejection::SessionRejection;

/// The path of the extend route.
pub const EXTEND_PATH: &str = "/session/extend";

/// The path of the status route.
pub const STATUS_PATH: &str = DEFAULT_STATUS_PATH;

/// The path of the events route.
pub const EVENTS_PATH: &str = DEFAULT_EVENTS_PATH;

/// How often the events stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The session routes: `GET /session/status`, `POST /session/extend` and
/// `GET /session/events`. Merge them into the application's router inside a
/// [`crate::SessionLayer`] (see the [module docs](self)).
pub fn session_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route(STATUS_PATH, get(status))
        .route(EXTEND_PATH, post(extend))
        .route(EVENTS_PATH, get(events))
}

/// The status document of a live session.
fn status_doc(record: &SessionRecord, now: Timestamp) -> Value {
    let expires_at = record.expires_at();
    let idle = record.last_seen_at.add_millis(record.idle_timeout_ms);
    json!({
        "authenticated": record.is_authenticated(),
        "user": record.user.as_ref().map(UserId::as_str),
        "expires_at": expires_at.to_rfc3339(),
        "idle_expires_at": idle.to_rfc3339(),
        "absolute_expires_at": record.absolute_expires_at.to_rfc3339(),
        "seconds_left": expires_at.millis_since(now).max(0) / 1000,
        "step_up_required": record.step_up_required(),
    })
}

fn no_store(doc: Value) -> Response {
    let mut res = Json(doc).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The live record, `None` without a session, or why the request is refused.
fn live(session: &Session) -> Result<Option<Arc<SessionRecord>>, SessionRejection> {
    let state = session.lock();
    if state.store_failed {
        return Err(SessionRejection::StoreUnavailable);
    }
    match (&state.record, state.ended) {
        (Some(r), _) => Ok(Some(Arc::clone(r))),
        (None, Some(reason)) => Err(SessionRejection::SessionExpired { reason }),
        (None, None) => Ok(None),
    }
}

/// `GET /session/status`: never extends the session (the layer verifies this
/// path with [`SessionManager::status`]).
async fn status(session: Session) -> Result<Response, SessionRejection> {
    Ok(no_store(match live(&session)? {
        Some(record) => status_doc(&record, session.manager().now()),
        None => json!({ "authenticated": false }),
    }))
}

/// `POST /session/extend`: records activity now.
async fn extend(session: Session) -> Result<Response, SessionRejection> {
    if live(&session)?.is_none() {
        return Err(SessionRejection::NotSignedIn);
    }
    let record = session.extend().await?;
    Ok(no_store(status_doc(&record, session.manager().now())))
}

/// `GET /session/events`.
async fn events(
    session: Session,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, SessionRejection> {
    let record = live(&session)?.ok_or(SessionRejection::NotSignedIn)?;
    let token = session
        .lock()
        .token
        .as_ref()
        .map(SessionToken::encode)
        .ok_or(SessionRejection::NotSignedIn)?;
    let manager = session.manager().clone();
    // Subscribed before the response leaves, so nothing after it is missed.
    let rx = manager.subscribe();
    let jumps = manager.clock_jumps();
    let watch = Watch {
        jumps,
        lead_ms: i64::try_from(session.config().expiry_warning().as_millis()).unwrap_or(i64::MAX),
        manager,
        token,
        id: record.id,
        user: record.user.clone(),
        expires_at: record.expires_at(),
        rx,
        warned: false,
        done: false,
    };
    let stream = futures_util::stream::unfold(watch, |mut w| async move {
        let event = w.next().await?;
        Some((Ok(event), w))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The state of one events stream.
struct Watch {
    manager: SessionManager,
    token: String,
    id: SessionId,
    user: Option<UserId>,
    rx: broadcast::Receiver<Arc<Event>>,
    /// Jumps of a test clock: deadlines are re-checked after each.
    jumps: Option<tokio::sync::watch::Receiver<Timestamp>>,
    /// The session's end as last seen.
    expires_at: Timestamp,
    /// The `expiring` lead time.
    lead_ms: i64,
    /// `expiring` was sent for the current `expires_at` window.
    warned: bool,
    /// `expired` or `revoked` was sent.
    done: bool,
}

/// What one event of the bus means for this stream.
enum Outcome {
    Send(SseEvent),
    Finish(Option<SseEvent>),
    Ignore,
}

impl Watch {
    /// The next event to send, or `None` when the stream is over.
    async fn next(&mut self) -> Option<SseEvent> {
        if self.done {
            return None;
        }
        loop {
            // The next deadline by the manager's clock: the warning, then the end.
            let target = if self.warned {
                self.expires_at
            } else {
                self.expires_at.add_millis(-self.lead_ms)
            };
            let wait = u64::try_from(target.millis_since(self.manager.now())).unwrap_or(0);
            let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
            let outcome = tokio::select! {
                biased;
                received = self.rx.recv() => match received {
                    // Another node's events were lost: as for a lag here.
                    Ok(event) if matches!(event.kind, EventKind::EventsMissed) => {
                        match self.recheck().await {
                            Outcome::Ignore => Outcome::Send(data_changed("unknown")),
                            other => other,
                        }
                    }
                    Ok(event) => self.classify(&event),
                    // Missed events: the store says whether the session ended;
                    // a missed data change cannot be ruled out, so announce one.
                    Err(RecvError::Lagged(_)) => match self.recheck().await {
                        Outcome::Ignore => Outcome::Send(data_changed("unknown")),
                        other => other,
                    },
                    Err(RecvError::Closed) => Outcome::Finish(None),
                },
                () = tokio::time::sleep_until(deadline) => self.recheck().await,
                () = clock_jumped(self.jumps.as_mut()) => self.recheck().await,
            };
            match outcome {
                Outcome::Send(e) => return Some(e),
                Outcome::Finish(e) => {
                    self.done = true;
                    return e;
                }
                Outcome::Ignore => {}
            }
        }
    }

    fn classify(&self, event: &Event) -> Outcome {
        let mine = event.session_id == Some(self.id);
        match &event.kind {
            EventKind::Ended { reason } if mine => end_outcome(*reason),
            EventKind::DataChanged if mine => Outcome::Send(data_changed("session")),
            EventKind::UserDataChanged if self.user.is_some() && event.user == self.user => {
                Outcome::Send(data_changed("user"))
            }
            _ => Outcome::Ignore,
        }
    }

    /// Reads the session again without extending it: ended, extended meanwhile
    /// (re-arm), or within the warning window.
    async fn recheck(&mut self) -> Outcome {
        match self.manager.status(&self.token).await {
            Ok(record) => {
                let now = self.manager.now();
                let expires_at = record.expires_at();
                let in_window = expires_at.millis_since(now) <= self.lead_ms;
                self.expires_at = expires_at;
                if !in_window {
                    // Extended (or woken early): wait for the new window.
                    self.warned = false;
                    Outcome::Ignore
                } else if self.warned {
                    Outcome::Ignore
                } else {
                    self.warned = true;
                    Outcome::Send(named(
                        "expiring",
                        &json!({
                            "expires_at": expires_at.to_rfc3339(),
                            "seconds_left": expires_at.millis_since(now).max(0) / 1000,
                        }),
                    ))
                }
            }
            Err(Error::Ended(reason)) => end_outcome(reason),
            Err(e) => {
                // Unknown token or store trouble: end; the browser reconnects.
                tracing::warn!(error = %e, "session events stream: status check failed");
                Outcome::Finish(None)
            }
        }
    }
}

/// Completes when a jumping clock moved; never for real clocks.
async fn clock_jumped(jumps: Option<&mut tokio::sync::watch::Receiver<Timestamp>>) {
    if let Some(rx) = jumps {
        if rx.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

fn end_outcome(reason: EndReason) -> Outcome {
    let name = match reason {
        EndReason::ExpiredIdle | EndReason::ExpiredAbsolute => "expired",
        // The session lives on under a new token: reconnect with the new cookie.
        EndReason::Regenerated => return Outcome::Finish(None),
        _ => "revoked",
    };
    Outcome::Finish(Some(named(name, &json!({ "reason": reason.as_str() }))))
}

fn data_changed(scope: &str) -> SseEvent {
    named("data-changed", &json!({ "scope": scope }))
}

fn named(name: &'static str, data: &Value) -> SseEvent {
    SseEvent::default().event(name).data(data.to_string())
}
