//! The admin console (`/admin`, role `admin`, a `SameSite=Strict` route
//! group with the admin role's shorter timeouts):
//!
//! - live sessions of the demo users, filtered by user, role, device (part
//!   of its label) and age; end one, or all of a user's;
//! - a chart (server-rendered SVG) of signed-in sessions over the last 24
//!   hours, counted back from now with the audit log's `created` and
//!   `ended` entries;
//! - a user's audit trail (`/admin/audit?user=`);
//! - the per-role policy in force.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{Markup, html};
use serde::Deserialize;
use sessionary_axum::{Admin, RequireRole};
use sessionary_core::audit::{AuditLog, AuditQuery, AuditRecord};
use sessionary_core::policy::format_duration;
use sessionary_core::{EndReason, RolePolicy, SessionRecord, Timestamp, UserId};

use super::view::{Ctx, csrf_field, device_cells, layout, tr, when};
use super::{Demo, DemoError, bad_request, mfa_err, page};

/// Points of the active-sessions chart (one per hour, 24 h back).
const HOURS: i64 = 24;
/// Audit entries the chart and the trail read at most.
const READ: usize = 5_000;

/// `GET /admin` filters; empty fields filter nothing.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Filter {
    #[serde(default)]
    user: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    device: String,
    /// Only sessions at least this many minutes old.
    #[serde(default)]
    min_age: String,
}

impl Filter {
    fn min_age_ms(&self) -> Result<i64, DemoError> {
        match self.min_age.trim() {
            "" => Ok(0),
            m => m
                .parse::<u32>()
                .map(|m| i64::from(m) * 60_000)
                .map_err(|_| bad_request()),
        }
    }

    fn keeps(&self, user: &str, r: &SessionRecord, now: Timestamp, min_age_ms: i64) -> bool {
        let device = self.device.trim().to_lowercase();
        (self.user.is_empty() || self.user == user)
            && (self.role.is_empty() || r.roles.contains(&self.role))
            && (device.is_empty()
                || r.device
                    .label
                    .as_deref()
                    .is_some_and(|l| l.to_lowercase().contains(&device)))
            && now.millis_since(r.created_at) >= min_age_ms
    }
}

/// `GET /admin`.
pub(super) async fn console(
    State(demo): State<Demo>,
    RequireRole(admin, ..): RequireRole<Admin>,
    audit: Option<Extension<Arc<AuditLog>>>,
    Query(filter): Query<Filter>,
) -> Result<Response, DemoError> {
    // An admin with two-step verification must have used it in this session.
    if admin.record.aal < 2 && demo.mfa.is_enrolled(&admin.user).await.map_err(mfa_err)? {
        return Ok(Redirect::to("/step-up?return_to=/admin").into_response());
    }
    let min_age_ms = filter.min_age_ms()?;
    let ctx = demo.ctx(&admin.session, true).await?;
    let now = demo.manager.now();
    let names = demo.users.names();
    let mut all = Vec::new();
    for name in &names {
        for r in demo.manager.list(name).await? {
            all.push((name.as_str().to_owned(), r));
        }
    }
    let rows: Vec<_> = all
        .iter()
        .filter(|(u, r)| filter.keeps(u, r, now, min_age_ms))
        .cloned()
        .collect();
    let series = match &audit {
        Some(Extension(log)) => {
            let records =
                crate::audit_api::read(&demo.manager, Some(log), &AuditQuery::newest(READ)).await?;
            Some(active_series(&records, &names, all.len(), now))
        }
        None => None,
    };
    let policy = demo.manager.policy();
    let mut roles: Vec<(String, &RolePolicy)> = vec![
        ("(anonymous)".to_owned(), &policy.anonymous),
        ("(default)".to_owned(), &policy.default),
    ];
    roles.extend(policy.roles.iter().map(|(k, v)| (k.clone(), v)));
    let current = admin.record.id.to_string();
    let own = demo.manager.policy_for(&admin.record);
    let intro = (
        format_duration(own.idle_timeout),
        format_duration(own.absolute_timeout),
    );
    Ok(page(render(
        &ctx,
        &Console {
            intro: (&intro.0, &intro.1),
            filter: &filter,
            names: &names,
            rows: &rows,
            total: all.len(),
            current: &current,
            now,
            series: series.as_deref(),
            roles: &roles,
        },
    )))
}

/// Signed-in sessions of `users` at each hour of the last day: the count now,
/// walked back through `created` (one less before it) and `ended` (one more).
fn active_series(
    records: &[AuditRecord],
    users: &[UserId],
    now_count: usize,
    now: Timestamp,
) -> Vec<(Timestamp, i64)> {
    let ours = |r: &&AuditRecord| r.entry.user.as_ref().is_some_and(|u| users.contains(u));
    let mut events: Vec<(Timestamp, i64)> = records
        .iter()
        .filter(ours)
        .filter_map(|r| match r.entry.kind.as_str() {
            "created" => Some((r.entry.at, -1)),
            "ended" => Some((r.entry.at, 1)),
            _ => None,
        })
        .collect();
    events.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut count = i64::try_from(now_count).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    let mut it = events.iter().peekable();
    for h in 0..=HOURS {
        let t = Timestamp(now.as_millis() - h * 3_600_000);
        while let Some((at, delta)) = it.peek() {
            if *at <= t {
                break;
            }
            count += delta;
            it.next();
        }
        out.push((t, count.max(0)));
    }
    out.reverse();
    out
}

