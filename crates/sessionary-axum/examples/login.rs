//! Sign-in with remember-me, CSRF tokens, roles and a cart that survives sign-in:
//! `cargo run -p sessionary-axum --example login`, then open http://127.0.0.1:3000
//! and sign in as `alice`/`alice` (role `user`) or `admin`/`admin` (role `admin`).
//!
//! Pages are plain HTML strings. Nothing the visitor typed is ever put into a page
//! (names and items come from the constants below); a real app escapes such text or
//! uses a template engine that does.

use std::sync::Arc;

use axum::extract::Form;
use axum::http::{StatusCode, uri::Scheme};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Router, routing::get, routing::post};
use serde::Deserialize;
use sessionary_axum::csrf::{CsrfConfig, CsrfLayer};
use sessionary_axum::{Admin, CurrentUser, RequireRole, Session, SessionConfig, SessionLayer};
use sessionary_axum::{SessionRejection, session_routes};
use sessionary_core::{MemoryStore, NewSession, SessionManager, UserId};
use subtle::ConstantTimeEq as _;

/// DEMO ONLY: name, password, role. A real app stores a slow password hash per user
/// (argon2id, scrypt, bcrypt) and verifies the submitted password against it.
const USERS: [(&str, &str, &str); 2] = [("alice", "alice", "user"), ("admin", "admin", "admin")];

/// What the shop sells; the cart takes nothing else.
const CATALOGUE: [&str; 2] = ["tea", "coffee"];

/// The role of `name` if `password` is right, compared in constant time.
fn check_password(name: &str, password: &str) -> Option<&'static str> {
    USERS
        .iter()
        .find(|(n, _, _)| *n == name)
        .filter(|(_, p, _)| bool::from(p.as_bytes().ct_eq(password.as_bytes())))
        .map(|(_, _, role)| *role)
}

/// The hidden field `CsrfLayer` looks for in url-encoded form posts.
fn csrf_field(token: &str) -> String {
    format!(r#"<input type="hidden" name="csrf_token" value="{token}">"#)
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>{title}</title><h1>{title}</h1>\n{body}\n"
    ))
}

fn cart_html(session: &Session) -> Result<String, SessionRejection> {
    let cart: Vec<String> = session.get("cart")?.unwrap_or_default();
    let (n, items) = (cart.len(), cart.join(", "));
    Ok(format!("<p>Cart: {n} item(s): {items}</p>"))
}

