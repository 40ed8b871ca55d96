//! The service on PostgreSQL: the store `serve` opens from `[store] kind =
//! "postgres"` (in a fresh schema on the server of
//! `SESSIONARY_TEST_POSTGRES_URL`), behind `app(state)`: health, create,
//! verify, revoke, and the audit log. Skips without a server, unless `CI=true`.

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sessionary_core::{AuditLog, SessionManager, SystemClock};
use sessionary_server::config::{Config, Secret, StoreConfig, StoreKind};
use sessionary_server::serve::open_store;
use sessionary_server::{ApiKeys, AppState, app};
use tower::ServiceExt as _;

const KEY: &str = "test-api-key-0123456789-abcdefghijklmnop";

async fn call(
    app: &axum::Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"));
    let req = match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres_creates_verifies_and_revokes() {
    let Some(url) = sessionary_testkit::postgres::fresh_schema("serve_on_postgres").await else {
        return;
    };
    // As `sessionary serve` reads `[store]`.
    let config = Config {
        store: StoreConfig {
            kind: StoreKind::Postgres,
            url: Some(Secret::new(url)),
            max_connections: Some(4),
            ..StoreConfig::default()
        },
        ..Config::default()
    };
    let settings = config.validate().unwrap();
    let opened = open_store(&settings).await.unwrap();
    let clock: Arc<dyn sessionary_core::Clock> = Arc::new(SystemClock);
    let audit = AuditLog::spawn(Arc::clone(&opened.store), Arc::clone(&clock));
    let manager = SessionManager::builder(Arc::clone(&opened.store))
        .with_clock(clock)
        .with_event_sink(audit.clone())
        .build()
        .unwrap();
    let app = app(AppState::new(manager, ApiKeys::new([KEY])).with_audit(audit));

    let (status, body) = call(&app, Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"status": "ok", "store": "ok"}));

    let (status, body) = call(
        &app,
        Method::POST,
        "/v1/sessions",
        Some(json!({"user": "alice"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let id = body["session"]["id"].as_str().unwrap().to_owned();

    let verify = json!({ "token": token });
    let (status, body) = call(
        &app,
        Method::POST,
        "/v1/sessions/verify",
        Some(verify.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["session"]["user"], "alice", "{body}");

    let (status, body) = call(&app, Method::GET, "/v1/users/alice/sessions", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sessions"].as_array().unwrap().len(), 1, "{body}");

    let uri = format!("/v1/sessions/{id}?reason=revoked_by_user");
    let (status, _) = call(&app, Method::DELETE, &uri, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(&app, Method::POST, "/v1/sessions/verify", Some(verify)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["reason"], "revoked_by_user", "{body}");

    // The audit log is in PostgreSQL too, newest first.
    let (status, body) = call(&app, Method::GET, "/v1/audit?user=alice", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let kinds: Vec<&str> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ended", "created"], "{body}");

    // Closed, the store answers 503 on health.
    opened.close().await;
    let (status, body) = call(&app, Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}
