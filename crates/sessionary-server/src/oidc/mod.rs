//! Sessionary as an OpenID Connect provider: single sign-on for the apps
//! registered in `[[oidc.clients]]`, over the demo's signed-in session.
//!
//! # Endpoints
//!
//! | method and path | does |
//! |---|---|
//! | `GET /.well-known/openid-configuration` | discovery |
//! | `GET /oauth2/jwks` | the ID tokens' public keys, each with `kid` |
//! | `GET /oauth2/authorize` | authorization code flow with PKCE (`S256` only) |
//! | `POST /oauth2/token` | `authorization_code` and `refresh_token` grants |
//! | `GET`/`POST /oauth2/userinfo` | the user's claims, with the access token |
//! | `GET /oauth2/logout` | RP-initiated logout (`id_token_hint` required) |
//!
//! # Sessions
//!
//! The *central* session is the demo's signed-in session (its cookie). Each
//! app sign-in creates a *child* session of the same user: a real session
//! record whose sealed data holds `"oidc": {"client", "parent", "auth_time",
//! "scope"}`; its access and refresh tokens are the existing ones of
//! `sessionary-token` and the core's refresh families, bound to the child.
//! The child is also recorded in the user's data (`"oidc_sso"`, by central
//! session), which outlives sessions: when the central session ends, for any
//! reason (even an expiry noticed after every record expired), its children end
//! with the same reason and every client of theirs with a
//! `backchannel_logout_uri` receives a logout token ([`LogoutSink`], in the
//! background).
//!
//! # Security model
//!
//! - Redirect URIs and post-logout redirect URIs are matched exactly; errors
//!   before the redirect URI is known to be registered are a `400` page, never
//!   a redirect.
//! - PKCE is required, `S256` only; the verifier is compared in constant time,
//!   as are client secrets (SHA-256 digests).
//! - A code is an AEAD blob (the data key ring, associated data
//!   `oidc-code`) naming the child session, client, redirect URI, challenge,
//!   nonce and expiry (60 s); single use is one atomic counter increment on the
//!   child session, so it holds across nodes sharing the store. A second use
//!   ends the child session, which revokes what the first use issued.
//! - Refresh tokens rotate with the core's reuse detection; a refresh token
//!   presented by another client ends its session.
//! - An `id_token_hint` is no credential: RP-initiated logout ends the
//!   central session only from the browser whose cookie is that session;
//!   from anywhere else it ends just that app's sessions under it, and a
//!   browser signed in with another session is asked whether to sign out of
//!   Sessionary too.

mod keys;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use maud::html;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sessionary_axum::{Bearer, Session, SessionConfig, SessionLayer};
use sessionary_core::event::{Event, EventKind, EventSink};
use sessionary_core::{EndReason, NewSession, SessionId, SessionManager, SessionRecord, UserId};
use sessionary_token::{AccessTokens, SigningAlg, SigningKey};
use subtle::ConstantTimeEq as _;

use crate::metrics::OidcEvent;

pub use keys::{IdTokenKeys, OIDC_KEYS_FILE};

/// How long an authorization code is valid.
pub const CODE_TTL: Duration = Duration::from_secs(60);

/// How long an ID token is valid.
pub const ID_TOKEN_TTL: Duration = Duration::from_secs(600);

/// How long a back-channel logout token is valid.
pub const LOGOUT_TOKEN_TTL: Duration = Duration::from_secs(120);

/// The `acr` value of a session at assurance level `aal` (`urn:sessionary:aal1`...).
pub fn acr_for(aal: u8) -> String {
    format!("urn:sessionary:aal{aal}")
}

/// The counter on the child session that makes its code single use.
const CODE_COUNTER: &str = "oidc:code";

/// Associated data of sealed codes.
const CODE_AAD: &[u8] = b"oidc-code";

/// The user-data key recording, per central session, its app sessions.
const SSO_KEY: &str = "oidc_sso";

/// Most central sessions recorded per user in [`SSO_KEY`].
const MAX_CENTRAL_ENTRIES: usize = 50;

/// Most app sessions recorded per central session.
const MAX_CHILDREN: usize = 100;

/// An app session, as recorded under its central session.
#[derive(Debug, Serialize, Deserialize)]
struct ChildRef {
    sid: SessionId,
    client: String,
    /// When it was created (ms since the epoch; 0 in entries written before
    /// this field existed).
    #[serde(default)]
    at: i64,
}

/// Most app sessions [`Provider::end_abandoned`] looks at per sign-in.
const MAX_ABANDONED_CHECKS: usize = 8;

/// The longest `state` and `nonce` an authorization request may carry.
const MAX_ECHOED: usize = 512;

/// The event of back-channel logout tokens.
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The validated `[oidc]` section.
#[derive(Clone, Debug, Default)]
pub struct OidcSettings {
    /// The issuer, if configured (else `http://<listen address>`).
    pub issuer: Option<String>,
    /// The registered clients.
    pub clients: Vec<Client>,
}

/// A registered client (relying party).
#[derive(Clone)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// Shown in "Manage sessions".
    pub name: String,
    /// The secret; `None` for a public client.
    pub secret: Option<String>,
    /// Redirect URIs, matched exactly.
    pub redirect_uris: Vec<String>,
    /// Post-logout redirect URIs, matched exactly.
    pub post_logout_redirect_uris: Vec<String>,
    /// Where logout tokens are POSTed.
    pub backchannel_logout_uri: Option<String>,
    /// The ID token's algorithm.
    pub id_token_alg: SigningAlg,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("secret", &self.secret.as_ref().map(|_| "REDACTED"))
            .field("redirect_uris", &self.redirect_uris)
            .field("backchannel_logout_uri", &self.backchannel_logout_uri)
            .field("id_token_alg", &self.id_token_alg)
            .finish_non_exhaustive()
    }
}

