//! The demo shop through `app_with_demo(...).oneshot(...)`: each "device" keeps
//! its own cookie; time is moved by a `MockClock`. The browser suite
//! (`tests/browser.rs`) drives the same pages in Chromium.

// Test helpers outside #[test] fns: a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use parking_lot::Mutex;
use sessionary_core::{AuditLog, MemoryStore, MockClock, SessionManager, SessionStore, UserId};
use sessionary_server::demo::{DemoOptions, DemoUsers};
use sessionary_server::{ApiKeys, AppState, app_with_demo};
use tower::ServiceExt as _;

const ALICE_PW: &str = "alice-password";
const ADMIN_PW: &str = "admin-password";
const CHROME_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const FIREFOX_UA: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0";

/// Hashing is slow on purpose: once per test binary.
fn users() -> DemoUsers {
    static USERS: OnceLock<DemoUsers> = OnceLock::new();
    USERS
        .get_or_init(|| DemoUsers::from_passwords(ALICE_PW, ADMIN_PW).unwrap())
        .clone()
}

struct Shop {
    app: Router,
    clock: MockClock,
    manager: SessionManager,
}

fn shop() -> Shop {
    shop_with(false)
}

/// With an audit log on the manager and in the state, as `serve` runs.
fn audited_shop() -> Shop {
    shop_with(true)
}

/// With the service's default policy (5 downloads per session), as `serve` runs.
fn quota_shop() -> Shop {
    shop_with_policy(false, sessionary_server::config::default_policy())
}

fn shop_with(audited: bool) -> Shop {
    shop_with_policy(audited, sessionary_core::Policy::default())
}

