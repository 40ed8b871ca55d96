//! TOTP enrolment and step-up through the service API (`app(...).oneshot`),
//! codes computed from the injected `MockClock`.

// Test helpers outside #[test] fns: a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Method, Request, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sessionary_core::{Clock, MemoryStore, MockClock, SessionManager};
use sessionary_server::{ApiKeys, AppState, app};
use tower::ServiceExt as _;

const KEY: &str = "test-api-key-0123456789-abcdefghijklmnop";

struct Api {
    app: Router,
    clock: MockClock,
}

impl Api {
    fn new() -> Self {
        let clock = MockClock::default();
        let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
            .with_clock(Arc::new(clock.clone()))
            .build()
            .unwrap();
        Self {
            app: app(AppState::new(manager, ApiKeys::new([KEY]))),
            clock,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {KEY}"));
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
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, v)
    }

    fn code(&self, secret: &str) -> String {
        sessionary_mfa::testing::code_at(secret, self.clock.now()).unwrap()
    }
}

#[tokio::test]
async fn enrol_confirm_and_step_up_to_aal_2() {
    let api = Api::new();
    let (_, s) = api
        .call(Method::POST, "/v1/sessions", Some(json!({"user": "carol"})))
        .await;
    let (id, token) = (s["session"]["id"].as_str().unwrap(), s["token"].clone());
    assert_eq!(s["session"]["aal"], 1);

    let (st, e) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/mfa/enrollment"),
            None,
        )
        .await;
    assert_eq!(st, 201, "{e}");
    assert!(e["qr_svg"].as_str().unwrap().contains("<svg"));
    assert!(
        e["otpauth_url"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    assert_eq!(e["recovery_codes"].as_array().unwrap().len(), 10);
    let secret = e["secret"].as_str().unwrap().to_owned();
    let (_, status) = api.call(Method::GET, "/v1/users/carol/mfa", None).await;
    assert_eq!(status["enrolled"], false, "pending until confirmed");

    let (st, p) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/mfa/confirm"),
            Some(json!({"code": "000000"})),
        )
        .await;
    assert_eq!(st, 403, "{p}");
    let (st, _) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/mfa/confirm"),
            Some(json!({"code": api.code(&secret)})),
        )
        .await;
    assert_eq!(st, 204);
    let (_, status) = api.call(Method::GET, "/v1/users/carol/mfa", None).await;
    assert_eq!(status, json!({"enrolled": true, "recovery_codes_left": 10}));

    // The confirming code is spent; the next step's code steps up.
    api.clock.advance(Duration::from_secs(30));
    let code = api.code(&secret);
    let (st, up) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/mfa/step-up"),
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(st, 200, "{up}");
    assert_eq!(up["session"]["aal"], 2);
    assert_ne!(up["token"], token, "a new token");
    let (st, p) = api
        .call(
            Method::POST,
            "/v1/sessions/verify",
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(st, 401);
    assert_eq!(p["reason"], "regenerated");
    // The same code again is a replay.
    let (st, p) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/mfa/step-up"),
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(st, 403);
    assert_eq!(p["reason"], "replayed");
    // A recovery code works once.
    let rc = e["recovery_codes"][0].clone();
    let (st, _) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/mfa/step-up"),
            Some(json!({"code": rc})),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/mfa/step-up"),
            Some(json!({"code": rc})),
        )
        .await;
    assert_eq!(st, 403);
}

#[tokio::test]
async fn sensitive_changes_need_a_recent_sign_in() {
    let api = Api::new();
    let (_, s) = api
        .call(Method::POST, "/v1/sessions", Some(json!({"user": "dave"})))
        .await;
    let id = s["session"]["id"].as_str().unwrap().to_owned();
    api.clock.advance(Duration::from_secs(6 * 60));
    let (st, p) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/mfa/enrollment"),
            None,
        )
        .await;
    assert_eq!(st, 403, "{p}");
    assert_eq!(p["type"], "/problems/reauthentication-required");
    let (st, p) = api
        .call(Method::DELETE, &format!("/v1/sessions/{id}/mfa"), None)
        .await;
    assert_eq!(st, 403, "{p}");
    // Anonymous sessions cannot enrol.
    let (_, anon) = api
        .call(Method::POST, "/v1/sessions", Some(json!({})))
        .await;
    let anon_id = anon["session"]["id"].as_str().unwrap();
    let (st, _) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{anon_id}/mfa/enrollment"),
            None,
        )
        .await;
    assert_eq!(st, 403);
    // Step-up without an enrolment.
    let (st, p) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/mfa/step-up"),
            Some(json!({"code": "123456"})),
        )
        .await;
    assert_eq!(st, 409, "{p}");
}
