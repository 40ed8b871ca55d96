//! The service API through `app(...).oneshot(...)`: every endpoint, every
//! refusal, time moved by a `MockClock`.

// Test helpers outside #[test] fns: a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sessionary_core::{
    AuditLog, LimitMode, MockClock, Policy, RolePolicy, SessionManager, Timestamp,
};
use sessionary_server::{ApiKeys, AppState, app};
use sessionary_testkit::ProbeStore;

const KEY: &str = "test-api-key-0123456789-abcdefghijklmnop";

struct Harness {
    app: Router,
    clock: MockClock,
    store: Arc<ProbeStore>,
}

struct Res {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Res {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a problem document with this status and type.
    #[track_caller]
    fn problem(&self, status: u16, name: &str) -> &Self {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(
            self.header(header::CONTENT_TYPE),
            "application/problem+json",
            "{}",
            self.body
        );
        assert_eq!(
            self.body["type"],
            format!("/problems/{name}"),
            "{}",
            self.body
        );
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string());
        assert!(self.body["detail"].is_string());
        self
    }

    #[track_caller]
    fn reason(&self, reason: &str) {
        assert_eq!(self.body["reason"], reason, "{}", self.body);
    }
}

fn policy() -> Policy {
    let mut p = Policy::default();
    p.default.absolute_timeout = Duration::from_secs(3600);
    let q = &mut p.default.quotas;
    q.units.insert(
        "downloads".into(),
        sessionary_core::QuotaLimit::per_session(2),
    );
    q.units.insert(
        "exports".into(),
        sessionary_core::QuotaLimit::every(3, Duration::from_secs(3600)),
    );
    p.roles.insert(
        "solo".into(),
        RolePolicy {
            max_sessions: Some(1),
            on_limit: LimitMode::RejectNew,
            ..RolePolicy::default()
        },
    );
    p
}

impl Harness {
    fn new() -> Self {
        Self::build(false)
    }

    /// With an audit log on the manager and in the state, as `serve` runs.
    fn audited() -> Self {
        Self::build(true)
    }

    fn build(audited: bool) -> Self {
        let clock = MockClock::default();
        let store = Arc::new(ProbeStore::new());
        let mut builder = SessionManager::builder(store.clone())
            .with_clock(Arc::new(clock.clone()))
            .with_policy(policy());
        let audit = audited.then(|| AuditLog::spawn(store.clone(), Arc::new(clock.clone())));
        if let Some(a) = &audit {
            builder = builder.with_event_sink(a.clone());
        }
        let mut state = AppState::new(builder.build().unwrap(), ApiKeys::new([KEY]));
        if let Some(a) = audit {
            state = state.with_audit(a);
        }
        let app = app(state);
        Self { app, clock, store }
    }

    fn calls(&self) -> usize {
        self.store.calls()
    }

