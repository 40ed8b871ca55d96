//! An app that signs its users in through Sessionary's OpenID Connect provider.
//!
//! It is an ordinary relying party built on the `openidconnect` crate:
//! discovery, the authorization code flow with PKCE (S256), `state` and
//! `nonce`, ID token validation against the provider's JWKS, RP-initiated
//! logout and back-channel logout. Its own sessions are Sessionary sessions
//! too (`SessionLayer` on a `MemoryStore`), so signing in at the app issues a
//! new app cookie, and a back-channel logout ends that session server-side.
//!
//! Run it twice (see `examples/sso_client/README.md`) as app A and app B: sign
//! in on A, open B and you are signed in without a password; sign out on B and
//! A is signed out too.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use maud::{DOCTYPE, Markup, html};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, LogoutRequest, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, Scope,
    TokenResponse as _,
    core::{CoreClient, CoreIdToken, CoreResponseType},
};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use sessionary_axum::{Session, SessionConfig, SessionLayer, SessionRejection};
use sessionary_core::{EndReason, MemoryStore, NewSession, SessionManager, UserId};

/// The event a back-channel logout token must carry (OpenID Connect
/// Back-Channel Logout 1.0, section 2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Session data key of a sign-in in flight (state, nonce, PKCE verifier).
const PENDING: &str = "oidc_pending";
/// Session data key of the signed-in user as the provider described them.
const SIGNED_IN: &str = "oidc";

/// How one instance of the app is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// Shown on the pages ("App A").
    pub name: String,
    /// The provider's issuer URL (discovery is at `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// The client id registered at the provider.
    pub client_id: String,
    /// The client secret; `None` for a public client.
    pub client_secret: Option<String>,
    /// Where browsers reach this app, without a trailing slash
    /// (`http://localhost:3001`): the redirect URI is `<public_url>/callback`,
    /// the back-channel logout URI `<public_url>/backchannel-logout`.
    pub public_url: String,
    /// The app's session cookie name; give each app on one host its own
    /// (cookies do not tell ports apart).
    pub cookie_name: String,
}

type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

struct App {
    config: Config,
    client: OidcClient,
    http: reqwest::Client,
    end_session: Option<openidconnect::EndSessionUrl>,
    jwks_uri: String,
    issuer: String,
    keys: RwLock<JwkSet>,
    /// When the JWKS was last fetched for an unknown `kid`.
    fetched: Mutex<Option<Instant>>,
    manager: SessionManager,
}

/// A sign-in in flight, kept in the (anonymous) app session until the callback.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
}

/// The signed-in user, as the ID token described them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SignedIn {
    /// The provider's subject (the user id).
    pub sub: String,
    /// The provider's central session (`sid` claim), which back-channel logout names.
    pub sid: Option<String>,
    /// Display name, when the provider gave one.
    pub name: Option<String>,
    /// Authentication context (`acr`), e.g. the assurance level.
    pub acr: Option<String>,
    /// The raw ID token, sent back as `id_token_hint` at sign-out.
    pub id_token: String,
}

/// Builds the app: discovers the provider and returns the router (serve it
/// with `axum::serve`).
///
/// # Errors
///
/// The provider cannot be reached or its metadata is invalid, or a URL in
/// `config` is malformed.
pub async fn app(config: Config) -> anyhow::Result<Router> {
    // Redirects are not followed: the token endpoint must answer itself (SSRF).
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?;
    let issuer = IssuerUrl::new(config.issuer.clone()).context("issuer URL")?;
    let metadata = ProviderMetadataWithLogout::discover_async(issuer, &http)
        .await
        .context("OpenID Connect discovery")?;
    let end_session = metadata.additional_metadata().end_session_endpoint.clone();
    let jwks_uri = metadata.jwks_uri().url().to_string();
    let keys: JwkSet = http
        .get(&jwks_uri)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(config.client_id.clone()),
        config.client_secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(format!("{}/callback", config.public_url))?);
    let manager = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;
    let sessions = SessionConfig::new()
        .with_cookie_name(&config.cookie_name)?
        .dangerous()
        .allow_insecure_http();
    let state = Arc::new(App {
        issuer: config.issuer.trim_end_matches('/').to_owned(),
        config,
        client,
        http,
        end_session,
        jwks_uri,
        keys: RwLock::new(keys),
        fetched: Mutex::new(None),
        manager: manager.clone(),
    });
    Ok(Router::new()
        .route("/", get(home))
        .route("/me", get(me))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/logout", post(logout))
        .route("/backchannel-logout", post(backchannel_logout))
        .layer(SessionLayer::new(manager, sessions))
        .with_state(state))
}

fn page(app: &App, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (app.config.name) } }
            body {
                h1 { (app.config.name) }
                (body)
            }
        }
    }
}

fn signed_in(session: &Session) -> Option<SignedIn> {
    session.user()?;
    session.get::<SignedIn>(SIGNED_IN).ok().flatten()
}

