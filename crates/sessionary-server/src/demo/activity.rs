//! "Security activity" (`GET /account/activity`): the signed-in user's audit
//! log entries, newest first: when (UTC), what, from which IP, which session.
//!
//! Entries come from the store ([`sessionary_core::audit`]); when the app has
//! an [`AuditLog`] (`AppState::with_audit`, as `sessionary serve` runs), the
//! page first waits for it to write what was emitted before, so the sign-in
//! that led here is already listed.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};
use sessionary_axum::CurrentUser;
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
    Ok(super::page(view(&ctx, &entries, &user.record.id)))
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

fn view(ctx: &Ctx, entries: &[AuditRecord], current: &SessionId) -> Markup {
    let main = html! {
        main #activity {
            h1 { (tr(ctx, "activity.title")) }
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
