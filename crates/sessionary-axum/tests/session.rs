//! HTTP tests of the session layer and extractors, through `Router::oneshot`
//! with a `MemoryStore` and a `MockClock` (time is moved, never slept).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::Query;
use axum::response::Response;
use axum::routing::{get, post};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde::Deserialize;
use sessionary_axum::{
    Admin, CurrentUser, RequireAal, RequireRole, Session, SessionConfig, SessionLayer,
    SessionRejection,
};
use sessionary_core::{MockClock, NewSession, Privilege, SessionManager, UserId};
use tower::ServiceExt as _;

use sessionary_testkit::ProbeStore;

struct TestApp {
    config: SessionConfig,
    manager: SessionManager,
    store: Arc<ProbeStore>,
    clock: MockClock,
}

#[derive(Deserialize)]
struct LoginQuery {
    user: String,
    #[serde(default)]
    remember: bool,
    #[serde(default)]
    role: Option<String>,
}

async fn read(session: Session) -> Result<String, SessionRejection> {
    let n: Option<u64> = session.get("n")?;
    let reason = session.end_reason().map_or("none", |r| r.as_str());
    Ok(format!("n={n:?} reason={reason}"))
}

async fn write(session: Session) -> Result<String, SessionRejection> {
    let n = session.get::<u64>("n")?.unwrap_or(0) + 1;
    session.insert("n", n).await?;
    Ok(n.to_string())
}

async fn login(session: Session, Query(q): Query<LoginQuery>) -> Result<String, SessionRejection> {
    let user = UserId::new(q.user)?;
    let roles: Vec<String> = q.role.into_iter().collect();
    let rec = session
        .login(
            NewSession::user(user)
                .with_roles(roles)
                .with_remember(q.remember),
        )
        .await?;
    Ok(format!("remember={}", rec.remember))
}

async fn logout(session: Session) -> Result<&'static str, SessionRejection> {
    session.logout().await?;
    Ok("bye")
}

async fn step_up(session: Session) -> Result<&'static str, SessionRejection> {
    session
        .regenerate(Privilege {
            aal: Some(2),
            ..Privilege::default()
        })
        .await?;
    Ok("stepped up")
}

async fn greet(user: Option<CurrentUser>) -> String {
    user.map_or_else(
        || "hello stranger".to_owned(),
        |u| format!("hello {}", u.user),
    )
}

async fn extend(session: Session) -> Result<&'static str, SessionRejection> {
    session.extend().await?;
    Ok("extended")
}

async fn form(session: Session) -> Result<String, SessionRejection> {
    session.csrf_token().await
}

async fn me(user: CurrentUser) -> String {
    user.user.to_string()
}

async fn admin(RequireRole(user, ..): RequireRole<Admin>) -> String {
    format!("admin {}", user.user)
}

async fn sensitive(RequireAal(user): RequireAal<2>) -> String {
    format!("aal2 {}", user.user)
}

impl TestApp {
    fn new() -> Result<Self> {
        Self::with_config(SessionConfig::new())
    }

    fn with_config(config: SessionConfig) -> Result<Self> {
        let store = Arc::new(ProbeStore::new());
        let clock = MockClock::default();
        let manager = SessionManager::builder(store.clone())
            .with_clock(Arc::new(clock.clone()))
            .build()?;
        Ok(Self {
            config,
            manager,
            store,
            clock,
        })
    }

    fn router(&self) -> Router {
        Router::new()
            .route("/read", get(read))
            .route("/write", post(write))
            .route("/login", post(login))
            .route("/logout", post(logout))
            .route("/step-up", post(step_up))
            .route("/me", get(me))
            .route("/form", get(form))
            .route("/greet", get(greet))
            .route("/extend", post(extend))
            .route("/admin", get(admin))
            .route("/sensitive", get(sensitive))
            .layer(SessionLayer::new(self.manager.clone(), self.config.clone()))
    }

