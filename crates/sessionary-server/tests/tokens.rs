//! Access and refresh tokens through the service API and the demo's `/api/`
//! routes (`app_with_demo(...).oneshot(...)`, time moved by a `MockClock`).

// Test helpers outside #[test] fns: a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sessionary_core::{Clock, MemoryStore, MockClock, SessionManager};
use sessionary_server::demo::{DemoOptions, DemoUsers};
use sessionary_server::{ApiKeys, AppState, app_with_demo};
use sessionary_token::{AccessTokens, KeyRing, Revocations, SigningAlg, SigningKey};
use tower::ServiceExt as _;

const KEY: &str = "test-api-key-0123456789-abcdefghijklmnop";

struct Service {
    app: Router,
    clock: MockClock,
}

fn service() -> Service {
    let clock = MockClock::default();
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let revocations = Revocations::new(Arc::clone(&dyn_clock));
    let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
        .with_clock(Arc::clone(&dyn_clock))
        .with_event_sink(revocations.clone())
        .build()
        .unwrap();
    let ring = KeyRing::new(SigningKey::generate(SigningAlg::EdDsa).unwrap());
    let tokens = Arc::new(
        AccessTokens::builder("sessionary-test", "shop-api", ring)
            .with_clock(dyn_clock)
            .with_revocations(revocations)
            .build()
            .unwrap(),
    );
    let state = AppState::new(manager, ApiKeys::new([KEY])).with_tokens(Arc::clone(&tokens));
    let users = DemoUsers::from_passwords("alice-pw", "admin-pw").unwrap();
    Service {
        app: app_with_demo(state, DemoOptions::new(users).with_access_tokens(tokens)),
        clock,
    }
}

impl Service {
    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, format!("Bearer {a}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let res = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, value)
    }

    async fn api(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(KEY), Some(body)).await
    }

    /// A signed-in session for alice: its session token.
    async fn session(&self) -> String {
        let (s, b) = self
            .api("/v1/sessions", json!({"user": "alice", "roles": ["user"]}))
            .await;
        assert_eq!(s, 201, "{b}");
        b["token"].as_str().unwrap().to_owned()
    }

    async fn tokens(&self, session_token: &str) -> Value {
        let (s, b) = self
            .api("/v1/tokens", json!({"session_token": session_token}))
            .await;
        assert_eq!(s, 201, "{b}");
        b
    }
}

#[tokio::test]
async fn a_session_becomes_an_access_and_a_refresh_token() {
    let svc = service();
    let session = svc.session().await;
    let t = svc.tokens(&session).await;
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 600, "10 minutes by default");
    assert_eq!(t["refresh_token"].as_str().unwrap().len(), 43);
    let access = t["access_token"].as_str().unwrap();
    let (s, claims) = svc
        .api("/v1/tokens/verify", json!({"access_token": access}))
        .await;
    assert_eq!(s, 200, "{claims}");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["sid"], t["session"]["id"]);
    assert_eq!(claims["iss"], "sessionary-test");
    // The JWKS is public and publishes the one Ed25519 key.
    let (s, jwks) = svc
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    // The token endpoints need the API key.
    let (s, _) = svc
        .call(
            Method::POST,
            "/v1/tokens",
            None,
            Some(json!({"session_token": session})),
        )
        .await;
    assert_eq!(s, 401);
    // Anonymous sessions get none.
    let (_, anon) = svc.api("/v1/sessions", json!({})).await;
    let (s, p) = svc
        .api("/v1/tokens", json!({"session_token": anon["token"]}))
        .await;
    assert_eq!(s, 400, "{p}");
    // Garbage is a clear refusal.
    let (s, p) = svc
        .api("/v1/tokens/verify", json!({"access_token": "a.b.c"}))
        .await;
    assert_eq!(s, 401);
    assert_eq!(p["reason"], "malformed");
}

