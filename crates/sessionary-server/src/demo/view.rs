//! The demo's pages, rendered with maud (which escapes every interpolated value).

use maud::{DOCTYPE, Markup, html};
use sessionary_core::{SessionRecord, Timestamp};

use super::i18n::{Lang, t};
use super::{PRODUCTS, Product};

/// What every page needs to know about the visitor.
#[derive(Clone, Debug, Default)]
pub(super) struct Ctx {
    /// The language pages are rendered in.
    pub(super) lang: Lang,
    /// `light` or `dark`.
    pub(super) dark: bool,
    /// The signed-in user and whether they are an administrator.
    pub(super) user: Option<(String, bool)>,
    /// The CSRF token for this page's forms and `fetch` calls.
    pub(super) csrf: Option<String>,
}

impl Ctx {
    fn t(&self, key: &str) -> &'static str {
        t(self.lang, key)
    }
}

/// An element whose text the language switch replaces.
pub(super) fn tr(ctx: &Ctx, key: &str) -> Markup {
    html! { span data-i18n=(key) { (ctx.t(key)) } }
}

pub(super) fn csrf_field(ctx: &Ctx) -> Markup {
    html! {
        @if let Some(token) = &ctx.csrf {
            input type="hidden" name="csrf_token" value=(token);
        }
    }
}

/// The page frame: header with navigation and preferences, the expiry banner, `main`.
pub(super) fn layout(ctx: &Ctx, title_key: &str, main: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(ctx.lang.code()) data-theme=(if ctx.dark { "dark" } else { "light" })
            data-signed-in=[ctx.user.as_ref().map(|_| "true")] {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (ctx.t(title_key)) " · " (ctx.t("site.name")) }
                @if let Some(token) = &ctx.csrf {
                    meta name="csrf-token" content=(token);
                }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { (tr(ctx, "site.name")) }
                    nav {
                        a #nav-shop href="/" { (tr(ctx, "nav.shop")) }
                        a #nav-downloads href="/downloads" { (tr(ctx, "nav.downloads")) }
                        a #nav-outbox href="/outbox" { (tr(ctx, "nav.outbox")) }
                        @if let Some((name, admin)) = &ctx.user {
                            a #nav-sessions href="/account/sessions" { (tr(ctx, "nav.sessions")) }
                            a #nav-security href="/account/security" { (tr(ctx, "nav.security")) }
                            a #nav-activity href="/account/activity" { (tr(ctx, "nav.activity")) }
                            @if *admin {
                                a #nav-admin href="/admin" { (tr(ctx, "nav.admin")) }
                            }
                            span.who { (tr(ctx, "nav.signed_in_as")) " " strong #whoami { (name) } }
                            form #signout-form method="post" action="/logout" {
                                (csrf_field(ctx))
                                button #signout type="submit" { (tr(ctx, "nav.signout")) }
                            }
                        } @else {
                            a #nav-signin href="/login" { (tr(ctx, "nav.signin")) }
                        }
                    }
                    div.prefs {
                        label {
                            (tr(ctx, "theme.label")) " "
                            select #theme name="theme" {
                                option value="light" selected[!ctx.dark] data-i18n="theme.light" { (ctx.t("theme.light")) }
                                option value="dark" selected[ctx.dark] data-i18n="theme.dark" { (ctx.t("theme.dark")) }
                            }
                        }
                        label {
                            (tr(ctx, "lang.label")) " "
                            select #lang name="lang" {
                                option value="en" selected[ctx.lang == Lang::En] { "English" }
                                option value="fr" selected[ctx.lang == Lang::Fr] { "Français" }
                            }
                        }
                    }
                }
                div #expiry-warning.banner role="alert" hidden {
                    span #expiry-text { (ctx.t("expiry.one")) }
                    " "
                    button #stay-signed-in type="button" { (tr(ctx, "expiry.stay")) }
                }
                (main)
            }
        }
    }
}