    async fn send(
        &self,
        method: &str,
        uri: &str,
        cookie: Option<&str>,
        accept: Option<&str>,
    ) -> Result<Response> {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        Ok(self.router().oneshot(req.body(Body::empty())?).await?)
    }

    /// Signs in and returns the `Cookie` header value of the new session.
    async fn signed_in(&self, query: &str) -> Result<String> {
        let res = self
            .send("POST", &format!("/login?{query}"), None, None)
            .await?;
        assert_eq!(res.status(), StatusCode::OK);
        cookie_pair(&res)
    }
}

fn set_cookies(res: &Response) -> Vec<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

/// `name=value` of the one `Set-Cookie`, for the next request's `Cookie`.
fn cookie_pair(res: &Response) -> Result<String> {
    let all = set_cookies(res);
    assert_eq!(all.len(), 1, "exactly one Set-Cookie: {all:?}");
    let first = all.first().context("no Set-Cookie")?;
    Ok(first.split(';').next().context("empty")?.to_owned())
}

fn attrs(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_owned())
        .collect()
}

fn header_str<'a>(res: &'a Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn body(res: Response) -> Result<String> {
    let bytes = res.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8(bytes.to_vec())?)
}

#[tokio::test]
async fn cookie_has_the_secure_attributes_exactly() -> Result<()> {
    let app = TestApp::new()?;
    let res = app.send("POST", "/write", None, None).await?;
    assert_eq!(res.status(), StatusCode::OK);
    let all = set_cookies(&res);
    assert_eq!(all.len(), 1);
    let c = &all[0];
    assert!(c.starts_with("__Host-session="), "{c}");
    let mut a = attrs(c);
    a.sort();
    assert_eq!(a, ["HttpOnly", "Path=/", "SameSite=Lax", "Secure"]);
    assert!(!c.to_ascii_lowercase().contains("domain"));
    assert!(
        !c.contains("Max-Age"),
        "anonymous sessions get a browser-session cookie"
    );
    Ok(())
}

#[tokio::test]
async fn strict_same_site_is_configurable() -> Result<()> {
    let app = TestApp::with_config(
        SessionConfig::new().with_same_site(sessionary_axum::SameSite::Strict),
    )?;
    let res = app.send("POST", "/write", None, None).await?;
    let c = set_cookies(&res).join("");
    assert!(attrs(&c).contains(&"SameSite=Strict".to_owned()), "{c}");
    Ok(())
}

#[tokio::test]
async fn token_cookie_responses_are_not_stored() -> Result<()> {
    let app = TestApp::new()?;
    let res = app.send("POST", "/write", None, None).await?;
    assert_eq!(header_str(&res, "cache-control"), Some("no-store"));
    let res = app.send("POST", "/login?user=alice", None, None).await?;
    assert_eq!(header_str(&res, "cache-control"), Some("no-store"));
    Ok(())
}

#[tokio::test]
async fn a_visitor_who_only_reads_gets_no_session() -> Result<()> {
    let app = TestApp::new()?;
    let res = app.send("GET", "/read", None, None).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookies(&res).is_empty());
    assert!(res.headers().get("sessionary-expires").is_none());
    assert!(res.headers().get("cache-control").is_none());
    assert_eq!(body(res).await?, "n=None reason=none");
    assert_eq!(app.store.inner.len(), 0);
    Ok(())
}

#[tokio::test]
async fn a_form_page_gets_a_session_and_a_csrf_token_bound_to_it() -> Result<()> {
    let app = TestApp::new()?;
    let res = app.send("GET", "/form", None, None).await?;
    assert_eq!(app.store.inner.len(), 1, "ensure() created the session");
    let cookie = cookie_pair(&res)?;
    let first = body(res).await?;
    let res = app.send("GET", "/form", Some(&cookie), None).await?;
    assert!(set_cookies(&res).is_empty(), "same session, no new cookie");
    let second = body(res).await?;
    assert_ne!(first, second, "tokens are masked afresh per render");
    assert_eq!(app.store.inner.len(), 1);
    let token = cookie.split_once('=').map(|(_, v)| v).unwrap_or_default();
    let record = app.manager.status(token).await?;
    for t in [&first, &second] {
        assert!(sessionary_axum::csrf::verify_token(&record.csrf_secret, t));
    }
    Ok(())
}