impl OidcSettings {
    /// The algorithms the clients need keys for.
    pub fn algs(&self) -> Vec<SigningAlg> {
        let mut algs: Vec<SigningAlg> = Vec::new();
        for c in &self.clients {
            if !algs.contains(&c.id_token_alg) {
                algs.push(c.id_token_alg);
            }
        }
        algs
    }
}

/// What the provider keeps on a child session (in its sealed data, `"oidc"`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChildLink {
    /// The client the child session belongs to.
    pub client: String,
    /// The central session.
    pub parent: SessionId,
    /// When the user authenticated at the central session (ms).
    pub auth_time: i64,
    /// The granted scope.
    pub scope: String,
}

impl ChildLink {
    /// The link of `record`, if it is a child session.
    pub fn of(manager: &SessionManager, record: &SessionRecord) -> Option<Self> {
        let data = manager.data(record).ok()?;
        serde_json::from_value(data.get("oidc")?.clone()).ok()
    }
}

/// The provider: clients, keys, and the session engine.
#[derive(Debug)]
pub struct Provider {
    issuer: String,
    clients: HashMap<String, Client>,
    keys: IdTokenKeys,
    manager: SessionManager,
    tokens: Arc<AccessTokens>,
    seal: sessionary_core::KeyRing,
    http: reqwest::Client,
    audit: Option<Arc<sessionary_core::AuditLog>>,
    metrics: Option<crate::metrics::Metrics>,
}

