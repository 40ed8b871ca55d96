//! Access and refresh tokens over HTTP, for API clients that carry no cookie:
//! a session becomes a short-lived access token (a JWT any service can verify
//! with the JWKS) and a rotating refresh token.
//!
//! | method and path | does |
//! |---|---|
//! | `POST /v1/tokens` | session token -> access + refresh token |
//! | `POST /v1/tokens/refresh` | refresh token -> new access + refresh token (the old one is spent) |
//! | `POST /v1/tokens/revoke` | ends a refresh token's family (the session lives on) |
//! | `POST /v1/tokens/verify` | an access token's claims, or why it is refused |
//! | `POST /v1/tokens/keys/rotate` | a new signing key; the old ones keep verifying until their tokens expired |
//! | `GET /.well-known/jwks.json` | the public keys (no API key needed) |

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sessionary_core::{Error, SessionRecord};
use sessionary_token::{AccessClaims, AccessTokenError, AccessTokens};
use utoipa::ToSchema;

use crate::AppState;
use crate::api::SessionView;
use crate::extract::ApiJson;
use crate::problem::Problem;

type ApiResult<T = Response> = Result<T, Problem>;

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueTokensRequest {
    /// The session token of a signed-in session (from `POST /v1/sessions`).
    pub session_token: String,
    /// Also issue a refresh token (default `true`).
    pub refresh: Option<bool>,
}

/// `POST /v1/tokens/refresh` and `POST /v1/tokens/revoke`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token (43 base64url characters).
    pub refresh_token: String,
}

/// `POST /v1/tokens/verify`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyAccessRequest {
    /// The access token (a compact JWS).
    pub access_token: String,
}

/// Tokens just issued. Hand them to the client; never log them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokensResponse {
    /// The access token, for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// When the access token expires (RFC 3339, UTC).
    pub expires_at: String,
    /// The refresh token (single use: each refresh returns the next one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the refresh token's family ends, however often it is rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<String>,
    /// Whether this answer repeats the successor an earlier use of the same
    /// refresh token received (a retry within the grace window).
    pub retried: bool,
    /// The session behind the tokens.
    pub session: SessionView,
}

/// The claims of a valid access token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClaimsResponse {
    /// `iss`.
    pub iss: String,
    /// `aud`.
    pub aud: String,
    /// `sub`: the user.
    pub sub: String,
    /// `sid`: the session.
    pub sid: String,
    /// `exp` (seconds since the epoch).
    pub exp: i64,
    /// `nbf`.
    pub nbf: i64,
    /// `iat`.
    pub iat: i64,
    /// `jti`.
    pub jti: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Assurance level.
    pub aal: u8,
}

impl From<AccessClaims> for ClaimsResponse {
    fn from(c: AccessClaims) -> Self {
        Self {
            iss: c.iss,
            aud: c.aud,
            sub: c.sub.as_str().to_owned(),
            sid: c.sid.to_string(),
            exp: c.exp,
            nbf: c.nbf,
            iat: c.iat,
            jti: c.jti,
            roles: c.roles,
            aal: c.aal,
        }
    }
}

/// An access-token refusal as a problem: `401` with the `reason`, or a logged
/// `500` for internal failures.
pub fn access_problem(e: &AccessTokenError) -> Problem {
    match e.reason() {
        Some(reason) => Problem::new(StatusCode::UNAUTHORIZED, e.problem_type(), e.to_string())
            .with_reason(reason),
        None => {
            tracing::error!(error = %e, "access token operation failed");
            Problem::internal()
        }
    }
}

fn tokens(state: &AppState) -> ApiResult<&Arc<AccessTokens>> {
    state
        .tokens
        .as_ref()
        .ok_or_else(|| Problem::not_found("access tokens are not configured on this service"))
}

fn access_for(
    tokens: &AccessTokens,
    session: &SessionRecord,
    now_ms: i64,
) -> ApiResult<(String, i64, String)> {
    let at = tokens.issue(session).map_err(|e| match e {
        AccessTokenError::Anonymous => {
            Problem::invalid_request("anonymous sessions get no access token; sign in first")
        }
        AccessTokenError::StepUpRequired => {
            Problem::new(StatusCode::FORBIDDEN, e.problem_type(), e.to_string())
                .with_reason("binding_changed")
        }
        other => access_problem(&other),
    })?;
    let expires_in = (at.expires_at.as_millis() - now_ms).max(0) / 1000;
    let expires_at = at.expires_at.to_rfc3339();
    Ok((at.token, expires_in, expires_at))
}

