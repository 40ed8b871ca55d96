//! CSRF layer and token tests, through a small axum router and `oneshot`.

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use sessionary_axum::csrf::{
    CsrfConfig, CsrfLayer, CsrfRejection, CsrfSecretExt, TOKEN_LEN, check_request_origin,
    token_for, verify_token,
};
use sessionary_core::record::CsrfSecret;
use tower::ServiceExt as _;

const HOST: &str = "shop.example";
const OWN: &str = "https://shop.example";
const ALLOWED: &str = "https://admin.shop.example";
const FORM: &str = "application/x-www-form-urlencoded";

fn secret() -> CsrfSecret {
    CsrfSecret([0x42; 32])
}

fn other_secret() -> CsrfSecret {
    CsrfSecret([0x24; 32])
}

fn config() -> CsrfConfig {
    CsrfConfig::new().with_allowed_origin(ALLOWED)
}

/// A router echoing the request body, behind the CSRF layer, with the session's secret
/// inserted the way the session layer does (when `secret` is `Some`).
fn app_with(config: CsrfConfig, secret: Option<CsrfSecret>) -> Router {
    let router = Router::new()
        .route("/echo", any(|body: String| async move { body }))
        .route(
            "/vary",
            any(|| async { ([(header::VARY, "Accept-Encoding")], "ok") }),
        )
        .layer(CsrfLayer::new(config));
    match secret {
        Some(s) => router.layer(Extension(CsrfSecretExt(s))),
        None => router,
    }
}

fn app() -> Router {
    app_with(config(), Some(secret()))
}

fn token() -> String {
    token_for(&secret()).expect("rng")
}

fn post(uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::HOST, HOST)
}