impl Provider {
    /// A provider for `settings` issuing as `issuer`, over `manager`, with
    /// `tokens` as access tokens, `seal` (the data key ring) sealing codes.
    ///
    /// # Errors
    ///
    /// If the HTTP client for back-channel logout cannot be built.
    pub fn new(
        settings: &OidcSettings,
        issuer: String,
        keys: IdTokenKeys,
        manager: SessionManager,
        tokens: Arc<AccessTokens>,
        seal: sessionary_core::KeyRing,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            clients: settings
                .clients
                .iter()
                .map(|c| (c.id.clone(), c.clone()))
                .collect(),
            keys,
            manager,
            tokens,
            seal,
            http,
            audit: None,
            metrics: None,
        })
    }

    /// Writes app sign-ins (`oidc_sign_in`), RP-initiated logouts
    /// (`oidc_logout`), reused codes (`oidc_code_reused`) and back-channel
    /// deliveries (`oidc_backchannel`, detail `<client> delivered|failed`) to
    /// `audit`, beside the manager's own entries (the child sessions'
    /// `created` and `ended`).
    #[must_use]
    pub fn with_audit(mut self, audit: Arc<sessionary_core::AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Counts the provider's events in `metrics`
    /// (`sessionary_oidc_events_total`).
    #[must_use]
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, event: OidcEvent) {
        if let Some(m) = &self.metrics {
            m.oidc(event);
        }
    }

    fn audit(&self, kind: &str, sid: &SessionId, user: Option<&UserId>, detail: String) {
        if let Some(a) = &self.audit {
            a.record(sessionary_core::AuditEntry {
                at: self.manager.now(),
                kind: kind.to_owned(),
                session_id: Some(*sid),
                user: user.cloned(),
                ip: None,
                detail,
            });
        }
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A client by id.
    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients.get(id)
    }

    /// The origins of every registered redirect and post-logout redirect URI,
    /// sorted, without duplicates. The demo's `form-action` allows them: a
    /// sign-in, step-up or re-authentication form that an authorization
    /// request sent the user to ends in a redirect to the client, and browsers
    /// hold a form's whole redirect chain to `form-action`.
    pub fn redirect_origins(&self) -> Vec<String> {
        let mut origins: Vec<String> = self
            .clients
            .values()
            .flat_map(|c| c.redirect_uris.iter().chain(&c.post_logout_redirect_uris))
            .filter_map(|u| reqwest::Url::parse(u).ok())
            .map(|u| u.origin().ascii_serialization())
            .filter(|o| o != "null")
            .collect();
        origins.sort();
        origins.dedup();
        origins
    }

    /// The name of the app a child session belongs to, and its central session.
    pub fn child_of(&self, record: &SessionRecord) -> Option<(String, SessionId)> {
        let link = ChildLink::of(&self.manager, record)?;
        let name = self
            .clients
            .get(&link.client)
            .map_or_else(|| link.client.clone(), |c| c.name.clone());
        Some((name, link.parent))
    }

    /// Follows `queue` (the other half of [`logout_channel`]): ends the
    /// children of every ended session and sends the back-channel logout tokens.
    pub fn spawn_logout_worker(
        self: &Arc<Self>,
        mut queue: LogoutQueue,
    ) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(ended) = queue.0.recv().await {
                me.central_ended(ended).await;
            }
        })
    }

    async fn central_ended(self: &Arc<Self>, ended: EndedSession) {
        let key = ended.id.to_string();
        // Most ended sessions had no app sign-in: one read, no write.
        let Some(children) = self.children_of(&ended.user, &ended.id).await else {
            return;
        };
        let forgot = self
            .manager
            .update_user_data(&ended.user, None, |d| {
                if let Some(m) = d.get_mut(SSO_KEY).and_then(Value::as_object_mut) {
                    m.remove(&key);
                }
            })
            .await;
        if let Err(e) = forgot {
            tracing::warn!(sid = %ended.id, error = &e as &dyn std::error::Error, "oidc: cannot forget the app sessions of an ended session");
        }
        let mut clients: Vec<String> = Vec::new();
        for child in children {
            self.end_child(&child.sid, ended.reason).await;
            if !clients.contains(&child.client) {
                clients.push(child.client);
            }
        }
        for id in clients {
            let Some(client) = self.clients.get(&id) else {
                continue;
            };
            let Some(uri) = client.backchannel_logout_uri.clone() else {
                continue;
            };
            let token = match self.logout_token(client, &ended.user, &ended.id) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "oidc: cannot sign a logout token");
                    continue;
                }
            };
            let me = Arc::clone(self);
            let (sid, user) = (ended.id, ended.user.clone());
            tokio::spawn(async move {
                let delivered = send_logout(&me.http, &uri, &token, &id).await;
                let outcome = if delivered { "delivered" } else { "failed" };
                me.count(if delivered {
                    OidcEvent::BackchannelDelivered
                } else {
                    OidcEvent::BackchannelFailed
                });
                me.audit(
                    "oidc_backchannel",
                    &sid,
                    Some(&user),
                    format!("{id} {outcome}"),
                );
            });
        }
        tracing::info!(sid = %ended.id, reason = %ended.reason, "oidc: central session ended; its app sessions ended, back-channel logout sent");
    }

    /// Ends the sessions of `client` under `central` (an RP-initiated logout
    /// from a browser that does not hold `central`); `central` and its other
    /// apps' sessions stay. The entries stay too, for when `central` ends.
    async fn end_app_sessions(&self, user: &UserId, central: &SessionId, client: &str) {
        for child in self.children_of(user, central).await.unwrap_or_default() {
            if child.client == client {
                self.end_child(&child.sid, EndReason::LoggedOut).await;
            }
        }
    }

    /// The app sessions recorded under `central` in `user`'s data; `None`
    /// when there is no entry or it cannot be read (a warning). An element
    /// that does not decode is skipped with a warning, never the whole list.
    async fn children_of(&self, user: &UserId, central: &SessionId) -> Option<Vec<ChildRef>> {
        let data = match self.manager.user_data(user).await {
            Ok((_, data)) => data,
            Err(e) => {
                tracing::warn!(sid = %central, error = &e as &dyn std::error::Error, "oidc: cannot read the app sessions of a session");
                return None;
            }
        };
        let list = data
            .get(SSO_KEY)?
            .get(central.to_string())?
            .as_array()?
            .iter()
            .filter_map(|e| match ChildRef::deserialize(e) {
                Ok(c) => Some(c),
                Err(err) => {
                    tracing::warn!(sid = %central, error = %err, "oidc: an unreadable app session entry is skipped");
                    None
                }
            })
            .collect();
        Some(list)
    }

    /// Ends an app session; whether it is over (ended now, or gone before).
    async fn end_child(&self, sid: &SessionId, reason: EndReason) -> bool {
        match self.manager.end_session(sid, reason).await {
            Ok(_) | Err(sessionary_core::Error::NotFound) => true,
            Err(e) => {
                tracing::warn!(sid = %sid, error = &e as &dyn std::error::Error, "oidc: cannot end an app session");
                false
            }
        }
    }

    /// Ends the sessions of `client` under `central` whose sign-in was
    /// abandoned: created for a code that expired unredeemed (no counter), so
    /// nothing was ever issued for them. Without this they would be listed in
    /// "Manage sessions" until they idle out. Returns the ids ended (or gone).
    /// Best effort: a store error leaves them to their idle timeout.
    async fn end_abandoned(
        &self,
        user: &UserId,
        central: &SessionId,
        client: &str,
    ) -> Vec<SessionId> {
        let children = self.children_of(user, central).await.unwrap_or_default();
        let now = self.manager.now();
        // Only entries whose code has expired can be abandoned; the newest of
        // them first, and a bounded number, so a page that sends the browser
        // here again and again costs a few reads, not one per app session.
        let expired_before = now.0 - i64::try_from(CODE_TTL.as_millis()).unwrap_or(i64::MAX);
        let mut ended = Vec::new();
        let candidates = children
            .iter()
            .rev()
            .filter(|c| c.client == client && c.at < expired_before)
            .take(MAX_ABANDONED_CHECKS);
        for child in candidates {
            let abandoned = match self.manager.session(&child.sid).await {
                Ok(r) => {
                    !r.counters.contains_key(CODE_COUNTER) && r.created_at.plus(CODE_TTL) < now
                }
                Err(sessionary_core::Error::NotFound) => {
                    ended.push(child.sid);
                    continue;
                }
                Err(_) => false,
            };
            if abandoned && self.end_child(&child.sid, EndReason::ExpiredIdle).await {
                ended.push(child.sid);
            }
        }
        ended
    }

    /// Records `child` (of `client`) under `central` in the user's data, so the
    /// end of `central`, even noticed after every session expired, finds it;
    /// drops the entries of `gone` (sessions ended since).
    async fn remember_child(
        &self,
        user: &UserId,
        central: &SessionId,
        child: &SessionId,
        client: &str,
        gone: &[SessionId],
    ) -> sessionary_core::Result<()> {
        let key = central.to_string();
        let entry = serde_json::to_value(ChildRef {
            sid: *child,
            client: client.to_owned(),
            at: self.manager.now().0,
        })
        .unwrap_or(Value::Null);
        self.manager
            .update_user_data(user, None, |d| {
                let sso = d.entry(SSO_KEY).or_insert_with(|| json!({}));
                if !sso.is_object() {
                    *sso = json!({});
                }
                let Some(map) = sso.as_object_mut() else {
                    return;
                };
                // Bounded: entries of central sessions whose end was missed
                // (a full queue) go, oldest first.
                while !map.contains_key(&key) && map.len() >= MAX_CENTRAL_ENTRIES {
                    let Some(first) = map.keys().next().cloned() else {
                        break;
                    };
                    map.remove(&first);
                }
                let list = map.entry(key.clone()).or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.retain(|e| ChildRef::deserialize(e).map_or(true, |c| !gone.contains(&c.sid)));
                    // Never silently unrecorded (it would outlive its central
                    // session): past the cap the oldest entry goes, whose
                    // child has long idled out in any real use.
                    if a.len() >= MAX_CHILDREN {
                        a.remove(0);
                    }
                    a.push(entry.clone());
                }
            })
            .await
            .map(drop)
    }

    /// A back-channel logout token for `client` (OIDC Back-Channel Logout 1.0).
    fn logout_token(
        &self,
        client: &Client,
        user: &UserId,
        sid: &SessionId,
    ) -> Result<String, sessionary_token::AccessTokenError> {
        let now = self.manager.now();
        let key = self.key_for(client)?;
        let claims = json!({
            "iss": self.issuer,
            "aud": client.id,
            "iat": now.as_secs(),
            "exp": now.plus(LOGOUT_TOKEN_TTL).as_secs(),
            "jti": random_id(),
            "sub": user.as_str(),
            "sid": sid.to_string(),
            "events": { BACKCHANNEL_EVENT: {} },
        });
        key.sign(Some("logout+jwt"), &claims)
    }

    fn key_for(&self, client: &Client) -> Result<&SigningKey, sessionary_token::AccessTokenError> {
        self.keys
            .key(client.id_token_alg)
            .ok_or(sessionary_token::AccessTokenError::Key(
                "no key for the client's algorithm",
            ))
    }

    fn discovery(&self) -> Value {
        let i = &self.issuer;
        let algs: Vec<&str> = self.keys.algs().iter().map(|a| a.as_str()).collect();
        json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/oauth2/authorize"),
            "token_endpoint": format!("{i}/oauth2/token"),
            "userinfo_endpoint": format!("{i}/oauth2/userinfo"),
            "jwks_uri": format!("{i}/oauth2/jwks"),
            "end_session_endpoint": format!("{i}/oauth2/logout"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "at_hash", "name", "preferred_username"],
            "acr_values_supported": [acr_for(1), acr_for(2)],
            "prompt_values_supported": ["none", "login"],
            "claims_parameter_supported": false,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "authorization_response_iss_parameter_supported": true,
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
            "frontchannel_logout_supported": false,
        })
    }
}

