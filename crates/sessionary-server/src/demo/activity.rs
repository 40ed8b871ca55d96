//! "Your activity" (`GET /account/activity`): this session's pages with the
//! time spent on each (a server-rendered SVG chart), its length and errors;
//! then the signed-in user's audit log entries, newest first: when (UTC),
//! what, from which IP, which session.
//!
//! Page views and errors are recorded by [`track`] (a middleware inside the
//! session layer); the browser reports leaving a page with a
//! `navigator.sendBeacon` on `pagehide` to `POST /activity/leave` ([`leave`]).
//!
//! Entries come from the store ([`sessionary_core::audit`]); when the app has
//! an [`AuditLog`] (`AppState::with_audit`, as `sessionary serve` runs), the
//! page first waits for it to write what was emitted before, so the sign-in
//! that led here is already listed.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use maud::{Markup, html};
use serde::Deserialize;
use sessionary_axum::{CurrentUser, Session};
use sessionary_core::activity::{Activity, ActivitySummary};
use sessionary_core::audit::{AuditLog, AuditQuery, AuditRecord};
use sessionary_core::{SessionId, Timestamp};

use super::i18n::t;
use super::view::{Ctx, layout};
use super::{Demo, DemoError};

/// Entries shown.
const SHOWN: usize = 100;

/// `GET /account/activity`.
pub(super) async fn activity_page(
    State(demo): State<Demo>,
    audit: Option<Extension<Arc<AuditLog>>>,
    user: CurrentUser,
) -> Result<Response, DemoError> {
    let ctx = demo.ctx(&user.session, true).await?;
    let query = AuditQuery::newest(SHOWN).with_user(user.user.clone());
    let entries =
        crate::audit_api::read(&demo.manager, audit.as_ref().map(|e| &e.0), &query).await?;
    // `read` flushed the log: this very page view is not in it yet (it is
    // recorded once answered), the ones before are.
    let summary = if audit.is_some() {
        let store = demo.manager.store();
        let summary = sessionary_core::activity::read(&**store, user.record.id, demo.manager.now())
            .await
            .map_err(sessionary_core::Error::from)?;
        Some(summary)
    } else {
        None
    };
    Ok(super::page(view(
        &ctx,
        &entries,
        &user.record.id,
        summary.as_ref(),
    )))
}

/// Records page views (a `GET` for HTML answered `200` with HTML) and errors
/// (any `4xx`/`5xx` but `401`, which the session layer turns into a redirect)
/// of requests that carry a session, once answered. Assets, the session
/// routes and the beacon are not pages.
pub(super) async fn track(State(demo): State<Demo>, req: Request, next: Next) -> Response {
    let Some(recorder) = req.extensions().get::<Arc<Activity>>().cloned() else {
        return next.run(req).await;
    };
    // A `Uri` clone shares its bytes: no allocation per request.
    let uri = req.uri().clone();
    let path = uri.path();
    if path == "/activity/leave" {
        // Not a page, and a refused beacon is no error the reader saw: one
        // sent as a sign-in navigates away still carries the old CSRF token.
        return next.run(req).await;
    }
    let page = req.method() == Method::GET
        && sessionary_axum::accepts_html(req.headers())
        && !path.starts_with("/assets/")
        && !path.starts_with("/session/");
    let session = req.extensions().get::<Session>().cloned();
    let res = next.run(req).await;
    let Some(record) = session.and_then(|s| s.record()) else {
        return res;
    };
    let status = res.status();
    let now = demo.manager.now();
    if (status.is_client_error() && status != StatusCode::UNAUTHORIZED) || status.is_server_error()
    {
        recorder.error(record.id, path, status.as_u16(), now);
    } else if page && status == StatusCode::OK {
        let html = res
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
        if html {
            recorder.view(record.id, path, now);
        }
    }
    res
}

/// The `pagehide` beacon's form.
#[derive(Debug, Deserialize)]
pub(super) struct Leave {
    path: String,
}

