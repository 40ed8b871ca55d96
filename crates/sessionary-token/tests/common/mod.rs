//! Shared helpers: a manager on a mock clock, the verifier, and a forger that
//! signs any header and payload with any key.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different subset.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use sessionary_core::{
    Clock, MemoryStore, MockClock, NewSession, SessionManager, SessionRecord, UserId,
};
use sessionary_token::{AccessTokens, KeyRing, Revocations, SigningAlg, SigningKey};

pub const ISS: &str = "https://auth.example";
pub const AUD: &str = "https://api.example";

pub struct Fixture {
    pub clock: MockClock,
    pub manager: SessionManager,
    pub tokens: AccessTokens,
    pub key: SigningKey,
}

pub fn fixture(alg: SigningAlg) -> Fixture {
    fixture_with(alg, |b| b)
}

pub fn fixture_with(
    alg: SigningAlg,
    f: impl FnOnce(sessionary_token::AccessTokensBuilder) -> sessionary_token::AccessTokensBuilder,
) -> Fixture {
    let clock = MockClock::default();
    let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let revocations = Revocations::new(Arc::clone(&dyn_clock));
    let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
        .with_clock(Arc::clone(&dyn_clock))
        .with_event_sink(revocations.clone())
        .build()
        .expect("manager");
    let key = SigningKey::generate(alg).expect("key");
    let tokens = f(AccessTokens::builder(ISS, AUD, KeyRing::new(key.clone()))
        .with_clock(dyn_clock)
        .with_revocations(revocations))
    .build()
    .expect("tokens");
    Fixture {
        clock,
        manager,
        tokens,
        key,
    }
}

pub async fn session(m: &SessionManager, roles: &[&str]) -> SessionRecord {
    let issued = m
        .create(
            NewSession::user(UserId::new("alice").expect("user")).with_roles(roles.iter().copied()),
        )
        .await
        .expect("session");
    SessionRecord::clone(&issued.session)
}

pub fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

pub fn encoding_key(key: &SigningKey) -> EncodingKey {
    match key.alg() {
        SigningAlg::EdDsa => EncodingKey::from_ed_der(key.secret_bytes()),
        SigningAlg::Es256 => EncodingKey::from_ec_der(key.secret_bytes()),
        _ => EncodingKey::from_secret(key.secret_bytes()),
    }
}

pub fn jwt_alg(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::EdDsa => Algorithm::EdDSA,
        SigningAlg::Es256 => Algorithm::ES256,
        _ => Algorithm::HS256,
    }
}

/// `b64(header).b64(payload).sig` with the signature made by `key` under `alg`.
pub fn forge_with(header: &Value, payload: &[u8], key: &EncodingKey, alg: Algorithm) -> String {
    let msg = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload));
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), key, alg).expect("sign");
    format!("{msg}.{sig}")
}

/// A token signed by `key` with its own algorithm.
pub fn forge(key: &SigningKey, header: &Value, claims: &Value) -> String {
    forge_with(
        header,
        claims.to_string().as_bytes(),
        &encoding_key(key),
        jwt_alg(key.alg()),
    )
}

/// The header our issuer writes.
pub fn good_header(key: &SigningKey) -> Value {
    json!({"alg": key.alg().as_str(), "typ": "at+jwt", "kid": key.kid()})
}

/// Claims our issuer would write for `s` at the clock's time.
pub fn good_claims(clock: &MockClock, s: &SessionRecord) -> Value {
    let now = clock.now().as_secs();
    json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "sid": s.id.to_string(),
        "exp": now + 600, "nbf": now, "iat": now,
        "jti": "abcdefghijklmnopqrstuv", "roles": s.roles, "aal": s.aal,
    })
}

pub fn reason(
    r: Result<sessionary_token::AccessClaims, sessionary_token::AccessTokenError>,
) -> &'static str {
    match r {
        Ok(_) => "accepted",
        Err(e) => e.reason().unwrap_or("internal"),
    }
}

pub const MINUTE: Duration = Duration::from_secs(60);

pub fn b64_decode(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("base64url")
}