/// POSTs `token` to `uri`, 3 attempts; whether the RP answered 2xx.
async fn send_logout(http: &reqwest::Client, uri: &str, token: &str, client: &str) -> bool {
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
        let sent = http
            .post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!(
                "logout_token={}",
                url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
            ))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!(client, "oidc: back-channel logout delivered");
                return true;
            }
            Ok(r) => {
                tracing::warn!(client, status = %r.status(), "oidc: back-channel logout refused")
            }
            Err(e) => tracing::warn!(client, error = %e, "oidc: back-channel logout failed"),
        }
    }
    false
}

/// An ended session, for the logout worker.
#[derive(Debug)]
struct EndedSession {
    id: SessionId,
    user: UserId,
    reason: EndReason,
}

/// An [`EventSink`] of the manager handing ended sessions to the provider's
/// logout worker ([`Provider::spawn_logout_worker`]) on a bounded queue; a full
/// queue drops the event with a warning (the children then end by their own
/// timeouts).
#[derive(Debug)]
pub struct LogoutSink(tokio::sync::mpsc::Sender<EndedSession>);

/// The receiving half of [`logout_channel`].
#[derive(Debug)]
pub struct LogoutQueue(tokio::sync::mpsc::Receiver<EndedSession>);

/// The sink to register with the manager's builder, and the queue for
/// [`Provider::spawn_logout_worker`].
pub fn logout_channel() -> (Arc<LogoutSink>, LogoutQueue) {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    (Arc::new(LogoutSink(tx)), LogoutQueue(rx))
}

impl EventSink for LogoutSink {
    fn emit(&self, event: &Event) {
        let EventKind::Ended { reason } = event.kind else {
            return;
        };
        let (Some(id), Some(user)) = (event.session_id, event.user.clone()) else {
            return;
        };
        if self.0.try_send(EndedSession { id, user, reason }).is_err() {
            tracing::warn!(sid = %id, "oidc: logout queue full; children end by their own timeouts");
        }
    }
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    // A failing system RNG leaves zeros; `jti` is then still unique enough
    // with `iat`, and the failure is logged by every other user of the RNG.
    let _ = sessionary_core::token::fill_random(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The provider's routes, behind a [`SessionLayer`] with the demo's cookie
/// settings (`config`), so `/oauth2/authorize` sees the central session.
pub fn router(provider: Arc<Provider>, config: SessionConfig) -> Router {
    let manager = provider.manager.clone();
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oauth2/jwks", get(jwks))
        .route("/oauth2/authorize", get(authorize))
        .route("/oauth2/token", axum::routing::post(token))
        .route("/oauth2/userinfo", get(userinfo).post(userinfo))
        .route("/oauth2/logout", get(logout))
        .layer(SessionLayer::new(manager, config))
        // The `Bearer` extractor of userinfo verifies with it.
        .layer(axum::Extension(Arc::clone(&provider.tokens)))
        .with_state(provider)
}

async fn discovery(State(p): State<Arc<Provider>>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(p.discovery()),
    )
        .into_response()
}

async fn jwks(State(p): State<Arc<Provider>>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(p.keys.jwks()),
    )
        .into_response()
}

/// Query or form parameters; a repeated parameter is refused.
fn params(raw: &[u8]) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(raw) {
        if out.insert(k.into_owned(), v.into_owned()).is_some() {
            return None;
        }
    }
    Some(out)
}

/// The `400` page for errors that must not redirect.
fn error_page(message: &str) -> Response {
    let body = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Sign-in error" } }
            body { main #error data-status="400" data-problem="invalid-request" {
                h1 { "Sign-in error" }
                p.message { (message) }
            } }
        }
    };
    html_page(
        StatusCode::BAD_REQUEST,
        "default-src 'none'; frame-ancestors 'none'",
        body,
    )
}

/// A page of the provider's own: not cached, framed by no one, with `csp`.
fn html_page(status: StatusCode, csp: &'static str, body: maud::Markup) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body.into_string(),
    )
        .into_response()
}

/// `uri` with `pairs` added to its query; `None` if `uri` is not a URL.
fn with_query(uri: &str, pairs: &[(&str, &str)]) -> Option<String> {
    let mut u = url::Url::parse(uri).ok()?;
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    Some(u.into())
}