/// The product list and the cart.
pub(super) fn shop(ctx: &Ctx, cart: &[String], extra: &Markup) -> Markup {
    let main = html! {
        main #shop {
            section {
                h1 { (tr(ctx, "shop.title")) }
                ul #products {
                    @for p in PRODUCTS {
                        li.product {
                            span class={"badge " (p.slug)} { (p.badge) }
                            a.name href=(format!("/products/{}", p.slug)) { (tr(ctx, p.name_key)) }
                            span.price { (price(p.cents)) }
                            form method="post" action="/cart/add" {
                                (csrf_field(ctx))
                                input type="hidden" name="product" value=(p.slug);
                                button.add-to-cart type="submit" data-product=(p.slug) {
                                    (tr(ctx, "shop.add"))
                                }
                            }
                        }
                    }
                }
            }
            (extra)
            aside #cart-box {
                h2 { (tr(ctx, "cart.title")) " (" span #cart-count { (cart.len()) } " " (tr(ctx, "cart.items")) ")" }
                @if cart.is_empty() {
                    p { (tr(ctx, "cart.empty")) }
                }
                ul #cart {
                    @for slug in cart {
                        @if let Some(p) = product(slug) {
                            li data-product=(p.slug) { span class={"badge small " (p.slug)} { (p.badge) } " " (tr(ctx, p.name_key)) " " span.price { (price(p.cents)) } }
                        }
                    }
                }
                @if !cart.is_empty() {
                    p.total { strong { (price(cart.iter().filter_map(|s| product(s)).map(|p| p.cents).sum())) } }
                    form method="post" action="/cart/clear" {
                        (csrf_field(ctx))
                        button #clear-cart type="submit" { (tr(ctx, "cart.clear")) }
                    }
                }
                @if ctx.user.is_none() {
                    p.hint { (tr(ctx, "cart.kept")) }
                }
            }
        }
    };
    layout(ctx, "shop.title", &main)
}

/// The product called `slug`, if the shop sells it.
pub(super) fn product(slug: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.slug == slug)
}

pub(super) fn price(cents: u32) -> String {
    format!("€{}.{:02}", cents / 100, cents % 100)
}

