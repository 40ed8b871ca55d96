//! Issuing and verifying access tokens.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sessionary_core::clock::duration_millis;
use sessionary_core::{Clock, SessionId, SessionRecord, SystemClock, Timestamp, UserId};

use crate::error::AccessTokenError;
use crate::keys::{KID_MAX, KeyRing, SigningKey};
use crate::revocation::Revocations;

/// Shortest access-token lifetime: configured lifetimes are raised to this.
pub const MIN_TTL: Duration = Duration::from_secs(5 * 60);
/// Longest access-token lifetime: configured lifetimes are lowered to this.
pub const MAX_TTL: Duration = Duration::from_secs(15 * 60);
/// Default access-token lifetime.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);
/// Default clock-skew leeway for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Largest leeway accepted.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);
/// Longest token accepted, in bytes; anything longer is refused before decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The header `typ` of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// The claims of a verified access token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessClaims {
    /// `iss`.
    pub iss: String,
    /// `aud`.
    pub aud: String,
    /// `sub`: the user.
    pub sub: UserId,
    /// `sid`: the session the token was issued for.
    pub sid: SessionId,
    /// `exp`, seconds since the epoch.
    pub exp: i64,
    /// `nbf`, seconds since the epoch.
    pub nbf: i64,
    /// `iat`, seconds since the epoch.
    pub iat: i64,
    /// `jti`: random, unique per token.
    pub jti: String,
    /// The session's roles when the token was issued.
    pub roles: Vec<String>,
    /// The session's authenticator assurance level (1-3).
    pub aal: u8,
}

/// A freshly issued access token.
#[derive(Clone)]
#[non_exhaustive]
pub struct IssuedAccessToken {
    /// The compact JWS, for the `Authorization: Bearer` header.
    pub token: String,
    /// When it expires (`exp`, whole seconds).
    pub expires_at: Timestamp,
    /// Its `jti`.
    pub jti: String,
}

impl std::fmt::Debug for IssuedAccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedAccessToken")
            .field("token", &"REDACTED")
            .field("expires_at", &self.expires_at)
            .field("jti", &self.jti)
            .finish()
    }
}

/// The claims as they are signed.
#[derive(Serialize)]
struct OutClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    sid: SessionId,
    exp: i64,
    nbf: i64,
    iat: i64,
    jti: &'a str,
    roles: &'a [String],
    aal: u8,
}

/// The claims as they are read: every one required and of one JSON type
/// (integers for times, a string for `aud`), so `"exp": "9999999999"` or a
/// duplicate is a rejection, never "absent". Unknown claims are ignored.
#[derive(Deserialize)]
struct InClaims<'a> {
    #[serde(borrow)]
    iss: Cow<'a, str>,
    #[serde(borrow)]
    aud: Cow<'a, str>,
    sub: String,
    sid: SessionId,
    exp: i64,
    nbf: i64,
    iat: i64,
    jti: String,
    roles: Vec<String>,
    aal: u8,
}

/// The protected header as it is read. Strings are borrowed, so a header using
/// JSON escapes is refused as malformed; fields not named here (`jwk`, `jku`,
/// `x5u`, `x5c`, ...) are ignored, never used to find a key.
#[derive(Deserialize)]
struct InHeader<'a> {
    alg: &'a str,
    #[serde(default)]
    typ: Option<&'a str>,
    #[serde(default)]
    kid: Option<&'a str>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    enc: Option<serde::de::IgnoredAny>,
}

/// Builds an [`AccessTokens`].
#[derive(Debug)]
#[must_use]
pub struct AccessTokensBuilder {
    issuer: String,
    audience: String,
    keys: KeyRing,
    clock: Arc<dyn Clock>,
    default_ttl: Duration,
    role_ttl: BTreeMap<String, Duration>,
    leeway: Duration,
    revocations: Option<Arc<Revocations>>,
}

impl AccessTokensBuilder {
    /// The clock (default: the system clock). Use the `SessionManager`'s.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The lifetime of tokens for sessions without a role listed in
    /// [`Self::with_role_ttl`] (default 10 min; kept within 5-15 min).
    pub fn with_default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The lifetime of tokens for sessions with `role` (kept within 5-15 min).
    /// A session with several listed roles gets the shortest.
    pub fn with_role_ttl(mut self, role: impl Into<String>, ttl: Duration) -> Self {
        self.role_ttl.insert(role.into(), ttl);
        self
    }