/// A redirect to `uri` with `pairs` added to its query.
fn redirect_with(uri: &str, pairs: &[(&str, &str)]) -> Response {
    let Some(u) = with_query(uri, pairs) else {
        return error_page("the redirect URI is not a URL");
    };
    let mut res = Redirect::to(&u).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The sealed content of an authorization code.
#[derive(Serialize, Deserialize)]
struct CodeClaims {
    sid: SessionId,
    client: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    /// Expiry, ms.
    exp: i64,
}

async fn authorize(
    State(p): State<Arc<Provider>>,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.unwrap_or_default();
    let Some(q) = params(raw.as_bytes()) else {
        return error_page("a parameter is repeated");
    };
    let Some(client) = q.get("client_id").and_then(|id| p.clients.get(id)) else {
        return error_page("unknown client_id");
    };
    let Some(redirect_uri) = q
        .get("redirect_uri")
        .filter(|r| client.redirect_uris.iter().any(|x| x == *r))
    else {
        return error_page("redirect_uri is not registered for this client");
    };
    let state = q.get("state").map(String::as_str);
    // `state` comes back in the redirect and `nonce` goes into the code and
    // the ID token: both bounded, so a request cannot grow either at will.
    if state.is_some_and(|s| s.len() > MAX_ECHOED) {
        return error_page("state is longer than 512 bytes");
    }
    let fail = |error: &str, description: &str| {
        let mut pairs = vec![
            ("error", error),
            ("error_description", description),
            ("iss", p.issuer.as_str()),
        ];
        if let Some(s) = state {
            pairs.push(("state", s));
        }
        redirect_with(redirect_uri, &pairs)
    };
    if q.get("nonce").is_some_and(|n| n.len() > MAX_ECHOED) {
        return fail("invalid_request", "nonce is longer than 512 bytes");
    }
    if q.get("response_type").map(String::as_str) != Some("code") {
        return fail("unsupported_response_type", "only response_type=code");
    }
    if q.contains_key("request") || q.contains_key("request_uri") {
        return fail("request_not_supported", "request objects are not supported");
    }
    let scope = q.get("scope").map(String::as_str).unwrap_or_default();
    if !scope.split(' ').any(|s| s == "openid") {
        return fail("invalid_scope", "the openid scope is required");
    }
    let Some(challenge) = q.get("code_challenge") else {
        return fail("invalid_request", "PKCE is required (code_challenge)");
    };
    if q.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return fail("invalid_request", "only code_challenge_method=S256");
    }
    if challenge.len() != 43 || URL_SAFE_NO_PAD.decode(challenge).is_err() {
        return fail("invalid_request", "code_challenge is not an S256 challenge");
    }
    let prompts: Vec<&str> = q
        .get("prompt")
        .map(|s| s.split(' ').filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    let none = prompts.contains(&"none");
    let login = prompts.contains(&"login");
    if none && prompts.len() > 1 {
        return fail("invalid_request", "prompt=none goes alone");
    }
    let max_age = match q.get("max_age").map(|m| m.parse::<u64>()) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(_)) => return fail("invalid_request", "max_age is not a number of seconds"),
    };
    let wanted_aal = q
        .get("acr_values")
        .map(|a| {
            a.split(' ')
                .filter_map(|v| match v {
                    v if v == acr_for(1) => Some(1u8),
                    v if v == acr_for(2) => Some(2u8),
                    _ => None,
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    let here = format!("/oauth2/authorize?{raw}");
    let go = |page: &str, back: &str| {
        let target = format!(
            "{page}?return_to={}",
            url::form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
        );
        let mut res = Redirect::to(&target).into_response();
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    };
    let central = session
        .record()
        .filter(|r| r.user.is_some() && !r.step_up_required());
    let Some(central) = central else {
        if none {
            return fail("login_required", "no signed-in session");
        }
        // A fresh sign-in satisfies prompt=login and max_age: come back without
        // prompt, or the sign-in would be asked for again and again.
        return go("/login", &without_prompt(&q));
    };
    let now = p.manager.now();
    let auth_time = central.auth_time.unwrap_or(central.created_at);
    if login {
        return go("/reauth", &without_prompt(&q));
    }
    if let Some(max) = max_age {
        // Whole seconds, as `auth_time` is; `max_age=0` always asks.
        let age = u64::try_from(now.millis_since(auth_time) / 1000).unwrap_or(0);
        if age > max || max == 0 {
            if none {
                return fail("login_required", "the authentication is older than max_age");
            }
            return go("/reauth", &without_prompt(&q));
        }
    }
    if central.aal < wanted_aal {
        if none {
            return fail("interaction_required", "a step-up is needed");
        }
        return go("/step-up", &here);
    }
    let Some(user) = central.user.clone() else {
        return fail("login_required", "no signed-in session");
    };
    let user_for_child = user.clone();
    let link = ChildLink {
        client: client.id.clone(),
        parent: central.id,
        auth_time: auth_time.0,
        scope: scope.to_owned(),
    };
    let mut data = sessionary_core::Data::new();
    data.insert(
        "oidc".to_owned(),
        serde_json::to_value(&link).unwrap_or(Value::Null),
    );
    let new = NewSession::user(user_for_child)
        .with_roles(central.roles.clone())
        .with_aal(central.aal)
        .with_device(central.device.clone())
        .with_restore(false)
        // An app sign-in never evicts: the browser's own session already
        // counted, and a page that sends the browser to this endpoint again
        // and again must not push the central session out.
        .without_limit()
        .with_data(data);
    let child = match p.manager.create(new).await {
        Ok(i) => i.session,
        Err(e) => {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "oidc: cannot create the child session"
            );
            return fail("temporarily_unavailable", "cannot sign in now");
        }
    };
    let abandoned = p.end_abandoned(&user, &central.id, &client.id).await;
    if let Err(e) = p
        .remember_child(&user, &central.id, &child.id, &client.id, &abandoned)
        .await
    {
        tracing::warn!(
            error = &e as &dyn std::error::Error,
            "oidc: cannot record the app session"
        );
        let _ = p.manager.end_session(&child.id, EndReason::LoggedOut).await;
        return fail("temporarily_unavailable", "cannot sign in now");
    }
    let code = CodeClaims {
        sid: child.id,
        client: client.id.clone(),
        redirect_uri: redirect_uri.clone(),
        challenge: challenge.clone(),
        nonce: q.get("nonce").cloned(),
        exp: now.plus(CODE_TTL).0,
    };
    let sealed = serde_json::to_vec(&code)
        .ok()
        .and_then(|b| p.seal.seal(CODE_AAD, &b).ok());
    let Some(sealed) = sealed else {
        return fail("server_error", "cannot issue a code");
    };
    tracing::info!(sid = %child.id, parent = %central.id, client = %client.id, "oidc: app sign-in");
    p.count(OidcEvent::SignIn);
    p.audit(
        "oidc_sign_in",
        &child.id,
        central.user.as_ref(),
        format!("{} under {}", client.id, central.id),
    );
    let code = URL_SAFE_NO_PAD.encode(sealed.as_bytes());
    let mut pairs = vec![("code", code.as_str()), ("iss", p.issuer.as_str())];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    redirect_with(redirect_uri, &pairs)
}

/// The authorize URL of `q` to come back to after a (re-)authentication:
/// without `prompt`, and with `max_age=60` when it asked for a fresh
/// authentication (`prompt=login`, any `max_age`). The authentication just
/// done satisfies that, so the browser does not loop, even for `max_age=0`;
/// an authentication older than a minute does not.
fn without_prompt(q: &BTreeMap<String, String>) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in q {
        if k == "prompt" || k == "max_age" {
            continue;
        }
        s.append_pair(k, v);
    }
    let fresh = q.contains_key("max_age")
        || q.get("prompt")
            .is_some_and(|p| p.split(' ').any(|x| x == "login"));
    if fresh {
        s.append_pair("max_age", "60");
    }
    format!("/oauth2/authorize?{}", s.finish())
}

/// An OAuth error response (RFC 6749 5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut res = (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"sessionary\""),
        );
    }
    res
}