#[tokio::test]
async fn the_first_write_creates_the_session_lazily() -> Result<()> {
    let app = TestApp::new()?;
    let res = app.send("POST", "/write", None, None).await?;
    assert_eq!(app.store.inner.len(), 1);
    let cookie = cookie_pair(&res)?;
    let res = app.send("POST", "/write", Some(&cookie), None).await?;
    assert!(set_cookies(&res).is_empty(), "same session, no new cookie");
    assert_eq!(body(res).await?, "2");
    assert_eq!(app.store.inner.len(), 1);
    Ok(())
}

#[tokio::test]
async fn reading_an_existing_session_sends_no_set_cookie() -> Result<()> {
    let app = TestApp::new()?;
    let cookie = cookie_pair(&app.send("POST", "/write", None, None).await?)?;
    let loads = app.store.loads();
    let res = app.send("GET", "/read", Some(&cookie), None).await?;
    assert_eq!(app.store.loads() - loads, 1, "one store read per request");
    assert!(set_cookies(&res).is_empty());
    assert!(res.headers().get("cache-control").is_none());
    assert_eq!(body(res).await?, "n=Some(1) reason=none");
    Ok(())
}

#[tokio::test]
async fn every_live_response_says_when_the_session_ends() -> Result<()> {
    let app = TestApp::new()?;
    let cookie = cookie_pair(&app.send("POST", "/write", None, None).await?)?;
    let res = app.send("GET", "/read", Some(&cookie), None).await?;
    let token = cookie.split_once('=').context("pair")?.1;
    let rec = app.manager.status(token).await?;
    assert_eq!(
        header_str(&res, "sessionary-expires"),
        Some(rec.expires_at().to_rfc3339().as_str())
    );
    // 30 minutes idle for anonymous sessions, from the mock clock's start.
    assert_eq!(
        header_str(&res, "sessionary-expires"),
        Some("2026-01-01T00:30:00.000Z")
    );
    Ok(())
}

#[tokio::test]
async fn login_rotates_the_token_and_keeps_the_data() -> Result<()> {
    let app = TestApp::new()?;
    let anon = cookie_pair(&app.send("POST", "/write", None, None).await?)?;
    let res = app
        .send("POST", "/login?user=alice", Some(&anon), None)
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let signed = cookie_pair(&res)?;
    assert_ne!(anon, signed, "sign-in issues a new token");
    assert!(signed.starts_with("__Host-session="));

    let res = app.send("GET", "/read", Some(&signed), None).await?;
    assert_eq!(body(res).await?, "n=Some(1) reason=none");

    // The old token is dead and says why.
    let res = app.send("GET", "/read", Some(&anon), None).await?;
    assert_eq!(body(res).await?, "n=None reason=regenerated");
    let res = app.send("GET", "/me", Some(&anon), None).await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let doc: serde_json::Value = serde_json::from_str(&body(res).await?)?;
    assert_eq!(doc["reason"], "regenerated");
    Ok(())
}

#[tokio::test]
async fn remember_me_gives_a_persistent_cookie_and_plain_sign_in_does_not() -> Result<()> {
    let app = TestApp::new()?;
    let res = app
        .send("POST", "/login?user=alice&remember=true", None, None)
        .await?;
    let c = set_cookies(&res).join("");
    // 30 days of remember-me absolute lifetime.
    assert!(attrs(&c).contains(&"Max-Age=2592000".to_owned()), "{c}");
    assert!(c.contains("; Expires="), "{c}");

    let res = app.send("POST", "/login?user=bob", None, None).await?;
    let c = set_cookies(&res).join("");
    assert!(!c.contains("Max-Age"), "{c}");
    assert!(!c.contains("Expires"), "{c}");
    Ok(())
}