#[tokio::test]
async fn refresh_rotates_a_retry_gets_the_same_successor_and_reuse_ends_the_session() {
    let svc = service();
    let session = svc.session().await;
    let first = svc.tokens(&session).await;
    let r0 = first["refresh_token"].as_str().unwrap().to_owned();

    let (s, a) = svc
        .api("/v1/tokens/refresh", json!({"refresh_token": r0}))
        .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["retried"], false);
    let r1 = a["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r0);
    // A lost response: the same token again within the grace window.
    svc.clock.advance(Duration::from_secs(5));
    let (s, b) = svc
        .api("/v1/tokens/refresh", json!({"refresh_token": r0}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["retried"], true);
    assert_eq!(b["refresh_token"], r1.as_str(), "the same successor");

    // After the grace window the spent token is reuse: family and session end.
    svc.clock.advance(Duration::from_secs(10));
    let (s, p) = svc
        .api("/v1/tokens/refresh", json!({"refresh_token": r0}))
        .await;
    assert_eq!(s, 401, "{p}");
    assert_eq!(p["reason"], "refresh_reused");
    let (s, p) = svc
        .api("/v1/tokens/refresh", json!({"refresh_token": r1}))
        .await;
    assert_eq!(s, 401, "the whole family is revoked: {p}");
    let (s, p) = svc
        .api("/v1/sessions/verify", json!({"token": session}))
        .await;
    assert_eq!(s, 401);
    assert_eq!(p["reason"], "refresh_reused");
    // Access tokens of the session are refused from the revocation event on.
    let (s, p) = svc
        .api(
            "/v1/tokens/verify",
            json!({"access_token": a["access_token"]}),
        )
        .await;
    assert_eq!(s, 401);
    assert_eq!(p["reason"], "revoked");
}

#[tokio::test]
async fn revoking_the_refresh_token_or_the_session_stops_the_tokens() {
    let svc = service();
    let session = svc.session().await;
    let t = svc.tokens(&session).await;
    let (s, _) = svc
        .api(
            "/v1/tokens/revoke",
            json!({"refresh_token": t["refresh_token"]}),
        )
        .await;
    assert_eq!(s, 204);
    let (s, p) = svc
        .api(
            "/v1/tokens/refresh",
            json!({"refresh_token": t["refresh_token"]}),
        )
        .await;
    assert_eq!(s, 401, "{p}");
    // Revoking the family leaves the session and its access token alive.
    let (s, _) = svc
        .api(
            "/v1/tokens/verify",
            json!({"access_token": t["access_token"]}),
        )
        .await;
    assert_eq!(s, 200);

    let t = svc.tokens(&session).await;
    let (s, _) = svc
        .api("/v1/sessions/logout", json!({"token": session}))
        .await;
    assert!(s == 200 || s == 204, "{s}");
    let (s, p) = svc
        .api(
            "/v1/tokens/verify",
            json!({"access_token": t["access_token"]}),
        )
        .await;
    assert_eq!(s, 401);
    assert_eq!(p["reason"], "revoked");
    let (s, _) = svc
        .api(
            "/v1/tokens/refresh",
            json!({"refresh_token": t["refresh_token"]}),
        )
        .await;
    assert_eq!(s, 401);
    // Access tokens run out by themselves too.
    let session = svc.session().await;
    let t = svc.tokens(&session).await;
    svc.clock.advance(Duration::from_secs(11 * 60));
    let (s, p) = svc
        .api(
            "/v1/tokens/verify",
            json!({"access_token": t["access_token"]}),
        )
        .await;
    assert_eq!(s, 401);
    assert_eq!(p["reason"], "expired");
}

#[tokio::test]
async fn the_demo_api_takes_an_access_token_as_well_as_the_cookie() {
    let svc = service();
    let session = svc.session().await;
    let t = svc.tokens(&session).await;
    let access = t["access_token"].as_str().unwrap();
    let (s, cart) = svc.call(Method::GET, "/api/cart", Some(access), None).await;
    assert_eq!(s, 200, "{cart}");
    assert_eq!(
        cart,
        json!({"user": "alice", "transport": "bearer", "items": []})
    );
    // Bearer requests need no CSRF token: no cookie, nothing for a forger to ride on.
    let (s, cart) = svc
        .call(
            Method::POST,
            "/api/cart",
            Some(access),
            Some(json!({"product": "tea"})),
        )
        .await;
    assert_eq!(s, 200, "{cart}");
    assert_eq!(cart["items"], json!(["tea"]));
    // The same session's data, seen through the service API.
    let (_, v) = svc
        .api(
            "/v1/sessions/verify",
            json!({"token": session, "include_data": true}),
        )
        .await;
    assert_eq!(v["data"]["cart"], json!(["tea"]));
    // A bad token is refused with the bearer challenge, never treated as anonymous.
    let req = Request::get("/api/cart")
        .header(header::AUTHORIZATION, "Bearer not.a.token")
        .body(Body::empty())
        .unwrap();
    let res = svc.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        "Bearer error=\"invalid_token\""
    );
    // Neither transport: 401.
    let (s, _) = svc.call(Method::GET, "/api/cart", None, None).await;
    assert_eq!(s, 401);
    // After sign-out the token is refused at once.
    svc.api("/v1/sessions/logout", json!({"token": session}))
        .await;
    let (s, p) = svc.call(Method::GET, "/api/cart", Some(access), None).await;
    assert_eq!(s, 401);
    assert_eq!(p["reason"], "revoked");
}

#[tokio::test]
async fn rotating_the_signing_key_keeps_earlier_tokens_valid() {
    let svc = service();
    let session = svc.session().await;
    let before = svc.tokens(&session).await;
    let (s, r) = svc.api("/v1/tokens/keys/rotate", json!({})).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["keys"], 2);
    assert_eq!(r["algorithm"], "EdDSA");
    let (_, jwks) = svc
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        2,
        "old and new key published"
    );
    assert_eq!(jwks["keys"][0]["kid"], r["kid"], "the new key first");
    // Tokens signed before still verify; new ones carry the new kid.
    let (s, _) = svc
        .api(
            "/v1/tokens/verify",
            json!({"access_token": before["access_token"]}),
        )
        .await;
    assert_eq!(s, 200);
    let after = svc.tokens(&session).await;
    let header = after["access_token"]
        .as_str()
        .unwrap()
        .split('.')
        .next()
        .unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], r["kid"]);
    assert_eq!(header["typ"], "at+jwt");
    // The rotation needs the API key.
    let (s, _) = svc
        .call(
            Method::POST,
            "/v1/tokens/keys/rotate",
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn the_demo_api_answers_bad_json_with_a_problem_and_changes_nothing() {
    let svc = service();
    let session = svc.session().await;
    let t = svc.tokens(&session).await;
    let access = t["access_token"].as_str().unwrap();
    for (body, ct, status) in [
        ("{", "application/json", StatusCode::BAD_REQUEST),
        (
            r#"{"product":"caviar"}"#,
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"product":"tea"}"#,
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ] {
        let req = Request::post("/api/cart")
            .header(header::AUTHORIZATION, format!("Bearer {access}"))
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body))
            .unwrap();
        let res = svc.app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), status, "{body} as {ct}");
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let p: Value =
            serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(p["type"], "/problems/invalid-request");
    }
    let (_, cart) = svc.call(Method::GET, "/api/cart", Some(access), None).await;
    assert_eq!(cart["items"], json!([]), "nothing was added");
}