fn invalid_grant(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

fn digest_eq(a: &str, b: &str) -> bool {
    let da = ring::digest::digest(&ring::digest::SHA256, a.as_bytes());
    let db = ring::digest::digest(&ring::digest::SHA256, b.as_bytes());
    bool::from(da.as_ref().ct_eq(db.as_ref()))
}

/// Why client authentication failed.
#[derive(Debug)]
enum ClientAuthFailure {
    /// Unknown client, wrong or missing secret: `401 invalid_client`.
    Unauthorized,
    /// Basic and `client_secret` both: `400 invalid_request`.
    TwoMethods,
}

impl IntoResponse for ClientAuthFailure {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized => oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            ),
            Self::TwoMethods => oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "one client authentication method only",
            ),
        }
    }
}

/// The authenticated client of a token request.
fn authenticate<'a>(
    p: &'a Provider,
    headers: &HeaderMap,
    form: &BTreeMap<String, String>,
) -> Result<&'a Client, ClientAuthFailure> {
    use ClientAuthFailure::Unauthorized;
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    let (id, secret) = match basic {
        Some(b) => {
            if form.contains_key("client_secret") {
                return Err(ClientAuthFailure::TwoMethods);
            }
            let decoded = STANDARD.decode(b.trim()).map_err(|_| Unauthorized)?;
            let text = String::from_utf8(decoded).map_err(|_| Unauthorized)?;
            let (id, secret) = text.split_once(':').ok_or(Unauthorized)?;
            // RFC 6749 2.3.1: both parts are form-urlencoded.
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8()
                    .ok()
                    .map(std::borrow::Cow::into_owned)
            };
            let id = dec(id).ok_or(Unauthorized)?;
            if form.get("client_id").is_some_and(|f| *f != id) {
                return Err(Unauthorized);
            }
            (id, Some(dec(secret).ok_or(Unauthorized)?))
        }
        None => (
            form.get("client_id").cloned().ok_or(Unauthorized)?,
            form.get("client_secret").cloned(),
        ),
    };
    let client = p.clients.get(&id).ok_or(Unauthorized)?;
    match (&client.secret, secret) {
        (Some(expected), Some(given)) if digest_eq(expected, &given) => Ok(client),
        (None, None) => Ok(client),
        _ => Err(Unauthorized),
    }
}

async fn token(State(p): State<Arc<Provider>>, headers: HeaderMap, body: Bytes) -> Response {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected application/x-www-form-urlencoded",
        );
    }
    let Some(form) = params(&body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a parameter is repeated",
        );
    };
    let client = match authenticate(&p, &headers, &form) {
        Ok(c) => c,
        Err(failure) => {
            p.count(OidcEvent::TokenRefused);
            return failure.into_response();
        }
    };
    let res = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => code_grant(&p, client, &form).await,
        Some("refresh_token") => refresh_grant(&p, client, &form).await,
        Some(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "authorization_code or refresh_token",
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is missing",
        ),
    };
    // Issued tokens are counted by `issue_tokens`; a store failure (503)
    // is no refusal.
    if res.status().is_client_error() {
        p.count(OidcEvent::TokenRefused);
    }
    res
}

