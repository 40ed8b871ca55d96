//! `GET /metrics`: Prometheus text that parses, moves when sessions are
//! created, verified, refused and revoked, and is not served to anyone
//! without a credential.

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sessionary_core::{MemoryStore, Policy, SessionManager};
use sessionary_server::metrics::Metrics;
use sessionary_server::{ApiKeys, AppState, MetricsAccess, app, metrics_router};
use tower::ServiceExt as _;

const KEY: &str = "test-api-key-0123456789-abcdefghijklmnop";
const SCRAPER: &str = "metrics-scraper-token-0123456789-abcdef";

async fn call(app: &Router, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
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
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn scrape_with(app: &Router, bearer: Option<&str>) -> (StatusCode, Option<String>, String) {
    let mut b = Request::get("/metrics");
    if let Some(t) = bearer {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let res = app
        .clone()
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let ct = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, ct, String::from_utf8(bytes.to_vec()).unwrap())
}

/// Parses the exposition; every line must be a sample, `HELP`/`TYPE`, or an
/// OpenMetrics comment (`# UNIT`, `# EOF`), and the text must end with `# EOF`.
fn parse(text: &str) -> prometheus_parse::Scrape {
    use prometheus_parse::LineInfo;
    for line in text.lines() {
        let ok = match LineInfo::parse(line) {
            LineInfo::Ignored => line.starts_with("# "),
            _ => true,
        };
        assert!(ok, "not Prometheus text: {line:?}");
    }
    assert_eq!(text.lines().last(), Some("# EOF"));
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The value of `name` with `label` = `value` (or without labels), 0 if absent.
fn value(s: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name} is not a single value"),
        })
        .sum()
}

fn histogram_count(s: &prometheus_parse::Scrape, name: &str) -> f64 {
    let h = s
        .samples
        .iter()
        .find(|x| x.metric == name)
        .unwrap_or_else(|| panic!("no {name}"));
    match &h.value {
        prometheus_parse::Value::Histogram(b) => {
            let inf = b.iter().find(|c| c.less_than.is_infinite()).unwrap();
            inf.count
        }
        other => panic!("{name} is {other:?}"),
    }
}

fn service(access: MetricsAccess, limit: Option<u32>) -> (Router, Metrics) {
    let metrics = Metrics::new();
    let mut policy = Policy::default();
    if let Some(n) = limit {
        policy.default.max_sessions = Some(n);
        policy.default.on_limit = sessionary_core::policy::LimitMode::RejectNew;
    }
    let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
        .with_policy(policy)
        .with_event_sink(Arc::new(metrics.clone()))
        .build()
        .unwrap();
    let state =
        AppState::new(manager, ApiKeys::new([KEY])).with_metrics(metrics.clone(), Some(access));
    (app(state), metrics)
}

