//! Quotas through `QuotaLayer` (sessionary-axum) on every store the service
//! opens: 50 parallel downloads in one session with a limit of 5 let exactly 5
//! handlers run, on memory, SQLite, PostgreSQL (`SESSIONARY_TEST_POSTGRES_URL`,
//! a fresh schema) and Redis (a private `redis-server`); byte counts equal the
//! bodies in and out; the `429` says which limit and when it resets. The
//! PostgreSQL and Redis cases skip when their server is unreachable, unless
//! `CI=true`.

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use futures_util::stream;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::Value;
use sessionary_axum::{ChargedQuotas, QuotaLayer, SessionConfig, SessionLayer};
use sessionary_core::{
    EventKind, MockClock, NewSession, Policy, QuotaLimit, SessionManager, SessionStore, Timestamp,
    UserId,
};
use sessionary_server::config::{Config, Secret, StoreConfig, StoreKind};
use sessionary_server::serve::open_store;
use sessionary_testkit::redis_server::{RedisServer, free_port, skip};
use tower::ServiceExt as _;

/// The file every download returns.
const FILE: &[u8] = b"0123456789 a file of forty-two bytes here.";
const COOKIE: &str = "__Host-session";

fn policy() -> Policy {
    let mut p = Policy::default();
    let q = &mut p.default.quotas;
    q.units
        .insert("downloads".into(), QuotaLimit::per_session(5));
    q.units.insert(
        "exports".into(),
        QuotaLimit::every(2, Duration::from_secs(3600)),
    );
    q.bytes_out = Some(QuotaLimit::per_session(1000));
    q.bytes_in = Some(QuotaLimit::per_session(500));
    q.upload_max = Some(100);
    p.validate().unwrap();
    p
}

struct Harness {
    app: Router,
    manager: SessionManager,
    clock: MockClock,
    /// How many times a download handler ran.
    ran: Arc<AtomicUsize>,
}

