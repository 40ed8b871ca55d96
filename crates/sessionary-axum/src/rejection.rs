//! Why an extractor or a session operation refused a request, as RFC 9457
//! `application/problem+json` responses.

use std::fmt;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use sessionary_core::{EndReason, Error, StoreError};

/// The media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Why a session extractor or a [`crate::Session`] operation failed.
///
/// Every variant is an [`IntoResponse`]: an RFC 9457 problem document whose
/// `type` is `/problems/<name>` ([`SessionRejection::problem_type`]). Behind a
/// [`crate::SessionLayer`], a [`SessionRejection::SessionExpired`] answered to
/// an HTML request (`Accept: text/html`) becomes a `303` redirect to the
/// configured expired page instead, and a [`SessionRejection::NotSignedIn`] a
/// `303` to the sign-in page if one is configured
/// ([`crate::SessionConfig::with_sign_in_path`]).
///
/// # Examples
///
/// ```
/// use axum::response::IntoResponse;
/// use sessionary_axum::SessionRejection;
/// use sessionary_core::EndReason;
///
/// let r = SessionRejection::SessionExpired { reason: EndReason::ExpiredIdle };
/// assert_eq!(r.problem_type(), "session-expired");
/// assert_eq!(r.into_response().status(), 401);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionRejection {
    /// No signed-in session: no cookie, an unknown token, or an anonymous session (401).
    NotSignedIn,
    /// The presented session ended; `reason` says why (401).
    SessionExpired {
        /// Why it ended (`expired_idle`, `logged_out`, `regenerated`, ...).
        reason: EndReason,
    },
    /// The signed-in user lacks a role (403).
    MissingRole {
        /// The role that was required.
        role: &'static str,
    },
    /// The session's authentication assurance level is too low: step up (403).
    InsufficientAal {
        /// The level required.
        required: u8,
        /// The session's level.
        current: u8,
    },
    /// The session is held after a binding mismatch (its device or network
    /// changed): its user must pass MFA or re-authenticate first (403).
    StepUpRequired,
    /// The session store did not answer (503).
    StoreUnavailable,
    /// No [`crate::SessionLayer`] runs in front of this handler: a programming
    /// error (500).
    LayerMissing,
    /// A session operation failed for another reason (conflict, invalid data,
    /// limit, internal); the status follows [`Error::problem_type`].
    Operation(Error),
}

/// Put on a response by [`SessionRejection::SessionExpired`] so the layer can
/// turn it into a redirect for HTML requests.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ExpiredMarker(pub(crate) EndReason);

/// Put on a response by [`SessionRejection::StepUpRequired`] so the layer can
/// send HTML requests to the step-up page, if one is configured.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepUpMarker;

/// Put on a response by [`SessionRejection::NotSignedIn`] so the layer can
/// send HTML requests to the sign-in page, if one is configured.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NotSignedInMarker;

impl SessionRejection {
    /// The problem type name (`/problems/<name>`).
    pub fn problem_type(&self) -> &'static str {
        match self {
            Self::NotSignedIn => "not-signed-in",
            Self::SessionExpired { .. } => "session-expired",
            Self::MissingRole { .. } => "missing-role",
            Self::InsufficientAal { .. } | Self::StepUpRequired => "step-up-required",
            Self::StoreUnavailable => "store-unavailable",
            Self::LayerMissing => "internal",
            Self::Operation(e) => e.problem_type(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotSignedIn | Self::SessionExpired { .. } => StatusCode::UNAUTHORIZED,
            Self::MissingRole { .. } | Self::InsufficientAal { .. } | Self::StepUpRequired => {
                StatusCode::FORBIDDEN
            }
            Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::LayerMissing => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Operation(e) => match e.problem_type() {
                "session-expired" | "malformed-token" => StatusCode::UNAUTHORIZED,
                "session-conflict" => StatusCode::CONFLICT,
                "session-limit" => StatusCode::TOO_MANY_REQUESTS,
                "invalid-request" => StatusCode::BAD_REQUEST,
                "not-found" => StatusCode::NOT_FOUND,
                "store-unavailable" => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::NotSignedIn => "Not signed in",
            Self::SessionExpired { .. } => "Session expired",
            Self::MissingRole { .. } => "Missing role",
            Self::InsufficientAal { .. } | Self::StepUpRequired => "Step-up required",
            Self::StoreUnavailable => "Session store unavailable",
            Self::LayerMissing => "Internal error",
            Self::Operation(_) => "Session operation failed",
        }
    }
}

impl fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSignedIn => f.write_str("not signed in"),
            Self::SessionExpired { reason } => write!(f, "session ended: {reason}"),
            Self::MissingRole { role } => write!(f, "the role `{role}` is required"),
            Self::InsufficientAal { required, current } => write!(
                f,
                "authentication assurance level {required} is required (the session has {current})"
            ),
            Self::StepUpRequired => f.write_str(
                "this session's device or network changed: confirm it is you (MFA or password) to continue",
            ),
            Self::StoreUnavailable => f.write_str("the session store is unavailable"),
            Self::LayerMissing => f.write_str("no SessionLayer in front of this handler"),
            Self::Operation(e) => write!(f, "session operation failed: {e}"),
        }
    }
}

impl std::error::Error for SessionRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Operation(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for SessionRejection {
    fn from(e: Error) -> Self {
        match e {
            Error::Ended(reason) => Self::SessionExpired { reason },
            Error::UnknownSession | Error::MalformedToken(_) => Self::NotSignedIn,
            Error::Store(StoreError::Unavailable(_)) => Self::StoreUnavailable,
            Error::StepUpRequired => Self::StepUpRequired,
            e => Self::Operation(e),
        }
    }
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        let status = self.status();
        // Internal causes are logged, never sent.
        let detail = match &self {
            Self::Operation(e) if status.is_server_error() => {
                tracing::error!(error = %e, "session operation failed");
                "the session operation failed".to_owned()
            }
            Self::LayerMissing => {
                tracing::error!("session extractor used without SessionLayer");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let mut doc = serde_json::json!({
            "type": format!("/problems/{}", self.problem_type()),
            "title": self.title(),
            "status": status.as_u16(),
            "detail": detail,
        });
        match &self {
            Self::SessionExpired { reason } => doc["reason"] = reason.as_str().into(),
            Self::MissingRole { role } => doc["role"] = (*role).into(),
            Self::InsufficientAal { required, .. } => doc["required_aal"] = (*required).into(),
            Self::StepUpRequired => doc["reason"] = "binding_changed".into(),
            Self::Operation(e) => {
                if let Some(reason) = e.reason() {
                    doc["reason"] = reason.into();
                }
            }
            _ => {}
        }
        let mut res = (status, doc.to_string()).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED || matches!(self, Self::StepUpRequired) {
            // Problems about a session are per user: never cache them.
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        match self {
            Self::SessionExpired { reason } => {
                res.extensions_mut().insert(ExpiredMarker(reason));
            }
            Self::NotSignedIn => {
                res.extensions_mut().insert(NotSignedInMarker);
            }
            Self::StepUpRequired => {
                res.extensions_mut().insert(StepUpMarker);
            }
            _ => {}
        }
        res
    }
}
