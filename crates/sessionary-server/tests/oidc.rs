//! The OpenID Connect provider on a real socket, with the `openidconnect` crate
//! as the relying party: discovery, code + PKCE, ID token validation (EdDSA,
//! ES256, RS256), userinfo, refresh, the refusals, single sign-on, and logout
//! (RP-initiated and back-channel, received by a small axum server). Time is a
//! `MockClock` started at the real time (the RP checks `exp` by the real
//! clock), moved only where expiry is tested.

// Test helpers outside #[test] fns: a panic is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{Path, State};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret,
    CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, TokenResponse as _,
};
use parking_lot::Mutex;
use serde_json::Value;
use sessionary_core::{
    AuditLog, AuditQuery, EndReason, MemoryStore, MockClock, Privilege, SessionId, SessionManager,
    UserId,
};
use sessionary_server::demo::{DemoOptions, DemoUsers};
use sessionary_server::metrics::Metrics;
use sessionary_server::oidc::{ChildLink, Client, IdTokenKeys, OidcSettings, Provider};
use sessionary_server::{ApiKeys, AppState, app_with_demo};
use sessionary_token::{AccessTokens, KeyRing, Revocations, SigningAlg, SigningKey};
use tokio::sync::mpsc;

const ALICE_PW: &str = "alice-password";
const ADMIN_PW: &str = "admin-password";

fn users() -> DemoUsers {
    static USERS: OnceLock<DemoUsers> = OnceLock::new();
    USERS
        .get_or_init(|| DemoUsers::from_passwords(ALICE_PW, ADMIN_PW).unwrap())
        .clone()
}

/// A logout token received by the test RP's back-channel endpoint.
struct Received {
    client: String,
    token: String,
}

struct Op {
    base: String,
    clock: MockClock,
    manager: SessionManager,
    audit: Arc<AuditLog>,
    logouts: tokio::sync::Mutex<mpsc::UnboundedReceiver<Received>>,
    rp: String,
    metrics: Metrics,
}

fn client(id: &str, alg: SigningAlg, rp: &str, secret: Option<&str>) -> Client {
    Client {
        id: id.to_owned(),
        name: format!("App {id}"),
        secret: secret.map(str::to_owned),
        redirect_uris: vec![format!("{rp}/{id}/callback")],
        post_logout_redirect_uris: vec![format!("{rp}/{id}/")],
        backchannel_logout_uri: Some(format!("{rp}/{id}/backchannel-logout")),
        id_token_alg: alg,
    }
}

async fn backchannel(
    State(tx): State<mpsc::UnboundedSender<Received>>,
    Path(client): Path<String>,
    axum::Form(form): axum::Form<std::collections::HashMap<String, String>>,
) -> http::StatusCode {
    let token = form.get("logout_token").cloned().unwrap_or_default();
    let _ = tx.send(Received { client, token });
    http::StatusCode::OK
}

async fn provider() -> Op {
    // The relying parties' back-channel receiver.
    let (tx, rx) = mpsc::unbounded_channel();
    let rp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rp = format!("http://{}", rp_listener.local_addr().unwrap());
    let receiver = axum::Router::new()
        .route(
            "/{client}/backchannel-logout",
            axum::routing::post(backchannel),
        )
        .with_state(tx);
    tokio::spawn(async move { axum::serve(rp_listener, receiver).await });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let clock = MockClock::new(i64::try_from(real_now).unwrap());
    let dyn_clock: Arc<dyn sessionary_core::Clock> = Arc::new(clock.clone());
    let revocations = Revocations::new(Arc::clone(&dyn_clock));
    let (sink, queue) = sessionary_server::oidc::logout_channel();
    let seal = sessionary_core::KeyRing::generate(1).unwrap();
    let store: Arc<dyn sessionary_core::SessionStore> = Arc::new(MemoryStore::new());
    let audit = AuditLog::spawn(Arc::clone(&store), Arc::clone(&dyn_clock));
    let manager = SessionManager::builder(Arc::clone(&store))
        .with_clock(Arc::clone(&dyn_clock))
        .with_event_sink(audit.clone())
        .with_keys(seal.clone())
        .with_event_sink(revocations.clone())
        .with_event_sink(sink)
        .build()
        .unwrap();
    let tokens = Arc::new(
        AccessTokens::builder(
            "sessionary",
            "sessionary-api",
            KeyRing::new(SigningKey::generate(SigningAlg::EdDsa).unwrap()),
        )
        .with_clock(dyn_clock)
        .with_revocations(revocations)
        .build()
        .unwrap(),
    );
    let settings = OidcSettings {
        issuer: None,
        clients: vec![
            client("app-a", SigningAlg::EdDsa, &rp, Some("secret-a")),
            client("app-b", SigningAlg::Es256, &rp, Some("secret-b")),
            client("app-c", SigningAlg::Rs256, &rp, Some("secret-c")),
            client("app-p", SigningAlg::EdDsa, &rp, None),
        ],
    };
    let keys = IdTokenKeys::generate(&settings.algs()).unwrap();
    let metrics = Metrics::new();
    let provider = Arc::new(
        Provider::new(
            &settings,
            base.clone(),
            keys,
            manager.clone(),
            Arc::clone(&tokens),
            seal,
        )
        .unwrap()
        .with_audit(Arc::clone(&audit))
        .with_metrics(metrics.clone()),
    );
    provider.spawn_logout_worker(queue);
    let state = AppState::new(manager.clone(), ApiKeys::new(["k".repeat(40)])).with_tokens(tokens);
    let app = app_with_demo(state, DemoOptions::new(users()).with_oidc(provider));
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Op {
        base,
        clock,
        manager,
        audit,
        logouts: tokio::sync::Mutex::new(rx),
        rp,
        metrics,
    }
}

impl Op {
    /// `sessionary_oidc_events_total{event="<event>"}` (0 before the first).
    fn count(&self, event: &str) -> u64 {
        let prefix = format!("sessionary_oidc_events_total{{event=\"{event}\"}} ");
        self.metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map_or(0, |n| n.parse().unwrap())
    }

