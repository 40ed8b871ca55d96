//! A session's activity over HTTP: `GET` and `POST /v1/sessions/{id}/activity`.
//!
//! Page views, leaves (the browser's `pagehide` beacon) and errors are
//! recorded through the audit log's writer ([`sessionary_core::activity`]);
//! the summary gives each view's dwell time, the time per path, the errors
//! and the session's start, end and length. Needs the audit log
//! ([`AppState::with_audit`], as `sessionary serve` runs); without it both
//! answer `404`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use sessionary_core::SessionId;
use sessionary_core::activity::{self, ActivitySummary};
use utoipa::ToSchema;

use crate::AppState;
use crate::extract::ApiJson;
use crate::problem::Problem;

/// What `POST /v1/sessions/{id}/activity` records.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActivityInput {
    /// The session viewed `path`.
    View {
        /// The page's path (a query string is dropped).
        #[schema(example = "/products/42")]
        path: String,
    },
    /// The session left `path` (e.g. a `navigator.sendBeacon` on `pagehide`).
    Left {
        /// The page's path.
        path: String,
    },
    /// An error was answered for `path`.
    Error {
        /// The page's path.
        path: String,
        /// The HTTP status, 400 to 599.
        status: u16,
    },
}

fn session_id(id: &str) -> Result<SessionId, Problem> {
    SessionId::parse(id)
        .map_err(|_| Problem::invalid_request("a session id is 22 base64url characters"))
}

fn not_configured() -> Problem {
    Problem::not_found("activity needs the audit log, which this service does not run")
}

/// A session's activity: page views with dwell times, time per path,
/// errors, start, end and length. Times are the service's clock.
#[utoipa::path(
    get, path = "/v1/sessions/{id}/activity", tag = "activity",
    params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 200, description = "The summary", body = Object),
        (status = 400, description = "A malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Activity is not recorded here", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ActivitySummary>, Problem> {
    let id = session_id(&id)?;
    let audit = state.audit.as_ref().ok_or_else(not_configured)?;
    audit.flush().await;
    let summary = activity::read(&**state.manager.store(), id, state.manager.now())
        .await
        .map_err(|e| Problem::from_id_error(&e.into()))?;
    Ok(Json(summary))
}

/// Records a page view, a leave or an error for the session, at the
/// service's time of arrival. Written behind: `202`.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/activity", tag = "activity",
    params(("id" = String, Path, description = "The session id")),
    request_body = ActivityInput,
    responses(
        (status = 202, description = "Recorded"),
        (status = 400, description = "A malformed id, path or status", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown session, or activity not recorded here", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The session's views are at the limit", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ActivityInput>,
) -> Result<StatusCode, Problem> {
    let id = session_id(&id)?;
    let recorder = state.activity.as_ref().ok_or_else(not_configured)?;
    // Input first: a bad body costs no store round trip and records nothing.
    let (path, status) = match &input {
        ActivityInput::View { path } | ActivityInput::Left { path } => (path, None),
        ActivityInput::Error { path, status } => (path, Some(*status)),
    };
    if activity::clean_path(path).is_none() {
        return Err(Problem::invalid_request(
            "`path`: expected an absolute path such as /cart",
        ));
    }
    if status.is_some_and(|s| !(400..600).contains(&s)) {
        return Err(Problem::invalid_request("`status`: expected 400 to 599"));
    }
    let known = state
        .manager
        .store()
        .get(&id)
        .await
        .map_err(|e| Problem::from_id_error(&e.into()))?;
    if known.is_none() {
        return Err(Problem::not_found("no live session has this id"));
    }
    let at = state.manager.now();
    let recorded = match &input {
        ActivityInput::View { path } => recorder.view(id, path, at),
        ActivityInput::Left { path } => recorder.left(id, path, at),
        ActivityInput::Error { path, status } => recorder.error(id, path, *status, at),
    };
    if !recorded {
        // The input was checked above: only the per-session view limit is left.
        return Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "activity-limit",
            format!(
                "this session's views are at the limit ({})",
                activity::Activity::PER_SESSION
            ),
        ));
    }
    Ok(StatusCode::ACCEPTED)
}
