//! The service API v1: request and response bodies, handlers, and the OpenAPI
//! document generated from them ([`ApiDoc`]).

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sessionary_core::{
    Device, EndReason, Error, Issued, NewSession, Privilege, SessionId, SessionRecord, UserId,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::AppState;
use crate::extract::{ApiJson, ApiQuery, IdPath, OptionalJson, UserPath, if_match};
use crate::problem::Problem;

type ApiResult<T = Response> = Result<T, Problem>;

// ---------------------------------------------------------------- views

/// The device a session was created from.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceView {
    /// Client IP address.
    #[schema(example = "203.0.113.7")]
    pub ip: Option<String>,
    /// User agent (at most 512 bytes).
    pub user_agent: Option<String>,
    /// A label derived from the user agent, e.g. "Firefox on Linux".
    #[schema(example = "Firefox on Linux")]
    pub label: Option<String>,
}

/// A session as the API shows it: never its token hash or CSRF secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    /// Public id (22 base64url characters); not a credential.
    #[schema(example = "q2Zv8sT0lJ3cM1o9b4x7Aw")]
    pub id: String,
    /// The user; `null` for an anonymous session.
    #[schema(example = "alice")]
    pub user: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Authenticator assurance level (0 anonymous, 1-3).
    pub aal: u8,
    /// When the user last authenticated (RFC 3339, UTC).
    pub auth_time: Option<String>,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// Last recorded activity (RFC 3339, UTC).
    pub last_seen_at: String,
    /// When the session ends without further activity (RFC 3339, UTC).
    pub expires_at: String,
    /// Hard end, whatever the activity (RFC 3339, UTC).
    pub absolute_expires_at: String,
    /// Sliding idle timeout, in seconds.
    pub idle_timeout_secs: i64,
    /// Whether remember-me timeouts apply.
    pub remember: bool,
    /// The device.
    pub device: DeviceView,
    /// Bumped by every change except touches; the `ETag` of session data.
    pub version: u64,
    /// Usage counters.
    pub counters: BTreeMap<String, u64>,
    /// The session is held after its device or network changed: nothing but
    /// a step-up (MFA) or a re-authentication (`regenerate` with
    /// `reauthenticated`) may use it. Its `aal` is 0 meanwhile.
    pub step_up_required: bool,
}

impl From<&SessionRecord> for SessionView {
    fn from(r: &SessionRecord) -> Self {
        Self {
            id: r.id.to_string(),
            user: r.user.as_ref().map(|u| u.as_str().to_owned()),
            roles: r.roles.clone(),
            aal: r.aal,
            auth_time: r.auth_time.map(|t| t.to_rfc3339()),
            created_at: r.created_at.to_rfc3339(),
            last_seen_at: r.last_seen_at.to_rfc3339(),
            expires_at: r.expires_at().to_rfc3339(),
            absolute_expires_at: r.absolute_expires_at.to_rfc3339(),
            idle_timeout_secs: r.idle_timeout_ms / 1000,
            remember: r.remember,
            device: DeviceView {
                ip: r.device.ip.map(|ip| ip.to_string()),
                user_agent: r.device.user_agent.clone(),
                label: r.device.label.clone(),
            },
            version: r.version,
            counters: r.counters.clone(),
            step_up_required: r.step_up_required(),
        }
    }
}

/// `{session}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionResponse {
    /// The session.
    pub session: SessionView,
    /// The session data, when asked for with `include_data` (verify only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Map<String, Value>>,
}

/// A session just issued, with the only copy of its token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IssuedResponse {
    /// The bearer token (43 base64url characters). Hand it to the client; do not
    /// keep or log it. Only its SHA-256 is stored.
    pub token: String,
    /// The session.
    pub session: SessionView,
    /// Sessions the concurrent-session limit ended to make room.
    pub evicted: Vec<String>,
    /// The expired session whose data was restored into this one, if any.
    pub restored_from: Option<String>,
}

impl From<&Issued> for IssuedResponse {
    fn from(i: &Issued) -> Self {
        Self {
            token: i.token.encode(),
            session: SessionView::from(&*i.session),
            evicted: i.evicted.iter().map(ToString::to_string).collect(),
            restored_from: i.restored_from.map(|s| s.to_string()),
        }
    }
}

/// Session or user data with its version (also sent as `ETag: "<version>"`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DataResponse {
    /// The version to send back in `If-Match`.
    pub version: u64,
    /// The data: a JSON object.
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
}