#[tokio::test]
async fn metrics_parse_and_move_with_sessions() {
    let (app, _) = service(MetricsAccess::ApiKey, None);
    let (status, ct, text) = scrape_with(&app, Some(KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(
        ct.as_deref(),
        Some(sessionary_server::metrics::CONTENT_TYPE)
    );
    let before = parse(&text);
    assert_eq!(value(&before, "sessionary_sessions_active", None), 0.0);

    let (_, a) = call(
        &app,
        Method::POST,
        "/v1/sessions",
        Some(json!({"user": "alice"})),
    )
    .await;
    let (_, b) = call(
        &app,
        Method::POST,
        "/v1/sessions",
        Some(json!({"user": "bob"})),
    )
    .await;
    let (_, _anon) = call(&app, Method::POST, "/v1/sessions", Some(json!({}))).await;
    let token_a = a["token"].as_str().unwrap();
    let id_b = b["session"]["id"].as_str().unwrap();
    let (s, _) = call(
        &app,
        Method::POST,
        "/v1/sessions/verify",
        Some(json!({"token": token_a})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(&app, Method::DELETE, &format!("/v1/sessions/{id_b}"), None).await;
    assert!(s.is_success(), "{s}");
    let (s, _) = call(
        &app,
        Method::POST,
        "/v1/sessions/logout",
        Some(json!({"token": token_a})),
    )
    .await;
    assert!(s.is_success(), "{s}");
    // A refused verification: the token of the session just logged out.
    let (s, _) = call(
        &app,
        Method::POST,
        "/v1/sessions/verify",
        Some(json!({"token": token_a})),
    )
    .await;
    assert_eq!(s, 401);

    // Refusals that are reported: a revoked session's token, a malformed one.
    let token_b = b["token"].as_str().unwrap();
    let (s, _) = call(
        &app,
        Method::POST,
        "/v1/sessions/verify",
        Some(json!({"token": token_b})),
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = call(
        &app,
        Method::POST,
        "/v1/sessions/verify",
        Some(json!({"token": "x"})),
    )
    .await;
    assert_eq!(s, 401);

    let after = parse(&scrape_with(&app, Some(KEY)).await.2);
    let created = "sessionary_sessions_created_total";
    let ended = "sessionary_sessions_ended_total";
    assert_eq!(value(&after, created, Some(("kind", "user"))), 2.0);
    assert_eq!(value(&after, created, Some(("kind", "anonymous"))), 1.0);
    assert_eq!(
        value(&after, ended, Some(("reason", "revoked_by_admin"))),
        1.0
    );
    assert_eq!(value(&after, ended, Some(("reason", "logged_out"))), 1.0);
    assert_eq!(value(&after, "sessionary_sessions_active", None), 1.0);
    assert_eq!(
        value(
            &after,
            "sessionary_verify_failures_total",
            Some(("reason", "revoked_by_admin"))
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "sessionary_verify_failures_total",
            Some(("reason", "malformed"))
        ),
        1.0
    );
    // Signed-out sessions' tokens are refused but not reported (browsers
    // keep sending them).
    assert_eq!(
        value(
            &after,
            "sessionary_verify_failures_total",
            Some(("reason", "logged_out"))
        ),
        0.0
    );
    assert_eq!(
        histogram_count(&after, "sessionary_verify_duration_seconds"),
        4.0
    );
}

#[tokio::test]
async fn sign_ins_refused_by_the_limit_are_quota_refusals() {
    let (app, metrics) = service(MetricsAccess::ApiKey, Some(1));
    let (s, _) = call(
        &app,
        Method::POST,
        "/v1/sessions",
        Some(json!({"user": "alice"})),
    )
    .await;
    assert!(s.is_success());
    let (s, _) = call(
        &app,
        Method::POST,
        "/v1/sessions",
        Some(json!({"user": "alice"})),
    )
    .await;
    assert_eq!(s, 409);
    // Another engineer's quota calls this.
    metrics.quota_refused("api_calls_per_minute");
    let m = parse(&scrape_with(&app, Some(KEY)).await.2);
    let q = "sessionary_quota_refusals_total";
    assert_eq!(value(&m, q, Some(("limit", "concurrent_sessions"))), 1.0);
    assert_eq!(value(&m, q, Some(("limit", "api_calls_per_minute"))), 1.0);
}

#[tokio::test]
async fn metrics_need_a_credential() {
    let (app, _) = service(MetricsAccess::ApiKey, None);
    assert_eq!(scrape_with(&app, None).await.0, 401);
    assert_eq!(
        scrape_with(&app, Some("wrong-key-wrong-key-wrong-key-wrong"))
            .await
            .0,
        401
    );
    assert_eq!(scrape_with(&app, Some(KEY)).await.0, 200);

    // With a scraper token, the API key no longer reads them (and vice versa).
    let scraper = MetricsAccess::Token(Arc::new(ApiKeys::new([SCRAPER])));
    let (app, _) = service(scraper, None);
    assert_eq!(scrape_with(&app, Some(KEY)).await.0, 401);
    assert_eq!(scrape_with(&app, Some(SCRAPER)).await.0, 200);
    let (s, _) = call(&app, Method::GET, "/v1/users/alice/sessions", None).await;
    assert_eq!(s, 200, "the API key still works for the API");

    // A separate listener's router: only /metrics, with the token when set.
    let only = metrics_router(Metrics::new(), Some(ApiKeys::new([SCRAPER])));
    assert_eq!(scrape_with(&only, None).await.0, 401);
    assert_eq!(scrape_with(&only, Some(SCRAPER)).await.0, 200);
    let (s, _) = call(&only, Method::POST, "/v1/sessions", Some(json!({}))).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn without_metrics_there_is_no_endpoint() {
    let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let app = app(AppState::new(manager, ApiKeys::new([KEY])));
    assert_eq!(scrape_with(&app, Some(KEY)).await.0, 404);
}

#[tokio::test]
async fn store_failures_are_counted_by_kind() {
    let store = Arc::new(sessionary_testkit::probe::ProbeStore::new());
    let metrics = Metrics::new();
    let manager = SessionManager::builder(store.clone())
        .with_event_sink(Arc::new(metrics.clone()))
        .build()
        .unwrap();
    let state = AppState::new(manager, ApiKeys::new([KEY]))
        .with_metrics(metrics, Some(MetricsAccess::ApiKey));
    let app = app(state);
    let (_, a) = call(
        &app,
        Method::POST,
        "/v1/sessions",
        Some(json!({"user": "alice"})),
    )
    .await;
    let token = a["token"].as_str().unwrap();
    store.set_down(true);
    let (s, _) = call(
        &app,
        Method::POST,
        "/v1/sessions/verify",
        Some(json!({"token": token})),
    )
    .await;
    assert_eq!(s, 503);
    let (s, _) = call(
        &app,
        Method::POST,
        "/v1/sessions",
        Some(json!({"user": "bob"})),
    )
    .await;
    assert_eq!(s, 503);
    store.set_down(false);
    let m = parse(&scrape_with(&app, Some(KEY)).await.2);
    let e = "sessionary_store_errors_total";
    assert_eq!(value(&m, e, Some(("kind", "unavailable"))), 2.0);
    assert_eq!(value(&m, e, Some(("kind", "backend"))), 0.0);
    // The failed verification is still timed.
    assert_eq!(
        histogram_count(&m, "sessionary_verify_duration_seconds"),
        1.0
    );
}