fn logout_form(token: &str) -> String {
    let field = csrf_field(token);
    format!(r#"<form method="post" action="/logout">{field}<button>Sign out</button></form>"#)
}

/// `GET /`: the cart, and the sign-in form or who is signed in.
async fn home(session: Session) -> Result<Html<String>, SessionRejection> {
    render_home(&session, "").await
}

/// The shop page, with `message` (HTML) on top.
async fn render_home(session: &Session, message: &str) -> Result<Html<String>, SessionRejection> {
    let token = session.csrf_token().await?;
    let field = csrf_field(&token); // One token serves every form of the page.
    let buttons: String = CATALOGUE
        .iter()
        .map(|item| format!(r#"<button name="item" value="{item}">Add {item}</button> "#))
        .collect();
    let who = match session.user() {
        Some(user) => format!(
            r#"<p>Signed in as {user}: <a href="/account">account</a>, <a href="/admin">admin</a></p>{}"#,
            logout_form(&token)
        ),
        None => format!(
            r#"<form method="post" action="/login">{field}
<label>User <input name="username" autocomplete="username"></label>
<label>Password <input type="password" name="password" autocomplete="current-password"></label>
<label><input type="checkbox" name="remember"> Remember me</label> <button>Sign in</button></form>"#
        ),
    };
    let cart = cart_html(session)?;
    let body = format!(
        r#"{message}{cart}<form method="post" action="/cart">{field}{buttons}</form>{who}"#
    );
    Ok(page("Shop", &body))
}

#[derive(Deserialize)]
struct AddForm {
    item: String,
}

/// `POST /cart`: works signed in or not (the anonymous cart moves along at sign-in).
async fn add_to_cart(
    session: Session,
    Form(form): Form<AddForm>,
) -> Result<Response, SessionRejection> {
    let Some(item) = CATALOGUE.into_iter().find(|i| *i == form.item) else {
        return Ok(StatusCode::BAD_REQUEST.into_response());
    };
    // `update` retries on concurrent changes (two tabs), so no item is lost.
    session
        .update(|data| {
            let cart = data.entry("cart").or_insert_with(|| serde_json::json!([]));
            if let Some(items) = cart.as_array_mut() {
                items.push(item.into());
            }
        })
        .await?;
    Ok(Redirect::to("/").into_response())
}

/// The sign-in form. No `Debug` on purpose: a password must never reach a log.
#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    /// `Some("on")` when the checkbox is ticked; browsers omit it otherwise.
    remember: Option<String>,
}

/// `POST /login`.
async fn login(
    session: Session,
    Form(form): Form<LoginForm>,
) -> Result<Response, SessionRejection> {
    let Some(role) = check_password(&form.username, &form.password) else {
        // One answer for an unknown user and a wrong password.
        let page = render_home(&session, "<p>Unknown user or wrong password.</p>").await?;
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    };
    // A new session with a new token: the old token is dead, and the anonymous
    // session's data (the cart) is carried over by the default merge hook. Remember-me
    // makes the cookie persistent where the role's policy allows it (the default
    // `admin` policy does not: 10 min idle, 8 h absolute).
    let new = NewSession::user(UserId::new(form.username)?)
        .with_roles([role])
        .with_remember(form.remember.is_some());
    session.login(new).await?;
    Ok(Redirect::to("/account").into_response())
}

/// Sends the page to the expired page when the session runs out or is ended
/// elsewhere (the `session_routes()` event stream).
const EXPIRY_SCRIPT: &str = r#"<script>const events = new EventSource("/session/events");
for (const e of ["expired", "revoked"]) events.addEventListener(e, () => location.assign("/session-expired"));</script>"#;

/// `GET /account`: signed-in users only (anyone else gets a `401` problem).
async fn account(user: CurrentUser) -> Result<Html<String>, SessionRejection> {
    let token = user.session.csrf_token().await?;
    let r = &user.record;
    let body = format!(
        r#"<p>{} (roles: {}, remember-me: {}); the session ends at {} unless you stay active.</p>
{}<p><a href="/">Shop</a>, <a href="/admin">admin</a>, <a href="/session/status">status (JSON)</a></p>{}{EXPIRY_SCRIPT}"#,
        user.user,
        r.roles.join(", "),
        r.remember,
        r.expires_at().to_rfc3339(),
        cart_html(&user.session)?,
        logout_form(&token),
    );
    Ok(page("Your account", &body))
}

/// `GET /admin`: role `admin` only (others signed in get a `403` problem).
async fn admin(
    RequireRole(admin, ..): RequireRole<Admin>,
) -> Result<Html<String>, SessionRejection> {
    // The manager behind the layer serves "manage sessions" pages and the like.
    let n = admin.session.manager().list(&admin.user).await?.len();
    let body = format!(
        "<p>Welcome, {}: you have {n} live session(s).</p>",
        admin.user
    );
    Ok(page("Admin", &body))
}

/// `POST /logout`: ends the session server-side (the cart goes with it) and
/// removes the cookie.
async fn logout(session: Session) -> Result<Redirect, SessionRejection> {
    session.logout().await?;
    Ok(Redirect::to("/"))
}

/// Where the layer sends HTML requests whose session ended (`303` with `?reason=`
/// and `return_to=`; check `return_to` before redirecting there).
async fn expired() -> Html<String> {
    let body = r#"<p>Your session ended. <a href="/">Sign in again</a>.</p>"#;
    page("Session ended", body)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Sessions in memory, data sealed with a fresh random key: all gone on restart.
    let manager = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;
    // DANGEROUS, local development only: plain HTTP needs a cookie without `Secure`
    // (and so without the `__Host-` prefix), and the CSRF origin check must take
    // this site's own origin as `http://<Host>`. Use the defaults behind HTTPS.
    let config = SessionConfig::new().dangerous().allow_insecure_http();
    let csrf = CsrfConfig::new().with_scheme(Scheme::HTTP);
    let app = Router::new()
        .route("/", get(home))
        .route("/cart", post(add_to_cart))
        .route("/login", post(login))
        .route("/account", get(account))
        .route("/admin", get(admin))
        .route("/logout", post(logout))
        .route("/session-expired", get(expired))
        // `/session/status`, `/session/extend` (a POST: needs the CSRF token too)
        // and `/session/events`.
        .merge(session_routes())
        // The last `.layer` is the outermost: the session layer runs first and
        // hands the CSRF layer the session's secret.
        .layer(CsrfLayer::new(csrf))
        .layer(SessionLayer::new(manager, config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000");
    axum::serve(listener, app).await?;
    Ok(())
}
