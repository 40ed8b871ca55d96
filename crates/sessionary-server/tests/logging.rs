//! Tokens never appear in logs, even at TRACE level (ASVS 5 16.2.5).
//!
//! Its own test binary, and the process-wide subscriber: `tracing` caches each
//! call site's interest process-wide, so a test running on another thread with no
//! subscriber could otherwise switch this test's log lines off.

// Test helpers: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use http::{Method, Request, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sessionary_core::{MemoryStore, SessionManager};
use sessionary_server::{ApiKeys, AppState, app};
use tower::ServiceExt as _;

const KEY: &str = "test-api-key-0123456789-abcdefghijklmnop";

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn call(app: &Router, method: Method, uri: &str, body: Option<Value>) -> Value {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"));
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let res = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

#[test]
fn tokens_are_never_logged() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let (t1, t2, id, t3, demo_id) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
                .build()
                .unwrap();
            let app = app(AppState::new(manager, ApiKeys::new([KEY])));
            let created = call(
                &app,
                Method::POST,
                "/v1/sessions",
                Some(json!({"user": "alice"})),
            )
            .await;
            let t1 = created["token"].as_str().unwrap().to_owned();
            let id = created["session"]["id"].as_str().unwrap().to_owned();
            call(
                &app,
                Method::POST,
                "/v1/sessions/verify",
                Some(json!({"token": t1})),
            )
            .await;
            let r = call(
                &app,
                Method::POST,
                &format!("/v1/sessions/{id}/regenerate"),
                None,
            )
            .await;
            let t2 = r["token"].as_str().unwrap().to_owned();
            call(
                &app,
                Method::POST,
                "/v1/sessions/verify",
                Some(json!({"token": t1})),
            )
            .await;
            call(
                &app,
                Method::POST,
                "/v1/sessions/logout",
                Some(json!({"token": t2})),
            )
            .await;
            // The demo's pages (behind its own SessionLayer): the request
            // span carries the session id too.
            let demo_manager = SessionManager::builder(Arc::new(MemoryStore::new()))
                .build()
                .unwrap();
            let issued = demo_manager
                .create(sessionary_core::NewSession::user(
                    sessionary_core::UserId::new("alice").unwrap(),
                ))
                .await
                .unwrap();
            let demo = sessionary_server::app_with_demo(
                AppState::new(demo_manager, ApiKeys::new([KEY])),
                sessionary_server::demo::DemoOptions::new(
                    sessionary_server::demo::DemoUsers::from_passwords("pw-alice", "pw-admin")
                        .unwrap(),
                ),
            );
            let t3 = issued.token.encode();
            let res = demo
                .oneshot(
                    Request::get("/")
                        .header(header::COOKIE, format!("session={t3}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            (t1, t2, id, t3, issued.session.id.to_string())
        });
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains(&id),
        "the session id should be logged:\n{logs}"
    );
    assert!(!logs.contains(&t1), "token logged:\n{logs}");
    assert!(!logs.contains(&t2), "token logged:\n{logs}");
    assert!(!logs.contains(&t3), "token logged:\n{logs}");
    assert!(
        logs.lines()
            .any(|l| l.contains("route=\"/\"") && l.contains(&format!("sid={demo_id}"))),
        "the demo's request span should carry the session id:\n{logs}"
    );
    assert!(!logs.contains(KEY), "API key logged");
}
