//! HTTP tests of the session routes (`/session/status`, `/session/extend`,
//! `/session/events`) through `Router::oneshot`, with a `MemoryStore` and a
//! `MockClock`. Nothing sleeps for real: expiry is driven by moving the mock
//! clock and, for the events stream's timer, paused tokio time by the same
//! amount.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::{get, post};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::Value;
use sessionary_axum::{Session, SessionConfig, SessionLayer, SessionRejection, session_routes};
use sessionary_core::{
    EndReason, MemoryStore, MockClock, NewSession, SessionId, SessionManager, UserId,
};
use tower::ServiceExt as _;

struct TestApp {
    manager: SessionManager,
    clock: MockClock,
}

async fn login(session: Session) -> Result<&'static str, SessionRejection> {
    session
        .login(NewSession::user(UserId::new("alice")?))
        .await?;
    Ok("signed in")
}

async fn read(session: Session) -> String {
    format!("user={:?}", session.user())
}

impl TestApp {
    fn new() -> Result<Self> {
        let clock = MockClock::default();
        let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
            .with_clock(Arc::new(clock.clone()))
            .build()?;
        Ok(Self { manager, clock })
    }

    fn router(&self) -> Router {
        Router::new()
            .route("/login", post(login))
            .route("/read", get(read))
            .merge(session_routes())
            .layer(SessionLayer::new(
                self.manager.clone(),
                SessionConfig::new(),
            ))
    }

    async fn send(&self, method: &str, uri: &str, cookie: Option<&str>) -> Result<Response> {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        Ok(self.router().oneshot(req.body(Body::empty())?).await?)
    }

    /// Signs alice in; the `Cookie` header value of the new session.
    async fn signed_in(&self) -> Result<String> {
        let res = self.send("POST", "/login", None).await?;
        assert_eq!(res.status(), StatusCode::OK);
        let set = res
            .headers()
            .get(header::SET_COOKIE)
            .context("no Set-Cookie")?
            .to_str()?;
        Ok(set.split(';').next().context("empty cookie")?.to_owned())
    }

    async fn json(&self, method: &str, uri: &str, cookie: Option<&str>) -> Result<(u16, Value)> {
        let res = self.send(method, uri, cookie).await?;
        let status = res.status().as_u16();
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, serde_json::from_slice(&body)?))
    }

    /// Opens the events stream.
    async fn events(&self, cookie: &str) -> Result<Body> {
        let res = self.send("GET", "/session/events", Some(cookie)).await?;
        assert_eq!(res.status(), StatusCode::OK);
        let ct = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        assert_eq!(ct, Some("text/event-stream"));
        Ok(res.into_body())
    }

    /// The id of the session behind `cookie` (read without extending it).
    async fn session_id(&self, cookie: &str) -> Result<SessionId> {
        let token = cookie.split_once('=').context("no cookie value")?.1;
        Ok(self.manager.status(token).await?.id)
    }

    fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }
}

/// Moves the mock clock and paused tokio time by the same amount.
async fn step(app: &TestApp, d: Duration) {
    app.advance(d);
    tokio::time::advance(d).await;
}

/// The next SSE event (name, data), skipping keep-alive comments; `None` when
/// the stream ended. Fails if nothing arrives within `within`.
async fn next_event(body: &mut Body, within: Duration) -> Result<Option<(String, Value)>> {
    let mut buf = String::new();
    loop {
        let frame = tokio::time::timeout(within, body.frame())
            .await
            .context("no SSE frame in time")?;
        let Some(frame) = frame else {
            return Ok(None);
        };
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        buf.push_str(std::str::from_utf8(&data)?);
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut name = None;
            let mut payload = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    payload = Some(serde_json::from_str(v)?);
                }
            }
            match (name, payload) {
                (Some(n), Some(p)) => return Ok(Some((n, p))),
                (None, None) => {} // keep-alive comment
                other => bail!("odd SSE block {block:?}: {other:?}"),
            }
        }
    }
}

const SOON: Duration = Duration::from_secs(5);

