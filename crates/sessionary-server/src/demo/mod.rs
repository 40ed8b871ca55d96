//! The demo shop served by `sessionary serve` at `/`: every capability of the
//! web layer ([`sessionary_axum`]) shown to a person.
//!
//! | Path | What |
//! |---|---|
//! | `GET /` | products and the cart (anonymous until signed in) |
//! | `POST /cart/add`, `POST /cart/clear` | change the cart |
//! | `GET`/`POST /login` | sign in (remember-me); the cart moves along, the token changes |
//! | `POST /logout` | sign out |
//! | `GET`/`POST /preferences` | theme and language; a signed-in user's follow them to every device live |
//! | `GET /account/sessions` | "manage sessions": end one, all others, all |
//! | `GET /account/activity` | "Security activity": the user's audit log entries |
//! | `GET /account/security`, `POST /account/security/enrol`, `.../confirm` | two-step verification (TOTP, `sessionary-mfa`): QR code, recovery codes |
//! | `GET`/`POST /step-up`, `GET`/`POST /reauth` | a code raises the session to AAL 2; the password again opens the privileged window |
//! | `GET /admin`, `POST /admin/sessions/end` | the admin area (role `admin`, stricter timeouts, `SameSite=Strict` group) |
//! | `GET /downloads`, `GET /downloads/{file}` | leaflets, 5 downloads per session (a quota, [`sessionary_axum::QuotaLayer`]): what is left, and the quota page (`429`) after |
//! | `GET /outbox` | the demo's mailbox: new-device alerts of the file outbox, newest first |
//! | `GET /session-expired` | why the session ended, and a sign-in that returns to where the user was |
//! | `/session/status`, `/session/extend`, `/session/events` | [`sessionary_axum::session_routes`] |
//! | `GET`/`POST /api/cart` | the cart as JSON, for the cookie or an access token (`Authorization: Bearer`) |
//!
//! Pages are server-rendered ([`maud`]); the one script, `/assets/app.js`,
//! listens to the session events and switches theme and language without a
//! reload. The content security policy allows no inline script.
//!
//! Tests build the demo over a manager with a [`sessionary_core::MockClock`]:
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sessionary_core::{MemoryStore, MockClock, SessionManager};
//! use sessionary_server::demo::{DemoOptions, DemoUsers, router};
//!
//! let clock = MockClock::default();
//! let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
//!     .with_clock(Arc::new(clock.clone()))
//!     .build()?;
//! let app = router(manager, DemoOptions::new(DemoUsers::from_passwords("a", "b")?));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! # Ok(()) }
//! ```

mod activity;
mod admin;
mod downloads;
mod i18n;
mod outbox;
mod personal;
mod users;
mod view;

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{DefaultBodyLimit, Form, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header, uri::Scheme};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use maud::Markup;
use serde::Deserialize;
use serde_json::{Value, json};
use sessionary_axum::csrf::{CsrfConfig, CsrfLayer, CsrfRejection};
use sessionary_axum::{
    Admin, Caller, ClientDevice, CurrentUser, RequireRole, Session, SessionConfig, SessionLayer,
    SessionRejection, session_routes,
};
use sessionary_core::{EndReason, NewSession, Privilege, SessionId, SessionManager};
use sessionary_mfa::Mfa;
use sessionary_token::AccessTokens;

pub use i18n::Lang;
pub use users::{
    ADMIN_NAME, DEMO_USERS_FILE, DemoUsers, DemoUsersError, NewAccount, USER_NAME, new_password,
};
use view::Ctx;

use crate::extract::ApiJson;
use crate::problem::Problem;

/// A product of the shop.
#[derive(Debug)]
struct Product {
    slug: &'static str,
    name_key: &'static str,
    /// The letter on the product's badge (no emoji: not every machine has the font).
    badge: &'static str,
    cents: u32,
}

/// What the shop sells; the cart takes nothing else.
const PRODUCTS: &[Product] = &[
    Product {
        slug: "tea",
        name_key: "product.tea",
        badge: "T",
        cents: 650,
    },
    Product {
        slug: "coffee",
        name_key: "product.coffee",
        badge: "C",
        cents: 900,
    },
    Product {
        slug: "mug",
        name_key: "product.mug",
        badge: "M",
        cents: 1200,
    },
];

/// Most items a cart holds.
const MAX_CART: usize = 50;

/// How the demo is served.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    users: Arc<DemoUsers>,
    expiry_warning: Duration,
    insecure_http: bool,
    access_tokens: Option<Arc<AccessTokens>>,
    trusted_proxies: Option<Arc<sessionary_axum::TrustedProxies>>,
    alerts: outbox::Alerts,
    pub(crate) oidc: Option<Arc<crate::oidc::Provider>>,
}

impl DemoOptions {
    /// The demo with these accounts, served over plain HTTP on loopback
    /// (cookie `session` without `Secure`), with a 60 s expiry warning.
    pub fn new(users: DemoUsers) -> Self {
        Self {
            users: Arc::new(users),
            expiry_warning: sessionary_axum::config::DEFAULT_EXPIRY_WARNING,
            insecure_http: true,
            access_tokens: None,
            trusted_proxies: None,
            alerts: outbox::Alerts::default(),
            oidc: None,
        }
    }

