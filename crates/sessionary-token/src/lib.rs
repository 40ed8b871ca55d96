//! Stateless access tokens for Sessionary: short-lived JWTs bound to a session.
//!
//! `sessionary-token` issues an access token (a compact JWS, header `typ:
//! at+jwt`) for a live `sessionary_core::SessionRecord` and verifies it without
//! a store round trip. Keys live in a [`KeyRing`] (Ed25519 by default, P-256, or
//! an HMAC secret of at least 256 bits), rotate without refusing tokens in
//! flight, and are published as a JWKS document. A token is refused as soon as
//! the verifier learns that its session ended ([`Revocations`], fed by session
//! events). Refresh tokens are the session store's business, not this crate's.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use sessionary_core::{Clock, MemoryStore, MockClock, NewSession, SessionManager, UserId};
//! use sessionary_token::{AccessTokens, KeyRing, Revocations, SigningAlg, SigningKey};
//!
//! let clock: Arc<dyn Clock> = Arc::new(MockClock::default());
//! // The revocation list hears every session event, synchronously.
//! let revocations = Revocations::new(Arc::clone(&clock));
//! let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
//!     .with_clock(Arc::clone(&clock))
//!     .with_event_sink(revocations.clone())
//!     .build()?;
//! let tokens = AccessTokens::builder(
//!     "https://auth.example",
//!     "https://api.example",
//!     KeyRing::new(SigningKey::generate(SigningAlg::EdDsa)?),
//! )
//! .with_clock(clock)
//! .with_revocations(revocations)
//! .build()?;
//!
//! let issued = manager.create(NewSession::user(UserId::new("alice")?).with_roles(["user"])).await?;
//! let at = tokens.issue(&issued.session)?;
//! let claims = tokens.verify(&at.token)?;
//! assert_eq!(claims.sub.as_str(), "alice");
//! assert_eq!(claims.sid, issued.session.id);
//!
//! // Sign out: the access token is refused at once, long before it expires.
//! manager.logout(&issued.token.encode()).await?;
//! assert_eq!(tokens.verify(&at.token).unwrap_err().reason(), Some("revoked"));
//!
//! // Resource servers get the public keys here (never HS256 secrets).
//! assert_eq!(tokens.jwks()["keys"][0]["kty"], "OKP");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Security model
//!
//! - **Signature first.** Verification parses only the header (`alg`, `kid`,
//!   `typ`), looks the key up by `kid` in the ring (never from `jwk`, `jku`,
//!   `x5u` or `x5c` headers, which are ignored), and checks the signature before
//!   any claim is read. `kid` is untrusted input: it is only a hash-map key,
//!   at most 64 bytes.
//! - **One algorithm per key.** The header's `alg` must equal the key's pinned
//!   algorithm exactly; the key's algorithm, not the header's, picks the
//!   primitive. `none` in any spelling, and HS256 against an asymmetric key (key
//!   confusion), are refused. JWE (five parts, or `enc`) and `crit` are refused.
//! - **Strict claims.** `iss`, `aud`, `sub`, `sid`, `exp`, `nbf`, `iat`, `jti`,
//!   `roles`, `aal` are all required, each of one JSON type: `"exp": "…"` is a
//!   rejection, never "absent". `exp`/`nbf`/`iat` are checked by the injected
//!   `Clock` with a small leeway (default 30 s, at most 60 s); jsonwebtoken's
//!   own time checks, which read the system clock, are not used.
//! - **Short lives.** 10 minutes by default, per role between 5 and 15 minutes
//!   (the strictest role wins), never past the session's absolute expiry.
//! - **Revocation by session.** The list is keyed by `sid` (not by token bytes,
//!   so re-encoding a signature does not escape it) and fed by `Ended` events;
//!   entries expire after the longest lifetime plus the leeway. If a broadcast
//!   subscriber lags, tokens issued before the lag are refused until they would
//!   have expired (see [`Revocations`]).
//! - **Rotation.** A new key signs at once; a retired key verifies for the
//!   longest lifetime plus the leeway, then is refused and pruned.
//! - **Keys.** Generated from the OS CSPRNG (ring); HMAC secrets must be at least
//!   256 bits. `Debug` of keys and tokens prints `REDACTED`; the text form of a
//!   [`KeyRing`] holds secrets and belongs in a 0600 file.
//!
//! The crypto is jsonwebtoken's (aws-lc-rs backend); this crate only chooses
//! what is checked, in which order.
//!
//! # Features
//!
//! This crate has no optional features.

#![deny(missing_docs)]

mod error;
mod keys;
mod revocation;
mod tokens;

pub use error::AccessTokenError;
pub use keys::{HS256_MIN_SECRET, KID_MAX, KeyRing, SigningAlg, SigningKey, write_private_atomic};
pub use revocation::{REVOCATION_TTL, Revocations};
pub use tokens::{
    ACCESS_TOKEN_TYPE, AccessClaims, AccessTokens, AccessTokensBuilder, DEFAULT_LEEWAY,
    DEFAULT_TTL, IssuedAccessToken, MAX_LEEWAY, MAX_TOKEN_LEN, MAX_TTL, MIN_TTL,
};