fn no_store(status: StatusCode, body: TokensResponse) -> Response {
    let mut res = (status, Json(body)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Exchanges a signed-in session for an access token and a refresh token.
#[utoipa::path(
    post, path = "/v1/tokens", tag = "tokens",
    request_body = IssueTokensRequest,
    responses(
        (status = 201, description = "Issued", body = TokensResponse),
        (status = 400, description = "Anonymous session", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "The session token is refused, with `reason`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn issue(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<IssueTokensRequest>,
) -> ApiResult {
    let tokens = tokens(&state)?;
    let session = state
        .manager
        .verify(&req.session_token)
        .await
        .map_err(|e| Problem::from_token_error(&e))?;
    let now = state.manager.now().as_millis();
    let (access_token, expires_in, expires_at) = access_for(tokens, &session, now)?;
    let (refresh_token, refresh_expires_at) = if req.refresh.unwrap_or(true) {
        let r = state
            .manager
            .issue_refresh(&session.id)
            .await
            .map_err(|e| Problem::from_id_error(&e))?;
        (Some(r.token.encode()), Some(r.expires_at.to_rfc3339()))
    } else {
        (None, None)
    };
    Ok(no_store(
        StatusCode::CREATED,
        TokensResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            expires_at,
            refresh_token,
            refresh_expires_at,
            retried: false,
            session: SessionView::from(&*session),
        },
    ))
}

/// Spends a refresh token for a new access token and the next refresh token.
/// A retry of the same token within the grace window gets the same successor;
/// a spent token used again revokes its family and ends the session
/// (`reason: refresh_reused`).
#[utoipa::path(
    post, path = "/v1/tokens/refresh", tag = "tokens",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "Rotated", body = TokensResponse),
        (status = 401, description = "Refused; `reason`: `unknown`, `refresh_expired`, `refresh_reused`, `revoked_by_user`, `session_ended`, or the session's end reason", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult {
    let tokens = tokens(&state)?;
    let r = state
        .manager
        .refresh(&req.refresh_token)
        .await
        .map_err(|e| Problem::from_token_error(&e))?;
    let now = state.manager.now().as_millis();
    let (access_token, expires_in, expires_at) = access_for(tokens, &r.session, now)?;
    Ok(no_store(
        StatusCode::OK,
        TokensResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            expires_at,
            refresh_token: Some(r.token.encode()),
            refresh_expires_at: Some(r.expires_at.to_rfc3339()),
            retried: r.retried,
            session: SessionView::from(&*r.session),
        },
    ))
}

/// Ends the refresh token's family: none of its tokens works any more. The
/// session and its access tokens live on (end the session with
/// `DELETE /v1/sessions/{id}` for that). Unknown tokens are not an error.
#[utoipa::path(
    post, path = "/v1/tokens/revoke", tag = "tokens",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "Revoked (or unknown)"),
        (status = 401, description = "Malformed token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult {
    match state.manager.revoke_refresh(&req.refresh_token).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e @ Error::MalformedToken(_)) => Err(Problem::from_token_error(&e)),
        Err(e) => Err(Problem::from_id_error(&e)),
    }
}

/// Verifies an access token (signature, then every claim, then revocation),
/// for services that would rather not verify JWTs themselves.
#[utoipa::path(
    post, path = "/v1/tokens/verify", tag = "tokens",
    request_body = VerifyAccessRequest,
    responses(
        (status = 200, description = "Valid", body = ClaimsResponse),
        (status = 401, description = "Refused; `reason` says why (`expired`, `revoked`, `bad_signature`, `algorithm_not_allowed`, ...)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn verify(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<VerifyAccessRequest>,
) -> ApiResult<Json<ClaimsResponse>> {
    let tokens = tokens(&state)?;
    let claims = tokens
        .verify(&req.access_token)
        .map_err(|e| access_problem(&e))?;
    Ok(Json(claims.into()))
}

/// The public keys that verify access tokens (RFC 7517). No API key needed.
#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "tokens", security(()),
    responses((status = 200, description = "The JSON Web Key Set", content_type = "application/json")),
)]
pub(crate) async fn jwks(State(state): State<AppState>) -> ApiResult {
    let tokens = tokens(&state)?;
    let mut res = Json(tokens.jwks()).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(res)
}

/// `POST /v1/tokens/keys/rotate` answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RotatedResponse {
    /// The new signing key's `kid`.
    pub kid: String,
    /// Its algorithm.
    pub algorithm: String,
    /// Keys that still verify (the new one and retired ones inside their window).
    pub keys: usize,
}

/// Rotates the signing key: a new key (the configured algorithm) signs from now
/// on; retired keys keep verifying until every token they signed has expired,
/// then are pruned. The ring is saved to the key file at once.
#[utoipa::path(
    post, path = "/v1/tokens/keys/rotate", tag = "tokens",
    responses(
        (status = 200, description = "Rotated", body = RotatedResponse),
    )
)]
pub(crate) async fn rotate_key(State(state): State<AppState>) -> ApiResult<Json<RotatedResponse>> {
    let tokens = tokens(&state)?;
    let alg = state
        .token_keys
        .as_ref()
        .map_or(sessionary_token::SigningAlg::EdDsa, |(_, alg)| *alg);
    let key = sessionary_token::SigningKey::generate(alg).map_err(|e| access_problem(&e))?;
    let kid = key.kid().to_owned();
    tokens.rotate(key).map_err(|e| access_problem(&e))?;
    tokens.prune();
    let ring = tokens.key_ring();
    if let Some((path, _)) = &state.token_keys {
        ring.save(path).map_err(|e| access_problem(&e))?;
    }
    tracing::info!(kid = %kid, "access token signing key rotated");
    Ok(Json(RotatedResponse {
        kid,
        algorithm: alg.as_str().to_owned(),
        keys: ring.len(),
    }))
}