    /// Waits (at most 10 s) until the count of `event` is `n`; the
    /// back-channel deliveries are counted in the background.
    async fn wait_count(&self, event: &str, n: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.count(event) != n {
            assert!(
                std::time::Instant::now() < deadline,
                "{event}: {} after 10 s, expected {n}",
                self.count(event)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// An HTTP client that does not follow redirects (the test follows them).
fn http() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A browser: one cookie jar holding the demo's `session` cookie.
struct Browser {
    http: openidconnect::reqwest::Client,
    cookie: Mutex<Option<String>>,
}

struct Answer {
    status: u16,
    location: String,
    body: String,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: http(),
            cookie: Mutex::new(None),
        }
    }

    async fn send(&self, req: openidconnect::reqwest::RequestBuilder) -> Answer {
        let mut req = req.header("sec-fetch-site", "same-origin");
        if let Some(c) = self.cookie.lock().clone() {
            req = req.header("cookie", format!("session={c}"));
        }
        let res = req.send().await.unwrap();
        for v in res.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            if let Some(value) = v.split(';').next().unwrap().strip_prefix("session=") {
                *self.cookie.lock() = (!value.is_empty()).then(|| value.to_owned());
            }
        }
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = res.text().await.unwrap();
        Answer {
            status,
            location,
            body,
        }
    }

    async fn get(&self, url: &str) -> Answer {
        self.send(self.http.get(url)).await
    }

    async fn post(&self, url: &str, form: &[(&str, &str)]) -> Answer {
        self.send(self.http.post(url).form(form)).await
    }

    async fn csrf(&self, url: &str) -> String {
        csrf_in(&self.get(url).await.body)
    }

    async fn sign_in(&self, op: &Op) {
        self.sign_in_as(op, "alice", ALICE_PW).await;
    }

    async fn sign_in_as(&self, op: &Op, user: &str, password: &str) {
        let csrf = self.csrf(&format!("{}/login", op.base)).await;
        let res = self
            .post(
                &format!("{}/login", op.base),
                &[
                    ("username", user),
                    ("password", password),
                    ("csrf_token", &csrf),
                    ("return_to", "/"),
                ],
            )
            .await;
        assert_eq!(res.status, 303, "{}", res.body);
    }
}

/// The value of the page's `csrf_token` form field.
fn csrf_in(body: &str) -> String {
    let at = body
        .find("name=\"csrf_token\" value=\"")
        .expect("a CSRF field")
        + 25;
    body[at..].split('"').next().unwrap().to_owned()
}

/// The relying party of a client `provider` registers, with its secret and
/// the algorithm of its ID tokens.
async fn app(op: &Op, id: &str) -> Rp {
    let (secret, alg) = match id {
        "app-a" => (Some("secret-a"), CoreJwsSigningAlgorithm::EdDsa),
        "app-b" => (Some("secret-b"), CoreJwsSigningAlgorithm::EcdsaP256Sha256),
        "app-c" => (
            Some("secret-c"),
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        ),
        "app-p" => (None, CoreJwsSigningAlgorithm::EdDsa),
        other => panic!("no client {other}"),
    };
    rp(op, id, secret, alg).await
}

/// A relying party: one registered client, discovered.
struct Rp {
    client: CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    alg: CoreJwsSigningAlgorithm,
    http: openidconnect::reqwest::Client,
}

async fn rp(op: &Op, id: &str, secret: Option<&str>, alg: CoreJwsSigningAlgorithm) -> Rp {
    let http = http();
    let meta =
        CoreProviderMetadata::discover_async(IssuerUrl::new(op.base.clone()).unwrap(), &http)
            .await
            .unwrap();
    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new(id.to_owned()),
        secret.map(|s| ClientSecret::new(s.to_owned())),
    )
    .set_redirect_uri(RedirectUrl::new(format!("{}/{id}/callback", op.rp)).unwrap());
    Rp { client, alg, http }
}

/// One authorization request: its URL and what the RP keeps.
struct Pending {
    url: String,
    state: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
}

impl Rp {
    fn start(&self, extra: &[(&str, &str)]) -> Pending {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge);
        for (k, v) in extra {
            req = req.add_extra_param(*k, *v);
        }
        let (url, state, nonce) = req.url();
        Pending {
            url: url.to_string(),
            state,
            nonce,
            verifier,
        }
    }

    fn verifier(&self) -> openidconnect::core::CoreIdTokenVerifier<'_> {
        self.client
            .id_token_verifier()
            .set_allowed_algs([self.alg.clone()])
    }

    async fn exchange(
        &self,
        code: &str,
        verifier: Option<PkceCodeVerifier>,
    ) -> Result<openidconnect::core::CoreTokenResponse, CoreErrorResponseType> {
        let mut req = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .unwrap();
        if let Some(v) = verifier {
            req = req.set_pkce_verifier(v);
        }
        req.request_async(&self.http).await.map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => r.error().clone(),
            other => panic!("not an OAuth error: {other:?}"),
        })
    }
}

/// Query parameter `name` of `url`.
fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Signs in through `rp` with `browser` (already signed in at the provider):
/// the code from the redirect, checked against the request's state.
/// The provider, a browser signed in at the shop, and app A (EdDSA) as the RP.
/// A provider and a browser signed in there as alice.
async fn signed_in() -> (Op, Browser) {
    let op = provider().await;
    let browser = Browser::new();
    browser.sign_in(&op).await;
    (op, browser)
}

async fn signed_in_at_app_a() -> (Op, Browser, Rp) {
    let (op, browser) = signed_in().await;
    let rp = app(&op, "app-a").await;
    (op, browser, rp)
}