/// `POST /activity/leave` (`navigator.sendBeacon`, CSRF token in the form):
/// the session left `path`, now. `204` whatever happens: a beacon's answer
/// is never read.
pub(super) async fn leave(
    State(demo): State<Demo>,
    recorder: Option<Extension<Arc<Activity>>>,
    session: Session,
    Form(form): Form<Leave>,
) -> Response {
    if let (Some(recorder), Some(record)) = (recorder, session.record()) {
        recorder.left(record.id, &form.path, demo.manager.now());
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `1 min 5 s`, `42 s`, `2 h 3 min`.
fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

/// Bars of time per page (the ten longest), drawn on the server: no script.
fn chart(summary: &ActivitySummary) -> Markup {
    const ROW: usize = 28;
    const LABEL: usize = 180;
    const BAR: usize = 300;
    let rows: Vec<_> = summary.time_per_path.iter().take(10).collect();
    let longest = rows.iter().map(|p| p.dwell_ms).max().unwrap_or(0).max(1);
    let height = rows.len() * ROW + 4;
    html! {
        svg #activity-chart xmlns="http://www.w3.org/2000/svg" role="img"
            width=(LABEL + BAR + 90) height=(height)
            viewBox=(format!("0 0 {} {height}", LABEL + BAR + 90)) {
            @for (i, p) in rows.iter().enumerate() {
                @let y = i * ROW + 2;
                @let w = usize::try_from(p.dwell_ms.max(0) * i64::try_from(BAR).unwrap_or(300) / longest).unwrap_or(0);
                g.bar data-path=(p.path) data-ms=(p.dwell_ms) data-views=(p.views) {
                    text x="0" y=(y + 18) font-size="13" fill="currentColor" { (p.path) }
                    rect x=(LABEL) y=(y + 4) width=(w.max(1)) height=(ROW - 8) fill="steelblue" {}
                    text x=(LABEL + w + 6) y=(y + 18) font-size="13" fill="currentColor" {
                        (span(p.dwell_ms)) " (" (p.views) ")"
                    }
                }
            }
        }
    }
}

fn this_session(ctx: &Ctx, summary: &ActivitySummary) -> Markup {
    html! {
        section #session-activity data-length-ms=(summary.length_ms) data-views=(summary.views.len()) {
            h2 { (tr(ctx, "activity.session_title")) }
            p {
                (tr(ctx, "activity.length")) " " strong #session-length { (span(summary.length_ms)) }
                " · " (tr(ctx, "activity.views")) " " strong #session-views { (summary.views.len()) }
            }
            @if summary.time_per_path.is_empty() {
                p { (tr(ctx, "activity.no_views")) }
            } @else {
                h3 { (tr(ctx, "activity.time_per_page")) }
                (chart(summary))
            }
            @if !summary.errors.is_empty() {
                h3 { (tr(ctx, "activity.errors")) }
                ul #session-errors {
                    @for e in &summary.errors {
                        li { code { (e.status) } " " code { (e.path) } " " time datetime=(e.at.to_rfc3339()) { (utc(e.at)) } }
                    }
                }
            }
        }
    }
}

/// An element whose text the language switch replaces.
fn tr(ctx: &Ctx, key: &str) -> Markup {
    html! { span data-i18n=(key) { (t(ctx.lang, key)) } }
}

/// `2026-11-26 10:00:00 UTC`.
fn utc(at: Timestamp) -> String {
    let s = at.to_rfc3339();
    format!("{} {} UTC", &s[..10], &s[11..19])
}

/// The message key of an entry's kind.
fn kind_key(kind: &str) -> &'static str {
    match kind {
        "created" => "activity.kind.created",
        "regenerated" => "activity.kind.regenerated",
        "stepped_up" => "activity.kind.stepped_up",
        "binding_mismatch" => "activity.kind.binding_mismatch",
        "ended" => "activity.kind.ended",
        "refresh_issued" => "activity.kind.refresh_issued",
        "refresh_reused" => "activity.kind.refresh_reused",
        "refresh_revoked" => "activity.kind.refresh_revoked",
        "limit_rejected" => "activity.kind.limit_rejected",
        _ => "activity.kind.other",
    }
}

fn view(
    ctx: &Ctx,
    entries: &[AuditRecord],
    current: &SessionId,
    summary: Option<&ActivitySummary>,
) -> Markup {
    let main = html! {
        main #activity {
            h1 { (tr(ctx, "activity.title")) }
            @if let Some(summary) = summary {
                (this_session(ctx, summary))
            }
            h2 { (tr(ctx, "activity.security_title")) }
            p { (tr(ctx, "activity.intro")) }
            @if entries.is_empty() {
                p #activity-empty { (tr(ctx, "activity.empty")) }
            } @else {
                table #activity-log {
                    thead { tr {
                        th { (tr(ctx, "activity.time")) } th { (tr(ctx, "activity.what")) }
                        th { (tr(ctx, "activity.ip")) } th { (tr(ctx, "activity.session")) }
                    } }
                    tbody {
                        @for r in entries {
                            @let e = &r.entry;
                            @let sid = e.session_id.map(|s| s.to_string());
                            @let mine = e.session_id.as_ref() == Some(current);
                            tr.entry.current[mine] data-kind=(e.kind) data-seq=(r.seq) {
                                td.time { time datetime=(e.at.to_rfc3339()) { (utc(e.at)) } }
                                td.what {
                                    (tr(ctx, kind_key(&e.kind)))
                                    @if !e.detail.is_empty() && kind_key(&e.kind) != "activity.kind.refresh_issued" {
                                        " " code.detail { (e.detail) }
                                    }
                                }
                                td.ip { (e.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "?".into())) }
                                td.session {
                                    @if let Some(sid) = &sid {
                                        code title=(sid) { (&sid[..8]) "…" }
                                        @if mine {
                                            " " strong.this-session { (tr(ctx, "activity.this")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(ctx, "activity.title", &main)
}