/// `{sessions}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionList {
    /// Live sessions, oldest first.
    pub sessions: Vec<SessionView>,
}

/// `{ended}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EndedList {
    /// Ids of the sessions that were ended.
    pub ended: Vec<String>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// `ok` or `unavailable`.
    pub store: &'static str,
}

// ---------------------------------------------------------------- requests

/// Device information for a new session.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceInput {
    /// Client IP address as your service determined it.
    #[schema(value_type = Option<String>, example = "203.0.113.7")]
    pub ip: Option<IpAddr>,
    /// The client's `User-Agent` (truncated to 512 bytes).
    pub user_agent: Option<String>,
}

impl DeviceInput {
    /// As a [`Device`] (label derived from the user agent).
    pub fn device(&self) -> Device {
        Device::new(self.ip, self.user_agent.as_deref())
    }
}

/// `POST /v1/sessions`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// The user; omit for an anonymous session.
    #[schema(example = "alice")]
    pub user: Option<String>,
    /// Roles (signed-in sessions only).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Assurance level proved at sign-in: 1-3 (default 1; anonymous: 0).
    pub aal: Option<u8>,
    /// Remember me (if the role's policy allows it).
    #[serde(default)]
    pub remember: bool,
    /// The device.
    pub device: Option<DeviceInput>,
    /// Initial session data (a JSON object).
    #[schema(value_type = Option<Object>)]
    pub data: Option<Map<String, Value>>,
    /// Sign-in from an existing session: its data is carried into the new session and
    /// the old token dies with reason `regenerated`. Requires `user`.
    pub current_token: Option<String>,
    /// Restore the data of this user's last expired session, if still kept (default true).
    pub restore: Option<bool>,
}

/// A session token, for `verify`, `extend` and `logout`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The session token.
    pub token: String,
}

/// `POST /v1/sessions/verify`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The session token.
    pub token: String,
    /// Record activity (sliding expiry, at most once per touch interval). `false` is a
    /// status check that never extends the session. Default `true`.
    pub touch: Option<bool>,
    /// Also return the session data (opened from the same store read). Default `false`.
    pub include_data: Option<bool>,
    /// The requesting client, as your service sees it. When given, the
    /// session's binding policy compares it with the session's device: a change
    /// is logged (the session follows), holds the session for a step-up (`403
    /// step-up-required`), or ends it (`401`, reason `hijack_suspected`). Failed
    /// verifications are recorded with this IP.
    pub client: Option<DeviceInput>,
}

/// `POST /v1/sessions/{id}/regenerate`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegenerateRequest {
    /// New roles (re-applies the role policy's timeouts).
    pub roles: Option<Vec<String>>,
    /// New assurance level (a step-up; sets `auth_time`).
    pub aal: Option<u8>,
    /// The user authenticated again: `auth_time` becomes now.
    #[serde(default)]
    pub reauthenticated: bool,
    /// The device the session is bound to from now on: give the client that
    /// just stepped up or re-authenticated, which releases a binding hold.
    pub device: Option<DeviceInput>,
}

/// Reasons a caller may give for ending sessions.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    /// The user signed out.
    LoggedOut,
    /// The user ended it from another device.
    RevokedByUser,
    /// An administrator ended it (the default).
    #[default]
    RevokedByAdmin,
    /// The account was disabled.
    UserDisabled,
    /// Your service detected a hijack.
    HijackSuspected,
}

impl From<RevokeReason> for EndReason {
    fn from(r: RevokeReason) -> Self {
        match r {
            RevokeReason::LoggedOut => Self::LoggedOut,
            RevokeReason::RevokedByUser => Self::RevokedByUser,
            RevokeReason::RevokedByAdmin => Self::RevokedByAdmin,
            RevokeReason::UserDisabled => Self::UserDisabled,
            RevokeReason::HijackSuspected => Self::HijackSuspected,
        }
    }
}

/// Query of `DELETE /v1/sessions/{id}`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// Why (default `revoked_by_admin`); reported to the next request with the token.
    #[param(inline)]
    pub reason: Option<RevokeReason>,
}

/// Query of `DELETE /v1/users/{user}/sessions`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteUserQuery {
    /// A session to keep ("log out other devices").
    pub except: Option<String>,
    /// Why (default `revoked_by_admin`).
    #[param(inline)]
    pub reason: Option<RevokeReason>,
}