async fn home(State(app): State<Arc<App>>, session: Session) -> Html<String> {
    let body = match signed_in(&session) {
        Some(user) => html! {
            p #status { "Signed in as " strong #user { (user.name.as_deref().unwrap_or(&user.sub)) } }
            p { "Provider session: " code #sid { (user.sid.as_deref().unwrap_or("-")) } }
            form method="post" action="/logout" { button #sign-out type="submit" { "Sign out" } }
        },
        None => html! {
            p #status { "Not signed in." }
            a #sign-in href="/login" { "Sign in with Sessionary" }
        },
    };
    Html(page(&app, body).into_string())
}

/// `GET /me`: the signed-in user as JSON (`{"signed_in": false}` otherwise).
async fn me(session: Session) -> Json<serde_json::Value> {
    Json(match signed_in(&session) {
        Some(u) => serde_json::json!({
            "signed_in": true, "sub": u.sub, "sid": u.sid, "name": u.name, "acr": u.acr,
        }),
        None => serde_json::json!({ "signed_in": false }),
    })
}

async fn login(State(app): State<Arc<App>>, session: Session) -> Result<Redirect, Failure> {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = app
        .client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let pending = Pending {
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
    };
    session.insert(PENDING, pending).await?;
    Ok(Redirect::to(url.as_str()))
}

#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(app): State<Arc<App>>,
    session: Session,
    Query(q): Query<CallbackParams>,
) -> Result<Response, Failure> {
    let pending: Option<Pending> = session.get(PENDING)?;
    let pending = pending.ok_or(Failure::bad("no sign-in in progress"))?;
    // A forged callback (another site's link) must not cancel the sign-in in
    // progress: the pending sign-in goes only once `state` matched.
    if q.state.as_deref() != Some(pending.state.as_str()) {
        return Err(Failure::bad("state does not match"));
    }
    session.remove(PENDING).await?;
    if let Some(error) = q.error {
        let text = format!(
            "The provider refused the sign-in: {error} {}",
            q.error_description.unwrap_or_default()
        );
        return Err(Failure::bad(&text));
    }
    let code = q.code.ok_or(Failure::bad("no code"))?;
    let tokens = app
        .client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| Failure::provider(&e))?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
        .request_async(&app.http)
        .await
        .map_err(|e| Failure::provider(&e))?;
    let id_token = tokens
        .id_token()
        .ok_or(Failure::bad("no ID token in the response"))?;
    let claims = id_token
        .claims(&app.client.id_token_verifier(), &Nonce::new(pending.nonce))
        .map_err(|e| Failure::provider(&e))?;
    let user = SignedIn {
        sub: claims.subject().to_string(),
        sid: sid_of(&id_token.to_string()),
        name: claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.to_string()),
        acr: claims.auth_context_ref().map(|a| a.to_string()),
        id_token: id_token.to_string(),
    };
    let uid = UserId::new(user.sub.clone())?;
    session.login(NewSession::user(uid)).await?;
    session.insert(SIGNED_IN, user).await?;
    Ok(Redirect::to("/").into_response())
}

/// The `sid` claim, read from the payload of an ID token that was verified
/// already (the `Core` claim types have no field for it).
fn sid_of(jwt: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("sid")?.as_str().map(str::to_owned)
}

async fn logout(State(app): State<Arc<App>>, session: Session) -> Result<Redirect, Failure> {
    let user = signed_in(&session);
    session.logout().await?;
    let (Some(user), Some(end)) = (user, app.end_session.clone()) else {
        return Ok(Redirect::to("/"));
    };
    let hint: CoreIdToken = user.id_token.parse().map_err(|e| Failure::provider(&e))?;
    let url = LogoutRequest::from(end)
        .set_id_token_hint(&hint)
        .set_client_id(ClientId::new(app.config.client_id.clone()))
        .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new(format!(
            "{}/",
            app.config.public_url
        ))?)
        .set_state(CsrfToken::new_random())
        .http_get_url();
    Ok(Redirect::to(url.as_str()))
}

#[derive(Deserialize)]
struct LogoutForm {
    logout_token: String,
}