async fn code_grant(p: &Provider, client: &Client, form: &BTreeMap<String, String>) -> Response {
    let Some(code) = form.get("code") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code is missing",
        );
    };
    let opened = URL_SAFE_NO_PAD
        .decode(code)
        .ok()
        .and_then(|b| {
            p.seal
                .open(CODE_AAD, &sessionary_core::seal::Sealed::from_bytes(b))
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<CodeClaims>(&b).ok());
    let Some(claims) = opened else {
        return invalid_grant("unknown code");
    };
    if claims.client != client.id {
        return invalid_grant("the code was issued to another client");
    }
    // Single use, atomically in the store: whichever request comes second
    // (on any node) sees 2 and ends the session the first one was given.
    let used = p
        .manager
        .increment(&claims.sid, CODE_COUNTER, 1, None)
        .await;
    let end_child = || async {
        let _ = p
            .manager
            .end_session(&claims.sid, EndReason::TokenReuse)
            .await;
    };
    match used {
        Ok(sessionary_core::store::Counter::Incremented(1)) => {}
        Ok(sessionary_core::store::Counter::Incremented(_)) => {
            tracing::warn!(sid = %claims.sid, client = %client.id, "oidc: authorization code reused; its session ends");
            p.audit("oidc_code_reused", &claims.sid, None, client.id.clone());
            p.count(OidcEvent::CodeReused);
            end_child().await;
            return invalid_grant("the code was already used");
        }
        Ok(_) => return invalid_grant("the code's session is gone"),
        Err(e) => {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "oidc: code check failed"
            );
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again",
            );
        }
    }
    if p.manager.now().0 >= claims.exp {
        end_child().await;
        return invalid_grant("the code expired");
    }
    if form.get("redirect_uri") != Some(&claims.redirect_uri) {
        end_child().await;
        return invalid_grant("redirect_uri differs from the authorization request's");
    }
    let Some(verifier) = form.get("code_verifier") else {
        end_child().await;
        return invalid_grant("code_verifier is missing");
    };
    let computed = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    let verifier_ok = (43..=128).contains(&verifier.len())
        && bool::from(computed.as_bytes().ct_eq(claims.challenge.as_bytes()));
    if !verifier_ok {
        end_child().await;
        return invalid_grant("code_verifier does not match the challenge");
    }
    let child = match p.manager.session(&claims.sid).await {
        Ok(c) if c.is_live(p.manager.now()) => c,
        Err(sessionary_core::Error::Store(e)) => {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "oidc: code exchange failed"
            );
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again",
            );
        }
        _ => return invalid_grant("the code's session is gone"),
    };
    let Some(link) = ChildLink::of(&p.manager, &child) else {
        return invalid_grant("not a sign-in session");
    };
    issue_tokens(p, client, &child, &link, claims.nonce.as_deref(), None).await
}

async fn refresh_grant(p: &Provider, client: &Client, form: &BTreeMap<String, String>) -> Response {
    let Some(token) = form.get("refresh_token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token is missing",
        );
    };
    let refreshed = match p.manager.refresh(token).await {
        Ok(r) => r,
        Err(sessionary_core::Error::Store(e)) => {
            tracing::warn!(error = &e as &dyn std::error::Error, "oidc: refresh failed");
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again",
            );
        }
        Err(_) => return invalid_grant("the refresh token is not valid"),
    };
    let link = ChildLink::of(&p.manager, &refreshed.session).filter(|l| l.client == client.id);
    let Some(link) = link else {
        // Another client's token: stolen; its session ends.
        let _ = p
            .manager
            .end_session(&refreshed.session.id, EndReason::TokenReuse)
            .await;
        return invalid_grant("the refresh token was issued to another client");
    };
    issue_tokens(
        p,
        client,
        &refreshed.session,
        &link,
        None,
        Some(refreshed.token.encode()),
    )
    .await
}

async fn issue_tokens(
    p: &Provider,
    client: &Client,
    child: &SessionRecord,
    link: &ChildLink,
    nonce: Option<&str>,
    refresh: Option<String>,
) -> Response {
    let Some(user) = child.user.as_ref() else {
        return invalid_grant("not a sign-in session");
    };
    let access = match p.tokens.issue(child) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "oidc: cannot issue an access token");
            return invalid_grant("the session cannot have tokens");
        }
    };
    let grant = if refresh.is_some() {
        OidcEvent::Refreshed
    } else {
        OidcEvent::CodeRedeemed
    };
    let refresh = match refresh {
        Some(r) => r,
        None => match p.manager.issue_refresh(&child.id).await {
            Ok(r) => r.token.encode(),
            Err(e) => {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "oidc: cannot issue a refresh token"
                );
                return invalid_grant("the session cannot have tokens");
            }
        },
    };
    let key = match p.key_for(client) {
        Ok(k) => k,
        Err(_) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "no key"),
    };
    let now = p.manager.now();
    let digest = match key.alg() {
        SigningAlg::EdDsa => ring::digest::digest(&ring::digest::SHA512, access.token.as_bytes()),
        _ => ring::digest::digest(&ring::digest::SHA256, access.token.as_bytes()),
    };
    let half = &digest.as_ref()[..digest.as_ref().len() / 2];
    let mut amr = vec!["pwd"];
    if child.aal >= 2 {
        amr.extend(["otp", "mfa"]);
    }
    let mut claims = json!({
        "iss": p.issuer,
        "sub": user.as_str(),
        "aud": client.id,
        "azp": client.id,
        "exp": now.plus(ID_TOKEN_TTL).as_secs(),
        "iat": now.as_secs(),
        "auth_time": link.auth_time.div_euclid(1000),
        "acr": acr_for(child.aal),
        "amr": amr,
        "sid": link.parent.to_string(),
        "at_hash": URL_SAFE_NO_PAD.encode(half),
    });
    if let Some(n) = nonce {
        claims["nonce"] = Value::from(n);
    }
    let id_token = match key.sign(Some("JWT"), &claims) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "oidc: cannot sign an ID token");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "cannot sign",
            );
        }
    };
    let expires_in = access.expires_at.0.saturating_sub(now.0).max(0) / 1000;
    p.count(grant);
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        axum::Json(json!({
            "access_token": access.token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "refresh_token": refresh,
            "id_token": id_token,
            "scope": link.scope,
        })),
    )
        .into_response()
}