// ---------------------------------------------------------------- helpers

fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn data_response(version: u64, data: Map<String, Value>) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{version}\"")).ok();
    let mut res = Json(DataResponse { version, data }).into_response();
    if let Some(etag) = etag {
        res.headers_mut().insert(header::ETAG, etag);
    }
    res
}

pub(crate) fn issued_response(status: StatusCode, issued: &Issued) -> Response {
    let mut res = (status, Json(IssuedResponse::from(issued))).into_response();
    if status == StatusCode::CREATED {
        if let Ok(loc) = HeaderValue::from_str(&format!("/v1/sessions/{}", issued.session.id)) {
            res.headers_mut().insert(header::LOCATION, loc);
        }
    }
    record_sid(&issued.session.id);
    no_store(res)
}

fn record_sid(id: &SessionId) {
    tracing::Span::current().record("sid", tracing::field::display(id));
}

fn patch_object(patch: Value) -> ApiResult<Map<String, Value>> {
    match patch {
        Value::Object(m) => Ok(m),
        _ => Err(Problem::invalid_request(
            "the body must be a JSON object (an RFC 7396 merge patch of the data object)",
        )),
    }
}

fn token_err(e: Error) -> Problem {
    Problem::from_token_error(&e)
}

fn id_err(e: Error) -> Problem {
    Problem::from_id_error(&e)
}

fn user_id(s: String) -> ApiResult<UserId> {
    UserId::new(s).map_err(|e| Problem::invalid_request(format!("`user`: {e}")))
}

// ---------------------------------------------------------------- handlers

/// Liveness and store health.
#[utoipa::path(
    get, path = "/healthz", tag = "meta",
    responses(
        (status = 200, description = "The service and its store work", body = Health),
        (status = 503, description = "The store does not answer", body = Health),
    ),
    security(())
)]
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    // A cheap indexed read of an id that is never issued.
    match state.manager.store().get(&SessionId([0; 16])).await {
        Ok(_) => Json(Health {
            status: "ok",
            store: "ok",
        })
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: store failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable",
                    store: "unavailable",
                }),
            )
                .into_response()
        }
    }
}