    /// The clock-skew leeway for `exp` and `nbf` (default 30 s, at most 60 s).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The revocation list to consult (default: a new, empty one, fed by nobody
    /// until you call [`Revocations::follow`] on [`AccessTokens::revocations`]).
    pub fn with_revocations(mut self, revocations: Arc<Revocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Builds.
    ///
    /// # Errors
    ///
    /// [`AccessTokenError::Config`] for an empty issuer or audience, or a leeway
    /// over [`MAX_LEEWAY`].
    pub fn build(self) -> Result<AccessTokens, AccessTokenError> {
        if self.issuer.is_empty() || self.audience.is_empty() {
            return Err(AccessTokenError::Config("issuer and audience must be set"));
        }
        if self.leeway > MAX_LEEWAY {
            return Err(AccessTokenError::Config("the leeway must be at most 60 s"));
        }
        let clamp = |d: Duration| d.clamp(MIN_TTL, MAX_TTL);
        let default_ttl = clamp(self.default_ttl);
        let role_ttl: BTreeMap<String, Duration> = self
            .role_ttl
            .into_iter()
            .map(|(r, d)| (r, clamp(d)))
            .collect();
        let max_ttl = role_ttl.values().copied().fold(default_ttl, Duration::max);
        let revocations = self
            .revocations
            .unwrap_or_else(|| Revocations::new(Arc::clone(&self.clock)));
        let signer = Signer::new(self.keys.current());
        Ok(AccessTokens {
            issuer: self.issuer,
            audience: self.audience,
            clock: self.clock,
            default_ttl,
            role_ttl,
            max_ttl,
            leeway_ms: duration_millis(self.leeway),
            revocations,
            keys: RwLock::new(Keys {
                ring: self.keys,
                signer,
            }),
        })
    }
}

/// The current key's pre-built header.
#[derive(Debug)]
struct Signer {
    header: Header,
    key: EncodingKey,
}

impl Signer {
    fn new(key: &SigningKey) -> Self {
        let mut header = Header::new(key.alg().jwt());
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid = Some(key.kid().to_owned());
        Self {
            header,
            key: key.encoding.clone(),
        }
    }
}

#[derive(Debug)]
struct Keys {
    ring: KeyRing,
    signer: Signer,
}

/// Issues and verifies access tokens: short-lived JWTs (`typ: at+jwt`) for a
/// session, signed by the current key of a [`KeyRing`], refused once the
/// session has ended.
///
/// See the crate docs for an example and the security model.
#[derive(Debug)]
pub struct AccessTokens {
    issuer: String,
    audience: String,
    clock: Arc<dyn Clock>,
    default_ttl: Duration,
    role_ttl: BTreeMap<String, Duration>,
    max_ttl: Duration,
    leeway_ms: i64,
    revocations: Arc<Revocations>,
    keys: RwLock<Keys>,
}

impl AccessTokens {
    /// Starts building: tokens carry `iss` = `issuer` and `aud` = `audience`,
    /// and only such tokens verify.
    pub fn builder(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        keys: KeyRing,
    ) -> AccessTokensBuilder {
        AccessTokensBuilder {
            issuer: issuer.into(),
            audience: audience.into(),
            keys,
            clock: Arc::new(SystemClock),
            default_ttl: DEFAULT_TTL,
            role_ttl: BTreeMap::new(),
            leeway: DEFAULT_LEEWAY,
            revocations: None,
        }
    }

    /// The revocation list this verifier consults.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// The lifetime of a token for a session with `roles`: the shortest lifetime
    /// of the listed roles it has, else the default.
    pub fn ttl_for(&self, roles: &[String]) -> Duration {
        roles
            .iter()
            .filter_map(|r| self.role_ttl.get(r))
            .copied()
            .min()
            .unwrap_or(self.default_ttl)
    }

    /// How long a retired key keeps verifying: the longest lifetime plus the leeway.
    pub fn retired_key_window(&self) -> Duration {
        self.max_ttl
            .saturating_add(Duration::from_millis(self.leeway_ms.unsigned_abs()))
    }