#[tokio::test]
async fn logout_clears_the_cookie_and_kills_the_token() -> Result<()> {
    let app = TestApp::new()?;
    let cookie = app.signed_in("user=alice").await?;
    let res = app.send("POST", "/logout", Some(&cookie), None).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header_str(&res, "clear-site-data"), Some("\"cookies\""));
    assert!(res.headers().get("sessionary-expires").is_none());
    let all = set_cookies(&res);
    assert_eq!(all.len(), 1);
    let c = &all[0];
    assert!(c.starts_with("__Host-session=;"), "{c}");
    let a = attrs(c);
    for want in ["Path=/", "Max-Age=0", "Secure", "HttpOnly"] {
        assert!(a.contains(&want.to_owned()), "{want} missing in {c}");
    }

    let res = app.send("GET", "/me", Some(&cookie), None).await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let doc: serde_json::Value = serde_json::from_str(&body(res).await?)?;
    assert_eq!(doc["reason"], "logged_out");
    Ok(())
}

#[tokio::test]
async fn malformed_cookies_are_ignored_without_creating_anything() -> Result<()> {
    let app = TestApp::new()?;
    let big = format!("__Host-session={}", "A".repeat(10 * 1024));
    let res = app.send("GET", "/read", Some(&big), None).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookies(&res).is_empty());
    assert_eq!(body(res).await?, "n=None reason=none");

    let bad = "__Host-session=!!!not*a*token!!!";
    let res = app.send("GET", "/me", Some(bad), None).await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let doc: serde_json::Value = serde_json::from_str(&body(res).await?)?;
    assert_eq!(doc["type"], "/problems/not-signed-in");
    assert_eq!(app.store.inner.len(), 0);
    assert_eq!(
        app.store.loads(),
        0,
        "malformed cookies never reach the store"
    );
    Ok(())
}

#[tokio::test]
async fn idle_expiry_is_a_401_problem_for_api_requests() -> Result<()> {
    let app = TestApp::new()?;
    let cookie = app.signed_in("user=alice").await?;
    app.clock.advance(Duration::from_secs(31 * 60));
    let res = app
        .send("GET", "/me", Some(&cookie), Some("application/json"))
        .await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header_str(&res, "content-type"),
        Some("application/problem+json")
    );
    let doc: serde_json::Value = serde_json::from_str(&body(res).await?)?;
    assert_eq!(doc["type"], "/problems/session-expired");
    assert_eq!(doc["reason"], "expired_idle");
    assert_eq!(doc["status"], 401);
    Ok(())
}

#[tokio::test]
async fn idle_expiry_redirects_html_requests_to_the_expired_page() -> Result<()> {
    let app = TestApp::new()?;
    let cookie = app.signed_in("user=alice").await?;
    app.clock.advance(Duration::from_secs(31 * 60));
    let res = app
        .send("GET", "/me?tab=1", Some(&cookie), Some("text/html,*/*"))
        .await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        header_str(&res, "location"),
        Some("/session-expired?reason=expired_idle&return_to=/me%3Ftab%3D1")
    );
    Ok(())
}