async fn send(app: Router, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let response: Response = app.oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// Asserts a problem+json CSRF rejection with the given reason.
fn assert_problem(status: StatusCode, headers: &HeaderMap, body: &str, reason: &str) {
    assert_eq!(status, StatusCode::FORBIDDEN, "body: {body}");
    assert_eq!(
        headers.get(header::CONTENT_TYPE).expect("content type"),
        "application/problem+json"
    );
    let json: serde_json::Value = serde_json::from_str(body).expect("json");
    assert_eq!(json["type"], "/problems/csrf-failed");
    assert_eq!(json["status"], 403);
    assert_eq!(json["reason"], reason, "body: {body}");
    assert!(json["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(json["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

// ---- tokens ----

#[test]
fn masked_tokens_differ_per_render_yet_both_verify() {
    let a = token();
    let b = token();
    assert_ne!(a, b);
    assert_eq!(a.len(), TOKEN_LEN);
    assert!(verify_token(&secret(), &a));
    assert!(verify_token(&secret(), &b));
}

#[test]
fn token_of_another_session_fails() {
    let theirs = token_for(&other_secret()).expect("rng");
    assert!(!verify_token(&secret(), &theirs));
}

#[test]
fn malformed_tokens_fail_without_panic() {
    let good = token();
    let s = secret();
    assert!(!verify_token(&s, ""));
    assert!(!verify_token(&s, &good[..TOKEN_LEN - 1]));
    assert!(!verify_token(&s, &good[..43]));
    assert!(!verify_token(&s, &format!("{good}A")));
    assert!(!verify_token(&s, &format!("{good}==")));
    assert!(!verify_token(&s, &"!".repeat(TOKEN_LEN)));
    assert!(!verify_token(&s, &"é".repeat(TOKEN_LEN / 2)));
    assert!(!verify_token(&s, &"A".repeat(10 * 1024)));
    assert!(!verify_token(&s, &"A".repeat(TOKEN_LEN)));
    // Characters outside the url-safe alphabet.
    let mut standard = good.clone();
    standard.replace_range(10..11, "+");
    assert!(!verify_token(&s, &standard));
    // One flipped character in the masked half.
    let mut flipped = good.clone().into_bytes();
    flipped[60] = if flipped[60] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    assert!(!verify_token(&s, &flipped));
    // The unmasked value itself (an unmasked or differently encoded token) is refused.
    assert!(!verify_token(&s, &good[43..]));
}

#[test]
fn secrets_are_redacted_in_debug() {
    let ext = CsrfSecretExt(secret());
    let shown = format!("{ext:?}");
    assert!(shown.contains("REDACTED"));
    assert!(!shown.contains("66"), "{shown}");
}

// ---- the layer: tokens ----

#[tokio::test]
async fn post_without_token_is_refused_with_problem() {
    let req = post("/echo").body(Body::from("x")).expect("request");
    let (status, headers, body) = send(app(), req).await;
    assert_problem(status, &headers, &body, "missing_token");
}

#[tokio::test]
async fn post_with_header_token_passes() {
    let req = post("/echo")
        .header("x-csrf-token", token())
        .body(Body::from("payload"))
        .expect("request");
    let (status, _, body) = send(app(), req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "payload");
}

#[tokio::test]
async fn post_with_another_sessions_token_is_refused() {
    let theirs = token_for(&other_secret()).expect("rng");
    let req = post("/echo")
        .header("x-csrf-token", theirs)
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = send(app(), req).await;
    assert_problem(status, &headers, &body, "invalid_token");
}

#[tokio::test]
async fn garbage_header_token_is_refused() {
    let req = post("/echo")
        .header("x-csrf-token", "A".repeat(10 * 1024))
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = send(app(), req).await;
    assert_problem(status, &headers, &body, "invalid_token");
}

#[tokio::test]
async fn form_post_with_field_passes_and_handler_gets_whole_body() {
    let form = format!("item=42&csrf_token={}&qty=3", token());
    let req = post("/echo")
        .header(header::CONTENT_TYPE, format!("{FORM}; charset=UTF-8"))
        .header(header::CONTENT_LENGTH, form.len())
        .body(Body::from(form.clone()))
        .expect("request");
    let (status, _, body) = send(app(), req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, form);
}

#[tokio::test]
async fn form_post_with_wrong_field_is_refused() {
    let form = format!(
        "item=42&csrf_token={}",
        token_for(&other_secret()).expect("rng")
    );
    let req = post("/echo")
        .header(header::CONTENT_TYPE, FORM)
        .body(Body::from(form))
        .expect("request");
    let (status, headers, body) = send(app(), req).await;
    assert_problem(status, &headers, &body, "invalid_token");
}

#[tokio::test]
async fn form_post_without_field_is_refused() {
    let req = post("/echo")
        .header(header::CONTENT_TYPE, FORM)
        .body(Body::from("item=42"))
        .expect("request");
    let (status, headers, body) = send(app(), req).await;
    assert_problem(status, &headers, &body, "missing_token");
}

#[tokio::test]
async fn token_field_in_a_non_form_body_is_not_accepted() {
    // Only url-encoded forms are parsed; a JSON body must use the header.
    let req = post("/echo")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(format!("csrf_token={}", token())))
        .expect("request");
    let (status, headers, body) = send(app(), req).await;
    assert_problem(status, &headers, &body, "missing_token");
}

#[tokio::test]
async fn oversized_form_is_refused() {
    let cfg = config().with_body_limit(1024);
    let form = format!("pad={}&csrf_token={}", "x".repeat(2048), token());
    // Declared length over the limit.
    let req = post("/echo")
        .header(header::CONTENT_TYPE, FORM)
        .header(header::CONTENT_LENGTH, form.len())
        .body(Body::from(form.clone()))
        .expect("request");
    let (status, headers, body) = send(app_with(cfg.clone(), Some(secret())), req).await;
    assert_problem(status, &headers, &body, "body_too_large");
    // No declared length: the limit applies while reading.
    let req = post("/echo")
        .header(header::CONTENT_TYPE, FORM)
        .body(Body::from(form))
        .expect("request");
    let (status, headers, body) = send(app_with(cfg, Some(secret())), req).await;
    assert_problem(status, &headers, &body, "body_too_large");
}

#[tokio::test]
async fn header_token_skips_body_buffering() {
    // With the header, a large form body is passed on untouched.
    let cfg = config().with_body_limit(16);
    let form = format!("pad={}", "x".repeat(4096));
    let req = post("/echo")
        .header(header::CONTENT_TYPE, FORM)
        .header("x-csrf-token", token())
        .body(Body::from(form.clone()))
        .expect("request");
    let (status, _, body) = send(app_with(cfg, Some(secret())), req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, form);
}

#[tokio::test]
async fn unsafe_request_without_session_is_refused() {
    let req = post("/echo")
        .header("x-csrf-token", token())
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = send(app_with(config(), None), req).await;
    assert_problem(status, &headers, &body, "missing_session");
}

// ---- the layer: origins ----

#[tokio::test]
async fn cross_site_is_refused_even_with_valid_token() {
    let req = post("/echo")
        .header("sec-fetch-site", "cross-site")
        .header(header::ORIGIN, OWN)
        .header("x-csrf-token", token())
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = send(app(), req).await;
    assert_problem(status, &headers, &body, "cross_site_request");
}

#[tokio::test]
async fn same_origin_fetch_metadata_passes() {
    let req = post("/echo")
        .header("sec-fetch-site", "same-origin")
        .header(header::ORIGIN, OWN)
        .header("x-csrf-token", token())
        .body(Body::empty())
        .expect("request");
    let (status, _, _) = send(app(), req).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn same_site_needs_a_known_origin() {
    for (origin, expected) in [
        (Some("https://blog.shop.example"), StatusCode::FORBIDDEN),
        (None, StatusCode::FORBIDDEN),
        (Some(ALLOWED), StatusCode::OK),
        (Some(OWN), StatusCode::OK),
    ] {
        let mut req = post("/echo")
            .header("sec-fetch-site", "same-site")
            .header("x-csrf-token", token());
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        let (status, _, body) = send(app(), req.body(Body::empty()).expect("request")).await;
        assert_eq!(status, expected, "origin {origin:?}: {body}");
    }
}

#[tokio::test]
async fn unknown_fetch_site_value_falls_back_to_origin() {
    let req = post("/echo")
        .header("sec-fetch-site", "something-new")
        .header(header::ORIGIN, "https://evil.example")
        .header("x-csrf-token", token())
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = send(app(), req).await;
    assert_problem(status, &headers, &body, "foreign_origin");
}

#[tokio::test]
async fn null_origin_is_refused() {
    let req = post("/echo")
        .header(header::ORIGIN, "null")
        .header("x-csrf-token", token())
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = send(app(), req).await;
    assert_problem(status, &headers, &body, "null_origin");
}

#[tokio::test]
async fn foreign_origin_is_refused() {
    for origin in [
        "https://evil.example",
        "http://shop.example",
        "https://shop.example:8443",
        "https://shop.example.evil.example",
        "not an origin",
    ] {
        let req = post("/echo")
            .header(header::ORIGIN, origin)
            .header("x-csrf-token", token())
            .body(Body::empty())
            .expect("request");
        let (status, headers, body) = send(app(), req).await;
        assert_problem(status, &headers, &body, "foreign_origin");
    }
}

#[tokio::test]
async fn own_and_allowed_origins_pass() {
    for origin in [OWN, ALLOWED, "HTTPS://Shop.Example:443"] {
        let req = post("/echo")
            .header(header::ORIGIN, origin)
            .header("x-csrf-token", token())
            .body(Body::empty())
            .expect("request");
        let (status, _, body) = send(app(), req).await;
        assert_eq!(status, StatusCode::OK, "{origin}: {body}");
    }
    // Without the allow-list entry the other origin is foreign.
    let req = post("/echo")
        .header(header::ORIGIN, ALLOWED)
        .header("x-csrf-token", token())
        .body(Body::empty())
        .expect("request");
    let (status, _, _) = send(app_with(CsrfConfig::new(), Some(secret())), req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn referer_is_the_fallback_without_origin() {
    let req = post("/echo")
        .header(header::REFERER, "https://evil.example/page?x=1")
        .header("x-csrf-token", token())
        .body(Body::empty())
        .expect("request");
    let (status, headers, body) = send(app(), req).await;
    assert_problem(status, &headers, &body, "foreign_origin");

    let req = post("/echo")
        .header(header::REFERER, "https://shop.example/cart?step=2")
        .header("x-csrf-token", token())
        .body(Body::empty())
        .expect("request");
    let (status, _, _) = send(app(), req).await;
    assert_eq!(status, StatusCode::OK);

    // Origin wins over Referer.
    let req = post("/echo")
        .header(header::ORIGIN, "https://evil.example")
        .header(header::REFERER, "https://shop.example/cart")
        .header("x-csrf-token", token())
        .body(Body::empty())
        .expect("request");
    let (status, _, _) = send(app(), req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[test]
fn origin_check_without_origin_or_referer_defers_to_token() {
    let (parts, ()) = Request::post("/echo")
        .header(header::HOST, HOST)
        .body(())
        .expect("request")
        .into_parts();
    assert_eq!(check_request_origin(&parts, &config()), Ok(()));
}

#[test]
fn origin_check_uses_configured_scheme() {
    let (parts, ()) = Request::post("/echo")
        .header(header::HOST, "localhost:3000")
        .header(header::ORIGIN, "http://localhost:3000")
        .body(())
        .expect("request")
        .into_parts();
    assert_eq!(
        check_request_origin(&parts, &CsrfConfig::new()),
        Err(CsrfRejection::ForeignOrigin)
    );
    let dev = CsrfConfig::new().with_scheme(axum::http::uri::Scheme::HTTP);
    assert_eq!(check_request_origin(&parts, &dev), Ok(()));
}

// ---- the layer: exemptions ----

#[tokio::test]
async fn safe_methods_are_never_checked() {
    for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
        let req = Request::builder()
            .method(method.clone())
            .uri("/echo")
            .header(header::HOST, HOST)
            .header("sec-fetch-site", "cross-site")
            .header(header::ORIGIN, "null")
            .body(Body::empty())
            .expect("request");
        let (status, _, _) = send(app_with(config(), None), req).await;
        assert_eq!(status, StatusCode::OK, "{method}");
    }
}

#[tokio::test]
async fn other_unsafe_methods_are_checked() {
    for method in [Method::PUT, Method::PATCH, Method::DELETE] {
        let req = Request::builder()
            .method(method.clone())
            .uri("/echo")
            .header(header::HOST, HOST)
            .body(Body::empty())
            .expect("request");
        let (status, _, _) = send(app(), req).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method}");
    }
}

#[tokio::test]
async fn bearer_json_api_is_exempt() {
    let bearer = || {
        post("/echo")
            .header(header::AUTHORIZATION, "Bearer abc.def.ghi")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{\"a\":1}"))
            .expect("request")
    };
    let (status, _, body) = send(app(), bearer()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "{\"a\":1}");
    // With the exemption turned off, the same request needs a token.
    let strict = config().with_exempt_bearer(false);
    let (status, headers, body) = send(app_with(strict, Some(secret())), bearer()).await;
    assert_problem(status, &headers, &body, "missing_token");
    // Other schemes are not exempt.
    let req = post("/echo")
        .header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
        .body(Body::empty())
        .expect("request");
    let (status, _, _) = send(app(), req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

// ---- responses ----

#[tokio::test]
async fn vary_is_appended_to_every_response() {
    // Success, safe method.
    let req = Request::get("/echo")
        .header(header::HOST, HOST)
        .body(Body::empty())
        .expect("request");
    let (_, headers, _) = send(app(), req).await;
    let vary: Vec<_> = headers.get_all(header::VARY).iter().collect();
    assert_eq!(vary, ["Sec-Fetch-Site, Origin"]);
    // Rejection.
    let req = post("/echo").body(Body::empty()).expect("request");
    let (status, headers, _) = send(app(), req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        headers.get(header::VARY).expect("vary"),
        "Sec-Fetch-Site, Origin"
    );
    // An existing Vary is kept.
    let req = Request::get("/vary")
        .header(header::HOST, HOST)
        .body(Body::empty())
        .expect("request");
    let (_, headers, _) = send(app(), req).await;
    let vary: Vec<_> = headers.get_all(header::VARY).iter().collect();
    assert_eq!(vary, ["Accept-Encoding", "Sec-Fetch-Site, Origin"]);
}

#[tokio::test]
async fn html_requests_get_a_page() {
    let req = post("/echo")
        .header(
            header::ACCEPT,
            "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
        )
        .header(header::CONTENT_TYPE, FORM)
        .body(Body::from("item=1"))
        .expect("request");
    let (status, headers, body) = send(app(), req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"))
    );
    assert!(body.contains("expired or was refused"), "{body}");
    assert!(body.contains("<a href=\"/\">"), "{body}");
}

#[test]
fn rejection_into_response_is_problem_json() {
    let response = CsrfRejection::InvalidToken.into_response();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers().get(header::CONTENT_TYPE).expect("ct"),
        "application/problem+json"
    );
}

// ---- end to end, behind the real session layer ----

mod with_session_layer {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use axum::routing::{get, post};
    use axum::{Router, response::Response};
    use sessionary_axum::csrf::{CsrfConfig, CsrfLayer, token_for};
    use sessionary_axum::{Session, SessionConfig, SessionLayer};
    use sessionary_core::{MemoryStore, SessionManager};
    use tower::ServiceExt as _;

    /// Creates an anonymous session if needed and renders a token for it.
    async fn form(session: Session) -> Result<String, StatusCode> {
        session
            .insert("seen", true)
            .await
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        let record = session.record().ok_or(StatusCode::INTERNAL_SERVER_ERROR)?;
        token_for(&record.csrf_secret).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn router(manager: &SessionManager) -> Router {
        Router::new()
            .route("/form", get(form))
            .route("/submit", post(|| async { "done" }))
            // Inside the session layer, whose `Session` carries the secret.
            .layer(CsrfLayer::new(CsrfConfig::new()))
            .layer(SessionLayer::new(manager.clone(), SessionConfig::new()))
    }

    async fn call(app: &Router, req: Request<Body>) -> Response {
        app.clone().oneshot(req).await.expect("infallible")
    }

    /// Visits `/form`; returns the `Cookie` pair and the rendered token.
    async fn visit(app: &Router) -> (String, String) {
        let req = Request::get("/form")
            .header(header::HOST, "shop.example")
            .body(Body::empty())
            .expect("request");
        let res = call(app, req).await;
        assert_eq!(res.status(), StatusCode::OK);
        let cookie = res
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("set-cookie")
            .to_owned();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .expect("body");
        (cookie, String::from_utf8(bytes.to_vec()).expect("utf-8"))
    }

    fn submit(cookie: &str, token: &str) -> Request<Body> {
        Request::post("/submit")
            .header(header::HOST, "shop.example")
            .header(header::ORIGIN, "https://shop.example")
            .header(header::COOKIE, cookie)
            .header("x-csrf-token", token)
            .body(Body::empty())
            .expect("request")
    }

    #[tokio::test]
    async fn token_is_bound_to_the_cookie_session() {
        let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
            .build()
            .expect("manager");
        let app = router(&manager);
        let (alice_cookie, alice_token) = visit(&app).await;
        let (bob_cookie, bob_token) = visit(&app).await;
        assert_ne!(alice_cookie, bob_cookie);

        let res = call(&app, submit(&alice_cookie, &alice_token)).await;
        assert_eq!(res.status(), StatusCode::OK);
        let res = call(&app, submit(&bob_cookie, &bob_token)).await;
        assert_eq!(res.status(), StatusCode::OK);

        // Bob's token with Alice's cookie, and the reverse, are refused.
        let res = call(&app, submit(&alice_cookie, &bob_token)).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let res = call(&app, submit(&bob_cookie, &alice_token)).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);

        // No cookie: no session, refused even with a token.
        let req = Request::post("/submit")
            .header(header::HOST, "shop.example")
            .header("x-csrf-token", alice_token)
            .body(Body::empty())
            .expect("request");
        assert_eq!(call(&app, req).await.status(), StatusCode::FORBIDDEN);
    }
}
