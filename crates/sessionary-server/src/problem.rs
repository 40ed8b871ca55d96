//! Errors of the service API as RFC 9457 `application/problem+json` documents.
//!
//! Every error the API returns is a [`Problem`]: a JSON object with `type`
//! (`/problems/<name>`, one per failure class, see [`Error::problem_type`]),
//! `title`, `status`, `detail` and, when a session token was refused, the
//! `reason` (`malformed`, `unknown`, `expired_idle`, `logged_out`,
//! `regenerated`, ...). Internal failures never leak their cause to the client;
//! it is logged instead.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use sessionary_core::{Error, StoreError};
use utoipa::ToSchema;

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
///
/// # Examples
///
/// ```
/// use sessionary_server::problem::Problem;
/// let p = Problem::invalid_request("`aal` must be 1, 2 or 3");
/// assert_eq!(p.status, 400);
/// assert_eq!(p.type_, "/problems/invalid-request");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct Problem {
    /// `/problems/<name>`: the failure class (`session-expired`, `malformed-token`,
    /// `session-conflict`, `session-limit`, `invalid-request`, `not-found`,
    /// `store-unavailable`, `step-up-required`, `unauthorized`, `internal`).
    #[serde(rename = "type")]
    #[schema(example = "/problems/session-expired")]
    pub type_: String,
    /// A short, human-readable summary of the failure class.
    #[schema(example = "Session expired")]
    pub title: &'static str,
    /// The HTTP status code.
    #[schema(example = 401)]
    pub status: u16,
    /// What went wrong in this occurrence.
    #[schema(example = "session ended: expired_idle")]
    pub detail: String,
    /// Why a session token was refused: `malformed`, `unknown`, or the end reason
    /// (`expired_idle`, `expired_absolute`, `logged_out`, `revoked_by_user`,
    /// `revoked_by_admin`, `evicted_by_limit`, `hijack_suspected`, `token_reuse`,
    /// `regenerated`, `user_disabled`, `refresh_reused`), or `binding_changed` for a
    /// session held for a step-up.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "expired_idle")]
    pub reason: Option<&'static str>,
    /// On a version conflict: the version now stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
    /// On `step-up-required`: the held session, for the MFA step-up call.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub session_id: Option<sessionary_core::SessionId>,
    /// When the store failed: its kind, put on the response as an extension
    /// for the metrics (never sent).
    #[serde(skip)]
    #[schema(ignore)]
    pub store_error: Option<crate::metrics::StoreErrorKind>,
}

impl Problem {
    /// A problem of type `/problems/<name>`.
    pub fn new(status: StatusCode, name: &str, detail: impl Into<String>) -> Self {
        Self {
            type_: format!("/problems/{name}"),
            title: title_of(name),
            status: status.as_u16(),
            detail: detail.into(),
            reason: None,
            current_version: None,
            session_id: None,
            store_error: None,
        }
    }

    /// `400 invalid-request`.
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-request", detail)
    }

    /// `401 unauthorized`: no or a wrong API key.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required: send `Authorization: Bearer <key>`",
        )
    }

    /// `404 not-found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    /// `500 internal`, with a generic detail (the cause is logged, not sent).
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }

    /// Sets the `session_id` member.
    #[must_use]
    pub fn with_session(mut self, id: &sessionary_core::SessionId) -> Self {
        self.session_id = Some(*id);
        self
    }

    /// Sets the `reason` member.
    #[must_use]
    pub fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// The HTTP status as a [`StatusCode`].
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Maps an engine error met on an endpoint that takes a session **token**:
    /// refused tokens are `401` with their `reason`.
    pub fn from_token_error(e: &Error) -> Self {
        Self::from_error(e, Subject::Token)
    }

    /// Maps an engine error met on an endpoint that names a session **by id**:
    /// a session that ended is `410 session-expired` with its `reason` (the API
    /// key is fine, so `401` would mislead).
    pub fn from_id_error(e: &Error) -> Self {
        Self::from_error(e, Subject::Id)
    }

    fn from_error(e: &Error, subject: Subject) -> Self {
        let name = e.problem_type();
        let status = match (name, subject) {
            ("malformed-token" | "session-expired", Subject::Token) => StatusCode::UNAUTHORIZED,
            ("session-expired", Subject::Id) => StatusCode::GONE,
            ("malformed-token", Subject::Id) => StatusCode::BAD_REQUEST,
            ("not-found", _) => StatusCode::NOT_FOUND,
            ("session-conflict" | "session-limit", _) => StatusCode::CONFLICT,
            ("invalid-request", _) => StatusCode::BAD_REQUEST,
            ("refresh-refused", _) => StatusCode::UNAUTHORIZED,
            ("step-up-required", _) => StatusCode::FORBIDDEN,
            ("store-unavailable", _) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let detail = match e {
            // Never leak internals (store messages, seal failures) to clients.
            Error::Store(StoreError::Unavailable(_)) => {
                "the session store is unavailable; try again later".to_owned()
            }
            Error::Store(_) | Error::Seal(_) | Error::Random | Error::Config(_) => {
                "an internal error occurred; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, source = ?std::error::Error::source(e), "request failed");
        }
        let mut p = Self::new(status, name, detail);
        p.reason = e.reason();
        if let Error::VersionConflict { current } = e {
            p.current_version = Some(*current);
        }
        if let Error::Store(s) = e {
            p.store_error = Some(crate::metrics::StoreErrorKind::of(s));
        }
        p
    }
}

#[derive(Clone, Copy)]
enum Subject {
    Token,
    Id,
}

fn title_of(name: &str) -> &'static str {
    match name {
        "session-expired" => "Session expired",
        "malformed-token" => "Malformed session token",
        "session-conflict" => "Session changed concurrently",
        "session-limit" => "Concurrent session limit reached",
        "invalid-request" => "Invalid request",
        "not-found" => "Not found",
        "step-up-required" => "Step-up required",
        "store-unavailable" => "Session store unavailable",
        "unauthorized" => "Unauthorized",
        "method-not-allowed" => "Method not allowed",
        _ => "Internal error",
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let unauthorized = self.type_ == "/problems/unauthorized";
        let store_error = self.store_error;
        let mut res = (status, Json(self)).into_response();
        if let Some(kind) = store_error {
            res.extensions_mut().insert(kind);
        }
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if unauthorized {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sessionary\""),
            );
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessionary_core::EndReason;

    #[test]
    fn token_refusals_are_401_with_reason() {
        let p = Problem::from_token_error(&Error::Ended(EndReason::ExpiredIdle));
        assert_eq!(p.status, 401);
        assert_eq!(p.type_, "/problems/session-expired");
        assert_eq!(p.reason, Some("expired_idle"));
        let p = Problem::from_token_error(&Error::UnknownSession);
        assert_eq!(p.reason, Some("unknown"));
    }

    #[test]
    fn ended_sessions_by_id_are_410() {
        let p = Problem::from_id_error(&Error::Ended(EndReason::LoggedOut));
        assert_eq!(p.status, 410);
        assert_eq!(p.reason, Some("logged_out"));
    }

    #[test]
    fn internals_are_not_leaked() {
        let e = Error::Store(StoreError::backend(std::io::Error::other("secret path /x")));
        let p = Problem::from_token_error(&e);
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("secret"));
        let e = Error::Store(StoreError::unavailable(std::io::Error::other("db down")));
        let p = Problem::from_token_error(&e);
        assert_eq!(p.status, 503);
        assert_eq!(p.type_, "/problems/store-unavailable");
    }
}