/// `/oauth2/userinfo`: the bearer token is read and verified by
/// `sessionary_axum::Bearer` (RFC 6750 refusals with `WWW-Authenticate`); the
/// token's session must be a live app session. A store failure is `503`, not
/// a refusal that would sign the app out.
async fn userinfo(State(p): State<Arc<Provider>>, Bearer(claims): Bearer) -> Response {
    let refuse = |error: &'static str| {
        let mut res = (
            StatusCode::UNAUTHORIZED,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(json!({ "error": error })),
        )
            .into_response();
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        res
    };
    let child = match p.manager.session(&claims.sid).await {
        Ok(c) => c,
        Err(sessionary_core::Error::Store(e)) => {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "oidc: userinfo failed"
            );
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again",
            );
        }
        Err(_) => return refuse("invalid_token"),
    };
    if !child.is_live(p.manager.now()) {
        return refuse("invalid_token");
    }
    let Some(link) = ChildLink::of(&p.manager, &child) else {
        return refuse("invalid_token");
    };
    let mut doc = json!({ "sub": claims.sub.as_str() });
    if link.scope.split(' ').any(|s| s == "profile") {
        doc["preferred_username"] = Value::from(claims.sub.as_str());
        doc["name"] = Value::from(claims.sub.as_str());
    }
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(doc)).into_response()
}

/// The claims of an `id_token_hint` this provider signed (expired ones too).
#[derive(Deserialize)]
struct Hint {
    iss: String,
    sub: String,
    aud: String,
    sid: String,
}

fn read_hint(p: &Provider, token: &str) -> Option<Hint> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    let key = p.keys.by_kid(header.kid.as_deref()?)?;
    // The header's algorithm must be the key's one algorithm.
    if format!("{:?}", header.alg) != key.alg().as_str() {
        return None;
    }
    let decoding =
        jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(key.public_jwk()?).ok()?)
            .ok()?;
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.validate_exp = false;
    v.validate_aud = false;
    v.set_required_spec_claims(&["iss", "sub", "aud"]);
    v.set_issuer(&[p.issuer.as_str()]);
    let data = jsonwebtoken::decode::<Hint>(token, &decoding, &v).ok()?;
    (data.claims.iss == p.issuer).then_some(data.claims)
}

async fn logout(
    State(p): State<Arc<Provider>>,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(q) = params(raw.unwrap_or_default().as_bytes()) else {
        return error_page("a parameter is repeated");
    };
    let Some(hint) = q.get("id_token_hint").and_then(|t| read_hint(&p, t)) else {
        return error_page("id_token_hint is missing or not an ID token of this provider");
    };
    let Some(client) = p.clients.get(&hint.aud) else {
        return error_page("unknown client");
    };
    if q.get("client_id").is_some_and(|c| *c != client.id) {
        return error_page("client_id differs from the ID token's audience");
    }
    let back = match q.get("post_logout_redirect_uri") {
        Some(u) if client.post_logout_redirect_uris.iter().any(|x| x == u) => Some(u.clone()),
        Some(_) => return error_page("post_logout_redirect_uri is not registered for this client"),
        None => None,
    };
    let Ok(sid) = SessionId::parse(&hint.sid) else {
        return error_page("the ID token has no session");
    };
    let cookie_is_central = session.record().is_some_and(|r| r.id == sid);
    let scope = if cookie_is_central {
        // Removes the cookie too; the Ended event ends the children.
        if let Err(e) = session.logout().await {
            tracing::warn!(error = %e, "oidc: logout failed");
        }
        p.count(OidcEvent::LogoutEverywhere);
        "everywhere"
    } else {
        // This browser does not hold the central session (signed out
        // already, signed in again since, another browser, or no browser
        // at all): an ID token is no credential for it, so the central
        // session stays and only this app's sessions under it end.
        match UserId::new(&hint.sub) {
            Ok(user) => p.end_app_sessions(&user, &sid, &client.id).await,
            Err(_) => return error_page("the ID token has no user"),
        }
        p.count(OidcEvent::LogoutApp);
        "app"
    };
    tracing::info!(sid = %sid, client = %client.id, scope, "oidc: RP-initiated logout");
    p.audit("oidc_logout", &sid, None, format!("{} {scope}", client.id));
    let mut pairs = Vec::new();
    if let Some(s) = q.get("state") {
        pairs.push(("state", s.as_str()));
    }
    // This browser is signed in with another session than the app's: ask
    // whether to sign out of Sessionary too (OpenID Connect RP-Initiated
    // Logout 1.0, section 2: the provider must ask when the ID token does not
    // belong to the current session).
    if let Some(current) = session.record().filter(|r| r.user.is_some() && r.id != sid) {
        let back = match &back {
            Some(uri) => with_query(uri, &pairs).unwrap_or_else(|| "/".to_owned()),
            None => "/".to_owned(),
        };
        let who = current.user.as_ref().map_or("", UserId::as_str).to_owned();
        return match session.csrf_token().await {
            Ok(csrf) => signed_out_of_app_page(&client.name, &who, &csrf, &back),
            Err(_) => Redirect::to(&back).into_response(),
        };
    }
    match back {
        Some(uri) => redirect_with(&uri, &pairs),
        None => Redirect::to("/").into_response(),
    }
}

/// The page of an RP-initiated logout from a browser signed in with another
/// session: the app's sessions ended; sign out of Sessionary too, or go back.
fn signed_out_of_app_page(app: &str, user: &str, csrf: &str, back: &str) -> Response {
    let body = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Signed out of " (app) } }
            body { main #oidc-logout {
                h1 { "Signed out of " (app) }
                p { "You are still signed in to Sessionary as " strong { (user) } "." }
                form #sign-out-everywhere method="post" action="/logout" {
                    input type="hidden" name="csrf_token" value=(csrf);
                    button type="submit" { "Sign out of Sessionary too" }
                }
                p { a #back href=(back) { "Stay signed in and go back" } }
            } }
        }
    };
    html_page(
        StatusCode::OK,
        "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
        body,
    )
}