    /// Serves the OpenID Connect provider `provider` beside the shop
    /// (`/oauth2/...`, discovery), signing apps in through the shop's session,
    /// and shows the apps' sessions in "Manage sessions".
    #[must_use]
    pub fn with_oidc(mut self, provider: Arc<crate::oidc::Provider>) -> Self {
        self.oidc = Some(provider);
        self
    }

    /// Takes the client IP shown in "manage sessions" from `Forwarded` /
    /// `X-Forwarded-For` when the peer is one of these proxies.
    #[must_use]
    pub fn with_trusted_proxies(mut self, proxies: sessionary_axum::TrustedProxies) -> Self {
        self.trusted_proxies = Some(Arc::new(proxies));
        self
    }

    /// Lets the JSON routes under `/api/` take `Authorization: Bearer <access
    /// token>` as well as the session cookie.
    #[must_use]
    pub fn with_access_tokens(mut self, tokens: Arc<AccessTokens>) -> Self {
        self.access_tokens = Some(tokens);
        self
    }

    /// How long before the session's end the page warns.
    #[must_use]
    pub fn with_expiry_warning(mut self, lead: Duration) -> Self {
        self.expiry_warning = lead;
        self
    }

    /// Serve behind HTTPS: `__Host-session` with `Secure`, HTTPS origins for
    /// the CSRF check. `sessionary serve` does this unless it listens on a
    /// loopback address.
    #[must_use]
    pub fn with_https(mut self) -> Self {
        self.insecure_http = false;
        self
    }
}

#[derive(Clone)]
struct Demo {
    manager: SessionManager,
    users: Arc<DemoUsers>,
    mfa: Arc<Mfa>,
    alerts: outbox::Alerts,
    oidc: Option<Arc<crate::oidc::Provider>>,
}

/// The demo's session settings (the cookie the OpenID Connect provider reads too).
pub(crate) fn session_config(options: &DemoOptions) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_expiry_warning(options.expiry_warning)
        .with_sign_in_path("/login")
        .with_strict_prefix("/admin")
        // A session held after its network or browser changed may only prove
        // itself (code or password), sign out, or load the page assets.
        .with_step_up_path("/step-up")
        .with_step_up_exempt("/reauth")
        .with_step_up_exempt("/logout")
        .with_step_up_exempt("/assets");
    if let Some(proxies) = &options.trusted_proxies {
        config = config.with_trusted_proxies(sessionary_axum::TrustedProxies::clone(proxies));
    }
    if options.insecure_http {
        // Loopback only (see `DemoOptions::new`): browsers treat it as secure
        // enough, but plain HTTP cannot carry a `Secure` cookie everywhere.
        config = config.dangerous().allow_insecure_http();
    }
    config
}

/// The demo's router, with its own [`SessionLayer`], [`CsrfLayer`] and
/// security headers. Serve it with connect info (the client IP is shown in
/// "manage sessions").
pub fn router(manager: SessionManager, options: DemoOptions) -> Router {
    let config = session_config(&options);
    let mut csrf = CsrfConfig::new();
    if options.insecure_http {
        csrf = csrf.with_scheme(Scheme::HTTP);
    }
    let csp = content_security_policy(options.oidc.as_deref());
    let demo = Demo {
        manager: manager.clone(),
        users: options.users,
        mfa: Arc::new(Mfa::new(manager.clone(), "Sessionary demo shop")),
        alerts: options.alerts,
        oidc: options.oidc,
    };
    let mut router = Router::new()
        .route("/", get(shop))
        .route("/products/{slug}", get(personal::product_page))
        .route("/cart/add", post(cart_add))
        .route("/cart/clear", post(cart_clear))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/preferences", get(get_prefs).post(set_prefs))
        .route("/account/sessions", get(sessions_page))
        .route("/account/sessions/end", post(end_one))
        .route("/account/sessions/end-others", post(end_others))
        .route("/account/sessions/end-all", post(end_all))
        .route("/account/activity", get(activity::activity_page))
        .route("/activity/leave", post(activity::leave))
        .route("/account/security", get(security_page))
        .route("/account/security/enrol", post(security_enrol))
        .route("/account/security/confirm", post(security_confirm))
        .route("/account/security/password", post(security_password))
        .route("/account/security/disable", post(security_disable))
        .route("/step-up", get(step_up_page).post(step_up))
        .route("/reauth", get(reauth_page).post(reauth))
        .route("/admin", get(admin::console))
        .route("/admin/sessions/end", post(admin_end))
        .route("/admin/users/end", post(admin::end_user))
        .route("/admin/audit", get(admin::trail))
        .route("/outbox", get(outbox::outbox_page))
        .route("/session-expired", get(expired_page))
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(style))
        .route("/assets/i18n.json", get(texts))
        .route("/api/cart", get(api_cart).post(api_cart_add))
        .merge(session_routes())
        .merge(downloads::routes())
        .fallback(not_found)
        .layer(CsrfLayer::new(csrf))
        .layer(middleware::from_fn(record_sid))
        .layer(middleware::from_fn_with_state(demo.clone(), error_pages))
        .layer(middleware::from_fn_with_state(
            demo.clone(),
            activity::track,
        ))
        .layer(SessionLayer::new(manager, config))
        .layer(middleware::map_response(move |res: Response| {
            let csp = csp.clone();
            async move { security_headers(res, csp) }
        }))
        .layer(DefaultBodyLimit::max(64 * 1024));
    if let Some(tokens) = options.access_tokens {
        router = router.layer(Extension(tokens));
    }
    router.with_state(demo)
}