#[tokio::test]
async fn return_to_is_never_an_absolute_url() -> Result<()> {
    let app = TestApp::with_config(SessionConfig::new().with_expired_path("/bye"))?;
    let cookie = app.signed_in("user=alice").await?;
    app.clock.advance(Duration::from_secs(31 * 60));
    for uri in ["http://evil.example/me", "//evil.example/me"] {
        let res = app
            .send("GET", uri, Some(&cookie), Some("text/html"))
            .await?;
        // The router may not match `//evil.example/me`; only check redirects.
        if res.status() == StatusCode::SEE_OTHER {
            let loc = header_str(&res, "location").context("location")?;
            assert!(
                loc.starts_with("/bye?reason=expired_idle&return_to=/"),
                "{loc}"
            );
            let return_to = loc.split("return_to=").nth(1).context("return_to")?;
            assert!(!return_to.starts_with("//"), "{loc}");
            assert!(
                !return_to.contains("evil.example") || return_to.starts_with("/me"),
                "{loc}"
            );
        }
    }
    // `http://evil.example/me` routes to `/me` and redirects with the path only.
    let res = app
        .send(
            "GET",
            "http://evil.example/me",
            Some(&cookie),
            Some("text/html"),
        )
        .await?;
    assert_eq!(
        header_str(&res, "location"),
        Some("/bye?reason=expired_idle&return_to=/me")
    );
    Ok(())
}

#[tokio::test]
async fn require_role_refuses_a_user_and_admits_an_admin() -> Result<()> {
    let app = TestApp::new()?;
    let user = app.signed_in("user=alice").await?;
    let res = app.send("GET", "/admin", Some(&user), None).await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let doc: serde_json::Value = serde_json::from_str(&body(res).await?)?;
    assert_eq!(doc["type"], "/problems/missing-role");

    let admin = app.signed_in("user=root&role=admin").await?;
    let res = app.send("GET", "/admin", Some(&admin), None).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body(res).await?, "admin root");

    let res = app.send("GET", "/admin", None, None).await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn require_aal_asks_for_step_up_and_regeneration_rotates() -> Result<()> {
    let app = TestApp::new()?;
    let cookie = app.signed_in("user=alice").await?;
    let res = app.send("GET", "/sensitive", Some(&cookie), None).await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let doc: serde_json::Value = serde_json::from_str(&body(res).await?)?;
    assert_eq!(doc["type"], "/problems/step-up-required");

    let res = app.send("POST", "/step-up", Some(&cookie), None).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header_str(&res, "cache-control"), Some("no-store"));
    let stepped = cookie_pair(&res)?;
    assert_ne!(stepped, cookie);
    let res = app.send("GET", "/sensitive", Some(&stepped), None).await?;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.send("GET", "/read", Some(&cookie), None).await?;
    assert_eq!(body(res).await?, "n=None reason=regenerated");
    Ok(())
}

#[tokio::test]
async fn dangerous_drops_secure_and_the_host_prefix() -> Result<()> {
    let app = TestApp::with_config(SessionConfig::new().dangerous().allow_insecure_http())?;
    let res = app.send("POST", "/write", None, None).await?;
    let all = set_cookies(&res);
    assert_eq!(all.len(), 1);
    let c = &all[0];
    assert!(c.starts_with("session="), "{c}");
    assert!(!c.contains("__Host-"), "{c}");
    assert!(!attrs(c).contains(&"Secure".to_owned()), "{c}");
    assert!(attrs(c).contains(&"HttpOnly".to_owned()), "{c}");
    // The insecure name is what the layer reads back.
    let cookie = cookie_pair(&res)?;
    let res = app.send("GET", "/read", Some(&cookie), None).await?;
    assert_eq!(body(res).await?, "n=Some(1) reason=none");
    Ok(())
}

#[tokio::test]
async fn extractors_without_the_layer_are_a_500_problem() -> Result<()> {
    let router = Router::new().route("/me", get(me));
    let res = router
        .oneshot(Request::builder().uri("/me").body(Body::empty())?)
        .await?;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    Ok(())
}

#[tokio::test]
async fn optional_current_user_is_none_for_visitors_and_expired_sessions() -> Result<()> {
    let app = TestApp::new()?;
    let res = app.send("GET", "/greet", None, None).await?;
    assert_eq!(body(res).await?, "hello stranger");
    let cookie = app.signed_in("user=alice").await?;
    let res = app.send("GET", "/greet", Some(&cookie), None).await?;
    assert_eq!(body(res).await?, "hello alice");
    app.clock.advance(Duration::from_secs(31 * 60));
    let res = app.send("GET", "/greet", Some(&cookie), None).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body(res).await?, "hello stranger");
    Ok(())
}