    /// Issues an access token for `session`.
    ///
    /// The token expires after [`Self::ttl_for`] its roles, but never after the
    /// session's absolute expiry.
    ///
    /// # Errors
    ///
    /// [`AccessTokenError::Anonymous`] for a session without a user,
    /// [`AccessTokenError::SessionNotLive`] for an expired one,
    /// [`AccessTokenError::Revoked`] for one known to have ended,
    /// [`AccessTokenError::Random`], [`AccessTokenError::Signing`].
    pub fn issue(&self, session: &SessionRecord) -> Result<IssuedAccessToken, AccessTokenError> {
        let user = session.user.as_ref().ok_or(AccessTokenError::Anonymous)?;
        let now = self.clock.now();
        if !session.is_live(now) {
            return Err(AccessTokenError::SessionNotLive);
        }
        if session.step_up_required() {
            return Err(AccessTokenError::StepUpRequired);
        }
        if self.revocations.is_revoked(&session.id) {
            return Err(AccessTokenError::Revoked);
        }
        let iat = now.as_secs();
        let ttl = self.ttl_for(&session.roles);
        let exp = now
            .plus(ttl)
            .min(session.absolute_expires_at)
            .as_secs()
            .max(iat);
        let mut jti = [0u8; 16];
        sessionary_core::token::fill_random(&mut jti).map_err(|_| AccessTokenError::Random)?;
        let jti = URL_SAFE_NO_PAD.encode(jti);
        let claims = OutClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: user.as_str(),
            sid: session.id,
            exp,
            nbf: iat,
            iat,
            jti: &jti,
            roles: &session.roles,
            aal: session.aal,
        };
        let keys = self.keys.read();
        let token = jsonwebtoken::encode(&keys.signer.header, &claims, &keys.signer.key)
            .map_err(AccessTokenError::Signing)?;
        Ok(IssuedAccessToken {
            token,
            expires_at: Timestamp(exp.saturating_mul(1000)),
            jti,
        })
    }