async fn code_for(browser: &Browser, rp: &Rp, pending: &Pending) -> String {
    let res = browser.get(&pending.url).await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert!(
        res.location
            .starts_with(rp.client.redirect_uri().unwrap().as_str()),
        "{}",
        res.location
    );
    assert_eq!(
        param(&res.location, "state").as_deref(),
        Some(pending.state.secret().as_str())
    );
    param(&res.location, "code").unwrap_or_else(|| panic!("no code in {}", res.location))
}

/// Full sign-in of `rp`: tokens and the verified ID token's `sid`.
async fn sign_in_app(
    browser: &Browser,
    rp: &Rp,
) -> (openidconnect::core::CoreTokenResponse, String) {
    let p = rp.start(&[]);
    let code = code_for(browser, rp, &p).await;
    let tokens = rp.exchange(&code, Some(p.verifier)).await.unwrap();
    let verifier = rp.verifier();
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&verifier, &p.nonce)
        .unwrap();
    assert_eq!(claims.subject().as_str(), "alice");
    let raw = jwt_claims(&tokens.id_token().unwrap().to_string());
    (tokens, raw["sid"].as_str().unwrap().to_owned())
}

/// Whether `rp`'s userinfo request with the access token of `tokens` succeeds.
async fn userinfo_ok(rp: &Rp, tokens: &openidconnect::core::CoreTokenResponse) -> bool {
    let info: Result<openidconnect::core::CoreUserInfoClaims, _> = rp
        .client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&rp.http)
        .await;
    info.is_ok()
}