fn shop_with_policy(audited: bool, policy: sessionary_core::Policy) -> Shop {
    let clock = MockClock::default();
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let mut builder = SessionManager::builder(Arc::clone(&store))
        .with_clock(Arc::new(clock.clone()))
        .with_policy(policy);
    let audit = audited.then(|| AuditLog::spawn(Arc::clone(&store), Arc::new(clock.clone())));
    if let Some(a) = &audit {
        builder = builder.with_event_sink(a.clone());
    }
    let manager = builder.build().unwrap();
    let mut state = AppState::new(manager.clone(), ApiKeys::new(["k".repeat(40)]));
    if let Some(a) = audit {
        state = state.with_audit(a);
    }
    Shop {
        app: app_with_demo(state, DemoOptions::new(users())),
        clock,
        manager,
    }
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The first `name="csrf_token" value="..."` of the page.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf_token\" value=\"")
            .expect("a CSRF field")
            + 25;
        self.body[at..].split('"').next().unwrap().to_owned()
    }

    fn cart_count(&self) -> usize {
        let at = self.body.find("id=\"cart-count\">").expect("a cart count") + 16;
        self.body[at..].split('<').next().unwrap().parse().unwrap()
    }

    #[track_caller]
    fn error_page(&self, status: u16, problem: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        let tag = format!(r#"<main id="error" data-status="{status}" data-problem="{problem}">"#);
        assert!(self.body.contains(&tag), "{tag} in {}", self.body);
        assert!(
            self.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
}

/// A browser: one cookie jar (the session cookie), sends `Accept: text/html`.
#[derive(Default)]
struct Device {
    cookie: Mutex<Option<String>>,
    /// Another browser than the default Chrome on Linux.
    ua: Mutex<Option<&'static str>>,
}

impl Device {
    fn cookie(&self) -> Option<String> {
        self.cookie.lock().clone()
    }

    async fn send(&self, shop: &Shop, req: http::request::Builder, body: Body) -> Page {
        let mut req = req
            .header(header::ACCEPT, "text/html")
            .header(header::USER_AGENT, self.ua.lock().unwrap_or(CHROME_UA))
            .header("sec-fetch-site", "same-origin");
        if let Some(c) = self.cookie() {
            req = req.header(header::COOKIE, format!("session={c}"));
        }
        let res = shop
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        for v in headers.get_all(header::SET_COOKIE) {
            let v = v.to_str().unwrap();
            let value = v
                .split(';')
                .next()
                .unwrap()
                .strip_prefix("session=")
                .unwrap();
            *self.cookie.lock() = (!value.is_empty()).then(|| value.to_owned());
        }
        let body = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec())
            .unwrap();
        Page {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, shop: &Shop, path: &str) -> Page {
        self.send(shop, Request::get(path), Body::empty()).await
    }

    async fn post(&self, shop: &Shop, path: &str, form: &[(&str, &str)]) -> Page {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        self.send(shop, req, Body::from(body)).await
    }

    /// Posts a form with the CSRF token of a fresh render of `/`.
    async fn post_with_token(&self, shop: &Shop, path: &str, form: &[(&str, &str)]) -> Page {
        let token = self.get(shop, "/").await.csrf();
        let mut form = form.to_vec();
        form.push(("csrf_token", &token));
        self.post(shop, path, &form).await
    }

    async fn sign_in(&self, shop: &Shop, user: &str, password: &str, remember: bool) -> Page {
        let token = self.get(shop, "/login").await.csrf();
        let mut form = vec![
            ("username", user),
            ("password", password),
            ("csrf_token", token.as_str()),
            ("return_to", "/"),
        ];
        if remember {
            form.push(("remember", "on"));
        }
        self.post(shop, "/login", &form).await
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn anonymous_cart_survives_sign_in_and_the_token_changes() {
    let shop = shop();
    let d = Device::default();
    let home = d.get(&shop, "/").await;
    assert_eq!(home.status, 200);
    assert_eq!(home.cart_count(), 0);
    let anonymous = d.cookie().expect("a form page issues an anonymous session");
    for product in ["tea", "mug"] {
        let r = d
            .post_with_token(&shop, "/cart/add", &[("product", product)])
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
    }
    assert_eq!(d.get(&shop, "/").await.cart_count(), 2);
    assert_eq!(
        d.cookie().as_deref(),
        Some(anonymous.as_str()),
        "adding keeps the token"
    );

    let r = d.sign_in(&shop, "alice", "wrong", false).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("id=\"login-error\""));
    assert_eq!(
        d.cookie().as_deref(),
        Some(anonymous.as_str()),
        "a refused sign-in changes nothing"
    );

    let r = d.sign_in(&shop, "alice", ALICE_PW, false).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/");
    let signed_in = d.cookie().unwrap();
    assert_ne!(signed_in, anonymous, "sign-in issues a new token");
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        !cookie.contains("Max-Age"),
        "no remember-me: a browser-session cookie: {cookie}"
    );
    let home = d.get(&shop, "/").await;
    assert_eq!(home.cart_count(), 2, "the cart moved along");
    assert!(home.body.contains("<strong id=\"whoami\">alice</strong>"));

    // The anonymous token is dead.
    let old = Device::default();
    *old.cookie.lock() = Some(anonymous);
    let r = old.get(&shop, "/account/sessions").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.location()
            .starts_with("/session-expired?reason=regenerated"),
        "{}",
        r.location()
    );
}

#[tokio::test]
async fn remember_me_gives_a_persistent_cookie_and_admins_cannot_have_one() {
    let shop = shop();
    let d = Device::default();
    let r = d.sign_in(&shop, "alice", ALICE_PW, true).await;
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("Max-Age="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let a = Device::default();
    let r = a.sign_in(&shop, "admin", ADMIN_PW, true).await;
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        !cookie.contains("Max-Age="),
        "the admin policy refuses remember-me: {cookie}"
    );
}

#[tokio::test]
async fn forms_without_their_csrf_token_get_an_error_page_and_change_nothing() {
    let shop = shop();
    let d = Device::default();
    d.post_with_token(&shop, "/cart/add", &[("product", "tea")])
        .await;
    let r = d.post(&shop, "/cart/add", &[("product", "coffee")]).await;
    r.error_page(403, "csrf-failed");
    let r = d
        .post(
            &shop,
            "/cart/add",
            &[("product", "coffee"), ("csrf_token", "forged")],
        )
        .await;
    r.error_page(403, "csrf-failed");
    assert_eq!(d.get(&shop, "/").await.cart_count(), 1);
    // Cross-site, even with a valid token.
    let token = d.get(&shop, "/").await.csrf();
    let req = Request::post("/cart/add")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "text/html")
        .header("sec-fetch-site", "cross-site")
        .header(header::COOKIE, format!("session={}", d.cookie().unwrap()));
    let res = shop
        .app
        .clone()
        .oneshot(
            req.body(Body::from(format!("product=mug&csrf_token={token}")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(d.get(&shop, "/").await.cart_count(), 1);
    // Unknown products are a bad request page.
    d.post_with_token(&shop, "/cart/add", &[("product", "caviar")])
        .await
        .error_page(400, "invalid-request");
}

#[tokio::test]
async fn the_admin_area_refuses_users_and_admits_admins() {
    let shop = shop();
    let anon = Device::default();
    let r = anon.get(&shop, "/admin").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/login?return_to=/admin");

    let alice = Device::default();
    alice.sign_in(&shop, "alice", ALICE_PW, false).await;
    alice
        .get(&shop, "/admin")
        .await
        .error_page(403, "forbidden");
    assert!(
        !alice
            .get(&shop, "/")
            .await
            .body
            .contains("id=\"nav-admin\"")
    );

    let admin = Device::default();
    admin.sign_in(&shop, "admin", ADMIN_PW, false).await;
    let r = admin.get(&shop, "/admin").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<main id=\"admin\">"));
    assert!(
        r.body.contains("10m without activity"),
        "the admin policy is shown"
    );
    assert!(
        r.body.contains("data-user=\"alice\""),
        "alice's session is listed"
    );

    // The admin area is a SameSite=Strict group: a cross-site link arrives signed out.
    let req = Request::get("/admin")
        .header(header::ACCEPT, "text/html")
        .header("sec-fetch-site", "cross-site")
        .header(
            header::COOKIE,
            format!("session={}", admin.cookie().unwrap()),
        );
    let res = shop
        .app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[header::LOCATION], "/login?return_to=/admin");
    // ... while the shop stays Lax: the same link to `/` is signed in.
    let req = Request::get("/")
        .header(header::ACCEPT, "text/html")
        .header("sec-fetch-site", "cross-site")
        .header(
            header::COOKIE,
            format!("session={}", admin.cookie().unwrap()),
        );
    let res = shop
        .app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("id=\"whoami\">admin<"));

    // The admin revokes alice's session.
    let id = shop
        .manager
        .list(&UserId::new("alice").unwrap())
        .await
        .unwrap()[0]
        .id
        .to_string();
    let r = admin
        .post_with_token(&shop, "/admin/sessions/end", &[("id", &id)])
        .await;
    assert_eq!(r.location(), "/admin");
    let r = alice.get(&shop, "/account/sessions").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.location()
            .starts_with("/session-expired?reason=revoked_by_admin")
    );
}

