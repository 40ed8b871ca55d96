//! Quotas for other languages: read and charge a session's quota counters
//! (`GET`/`POST /v1/sessions/{id}/quotas/{name}`), with the limits of the
//! session's role policy ([`sessionary_core::Quotas`]), atomically in the store.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sessionary_core::{Charge, QuotaKind, SessionId, Usage, Window};
use utoipa::ToSchema;

use crate::AppState;
use crate::extract::OptionalJson;
use crate::problem::{PROBLEM_JSON, Problem};

/// Where a quota stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaView {
    /// The quota: a unit name, `bytes_in` or `bytes_out`.
    #[schema(example = "downloads")]
    pub quota: String,
    /// Charged in the current window.
    pub used: u64,
    /// The limit of the session's role (absent: no limit, only counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// What is left in this window (absent: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    /// The window: `session` or a period such as `1h`.
    #[schema(example = "session")]
    pub per: String,
    /// When the count starts again (RFC 3339, UTC); for `per: session`, the
    /// session's absolute expiry (the count ends with the session).
    pub resets_at: String,
}

impl From<&Usage> for QuotaView {
    fn from(u: &Usage) -> Self {
        Self {
            quota: u.quota.clone(),
            used: u.used,
            limit: u.limit,
            remaining: u.remaining(),
            per: u.per.to_string(),
            resets_at: u.resets_at.to_rfc3339(),
        }
    }
}

/// Body of a charge.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequest {
    /// How much to charge (units, or bytes for `bytes_in`/`bytes_out`); at least 1.
    #[serde(default = "one")]
    pub amount: u64,
}

impl Default for ChargeRequest {
    fn default() -> Self {
        Self { amount: 1 }
    }
}

fn one() -> u64 {
    1
}

fn session_id(raw: &str) -> Result<SessionId, Problem> {
    let id = SessionId::parse(raw).map_err(|_| {
        Problem::invalid_request("a session id is 22 base64url characters (128 bits)")
    })?;
    tracing::Span::current().record("sid", tracing::field::display(&id));
    Ok(id)
}

fn kind(name: &str) -> Result<QuotaKind<'_>, Problem> {
    match name {
        "bytes_in" => Ok(QuotaKind::BytesIn),
        "bytes_out" => Ok(QuotaKind::BytesOut),
        n => sessionary_core::quota::valid_unit_name(n)
            .map(|()| QuotaKind::Unit(n))
            .map_err(|e| Problem::invalid_request(format!("`name`: {e}"))),
    }
}

/// A session's quota as it stands, from its record (charges nothing).
#[utoipa::path(
    get, path = "/v1/sessions/{id}/quotas/{name}", tag = "quotas",
    params(
        ("id" = String, Path, description = "Session id"),
        ("name" = String, Path, description = "A unit name (`downloads`), `bytes_in` or `bytes_out`"),
    ),
    responses(
        (status = 200, description = "The quota", body = QuotaView),
        (status = 400, description = "Malformed id or name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_quota(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Json<QuotaView>, Problem> {
    let id = session_id(&id)?;
    let kind = kind(&name)?;
    let rec = state
        .manager
        .session(&id)
        .await
        .map_err(|e| Problem::from_id_error(&e))?;
    let quotas = &state.manager.policy_for(&rec).quotas;
    let usage = Usage::of(&rec, quotas, kind, state.manager.now());
    Ok(Json(QuotaView::from(&usage)))
}

/// Charges a session's quota (default 1) in one atomic store step: granted
/// with what is left, or refused with `429` (nothing charged) saying which
/// limit and when it resets.
#[utoipa::path(
    post, path = "/v1/sessions/{id}/quotas/{name}", tag = "quotas",
    params(
        ("id" = String, Path, description = "Session id"),
        ("name" = String, Path, description = "A unit name (`downloads`), `bytes_in` or `bytes_out`"),
    ),
    request_body(content = ChargeRequest, description = "May be empty (amount 1)"),
    responses(
        (status = 200, description = "Charged; the quota after the charge", body = QuotaView),
        (status = 400, description = "Malformed id, name or amount", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`quota-exceeded`: the problem has `quota`, `limit`, `used`, `per` and `resets_at`, and `Retry-After` for periodic windows", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn charge_quota(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    OptionalJson(req): OptionalJson<ChargeRequest>,
) -> Result<Response, Problem> {
    let id = session_id(&id)?;
    let kind = kind(&name)?;
    if req.amount == 0 {
        return Err(Problem::invalid_request("`amount` must be at least 1"));
    }
    let m = &state.manager;
    let rec = m
        .session(&id)
        .await
        .map_err(|e| Problem::from_id_error(&e))?;
    match m.charge(&rec, kind, req.amount).await {
        Ok(Charge::Granted(u)) => Ok(Json(QuotaView::from(&u)).into_response()),
        Ok(Charge::Refused(u)) => Ok(exceeded(&u, &id, m.now())),
        Err(e) => Err(Problem::from_id_error(&e)),
    }
}

fn exceeded(u: &Usage, id: &SessionId, now: sessionary_core::Timestamp) -> Response {
    let view = QuotaView::from(u);
    let limit = u.limit.unwrap_or(u.used);
    let detail = match u.per {
        Window::Session => format!(
            "the quota `{}` ({limit} per session) is used up; it starts again with a new session",
            u.quota
        ),
        Window::Every(_) => format!(
            "the quota `{}` ({limit} per {}) is used up until {}",
            u.quota, u.per, view.resets_at
        ),
    };
    let doc = serde_json::json!({
        "type": "/problems/quota-exceeded",
        "title": "Quota exceeded",
        "status": 429,
        "detail": detail,
        "session_id": id.to_string(),
        "quota": view.quota,
        "limit": view.limit,
        "used": view.used,
        "per": view.per,
        "resets_at": view.resets_at,
    });
    let mut res = (StatusCode::TOO_MANY_REQUESTS, doc.to_string()).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Window::Every(_) = u.per {
        let secs = (u.resets_at.millis_since(now).max(0) + 999) / 1000;
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}
