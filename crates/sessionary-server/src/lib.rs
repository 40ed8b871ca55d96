//! The Sessionary session service: configuration, the HTTP/JSON API v1 and the
//! `sessionary` binary's runtime.
//!
//! [`app`] builds the [`axum::Router`] from an [`AppState`] (a
//! [`SessionManager`] and the accepted [`ApiKeys`]); the binary's `main.rs` only
//! parses the command line, loads [`config`], sets up tracing and calls
//! [`serve::run`]. Tests drive the router directly:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use sessionary_core::{MemoryStore, SessionManager};
//! use sessionary_server::{ApiKeys, AppState, app};
//! use tower::ServiceExt;
//!
//! let manager = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;
//! let router = app(AppState::new(manager, ApiKeys::new(["k".repeat(40)])));
//! let res = router
//!     .oneshot(http::Request::get("/healthz").body(axum::body::Body::empty())?)
//!     .await?;
//! assert_eq!(res.status(), 200);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Endpoints
//!
//! All under `Authorization: Bearer <api key>` except `/healthz` and
//! `/v1/openapi.json`; the OpenAPI 3.1 document is the reference.
//!
//! | method and path | does |
//! |---|---|
//! | `POST /v1/sessions` | create (sign-in, sign-in from a session, anonymous) |
//! | `POST /v1/sessions/verify` | the hot path: token → session, or a refusal with `reason` |
//! | `POST /v1/sessions/extend`, `POST /v1/sessions/logout` | stay signed in; sign out |
//! | `GET /v1/sessions/{id}`, `DELETE /v1/sessions/{id}?reason=` | read; end |
//! | `GET`/`PATCH /v1/sessions/{id}/data` | session data (merge patch, `If-Match`) |
//! | `POST /v1/sessions/{id}/regenerate` | new token (roles, step-up) |
//! | `GET`/`POST /v1/sessions/{id}/quotas/{name}` | a quota of the session: read; charge atomically (`429` over the limit) ([`quota_api`]) |
//! | `GET`/`DELETE /v1/users/{user}/sessions` | list; end all (or all but `except`) |
//! | `GET`/`PATCH /v1/users/{user}/data` | user data shared by all devices |
//! | `POST /v1/tokens`, `/v1/tokens/refresh`, `/v1/tokens/revoke`, `/v1/tokens/verify` | access (JWT) and refresh tokens ([`token_api`]) |
//! | `GET /.well-known/jwks.json` | the access tokens' public keys (no API key) |
//! | `GET /v1/audit?user=&session=&kind=&before=&limit=` | the audit log, newest first ([`audit_api`]) |
//! | `/v1/sessions/{id}/mfa/...`, `GET /v1/users/{user}/mfa` | TOTP enrolment, confirmation, step-up to AAL 2, disabling ([`mfa_api`]) |
//!
//! With the demo and registered clients, [`app_with_demo`] also serves the
//! OpenID Connect provider ([`oidc`]): `/.well-known/openid-configuration`,
//! `/oauth2/jwks`, `/oauth2/authorize`, `/oauth2/token`, `/oauth2/userinfo`,
//! `/oauth2/logout`.
//!
//! # Security model
//!
//! - API keys are compared as SHA-256 digests in constant time ([`ApiKeys`]).
//! - Session tokens appear only in the bodies of create and regenerate responses,
//!   which carry `Cache-Control: no-store` (as does every API response). They are
//!   never logged; request spans carry the method, route and session id.
//! - Malformed tokens are refused before any store access; unknown tokens never
//!   create anything (both enforced by `sessionary-core`, tested here through HTTP).
//! - Errors are RFC 9457 problems ([`problem::Problem`]); internal causes are logged,
//!   never sent.
//! - Bodies are limited to [`MAX_BODY_BYTES`].

#![deny(missing_docs)]

pub mod activity_api;
pub mod api;
pub mod audit_api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod demo;
pub mod extract;
pub mod metrics;
pub mod mfa_api;
pub mod oidc;
pub mod problem;
pub mod quota_api;
pub mod serve;
pub mod token_api;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sessionary_core::SessionManager;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use auth::ApiKeys;
pub use problem::Problem;