/// Why a demo handler could not answer normally.
#[derive(Debug)]
enum DemoError {
    /// A session rejection: `401`s become redirects in the layer (expired
    /// page, sign-in page); the rest become error pages.
    Session(SessionRejection),
    /// An error page: status, problem type, message key.
    Page(StatusCode, &'static str, &'static str),
}

impl From<SessionRejection> for DemoError {
    fn from(r: SessionRejection) -> Self {
        Self::Session(r)
    }
}

impl From<sessionary_core::Error> for DemoError {
    fn from(e: sessionary_core::Error) -> Self {
        Self::Session(e.into())
    }
}

/// Put on a response for [`error_pages`] to render.
#[derive(Clone, Copy, Debug)]
struct ErrorPage {
    problem: &'static str,
    key: &'static str,
}

impl IntoResponse for DemoError {
    fn into_response(self) -> Response {
        match self {
            Self::Session(r) => r.into_response(),
            Self::Page(status, problem, key) => {
                let mut res = (status, problem).into_response();
                res.extensions_mut().insert(ErrorPage { problem, key });
                res
            }
        }
    }
}

fn bad_request() -> DemoError {
    DemoError::Page(
        StatusCode::BAD_REQUEST,
        "invalid-request",
        "error.bad_request",
    )
}

fn internal() -> DemoError {
    DemoError::Page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "error.internal",
    )
}

impl Demo {
    /// The account and role if `password` is right. Argon2id takes tens of
    /// milliseconds of CPU, so it runs off the async threads.
    async fn check_password(
        &self,
        name: String,
        password: String,
    ) -> Result<Option<(sessionary_core::UserId, String)>, DemoError> {
        let users = Arc::clone(&self.users);
        tokio::task::spawn_blocking(move || users.check(&name, &password))
            .await
            .map_err(|_| internal())
    }

    /// The page context: preferences (the user's, else the session's), the
    /// user, and a CSRF token when the page has forms (which needs a session:
    /// an anonymous one is created then).
    async fn ctx(&self, session: &Session, forms: bool) -> Result<Ctx, DemoError> {
        let record = session.record();
        let user = record.as_ref().and_then(|r| r.user.clone());
        let mut prefs = session.get::<Value>("prefs")?.unwrap_or(Value::Null);
        if let Some(user) = &user {
            let (_, data) = self.manager.user_data(user).await?;
            if let Some(p) = data.get("prefs") {
                prefs = p.clone();
            }
        }
        let csrf = if forms || record.is_some() {
            Some(session.csrf_token().await?)
        } else {
            None
        };
        Ok(Ctx {
            lang: Lang::from_code(prefs["lang"].as_str().unwrap_or("en")),
            dark: prefs["theme"] == "dark",
            user: user.map(|u| {
                let admin = record
                    .as_ref()
                    .is_some_and(|r| r.roles.iter().any(|x| x == "admin"));
                (u.as_str().to_owned(), admin)
            }),
            csrf,
        })
    }
}

/// An HTML page with another status than `200`.
fn page_with(status: StatusCode, markup: Markup) -> Response {
    let mut res = page(markup);
    *res.status_mut() = status;
    res
}

fn page(markup: Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// Only a path on this site ([`sessionary_axum::is_local_path`]), else `/`.
fn local_path(p: Option<&str>) -> &str {
    p.filter(|p| sessionary_axum::is_local_path(p))
        .unwrap_or("/")
}

async fn shop(State(demo): State<Demo>, session: Session) -> Result<Response, DemoError> {
    let ctx = demo.ctx(&session, true).await?;
    let cart: Vec<String> = session.get("cart")?.unwrap_or_default();
    let recent = personal::recent(&session)?;
    let recs = personal::recommend(&recent, &cart, None);
    let extra = personal::sections(&ctx, &recent, &recs);
    Ok(page(view::shop(&ctx, &cart, &extra)))
}

#[derive(Deserialize)]
struct AddForm {
    product: String,
}

/// Adds `p` to the cart in `data` (at most [`MAX_CART`] items).
fn push_to_cart(data: &mut sessionary_core::Data, p: &Product) {
    let cart = data.entry("cart").or_insert_with(|| json!([]));
    if let Some(items) = cart.as_array_mut() {
        if items.len() < MAX_CART {
            items.push(p.slug.into());
        }
    }
}

async fn cart_add(session: Session, Form(form): Form<AddForm>) -> Result<Response, DemoError> {
    let Some(p) = view::product(&form.product) else {
        return Err(bad_request());
    };
    // Compare-and-set with retry: two tabs adding at once lose nothing.
    session.update(|data| push_to_cart(data, p)).await?;
    Ok(Redirect::to("/").into_response())
}

async fn cart_clear(session: Session) -> Result<Response, DemoError> {
    session.remove("cart").await?;
    Ok(Redirect::to("/").into_response())
}

#[derive(Deserialize)]
struct ReturnTo {
    return_to: Option<String>,
}

async fn login_page(
    State(demo): State<Demo>,
    session: Session,
    Query(q): Query<ReturnTo>,
) -> Result<Response, DemoError> {
    let ctx = demo.ctx(&session, true).await?;
    Ok(page(view::login(
        &ctx,
        local_path(q.return_to.as_deref()),
        false,
    )))
}

/// The sign-in form. No `Debug`: a password must never reach a log.
#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    remember: Option<String>,
    return_to: Option<String>,
}