#[tokio::test]
async fn extend_moves_the_announced_end_without_a_new_cookie() -> Result<()> {
    let app = TestApp::new()?;
    let cookie = app.signed_in("user=alice").await?;
    app.clock.advance(Duration::from_secs(20 * 60));
    let res = app.send("POST", "/extend", Some(&cookie), None).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookies(&res).is_empty());
    // Signed in at 00:00 with 30 minutes idle; extended at 00:20.
    assert_eq!(
        header_str(&res, "sessionary-expires"),
        Some("2026-01-01T00:50:00.000Z")
    );
    app.clock.advance(Duration::from_secs(25 * 60));
    let res = app.send("GET", "/me", Some(&cookie), None).await?;
    assert_eq!(res.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn html_requests_without_a_session_go_to_the_sign_in_page_when_configured() -> Result<()> {
    // Not configured: a 401 problem, also for browsers.
    let app = TestApp::new()?;
    let res = app.send("GET", "/me", None, Some("text/html")).await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let app = TestApp::with_config(SessionConfig::new().with_sign_in_path("/login"))?;
    let res = app
        .send("GET", "/me?tab=2", None, Some("text/html,*/*"))
        .await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        header_str(&res, "location"),
        Some("/login?return_to=/me%3Ftab%3D2")
    );
    assert_eq!(header_str(&res, "cache-control"), Some("no-store"));
    // API clients keep the problem document.
    let res = app
        .send("GET", "/me", None, Some("application/json"))
        .await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header_str(&res, "content-type"),
        Some("application/problem+json")
    );
    // An ended session still goes to the expired page, not the sign-in page.
    let cookie = app.signed_in("user=alice").await?;
    app.clock.advance(Duration::from_secs(31 * 60));
    let res = app
        .send("GET", "/me", Some(&cookie), Some("text/html"))
        .await?;
    assert!(
        header_str(&res, "location").is_some_and(|l| l.starts_with("/session-expired?")),
        "{:?}",
        header_str(&res, "location")
    );
    // Only local paths are taken.
    let c = SessionConfig::new().with_sign_in_path("https://evil.example/login");
    assert_eq!(c.sign_in_path(), None);
    Ok(())
}

#[tokio::test]
async fn a_strict_route_group_ignores_the_cookie_on_cross_site_requests() -> Result<()> {
    let app = TestApp::with_config(SessionConfig::new().with_strict_prefix("/admin"))?;
    let cookie = app.signed_in("user=alice&role=admin").await?;
    let send = |path: &str, site: Option<&str>| {
        let mut req = Request::get(path).header(header::COOKIE, &cookie);
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        app.router()
            .oneshot(req.body(Body::empty()).unwrap_or_default())
    };
    // Same site, or a browser that does not say: the session is there.
    for site in [Some("same-origin"), Some("same-site"), Some("none"), None] {
        let res = send("/admin", site).await?;
        assert_eq!(res.status(), StatusCode::OK, "{site:?}");
    }
    // Cross-site into the strict group: as if no cookie had been sent.
    let res = send("/admin", Some("cross-site")).await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header_str(&res, "sessionary-expires"),
        None,
        "no session was seen"
    );
    // Cross-site elsewhere (Lax): signed in.
    let res = send("/me", Some("cross-site")).await?;
    assert_eq!(res.status(), StatusCode::OK);
    // The prefix matches whole segments only.
    let c = SessionConfig::new().with_strict_prefix("/admin/");
    assert!(c.is_strict_path("/admin") && c.is_strict_path("/admin/users"));
    assert!(!c.is_strict_path("/administrator") && !c.is_strict_path("/"));
    Ok(())
}