/// Largest request body accepted, in bytes (256 KiB); larger bodies get `413`.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What every handler shares: the session engine and the accepted API keys.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The session engine (inject a `MockClock` through its builder in tests).
    pub manager: SessionManager,
    keys: Arc<ApiKeys>,
    /// Access tokens, when configured ([`AppState::with_tokens`]); without them
    /// the `/v1/tokens` endpoints answer `404`.
    pub tokens: Option<Arc<sessionary_token::AccessTokens>>,
    /// Where rotated signing keys are saved, and the algorithm of new ones.
    token_keys: Option<(std::path::PathBuf, sessionary_token::SigningAlg)>,
    /// New-device alerts, when configured ([`AppState::with_alerts`]): called
    /// after each sign-in (`POST /v1/sessions` with a user, the demo's sign-in).
    pub alerts: Option<Arc<sessionary_notify::NewDeviceAlerts>>,
    /// The file outbox, when it is the notifier ([`AppState::with_outbox`]):
    /// the demo lists it at `/outbox`.
    pub outbox: Option<Arc<sessionary_notify::FileOutbox>>,
    /// The audit log sink of `manager`, flushed before `GET /v1/audit` reads
    /// ([`AppState::with_audit`]).
    pub audit: Option<Arc<sessionary_core::AuditLog>>,
    /// Page views, leaves and errors, recorded through `audit`
    /// (`/v1/sessions/{id}/activity`, the demo's pages).
    pub activity: Option<Arc<sessionary_core::activity::Activity>>,
    /// The metrics ([`AppState::with_metrics`]): verify latency and store
    /// errors are recorded here (the lifecycle counters come from the
    /// manager's events, so `metrics` must be one of its event sinks).
    pub metrics: Option<metrics::Metrics>,
    /// Who may read `/metrics` on this router; `None`: not served here.
    metrics_access: Option<MetricsAccess>,
}

/// Who may read `GET /metrics`.
#[derive(Clone, Debug)]
pub enum MetricsAccess {
    /// Any API key (`Authorization: Bearer <api key>`).
    ApiKey,
    /// Only these scraper tokens.
    Token(Arc<ApiKeys>),
    /// Anyone who reaches the listener (a separate loopback listener only).
    Open,
}

impl AppState {
    /// State over `manager`, accepting `keys`.
    pub fn new(manager: SessionManager, keys: ApiKeys) -> Self {
        Self {
            manager,
            keys: Arc::new(keys),
            tokens: None,
            token_keys: None,
            alerts: None,
            outbox: None,
            audit: None,
            activity: None,
            metrics: None,
            metrics_access: None,
        }
    }

    /// Records verify latency and store errors in `metrics`, and serves them
    /// at `GET /metrics` to callers allowed by `access` (`None`: not on this
    /// router, e.g. because a separate listener serves them with
    /// [`metrics_router`]).
    #[must_use]
    pub fn with_metrics(
        mut self,
        metrics: metrics::Metrics,
        access: Option<MetricsAccess>,
    ) -> Self {
        self.metrics = Some(metrics);
        self.metrics_access = access;
        self
    }

    /// Watches sign-ins for new devices with `alerts`.
    #[must_use]
    pub fn with_alerts(mut self, alerts: Arc<sessionary_notify::NewDeviceAlerts>) -> Self {
        self.alerts = Some(alerts);
        self
    }