/// Creates a session: sign-in (with `user`), sign-in from an existing session (with
/// `user` and `current_token`), or an anonymous session (without `user`).
#[utoipa::path(
    post, path = "/v1/sessions", tag = "sessions",
    request_body(content = CreateSession, description = "May be empty for an anonymous session"),
    responses(
        (status = 201, description = "Created; the only copy of the token. `Cache-Control: no-store`", body = IssuedResponse),
        (status = 400, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Concurrent session limit reached (`session-limit`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_session(
    State(state): State<AppState>,
    OptionalJson(req): OptionalJson<CreateSession>,
) -> ApiResult {
    let device = req
        .device
        .map(|d| Device::new(d.ip, d.user_agent.as_deref()))
        .unwrap_or_default();
    let data = req.data.unwrap_or_default();
    let issued = match req.user {
        Some(user) => {
            let new = NewSession::user(user_id(user)?)
                .with_roles(req.roles)
                .with_aal(req.aal.unwrap_or(1))
                .with_remember(req.remember)
                .with_device(device)
                .with_data(data)
                .with_restore(req.restore.unwrap_or(true));
            match req.current_token.as_deref() {
                Some(t) => state.manager.login(Some(t), new).await,
                None => state.manager.create(new).await,
            }
        }
        None => {
            if req.current_token.is_some() {
                return Err(Problem::invalid_request("`current_token` needs a `user`"));
            }
            let mut new = NewSession::anonymous()
                .with_roles(req.roles)
                .with_aal(req.aal.unwrap_or(0))
                .with_device(device)
                .with_data(data);
            new.remember = req.remember;
            state.manager.create(new).await
        }
    }
    .map_err(id_err)?;
    crate::check_new_device(state.alerts.as_deref(), &issued.session).await;
    Ok(issued_response(StatusCode::CREATED, &issued))
}

/// The hot path: the session a token belongs to. With `touch` (default) activity
/// is recorded at most once per touch interval; `touch: false` never extends.
#[utoipa::path(
    post, path = "/v1/sessions/verify", tag = "sessions",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "The session is live", body = SessionResponse),
        (status = 401, description = "Refused; `reason` says why (`malformed`, `unknown`, `expired_idle`, `logged_out`, `regenerated`, `hijack_suspected`, ...)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`step-up-required`: the session is held after its device or network changed; `session_id` names it for the MFA step-up", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn verify(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> ApiResult<Json<SessionResponse>> {
    let started = state.metrics.as_ref().map(|_| std::time::Instant::now());
    let answer = verify_inner(&state, req).await;
    if let (Some(m), Some(t)) = (&state.metrics, started) {
        m.observe_verify(t.elapsed());
    }
    answer
}

async fn verify_inner(state: &AppState, req: VerifyRequest) -> ApiResult<Json<SessionResponse>> {
    let m = &state.manager;
    let verified = if req.touch.unwrap_or(true) {
        m.verify(&req.token).await
    } else {
        m.status(&req.token).await
    };
    let client = req.client.as_ref();
    let mut rec = verified.map_err(|e| {
        m.report_failure(client.and_then(|c| c.ip), &e);
        token_err(e)
    })?;
    record_sid(&rec.id);
    if let Some(c) = client {
        let ua = c.user_agent.as_deref();
        if let Some(mismatch) = m.binding_check(&rec, c.ip, ua) {
            rec = m
                .on_binding_mismatch(&rec, mismatch, c.device())
                .await
                .map_err(token_err)?;
        } else if m
            .policy_for(&rec)
            .binding
            .follows_user_agent(&rec.device, ua)
        {
            rec = m.follow_device(&rec, c.device()).await.map_err(token_err)?;
        }
    }
    if rec.step_up_required() {
        return Err(token_err(Error::StepUpRequired).with_session(&rec.id));
    }
    let data = if req.include_data.unwrap_or(false) {
        Some(m.data(&rec).map_err(id_err)?)
    } else {
        None
    };
    Ok(Json(SessionResponse {
        session: SessionView::from(&*rec),
        data,
    }))
}

/// Records activity now, whatever the touch interval ("stay signed in").
#[utoipa::path(
    post, path = "/v1/sessions/extend", tag = "sessions",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Extended", body = SessionResponse),
        (status = 401, description = "Refused, with `reason`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn extend(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TokenRequest>,
) -> ApiResult<Json<SessionResponse>> {
    let rec = state.manager.extend(&req.token).await.map_err(token_err)?;
    record_sid(&rec.id);
    Ok(Json(SessionResponse {
        session: SessionView::from(&*rec),
        data: None,
    }))
}

/// Signs out: the session ends with reason `logged_out`. Unknown or already ended
/// tokens succeed too (logging out twice is not an error).
#[utoipa::path(
    post, path = "/v1/sessions/logout", tag = "sessions",
    request_body = TokenRequest,
    responses(
        (status = 204, description = "Signed out (or was not signed in)"),
        (status = 401, description = "Malformed token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn logout(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<TokenRequest>,
) -> ApiResult<StatusCode> {
    if let Some(id) = state.manager.logout(&req.token).await.map_err(token_err)? {
        record_sid(&id);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A live session by id.
#[utoipa::path(
    get, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session", body = SessionResponse),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The session expired (`reason`: `expired_idle` or `expired_absolute`); sessions ended otherwise are 404", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_session(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult<Json<SessionResponse>> {
    let rec = state.manager.session(&id).await.map_err(id_err)?;
    Ok(Json(SessionResponse {
        session: SessionView::from(&*rec),
        data: None,
    }))
}

/// A session's data, with `ETag: "<version>"`.
#[utoipa::path(
    get, path = "/v1/sessions/{id}/data", tag = "data",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The data", body = DataResponse, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The session expired (`reason`: `expired_idle` or `expired_absolute`); sessions ended otherwise are 404", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_session_data(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> ApiResult {
    let rec = state.manager.session(&id).await.map_err(id_err)?;
    let data = state.manager.data(&rec).map_err(id_err)?;
    Ok(data_response(rec.version, data))
}

/// Applies an RFC 7396 JSON merge patch to a session's data (`null` removes a key).
/// With `If-Match: "<version>"` the patch applies only at that version; without,
/// concurrent changes are merged (compare-and-set with retry).
#[utoipa::path(
    patch, path = "/v1/sessions/{id}/data", tag = "data",
    params(
        ("id" = String, Path, description = "Session id"),
        ("If-Match" = Option<String>, Header, description = "`\"<version>\"` from `ETag`: apply only at this version"),
    ),
    request_body(content = Object, content_type = "application/merge-patch+json", description = "A JSON merge patch (`application/json` is accepted too)"),
    responses(
        (status = 200, description = "The data after the patch", body = DataResponse, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 400, description = "Not a JSON object, malformed If-Match, or data too large", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "If-Match does not match (`session-conflict`, `current_version`)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The session expired (`reason`: `expired_idle` or `expired_absolute`); sessions ended otherwise are 404", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn patch_session_data(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<Value>,
) -> ApiResult {
    let expected = if_match(&headers)?;
    let patch = patch_object(patch)?;
    let rec = state
        .manager
        .patch_data(&id, expected, &patch)
        .await
        .map_err(id_err)?;
    let data = state.manager.data(&rec).map_err(id_err)?;
    Ok(data_response(rec.version, data))
}

/// Issues a new token for a live session (role change, step-up, re-authentication).
/// The old token is refused from now on with reason `regenerated`.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/regenerate", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    request_body(content = RegenerateRequest, description = "May be empty"),
    responses(
        (status = 200, description = "The new token. `Cache-Control: no-store`", body = IssuedResponse),
        (status = 400, description = "Invalid roles or AAL", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The session expired (`reason`: `expired_idle` or `expired_absolute`); sessions ended otherwise are 404", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn regenerate(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    OptionalJson(req): OptionalJson<RegenerateRequest>,
) -> ApiResult {
    let change = Privilege {
        roles: req.roles,
        aal: req.aal,
        reauthenticated: req.reauthenticated,
        device: req.device.as_ref().map(DeviceInput::device),
    };
    let issued = state
        .manager
        .regenerate(&id, change)
        .await
        .map_err(id_err)?;
    Ok(issued_response(StatusCode::OK, &issued))
}

/// Ends a session; its token is refused from now on with the given reason.
#[utoipa::path(
    delete, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id"), DeleteQuery),
    responses(
        (status = 204, description = "Ended"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_session(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let reason = q.reason.unwrap_or_default().into();
    state
        .manager
        .end_session(&id, reason)
        .await
        .map_err(id_err)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user's live sessions, oldest first ("manage sessions").
#[utoipa::path(
    get, path = "/v1/users/{user}/sessions", tag = "users",
    params(("user" = String, Path, description = "User id (percent-encoded)")),
    responses(
        (status = 200, description = "The sessions", body = SessionList),
        (status = 400, description = "Invalid user id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_user_sessions(
    State(state): State<AppState>,
    UserPath(user): UserPath,
) -> ApiResult<Json<SessionList>> {
    let list = state.manager.list(&user).await.map_err(id_err)?;
    Ok(Json(SessionList {
        sessions: list.iter().map(|r| SessionView::from(&**r)).collect(),
    }))
}

/// Ends all of a user's sessions, or all but `except` ("log out other devices").
#[utoipa::path(
    delete, path = "/v1/users/{user}/sessions", tag = "users",
    params(("user" = String, Path, description = "User id (percent-encoded)"), DeleteUserQuery),
    responses(
        (status = 200, description = "The sessions ended", body = EndedList),
        (status = 400, description = "Invalid user id or `except`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_user_sessions(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    ApiQuery(q): ApiQuery<DeleteUserQuery>,
) -> ApiResult<Json<EndedList>> {
    let except = q
        .except
        .as_deref()
        .map(SessionId::parse)
        .transpose()
        .map_err(|_| {
            Problem::invalid_request("`except`: a session id is 22 base64url characters")
        })?;
    let reason = q.reason.unwrap_or_default().into();
    let ended = state
        .manager
        .end_user_sessions(&user, except.as_ref(), reason)
        .await
        .map_err(id_err)?;
    Ok(Json(EndedList {
        ended: ended.iter().map(ToString::to_string).collect(),
    }))
}

/// A user's data, shared by all of the user's sessions and devices (version 0 and
/// `{}` when never written).
#[utoipa::path(
    get, path = "/v1/users/{user}/data", tag = "data",
    params(("user" = String, Path, description = "User id (percent-encoded)")),
    responses(
        (status = 200, description = "The data", body = DataResponse, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 400, description = "Invalid user id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_user_data(
    State(state): State<AppState>,
    UserPath(user): UserPath,
) -> ApiResult {
    let (version, data) = state.manager.user_data(&user).await.map_err(id_err)?;
    Ok(data_response(version, data))
}

/// Applies an RFC 7396 JSON merge patch to a user's data. `If-Match: "0"` means
/// "only if never written".
#[utoipa::path(
    patch, path = "/v1/users/{user}/data", tag = "data",
    params(
        ("user" = String, Path, description = "User id (percent-encoded)"),
        ("If-Match" = Option<String>, Header, description = "`\"<version>\"` from `ETag`: apply only at this version"),
    ),
    request_body(content = Object, content_type = "application/merge-patch+json", description = "A JSON merge patch (`application/json` is accepted too)"),
    responses(
        (status = 200, description = "The data after the patch", body = DataResponse, headers(("ETag" = String, description = "\"<version>\""))),
        (status = 400, description = "Not a JSON object, malformed If-Match, or data too large", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "If-Match does not match (`session-conflict`, `current_version`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn patch_user_data(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<Value>,
) -> ApiResult {
    let expected = if_match(&headers)?;
    let patch = patch_object(patch)?;
    let (version, data) = state
        .manager
        .update_user_data(&user, expected, |d| sessionary_core::merge_patch(d, &patch))
        .await
        .map_err(id_err)?;
    Ok(data_response(version, data))
}

/// This document.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")),
    security(())
)]
pub(crate) async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    match DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().ok()) {
        Some(doc) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            doc.clone(),
        )
            .into_response(),
        None => Problem::internal().into_response(),
    }
}

// ---------------------------------------------------------------- OpenAPI

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from `api.keys` or `<data_dir>/api-key`: `Authorization: Bearer <key>`",
                    ))
                    .build(),
            ),
        );
        // Every operation under the API key can answer 401 (no or a wrong key) and
        // 503 (store down); say so once here rather than on each handler.
        let problem = |description: &str| {
            utoipa::openapi::ResponseBuilder::new()
                .description(description)
                .content(
                    crate::problem::PROBLEM_JSON,
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                if op.security.is_some() {
                    continue; // explicitly open (`security(())`)
                }
                let r = &mut op.responses.responses;
                r.entry("401".into()).or_insert_with(|| {
                    problem("No or a wrong API key (`unauthorized`); for token endpoints also a refused session token, with `reason`").into()
                });
                r.entry("503".into()).or_insert_with(|| {
                    problem("The session store is unavailable (`store-unavailable`)").into()
                });
            }
        }
    }
}

/// The OpenAPI 3.1 document of the service API, generated from the handlers.
///
/// # Examples
///
/// ```
/// use utoipa::OpenApi;
/// let doc = sessionary_server::api::ApiDoc::openapi();
/// assert!(doc.paths.paths.contains_key("/v1/sessions/verify"));
/// ```
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Sessionary service API",
        description = "Create, verify, refresh, list and revoke sessions. Errors are RFC 9457 \
            `application/problem+json` documents whose `type` is `/problems/<name>` and, for refused \
            tokens, whose `reason` says why.",
    ),
    paths(
        healthz, openapi_json, create_session, verify, extend, logout, get_session,
        get_session_data, patch_session_data, regenerate, delete_session,
        list_user_sessions, delete_user_sessions, get_user_data, patch_user_data,
        crate::token_api::issue, crate::token_api::refresh, crate::token_api::revoke,
        crate::token_api::verify, crate::token_api::jwks, crate::token_api::rotate_key,
        crate::mfa_api::enrol, crate::mfa_api::confirm, crate::mfa_api::step_up,
        crate::mfa_api::disable, crate::mfa_api::status, crate::audit_api::list,
        crate::activity_api::get, crate::activity_api::post,
        crate::quota_api::get_quota, crate::quota_api::charge_quota,
    ),
    components(schemas(Problem)),
    modifiers(&Security),
    security(("api_key" = [])),
    tags(
        (name = "sessions", description = "Session lifecycle"),
        (name = "data", description = "Session and user data"),
        (name = "users", description = "A user's sessions"),
        (name = "tokens", description = "Access (JWT) and refresh tokens for API clients"),
        (name = "mfa", description = "TOTP enrolment and step-up"),
        (name = "audit", description = "The audit log"),
        (name = "activity", description = "Page views, dwell times and errors of a session"),
        (name = "quotas", description = "Per-session quotas (units, bytes) with limits per role"),
        (name = "meta", description = "Health and this document"),
    )
)]
pub struct ApiDoc;