async fn login(
    State(demo): State<Demo>,
    session: Session,
    ClientDevice(device): ClientDevice,
    Form(form): Form<LoginForm>,
) -> Result<Response, DemoError> {
    let return_to = local_path(form.return_to.as_deref()).to_owned();
    let Some((user, role)) = demo.check_password(form.username, form.password).await? else {
        tracing::info!("demo sign-in refused");
        let ctx = demo.ctx(&session, true).await?;
        return Ok(page_with(
            StatusCode::UNAUTHORIZED,
            view::login(&ctx, &return_to, true),
        ));
    };
    // Preferences chosen while anonymous become the account's.
    let anonymous_prefs = match session.user() {
        None => session.get::<Value>("prefs")?,
        Some(_) => None,
    };
    let new = NewSession::user(user.clone())
        .with_roles([role])
        .with_aal(1)
        .with_remember(form.remember.is_some())
        .with_device(device);
    match session.login(new).await {
        Ok(record) => {
            if let Some(prefs) = anonymous_prefs {
                personal::carry_prefs(&demo, &user, prefs).await;
            }
            demo.alerts.sign_in(&record).await;
            Ok(Redirect::to(&return_to).into_response())
        }
        Err(SessionRejection::Operation(sessionary_core::Error::LimitReached { .. })) => {
            Err(DemoError::Page(
                StatusCode::TOO_MANY_REQUESTS,
                "session-limit",
                "error.limit",
            ))
        }
        Err(e) => Err(e.into()),
    }
}

async fn logout(session: Session) -> Result<Response, DemoError> {
    session.logout().await?;
    Ok(Redirect::to("/").into_response())
}