/// The claims of a JWT, unverified (the RP verified it already).
fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let part = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn discovery_advertises_the_agreed_endpoints() {
    let op = provider().await;
    let doc: Value = http()
        .get(format!("{}/.well-known/openid-configuration", op.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], op.base);
    for (k, path) in [
        ("authorization_endpoint", "/oauth2/authorize"),
        ("token_endpoint", "/oauth2/token"),
        ("userinfo_endpoint", "/oauth2/userinfo"),
        ("jwks_uri", "/oauth2/jwks"),
        ("end_session_endpoint", "/oauth2/logout"),
    ] {
        assert_eq!(doc[k], format!("{}{path}", op.base), "{k}");
    }
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(doc["backchannel_logout_supported"], true);
    let jwks: Value = http()
        .get(format!("{}/oauth2/jwks", op.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    let algs: Vec<&str> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
    assert_eq!(algs, ["EdDSA", "ES256", "RS256"]);
    assert!(
        keys.iter()
            .all(|k| k["kid"].is_string() && k.get("d").is_none())
    );
    // The RP library accepts the document and the keys.
    let _ = app(&op, "app-a").await;
}

#[tokio::test]
async fn code_flow_with_pkce_gives_verified_id_tokens_in_all_three_algorithms() {
    let (op, browser) = signed_in().await;
    for (id, secret, alg) in [
        ("app-a", "secret-a", CoreJwsSigningAlgorithm::EdDsa),
        (
            "app-b",
            "secret-b",
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        ),
        (
            "app-c",
            "secret-c",
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        ),
    ] {
        let rp = rp(&op, id, Some(secret), alg.clone()).await;
        let p = rp.start(&[]);
        let code = code_for(&browser, &rp, &p).await;
        let tokens = rp.exchange(&code, Some(p.verifier)).await.unwrap();
        let id_token = tokens.id_token().unwrap();
        let verifier = rp.verifier();
        let claims = id_token.claims(&verifier, &p.nonce).unwrap();
        assert_eq!(claims.subject().as_str(), "alice");
        assert_eq!(claims.audiences()[0].as_str(), id);
        assert_eq!(claims.issuer().as_str(), op.base);
        assert_eq!(
            claims.auth_context_ref(),
            Some(&AuthenticationContextClass::new(
                "urn:sessionary:aal1".into()
            ))
        );
        assert!(claims.auth_time().is_some());
        // at_hash binds the access token (SHA-512 for EdDSA, SHA-256 else).
        let expected = AccessTokenHash::from_token(
            tokens.access_token(),
            id_token.signing_alg().unwrap(),
            id_token.signing_key(&verifier).unwrap(),
        )
        .unwrap();
        assert_eq!(claims.access_token_hash(), Some(&expected), "{id}");
        assert_eq!(id_token.signing_alg().unwrap(), &alg);
        let raw = jwt_claims(&id_token.to_string());
        assert!(raw["amr"].as_array().unwrap().contains(&"pwd".into()));
        // sid is the central session: the browser's.
        let sid = SessionId::parse(raw["sid"].as_str().unwrap()).unwrap();
        let central = op.manager.session(&sid).await.unwrap();
        assert!(central.user.is_some());
        // userinfo with the access token.
        let info: openidconnect::core::CoreUserInfoClaims = rp
            .client
            .user_info(tokens.access_token().clone(), None)
            .unwrap()
            .request_async(&rp.http)
            .await
            .unwrap();
        assert_eq!(info.subject().as_str(), "alice");
        // `profile` was asked for: the user's name.
        assert_eq!(info.preferred_username().map(|u| u.as_str()), Some("alice"));
        assert!(tokens.refresh_token().is_some());
    }
    // A verifier pinned to another algorithm refuses the token.
    let rp_a = rp(
        &op,
        "app-a",
        Some("secret-a"),
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    )
    .await;
    let p = rp_a.start(&[]);
    let code = code_for(&browser, &rp_a, &p).await;
    let tokens = rp_a.exchange(&code, Some(p.verifier)).await.unwrap();
    assert!(
        tokens
            .id_token()
            .unwrap()
            .claims(&rp_a.verifier(), &p.nonce)
            .is_err()
    );
}

#[tokio::test]
async fn public_clients_use_pkce_alone_and_wrong_secrets_are_invalid_client() {
    let (op, browser) = signed_in().await;
    let public = app(&op, "app-p").await;
    let (tokens, _) = sign_in_app(&browser, &public).await;
    assert!(tokens.id_token().is_some());

    let wrong = rp(
        &op,
        "app-a",
        Some("not-the-secret"),
        CoreJwsSigningAlgorithm::EdDsa,
    )
    .await;
    let p = wrong.start(&[]);
    let code = code_for(&browser, &wrong, &p).await;
    assert_eq!(
        wrong.exchange(&code, Some(p.verifier)).await.unwrap_err(),
        CoreErrorResponseType::InvalidClient
    );
    // client_secret_post works as well as basic; a bad grant type is refused.
    let res = http()
        .post(format!("{}/oauth2/token", op.base))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "app-a"),
            ("client_secret", "secret-a"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
    let res = http()
        .post(format!("{}/oauth2/token", op.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "nobody"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn refresh_rotates_and_a_spent_refresh_token_is_refused() {
    let (op, browser) = signed_in().await;
    let rp = app(&op, "app-b").await;
    let (tokens, sid) = sign_in_app(&browser, &rp).await;
    let first = tokens.refresh_token().unwrap().clone();
    let again = rp
        .client
        .exchange_refresh_token(&first)
        .unwrap()
        .request_async(&rp.http)
        .await
        .unwrap();
    let second = again.refresh_token().unwrap().clone();
    assert_ne!(second.secret(), first.secret());
    // A new ID token, without nonce, same central session.
    let id_token = again.id_token().unwrap();
    let claims = id_token
        .claims(&rp.verifier(), |n: Option<&Nonce>| {
            if n.is_none() {
                Ok(())
            } else {
                Err("a nonce".to_owned())
            }
        })
        .unwrap();
    assert_eq!(claims.subject().as_str(), "alice");
    assert_eq!(jwt_claims(&id_token.to_string())["sid"], sid);
    // Past the grace window, the spent token is reuse: refused, and the app's
    // session (and so its newest tokens) ends.
    op.clock.advance(Duration::from_secs(30));
    let reused = rp
        .client
        .exchange_refresh_token(&first)
        .unwrap()
        .request_async(&rp.http)
        .await;
    assert!(matches!(
        reused,
        Err(RequestTokenError::ServerResponse(ref r)) if *r.error() == CoreErrorResponseType::InvalidGrant
    ));
    let after = rp
        .client
        .exchange_refresh_token(&second)
        .unwrap()
        .request_async(&rp.http)
        .await;
    assert!(after.is_err());
    assert_eq!(op.count("refreshed"), 1);
    assert_eq!(op.count("token_refused"), 2);
    // Another client cannot use app-b's refresh tokens.
    let (tokens_b, _) = sign_in_app(&browser, &rp).await;
    let other = app(&op, "app-a").await;
    let stolen = other
        .client
        .exchange_refresh_token(tokens_b.refresh_token().unwrap())
        .unwrap()
        .request_async(&other.http)
        .await;
    assert!(stolen.is_err());
}

#[tokio::test]
async fn wrong_redirect_uri_gets_a_page_not_a_redirect() {
    let (op, browser, rp) = signed_in_at_app_a().await;
    let p = rp.start(&[]);
    let evil = p.url.replace(
        &url::form_urlencoded::byte_serialize(format!("{}/app-a/callback", op.rp).as_bytes())
            .collect::<String>(),
        "https%3A%2F%2Fevil.example%2Fcallback",
    );
    assert_ne!(evil, p.url);
    let res = browser.get(&evil).await;
    assert_eq!(res.status, 400);
    assert!(res.location.is_empty());
    assert!(res.body.contains("redirect_uri"));
    // Unknown client: a page too.
    let res = browser
        .get(&p.url.replace("client_id=app-a", "client_id=nobody"))
        .await;
    assert_eq!(res.status, 400);
    assert!(res.location.is_empty());
    // A code used with another redirect_uri at the token endpoint.
    let code = code_for(&browser, &rp, &p).await;
    let res = http()
        .post(format!("{}/oauth2/token", op.base))
        .basic_auth("app-a", Some("secret-a"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &format!("{}/app-b/callback", op.rp)),
            ("code_verifier", p.verifier.secret()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

#[tokio::test]
async fn pkce_is_required_s256_only_and_checked() {
    let (_op, browser, rp) = signed_in_at_app_a().await;
    // plain is refused at the authorization endpoint, by redirect (the URI is registered).
    let p = rp.start(&[]);
    let plain = p
        .url
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let res = browser.get(&plain).await;
    assert_eq!(res.status, 303);
    assert_eq!(
        param(&res.location, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(
        param(&res.location, "state").as_deref(),
        Some(p.state.secret().as_str())
    );
    assert!(param(&res.location, "code").is_none());
    // Missing verifier.
    let code = code_for(&browser, &rp, &p).await;
    assert_eq!(
        rp.exchange(&code, None).await.unwrap_err(),
        CoreErrorResponseType::InvalidGrant
    );
    // Wrong verifier.
    let p = rp.start(&[]);
    let code = code_for(&browser, &rp, &p).await;
    let wrong = PkceCodeVerifier::new("x".repeat(64));
    assert_eq!(
        rp.exchange(&code, Some(wrong)).await.unwrap_err(),
        CoreErrorResponseType::InvalidGrant
    );
}

#[tokio::test]
async fn a_reused_code_is_refused_and_revokes_what_it_issued() {
    let (op, browser, rp) = signed_in_at_app_a().await;
    let p = rp.start(&[]);
    let code = code_for(&browser, &rp, &p).await;
    let verifier = PkceCodeVerifier::new(p.verifier.secret().clone());
    let tokens = rp.exchange(&code, Some(p.verifier)).await.unwrap();
    assert_eq!(
        rp.exchange(&code, Some(verifier)).await.unwrap_err(),
        CoreErrorResponseType::InvalidGrant
    );
    // The first exchange's tokens are dead.
    let info = rp
        .client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&rp.http)
        .await;
    let info: Result<openidconnect::core::CoreUserInfoClaims, _> = info;
    assert!(info.is_err());
    let refreshed = rp
        .client
        .exchange_refresh_token(tokens.refresh_token().unwrap())
        .unwrap()
        .request_async(&rp.http)
        .await;
    assert!(refreshed.is_err());
    assert_eq!(op.count("code_redeemed"), 1);
    assert_eq!(op.count("code_reused"), 1);
    // The second exchange and the dead refresh token.
    assert_eq!(op.count("token_refused"), 2);
    assert_eq!(op.count("refreshed"), 0);
}

#[tokio::test]
async fn the_rp_detects_a_wrong_nonce() {
    let (_op, browser, rp) = signed_in_at_app_a().await;
    let p = rp.start(&[]);
    let code = code_for(&browser, &rp, &p).await;
    let tokens = rp.exchange(&code, Some(p.verifier)).await.unwrap();
    let id_token = tokens.id_token().unwrap();
    assert_eq!(
        jwt_claims(&id_token.to_string())["nonce"],
        p.nonce.secret().as_str()
    );
    let other = Nonce::new("another-nonce".into());
    assert!(matches!(
        id_token.claims(&rp.verifier(), &other),
        Err(openidconnect::ClaimsVerificationError::InvalidNonce(_))
    ));
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let (op, browser, rp) = signed_in_at_app_a().await;
    let p = rp.start(&[]);
    let code = code_for(&browser, &rp, &p).await;
    op.clock.advance(Duration::from_secs(61));
    assert_eq!(
        rp.exchange(&code, Some(p.verifier)).await.unwrap_err(),
        CoreErrorResponseType::InvalidGrant
    );
    // Within 60 s it works.
    let p = rp.start(&[]);
    let code = code_for(&browser, &rp, &p).await;
    op.clock.advance(Duration::from_secs(59));
    assert!(rp.exchange(&code, Some(p.verifier)).await.is_ok());
}

#[tokio::test]
async fn single_sign_on_needs_no_second_password_and_children_are_listed() {
    let op = provider().await;
    let browser = Browser::new();
    // Not signed in: the sign-in page, coming back to the authorization request.
    let a = app(&op, "app-a").await;
    let p = a.start(&[]);
    let res = browser.get(&p.url).await;
    assert_eq!(res.status, 303);
    assert!(
        res.location
            .starts_with("/login?return_to=%2Foauth2%2Fauthorize"),
        "{}",
        res.location
    );
    // prompt=none without a session: login_required to the app.
    let none = a.start(&[("prompt", "none")]);
    let res = browser.get(&none.url).await;
    assert_eq!(
        param(&res.location, "error").as_deref(),
        Some("login_required")
    );
    // Sign in once, through the page the provider sent us to, back to the request.
    let return_to = param(
        &format!("http://x{}", res_location(&browser, &p.url).await),
        "return_to",
    )
    .unwrap();
    let csrf = browser.csrf(&format!("{}/login", op.base)).await;
    let res = browser
        .post(
            &format!("{}/login", op.base),
            &[
                ("username", "alice"),
                ("password", ALICE_PW),
                ("csrf_token", &csrf),
                ("return_to", &return_to),
            ],
        )
        .await;
    assert_eq!(res.status, 303);
    assert!(res.location.starts_with("/oauth2/authorize?"));
    let code = code_for(&browser, &a, &p).await;
    let tokens_a = a.exchange(&code, Some(p.verifier)).await.unwrap();
    let sid_a = jwt_claims(&tokens_a.id_token().unwrap().to_string())["sid"].clone();
    // The second app: a code at once, no password.
    let b = app(&op, "app-b").await;
    let (_, sid_b) = sign_in_app(&browser, &b).await;
    assert_eq!(sid_a, sid_b);
    // "Manage sessions": both app sessions, under the central one.
    let page = browser.get(&format!("{}/account/sessions", op.base)).await;
    assert_eq!(page.status, 200);
    let parent = format!("data-parent-id=\"{sid_b}\"");
    assert_eq!(page.body.matches(&parent).count(), 2, "{}", page.body);
    assert!(page.body.contains("App app-a") && page.body.contains("App app-b"));
    let central_row = page
        .body
        .find(&format!("data-session-id=\"{sid_b}\""))
        .unwrap();
    assert!(central_row < page.body.find(&parent).unwrap());
    // Ending one app's session leaves the central one and the other app alive.
    let alice = UserId::new("alice").unwrap();
    let sessions = op.manager.list(&alice).await.unwrap();
    assert_eq!(sessions.len(), 3);
    let children: Vec<_> = sessions
        .iter()
        .filter_map(|r| ChildLink::of(&op.manager, r).map(|l| (r.id, l)))
        .collect();
    assert_eq!(children.len(), 2);
    assert!(children.iter().all(|(_, l)| l.parent.to_string() == sid_b));
    op.manager
        .end_session(&children[0].0, EndReason::RevokedByUser)
        .await
        .unwrap();
    let left = op.manager.list(&alice).await.unwrap();
    assert_eq!(left.len(), 2);
    assert!(left.iter().any(|r| r.id.to_string() == sid_b));
    assert!(
        op.logouts.lock().await.try_recv().is_err(),
        "no logout for a child alone"
    );
}

/// Where `url` redirects the browser.
async fn res_location(browser: &Browser, url: &str) -> String {
    browser.get(url).await.location
}

#[tokio::test]
async fn prompt_login_and_max_age_ask_for_the_password_again() {
    let (op, browser) = signed_in().await;
    let signed_in_at = op.manager.now();
    let rp = app(&op, "app-a").await;
    op.clock.advance(Duration::from_secs(120));
    // max_age=60 with a 2-minute-old sign-in: re-authenticate (prompt=none: an error).
    let none = rp.start(&[("max_age", "60"), ("prompt", "none")]);
    let res = browser.get(&none.url).await;
    assert_eq!(
        param(&res.location, "error").as_deref(),
        Some("login_required")
    );
    let p = rp.start(&[("max_age", "60")]);
    let res = browser.get(&p.url).await;
    assert!(
        res.location.starts_with("/reauth?return_to="),
        "{}",
        res.location
    );
    // max_age=600 is satisfied: a code at once, auth_time the sign-in.
    let (tokens, _) = {
        let q = rp.start(&[("max_age", "600")]);
        let code = code_for(&browser, &rp, &q).await;
        let t = rp.exchange(&code, Some(q.verifier)).await.unwrap();
        (t, ())
    };
    let auth_time = jwt_claims(&tokens.id_token().unwrap().to_string())["auth_time"].clone();
    assert_eq!(auth_time, signed_in_at.as_secs());
    // prompt=login: the password again, even with a fresh session.
    let q = rp.start(&[("prompt", "login")]);
    let res = browser.get(&q.url).await;
    assert!(
        res.location.starts_with("/reauth?return_to="),
        "{}",
        res.location
    );
    let return_to = param(&format!("http://x{}", res.location), "return_to").unwrap();
    assert!(!return_to.contains("prompt"));
    assert!(return_to.contains("max_age=60"), "{return_to}");
    // max_age=0 asks for the password every time, and comes back with
    // max_age=60, which the password just given satisfies (no loop).
    let zero = rp.start(&[("max_age", "0")]);
    let res = browser.get(&zero.url).await;
    assert!(
        res.location.starts_with("/reauth?return_to="),
        "{}",
        res.location
    );
    let back = param(&format!("http://x{}", res.location), "return_to").unwrap();
    assert!(
        back.contains("max_age=60") && !back.contains("max_age=0"),
        "{back}"
    );
    let csrf = browser.csrf(&format!("{}{}", op.base, res.location)).await;
    let res = browser
        .post(
            &format!("{}/reauth", op.base),
            &[
                ("password", ALICE_PW),
                ("csrf_token", &csrf),
                ("return_to", &return_to),
            ],
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    let res = browser.get(&format!("{}{}", op.base, res.location)).await;
    assert_eq!(res.status, 303);
    let code = param(&res.location, "code").unwrap();
    let tokens = rp.exchange(&code, Some(q.verifier)).await.unwrap();
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&rp.verifier(), &q.nonce)
        .unwrap();
    assert_eq!(
        claims.auth_time().unwrap().timestamp(),
        op.manager.now().as_secs()
    );
}

#[tokio::test]
async fn acr_values_aal2_forces_a_step_up() {
    let (op, browser, rp) = signed_in_at_app_a().await;
    let acr = [("acr_values", "urn:sessionary:aal2")];
    let p = rp.start(&acr);
    let res = browser.get(&p.url).await;
    assert!(
        res.location.starts_with("/step-up?return_to="),
        "{}",
        res.location
    );
    let none = rp.start(&[("acr_values", "urn:sessionary:aal2"), ("prompt", "none")]);
    let res = browser.get(&none.url).await;
    assert_eq!(
        param(&res.location, "error").as_deref(),
        Some("interaction_required")
    );
    // After a step-up (AAL 2, a new token for the browser), the code comes.
    let (_, sid) = sign_in_app(&browser, &rp).await;
    let sid = SessionId::parse(&sid).unwrap();
    let issued = op
        .manager
        .regenerate(
            &sid,
            Privilege {
                aal: Some(2),
                reauthenticated: true,
                ..Privilege::default()
            },
        )
        .await
        .unwrap();
    *browser.cookie.lock() = Some(issued.token.encode());
    let code = code_for(&browser, &rp, &p).await;
    let tokens = rp.exchange(&code, Some(p.verifier)).await.unwrap();
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&rp.verifier(), &p.nonce)
        .unwrap();
    assert_eq!(
        claims.auth_context_ref().map(|a| a.as_str()),
        Some("urn:sessionary:aal2")
    );
    let raw = jwt_claims(&tokens.id_token().unwrap().to_string());
    assert!(raw["amr"].as_array().unwrap().contains(&"mfa".into()));
}

/// The next logout token, or a panic after 10 s.
async fn next_logout(op: &Op) -> Received {
    tokio::time::timeout(Duration::from_secs(10), op.logouts.lock().await.recv())
        .await
        .expect("a logout token within 10 s")
        .unwrap()
}

/// Checks a logout token as an RP must (signature by `kid` from the JWKS,
/// typ, iss, aud, events, sid, no nonce) and returns its claims.
async fn check_logout_token(op: &Op, received: &Received, sid: &str) -> Value {
    let header = jsonwebtoken::decode_header(&received.token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let jwks: jsonwebtoken::jwk::JwkSet = http()
        .get(format!("{}/oauth2/jwks", op.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[received.client.as_str()]);
    v.set_issuer(&[op.base.as_str()]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Value>(&received.token, &key, &v).unwrap();
    let c = data.claims;
    assert_eq!(c["sid"], sid);
    assert_eq!(c["sub"], "alice");
    assert!(c["jti"].is_string() && c["iat"].is_number());
    assert!(c.get("nonce").is_none());
    assert_eq!(
        c["events"]["http://schemas.openid.net/event/backchannel-logout"],
        serde_json::json!({})
    );
    c
}

#[tokio::test]
async fn rp_initiated_logout_ends_everything_and_tells_every_app() {
    let (op, browser) = signed_in().await;
    let a = app(&op, "app-a").await;
    let b = app(&op, "app-b").await;
    let (tokens_a, sid) = sign_in_app(&browser, &a).await;
    let (tokens_b, _) = sign_in_app(&browser, &b).await;
    let hint = tokens_a.id_token().unwrap().to_string();
    // An unregistered post-logout URI: a page, nothing ends.
    let res = browser
        .get(&format!(
            "{}/oauth2/logout?id_token_hint={hint}&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F",
            op.base
        ))
        .await;
    assert_eq!(res.status, 400);
    assert!(
        op.manager
            .session(&SessionId::parse(&sid).unwrap())
            .await
            .is_ok()
    );
    // The real thing.
    let back = format!("{}/app-a/", op.rp);
    let url = format!(
        "{}/oauth2/logout?id_token_hint={hint}&post_logout_redirect_uri={}&state=bye",
        op.base,
        url::form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
    );
    let res = browser.get(&url).await;
    assert_eq!(res.status, 303);
    assert!(res.location.starts_with(&back));
    assert_eq!(param(&res.location, "state").as_deref(), Some("bye"));
    assert!(browser.cookie.lock().is_none(), "the cookie is removed");
    let mut got = vec![next_logout(&op).await, next_logout(&op).await];
    got.sort_by(|x, y| x.client.cmp(&y.client));
    assert_eq!(got[0].client, "app-a");
    assert_eq!(got[1].client, "app-b");
    for r in &got {
        check_logout_token(&op, r, &sid).await;
    }
    // Every session is over: central, both apps; their tokens are refused.
    assert!(
        op.manager
            .session(&SessionId::parse(&sid).unwrap())
            .await
            .is_err()
    );
    let left = op
        .manager
        .list(&UserId::new("alice").unwrap())
        .await
        .unwrap();
    assert!(left.is_empty());
    for (rp, tokens) in [(&a, &tokens_a), (&b, &tokens_b)] {
        assert!(!userinfo_ok(rp, tokens).await);
    }
    // The audit log has the app sign-ins, the logout and the deliveries.
    op.audit.flush().await;
    let entries = op
        .manager
        .store()
        .audit(&AuditQuery::newest(100))
        .await
        .unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e.entry.kind.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "oidc_sign_in").count(),
        2,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"oidc_logout"), "{kinds:?}");
    // And the metrics count them.
    assert_eq!(op.count("sign_in"), 2);
    assert_eq!(op.count("code_redeemed"), 2);
    assert_eq!(op.count("logout_everywhere"), 1);
    assert_eq!(op.count("logout_app"), 0);
    op.wait_count("backchannel_delivered", 2).await;
    assert_eq!(op.count("backchannel_failed"), 0);
    // A new app sign-in needs the password again.
    let p = a.start(&[]);
    let res = browser.get(&p.url).await;
    assert!(res.location.starts_with("/login"));
}

#[tokio::test]
async fn signing_out_of_the_shop_logs_every_app_out_through_the_back_channel() {
    let (op, browser) = signed_in().await;
    let a = app(&op, "app-a").await;
    let c = app(&op, "app-c").await;
    let (_, sid) = sign_in_app(&browser, &a).await;
    let _ = sign_in_app(&browser, &c).await;
    let csrf = browser.csrf(&format!("{}/", op.base)).await;
    let res = browser
        .post(&format!("{}/logout", op.base), &[("csrf_token", &csrf)])
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    let mut got = vec![next_logout(&op).await, next_logout(&op).await];
    got.sort_by(|x, y| x.client.cmp(&y.client));
    assert_eq!(
        got.iter().map(|r| r.client.as_str()).collect::<Vec<_>>(),
        ["app-a", "app-c"]
    );
    for r in &got {
        check_logout_token(&op, r, &sid).await;
    }
    // Expiry noticed later ends the children too: a new central session,
    // one app, then the idle timeout.
    browser.sign_in(&op).await;
    let (_, sid2) = sign_in_app(&browser, &a).await;
    op.clock.advance(Duration::from_secs(24 * 3600));
    let cookie = browser.cookie.lock().clone().unwrap();
    let hash = sessionary_core::SessionToken::parse(&cookie)
        .unwrap()
        .hash();
    let expired = op.manager.verify_hash(&hash, false).await;
    assert!(expired.is_err(), "the central session expired");
    let r = next_logout(&op).await;
    assert_eq!(r.client, "app-a");
    check_logout_token(&op, &r, &sid2).await;
}

/// `state` and `nonce` are bounded: an oversize `state` (it would be echoed in
/// the redirect) gets the error page, an oversize `nonce` an `invalid_request`
/// redirect; neither creates an app session. `userinfo` reads the bearer
/// header with `sessionary_axum::Bearer`: the scheme in any case (RFC 7235),
/// and a missing header is a 401 with `WWW-Authenticate`.
#[tokio::test]
async fn oversize_state_and_nonce_are_refused_and_userinfo_reads_any_bearer_case() {
    let (op, browser, rp) = signed_in_at_app_a().await;
    let alice = UserId::new("alice").unwrap();
    let before = op.manager.list(&alice).await.unwrap().len();
    let p = rp.start(&[]);
    let long = "a".repeat(513);
    let big_state = p.url.replace(
        &format!("state={}", p.state.secret()),
        &format!("state={long}"),
    );
    assert_ne!(big_state, p.url);
    let res = browser.get(&big_state).await;
    assert_eq!(res.status, 400, "{}", res.body);
    assert!(res.location.is_empty());
    let big_nonce = p.url.replace(
        &format!("nonce={}", p.nonce.secret()),
        &format!("nonce={long}"),
    );
    assert_ne!(big_nonce, p.url);
    let res = browser.get(&big_nonce).await;
    assert_eq!(res.status, 303);
    assert!(
        res.location.contains("error=invalid_request"),
        "{}",
        res.location
    );
    assert_eq!(op.manager.list(&alice).await.unwrap().len(), before);

    let (tokens, _) = sign_in_app(&browser, &rp).await;
    let res = http()
        .get(format!("{}/oauth2/userinfo", op.base))
        .header(
            "authorization",
            format!("bearer {}", tokens.access_token().secret()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = http()
        .get(format!("{}/oauth2/userinfo", op.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
}

/// App sign-ins never apply the concurrent-session limit, and are never
/// counted by it: the admin role allows 3 sessions and evicts the oldest, yet
/// three app sign-ins (say, a page that sends the browser to
/// `/oauth2/authorize` again and again) and then two sign-ins on other devices
/// leave the central session live.
#[tokio::test]
async fn app_sign_ins_never_evict_the_central_session() {
    let op = provider().await;
    let browser = Browser::new();
    browser.sign_in_as(&op, "admin", ADMIN_PW).await;
    let admin = UserId::new("admin").unwrap();
    let central = op.manager.list(&admin).await.unwrap();
    assert_eq!(central.len(), 1);
    let rp = app(&op, "app-a").await;
    for _ in 0..3 {
        let p = rp.start(&[]);
        code_for(&browser, &rp, &p).await;
    }
    let now = op.manager.now();
    assert!(
        op.manager
            .session(&central[0].id)
            .await
            .unwrap()
            .is_live(now)
    );
    assert_eq!(op.manager.list(&admin).await.unwrap().len(), 4);
    // Nor do they count later: two sign-ins on other devices bring the
    // counted sessions to the limit of 3, and nothing is evicted.
    let others = [Browser::new(), Browser::new(), Browser::new()];
    for b in &others[..2] {
        op.clock.advance(Duration::from_secs(1)); // "oldest" is by creation time
        b.sign_in_as(&op, "admin", ADMIN_PW).await;
    }
    assert!(
        op.manager
            .session(&central[0].id)
            .await
            .unwrap()
            .is_live(op.manager.now())
    );
    assert_eq!(op.manager.list(&admin).await.unwrap().len(), 6);
    // The limit still holds for devices: a third evicts the central session,
    // the oldest counted one, not an app session.
    op.clock.advance(Duration::from_secs(1));
    others[2].sign_in_as(&op, "admin", ADMIN_PW).await;
    assert!(op.manager.session(&central[0].id).await.is_err());
}

/// An ID token is no credential for the central session: a logout request
/// carrying one from a browser that does not hold that session (here, none at
/// all, as someone who found the token in a log would send it) ends only the
/// app's own session. The central session, the other app and the user's
/// sign-in stay, and no app is told to sign out.
#[tokio::test]
async fn logout_without_the_central_cookie_ends_only_that_app() {
    let (op, browser) = signed_in().await;
    let a = app(&op, "app-a").await;
    let b = app(&op, "app-b").await;
    let (tokens_a, sid) = sign_in_app(&browser, &a).await;
    let (tokens_b, _) = sign_in_app(&browser, &b).await;
    let hint = tokens_a.id_token().unwrap().to_string();
    let stranger = Browser::new();
    let res = stranger
        .get(&format!(
            "{}/oauth2/logout?id_token_hint={hint}&state=s",
            op.base
        ))
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert!(!userinfo_ok(&a, &tokens_a).await, "app A's session ended");
    assert!(userinfo_ok(&b, &tokens_b).await, "app B's session stays");
    let central = op
        .manager
        .session(&SessionId::parse(&sid).unwrap())
        .await
        .expect("the central session stays");
    assert!(central.is_live(op.manager.now()));
    // The browser that holds it is still signed in: app A signs in again
    // without a password.
    let (_, again) = sign_in_app(&browser, &a).await;
    assert_eq!(again, sid);
    assert!(
        op.logouts.lock().await.try_recv().is_err(),
        "no back-channel logout"
    );
    assert_eq!(op.count("logout_app"), 1);
    assert_eq!(op.count("logout_everywhere"), 0);
    // From a browser signed in with another session (alice again, elsewhere),
    // app B's hint ends app B's sessions and asks whether to sign out of
    // Sessionary too, offering the way back with the app's `state`.
    let elsewhere = Browser::new();
    elsewhere.sign_in(&op).await;
    let hint_b = tokens_b.id_token().unwrap().to_string();
    let back = format!("{}/app-b/", op.rp);
    let page = elsewhere
        .get(&format!(
            "{}/oauth2/logout?id_token_hint={hint_b}&post_logout_redirect_uri={}&state=b",
            op.base,
            url::form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("action=\"/logout\""), "{}", page.body);
    assert!(
        page.body.contains(&format!("href=\"{back}?state=b\"")),
        "{}",
        page.body
    );
    assert!(!userinfo_ok(&b, &tokens_b).await, "app B's session ended");
    assert!(
        op.manager
            .session(&SessionId::parse(&sid).unwrap())
            .await
            .unwrap()
            .is_live(op.manager.now()),
        "the hinted central session stays"
    );
    let alice = UserId::new("alice").unwrap();
    assert_eq!(op.manager.list(&alice).await.unwrap().len(), 3);
    // "Sign out of Sessionary too" ends this browser's session only.
    let csrf = csrf_in(&page.body);
    let res = elsewhere
        .post(&format!("{}/logout", op.base), &[("csrf_token", &csrf)])
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert!(elsewhere.cookie.lock().is_none());
    assert_eq!(op.manager.list(&alice).await.unwrap().len(), 2);
}

/// A sign-in abandoned at the app (the code never redeemed) leaves an app
/// session for no one; once its code has expired, the app's next sign-in in
/// that browser ends it, so "Manage sessions" does not list it until it idles
/// out. A redeemed app session is never ended this way.
#[tokio::test]
async fn an_abandoned_app_sign_in_is_ended_by_the_next_one() {
    let (op, browser, rp) = signed_in_at_app_a().await;
    let alice = UserId::new("alice").unwrap();
    let (tokens, _) = sign_in_app(&browser, &rp).await;
    let p = rp.start(&[]);
    code_for(&browser, &rp, &p).await; // never redeemed
    assert_eq!(op.manager.list(&alice).await.unwrap().len(), 3);
    // Within the code's minute, the next sign-in keeps it: it may still come.
    let (_, _) = sign_in_app(&browser, &rp).await;
    assert_eq!(op.manager.list(&alice).await.unwrap().len(), 4);
    op.clock.advance(Duration::from_secs(61));
    let (_, _) = sign_in_app(&browser, &rp).await;
    let left = op.manager.list(&alice).await.unwrap();
    assert_eq!(left.len(), 4, "the abandoned one ended, a new one came");
    assert!(
        left.iter().all(
            |r| r.counters.contains_key("oidc:code") || ChildLink::of(&op.manager, r).is_none()
        ),
        "every app session left was redeemed"
    );
    assert!(userinfo_ok(&rp, &tokens).await, "redeemed ones stay");
}
