//! The downloads page: quotas ([`sessionary_axum::QuotaLayer`]) shown to a
//! person. `GET /downloads` lists the shop's leaflets and how many downloads
//! this session has left; `GET /downloads/{file}` charges one unit of
//! `downloads` (and the bytes sent) before it answers, so the sixth download
//! of a session with a limit of 5 gets the quota page (`429`) instead.
//!
//! The limit comes from the role policy (`[policy.*.quotas.units] downloads`;
//! `sessionary serve` allows 5 per session by default, signed in or not).

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};
use sessionary_axum::{QuotaLayer, Session};
use sessionary_core::{QuotaKind, Usage, Window};

use super::view::{Ctx, layout, tr, when};
use super::{Demo, DemoError, page};

/// The quota unit the downloads charge.
pub(super) const UNIT: &str = "downloads";

/// `(file name, title key, contents)`.
const FILES: &[(&str, &str, &str)] = &[
    (
        "green-tea.txt",
        "downloads.file.green_tea",
        "Green tea: 80 °C water, 2 minutes, 3 g per cup.\n",
    ),
    (
        "black-tea.txt",
        "downloads.file.black_tea",
        "Black tea: boiling water, 4 minutes, 2 g per cup.\n",
    ),
    (
        "coffee.txt",
        "downloads.file.coffee",
        "Coffee: 60 g per litre, medium grind, 4 minutes in a press.\n",
    ),
    (
        "mug-care.txt",
        "downloads.file.mug_care",
        "Mugs: dishwasher safe; no microwave for the gold rim.\n",
    ),
    (
        "price-list.txt",
        "downloads.file.prices",
        "Green tea 4.50, coffee beans 12.00, mug 9.90 (EUR).\n",
    ),
    (
        "opening-hours.txt",
        "downloads.file.hours",
        "Open Monday to Saturday, 9:00 to 19:00.\n",
    ),
];

/// The page and one metered route per file (an unknown name is a plain 404
/// and costs nothing).
pub(super) fn routes() -> Router<Demo> {
    let metered = QuotaLayer::new().with_units(UNIT, 1).with_bytes();
    FILES.iter().fold(
        Router::new().route("/downloads", get(downloads_page)),
        |r, &(name, _, body)| {
            r.route(
                &format!("/downloads/{name}"),
                get(move || file(name, body)).layer(metered.clone()),
            )
        },
    )
}

async fn file(name: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /downloads`: the files and what is left (read from the session's
/// counters; creates nothing).
async fn downloads_page(State(demo): State<Demo>, session: Session) -> Result<Response, DemoError> {
    let ctx = demo.ctx(&session, false).await?;
    let m = &demo.manager;
    let kind = QuotaKind::Unit(UNIT);
    let usage = match session.record() {
        Some(r) => Usage::of(&r, &m.policy_for(&r).quotas, kind, m.now()),
        None => {
            let limit = m.policy().anonymous.quotas.limit(kind);
            Usage {
                quota: UNIT.to_owned(),
                used: 0,
                limit: limit.map(|l| l.limit),
                per: limit.map(|l| l.per).unwrap_or_default(),
                resets_at: m.now(),
            }
        }
    };
    Ok(page(render(&ctx, &usage)))
}

fn render(ctx: &Ctx, usage: &Usage) -> Markup {
    let left = usage.remaining();
    let main = html! {
        main #downloads data-left=[left] data-limit=[usage.limit] {
            h1 { (tr(ctx, "downloads.title")) }
            p { (tr(ctx, "downloads.intro")) }
            p #downloads-left {
                @match (left, usage.limit) {
                    (Some(left), Some(limit)) => {
                        strong #left-count { (left) } " / " (limit) " " (tr(ctx, "downloads.left"))
                    }
                    _ => (tr(ctx, "downloads.unlimited")),
                }
            }
            ul #files {
                @for (name, key, _) in FILES {
                    li.file {
                        a.download href={"/downloads/" (name)} data-file=(name) { (tr(ctx, key)) }
                        " " span.name { "(" (name) ")" }
                    }
                }
            }
        }
    };
    layout(ctx, "downloads.title", &main)
}

/// The page of a `429` from a quota: which one, and when it starts again.
pub(super) fn quota_page(ctx: &Ctx, usage: &Usage) -> Markup {
    let main = html! {
        main #error data-status="429" data-problem="quota-exceeded" {
            h1 { (tr(ctx, "error.quota_title")) }
            p.message data-quota=(usage.quota) {
                @if usage.quota == UNIT {
                    (tr(ctx, "error.quota_downloads"))
                } @else {
                    (tr(ctx, "error.quota")) " (" (usage.quota) ")"
                }
            }
            p #quota-limit {
                (tr(ctx, "error.quota_limit")) " " strong { (usage.limit.unwrap_or(usage.used)) }
                " " @match usage.per {
                    Window::Session => (tr(ctx, "error.quota_per_session")),
                    Window::Every(_) => { "/ " (usage.per) }
                }
            }
            p #quota-reset {
                @match usage.per {
                    Window::Session => (tr(ctx, "error.quota_resets_session")),
                    Window::Every(_) => {
                        (tr(ctx, "error.quota_resets_at")) " "
                        time datetime=(usage.resets_at.to_rfc3339()) { (when(usage.resets_at)) }
                    }
                }
            }
            p { a href="/downloads" { (tr(ctx, "downloads.back")) } }
        }
    };
    layout(ctx, "error.quota_title", &main)
}