    /// Shows `outbox` (the file notifier of the alerts) in the demo at `/outbox`.
    #[must_use]
    pub fn with_outbox(mut self, outbox: Arc<sessionary_notify::FileOutbox>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// The audit log that `manager` writes to (one of its event sinks): the
    /// API and the demo wait for it to write what was emitted before reading
    /// (`GET /v1/audit`, the demo's "Security activity").
    #[must_use]
    pub fn with_audit(mut self, audit: Arc<sessionary_core::AuditLog>) -> Self {
        self.activity = Some(Arc::new(sessionary_core::activity::Activity::new(
            Arc::clone(&audit),
        )));
        self.audit = Some(audit);
        self
    }

    /// Saves the key ring to `path` after each rotation
    /// (`POST /v1/tokens/keys/rotate`), whose new keys use `alg`.
    #[must_use]
    pub fn with_token_key_file(
        mut self,
        path: std::path::PathBuf,
        alg: sessionary_token::SigningAlg,
    ) -> Self {
        self.token_keys = Some((path, alg));
        self
    }

    /// Issues and verifies access tokens with `tokens` (its revocation list
    /// must follow `manager`'s events, e.g. as an event sink of its builder).
    #[must_use]
    pub fn with_tokens(mut self, tokens: Arc<sessionary_token::AccessTokens>) -> Self {
        self.tokens = Some(tokens);
        self
    }
}

/// Every API response is private: `Cache-Control: no-store` unless a handler set
/// something else, and `X-Content-Type-Options: nosniff`.
async fn private_responses(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

async fn not_found() -> Problem {
    Problem::not_found("no such endpoint; see /v1/openapi.json")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this endpoint does not support this method; see /v1/openapi.json",
    )
}

/// The service's router: `/healthz`, `/v1/openapi.json` and the API v1.
pub fn app(state: AppState) -> Router {
    outer_layers(api(state, true))
}

/// The API ([`app`]) and the demo shop ([`demo::router`]) at `/`, as
/// `sessionary serve` runs them, over the same session manager. Unknown paths
/// under `/v1/` get problem documents, others the demo's error page.
pub fn app_with_demo(state: AppState, mut options: demo::DemoOptions) -> Router {
    let manager = state.manager.clone();
    if let Some(alerts) = &state.alerts {
        options = options.with_alerts(Arc::clone(alerts));
    }
    if let Some(outbox) = &state.outbox {
        options = options.with_outbox(Arc::clone(outbox));
    }
    let oidc = options
        .oidc
        .clone()
        .map(|p| oidc::router(p, demo::session_config(&options)));
    let mut shop = demo::router(manager, options);
    if let Some(activity) = &state.activity {
        shop = shop.layer(axum::Extension(Arc::clone(activity)));
    }
    if let Some(audit) = &state.audit {
        shop = shop.layer(axum::Extension(Arc::clone(audit)));
    }
    let mut routes = api(state, false);
    if let Some(oidc) = oidc {
        routes = routes.merge(oidc);
    }
    outer_layers(routes.merge(shop))
}

/// The API routes, each answering with private problem documents; with
/// `fallback`, unknown paths too.
fn api(state: AppState, fallback: bool) -> Router {
    let v1 = Router::new()
        .route("/v1/sessions", post(api::create_session))
        .route("/v1/sessions/verify", post(api::verify))
        .route("/v1/sessions/extend", post(api::extend))
        .route("/v1/sessions/logout", post(api::logout))
        .route(
            "/v1/sessions/{id}",
            get(api::get_session).delete(api::delete_session),
        )
        .route(
            "/v1/sessions/{id}/data",
            get(api::get_session_data).patch(api::patch_session_data),
        )
        .route("/v1/sessions/{id}/regenerate", post(api::regenerate))
        .route(
            "/v1/sessions/{id}/quotas/{name}",
            get(quota_api::get_quota).post(quota_api::charge_quota),
        )
        .route(
            "/v1/users/{user}/sessions",
            get(api::list_user_sessions).delete(api::delete_user_sessions),
        )
        .route(
            "/v1/users/{user}/data",
            get(api::get_user_data).patch(api::patch_user_data),
        )
        .route("/v1/sessions/{id}/mfa/enrollment", post(mfa_api::enrol))
        .route("/v1/sessions/{id}/mfa/confirm", post(mfa_api::confirm))
        .route("/v1/sessions/{id}/mfa/step-up", post(mfa_api::step_up))
        .route(
            "/v1/sessions/{id}/mfa",
            axum::routing::delete(mfa_api::disable),
        )
        .route("/v1/users/{user}/mfa", get(mfa_api::status))
        .route("/v1/tokens", post(token_api::issue))
        .route("/v1/tokens/refresh", post(token_api::refresh))
        .route("/v1/tokens/revoke", post(token_api::revoke))
        .route("/v1/tokens/verify", post(token_api::verify))
        .route("/v1/tokens/keys/rotate", post(token_api::rotate_key))
        .route("/v1/audit", get(audit_api::list))
        .route(
            "/v1/sessions/{id}/activity",
            get(activity_api::get).post(activity_api::post),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_api_key,
        ));
    let router = Router::new()
        .route("/healthz", get(api::healthz))
        .route("/v1/openapi.json", get(api::openapi_json))
        .route("/.well-known/jwks.json", get(token_api::jwks))
        .merge(v1);
    let router = if state.metrics.is_some() && state.metrics_access.is_some() {
        router.route("/metrics", get(serve_metrics))
    } else {
        router
    };
    let router = if fallback {
        router.fallback(not_found)
    } else {
        router.route("/v1/{*rest}", axum::routing::any(not_found))
    };
    router
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(private_responses))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            count_store_errors,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Counts the store failures that [`Problem`]s marked on their responses.
async fn count_store_errors(State(state): State<AppState>, res: Response) -> Response {
    if let (Some(m), Some(kind)) = (
        &state.metrics,
        res.extensions().get::<metrics::StoreErrorKind>(),
    ) {
        m.store_error(*kind);
    }
    res
}