    /// Verifies an access token and returns its claims.
    ///
    /// In order: the form (three base64url parts, at most [`MAX_TOKEN_LEN`]
    /// bytes, not a JWE); the header (`alg`, `kid`, no `crit`); the key by `kid`
    /// (retired keys only within [`Self::retired_key_window`]); the header's
    /// `alg` equal to the key's one algorithm; the signature; then `typ`, every
    /// claim's presence and JSON type, `iss`, `aud`, `exp` and `nbf` (with the
    /// leeway, by the injected clock), and last the revocation list.
    ///
    /// # Errors
    ///
    /// The [`AccessTokenError`] naming the first check that failed.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, AccessTokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AccessTokenError::Malformed("too long"));
        }
        let (message, signature) = token
            .rsplit_once('.')
            .ok_or(AccessTokenError::Malformed("not three dot-separated parts"))?;
        let (header_b64, payload_b64) = message
            .split_once('.')
            .ok_or(AccessTokenError::Malformed("not three dot-separated parts"))?;
        if payload_b64.contains('.') {
            return Err(AccessTokenError::Malformed(
                if payload_b64.matches('.').count() == 2 {
                    "five parts: a JWE, not a signed token"
                } else {
                    "not three dot-separated parts"
                },
            ));
        }
        // An empty signature (as `alg: none` has) goes on to the algorithm check.
        if header_b64.is_empty() || payload_b64.is_empty() {
            return Err(AccessTokenError::Malformed("empty part"));
        }
        let header_json = decode_part(header_b64)?;
        let header: InHeader<'_> = serde_json::from_slice(&header_json)
            .map_err(|_| AccessTokenError::Malformed("the header is not the expected JSON"))?;
        if header.enc.is_some() {
            return Err(AccessTokenError::Malformed("a JWE header"));
        }
        if header.crit.is_some() {
            return Err(AccessTokenError::UnsupportedHeader("crit"));
        }
        let kid = header.kid.ok_or(AccessTokenError::UnknownKey)?;
        if kid.is_empty() || kid.len() > KID_MAX {
            return Err(AccessTokenError::UnknownKey);
        }

        let now = self.clock.now();
        {
            let keys = self.keys.read();
            let (key, retired_at) = keys.ring.get(kid).ok_or(AccessTokenError::UnknownKey)?;
            if let Some(t) = retired_at
                && now >= t.plus(self.retired_key_window())
            {
                return Err(AccessTokenError::KeyRetired);
            }
            // One algorithm per key: the header must name exactly it. `none`,
            // `nOnE`, `HS256` against an asymmetric key, ... all stop here.
            if header.alg != key.alg().as_str() {
                return Err(AccessTokenError::AlgorithmNotAllowed);
            }
            // The key's own algorithm, never the header's, picks the primitive.
            let ok = jsonwebtoken::crypto::verify(
                signature,
                message.as_bytes(),
                &key.decoding,
                key.alg().jwt(),
            )
            .map_err(|_| AccessTokenError::BadSignature)?;
            if !ok {
                return Err(AccessTokenError::BadSignature);
            }
        }

        // Signed by us; now every claim.
        if !header.typ.is_some_and(is_access_token_type) {
            return Err(AccessTokenError::WrongType);
        }
        let payload = decode_part(payload_b64)?;
        let c: InClaims<'_> =
            serde_json::from_slice(&payload).map_err(AccessTokenError::InvalidClaims)?;
        if c.iss != self.issuer {
            return Err(AccessTokenError::WrongIssuer);
        }
        if c.aud != self.audience {
            return Err(AccessTokenError::WrongAudience);
        }
        let ms = |secs: i64| secs.saturating_mul(1000);
        if now.0 >= ms(c.exp).saturating_add(self.leeway_ms) {
            return Err(AccessTokenError::Expired);
        }
        if now.0 < ms(c.nbf).saturating_sub(self.leeway_ms)
            || now.0 < ms(c.iat).saturating_sub(self.leeway_ms)
        {
            return Err(AccessTokenError::NotYetValid);
        }
        let sub = UserId::new(c.sub).map_err(|_| AccessTokenError::InvalidClaim("sub"))?;
        if c.jti.is_empty() || c.jti.len() > 64 {
            return Err(AccessTokenError::InvalidClaim("jti"));
        }
        self.revocations.check(&c.sid, c.iat, now)?;
        Ok(AccessClaims {
            iss: c.iss.into_owned(),
            aud: c.aud.into_owned(),
            sub,
            sid: c.sid,
            exp: c.exp,
            nbf: c.nbf,
            iat: c.iat,
            jti: c.jti,
            roles: c.roles,
            aal: c.aal,
        })
    }

    /// Makes `new` the signing key. The previous key keeps verifying for
    /// [`Self::retired_key_window`] (the longest lifetime plus the leeway), then
    /// is refused and can be [pruned](Self::prune).
    ///
    /// # Errors
    ///
    /// [`AccessTokenError::Key`] if its `kid` is already in the ring.
    pub fn rotate(&self, new: SigningKey) -> Result<(), AccessTokenError> {
        let now = self.clock.now();
        let signer = Signer::new(&new);
        let mut keys = self.keys.write();
        keys.ring.rotate(new, now)?;
        keys.signer = signer;
        Ok(())
    }

    /// Drops retired keys past their window; returns how many.
    pub fn prune(&self) -> usize {
        let now = self.clock.now();
        let window = self.retired_key_window();
        self.keys.write().ring.prune(now, window)
    }

    /// A copy of the key ring (to save it with [`KeyRing::to_text`]).
    pub fn key_ring(&self) -> KeyRing {
        self.keys.read().ring.clone()
    }

    /// The JWKS document of the public keys that still verify (current first);
    /// HS256 secrets are never published.
    pub fn jwks(&self) -> Value {
        let now = self.clock.now();
        let window = self.retired_key_window();
        self.keys
            .read()
            .ring
            .jwks_filtered(|retired| retired.is_none_or(|t| now < t.plus(window)))
    }
}

/// `at+jwt`, or its full media type `application/at+jwt` (RFC 9068 2.1), in
/// any case (media types are case-insensitive).
fn is_access_token_type(typ: &str) -> bool {
    let t = match (typ.get(..12), typ.get(12..)) {
        (Some(prefix), Some(rest)) if prefix.eq_ignore_ascii_case("application/") => rest,
        _ => typ,
    };
    t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
}

fn decode_part(part: &str) -> Result<Vec<u8>, AccessTokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AccessTokenError::Malformed("a part is not base64url"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_type_matches_both_spellings_in_any_case() {
        for ok in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
        ] {
            assert!(is_access_token_type(ok), "{ok}");
        }
        for bad in [
            "",
            "jwt",
            "JWT",
            "application/",
            "application/jwt",
            "at+jwt ",
            "xapplication/at+jwt",
        ] {
            assert!(!is_access_token_type(bad), "{bad}");
        }
        // Multi-byte text around the prefix boundary does not panic.
        assert!(!is_access_token_type("applicatio\u{e9}at+jwt"));
    }

    #[test]
    fn debug_of_an_issued_token_is_redacted() {
        let t = IssuedAccessToken {
            token: "secret.token.value".into(),
            expires_at: Timestamp(0),
            jti: "j".into(),
        };
        assert!(!format!("{t:?}").contains("secret"));
    }
}