#[tokio::test]
async fn manage_sessions_lists_devices_and_ends_them() {
    let shop = shop();
    let (a, b, c) = (Device::default(), Device::default(), Device::default());
    for d in [&a, &b, &c] {
        d.sign_in(&shop, "alice", ALICE_PW, false).await;
        // Oldest first in the list: A, B, C.
        shop.clock.advance(Duration::from_secs(1));
    }
    let page = b.get(&shop, "/account/sessions").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body.matches("<tr class=\"session").count(), 3);
    assert_eq!(
        page.body.matches("<tr class=\"session current\"").count(),
        1
    );
    assert!(page.body.contains("Chrome on Linux"));
    assert!(page.body.contains("This device"));

    // B ends A.
    let a_id = shop
        .manager
        .list(&UserId::new("alice").unwrap())
        .await
        .unwrap()[0]
        .id
        .to_string();
    let r = b
        .post_with_token(&shop, "/account/sessions/end", &[("id", &a_id)])
        .await;
    assert_eq!(r.location(), "/account/sessions");
    let r = a.get(&shop, "/account/sessions").await;
    assert_eq!(
        r.location(),
        "/session-expired?reason=revoked_by_user&return_to=/account/sessions"
    );
    // B ends the others (C); B stays.
    b.post_with_token(&shop, "/account/sessions/end-others", &[])
        .await;
    assert!(
        c.get(&shop, "/account/sessions")
            .await
            .location()
            .contains("revoked_by_user")
    );
    let page = b.get(&shop, "/account/sessions").await;
    assert_eq!(page.body.matches("<tr class=\"session").count(), 1);
    // Sign out everywhere: B's cookie goes too.
    let r = b
        .post_with_token(&shop, "/account/sessions/end-all", &[])
        .await;
    assert_eq!(r.location(), "/");
    assert!(r.headers.contains_key("clear-site-data"));
    assert!(
        shop.manager
            .list(&UserId::new("alice").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    // Anonymous visitors are sent to sign in.
    let r = Device::default().get(&shop, "/account/sessions").await;
    assert_eq!(r.location(), "/login?return_to=/account/sessions");
}

#[tokio::test]
async fn idle_expiry_leads_to_the_expired_page_and_reconnecting_restores_the_cart() {
    let shop = shop();
    let d = Device::default();
    d.sign_in(&shop, "alice", ALICE_PW, false).await;
    d.post_with_token(&shop, "/cart/add", &[("product", "coffee")])
        .await;
    shop.clock.advance(Duration::from_secs(31 * 60));
    let r = d.get(&shop, "/account/sessions").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.location(),
        "/session-expired?reason=expired_idle&return_to=/account/sessions"
    );
    let page = d.get(&shop, r.location()).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains(r#"<main id="expired" data-reason="expired_idle">"#)
    );
    assert!(page.body.contains("You were inactive"));
    assert!(
        page.body
            .contains(r#"name="return_to" value="/account/sessions""#)
    );
    let token = page.csrf();
    let r = d
        .post(
            &shop,
            "/login",
            &[
                ("username", "alice"),
                ("password", ALICE_PW),
                ("csrf_token", &token),
                ("return_to", "/account/sessions"),
            ],
        )
        .await;
    assert_eq!(r.location(), "/account/sessions", "back where the user was");
    assert_eq!(
        d.get(&shop, "/").await.cart_count(),
        1,
        "the cart came back"
    );
}

#[tokio::test]
async fn return_to_only_ever_names_a_local_path() {
    let shop = shop();
    for evil in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let d = Device::default();
        let token = d.get(&shop, "/login").await.csrf();
        let r = d
            .post(
                &shop,
                "/login",
                &[
                    ("username", "alice"),
                    ("password", ALICE_PW),
                    ("csrf_token", &token),
                    ("return_to", evil),
                ],
            )
            .await;
        assert_eq!(r.location(), "/", "{evil}");
        let page = Device::default()
            .get(
                &shop,
                &format!(
                    "/session-expired?reason=expired_idle&return_to={}",
                    urlencode(evil)
                ),
            )
            .await;
        assert!(
            page.body.contains(r#"name="return_to" value="/""#),
            "{evil}"
        );
    }
    // Unknown reasons read as "other"; markup in the query is never echoed.
    let page = Device::default()
        .get(&shop, "/session-expired?reason=%3Cscript%3E")
        .await;
    assert!(page.body.contains(r#"data-reason="other""#));
    assert!(!page.body.contains("<script>"));
}

#[tokio::test]
async fn preferences_follow_the_user_to_other_devices() {
    let shop = shop();
    let (a, b) = (Device::default(), Device::default());
    a.sign_in(&shop, "alice", ALICE_PW, false).await;
    b.sign_in(&shop, "alice", ALICE_PW, false).await;
    let mut events = shop.manager.subscribe();
    let token = a.get(&shop, "/").await.csrf();
    let json_post = |body: &'static str, token: Option<&str>| {
        let mut req = Request::post("/preferences")
            .header(header::CONTENT_TYPE, "application/json")
            .header("sec-fetch-site", "same-origin")
            .header(header::COOKIE, format!("session={}", a.cookie().unwrap()));
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        shop.app
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
    };
    let res = json_post(r#"{"theme":"dark"}"#, None).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "no CSRF header");
    let res = json_post(r#"{"theme":"purple"}"#, Some(&token))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = json_post(r#"{"theme":"dark","lang":"fr"}"#, Some(&token))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // Every device of the user hears of it (the pages' event streams listen).
    let e = events.recv().await.unwrap();
    assert!(matches!(
        e.kind,
        sessionary_core::EventKind::UserDataChanged
    ));
    let page = b.get(&shop, "/").await;
    assert!(
        page.body
            .starts_with(r#"<!DOCTYPE html><html lang="fr" data-theme="dark""#),
        "{}",
        &page.body[..120]
    );
    assert!(page.body.contains("Boutique"));
    let req = Request::get("/preferences")
        .header(header::COOKIE, format!("session={}", b.cookie().unwrap()));
    let res = shop
        .app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"lang":"fr","theme":"dark"}"#);
}

#[tokio::test]
async fn unknown_pages_are_pages_and_the_api_keeps_problems() {
    let shop = shop();
    Device::default()
        .get(&shop, "/no/such/page")
        .await
        .error_page(404, "not-found");
    let res = shop
        .app
        .clone()
        .oneshot(Request::get("/v1/nothing").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    // Security headers on every page.
    let page = Device::default().get(&shop, "/").await;
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(!page.body.contains("<script>"), "no inline script");
}

/// The text between `start` and the next `"`/`<` after it.
fn between<'a>(body: &'a str, start: &str, end: char) -> &'a str {
    let at = body
        .find(start)
        .unwrap_or_else(|| panic!("{start} in {body}"))
        + start.len();
    body[at..].split(end).next().unwrap()
}

fn code_now(shop: &Shop, secret: &str) -> String {
    use sessionary_core::Clock as _;
    sessionary_mfa::testing::code_at(secret, shop.clock.now()).unwrap()
}

#[tokio::test]
async fn two_step_verification_guards_the_admin_area() {
    let shop = shop();
    let admin = Device::default();
    admin.sign_in(&shop, "admin", ADMIN_PW, false).await;
    let page = admin.get(&shop, "/account/security").await;
    assert!(page.body.contains(r#"data-mfa="off""#));
    assert!(page.body.contains(r#"<strong id="aal">1</strong>"#));

    // Enrol: QR code, key, ten recovery codes; confirm with a first code.
    let page = admin
        .post_with_token(&shop, "/account/security/enrol", &[])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"src="data:image/svg+xml;base64,"#));
    assert_eq!(page.body.matches("<li><code>").count(), 10);
    let secret = between(&page.body, r#"<code id="mfa-secret">"#, '<').to_owned();
    let token = page.csrf();
    let r = admin
        .post(
            &shop,
            "/account/security/confirm",
            &[
                ("secret", &secret),
                ("code", "000000"),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("mfa-error"));
    let code = code_now(&shop, &secret);
    let r = admin
        .post(
            &shop,
            "/account/security/confirm",
            &[
                ("secret", &secret),
                ("code", &code),
                ("csrf_token", &r.csrf()),
            ],
        )
        .await;
    assert_eq!(r.location(), "/account/security?changed=mfa");
    assert!(
        admin
            .get(&shop, "/account/security")
            .await
            .body
            .contains(r#"data-mfa="on""#)
    );

    // The admin area now asks for a code; a good one raises the session to
    // AAL 2 under a new cookie.
    let r = admin.get(&shop, "/admin").await;
    assert_eq!(r.location(), "/step-up?return_to=/admin");
    shop.clock.advance(Duration::from_secs(30));
    let before = admin.cookie().unwrap();
    let page = admin.get(&shop, "/step-up?return_to=/admin").await;
    let r = admin
        .post(
            &shop,
            "/step-up",
            &[
                ("code", "111111"),
                ("return_to", "/admin"),
                ("csrf_token", &page.csrf()),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "a wrong code");
    let r = admin
        .post(
            &shop,
            "/step-up",
            &[
                ("code", &code_now(&shop, &secret)),
                ("return_to", "/admin"),
                ("csrf_token", &r.csrf()),
            ],
        )
        .await;
    assert_eq!(r.location(), "/admin");
    assert_ne!(
        admin.cookie().unwrap(),
        before,
        "step-up regenerates the token"
    );
    assert_eq!(admin.get(&shop, "/admin").await.status, 200);
    assert!(
        admin
            .get(&shop, "/account/security")
            .await
            .body
            .contains(r#"<strong id="aal">2</strong>"#)
    );
}

#[tokio::test]
async fn enrolling_after_the_privileged_window_asks_for_the_password_again() {
    let shop = shop();
    let d = Device::default();
    d.sign_in(&shop, "alice", ALICE_PW, false).await;
    shop.clock.advance(Duration::from_secs(6 * 60));
    let r = d
        .post_with_token(&shop, "/account/security/enrol", &[])
        .await;
    assert_eq!(r.location(), "/reauth?return_to=/account/security");
    let page = d.get(&shop, r.location()).await;
    let r = d
        .post(
            &shop,
            "/reauth",
            &[
                ("password", "wrong"),
                ("return_to", "/account/security"),
                ("csrf_token", &page.csrf()),
            ],
        )
        .await;
    assert_eq!(r.status, 401);
    let r = d
        .post(
            &shop,
            "/reauth",
            &[
                ("password", ALICE_PW),
                ("return_to", "/account/security"),
                ("csrf_token", &r.csrf()),
            ],
        )
        .await;
    assert_eq!(r.location(), "/account/security");
    let page = d
        .post_with_token(&shop, "/account/security/enrol", &[])
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"data-mfa="enrolling""#));
}

#[tokio::test]
async fn the_client_ip_comes_from_forwarding_headers_of_trusted_proxies_only() {
    use axum::extract::ConnectInfo;
    let clock = MockClock::default();
    let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
        .with_clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let state = AppState::new(manager.clone(), ApiKeys::new(["k".repeat(40)]));
    let proxies = sessionary_axum::TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
    let app = app_with_demo(
        state,
        DemoOptions::new(users()).with_trusted_proxies(proxies),
    );
    let sign_in_from = |peer: &str, xff: &str| {
        let app = app.clone();
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        let xff = xff.to_owned();
        async move {
            let get = |uri: &str, cookie: Option<&str>| {
                let mut r = Request::get(uri).header(header::ACCEPT, "text/html");
                if let Some(c) = cookie {
                    r = r.header(header::COOKIE, c);
                }
                let mut r = r.body(Body::empty()).unwrap();
                r.extensions_mut().insert(ConnectInfo(peer));
                r
            };
            let res = app.clone().oneshot(get("/login", None)).await.unwrap();
            let cookie = res.headers()[header::SET_COOKIE]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            let body =
                String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec())
                    .unwrap();
            let at = body.find("name=\"csrf_token\" value=\"").unwrap() + 25;
            let token = body[at..].split('"').next().unwrap().to_owned();
            let mut req = Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::ACCEPT, "text/html")
                .header("sec-fetch-site", "same-origin")
                .header("x-forwarded-for", xff)
                .header(header::COOKIE, &cookie)
                .body(Body::from(format!(
                    "username=alice&password={ALICE_PW}&csrf_token={token}"
                )))
                .unwrap();
            req.extensions_mut().insert(ConnectInfo(peer));
            let res = app.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::SEE_OTHER);
        }
    };
    sign_in_from("10.0.0.5:4000", "198.51.100.7").await;
    sign_in_from("203.0.113.9:4000", "198.51.100.8").await;
    let ips: Vec<String> = manager
        .list(&UserId::new("alice").unwrap())
        .await
        .unwrap()
        .iter()
        .map(|r| r.device.ip.unwrap().to_string())
        .collect();
    assert!(
        ips.contains(&"198.51.100.7".to_owned()),
        "behind a trusted proxy: {ips:?}"
    );
    assert!(
        ips.contains(&"203.0.113.9".to_owned()),
        "an untrusted peer's header is ignored: {ips:?}"
    );
    assert!(!ips.contains(&"198.51.100.8".to_owned()));
}

#[tokio::test]
async fn another_browser_holds_the_session_until_the_password_is_given_again() {
    let shop = shop();
    let d = Device::default();
    d.sign_in(&shop, "alice", ALICE_PW, false).await;
    assert_eq!(d.get(&shop, "/account/sessions").await.status, 200);
    // The same cookie from Firefox on Windows: held (the default policy steps
    // up on another browser or OS).
    *d.ua.lock() = Some(FIREFOX_UA);
    let r = d.get(&shop, "/account/sessions").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/step-up?return_to=/account/sessions");
    // Every page but the way out is closed, the shop included.
    assert_eq!(d.get(&shop, "/").await.status, StatusCode::SEE_OTHER);
    // Alice has no MFA: the step-up page sends her to the password.
    let r = d.get(&shop, "/step-up?return_to=/account/sessions").await;
    assert_eq!(r.location(), "/reauth?return_to=%2Faccount%2Fsessions");
    let page = d.get(&shop, r.location()).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"binding-notice\""), "{}", page.body);
    let csrf = page.csrf();
    let wrong = d
        .post(
            &shop,
            "/reauth",
            &[
                ("password", "nope"),
                ("return_to", "/account/sessions"),
                ("csrf_token", &csrf),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let before = d.cookie();
    let ok = d
        .post(
            &shop,
            "/reauth",
            &[
                ("password", ALICE_PW),
                ("return_to", "/account/sessions"),
                ("csrf_token", &csrf),
            ],
        )
        .await;
    assert_eq!(ok.location(), "/account/sessions");
    assert_ne!(d.cookie(), before, "a new token after re-authentication");
    let page = d.get(&shop, "/account/sessions").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Firefox on Windows 10"),
        "rebound to the new browser"
    );
}

#[tokio::test]
async fn changing_the_password_signs_out_the_other_sessions() {
    let shop = shop();
    let (a, b, c) = (Device::default(), Device::default(), Device::default());
    a.sign_in(&shop, "alice", ALICE_PW, false).await;
    b.sign_in(&shop, "alice", ALICE_PW, false).await;
    let page = a.get(&shop, "/account/security").await;
    let csrf = page.csrf();
    // Repeated wrong: refused, nothing changes.
    let r = a
        .post(
            &shop,
            "/account/security/password",
            &[
                ("new_password", "correct horse"),
                ("repeat_password", "correct hose"),
                ("end_others", "on"),
                ("csrf_token", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("id=\"password-error\""));
    assert_eq!(b.get(&shop, "/account/sessions").await.status, 200);
    // Fine: changed, and B is signed out.
    let r = a
        .post(
            &shop,
            "/account/security/password",
            &[
                ("new_password", "correct horse"),
                ("repeat_password", "correct horse"),
                ("end_others", "on"),
                ("csrf_token", &csrf),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("<span id=\"ended-others\">1</span>"),
        "{}",
        r.body
    );
    let r = b.get(&shop, "/account/sessions").await;
    assert!(
        r.location()
            .starts_with("/session-expired?reason=revoked_by_user")
    );
    assert_eq!(a.get(&shop, "/account/sessions").await.status, 200);
    // The new password signs in; the old one no longer does.
    assert_eq!(
        c.sign_in(&shop, "alice", ALICE_PW, false).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.sign_in(&shop, "alice", "correct horse", false)
            .await
            .status,
        StatusCode::SEE_OTHER
    );

    // Without the box: changed, and signing out the others is offered.
    let csrf = a.get(&shop, "/account/security").await.csrf();
    let r = a
        .post(
            &shop,
            "/account/security/password",
            &[
                ("new_password", "battery staple"),
                ("repeat_password", "battery staple"),
                ("csrf_token", &csrf),
            ],
        )
        .await;
    assert!(r.body.contains("id=\"offer-end-others\""), "{}", r.body);
    assert_eq!(c.get(&shop, "/account/sessions").await.status, 200);

    // Outside the privileged window (5 min after the sign-in): the password first.
    shop.clock.advance(Duration::from_secs(6 * 60));
    let csrf = a.get(&shop, "/account/security").await.csrf();
    let r = a
        .post(
            &shop,
            "/account/security/password",
            &[
                ("new_password", "third time"),
                ("repeat_password", "third time"),
                ("csrf_token", &csrf),
            ],
        )
        .await;
    assert_eq!(r.location(), "/reauth?return_to=/account/security");
}

#[tokio::test]
async fn the_outbox_shows_one_alert_for_a_new_device_and_none_for_a_known_one() {
    use sessionary_core::Clock as _;
    let shop = shop();
    let dir = std::env::temp_dir().join(format!(
        "sessionary-demo-outbox-{}-{}",
        std::process::id(),
        shop.clock.now().as_millis()
    ));
    let outbox = Arc::new(sessionary_notify::FileOutbox::new(dir.join("outbox.jsonl")));
    let alerts = Arc::new(sessionary_notify::NewDeviceAlerts::new(
        shop.manager.clone(),
        outbox.clone(),
    ));
    let state = AppState::new(shop.manager.clone(), ApiKeys::new(["k".repeat(40)]))
        .with_alerts(alerts)
        .with_outbox(outbox);
    let shop = Shop {
        app: app_with_demo(state, DemoOptions::new(users())),
        ..shop
    };
    let alerts_shown = |p: &Page| p.body.matches(r#"<tr class="alert""#).count();
    let laptop = Device::default();
    laptop.sign_in(&shop, "alice", ALICE_PW, false).await; // the first device: no alert
    let page = laptop.get(&shop, "/outbox").await;
    assert!(page.body.contains(r#"id="outbox-empty""#), "{}", page.body);

    let other = Device::default();
    *other.ua.lock() = Some(FIREFOX_UA);
    assert_eq!(
        other.sign_in(&shop, "alice", ALICE_PW, false).await.status,
        StatusCode::SEE_OTHER
    );
    let page = laptop.get(&shop, "/outbox").await;
    assert_eq!(alerts_shown(&page), 1, "{}", page.body);
    assert!(page.body.contains(r#"data-user="alice""#));
    assert!(
        page.body
            .contains("New sign-in to your account from Firefox on Windows 10")
    );

    // The same browser again (a fresh cookie jar), and the first one: still one.
    let again = Device::default();
    *again.ua.lock() = Some(FIREFOX_UA);
    again.sign_in(&shop, "alice", ALICE_PW, false).await;
    Device::default()
        .sign_in(&shop, "alice", ALICE_PW, false)
        .await;
    assert_eq!(alerts_shown(&laptop.get(&shop, "/outbox").await), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn security_activity_lists_the_users_sign_ins_and_sign_outs() {
    let shop = audited_shop();
    let d = Device::default();
    let page = d.sign_in(&shop, "alice", ALICE_PW, false).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    shop.clock.advance(Duration::from_secs(60));
    d.post_with_token(&shop, "/logout", &[]).await;
    shop.clock.advance(Duration::from_secs(60));
    d.sign_in(&shop, "alice", ALICE_PW, false).await;
    // Someone else's activity is not shown.
    Device::default()
        .sign_in(&shop, "admin", ADMIN_PW, false)
        .await;

    let page = d.get(&shop, "/account/activity").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"nav-activity\""));
    assert!(page.body.contains("Security activity"));
    let rows = |kind: &str| page.body.matches(&format!("data-kind=\"{kind}\"")).count();
    assert_eq!(rows("created"), 2, "{}", page.body);
    assert_eq!(rows("ended"), 1, "{}", page.body);
    assert!(page.body.contains("logged_out"));
    // Newest first, in UTC: the second sign-in at 00:02, the first at 00:00.
    let second = page.body.find("2026-01-01 00:02:00 UTC").unwrap();
    let sign_out = page.body.find("2026-01-01 00:01:00 UTC").unwrap();
    let first = page.body.find("2026-01-01 00:00:00 UTC").unwrap();
    assert!(second < sign_out && sign_out < first);
    // The current session is marked; the other user's session is absent.
    let id = shop
        .manager
        .list(&UserId::new("alice").unwrap())
        .await
        .unwrap()[0]
        .id
        .to_string();
    assert!(page.body.contains(&format!("title=\"{id}\"")));
    // This session: its sign-in and its new key (from the anonymous session).
    assert_eq!(page.body.matches("<tr class=\"entry current\"").count(), 2);
    assert_eq!(page.body.matches("class=\"this-session\"").count(), 2);
    let admin = shop
        .manager
        .list(&UserId::new("admin").unwrap())
        .await
        .unwrap()[0]
        .id
        .to_string();
    assert!(!page.body.contains(&admin));

    // Anonymous visitors are sent to sign in.
    let r = Device::default().get(&shop, "/account/activity").await;
    assert_eq!(r.location(), "/login?return_to=/account/activity");
}

#[tokio::test]
async fn your_activity_charts_time_per_page_from_beacons_and_next_views() {
    let shop = audited_shop();
    let d = Device::default();
    let page = d.sign_in(&shop, "alice", ALICE_PW, false).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let home = d.get(&shop, "/").await;
    shop.clock.advance(Duration::from_secs(3));
    // The `pagehide` beacon of app.js.
    let left = d
        .post(
            &shop,
            "/activity/leave",
            &[("path", "/"), ("csrf_token", &home.csrf())],
        )
        .await;
    assert_eq!(left.status, StatusCode::NO_CONTENT);
    shop.clock.advance(Duration::from_secs(1));
    d.get(&shop, "/account/sessions").await;
    shop.clock.advance(Duration::from_secs(5));
    d.get(&shop, "/account/outbox-typo")
        .await
        .error_page(404, "not-found");
    shop.clock.advance(Duration::from_secs(1));
    d.get(&shop, "/?q=1").await;
    shop.clock.advance(Duration::from_secs(2));

    let page = d.get(&shop, "/account/activity").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"activity-chart\""), "{}", page.body);
    // `/`: 3 s by the beacon, then the last view still open; the sessions
    // page: 6 s to the next view (the 404 is an error, not a view).
    assert!(
        page.body
            .contains("data-path=\"/\" data-ms=\"3000\" data-views=\"2\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("data-path=\"/account/sessions\" data-ms=\"6000\" data-views=\"1\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("/account/outbox-typo"));
    assert!(page.body.contains("data-views=\"3\""), "three views in all");
    assert!(
        page.body.contains("id=\"session-length\">12 s<"),
        "{}",
        page.body
    );

    // A beacon without the CSRF token is refused and records nothing.
    let forged = d.post(&shop, "/activity/leave", &[("path", "/")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_admin_console_filters_ends_a_users_sessions_and_shows_trail_chart_and_policy() {
    let shop = audited_shop();
    let phone = Device::default();
    phone.sign_in(&shop, "alice", ALICE_PW, false).await;
    shop.clock.advance(Duration::from_secs(20 * 60));
    let laptop = Device::default();
    laptop.sign_in(&shop, "alice", ALICE_PW, false).await;
    let admin = Device::default();
    admin.sign_in(&shop, "admin", ADMIN_PW, false).await;

    let r = admin.get(&shop, "/admin").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = |body: &str, user: &str| body.matches(&format!("data-user=\"{user}\"><td>")).count();
    assert_eq!(rows(&r.body, "alice"), 2, "{}", r.body);
    assert!(r.body.contains("data-shown=\"3\" data-total=\"3\""));
    // The chart: 3 signed-in sessions now, none a day ago.
    assert!(r.body.contains("id=\"active-chart\""), "{}", r.body);
    assert!(r.body.contains("data-now=\"3\""), "{}", r.body);
    // The policy in force, per role.
    assert!(r.body.contains("data-role=\"admin\""));
    assert!(r.body.contains("data-role=\"(anonymous)\""));

    // Filters: by user, by role, by age (alice's phone is 20 min old).
    let r = admin.get(&shop, "/admin?user=alice").await;
    assert!(r.body.contains("data-shown=\"2\""), "{}", r.body);
    let r = admin.get(&shop, "/admin?role=admin").await;
    assert!(r.body.contains("data-shown=\"1\""), "{}", r.body);
    assert_eq!(rows(&r.body, "admin"), 1);
    let r = admin.get(&shop, "/admin?min_age=10").await;
    assert!(r.body.contains("data-shown=\"1\""), "{}", r.body);
    let r = admin.get(&shop, "/admin?min_age=soon").await;
    r.error_page(400, "invalid-request");

    // The trail of a user: their sign-ins, nobody else's.
    let r = admin.get(&shop, "/admin/audit?user=alice").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body.matches("data-kind=\"created\"").count(),
        2,
        "{}",
        r.body
    );

    // End all of alice's sessions: both devices are signed out.
    let r = admin
        .post_with_token(&shop, "/admin/users/end", &[("user", "alice")])
        .await;
    assert_eq!(r.location(), "/admin");
    for d in [&phone, &laptop] {
        let r = d.get(&shop, "/account/sessions").await;
        assert!(
            r.location()
                .starts_with("/session-expired?reason=revoked_by_admin"),
            "{}",
            r.location()
        );
    }
    let r = admin.get(&shop, "/admin").await;
    assert_eq!(rows(&r.body, "alice"), 0);
    assert!(r.body.contains("data-now=\"1\""), "{}", r.body);
    // Only demo users, and never an unknown name.
    let r = admin
        .post_with_token(&shop, "/admin/users/end", &[("user", "mallory")])
        .await;
    r.error_page(400, "invalid-request");
    // alice may not use the console.
    let r = phone.get(&shop, "/admin").await;
    assert_ne!(r.status, 200);
}

#[tokio::test]
async fn history_personalizes_the_shop_and_anonymous_preferences_join_the_account() {
    let shop = shop();
    let a = Device::default();
    // Anonymous: a product viewed, then another; a theme chosen.
    assert_eq!(a.get(&shop, "/products/tea").await.status, 200);
    let page = a.get(&shop, "/products/mug").await;
    assert!(
        page.body
            .contains("<main id=\"product\" data-product=\"mug\">")
    );
    let req = Request::post("/preferences")
        .header(header::CONTENT_TYPE, "application/json")
        .header("sec-fetch-site", "same-origin")
        .header("x-csrf-token", page.csrf())
        .header(header::COOKIE, format!("session={}", a.cookie().unwrap()));
    let res = shop
        .app
        .clone()
        .oneshot(req.body(Body::from(r#"{"theme":"dark"}"#)).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let home = a.get(&shop, "/").await;
    let section = |body: &str, id: &str| -> Vec<String> {
        let Some(start) = body.find(&format!("<section id=\"{id}\">")) else {
            return Vec::new();
        };
        let end = start + body[start..].find("</section>").unwrap();
        body[start..end]
            .split("data-product=\"")
            .skip(1)
            .map(|s| s[..s.find('"').unwrap()].to_owned())
            .collect()
    };
    assert_eq!(section(&home.body, "recently-viewed"), ["mug", "tea"]);
    // The mug goes with tea and coffee: coffee (not seen yet) first.
    assert_eq!(section(&home.body, "recommended"), ["coffee", "tea"]);
    a.post_with_token(&shop, "/cart/add", &[("product", "coffee")])
        .await;
    let home = a.get(&shop, "/").await;
    // Coffee is in the cart now: no longer suggested.
    assert_eq!(section(&home.body, "recommended"), ["tea", "mug"]);

    // Signing in keeps the history and makes the theme the account's: a
    // second device of alice's opens dark.
    a.sign_in(&shop, "alice", ALICE_PW, false).await;
    let home = a.get(&shop, "/").await;
    assert_eq!(section(&home.body, "recently-viewed"), ["mug", "tea"]);
    assert!(home.body.contains("data-theme=\"dark\""));
    let b = Device::default();
    b.sign_in(&shop, "alice", ALICE_PW, false).await;
    let other = b.get(&shop, "/").await;
    assert!(
        other.body.contains("data-theme=\"dark\""),
        "{}",
        &other.body[..120]
    );
    assert!(
        section(&other.body, "recently-viewed").is_empty(),
        "history is per session"
    );

    // Unknown products are a 404 page and remember nothing.
    b.get(&shop, "/products/caviar")
        .await
        .error_page(404, "not-found");
    assert!(section(&b.get(&shop, "/").await.body, "recently-viewed").is_empty());
}

/// The number in `data-left="N"` of the downloads page.
fn downloads_left(page: &Page) -> u64 {
    let at = page.body.find("data-left=\"").expect("data-left") + 11;
    page.body[at..].split('"').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn downloads_are_limited_to_five_per_session_and_the_page_says_what_is_left() {
    let shop = quota_shop();
    let d = Device::default();
    let page = d.get(&shop, "/downloads").await;
    assert_eq!(page.status, 200);
    assert_eq!(downloads_left(&page), 5);
    assert!(page.body.contains("href=\"/downloads/green-tea.txt\""));
    assert!(
        d.cookie().is_none(),
        "looking at the page creates no session"
    );

    // An unknown file is a 404 and costs nothing.
    d.get(&shop, "/downloads/nope.txt")
        .await
        .error_page(404, "not-found");

    let files = [
        "green-tea.txt",
        "black-tea.txt",
        "coffee.txt",
        "mug-care.txt",
        "price-list.txt",
    ];
    for (i, f) in files.iter().enumerate() {
        let r = d.get(&shop, &format!("/downloads/{f}")).await;
        assert_eq!(r.status, 200, "{f}: {}", r.body);
        assert!(
            r.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        assert!(!r.body.is_empty());
        let left = downloads_left(&d.get(&shop, "/downloads").await);
        assert_eq!(left, 4 - i as u64, "after {} downloads", i + 1);
    }
    assert!(
        d.cookie().is_some(),
        "the first download created an anonymous session"
    );

    // The sixth: the quota page, which says which limit and when it resets.
    let r = d.get(&shop, "/downloads/opening-hours.txt").await;
    r.error_page(429, "quota-exceeded");
    assert!(r.body.contains("data-quota=\"downloads\""), "{}", r.body);
    assert!(r.body.contains("id=\"quota-limit\""), "{}", r.body);
    assert!(
        r.body.contains("starts again with a new session"),
        "{}",
        r.body
    );
    assert_eq!(downloads_left(&d.get(&shop, "/downloads").await), 0);

    // An API client of the same session gets the problem document.
    let req = Request::get("/downloads/coffee.txt")
        .header(header::COOKIE, format!("session={}", d.cookie().unwrap()))
        .body(Body::empty())
        .unwrap();
    let res = shop.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["type"], "/problems/quota-exceeded", "{doc}");
    assert_eq!(doc["quota"], "downloads", "{doc}");
    assert_eq!(doc["limit"], 5, "{doc}");
    assert_eq!(doc["per"], "session", "{doc}");

    // Another visitor has a count of its own.
    let other = Device::default();
    assert_eq!(other.get(&shop, "/downloads/coffee.txt").await.status, 200);
    assert_eq!(downloads_left(&other.get(&shop, "/downloads").await), 4);
}