fn metrics_allowed(access: &MetricsAccess, keys: &ApiKeys, req: &Request) -> bool {
    let presented = auth::bearer(req);
    match access {
        MetricsAccess::Open => true,
        MetricsAccess::ApiKey => presented.is_some_and(|k| keys.verify(k)),
        MetricsAccess::Token(t) => presented.is_some_and(|k| t.verify(k)),
    }
}

fn metrics_response(metrics: &metrics::Metrics) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        metrics.render(),
    )
        .into_response()
}

/// `GET /metrics` on the main listener.
async fn serve_metrics(State(state): State<AppState>, req: Request) -> Response {
    match (&state.metrics, &state.metrics_access) {
        (Some(m), Some(access)) if metrics_allowed(access, &state.keys, &req) => {
            metrics_response(m)
        }
        (Some(_), Some(_)) => Problem::unauthorized().into_response(),
        _ => Problem::not_found("metrics are not served here").into_response(),
    }
}

/// A router serving only `GET /metrics`, for a separate listener
/// (`[metrics] listen`): open, or only to bearers of `token`.
pub fn metrics_router(metrics: metrics::Metrics, token: Option<ApiKeys>) -> Router {
    let access = token.map_or(MetricsAccess::Open, |t| MetricsAccess::Token(Arc::new(t)));
    let keys = ApiKeys::default();
    Router::new()
        .route(
            "/metrics",
            get(move |req: Request| {
                let (metrics, access, keys) = (metrics.clone(), access.clone(), keys.clone());
                async move {
                    if metrics_allowed(&access, &keys, &req) {
                        metrics_response(&metrics)
                    } else {
                        Problem::unauthorized().into_response()
                    }
                }
            }),
        )
        .fallback(not_found)
}

/// Runs the new-device check after a sign-in that created `session`. Never
/// fails the sign-in: errors are logged.
pub(crate) async fn check_new_device(
    alerts: Option<&sessionary_notify::NewDeviceAlerts>,
    session: &sessionary_core::SessionRecord,
) {
    let Some(alerts) = alerts else { return };
    if session.user.is_none() {
        return;
    }
    if let Err(e) = alerts.sign_in(session).await {
        tracing::warn!(
            sid = %session.id,
            error = &e as &dyn std::error::Error,
            "new-device check failed; sign-in goes on"
        );
    }
}

/// Tracing (method, route and session id only) and panics as `500` problems.
fn outer_layers(router: Router) -> Router {
    router
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // Never the URI's query or any header: only method, route and the
            // session id once a handler knows it.
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            tracing::info_span!(
                "request",
                method = %req.method(),
                route,
                sid = tracing::field::Empty,
            )
        }))
        .layer(CatchPanicLayer::custom(|_| {
            Problem::internal().into_response()
        }))
}