/// The sign-in form, shared by the sign-in and the session-expired pages.
fn sign_in_form(ctx: &Ctx, id: &str, return_to: &str, submit_id: &str, submit_key: &str) -> Markup {
    html! {
        form id=(id) method="post" action="/login" {
            (csrf_field(ctx))
            input type="hidden" name="return_to" value=(return_to);
            label { (tr(ctx, "login.username")) input #username name="username" autocomplete="username" required; }
            label { (tr(ctx, "login.password")) input #password type="password" name="password" autocomplete="current-password" required; }
            label.check { input #remember type="checkbox" name="remember"; " " (tr(ctx, "login.remember")) }
            button id=(submit_id) type="submit" { (tr(ctx, submit_key)) }
        }
    }
}

/// The sign-in page; `failed` after a wrong name or password.
pub(super) fn login(ctx: &Ctx, return_to: &str, failed: bool) -> Markup {
    let main = html! {
        main #login {
            h1 { (tr(ctx, "login.title")) }
            @if failed {
                p #login-error.error role="alert" { (tr(ctx, "login.error")) }
            }
            (sign_in_form(ctx, "login-form", return_to, "login-submit", "login.submit"))
            p.hint { (tr(ctx, "login.demo")) }
        }
    };
    layout(ctx, "login.title", &main)
}

/// The page a session that ended leads to, with a sign-in form that returns
/// to where the user was.
pub(super) fn expired(ctx: &Ctx, reason: &str, return_to: &str) -> Markup {
    let key = match reason {
        "expired_idle" | "expired_absolute" | "revoked_by_user" | "revoked_by_admin"
        | "logged_out" | "evicted_by_limit" => format!("reason.{reason}"),
        _ => "reason.other".to_owned(),
    };
    let main = html! {
        main #expired data-reason=(reason) {
            h1 { (tr(ctx, "expired.title")) }
            p #expired-reason { (tr(ctx, &key)) }
            p { (tr(ctx, "expired.reconnect")) }
            (sign_in_form(ctx, "reconnect-form", return_to, "reconnect-submit", "expired.submit"))
        }
    };
    layout(ctx, "expired.title", &main)
}

/// "3 min ago" and the like.
fn ago(now: Timestamp, then: Timestamp) -> String {
    let s = now.millis_since(then).max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// `2026-11-26 07:40 UTC`.
pub(super) fn when(at: Timestamp) -> String {
    let s = at.to_rfc3339();
    format!("{} UTC", s.get(..16).unwrap_or(&s).replace('T', " "))
}

pub(super) fn device_cells(record: &SessionRecord, now: Timestamp) -> Markup {
    let d = &record.device;
    html! {
        td.device { (d.label.as_deref().unwrap_or("?")) }
        td.ip { (d.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "?".into())) }
        td.started { (when(record.created_at)) }
        td.last-seen title=(when(record.last_seen_at)) { (ago(now, record.last_seen_at)) }
    }
}

/// "Manage sessions": the user's devices, this one marked.
pub(super) fn sessions(
    ctx: &Ctx,
    list: &[std::sync::Arc<SessionRecord>],
    current: &str,
    now: Timestamp,
    apps: &std::collections::HashMap<
        sessionary_core::SessionId,
        (String, sessionary_core::SessionId),
    >,
) -> Markup {
    // Each central session, then its app sessions right under it.
    let mut ordered: Vec<&std::sync::Arc<SessionRecord>> = Vec::new();
    for r in list.iter().filter(|r| !apps.contains_key(&r.id)) {
        ordered.push(r);
        ordered.extend(
            list.iter()
                .filter(|c| apps.get(&c.id).is_some_and(|(_, p)| *p == r.id)),
        );
    }
    // Children whose central session is not listed (it ended meanwhile).
    ordered.extend(list.iter().filter(|c| {
        apps.get(&c.id)
            .is_some_and(|(_, p)| !list.iter().any(|r| r.id == *p))
    }));
    let main = html! {
        main #manage-sessions {
            h1 { (tr(ctx, "sessions.title")) }
            p { (tr(ctx, "sessions.intro")) }
            table #sessions {
                thead { tr {
                    th { (tr(ctx, "sessions.device")) } th { (tr(ctx, "sessions.ip")) }
                    th { (tr(ctx, "sessions.started")) } th { (tr(ctx, "sessions.last_seen")) }
                    th { (tr(ctx, "sessions.remembered")) } th {}
                } }
                tbody {
                    @for r in ordered {
                        @let id = r.id.to_string();
                        @let mine = id == current;
                        @let app = apps.get(&r.id);
                        tr.session.current[mine].app-session[app.is_some()] data-session-id=(id) data-parent-id=[app.map(|(_, p)| p.to_string())] {
                            @if let Some((name, _)) = app {
                                td.app { "↳ " (tr(ctx, "sessions.app")) " " span.app-name { (name) } }
                                td {} td {} td {}
                            } @else {
                                (device_cells(r, now))
                            }
                            td { (tr(ctx, if r.remember { "sessions.yes" } else { "sessions.no" })) }
                            td {
                                @if mine {
                                    strong.this-device { (tr(ctx, "sessions.this")) }
                                } @else {
                                    form method="post" action="/account/sessions/end" {
                                        (csrf_field(ctx))
                                        input type="hidden" name="id" value=(id);
                                        button.end-session type="submit" { (tr(ctx, "sessions.end")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            div.actions {
                form method="post" action="/account/sessions/end-others" {
                    (csrf_field(ctx))
                    button #end-others type="submit" { (tr(ctx, "sessions.end_others")) }
                }
                form method="post" action="/account/sessions/end-all" {
                    (csrf_field(ctx))
                    button #end-all.danger type="submit" { (tr(ctx, "sessions.end_all")) }
                }
            }
        }
    };
    layout(ctx, "sessions.title", &main)
}

/// An error page a person understands; `problem` is the machine-readable type.
pub(super) fn error(ctx: &Ctx, status: u16, problem: &str, message_key: &str) -> Markup {
    let main = html! {
        main #error data-status=(status) data-problem=(problem) {
            h1 { (tr(ctx, "error.title")) }
            p.message { (tr(ctx, message_key)) }
            p { a href="/" { (tr(ctx, "error.back")) } }
        }
    };
    layout(ctx, "error.title", &main)
}

/// What the security page shows.
#[derive(Debug)]
pub(super) enum SecurityView<'a> {
    /// Not enrolled: the button to start.
    Off,
    /// Just started: QR code (an SVG data URL), key, recovery codes, and the confirm form.
    Enrolling {
        /// `data:image/svg+xml;base64,...`.
        qr_data_url: &'a str,
        /// The base32 key.
        secret: &'a str,
        /// The recovery codes, shown once.
        recovery: &'a [String],
        /// The last code was refused.
        refused: bool,
    },
    /// Enrolled.
    On {
        /// Unused recovery codes.
        codes_left: usize,
    },
}

/// The two-step verification page.
/// What the security page reports after a change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum SecurityNotice {
    /// Nothing.
    #[default]
    None,
    /// The password changed; `Some(n)`: n other sessions were signed out.
    PasswordChanged(Option<usize>),
    /// MFA was turned on or off.
    MfaChanged,
    /// A new password was refused (message key).
    PasswordRefused(&'static str),
}

pub(super) fn security(
    ctx: &Ctx,
    state: &SecurityView<'_>,
    aal: u8,
    notice: SecurityNotice,
) -> Markup {
    let offer_end_others = matches!(
        notice,
        SecurityNotice::PasswordChanged(None) | SecurityNotice::MfaChanged
    );
    let main = html! {
        main #security data-mfa=(match state { SecurityView::Off => "off", SecurityView::Enrolling { .. } => "enrolling", SecurityView::On { .. } => "on" }) {
            h1 { (tr(ctx, "security.title")) }
            @match notice {
                SecurityNotice::PasswordChanged(ended) => {
                    p #security-notice .notice role="status" data-changed="password" {
                        (tr(ctx, "security.password_changed"))
                        @if let Some(n) = ended {
                            " " (tr(ctx, "security.ended_others")) " " span #ended-others { (n) }
                        }
                    }
                }
                SecurityNotice::MfaChanged => {
                    p #security-notice .notice role="status" data-changed="mfa" { (tr(ctx, "security.mfa_changed")) }
                }
                SecurityNotice::PasswordRefused(key) => {
                    p #password-error .error role="alert" { (tr(ctx, key)) }
                }
                SecurityNotice::None => {}
            }
            @if offer_end_others {
                form #offer-end-others method="post" action="/account/sessions/end-others" {
                    (csrf_field(ctx))
                    p { (tr(ctx, "security.offer_end_others")) }
                    button #end-others-after-change type="submit" { (tr(ctx, "sessions.end_others")) }
                }
            }
            p { (tr(ctx, "security.aal")) ": " strong #aal { (aal) } }
            @match state {
                SecurityView::Off => {
                    p { (tr(ctx, "security.off")) }
                    form method="post" action="/account/security/enrol" {
                        (csrf_field(ctx))
                        button #mfa-enrol type="submit" { (tr(ctx, "security.enrol")) }
                    }
                }
                SecurityView::Enrolling { qr_data_url, secret, recovery, refused } => {
                    p { (tr(ctx, "security.scan")) }
                    @if !qr_data_url.is_empty() {
                        img #mfa-qr src=(qr_data_url) alt="QR code" width="200" height="200";
                    }
                    p { code #mfa-secret { (secret) } }
                    @if *refused {
                        p #mfa-error .error role="alert" { (tr(ctx, "stepup.refused")) }
                    }
                    form #mfa-confirm-form method="post" action="/account/security/confirm" {
                        (csrf_field(ctx))
                        input type="hidden" name="secret" value=(secret);
                        label { (tr(ctx, "security.code")) " " input #mfa-code name="code" inputmode="numeric" autocomplete="one-time-code" required; }
                        button #mfa-confirm type="submit" { (tr(ctx, "security.confirm")) }
                    }
                    @if !recovery.is_empty() {
                        p { (tr(ctx, "security.recovery")) }
                        ul #recovery-codes { @for c in *recovery { li { code { (c) } } } }
                    }
                }
                SecurityView::On { codes_left } => {
                    p #mfa-on { (tr(ctx, "security.on")) }
                    p { (tr(ctx, "security.codes_left")) ": " (codes_left) }
                    form method="post" action="/account/security/disable" {
                        (csrf_field(ctx))
                        button #mfa-disable type="submit" { (tr(ctx, "security.disable")) }
                    }
                }
            }
            h2 { (tr(ctx, "security.password")) }
            form #password-form method="post" action="/account/security/password" {
                (csrf_field(ctx))
                label { (tr(ctx, "security.new_password")) " " input #new-password type="password" name="new_password" autocomplete="new-password" minlength="8" maxlength="256" required; }
                label { (tr(ctx, "security.repeat_password")) " " input #repeat-password type="password" name="repeat_password" autocomplete="new-password" required; }
                label { input #end-others-check type="checkbox" name="end_others" value="on" checked; " " (tr(ctx, "security.end_others")) }
                button #change-password type="submit" { (tr(ctx, "security.change_password")) }
            }
        }
    };
    layout(ctx, "security.title", &main)
}

/// The step-up page: a TOTP or recovery code raises the session to AAL 2.
pub(super) fn step_up(ctx: &Ctx, return_to: &str, refused: bool, held: bool) -> Markup {
    let main = html! {
        main #step-up data-held=[held.then_some("true")] {
            h1 { (tr(ctx, "stepup.title")) }
            @if held {
                p #binding-notice .notice role="alert" { (tr(ctx, "stepup.held")) }
            }
            p { (tr(ctx, "stepup.intro")) }
            @if refused {
                p #step-up-error .error role="alert" { (tr(ctx, "stepup.refused")) }
            }
            form #step-up-form method="post" action="/step-up" {
                (csrf_field(ctx))
                input type="hidden" name="return_to" value=(return_to);
                label { (tr(ctx, "security.code")) " " input #step-up-code name="code" autocomplete="one-time-code" required; }
                button #step-up-submit type="submit" { (tr(ctx, "stepup.submit")) }
            }
        }
    };
    layout(ctx, "stepup.title", &main)
}

/// Re-authentication: the password again, for sensitive changes.
pub(super) fn reauth(ctx: &Ctx, return_to: &str, failed: bool, held: bool) -> Markup {
    let main = html! {
        main #reauth data-held=[held.then_some("true")] {
            h1 { (tr(ctx, "reauth.title")) }
            @if held {
                p #binding-notice .notice role="alert" { (tr(ctx, "stepup.held")) }
            } @else {
                p { (tr(ctx, "reauth.intro")) }
            }
            @if failed {
                p #reauth-error .error role="alert" { (tr(ctx, "login.error")) }
            }
            form #reauth-form method="post" action="/reauth" {
                (csrf_field(ctx))
                input type="hidden" name="return_to" value=(return_to);
                label { (tr(ctx, "login.password")) input #reauth-password type="password" name="password" autocomplete="current-password" required; }
                button #reauth-submit type="submit" { (tr(ctx, "reauth.submit")) }
            }
        }
    };
    layout(ctx, "reauth.title", &main)
}