#[tokio::test]
async fn status_without_cookie_is_not_authenticated() -> Result<()> {
    let app = TestApp::new()?;
    let (status, doc) = app.json("GET", "/session/status", None).await?;
    assert_eq!(status, 200);
    assert_eq!(doc, serde_json::json!({ "authenticated": false }));
    Ok(())
}

#[tokio::test]
async fn status_reports_and_never_extends() -> Result<()> {
    let app = TestApp::new()?;
    let cookie = app.signed_in().await?;
    let (status, doc) = app.json("GET", "/session/status", Some(&cookie)).await?;
    assert_eq!(status, 200);
    assert_eq!(doc["authenticated"], true);
    assert_eq!(doc["user"], "alice");
    assert_eq!(doc["seconds_left"], 30 * 60);
    assert_eq!(doc["expires_at"], doc["idle_expires_at"]);
    assert!(doc["absolute_expires_at"].is_string());

    // Polled every 5 minutes: the 30 min idle timeout still runs out.
    for i in 1..6u64 {
        app.advance(Duration::from_secs(5 * 60));
        let (status, doc) = app.json("GET", "/session/status", Some(&cookie)).await?;
        assert_eq!(status, 200, "poll {i}");
        assert_eq!(doc["seconds_left"], (30 - 5 * i) * 60, "poll {i}");
    }
    app.advance(Duration::from_secs(5 * 60));
    let (status, doc) = app.json("GET", "/session/status", Some(&cookie)).await?;
    assert_eq!(status, 401);
    assert_eq!(doc["reason"], "expired_idle");
    Ok(())
}

#[tokio::test]
async fn ordinary_requests_do_extend() -> Result<()> {
    let app = TestApp::new()?;
    let cookie = app.signed_in().await?;
    // The same rhythm through a verified route keeps the session alive.
    for i in 1..=10 {
        app.advance(Duration::from_secs(5 * 60));
        let res = app.send("GET", "/read", Some(&cookie)).await?;
        assert_eq!(res.status(), StatusCode::OK, "request {i}");
    }
    let (status, doc) = app.json("GET", "/session/status", Some(&cookie)).await?;
    assert_eq!(status, 200);
    assert_eq!(doc["seconds_left"], 30 * 60);
    Ok(())
}

#[tokio::test]
async fn extend_extends() -> Result<()> {
    let app = TestApp::new()?;
    let cookie = app.signed_in().await?;
    app.advance(Duration::from_secs(20 * 60));
    let (status, doc) = app.json("POST", "/session/extend", Some(&cookie)).await?;
    assert_eq!(status, 200);
    assert_eq!(doc["authenticated"], true);
    assert_eq!(doc["seconds_left"], 30 * 60);
    // 40 min after sign-in: alive only thanks to the extension.
    app.advance(Duration::from_secs(20 * 60));
    let (status, doc) = app.json("GET", "/session/status", Some(&cookie)).await?;
    assert_eq!(status, 200);
    assert_eq!(doc["seconds_left"], 10 * 60);

    let (status, _) = app.json("POST", "/session/extend", None).await?;
    assert_eq!(status, 401);
    Ok(())
}

#[tokio::test]
async fn events_need_a_session() -> Result<()> {
    let app = TestApp::new()?;
    let res = app.send("GET", "/session/events", None).await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    Ok(())
}