impl Harness {
    fn new(store: Arc<dyn SessionStore>, policy: Policy) -> Self {
        let clock = MockClock::default();
        let manager = SessionManager::builder(store)
            .with_clock(Arc::new(clock.clone()))
            .with_policy(policy)
            .build()
            .unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&ran);
        let download = move |charged: axum::Extension<ChargedQuotas>| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let left = charged.get("downloads").and_then(|u| u.remaining());
                (
                    [("downloads-left", left.map_or("-".into(), |n| n.to_string()))],
                    FILE,
                )
            }
        };
        let stream_body = |chunks: usize| {
            let parts =
                (0..chunks).map(|i| Ok::<_, Infallible>(Bytes::from(vec![b'a' + i as u8; 100])));
            Body::from_stream(stream::iter(parts))
        };
        let app = Router::new()
            .route(
                "/files/{name}",
                get(download).layer(QuotaLayer::new().with_units("downloads", 1).with_bytes()),
            )
            .route(
                "/export",
                get(|| async { "exported" }).layer(QuotaLayer::new().with_units("exports", 1)),
            )
            .route(
                "/stream/{n}",
                get(
                    move |axum::extract::Path(n): axum::extract::Path<usize>| async move {
                        stream_body(n)
                    },
                )
                .layer(QuotaLayer::new().with_bytes()),
            )
            .route(
                "/bye",
                post(|session: sessionary_axum::Session| async move {
                    session.logout().await.unwrap();
                    "bye"
                })
                .layer(QuotaLayer::new().with_bytes()),
            )
            .route(
                "/upload",
                post(|body: Bytes| async move { format!("got {}", body.len()) })
                    .layer(QuotaLayer::new().with_bytes()),
            )
            .layer(SessionLayer::new(manager.clone(), SessionConfig::new()));
        Self {
            app,
            manager,
            clock,
            ran,
        }
    }

    async fn sign_in(&self) -> (String, sessionary_core::SessionId) {
        let issued = self
            .manager
            .create(NewSession::user(UserId::new("alice").unwrap()))
            .await
            .unwrap();
        (issued.token.encode(), issued.session.id)
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, http::HeaderMap, Bytes) {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, http::HeaderMap, Bytes) {
        let mut b = Request::get(path);
        if let Some(t) = token {
            b = b.header(header::COOKIE, format!("{COOKIE}={t}"));
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    async fn counter(&self, id: &sessionary_core::SessionId, name: &str) -> u64 {
        let rec = self.manager.session(id).await.unwrap();
        rec.counters.get(name).copied().unwrap_or(0)
    }
}

/// 50 parallel downloads in one session with a limit of 5: exactly 5 handlers
/// run, the other 45 get `429 quota-exceeded`, and `bytes_out` holds exactly
/// the 5 bodies sent.
async fn fifty_parallel_downloads(store: Arc<dyn SessionStore>, name: &str) {
    let h = Arc::new(Harness::new(store, policy()));
    let (token, id) = h.sign_in().await;
    // Reported for ARCHITECTURE.md, never asserted.
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let h = Arc::clone(&h);
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            h.get(&format!("/files/f{i}"), Some(&token)).await
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        match status {
            StatusCode::OK => {
                assert_eq!(&body[..], FILE);
                ok += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let doc: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(doc["type"], "/problems/quota-exceeded", "{doc}");
                assert_eq!(doc["quota"], "downloads", "{doc}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body:?}"),
        }
    }
    eprintln!(
        "quotas: 50 parallel downloads on {name}: {:?} for all answers",
        started.elapsed()
    );
    assert_eq!((ok, refused), (5, 45));
    assert_eq!(
        h.ran.load(Ordering::SeqCst),
        5,
        "refused requests never reach the handler"
    );
    assert_eq!(h.counter(&id, "quota:downloads").await, 5);
    assert_eq!(
        h.counter(&id, "quota:bytes_out").await,
        5 * FILE.len() as u64,
        "bytes_out equals the bodies sent"
    );
}

fn settings(store: StoreConfig) -> sessionary_server::config::Settings {
    Config {
        store,
        ..Config::default()
    }
    .validate()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_downloads_on_memory() {
    let opened = open_store(&settings(StoreConfig {
        kind: StoreKind::Memory,
        ..StoreConfig::default()
    }))
    .await
    .unwrap();
    fifty_parallel_downloads(opened.store, "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_downloads_on_sqlite() {
    let dir = std::env::temp_dir().join(format!(
        "sessionary-quotas-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let opened = open_store(&settings(StoreConfig {
        kind: StoreKind::Sqlite,
        path: Some(dir.join("sessions.db")),
        ..StoreConfig::default()
    }))
    .await
    .unwrap();
    fifty_parallel_downloads(opened.store, "sqlite").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_downloads_on_postgres() {
    let Some(url) = sessionary_testkit::postgres::fresh_schema("quotas_fifty").await else {
        return;
    };
    let opened = open_store(&settings(StoreConfig {
        kind: StoreKind::Postgres,
        url: Some(Secret::new(url)),
        max_connections: Some(8),
        ..StoreConfig::default()
    }))
    .await
    .unwrap();
    fifty_parallel_downloads(opened.store, "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_downloads_on_redis() {
    let port = free_port();
    let mut server = match RedisServer::start(port, &["--save", ""]) {
        Ok(s) => s,
        Err(e) => {
            skip(
                "quotas_fifty_redis",
                &format!("cannot run redis-server: {e}"),
            );
            return;
        }
    };
    let opened = open_store(&settings(StoreConfig {
        kind: StoreKind::Redis,
        url: Some(Secret::new(server.url())),
        ..StoreConfig::default()
    }))
    .await
    .unwrap();
    fifty_parallel_downloads(opened.store, "redis").await;
    server.stop();
}

fn memory() -> Arc<dyn SessionStore> {
    Arc::new(sessionary_core::MemoryStore::new())
}

#[tokio::test]
async fn byte_counts_equal_the_bodies_in_and_out() {
    let h = Harness::new(memory(), policy());
    let (token, id) = h.sign_in().await;
    let cookie = format!("{COOKIE}={token}");

    // A streamed response (no length): charged frame by frame.
    let (status, headers, body) = h.get("/stream/3", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get(header::CONTENT_LENGTH).is_none(), "streamed");
    assert_eq!(body.len(), 300);
    assert_eq!(h.counter(&id, "quota:bytes_out").await, 300);
    // A response of known size: charged in one step.
    let (status, _, body) = h.get("/files/a", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        h.counter(&id, "quota:bytes_out").await,
        300 + body.len() as u64
    );

    // An upload with a length, and a streamed one.
    let req = Request::post("/upload")
        .header(header::COOKIE, &cookie)
        .body(Body::from(vec![1u8; 60]))
        .unwrap();
    let (status, _, body) = h.send(req).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(&body[..], b"got 60");
    let chunks = (0..3).map(|_| Ok::<_, Infallible>(Bytes::from_static(&[2u8; 25])));
    let req = Request::post("/upload")
        .header(header::COOKIE, &cookie)
        .body(Body::from_stream(stream::iter(chunks)))
        .unwrap();
    let (status, _, body) = h.send(req).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(&body[..], b"got 75");
    assert_eq!(h.counter(&id, "quota:bytes_in").await, 135);
    // The answers "got 60" and "got 75" are response bytes too.
    assert_eq!(
        h.counter(&id, "quota:bytes_out").await,
        300 + FILE.len() as u64 + 6 + 6
    );
}

#[tokio::test]
async fn uploads_over_the_cap_are_refused_before_they_are_read() {
    let h = Harness::new(memory(), policy());
    let (token, id) = h.sign_in().await;
    let cookie = format!("{COOKIE}={token}");
    // With a length: 413 without reading, nothing charged.
    let req = Request::post("/upload")
        .header(header::COOKIE, &cookie)
        .body(Body::from(vec![1u8; 101]))
        .unwrap();
    let (status, headers, body) = h.send(req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["type"], "/problems/upload-too-large", "{doc}");
    assert_eq!(doc["max_bytes"], 100, "{doc}");
    // Streamed: cut at the cap; only what passed through was charged.
    let chunks = (0..3).map(|_| Ok::<_, Infallible>(Bytes::from_static(&[2u8; 40])));
    let req = Request::post("/upload")
        .header(header::COOKIE, &cookie)
        .body(Body::from_stream(stream::iter(chunks)))
        .unwrap();
    let (status, _, _) = h.send(req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.counter(&id, "quota:bytes_in").await, 80);
}

#[tokio::test]
async fn a_byte_budget_refuses_whole_responses_and_cuts_streams() {
    let mut p = policy();
    p.default.quotas.bytes_out = Some(QuotaLimit::per_session(350));
    let h = Harness::new(memory(), p);
    let (token, id) = h.sign_in().await;
    // 200 of 350: passes.
    let (status, _, _) = h.get("/stream/2", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    // Another stream of two 100-byte frames: the first passes (300), the
    // second would pass the budget: the body fails after 100 bytes.
    let res = h
        .app
        .clone()
        .oneshot(
            Request::get("/stream/2")
                .header(header::COOKIE, format!("{COOKIE}={token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the stream had started");
    let err = res.into_body().collect().await.unwrap_err();
    assert!(err.to_string().contains("bytes_out"), "{err}");
    assert_eq!(h.counter(&id, "quota:bytes_out").await, 300);
    // Responses of known size: 42 bytes fit (342), the next 42 do not: a
    // clean 429, nothing charged.
    let (status, _, _) = h.get("/files/x", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = h.get("/files/x", Some(&token)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["quota"], "bytes_out", "{doc}");
    assert_eq!(h.counter(&id, "quota:bytes_out").await, 342);
}

#[tokio::test]
async fn the_429_says_which_limit_and_when_it_resets() {
    let h = Harness::new(memory(), policy());
    let mut events = h.manager.subscribe();
    // Signed in at 10:45 UTC (on the mock clock's first day, 2026-01-01):
    // the hourly window resets at 11:00.
    let day = 1_767_225_600_000i64;
    h.clock.set(Timestamp(day + 10 * 3_600_000 + 45 * 60_000));
    let (token, id) = h.sign_in().await;
    for _ in 0..2 {
        assert_eq!(h.get("/export", Some(&token)).await.0, StatusCode::OK);
    }
    let (status, headers, body) = h.get("/export", Some(&token)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[header::RETRY_AFTER], "900");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["type"], "/problems/quota-exceeded");
    assert_eq!(doc["status"], 429);
    assert_eq!(doc["quota"], "exports");
    assert_eq!(doc["limit"], 2);
    assert_eq!(doc["used"], 2);
    assert_eq!(doc["per"], "1h");
    let reset = Timestamp(day + 11 * 3_600_000).to_rfc3339();
    assert_eq!(doc["resets_at"], reset.as_str());
    let detail = doc["detail"].as_str().unwrap();
    assert!(
        detail.contains("exports") && detail.contains(&reset),
        "{detail}"
    );
    // The refusal is an event (metrics count them).
    let refused = loop {
        let e = events.recv().await.unwrap();
        if let EventKind::QuotaRefused { quota } = &e.kind {
            break (quota.clone(), e.session_id);
        }
    };
    assert_eq!(refused, ("exports".to_owned(), Some(id)));
    // At 11:00 the window starts again (the session is still live: 15 min idle).
    h.clock.set(Timestamp(day + 11 * 3_600_000));
    assert_eq!(h.get("/export", Some(&token)).await.0, StatusCode::OK);
    assert_eq!(
        h.counter(&id, "quota:exports@1767265200").await,
        1,
        "the 11:00 window"
    );

    // A per-session limit resets with the session: no Retry-After, the
    // session's absolute expiry as the latest reset.
    for i in 0..5 {
        let (status, headers, _) = h.get("/files/a", Some(&token)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["downloads-left"], (4 - i).to_string().as_str());
    }
    let (status, headers, body) = h.get("/files/a", Some(&token)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.get(header::RETRY_AFTER).is_none());
    let doc: Value = serde_json::from_slice(&body).unwrap();
    let rec = h.manager.session(&id).await.unwrap();
    assert_eq!(doc["per"], "session");
    assert_eq!(
        doc["resets_at"],
        rec.absolute_expires_at.to_rfc3339().as_str()
    );
    assert!(
        doc["detail"].as_str().unwrap().contains("new session"),
        "{doc}"
    );
}

#[tokio::test]
async fn requests_without_a_session_are_charged_only_under_an_anonymous_limit() {
    // No anonymous limit: passes uncounted and creates nothing.
    let h = Harness::new(memory(), policy());
    let (status, headers, _) = h.get("/files/a", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers.get(header::SET_COOKIE).is_none(),
        "no session for a mere download"
    );

    // An anonymous limit of 1: the first download creates an anonymous
    // session and charges it; the same session is refused next.
    let mut p = policy();
    p.anonymous
        .quotas
        .units
        .insert("downloads".into(), QuotaLimit::per_session(1));
    let h = Harness::new(memory(), p);
    let (status, headers, _) = h.get("/files/a", None).await;
    assert_eq!(status, StatusCode::OK);
    let set = headers[header::SET_COOKIE].to_str().unwrap();
    let token = set
        .strip_prefix(&format!("{COOKIE}="))
        .and_then(|s| s.split(';').next())
        .unwrap()
        .to_owned();
    let (status, _, body) = h.get("/files/a", Some(&token)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body:?}");
    assert_eq!(
        h.ran.load(Ordering::SeqCst),
        1,
        "the refused download never ran"
    );
}

/// Over real HTTP/1.1: a stream cut by the byte budget never reaches the
/// client as a complete response: the connection is closed without the final
/// chunk (after the status line and some frames, or, when the server had not
/// flushed anything yet, before the status line), and the client never gets
/// more than the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_by_the_budget_is_an_incomplete_body_for_the_client() {
    let mut p = policy();
    p.default.quotas.bytes_out = Some(QuotaLimit::per_session(250));
    let h = Harness::new(memory(), p);
    let (token, id) = h.sign_in().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = h.app.clone();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let sent = reqwest::Client::new()
        .get(format!("http://{addr}/stream/5"))
        .header(header::COOKIE, format!("{COOKIE}={token}"))
        .send()
        .await;
    let mut got = 0;
    let end = match sent {
        Err(e) => Err(e),
        Ok(mut res) => {
            assert_eq!(res.status(), 200);
            loop {
                match res.chunk().await {
                    Ok(Some(c)) => got += c.len(),
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        }
    };
    assert!(
        end.is_err(),
        "the response must not look complete ({got} bytes)"
    );
    assert!(got <= 250, "never more than the budget: {got}");
    assert_eq!(h.counter(&id, "quota:bytes_out").await, 200);
    server.abort();
}

/// Signing out in a metered handler is no error: the ended session is not
/// charged, no session is created for the response, and the answer passes.
#[tokio::test]
async fn a_handler_that_ends_the_session_still_answers() {
    let mut p = policy();
    p.anonymous.quotas.bytes_out = Some(QuotaLimit::per_session(1000));
    let h = Harness::new(memory(), p);
    let (token, _) = h.sign_in().await;
    let req = Request::post("/bye")
        .header(header::COOKIE, format!("{COOKIE}={token}"))
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = h.send(req).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(&body[..], b"bye");
    let cookies: Vec<_> = headers.get_all(header::SET_COOKIE).iter().collect();
    assert_eq!(cookies.len(), 1, "only the removal cookie: {cookies:?}");
    assert!(
        cookies[0].to_str().unwrap().contains("Max-Age=0"),
        "{cookies:?}"
    );
    // HEAD is not charged for bytes it does not send.
    let (token, id) = h.sign_in().await;
    let req = Request::head("/files/a")
        .header(header::COOKIE, format!("{COOKIE}={token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(req).await.0, StatusCode::OK);
    assert_eq!(h.counter(&id, "quota:bytes_out").await, 0);
}