    async fn raw(&self, req: Request<Body>) -> Res {
        use tower::ServiceExt as _;
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        Res {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Res {
        self.call_with(method, uri, body, &[]).await
    }

    async fn call_with(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Res {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {KEY}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        self.raw(req).await
    }

    async fn create(&self, body: Value) -> (String, String) {
        let r = self.call(Method::POST, "/v1/sessions", Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        (
            r.body["token"].as_str().unwrap().to_owned(),
            r.body["session"]["id"].as_str().unwrap().to_owned(),
        )
    }

    async fn verify(&self, token: &str) -> Res {
        self.call(
            Method::POST,
            "/v1/sessions/verify",
            Some(json!({ "token": token })),
        )
        .await
    }
}

#[tokio::test]
async fn healthz_needs_no_key_and_checks_the_store() {
    let h = Harness::new();
    let r = h
        .raw(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"status": "ok", "store": "ok"}));
    h.store.set_down(true);
    let r = h
        .raw(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["store"], "unavailable");
}

#[tokio::test]
async fn openapi_document_is_3_1_and_lists_every_path() {
    let h = Harness::new();
    let r = h
        .raw(
            Request::get("/v1/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (p, methods) in [
        ("/healthz", &["get"][..]),
        ("/v1/openapi.json", &["get"]),
        ("/v1/sessions", &["post"]),
        ("/v1/sessions/verify", &["post"]),
        ("/v1/sessions/extend", &["post"]),
        ("/v1/sessions/logout", &["post"]),
        ("/v1/sessions/{id}", &["get", "delete"]),
        ("/v1/sessions/{id}/data", &["get", "patch"]),
        ("/v1/sessions/{id}/regenerate", &["post"]),
        ("/v1/users/{user}/sessions", &["get", "delete"]),
        ("/v1/users/{user}/data", &["get", "patch"]),
        ("/v1/audit", &["get"]),
        ("/v1/sessions/{id}/quotas/{name}", &["get", "post"]),
    ] {
        for m in methods {
            assert!(paths[p][m].is_object(), "{m} {p} missing");
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["schemas"]["SessionView"].is_object());
    // Health and the document itself need no key.
    assert_eq!(paths["/healthz"]["get"]["security"], json!([{}]));
}

#[tokio::test]
async fn api_key_is_required() {
    let h = Harness::new();
    let cases: [Option<&str>; 5] = [
        None,
        Some("Bearer wrong-key-0123456789-abcdefghijklmnopqr"),
        Some("Basic dGVzdDp0ZXN0"),
        Some("Bearer "),
        Some("Bearer test-api-key-0123456789-abcdefghijklmno"),
    ];
    for auth in cases {
        let mut b = Request::post("/v1/sessions").header(header::CONTENT_TYPE, "application/json");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        let r = h.raw(b.body(Body::from("{}")).unwrap()).await;
        r.problem(401, "unauthorized");
        assert!(r.header(header::WWW_AUTHENTICATE).starts_with("Bearer"));
    }
    // Nothing reached the store.
    assert_eq!(h.calls(), 0);
    // The scheme is case-insensitive.
    let r = h
        .raw(
            Request::get("/v1/users/alice/sessions")
                .header(header::AUTHORIZATION, format!("bearer {KEY}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn create_returns_token_once_and_never_secrets() {
    let h = Harness::new();
    let r = h
        .call(
            Method::POST,
            "/v1/sessions",
            Some(json!({
                "user": "alice", "roles": ["user"], "aal": 2, "remember": true,
                "device": {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0"},
                "data": {"cart": [1, 2]}
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header(header::CACHE_CONTROL), "no-store");
    let token = r.body["token"].as_str().unwrap();
    assert_eq!(token.len(), 43);
    let s = &r.body["session"];
    let id = s["id"].as_str().unwrap();
    assert_eq!(r.header(header::LOCATION), format!("/v1/sessions/{id}"));
    assert_eq!(s["user"], "alice");
    assert_eq!(s["roles"], json!(["user"]));
    assert_eq!(s["aal"], 2);
    assert_eq!(s["remember"], true);
    assert_eq!(s["idle_timeout_secs"], 7 * 86_400);
    assert_eq!(s["device"]["ip"], "203.0.113.7");
    assert_eq!(s["device"]["label"], "Firefox on Linux");
    assert_eq!(s["created_at"], "2026-01-01T00:00:00.000Z");
    assert_eq!(s["auth_time"], "2026-01-01T00:00:00.000Z");
    assert_eq!(s["version"], 1);
    let text = r.body.to_string();
    for secret in ["token_hash", "csrf", "data\""] {
        assert!(!s.to_string().contains(secret), "{secret} leaked: {text}");
    }
    // Reading the session never shows the token.
    let r = h
        .call(Method::GET, &format!("/v1/sessions/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.body.to_string().contains(token));
    assert_eq!(r.body["session"]["id"], id);
}

#[tokio::test]
async fn anonymous_sessions_and_bad_create_input() {
    let h = Harness::new();
    // No body at all: an anonymous session.
    let r = h.call(Method::POST, "/v1/sessions", None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["session"]["user"], Value::Null);
    assert_eq!(r.body["session"]["aal"], 0);
    for bad in [
        json!({"roles": ["admin"]}),
        json!({"aal": 2}),
        json!({"current_token": "x"}),
        json!({"user": ""}),
        json!({"user": "a\nb"}),
        json!({"user": "alice", "aal": 5}),
        json!({"user": "alice", "roles": [""]}),
        json!({"user": "alice", "rolez": []}),
        json!({"user": 5}),
        json!({"user": "alice", "device": {"ip": "not-an-ip"}}),
        json!({"user": "alice", "data": [1]}),
        json!([]),
    ] {
        let r = h
            .call(Method::POST, "/v1/sessions", Some(bad.clone()))
            .await;
        r.problem(400, "invalid-request");
        assert!(!r.body["detail"].as_str().unwrap().is_empty(), "{bad}");
    }
}

#[tokio::test]
async fn verify_can_return_the_data_in_the_same_call() {
    let h = Harness::new();
    let (token, _) = h
        .create(json!({"user": "alice", "data": {"cart": ["tea"]}}))
        .await;
    let plain = h.verify(&token).await;
    assert!(plain.body.get("data").is_none(), "data sent unasked");
    let r = h
        .call(
            Method::POST,
            "/v1/sessions/verify",
            Some(json!({"token": token, "include_data": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"], json!({"cart": ["tea"]}));
}

#[tokio::test]
async fn verify_touch_and_status() {
    let h = Harness::new();
    let (token, id) = h.create(json!({"user": "alice"})).await;
    let r = h.verify(&token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["session"]["id"], id);
    // 20 minutes later: a status check does not extend...
    h.clock.advance(Duration::from_secs(20 * 60));
    let r = h
        .call(
            Method::POST,
            "/v1/sessions/verify",
            Some(json!({"token": token, "touch": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["session"]["last_seen_at"],
        "2026-01-01T00:00:00.000Z"
    );
    // ...a verify does.
    let r = h.verify(&token).await;
    assert_eq!(
        r.body["session"]["last_seen_at"],
        "2026-01-01T00:20:00.000Z"
    );
    assert_eq!(r.body["session"]["expires_at"], "2026-01-01T00:50:00.000Z");
    // Extend records activity now, whatever the touch interval.
    h.clock.advance(Duration::from_secs(10));
    let r = h
        .call(
            Method::POST,
            "/v1/sessions/extend",
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["session"]["last_seen_at"],
        "2026-01-01T00:20:10.000Z"
    );
}

#[tokio::test]
async fn idle_and_absolute_expiry_are_reported() {
    let h = Harness::new();
    let (idle, idle_id) = h.create(json!({"user": "alice"})).await;
    let (abs, _) = h.create(json!({"user": "bob"})).await;
    // Bob stays active every 20 minutes; Alice does not.
    for _ in 0..2 {
        h.clock.advance(Duration::from_secs(20 * 60));
        assert_eq!(h.verify(&abs).await.status, StatusCode::OK);
    }
    h.verify(&idle)
        .await
        .problem(401, "session-expired")
        .reason("expired_idle");
    // By id, an ended session is 410 with its reason.
    let r = h
        .call(Method::GET, &format!("/v1/sessions/{idle_id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    h.clock.advance(Duration::from_secs(20 * 60));
    h.verify(&abs)
        .await
        .problem(401, "session-expired")
        .reason("expired_absolute");
}

#[tokio::test]
async fn expired_session_by_id_is_gone_with_reason() {
    let h = Harness::new();
    let (_, id) = h.create(json!({"user": "alice"})).await;
    h.clock.advance(Duration::from_secs(31 * 60));
    h.call(Method::GET, &format!("/v1/sessions/{id}"), None)
        .await
        .problem(410, "session-expired")
        .reason("expired_idle");
}

#[tokio::test]
async fn malformed_tokens_are_refused_before_any_store_access() {
    let h = Harness::new();
    let good_len_bad_alphabet = "+".repeat(43);
    let short = "A".repeat(42);
    let huge = "A".repeat(10 * 1024);
    let padded = format!("{}=", "A".repeat(42));
    for t in [
        &good_len_bad_alphabet,
        &short,
        &huge,
        &padded,
        &String::new(),
    ] {
        for path in [
            "/v1/sessions/verify",
            "/v1/sessions/extend",
            "/v1/sessions/logout",
        ] {
            let before = h.calls();
            let r = h.call(Method::POST, path, Some(json!({"token": t}))).await;
            r.problem(401, "malformed-token").reason("malformed");
            assert_eq!(h.calls(), before, "{path} touched the store");
        }
    }
    assert!(h.store.inner.is_empty());
}

#[tokio::test]
async fn unknown_tokens_never_create_anything() {
    let h = Harness::new();
    let unknown = "A".repeat(43);
    h.verify(&unknown)
        .await
        .problem(401, "session-expired")
        .reason("unknown");
    h.call(
        Method::POST,
        "/v1/sessions/extend",
        Some(json!({"token": unknown})),
    )
    .await
    .problem(401, "session-expired")
    .reason("unknown");
    // Logging out an unknown token is not an error, and creates nothing.
    let r = h
        .call(
            Method::POST,
            "/v1/sessions/logout",
            Some(json!({"token": unknown})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(h.store.inner.is_empty());
    // Signing in with an unknown current token creates exactly one session.
    let r = h
        .call(
            Method::POST,
            "/v1/sessions",
            Some(json!({"user": "alice", "current_token": unknown})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(h.store.inner.len(), 1);
}

#[tokio::test]
async fn logout_ends_the_session() {
    let h = Harness::new();
    let (token, id) = h.create(json!({"user": "alice"})).await;
    let r = h
        .call(
            Method::POST,
            "/v1/sessions/logout",
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    h.verify(&token)
        .await
        .problem(401, "session-expired")
        .reason("logged_out");
    // Twice is fine.
    let r = h
        .call(
            Method::POST,
            "/v1/sessions/logout",
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    h.call(Method::GET, &format!("/v1/sessions/{id}"), None)
        .await
        .problem(404, "not-found");
}

#[tokio::test]
async fn session_data_with_versions() {
    let h = Harness::new();
    let (_, id) = h
        .create(json!({"user": "alice", "data": {"theme": "dark"}}))
        .await;
    let uri = format!("/v1/sessions/{id}/data");
    let r = h.call(Method::GET, &uri, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"version": 1, "data": {"theme": "dark"}}));
    assert_eq!(r.header(header::ETAG), "\"1\"");

    let r = h
        .call_with(
            Method::PATCH,
            &uri,
            Some(json!({"cart": {"a": 1}, "theme": null})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({"version": 2, "data": {"cart": {"a": 1}}}));
    assert_eq!(r.header(header::ETAG), "\"2\"");

    // A stale precondition is a conflict, and nothing changes.
    let r = h
        .call_with(
            Method::PATCH,
            &uri,
            Some(json!({"x": 1})),
            &[("if-match", "\"1\"")],
        )
        .await;
    r.problem(409, "session-conflict");
    assert_eq!(r.body["current_version"], 2);
    assert_eq!(h.call(Method::GET, &uri, None).await.body["version"], 2);

    // Without a precondition, patches merge; `*` is no precondition.
    let r = h
        .call_with(
            Method::PATCH,
            &uri,
            Some(json!({"cart": {"b": 2}})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(r.body["data"], json!({"cart": {"a": 1, "b": 2}}));

    // A merge-patch content type is accepted.
    let r = h
        .raw(
            Request::patch(&uri)
                .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
                .header(header::CONTENT_TYPE, "application/merge-patch+json")
                .body(Body::from(r#"{"n":1}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"]["n"], 1);

    // Bad input.
    for (ifm, body) in [
        ("W/\"3\"", json!({})),
        ("3", json!({})),
        ("\"x\"", json!({})),
        ("*", json!([1])),
        ("*", json!("text")),
        ("*", Value::Null),
    ] {
        h.call_with(Method::PATCH, &uri, Some(body), &[("if-match", ifm)])
            .await
            .problem(400, "invalid-request");
    }
    // Data too large for the engine.
    let big = "x".repeat(70 * 1024);
    h.call(Method::PATCH, &uri, Some(json!({"big": big})))
        .await
        .problem(400, "invalid-request");
    // Unknown or malformed ids.
    h.call(
        Method::GET,
        &format!("/v1/sessions/{}/data", "A".repeat(22)),
        None,
    )
    .await
    .problem(404, "not-found");
    h.call(Method::GET, "/v1/sessions/not-an-id/data", None)
        .await
        .problem(400, "invalid-request");
}

#[tokio::test]
async fn bad_bodies_are_problems() {
    let h = Harness::new();
    let send = |ct: Option<&'static str>, body: Vec<u8>| {
        let mut b = Request::post("/v1/sessions/verify")
            .header(header::AUTHORIZATION, format!("Bearer {KEY}"));
        if let Some(ct) = ct {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        b.body(Body::from(body)).unwrap()
    };
    h.raw(send(Some("application/json"), b"{not json".to_vec()))
        .await
        .problem(400, "invalid-request");
    h.raw(send(Some("application/json"), b"{\"tokn\":\"x\"}".to_vec()))
        .await
        .problem(400, "invalid-request");
    h.raw(send(Some("application/json"), b"{\"token\":5}".to_vec()))
        .await
        .problem(400, "invalid-request");
    h.raw(send(Some("application/json"), Vec::new()))
        .await
        .problem(400, "invalid-request");
    h.raw(send(Some("text/plain"), b"{}".to_vec()))
        .await
        .problem(415, "invalid-request");
    h.raw(send(None, b"{}".to_vec()))
        .await
        .problem(415, "invalid-request");
    let huge = format!("{{\"token\":\"{}\"}}", "A".repeat(300 * 1024));
    h.raw(send(Some("application/json"), huge.into_bytes()))
        .await
        .problem(413, "invalid-request");
    // The same for a body that may be empty.
    let r = h
        .raw(
            Request::post("/v1/sessions")
                .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("user=alice"))
                .unwrap(),
        )
        .await;
    r.problem(415, "invalid-request");
    assert_eq!(h.calls(), 0);
}

#[tokio::test]
async fn regenerate_kills_the_old_token() {
    let h = Harness::new();
    let (old, id) = h
        .create(json!({"user": "alice", "roles": ["user"], "data": {"k": 1}}))
        .await;
    h.clock.advance(Duration::from_secs(60));
    let r = h
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/regenerate"),
            Some(json!({"roles": ["user", "admin"], "aal": 2})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.header(header::CACHE_CONTROL), "no-store");
    let new = r.body["token"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let s = &r.body["session"];
    assert_eq!(s["id"], id);
    assert_eq!(s["roles"], json!(["user", "admin"]));
    assert_eq!(s["aal"], 2);
    assert_eq!(s["idle_timeout_secs"], 600);
    assert_eq!(s["auth_time"], "2026-01-01T00:01:00.000Z");
    h.verify(&old)
        .await
        .problem(401, "session-expired")
        .reason("regenerated");
    assert_eq!(h.verify(&new).await.status, StatusCode::OK);
    // Data carried over.
    let r = h
        .call(Method::GET, &format!("/v1/sessions/{id}/data"), None)
        .await;
    assert_eq!(r.body["data"], json!({"k": 1}));
    // An empty body re-issues the token only.
    let r = h
        .call(Method::POST, &format!("/v1/sessions/{id}/regenerate"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    h.verify(&new).await.reason("regenerated");
    // Bad input and unknown sessions.
    h.call(
        Method::POST,
        &format!("/v1/sessions/{id}/regenerate"),
        Some(json!({"aal": 9})),
    )
    .await
    .problem(400, "invalid-request");
    h.call(
        Method::POST,
        &format!("/v1/sessions/{}/regenerate", "A".repeat(22)),
        None,
    )
    .await
    .problem(404, "not-found");
    // Anonymous sessions cannot gain roles.
    let (_, anon) = h.create(json!({})).await;
    h.call(
        Method::POST,
        &format!("/v1/sessions/{anon}/regenerate"),
        Some(json!({"roles": ["admin"]})),
    )
    .await
    .problem(400, "invalid-request");
}

#[tokio::test]
async fn sign_in_from_an_anonymous_session_carries_data() {
    let h = Harness::new();
    let (anon, anon_id) = h.create(json!({"data": {"cart": ["book"]}})).await;
    let r = h
        .call(
            Method::POST,
            "/v1/sessions",
            Some(json!({"user": "alice", "current_token": anon})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["session"]["id"].as_str().unwrap().to_owned();
    assert_ne!(id, anon_id);
    h.verify(&anon)
        .await
        .problem(401, "session-expired")
        .reason("regenerated");
    let r = h
        .call(Method::GET, &format!("/v1/sessions/{id}/data"), None)
        .await;
    assert_eq!(r.body["data"], json!({"cart": ["book"]}));
}

#[tokio::test]
async fn delete_session_with_reasons() {
    let h = Harness::new();
    let (t1, id1) = h.create(json!({"user": "alice"})).await;
    let (t2, id2) = h.create(json!({"user": "alice"})).await;
    let r = h
        .call(
            Method::DELETE,
            &format!("/v1/sessions/{id1}?reason=revoked_by_user"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    h.verify(&t1).await.reason("revoked_by_user");
    let r = h
        .call(Method::DELETE, &format!("/v1/sessions/{id2}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    h.verify(&t2)
        .await
        .problem(401, "session-expired")
        .reason("revoked_by_admin");
    h.call(Method::DELETE, &format!("/v1/sessions/{id2}"), None)
        .await
        .problem(404, "not-found");
    let (_, id3) = h.create(json!({"user": "alice"})).await;
    for bad in [
        "reason=expired_idle",
        "reason=regenerated",
        "reason=",
        "foo=1",
    ] {
        h.call(Method::DELETE, &format!("/v1/sessions/{id3}?{bad}"), None)
            .await
            .problem(400, "invalid-request");
    }
}

#[tokio::test]
async fn list_and_revoke_a_users_sessions() {
    let h = Harness::new();
    let (t1, id1) = h.create(json!({"user": "alice@example.com"})).await;
    let (t2, id2) = h.create(json!({"user": "alice@example.com"})).await;
    let (t3, _) = h.create(json!({"user": "alice@example.com"})).await;
    let (bob, _) = h.create(json!({"user": "bob"})).await;
    let uri = "/v1/users/alice%40example.com/sessions";
    let r = h.call(Method::GET, uri, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let ids: Vec<&str> = r.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&id1.as_str()) && ids.contains(&id2.as_str()));
    // Log out other devices.
    let r = h
        .call(
            Method::DELETE,
            &format!("{uri}?except={id2}&reason=revoked_by_user"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["ended"].as_array().unwrap().len(), 2);
    h.verify(&t1).await.reason("revoked_by_user");
    h.verify(&t3).await.reason("revoked_by_user");
    assert_eq!(h.verify(&t2).await.status, StatusCode::OK);
    // Disable the user: everything ends.
    let r = h
        .call(Method::DELETE, &format!("{uri}?reason=user_disabled"), None)
        .await;
    assert_eq!(r.body["ended"], json!([id2]));
    h.verify(&t2).await.reason("user_disabled");
    assert_eq!(
        h.call(Method::GET, uri, None).await.body["sessions"],
        json!([])
    );
    // Bob is untouched.
    assert_eq!(h.verify(&bob).await.status, StatusCode::OK);
    h.call(Method::DELETE, &format!("{uri}?except=nope"), None)
        .await
        .problem(400, "invalid-request");
    h.call(Method::GET, "/v1/users/a%0Ab/sessions", None)
        .await
        .problem(400, "invalid-request");
}

#[tokio::test]
async fn user_data_is_shared_and_versioned() {
    let h = Harness::new();
    let uri = "/v1/users/alice/data";
    let r = h.call(Method::GET, uri, None).await;
    assert_eq!(r.body, json!({"version": 0, "data": {}}));
    assert_eq!(r.header(header::ETAG), "\"0\"");
    let r = h
        .call_with(
            Method::PATCH,
            uri,
            Some(json!({"theme": "dark"})),
            &[("if-match", "\"0\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({"version": 1, "data": {"theme": "dark"}}));
    h.call_with(
        Method::PATCH,
        uri,
        Some(json!({"theme": "light"})),
        &[("if-match", "\"0\"")],
    )
    .await
    .problem(409, "session-conflict");
    let r = h
        .call(Method::PATCH, uri, Some(json!({"lang": "fr"})))
        .await;
    assert_eq!(
        r.body,
        json!({"version": 2, "data": {"theme": "dark", "lang": "fr"}})
    );
    h.call(Method::PATCH, uri, Some(json!(5)))
        .await
        .problem(400, "invalid-request");
}

#[tokio::test]
async fn session_limits() {
    let h = Harness::new();
    // admin: at most 3, the oldest is evicted.
    let (first, first_id) = h.create(json!({"user": "root", "roles": ["admin"]})).await;
    // Distinct creation times, so "oldest" is well defined.
    for _ in 0..2 {
        h.clock.advance(Duration::from_secs(1));
        h.create(json!({"user": "root", "roles": ["admin"]})).await;
    }
    h.clock.advance(Duration::from_secs(1));
    let r = h
        .call(
            Method::POST,
            "/v1/sessions",
            Some(json!({"user": "root", "roles": ["admin"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["evicted"], json!([first_id]));
    h.verify(&first).await.reason("evicted_by_limit");
    // solo: at most 1, new sign-ins refused.
    h.create(json!({"user": "carol", "roles": ["solo"]})).await;
    h.call(
        Method::POST,
        "/v1/sessions",
        Some(json!({"user": "carol", "roles": ["solo"]})),
    )
    .await
    .problem(409, "session-limit");
}

#[tokio::test]
async fn store_outage_is_503_without_internals() {
    let h = Harness::new();
    let (token, id) = h.create(json!({"user": "alice"})).await;
    h.store.set_down(true);
    let r = h.verify(&token).await;
    r.problem(503, "store-unavailable");
    assert!(!r.body["detail"].as_str().unwrap().contains("store down"));
    h.call(Method::GET, &format!("/v1/sessions/{id}"), None)
        .await
        .problem(503, "store-unavailable");
    h.call(Method::POST, "/v1/sessions", Some(json!({"user": "x"})))
        .await
        .problem(503, "store-unavailable");
    // Recovery without a restart.
    h.store.set_down(false);
    assert_eq!(h.verify(&token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let h = Harness::new();
    h.call(Method::GET, "/v1/nope", None)
        .await
        .problem(404, "not-found");
    h.call(Method::PUT, "/v1/sessions/verify", None)
        .await
        .problem(405, "method-not-allowed");
}

#[tokio::test]
async fn every_response_is_private() {
    let h = Harness::new();
    let (_, id) = h.create(json!({"user": "alice"})).await;
    for uri in [
        format!("/v1/sessions/{id}"),
        "/v1/users/alice/sessions".into(),
    ] {
        let r = h.call(Method::GET, &uri, None).await;
        assert_eq!(r.header(header::CACHE_CONTROL), "no-store");
        assert_eq!(r.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    }
}

const CHROME_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const FIREFOX_UA: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0";

#[tokio::test]
async fn verify_with_the_client_applies_the_binding_policy() {
    let h = Harness::new();
    let device = json!({ "ip": "203.0.113.7", "user_agent": CHROME_UA });
    let (token, id) = h.create(json!({ "user": "alice", "device": device })).await;
    let verify = |client: Value| {
        let token = token.clone();
        let h = &h;
        async move {
            h.call(
                Method::POST,
                "/v1/sessions/verify",
                Some(json!({ "token": token, "client": client })),
            )
            .await
        }
    };
    // The same /24: fine; the default policy logs another network and follows it.
    let r = verify(json!({ "ip": "203.0.113.99", "user_agent": CHROME_UA })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["session"]["step_up_required"], false);
    let r = verify(json!({ "ip": "198.51.100.1", "user_agent": CHROME_UA })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["session"]["device"]["ip"], "198.51.100.1");
    // Another browser: held for a step-up, named for the MFA call.
    let r = verify(json!({ "ip": "198.51.100.1", "user_agent": FIREFOX_UA })).await;
    r.problem(403, "step-up-required").reason("binding_changed");
    assert_eq!(r.body["session_id"], id.as_str());
    // Held for every caller, with or without a client.
    h.verify(&token).await.problem(403, "step-up-required");
    // A re-authentication from the new browser releases and rebinds it.
    let r = h
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/regenerate"),
            Some(json!({
                "aal": 1,
                "reauthenticated": true,
                "device": { "ip": "198.51.100.1", "user_agent": FIREFOX_UA },
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let token = r.body["token"].as_str().unwrap().to_owned();
    let r = h
        .call(
            Method::POST,
            "/v1/sessions/verify",
            Some(json!({ "token": token, "client": { "ip": "198.51.100.1", "user_agent": FIREFOX_UA } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["session"]["aal"], 1);
}

#[tokio::test]
async fn an_admin_session_used_from_another_browser_is_revoked() {
    let h = Harness::new();
    let device = json!({ "ip": "203.0.113.7", "user_agent": CHROME_UA });
    let (token, _) = h
        .create(json!({ "user": "root", "roles": ["admin"], "device": device }))
        .await;
    let r = h
        .call(
            Method::POST,
            "/v1/sessions/verify",
            Some(json!({ "token": token, "client": { "ip": "203.0.113.7", "user_agent": "curl/8.5.0" } })),
        )
        .await;
    r.problem(401, "session-expired").reason("hijack_suspected");
    h.verify(&token)
        .await
        .problem(401, "session-expired")
        .reason("hijack_suspected");
}

#[tokio::test]
async fn sign_ins_from_a_new_device_alert_once_through_the_outbox() {
    use sessionary_core::Clock as _;
    let clock = MockClock::default();
    let store = Arc::new(ProbeStore::new());
    let manager = SessionManager::builder(store.clone())
        .with_clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "sessionary-api-outbox-{}-{}",
        std::process::id(),
        clock.now().as_millis()
    ));
    let outbox = Arc::new(sessionary_notify::FileOutbox::new(dir.join("outbox.jsonl")));
    let alerts = Arc::new(sessionary_notify::NewDeviceAlerts::new(
        manager.clone(),
        outbox.clone(),
    ));
    let app = app(AppState::new(manager, ApiKeys::new([KEY])).with_alerts(alerts));
    let h = Harness { app, clock, store };
    let laptop =
        json!({"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0"});
    let phone = json!({"ip": "198.51.100.20", "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"});
    h.create(json!({"user": "alice", "device": laptop})).await; // first: no alert
    h.create(json!({"user": "alice", "device": phone})).await; // new: one alert
    h.create(json!({"user": "alice", "device": phone})).await; // known: none
    h.create(json!({"device": {"ip": "192.0.2.1", "user_agent": "curl/8.0"}}))
        .await; // anonymous: none
    let sent = outbox.read_all().await.unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].user.as_str(), "alice");
    assert_eq!(sent[0].device, "Firefox on Windows 10");
    assert_eq!(sent[0].network.as_deref(), Some("198.51.100.0/24"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn audit_lists_sign_in_logout_and_failed_verifications() {
    let h = Harness::audited();
    let device = json!({"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 Firefox/121.0"});
    let (token, id) = h
        .create(json!({"user": "alice", "roles": ["user"], "device": device}))
        .await;
    h.create(json!({"user": "bob", "roles": ["user"]})).await;
    h.clock.advance(Duration::from_secs(90));
    let r = h
        .call(
            Method::POST,
            "/v1/sessions/logout",
            Some(json!({ "token": token })),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    // A signed-out token is not a failure worth auditing (browsers keep
    // sending it); a malformed or never-issued one is.
    h.verify(&token).await.reason("logged_out");
    h.verify("not-a-token")
        .await
        .problem(401, "malformed-token");
    h.verify(&"A".repeat(43))
        .await
        .problem(401, "session-expired");

    let r = h.call(Method::GET, "/v1/audit?user=alice", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.header(header::CACHE_CONTROL), "no-store");
    let entries = r.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{}", r.body);
    assert_eq!(entries[0]["kind"], "ended");
    assert_eq!(entries[0]["detail"], "logged_out");
    assert_eq!(entries[0]["at"], "2026-01-01T00:01:30.000Z");
    assert_eq!(entries[1]["kind"], "created");
    assert_eq!(entries[1]["at"], "2026-01-01T00:00:00.000Z");
    for e in entries {
        assert_eq!(e["session_id"], id.as_str());
        assert_eq!(e["user"], "alice");
        assert_eq!(e["ip"], "203.0.113.7");
    }
    assert!(entries[0]["seq"].as_u64() > entries[1]["seq"].as_u64());
    assert_eq!(r.body["next_before"], Value::Null);

    let r = h
        .call(Method::GET, "/v1/audit?kind=verify_failed", None)
        .await;
    let details: Vec<&str> = r.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert_eq!(details, ["unknown_session", "malformed"]);

    let r = h
        .call(Method::GET, &format!("/v1/audit?session={id}"), None)
        .await;
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 2);
    // Never a token, in any entry.
    let r = h.call(Method::GET, "/v1/audit?limit=500", None).await;
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 5);
    assert!(!r.body.to_string().contains(&token));
}

#[tokio::test]
async fn audit_pages_with_next_before() {
    let h = Harness::audited();
    for _ in 0..5 {
        h.create(json!({"user": "alice"})).await;
    }
    let mut seen = 0;
    let mut uri = "/v1/audit?user=alice&limit=2".to_owned();
    loop {
        let r = h.call(Method::GET, &uri, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let page = r.body["entries"].as_array().unwrap();
        seen += page.len();
        match r.body["next_before"].as_u64() {
            Some(b) => {
                assert_eq!(page.len(), 2);
                assert_eq!(page[1]["seq"].as_u64(), Some(b));
                uri = format!("/v1/audit?user=alice&limit=2&before={b}");
            }
            None => break,
        }
    }
    assert_eq!(seen, 5);
}

#[tokio::test]
async fn audit_refuses_bad_parameters() {
    let h = Harness::audited();
    for q in [
        "limit=0",
        "limit=501",
        "limit=ten",
        "before=-1",
        "user=",
        "session=not-an-id",
        "kind=extended",
        "kind=anything",
        "colour=red",
    ] {
        let r = h.call(Method::GET, &format!("/v1/audit?{q}"), None).await;
        r.problem(400, "invalid-request");
    }
}

#[tokio::test]
async fn audit_needs_the_api_key() {
    let h = Harness::audited();
    let r = h
        .raw(Request::get("/v1/audit").body(Body::empty()).unwrap())
        .await;
    r.problem(401, "unauthorized");
    let r = h
        .raw(
            Request::get("/v1/audit")
                .header(
                    header::AUTHORIZATION,
                    "Bearer wrong-key-0123456789-abcdefghijklmnopqr",
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    r.problem(401, "unauthorized");
}

#[tokio::test]
async fn activity_records_views_beacons_and_errors_with_the_services_clock() {
    let h = Harness::audited();
    let (_, id) = h.create(json!({"user": "alice"})).await;
    let uri = format!("/v1/sessions/{id}/activity");
    let post = |body: Value| h.call(Method::POST, &uri, Some(body));
    assert_eq!(post(json!({"kind": "view", "path": "/"})).await.status, 202);
    h.clock.advance(Duration::from_secs(3));
    assert_eq!(post(json!({"kind": "left", "path": "/"})).await.status, 202);
    h.clock.advance(Duration::from_secs(1));
    // The query string is dropped: it may hold personal data.
    let r = post(json!({"kind": "view", "path": "/cart?coupon=SECRET"})).await;
    assert_eq!(r.status, 202);
    h.clock.advance(Duration::from_secs(10));
    post(json!({"kind": "error", "path": "/checkout", "status": 404})).await;
    post(json!({"kind": "view", "path": "/"})).await;
    h.clock.advance(Duration::from_secs(2));

    let r = h.call(Method::GET, &uri, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let views = r.body["views"].as_array().unwrap();
    let seen: Vec<_> = views
        .iter()
        .map(|v| {
            (
                v["path"].as_str().unwrap(),
                v["dwell_ms"].as_i64(),
                v["dwell_from"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("/", Some(3_000), "beacon"),
            ("/cart", Some(10_000), "next_view"),
            ("/", None, "open"),
        ]
    );
    assert_eq!(r.body["errors"][0]["status"], 404);
    assert_eq!(r.body["errors"][0]["path"], "/checkout");
    assert_eq!(r.body["started_at"], "2026-01-01T00:00:00.000Z");
    assert_eq!(r.body["length_ms"], 16_000);
    assert_eq!(r.body["time_per_path"][0]["path"], "/cart");
    assert!(!r.body.to_string().contains("SECRET"));
    // Page views stay out of the user's audit trail.
    let r = h.call(Method::GET, "/v1/audit?user=alice", None).await;
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 1, "{}", r.body);

    // Bad input: a clear problem, nothing recorded.
    post(json!({"kind": "view", "path": "relative"}))
        .await
        .problem(400, "invalid-request");
    post(json!({"kind": "error", "path": "/", "status": 200}))
        .await
        .problem(400, "invalid-request");
    post(json!({"kind": "jump", "path": "/"}))
        .await
        .problem(400, "invalid-request");
    let unknown = sessionary_core::SessionId::generate().unwrap();
    h.call(
        Method::POST,
        &format!("/v1/sessions/{unknown}/activity"),
        Some(json!({"kind": "view", "path": "/"})),
    )
    .await
    .problem(404, "not-found");
    h.call(Method::GET, "/v1/sessions/nope/activity", None)
        .await
        .problem(400, "invalid-request");
    let r = h.call(Method::GET, &uri, None).await;
    assert_eq!(r.body["views"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn activity_needs_the_audit_log() {
    let h = Harness::new();
    let (_, id) = h.create(json!({"user": "alice"})).await;
    h.call(Method::GET, &format!("/v1/sessions/{id}/activity"), None)
        .await
        .problem(404, "not-found");
}

#[tokio::test]
async fn quotas_are_charged_atomically_and_say_when_they_reset() {
    let h = Harness::new();
    let (_, id) = h.create(json!({"user": "alice"})).await;
    let uri = format!("/v1/sessions/{id}/quotas/downloads");
    let r = h.call(Method::GET, &uri, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["used"], 0);
    assert_eq!(r.body["limit"], 2);
    assert_eq!(r.body["remaining"], 2);
    assert_eq!(r.body["per"], "session");
    // An empty body charges 1.
    let r = h.call(Method::POST, &uri, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["used"].as_u64(), r.body["remaining"].as_u64()),
        (Some(1), Some(1))
    );
    // 2 more would pass the limit: refused, nothing charged.
    let r = h.call(Method::POST, &uri, Some(json!({"amount": 2}))).await;
    r.problem(429, "quota-exceeded");
    assert_eq!(r.body["quota"], "downloads");
    assert_eq!(r.body["used"], 1);
    assert_eq!(r.body["session_id"], id.as_str());
    assert_eq!(
        r.header(header::RETRY_AFTER),
        "",
        "per session: no Retry-After"
    );
    let r = h.call(Method::POST, &uri, Some(json!({"amount": 1}))).await;
    assert_eq!(r.body["remaining"], 0, "{}", r.body);

    // Hourly: Retry-After and resets_at at the next full hour.
    // A quarter past the mock clock's start (2026-01-01T00:00Z), within the session's hour.
    let start = 1_767_225_600_000i64;
    let hour = 3_600_000i64;
    h.clock.set(Timestamp(start + hour / 4));
    let uri = format!("/v1/sessions/{id}/quotas/exports");
    let r = h.call(Method::POST, &uri, Some(json!({"amount": 3}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = h.call(Method::POST, &uri, None).await;
    r.problem(429, "quota-exceeded");
    assert_eq!(r.body["per"], "1h");
    assert_eq!(r.body["resets_at"], Timestamp(start + hour).to_rfc3339());
    assert_eq!(r.header(header::RETRY_AFTER), "2700");

    // Byte quotas without a limit are only counted.
    let uri = format!("/v1/sessions/{id}/quotas/bytes_out");
    let r = h
        .call(Method::POST, &uri, Some(json!({"amount": 5000})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["used"], 5000);
    assert!(r.body.get("limit").is_none(), "{}", r.body);

    // Bad input: a clear 400, nothing charged.
    let bad = format!("/v1/sessions/{id}/quotas/Not%20A%20Name");
    h.call(Method::POST, &bad, None)
        .await
        .problem(400, "invalid-request");
    h.call(
        Method::POST,
        &format!("/v1/sessions/{id}/quotas/downloads"),
        Some(json!({"amount": 0})),
    )
    .await
    .problem(400, "invalid-request");
    h.call(
        Method::POST,
        "/v1/sessions/not-an-id/quotas/downloads",
        None,
    )
    .await
    .problem(400, "invalid-request");
    let r = h
        .call(
            Method::GET,
            &format!("/v1/sessions/{id}/quotas/downloads"),
            None,
        )
        .await;
    assert_eq!(r.body["used"], 2, "{}", r.body);
    // An unknown session: 404, nothing created.
    let ghost = "AAAAAAAAAAAAAAAAAAAAAA";
    h.call(
        Method::POST,
        &format!("/v1/sessions/{ghost}/quotas/downloads"),
        None,
    )
    .await
    .problem(404, "not-found");
}