#[tokio::test]
async fn revoked_from_another_device() -> Result<()> {
    let app = TestApp::new()?;
    let cookie = app.signed_in().await?;
    let mut body = app.events(&cookie).await?;
    let id = app.session_id(&cookie).await?;

    app.manager
        .end_session(&id, EndReason::RevokedByUser)
        .await?;
    let (name, data) = next_event(&mut body, SOON).await?.context("stream ended")?;
    assert_eq!(name, "revoked");
    assert_eq!(data["reason"], "revoked_by_user");
    assert!(next_event(&mut body, SOON).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn data_changes_are_signalled() -> Result<()> {
    let app = TestApp::new()?;
    let cookie = app.signed_in().await?;
    let other = app.signed_in().await?;
    assert_ne!(cookie, other);
    let mut body = app.events(&cookie).await?;
    let alice = UserId::new("alice")?;

    // User-scope data (another device): every device of alice hears it.
    app.manager
        .update_user_data(&alice, None, |d| {
            d.insert("theme".into(), "dark".into());
        })
        .await?;
    let (name, data) = next_event(&mut body, SOON).await?.context("stream ended")?;
    assert_eq!(name, "data-changed");
    assert_eq!(data["scope"], "user");

    // Session data of this session.
    let mine = app.session_id(&cookie).await?;
    app.manager
        .update_data(&mine, None, |d| {
            d.insert("cart".into(), 1.into());
        })
        .await?;
    let (name, data) = next_event(&mut body, SOON).await?.context("stream ended")?;
    assert_eq!(name, "data-changed");
    assert_eq!(data["scope"], "session");
    Ok(())
}

#[tokio::test]
async fn expiring_then_expired_with_paused_time() -> Result<()> {
    tokio::time::pause();
    let app = TestApp::new()?;
    let cookie = app.signed_in().await?;
    let mut body = app.events(&cookie).await?;

    // 29.5 min of a 30 min idle timeout: inside the 60 s warning window.
    step(&app, Duration::from_secs(29 * 60 + 30)).await;
    let (name, data) = next_event(&mut body, Duration::from_millis(100))
        .await?
        .context("stream ended")?;
    assert_eq!(name, "expiring");
    assert_eq!(data["seconds_left"], 30);

    // The deadline passes without activity.
    step(&app, Duration::from_secs(31)).await;
    let (name, data) = next_event(&mut body, Duration::from_millis(100))
        .await?
        .context("stream ended")?;
    assert_eq!(name, "expired");
    assert_eq!(data["reason"], "expired_idle");
    assert!(next_event(&mut body, SOON).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn extension_rearms_the_warning() -> Result<()> {
    tokio::time::pause();
    let app = TestApp::new()?;
    let cookie = app.signed_in().await?;
    let mut body = app.events(&cookie).await?;

    step(&app, Duration::from_secs(29 * 60 + 30)).await;
    let (name, _) = next_event(&mut body, Duration::from_millis(100))
        .await?
        .context("stream ended")?;
    assert_eq!(name, "expiring");

    // "Stay signed in": the old deadline passes, the stream re-arms instead.
    let (status, _) = app.json("POST", "/session/extend", Some(&cookie)).await?;
    assert_eq!(status, 200);
    step(&app, Duration::from_secs(60)).await;
    assert!(
        next_event(&mut body, Duration::from_millis(100))
            .await
            .is_err(),
        "no event while the extended session is far from its end"
    );

    // 29.5 min after the extension: a second warning.
    step(&app, Duration::from_secs(28 * 60 + 30)).await;
    let (name, data) = next_event(&mut body, Duration::from_millis(100))
        .await?
        .context("stream ended")?;
    assert_eq!(name, "expiring");
    assert_eq!(data["seconds_left"], 30);
    Ok(())
}

/// A test clock that jumps wakes the stream at once: no tokio time is paused
/// or advanced here, so only the jump can trigger `expiring` and `expired`
/// (browser tests rely on it: the server runs on real time while the session
/// runs on the mock clock).
#[tokio::test]
async fn clock_jumps_wake_the_stream() -> Result<()> {
    let app = TestApp::new()?;
    let cookie = app.signed_in().await?;
    let mut body = app.events(&cookie).await?;
    // 29 min 30 s in: within the 60 s warning window.
    app.advance(Duration::from_secs(29 * 60 + 30));
    let (name, data) = next_event(&mut body, SOON).await?.context("stream ended")?;
    assert_eq!(name, "expiring");
    assert_eq!(data["seconds_left"], 30);
    app.advance(Duration::from_secs(31));
    let (name, data) = next_event(&mut body, SOON).await?.context("stream ended")?;
    assert_eq!(name, "expired");
    assert_eq!(data["reason"], "expired_idle");
    Ok(())
}