fn chart(series: &[(Timestamp, i64)]) -> Markup {
    const W: i64 = 480;
    const H: i64 = 120;
    let top = series.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let step = W / (series.len().max(2) as i64 - 1);
    let points: Vec<String> = series
        .iter()
        .enumerate()
        .map(|(i, (_, n))| format!("{},{}", i as i64 * step + 30, H - n * (H - 10) / top + 5))
        .collect();
    html! {
        svg #active-chart xmlns="http://www.w3.org/2000/svg" role="img"
            width=(W + 40) height=(H + 30) viewBox=(format!("0 0 {} {}", W + 40, H + 30))
            data-now=[series.last().map(|(_, n)| n)] data-max=(top) {
            text x="0" y="12" font-size="12" fill="currentColor" { (top) }
            text x="0" y=(H + 5) font-size="12" fill="currentColor" { "0" }
            line x1="30" y1=(H + 5) x2=(W + 30) y2=(H + 5) stroke="currentColor" {}
            polyline fill="none" stroke="steelblue" stroke-width="2" points=(points.join(" ")) {}
            text x="30" y=(H + 25) font-size="12" fill="currentColor" { "−24 h" }
            text x=(W - 10) y=(H + 25) font-size="12" fill="currentColor" { "now" }
        }
    }
}

struct Console<'a> {
    intro: (&'a str, &'a str),
    filter: &'a Filter,
    names: &'a [UserId],
    rows: &'a [(String, Arc<SessionRecord>)],
    total: usize,
    current: &'a str,
    now: Timestamp,
    series: Option<&'a [(Timestamp, i64)]>,
    roles: &'a [(String, &'a RolePolicy)],
}

fn action(a: sessionary_core::BindingAction) -> &'static str {
    a.as_str()
}

