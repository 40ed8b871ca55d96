//! TOTP step-up over HTTP (`sessionary-mfa`): enrolment with a QR code and
//! recovery codes, confirmation, step-up to AAL 2 with a new token, disabling.
//!
//! | method and path | does |
//! |---|---|
//! | `POST /v1/sessions/{id}/mfa/enrollment` | a new (pending) TOTP secret, its QR code and 10 recovery codes; needs a recent sign-in |
//! | `POST /v1/sessions/{id}/mfa/confirm` | a first code activates the enrolment |
//! | `POST /v1/sessions/{id}/mfa/step-up` | a code (or a recovery code) raises the session to AAL 2 under a new token |
//! | `DELETE /v1/sessions/{id}/mfa` | disables MFA; needs a recent sign-in and AAL 2 |
//! | `GET /v1/users/{user}/mfa` | whether the user is enrolled, and how many recovery codes are left |

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sessionary_mfa::{Error as MfaError, Mfa};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::issued_response;
use crate::extract::{ApiJson, IdPath, UserPath};
use crate::problem::Problem;

type ApiResult<T = Response> = Result<T, Problem>;

/// `POST .../mfa/confirm`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// Six digits from the authenticator app, or a recovery code.
    pub code: String,
}

/// `POST .../mfa/step-up`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpRequest {
    /// Six digits from the authenticator app, or a recovery code.
    pub code: String,
    /// The client stepping up: the session is bound to it from now on (which
    /// releases a hold after a binding mismatch).
    pub device: Option<crate::api::DeviceInput>,
}

/// A pending enrolment: show the QR code (or the secret) and the recovery codes
/// once, then confirm with a first code.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnrolmentResponse {
    /// The TOTP secret (base32), for manual entry.
    pub secret: String,
    /// The `otpauth://totp/...` URL the QR code holds.
    pub otpauth_url: String,
    /// The QR code as an SVG document.
    pub qr_svg: String,
    /// 10 single-use recovery codes; only their hashes are kept.
    pub recovery_codes: Vec<String>,
}

/// `GET /v1/users/{user}/mfa`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MfaStatus {
    /// A confirmed enrolment exists.
    pub enrolled: bool,
    /// Unused recovery codes.
    pub recovery_codes_left: usize,
}

fn mfa(state: &AppState) -> Mfa {
    Mfa::new(state.manager.clone(), "Sessionary")
}

/// An MFA refusal as a problem with its `reason`.
pub fn mfa_problem(e: &MfaError) -> Problem {
    if let MfaError::Session(inner) = e {
        return Problem::from_id_error(inner);
    }
    let status = match e.problem_type() {
        "mfa-code-refused" => StatusCode::FORBIDDEN,
        "mfa-rate-limited" => StatusCode::TOO_MANY_REQUESTS,
        "reauthentication-required" | "step-up-required" | "not-signed-in" => StatusCode::FORBIDDEN,
        "mfa-not-enrolled" | "mfa-already-enrolled" => StatusCode::CONFLICT,
        _ => {
            tracing::error!(error = %e, "MFA operation failed");
            return Problem::internal();
        }
    };
    let p = Problem::new(status, e.problem_type(), e.to_string());
    match e.reason() {
        Some(r) => p.with_reason(r),
        None => p,
    }
}

/// Starts (or restarts) a TOTP enrolment for the session's user. Needs a
/// sign-in within the privileged window (5 min).
#[utoipa::path(
    post, path = "/v1/sessions/{id}/mfa/enrollment", tag = "mfa",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 201, description = "Pending until confirmed. `Cache-Control: no-store`", body = EnrolmentResponse),
        (status = 403, description = "`reauthentication-required` or an anonymous session", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already enrolled", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn enrol(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult {
    let e = mfa(&state)
        .begin_enrolment(&id)
        .await
        .map_err(|e| mfa_problem(&e))?;
    let body = EnrolmentResponse {
        secret: e.secret_base32,
        otpauth_url: e.otpauth_url,
        qr_svg: e.qr_svg,
        recovery_codes: e.recovery_codes,
    };
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Confirms a pending enrolment with a first TOTP code.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/mfa/confirm", tag = "mfa",
    params(("id" = String, Path, description = "Session id")),
    request_body = CodeRequest,
    responses(
        (status = 204, description = "MFA is on"),
        (status = 403, description = "Code refused (`invalid_code`, `replayed`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong codes", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn confirm(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<CodeRequest>,
) -> ApiResult {
    mfa(&state)
        .confirm_enrolment(&id, &req.code)
        .await
        .map_err(|e| mfa_problem(&e))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Steps the session up to AAL 2 with a TOTP or recovery code: a new token is
/// issued and the old one is refused from now on (`regenerated`). This is also
/// what releases a session held after its device or network changed.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/mfa/step-up", tag = "mfa",
    params(("id" = String, Path, description = "Session id")),
    request_body = StepUpRequest,
    responses(
        (status = 200, description = "The new token. `Cache-Control: no-store`", body = crate::api::IssuedResponse),
        (status = 403, description = "Code refused", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not enrolled", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong codes", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn step_up(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<StepUpRequest>,
) -> ApiResult {
    let m = mfa(&state);
    let issued = match &req.device {
        Some(d) => m.step_up_from(&id, &req.code, d.device()).await,
        None => m.step_up(&id, &req.code).await,
    }
    .map_err(|e| mfa_problem(&e))?;
    Ok(issued_response(StatusCode::OK, &issued))
}

/// Disables MFA for the session's user. Needs a recent sign-in and AAL 2.
#[utoipa::path(
    delete, path = "/v1/sessions/{id}/mfa", tag = "mfa",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "Disabled"),
        (status = 403, description = "`reauthentication-required` or `step-up-required`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn disable(State(state): State<AppState>, IdPath(id): IdPath) -> ApiResult {
    mfa(&state)
        .disable(&id)
        .await
        .map_err(|e| mfa_problem(&e))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Whether a user has MFA, and how many recovery codes are left.
#[utoipa::path(
    get, path = "/v1/users/{user}/mfa", tag = "mfa",
    params(("user" = String, Path, description = "User id")),
    responses((status = 200, description = "Status", body = MfaStatus)),
)]
pub(crate) async fn status(
    State(state): State<AppState>,
    UserPath(user): UserPath,
) -> ApiResult<Json<MfaStatus>> {
    let m = mfa(&state);
    let enrolled = m.is_enrolled(&user).await.map_err(|e| mfa_problem(&e))?;
    let recovery_codes_left = if enrolled {
        m.recovery_codes_left(&user)
            .await
            .map_err(|e| mfa_problem(&e))?
    } else {
        0
    };
    Ok(Json(MfaStatus {
        enrolled,
        recovery_codes_left,
    }))
}
