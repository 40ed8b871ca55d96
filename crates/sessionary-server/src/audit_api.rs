//! The audit log over HTTP: `GET /v1/audit`.
//!
//! Entries come from the [`AuditLog`] event sink that `sessionary serve` puts
//! on the manager ([`AppState::with_audit`]); each holds UTC time, kind,
//! session id, user, client IP and a short detail, never a token. See
//! [`sessionary_core::audit`] for what is audited and how failed
//! verifications are rate-limited.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sessionary_core::audit::{AUDITED_KINDS, AuditLog, AuditQuery, AuditRecord};
use sessionary_core::{SessionId, SessionManager, UserId};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::extract::ApiQuery;
use crate::problem::Problem;

/// Entries per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// Most entries per page.
pub const MAX_LIMIT: usize = 500;

/// Query of `GET /v1/audit`; every filter given must match.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only this user's entries.
    #[param(example = "alice")]
    pub user: Option<String>,
    /// Only this session's entries (its id).
    pub session: Option<String>,
    /// Only this kind: `created`, `regenerated`, `stepped_up`,
    /// `binding_mismatch`, `ended`, `refresh_issued`, `refresh_reused`,
    /// `refresh_revoked`, `limit_rejected`, `verify_failed`,
    /// `verify_failed_suppressed`.
    pub kind: Option<String>,
    /// Entries older than this one: `next_before` of the previous page.
    pub before: Option<u64>,
    /// Entries per page, 1 to 500 (default 50).
    pub limit: Option<usize>,
}

/// One audit entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntryView {
    /// Sequence number (higher is newer).
    pub seq: u64,
    /// When (RFC 3339, UTC).
    #[schema(example = "2026-11-26T10:00:00.000Z")]
    pub at: String,
    /// What happened.
    #[schema(example = "ended")]
    pub kind: String,
    /// The session concerned.
    pub session_id: Option<String>,
    /// Its user.
    pub user: Option<String>,
    /// The client IP address.
    pub ip: Option<String>,
    /// A short detail: the end reason, `<change>/<action>` of a binding
    /// mismatch, a refresh family id, `aal 2`, why a verification failed, ...
    #[schema(example = "logged_out")]
    pub detail: String,
}

impl From<&AuditRecord> for AuditEntryView {
    fn from(r: &AuditRecord) -> Self {
        let e = &r.entry;
        Self {
            seq: r.seq,
            at: e.at.to_rfc3339(),
            kind: e.kind.clone(),
            session_id: e.session_id.map(|s| s.to_string()),
            user: e.user.as_ref().map(|u| u.as_str().to_owned()),
            ip: e.ip.map(|ip| ip.to_string()),
            detail: e.detail.clone(),
        }
    }
}

/// `{entries, next_before}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntryView>,
    /// Pass as `before` for the next (older) page; `null` on the last page.
    pub next_before: Option<u64>,
}

impl AuditParams {
    /// The store query, or a `400` naming the bad parameter.
    fn query(self) -> Result<AuditQuery, Problem> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Problem::invalid_request(format!(
                "`limit`: expected 1 to {MAX_LIMIT}"
            )));
        }
        let user = self
            .user
            .map(UserId::new)
            .transpose()
            .map_err(|e| Problem::invalid_request(format!("`user`: {e}")))?;
        let session_id = self
            .session
            .as_deref()
            .map(SessionId::parse)
            .transpose()
            .map_err(|_| {
                Problem::invalid_request("`session`: a session id is 22 base64url characters")
            })?;
        if let Some(k) = &self.kind {
            if !AUDITED_KINDS.contains(&k.as_str()) {
                return Err(Problem::invalid_request(format!(
                    "`kind`: expected one of {}",
                    AUDITED_KINDS.join(", ")
                )));
            }
        }
        Ok(AuditQuery {
            user,
            session_id,
            kind: self.kind,
            before: self.before,
            limit,
        })
    }
}

/// Reads the audit log: first waits until `audit` (if any) has written what
/// was emitted so far, so a request sees the events of the requests before it.
///
/// # Errors
///
/// Store errors.
pub(crate) async fn read(
    manager: &SessionManager,
    audit: Option<&Arc<AuditLog>>,
    query: &AuditQuery,
) -> Result<Vec<AuditRecord>, sessionary_core::Error> {
    if let Some(audit) = audit {
        audit.flush().await;
    }
    Ok(manager.store().audit(query).await?)
}

/// The audit log, newest first: sign-ins, token changes, step-ups, binding
/// mismatches, ends with their reason, refresh token reuse and (rate-limited)
/// failed verifications. Never a token.
#[utoipa::path(
    get, path = "/v1/audit", tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "A page of entries", body = AuditPage),
        (status = 400, description = "A bad parameter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<AuditPage>, Problem> {
    let mut query = params.query()?;
    let limit = query.limit;
    // One more than asked: whether an older page exists.
    query.limit = limit + 1;
    let mut records = read(&state.manager, state.audit.as_ref(), &query)
        .await
        .map_err(|e| Problem::from_id_error(&e))?;
    let more = records.len() > limit;
    records.truncate(limit);
    Ok(Json(AuditPage {
        next_before: more.then(|| records.last().map(|r| r.seq)).flatten(),
        entries: records.iter().map(AuditEntryView::from).collect(),
    }))
}