async fn get_prefs(State(demo): State<Demo>, session: Session) -> Result<Response, DemoError> {
    let ctx = demo.ctx(&session, false).await?;
    let doc = json!({
        "theme": if ctx.dark { "dark" } else { "light" },
        "lang": ctx.lang.code(),
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(doc)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefsChange {
    theme: Option<String>,
    lang: Option<String>,
}

/// Saves theme and language: to the user (every device follows live through
/// the `data-changed` event), or to the anonymous session.
async fn set_prefs(
    State(demo): State<Demo>,
    session: Session,
    ApiJson(change): ApiJson<PrefsChange>,
) -> Result<Response, Response> {
    let refuse = |what: &str| Problem::invalid_request(what).into_response();
    let mut prefs = serde_json::Map::new();
    match change.theme.as_deref() {
        Some(t @ ("light" | "dark")) => {
            prefs.insert("theme".into(), t.into());
        }
        Some(_) => return Err(refuse("`theme` is \"light\" or \"dark\"")),
        None => {}
    }
    match change.lang.as_deref() {
        Some(l @ ("en" | "fr")) => {
            prefs.insert("lang".into(), l.into());
        }
        Some(_) => return Err(refuse("`lang` is \"en\" or \"fr\"")),
        None => {}
    }
    let mut patch = serde_json::Map::new();
    patch.insert("prefs".into(), Value::Object(prefs));
    let apply = |data: &mut sessionary_core::Data| sessionary_core::merge_patch(data, &patch);
    let saved = match session.user() {
        Some(user) => demo
            .manager
            .update_user_data(&user, None, apply)
            .await
            .map(drop)
            .map_err(SessionRejection::from),
        None => session.update(apply).await,
    };
    saved.map_err(IntoResponse::into_response)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn sessions_page(State(demo): State<Demo>, user: CurrentUser) -> Result<Response, DemoError> {
    let ctx = demo.ctx(&user.session, true).await?;
    let list = demo.manager.list(&user.user).await?;
    let current = user.record.id.to_string();
    // App sessions (single sign-on children): the app's name and the central session.
    let apps: std::collections::HashMap<SessionId, (String, SessionId)> = match &demo.oidc {
        Some(p) => list
            .iter()
            .filter_map(|r| p.child_of(r).map(|c| (r.id, c)))
            .collect(),
        None => std::collections::HashMap::new(),
    };
    Ok(page(view::sessions(
        &ctx,
        &list,
        &current,
        demo.manager.now(),
        &apps,
    )))
}

#[derive(Deserialize)]
struct IdForm {
    id: String,
}

async fn end_one(
    State(demo): State<Demo>,
    user: CurrentUser,
    Form(form): Form<IdForm>,
) -> Result<Response, DemoError> {
    let id = SessionId::parse(&form.id).map_err(|_| bad_request())?;
    if id == user.record.id {
        user.session.logout().await?;
        return Ok(Redirect::to("/").into_response());
    }
    match demo
        .manager
        .end_own_session(&user.user, &id, EndReason::RevokedByUser)
        .await
    {
        // Already gone (ended meanwhile, or not this user's): the list shows the truth.
        Ok(_) | Err(sessionary_core::Error::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Redirect::to("/account/sessions").into_response())
}

async fn end_others(State(demo): State<Demo>, user: CurrentUser) -> Result<Response, DemoError> {
    demo.manager
        .end_user_sessions(&user.user, Some(&user.record.id), EndReason::RevokedByUser)
        .await?;
    Ok(Redirect::to("/account/sessions").into_response())
}

async fn end_all(State(demo): State<Demo>, user: CurrentUser) -> Result<Response, DemoError> {
    demo.manager
        .end_user_sessions(&user.user, Some(&user.record.id), EndReason::RevokedByUser)
        .await?;
    // This device signs out properly: removal cookie and Clear-Site-Data.
    user.session.logout().await?;
    Ok(Redirect::to("/").into_response())
}

async fn admin_end(
    State(demo): State<Demo>,
    RequireRole(_admin, ..): RequireRole<Admin>,
    Form(form): Form<IdForm>,
) -> Result<Response, DemoError> {
    let id = SessionId::parse(&form.id).map_err(|_| bad_request())?;
    match demo
        .manager
        .end_session(&id, EndReason::RevokedByAdmin)
        .await
    {
        Ok(_) | Err(sessionary_core::Error::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Redirect::to("/admin").into_response())
}

#[derive(Deserialize)]
struct ExpiredQuery {
    reason: Option<String>,
    return_to: Option<String>,
}

async fn expired_page(
    State(demo): State<Demo>,
    session: Session,
    Query(q): Query<ExpiredQuery>,
) -> Result<Response, DemoError> {
    // Only known reasons are shown by name; anything else reads "other".
    let reason = q
        .reason
        .as_deref()
        .filter(|r| r.len() <= 32 && r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .unwrap_or("other");
    let ctx = demo.ctx(&session, true).await?;
    let mut res = page(view::expired(
        &ctx,
        reason,
        local_path(q.return_to.as_deref()),
    ));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// The cart as JSON: `{"user", "transport", "items"}`.
async fn cart_doc(demo: &Demo, caller: &Caller) -> Result<Response, DemoError> {
    let record = demo.manager.session(&caller.session_id()).await?;
    let data = demo.manager.data(&record)?;
    let items = data.get("cart").cloned().unwrap_or_else(|| json!([]));
    let doc = json!({
        "user": caller.user().as_str(),
        "transport": if caller.is_bearer() { "bearer" } else { "cookie" },
        "items": items,
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(doc)).into_response())
}

/// `GET /api/cart`: the signed-in caller's cart, by access token or cookie.
async fn api_cart(
    State(demo): State<Demo>,
    caller: Result<Caller, sessionary_axum::CallerRejection>,
) -> Result<Response, Response> {
    let caller = caller.map_err(IntoResponse::into_response)?;
    cart_doc(&demo, &caller)
        .await
        .map_err(IntoResponse::into_response)
}

/// `POST /api/cart` `{"product": "tea"}`: adds to the caller's cart. Cookie
/// callers need the CSRF header like any form; bearer callers are exempt.
async fn api_cart_add(
    State(demo): State<Demo>,
    caller: Result<Caller, sessionary_axum::CallerRejection>,
    ApiJson(form): ApiJson<AddForm>,
) -> Result<Response, Response> {
    let caller = caller.map_err(IntoResponse::into_response)?;
    let Some(p) = view::product(&form.product) else {
        return Err(Problem::invalid_request("`product` is tea, coffee or mug").into_response());
    };
    demo.manager
        .update_data(&caller.session_id(), None, |data| push_to_cart(data, p))
        .await
        .map_err(|e| DemoError::from(e).into_response())?;
    cart_doc(&demo, &caller)
        .await
        .map_err(IntoResponse::into_response)
}

fn mfa_err(e: sessionary_mfa::Error) -> DemoError {
    match e {
        sessionary_mfa::Error::Session(e) => e.into(),
        other => {
            tracing::error!(error = %other, "demo MFA operation failed");
            internal()
        }
    }
}

/// Whether an MFA refusal is about the code (shown on the form again).
fn code_refused(e: &sessionary_mfa::Error) -> bool {
    matches!(e.problem_type(), "mfa-code-refused" | "mfa-rate-limited")
}

fn svg_data_url(svg: &str) -> String {
    use base64::Engine as _;
    format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    )
}

/// `GET /account/security`: two-step verification on or off.
/// `?changed=mfa` after a change of the second factor.
#[derive(Deserialize)]
struct SecurityQuery {
    changed: Option<String>,
}

async fn security_page(
    State(demo): State<Demo>,
    user: CurrentUser,
    Query(q): Query<SecurityQuery>,
) -> Result<Response, DemoError> {
    let notice = match q.changed.as_deref() {
        Some("mfa") => view::SecurityNotice::MfaChanged,
        Some("password") => view::SecurityNotice::PasswordChanged(None),
        _ => view::SecurityNotice::None,
    };
    security_with(&demo, &user, StatusCode::OK, notice).await
}

/// The security page in its current state, with a notice.
async fn security_with(
    demo: &Demo,
    user: &CurrentUser,
    status: StatusCode,
    notice: view::SecurityNotice,
) -> Result<Response, DemoError> {
    let ctx = demo.ctx(&user.session, true).await?;
    let state = if demo.mfa.is_enrolled(&user.user).await.map_err(mfa_err)? {
        view::SecurityView::On {
            codes_left: demo
                .mfa
                .recovery_codes_left(&user.user)
                .await
                .map_err(mfa_err)?,
        }
    } else {
        view::SecurityView::Off
    };
    Ok(page_with(
        status,
        view::security(&ctx, &state, user.record.aal, notice),
    ))
}

/// The password form. No `Debug`: it holds passwords.
#[derive(Deserialize)]
struct PasswordForm {
    new_password: String,
    repeat_password: String,
    end_others: Option<String>,
}

/// Where a sensitive action sends a session outside its privileged window
/// (`/reauth`) or below the AAL its user's MFA gives (`/step-up`), if anywhere.
fn privileged_redirect(e: &sessionary_mfa::Error) -> Option<Response> {
    match e {
        sessionary_mfa::Error::ReauthenticationRequired => {
            Some(Redirect::to("/reauth?return_to=/account/security").into_response())
        }
        sessionary_mfa::Error::InsufficientAal { .. } => {
            Some(Redirect::to("/step-up?return_to=/account/security").into_response())
        }
        _ => None,
    }
}

/// `POST /account/security/password`: a sensitive action, inside the
/// privileged window only (and at AAL 2 for a user with MFA). The user's other
/// sessions are signed out when asked (the default), else offered.
async fn security_password(
    State(demo): State<Demo>,
    user: CurrentUser,
    Form(form): Form<PasswordForm>,
) -> Result<Response, DemoError> {
    if let Err(e) = demo.mfa.require_privileged(&user.record.id).await {
        return privileged_redirect(&e).ok_or_else(|| mfa_err(e));
    }
    if demo.mfa.is_enrolled(&user.user).await.map_err(mfa_err)? && user.record.aal < 2 {
        return Ok(Redirect::to("/step-up?return_to=/account/security").into_response());
    }
    let refused = |key| view::SecurityNotice::PasswordRefused(key);
    if form.new_password != form.repeat_password {
        return security_with(
            &demo,
            &user,
            StatusCode::BAD_REQUEST,
            refused("security.password_mismatch"),
        )
        .await;
    }
    let users = Arc::clone(&demo.users);
    let name = user.user.clone();
    let changed =
        tokio::task::spawn_blocking(move || users.set_password(&name, &form.new_password))
            .await
            .map_err(|_| internal())?;
    match changed {
        Ok(()) => {}
        Err(DemoUsersError::Refused(_)) => {
            return security_with(
                &demo,
                &user,
                StatusCode::BAD_REQUEST,
                refused("security.password_length"),
            )
            .await;
        }
        Err(e) => {
            tracing::error!(error = %e, "demo password change failed");
            return Err(internal());
        }
    }
    tracing::info!(user = %user.user, "password changed");
    let ended = if form.end_others.is_some() {
        let gone = demo
            .manager
            .end_user_sessions(&user.user, Some(&user.record.id), EndReason::RevokedByUser)
            .await?;
        Some(gone.len())
    } else {
        None
    };
    security_with(
        &demo,
        &user,
        StatusCode::OK,
        view::SecurityNotice::PasswordChanged(ended),
    )
    .await
}

/// `POST /account/security/disable`: turns MFA off (privileged window and
/// AAL 2 needed), then offers to sign out the other sessions.
async fn security_disable(
    State(demo): State<Demo>,
    user: CurrentUser,
) -> Result<Response, DemoError> {
    match demo.mfa.disable(&user.record.id).await {
        Ok(()) => Ok(Redirect::to("/account/security?changed=mfa").into_response()),
        Err(sessionary_mfa::Error::NotEnrolled) => {
            Ok(Redirect::to("/account/security").into_response())
        }
        Err(e) => privileged_redirect(&e).ok_or_else(|| mfa_err(e)),
    }
}

/// `POST /account/security/enrol`: a new secret, QR code and recovery codes;
/// a sign-in older than the privileged window asks for the password first.
async fn security_enrol(
    State(demo): State<Demo>,
    user: CurrentUser,
) -> Result<Response, DemoError> {
    let e = match demo.mfa.begin_enrolment(&user.record.id).await {
        Ok(e) => e,
        Err(sessionary_mfa::Error::ReauthenticationRequired) => {
            return Ok(Redirect::to("/reauth?return_to=/account/security").into_response());
        }
        Err(sessionary_mfa::Error::AlreadyEnrolled) => {
            return Ok(Redirect::to("/account/security").into_response());
        }
        Err(e) => return Err(mfa_err(e)),
    };
    let ctx = demo.ctx(&user.session, true).await?;
    let qr = svg_data_url(&e.qr_svg);
    let state = view::SecurityView::Enrolling {
        qr_data_url: &qr,
        secret: &e.secret_base32,
        recovery: &e.recovery_codes,
        refused: false,
    };
    Ok(page(view::security(
        &ctx,
        &state,
        user.record.aal,
        view::SecurityNotice::None,
    )))
}

/// The confirm form. No `Debug`: it holds a secret.
#[derive(Deserialize)]
struct ConfirmForm {
    secret: String,
    code: String,
}

/// `POST /account/security/confirm`: the first code turns it on.
async fn security_confirm(
    State(demo): State<Demo>,
    user: CurrentUser,
    Form(form): Form<ConfirmForm>,
) -> Result<Response, DemoError> {
    match demo
        .mfa
        .confirm_enrolment(&user.record.id, form.code.trim())
        .await
    {
        Ok(()) => Ok(Redirect::to("/account/security?changed=mfa").into_response()),
        Err(e) if code_refused(&e) => {
            let ctx = demo.ctx(&user.session, true).await?;
            let state = view::SecurityView::Enrolling {
                qr_data_url: "",
                secret: &form.secret,
                recovery: &[],
                refused: true,
            };
            Ok(page_with(
                StatusCode::FORBIDDEN,
                view::security(&ctx, &state, user.record.aal, view::SecurityNotice::None),
            ))
        }
        Err(sessionary_mfa::Error::NotEnrolled) => {
            Ok(Redirect::to("/account/security").into_response())
        }
        Err(e) => Err(mfa_err(e)),
    }
}

/// A local path as a query value.
fn query_value(path: &str) -> String {
    percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn step_up_page(
    State(demo): State<Demo>,
    user: CurrentUser,
    Query(q): Query<ReturnTo>,
) -> Result<Response, DemoError> {
    let return_to = local_path(q.return_to.as_deref());
    let held = user.record.step_up_required();
    // A held session of a user without MFA proves itself with the password.
    if held && !demo.mfa.is_enrolled(&user.user).await.map_err(mfa_err)? {
        return Ok(
            Redirect::to(&format!("/reauth?return_to={}", query_value(return_to))).into_response(),
        );
    }
    let ctx = demo.ctx(&user.session, true).await?;
    Ok(page(view::step_up(&ctx, return_to, false, held)))
}

/// A code form with where to go next. No `Debug`: it holds a code.
#[derive(Deserialize)]
struct StepUpForm {
    code: String,
    return_to: Option<String>,
}

/// `POST /step-up`: a TOTP or recovery code raises the session to AAL 2 under
/// a new token (the cookie changes; the old token is dead), bound to this
/// device from now on: this is also what releases a session held after its
/// network or browser changed.
async fn step_up(
    State(demo): State<Demo>,
    user: CurrentUser,
    ClientDevice(device): ClientDevice,
    Form(form): Form<StepUpForm>,
) -> Result<Response, DemoError> {
    let return_to = local_path(form.return_to.as_deref()).to_owned();
    match demo.mfa.verify(&user.user, form.code.trim()).await {
        Ok(_) => {
            let rec = user
                .session
                .regenerate(Privilege {
                    aal: Some(sessionary_mfa::STEP_UP_AAL),
                    reauthenticated: true,
                    roles: None,
                    device: Some(device),
                })
                .await?;
            if user.record.step_up_required() {
                // Proving oneself from a new network or browser is a sign-in
                // from there: a device the user has not used before is alerted.
                demo.alerts.sign_in(&rec).await;
            }
            Ok(Redirect::to(&return_to).into_response())
        }
        Err(e) if code_refused(&e) || matches!(e, sessionary_mfa::Error::NotEnrolled) => {
            let ctx = demo.ctx(&user.session, true).await?;
            Ok(page_with(
                StatusCode::FORBIDDEN,
                view::step_up(&ctx, &return_to, true, user.record.step_up_required()),
            ))
        }
        Err(e) => Err(mfa_err(e)),
    }
}

/// Whether a held session must use `/step-up` (its user has MFA) rather than
/// the password.
async fn needs_mfa(demo: &Demo, user: &CurrentUser) -> Result<bool, DemoError> {
    Ok(
        user.record.step_up_required()
            && demo.mfa.is_enrolled(&user.user).await.map_err(mfa_err)?,
    )
}

async fn reauth_page(
    State(demo): State<Demo>,
    user: CurrentUser,
    Query(q): Query<ReturnTo>,
) -> Result<Response, DemoError> {
    let return_to = local_path(q.return_to.as_deref());
    if needs_mfa(&demo, &user).await? {
        return Ok(
            Redirect::to(&format!("/step-up?return_to={}", query_value(return_to))).into_response(),
        );
    }
    let ctx = demo.ctx(&user.session, true).await?;
    Ok(page(view::reauth(
        &ctx,
        return_to,
        false,
        user.record.step_up_required(),
    )))
}

/// The re-authentication form. No `Debug`: it holds a password.
#[derive(Deserialize)]
struct ReauthForm {
    password: String,
    return_to: Option<String>,
}

/// `POST /reauth`: the password again opens the privileged window (a new
/// token, `auth_time` now, bound to this device). For a session held after
/// its network or browser changed, the password releases it only when the
/// user has no MFA (AAL 1); with MFA it takes a code (`/step-up`).
async fn reauth(
    State(demo): State<Demo>,
    user: CurrentUser,
    ClientDevice(device): ClientDevice,
    Form(form): Form<ReauthForm>,
) -> Result<Response, DemoError> {
    let return_to = local_path(form.return_to.as_deref()).to_owned();
    if needs_mfa(&demo, &user).await? {
        return Ok(
            Redirect::to(&format!("/step-up?return_to={}", query_value(&return_to)))
                .into_response(),
        );
    }
    let held = user.record.step_up_required();
    let name = user.user.as_str().to_owned();
    if demo.check_password(name, form.password).await?.is_none() {
        let ctx = demo.ctx(&user.session, true).await?;
        return Ok(page_with(
            StatusCode::UNAUTHORIZED,
            view::reauth(&ctx, &return_to, true, held),
        ));
    }
    let rec = user
        .session
        .regenerate(Privilege {
            reauthenticated: true,
            aal: held.then_some(1),
            device: Some(device),
            ..Privilege::default()
        })
        .await?;
    if held {
        demo.alerts.sign_in(&rec).await;
    }
    Ok(Redirect::to(&return_to).into_response())
}

async fn not_found() -> DemoError {
    DemoError::Page(StatusCode::NOT_FOUND, "not-found", "error.not_found")
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    )
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/app.css"))
}

async fn texts() -> Response {
    asset("application/json", i18n::table_json())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Turns failures answered to a browser into pages a person understands:
/// CSRF refusals, missing roles, unknown pages, bad forms, store trouble.
/// `401`s are left to the session layer, which redirects them to the expired
/// or sign-in page; JSON callers keep their problem documents.
async fn error_pages(State(demo): State<Demo>, req: Request, next: Next) -> Response {
    let html = sessionary_axum::accepts_html(req.headers());
    let session = req.extensions().get::<Session>().cloned();
    let res = next.run(req).await;
    let status = res.status();
    if !html
        || !(status.is_client_error() || status.is_server_error())
        || status == StatusCode::UNAUTHORIZED
    {
        return res;
    }
    let is_html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if let Some(q) = res.extensions().get::<sessionary_axum::QuotaExceeded>() {
        let ctx = match &session {
            Some(s) => demo.ctx(s, false).await.unwrap_or_default(),
            None => Ctx::default(),
        };
        let mut page = page_with(status, downloads::quota_page(&ctx, &q.0));
        page.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(v) = res.headers().get(header::RETRY_AFTER) {
            page.headers_mut().insert(header::RETRY_AFTER, v.clone());
        }
        return page;
    }
    let (problem, key) = if let Some(p) = res.extensions().get::<ErrorPage>() {
        (p.problem, p.key)
    } else if res.extensions().get::<CsrfRejection>().is_some() {
        ("csrf-failed", "error.csrf")
    } else if is_html {
        return res;
    } else {
        match status {
            StatusCode::FORBIDDEN => ("forbidden", "error.forbidden"),
            StatusCode::NOT_FOUND => ("not-found", "error.not_found"),
            StatusCode::TOO_MANY_REQUESTS => ("session-limit", "error.limit"),
            StatusCode::SERVICE_UNAVAILABLE => ("store-unavailable", "error.unavailable"),
            s if s.is_server_error() => ("internal", "error.internal"),
            _ => ("invalid-request", "error.bad_request"),
        }
    };
    let ctx = match &session {
        // A page with the visitor's language; without forms it creates nothing.
        Some(s) => demo.ctx(s, false).await.unwrap_or_default(),
        None => Ctx::default(),
    };
    let mut page = page_with(status, view::error(&ctx, status.as_u16(), problem, key));
    page.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    page
}

/// The demo's content security policy: no inline script, no framing, and
/// forms that post to the demo itself, or end (through redirects) at one of
/// the registered OpenID Connect clients' redirect origins.
fn content_security_policy(oidc: Option<&crate::oidc::Provider>) -> HeaderValue {
    let mut form_action = String::from("'self'");
    for origin in oidc
        .map(crate::oidc::Provider::redirect_origins)
        .unwrap_or_default()
    {
        // Origins come from parsed URLs: no spaces, quotes or semicolons.
        form_action.push(' ');
        form_action.push_str(&origin);
    }
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    HeaderValue::from_str(&csp).unwrap_or_else(|_| {
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
    })
}

/// Headers every demo response carries: `csp` (see [`content_security_policy`]),
/// no framing, no sniffing, same-origin referrers, and no caching of personal pages.
fn security_headers(mut res: Response, csp: HeaderValue) -> Response {
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

/// Puts the verified session's public id on the request span (`sid`), as the
/// API's handlers do; never the token or its hash.
async fn record_sid(
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    if let Some(rec) = req
        .extensions()
        .get::<sessionary_axum::Session>()
        .and_then(sessionary_axum::Session::record)
    {
        tracing::Span::current().record("sid", tracing::field::display(rec.id));
    }
    next.run(req).await
}
