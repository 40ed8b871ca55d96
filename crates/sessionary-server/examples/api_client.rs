//! An API client's life with Sessionary: sign in through the service API, call
//! a protected route with an access token, refresh, revoke.
//!
//! `cargo run -p sessionary-server --example api_client`
//!
//! The service runs in this process on a free port (memory store, fresh keys),
//! so the example needs nothing else; against a real `sessionary serve`, use
//! its URL and the API key it printed.

use std::sync::Arc;

use serde_json::{Value, json};
use sessionary_core::{Clock, MemoryStore, SessionManager, SystemClock};
use sessionary_server::demo::{DemoOptions, DemoUsers};
use sessionary_server::{ApiKeys, AppState, app_with_demo};
use sessionary_token::{AccessTokens, KeyRing, Revocations, SigningAlg, SigningKey};

const API_KEY: &str = "example-api-key-0123456789-abcdefghijklmnop";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = start_service().await?;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{url}{path}"))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
    };

    // 1. Your backend signs the user in (after checking the password) ...
    let session: Value = post("/v1/sessions", json!({"user": "alice", "roles": ["user"]}))
        .await?
        .json()
        .await?;
    // ... and exchanges the session for tokens it hands to the client.
    let tokens: Value = post("/v1/tokens", json!({"session_token": session["token"]}))
        .await?
        .json()
        .await?;
    let access = tokens["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!(
        "access token (expires in {} s): {}...",
        tokens["expires_in"],
        &access[..24]
    );

    // 2. The client calls a protected route with the access token. Resource
    //    servers verify it themselves with the JWKS, or with sessionary-axum's
    //    `Bearer` extractor as the demo's /api routes do.
    let cart: Value = http
        .post(format!("{url}/api/cart"))
        .bearer_auth(&access)
        .json(&json!({"product": "tea"}))
        .send()
        .await?
        .json()
        .await?;
    println!("POST /api/cart -> {cart}");

    // 3. Before it expires, the client refreshes: a new access token and the
    //    next refresh token (the old one is spent; reusing it later would end
    //    the session as a stolen token).
    let refreshed: Value = post(
        "/v1/tokens/refresh",
        json!({"refresh_token": tokens["refresh_token"]}),
    )
    .await?
    .json()
    .await?;
    println!(
        "refreshed: new refresh token differs: {}",
        refreshed["refresh_token"] != tokens["refresh_token"]
    );

    // 4. Signing out: revoke the refresh token and end the session; the access
    //    token is refused from that moment.
    post(
        "/v1/tokens/revoke",
        json!({"refresh_token": refreshed["refresh_token"]}),
    )
    .await?;
    post("/v1/sessions/logout", json!({"token": session["token"]})).await?;
    let after = http
        .get(format!("{url}/api/cart"))
        .bearer_auth(refreshed["access_token"].as_str().unwrap_or_default())
        .send()
        .await?;
    let status = after.status();
    let problem: Value = after.json().await?;
    println!("after sign-out: {status} {}", problem["reason"]);
    Ok(())
}

/// The service with the demo's /api routes, on 127.0.0.1 and a free port.
async fn start_service() -> anyhow::Result<String> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let revocations = Revocations::new(Arc::clone(&clock));
    let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
        .with_event_sink(revocations.clone())
        .build()?;
    let ring = KeyRing::new(SigningKey::generate(SigningAlg::EdDsa)?);
    let tokens = Arc::new(
        AccessTokens::builder("sessionary-example", "example-api", ring)
            .with_clock(clock)
            .with_revocations(revocations)
            .build()?,
    );
    let state = AppState::new(manager, ApiKeys::new([API_KEY])).with_tokens(Arc::clone(&tokens));
    let users = DemoUsers::from_passwords("unused", "unused")?;
    let app = app_with_demo(state, DemoOptions::new(users).with_access_tokens(tokens));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