/// Why a logout token was not acted on.
enum Refusal {
    /// The token is not a valid logout token of this provider for this app (400).
    Invalid(anyhow::Error),
    /// It could not be checked now (the provider's JWKS did not load): 503.
    Unavailable(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Refusal {
    fn from(e: E) -> Self {
        Self::Invalid(e.into())
    }
}

/// How often unknown key ids may make the app fetch the provider's JWKS.
const JWKS_REFETCH: Duration = Duration::from_secs(60);

/// What a logout token says (the claims this app checks).
#[derive(Deserialize)]
struct LogoutClaims {
    sub: Option<String>,
    sid: Option<String>,
    events: serde_json::Map<String, serde_json::Value>,
    nonce: Option<serde_json::Value>,
    #[allow(dead_code)]
    jti: String,
}

/// `POST /backchannel-logout`: the provider says the user's central session
/// ended; end every app session that came from it.
async fn backchannel_logout(State(app): State<Arc<App>>, Form(form): Form<LogoutForm>) -> Response {
    let claims = match app.verify_logout_token(&form.logout_token).await {
        Ok(c) => c,
        Err(Refusal::Unavailable(e)) => {
            tracing::warn!(error = %e, "logout token not checked");
            return (StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")).into_response();
        }
        Err(Refusal::Invalid(e)) => {
            tracing::warn!(error = %e, "logout token refused");
            return (
                StatusCode::BAD_REQUEST,
                format!("invalid logout token: {e}"),
            )
                .into_response();
        }
    };
    match app.end_sessions(&claims).await {
        Ok(n) => {
            tracing::info!(ended = n, sid = ?claims.sid, "back-channel logout");
            (StatusCode::OK, [("cache-control", "no-store")]).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

impl App {
    /// At most one JWKS fetch a minute for unknown key ids: anyone can post
    /// a token with a made-up `kid`.
    fn may_refetch(&self) -> bool {
        let mut last = self.fetched.lock();
        if last.is_some_and(|t| t.elapsed() < JWKS_REFETCH) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    async fn fetch_keys(&self) -> anyhow::Result<JwkSet> {
        Ok(self
            .http
            .get(&self.jwks_uri)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    async fn verify_logout_token(&self, token: &str) -> Result<LogoutClaims, Refusal> {
        let header = jsonwebtoken::decode_header(token)?;
        if header.typ.as_deref() != Some("logout+jwt") {
            return Err(Refusal::Invalid(anyhow::anyhow!("typ is not logout+jwt")));
        }
        if !matches!(
            header.alg,
            Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256
        ) {
            return Err(Refusal::Invalid(anyhow::anyhow!(
                "algorithm {:?} not accepted",
                header.alg
            )));
        }
        let kid = header.kid.context("no kid")?;
        let mut jwk = self.keys.read().find(&kid).cloned();
        if jwk.is_none() && self.may_refetch() {
            // The provider may have rotated its keys since discovery. Its
            // failure is not the token's: 503, so the provider retries.
            let fresh: JwkSet = self
                .fetch_keys()
                .await
                .map_err(|e| Refusal::Unavailable(e.context("fetching the provider's JWKS")))?;
            jwk = fresh.find(&kid).cloned();
            *self.keys.write() = fresh;
        }
        let key = DecodingKey::from_jwk(&jwk.context("unknown kid")?)?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.config.client_id]);
        validation.set_required_spec_claims(&["iss", "aud", "iat", "exp"]);
        let claims = jsonwebtoken::decode::<LogoutClaims>(token, &key, &validation)?.claims;
        if !claims.events.contains_key(BACKCHANNEL_LOGOUT_EVENT) {
            return Err(Refusal::Invalid(anyhow::anyhow!(
                "no back-channel logout event"
            )));
        }
        if claims.nonce.is_some() {
            return Err(Refusal::Invalid(anyhow::anyhow!(
                "a logout token has no nonce"
            )));
        }
        // The spec asks for `sid` or `sub`; this app finds its sessions by
        // `sub`, so it needs that one.
        if claims.sub.is_none() {
            return Err(Refusal::Invalid(anyhow::anyhow!("no sub")));
        }
        Ok(claims)
    }

    /// Ends the app sessions of the token's user that came from its `sid`
    /// (all of the user's when it names no `sid`).
    async fn end_sessions(&self, claims: &LogoutClaims) -> anyhow::Result<usize> {
        let Some(sub) = &claims.sub else {
            return Ok(0);
        };
        let user = UserId::new(sub.clone())?;
        let mut ended = 0;
        for record in self.manager.list(&user).await? {
            let data = self.manager.data(&record)?;
            let from: Option<SignedIn> = data
                .get(SIGNED_IN)
                .and_then(|v| serde_json::from_value(v.clone()).ok());
            let matches = match (&claims.sid, from.and_then(|f| f.sid)) {
                (Some(sid), Some(own)) => *sid == own,
                (Some(_), None) => false,
                (None, _) => true,
            };
            if matches {
                match self
                    .manager
                    .end_session(&record.id, EndReason::LoggedOut)
                    .await
                {
                    Ok(_) | Err(sessionary_core::Error::NotFound) => ended += 1,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(ended)
    }
}

/// A page saying what went wrong.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn bad(message: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.to_owned(),
        }
    }

    fn provider(e: &dyn std::fmt::Display) -> Self {
        Self {
            status: StatusCode::BAD_GATEWAY,
            message: format!("sign-in failed: {e}"),
        }
    }
}

impl From<SessionRejection> for Failure {
    fn from(r: SessionRejection) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: r.to_string(),
        }
    }
}

impl From<sessionary_core::Error> for Failure {
    fn from(e: sessionary_core::Error) -> Self {
        Self::from(SessionRejection::from(e))
    }
}

impl From<openidconnect::url::ParseError> for Failure {
    fn from(e: openidconnect::url::ParseError) -> Self {
        Self::provider(&e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = html! {
            (DOCTYPE)
            html lang="en" { body {
                h1 { "Sign-in problem" }
                p #error { (self.message) }
                a href="/" { "Back" }
            } }
        };
        (self.status, Html(body.into_string())).into_response()
    }
}