fn render(ctx: &Ctx, c: &Console<'_>) -> Markup {
    let intro = super::i18n::t(ctx.lang, "admin.policy")
        .replace("{idle}", c.intro.0)
        .replace("{absolute}", c.intro.1);
    let main = html! {
        main #admin {
            h1 { (tr(ctx, "admin.title")) }
            p #admin-policy { (intro) }
            @if let Some(series) = c.series {
                h2 { (tr(ctx, "admin.chart")) }
                (chart(series))
            }
            h2 { (tr(ctx, "admin.sessions")) }
            form #admin-filter method="get" action="/admin" {
                label { (tr(ctx, "admin.user")) " "
                    select name="user" {
                        option value="" { "—" }
                        @for n in c.names {
                            option value=(n.as_str()) selected[c.filter.user == n.as_str()] { (n.as_str()) }
                        }
                    }
                }
                " "
                label { (tr(ctx, "admin.role")) " " input name="role" size="8" value=(c.filter.role); }
                " "
                label { (tr(ctx, "sessions.device")) " " input name="device" size="10" value=(c.filter.device); }
                " "
                label { (tr(ctx, "admin.min_age")) " " input name="min_age" size="4" inputmode="numeric" value=(c.filter.min_age); }
                " "
                button #admin-filter-apply type="submit" { (tr(ctx, "admin.filter")) }
            }
            p #admin-count data-shown=(c.rows.len()) data-total=(c.total) {
                (c.rows.len()) " / " (c.total)
            }
            table #all-sessions {
                thead { tr {
                    th { (tr(ctx, "admin.user")) } th { (tr(ctx, "admin.role")) }
                    th { (tr(ctx, "sessions.device")) }
                    th { (tr(ctx, "sessions.ip")) } th { (tr(ctx, "sessions.started")) }
                    th { (tr(ctx, "sessions.last_seen")) } th {}
                } }
                tbody {
                    @for (user, r) in c.rows {
                        @let id = r.id.to_string();
                        tr.session.current[id == c.current] data-session-id=(id) data-user=(user) {
                            td { a href=(format!("/admin/audit?user={user}")) { (user) } }
                            td.roles { (r.roles.join(", ")) }
                            (device_cells(r, c.now))
                            td {
                                @if id == c.current {
                                    strong.this-device { (tr(ctx, "sessions.this")) }
                                } @else {
                                    form method="post" action="/admin/sessions/end" {
                                        (csrf_field(ctx))
                                        input type="hidden" name="id" value=(id);
                                        button.revoke type="submit" { (tr(ctx, "admin.revoke")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { (tr(ctx, "admin.end_user")) }
            @for n in c.names {
                form.end-user method="post" action="/admin/users/end" {
                    (csrf_field(ctx))
                    input type="hidden" name="user" value=(n.as_str());
                    button type="submit" data-user=(n.as_str()) { (tr(ctx, "admin.end_all_of")) " " (n.as_str()) }
                }
            }
            h2 { (tr(ctx, "admin.policy_title")) }
            table #policy {
                thead { tr {
                    th { (tr(ctx, "admin.role")) } th { "idle" } th { "absolute" }
                    th { "remember" } th { "max sessions" } th { "IP change" } th { "browser change" }
                } }
                tbody {
                    @for (role, p) in c.roles {
                        tr data-role=(role) {
                            td { (role) }
                            td.idle { (format_duration(p.idle_timeout)) }
                            td.absolute { (format_duration(p.absolute_timeout)) }
                            td { @if p.allow_remember { (format_duration(p.remember_idle_timeout)) } @else { "—" } }
                            td { @if let Some(m) = p.max_sessions { (m) " (" (format!("{:?}", p.on_limit)) ")" } @else { "—" } }
                            td { (action(p.binding.on_ip_change)) }
                            td { (action(p.binding.on_user_agent_change)) }
                        }
                    }
                }
            }
        }
    };
    layout(ctx, "admin.title", &main)
}

/// `POST /admin/users/end`: ends all of a user's sessions (the admin's own
/// stays if it is theirs).
#[derive(Debug, Deserialize)]
pub(super) struct UserForm {
    user: String,
}

pub(super) async fn end_user(
    State(demo): State<Demo>,
    RequireRole(admin, ..): RequireRole<Admin>,
    Form(form): Form<UserForm>,
) -> Result<Response, DemoError> {
    let user = UserId::new(form.user).map_err(|_| bad_request())?;
    if !demo.users.names().contains(&user) {
        return Err(bad_request());
    }
    demo.manager
        .end_user_sessions(&user, Some(&admin.record.id), EndReason::RevokedByAdmin)
        .await?;
    Ok(Redirect::to("/admin").into_response())
}

/// `GET /admin/audit?user=`.
#[derive(Debug, Deserialize)]
pub(super) struct TrailQuery {
    user: String,
}

pub(super) async fn trail(
    State(demo): State<Demo>,
    RequireRole(admin, ..): RequireRole<Admin>,
    audit: Option<Extension<Arc<AuditLog>>>,
    Query(q): Query<TrailQuery>,
) -> Result<Response, DemoError> {
    let user = UserId::new(q.user).map_err(|_| bad_request())?;
    let ctx = demo.ctx(&admin.session, true).await?;
    let query = AuditQuery::newest(200).with_user(user.clone());
    let entries =
        crate::audit_api::read(&demo.manager, audit.as_ref().map(|e| &e.0), &query).await?;
    let main = html! {
        main #admin-audit data-user=(user.as_str()) {
            h1 { (tr(&ctx, "admin.trail")) " " (user.as_str()) }
            p { a href="/admin" { (tr(&ctx, "admin.back")) } }
            table #audit-trail {
                thead { tr { th { "UTC" } th { "kind" } th { "detail" } th { "IP" } th { "session" } } }
                tbody {
                    @for r in &entries {
                        @let e = &r.entry;
                        tr.entry data-kind=(e.kind) {
                            td { (when(e.at)) }
                            td { (e.kind) }
                            td { code { (e.detail) } }
                            td { (e.ip.map(|ip| ip.to_string()).unwrap_or_default()) }
                            td { (e.session_id.map(|s| s.to_string()).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(layout(&ctx, "admin.title", &main)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessionary_core::audit::AuditEntry;

    fn rec(at_h: i64, kind: &str, user: &str) -> AuditRecord {
        AuditRecord {
            seq: 0,
            entry: AuditEntry {
                at: Timestamp(100 * 3_600_000 - at_h * 3_600_000 + 1),
                kind: kind.to_owned(),
                session_id: None,
                user: Some(UserId::new(user).unwrap()),
                ip: None,
                detail: String::new(),
            },
        }
    }

    #[test]
    fn active_sessions_are_counted_back_from_now() {
        let now = Timestamp(100 * 3_600_000);
        let users = [UserId::new("alice").unwrap()];
        // 5 h ago alice signed in twice, 2 h ago one ended, 1 h ago one more
        // sign-in; bob is not a demo user here.
        let log = [
            rec(5, "created", "alice"),
            rec(5, "created", "alice"),
            rec(2, "ended", "alice"),
            rec(1, "created", "alice"),
            rec(1, "created", "bob"),
        ];
        let s = active_series(&log, &users, 2, now);
        let at = |h: usize| s[s.len() - 1 - h].1;
        assert_eq!(s.len(), 25);
        assert_eq!(
            (at(0), at(1), at(2), at(3), at(5), at(6)),
            (2, 1, 2, 2, 0, 0)
        );
    }
}
