//! Refresh tokens: opaque, rotated on every use, grouped in families.
//!
//! A [`RefreshToken`] is 256 bits from the OS CSPRNG, 43 characters of base64url,
//! like a [`crate::SessionToken`] but a distinct type, so one is never taken for
//! the other. Stores see only its SHA-256. Each token belongs to a
//! [`RefreshFamily`]: the chain of tokens that began with one
//! [`crate::SessionManager::issue_refresh`], bound to one session, with an
//! absolute lifetime that rotation never extends.
//!
//! # Rotation, retry and reuse
//!
//! Each use of the *current* token rotates the family: a new token becomes
//! current, the used one becomes *previous*, every older one is *spent*. A retry
//! with the previous token within the grace window (a lost response, two tabs
//! refreshing at once) receives the same successor again, not a new one. Any
//! other use of a non-current token (the previous one after the grace window, or
//! a spent one) is reuse: the family is revoked and its session ended with reason
//! `refresh_reused`, since either the client or a thief holds a stolen token
//! (RFC 9700 section 4.14.2).
//!
//! To give a retry the same successor, the store keeps the current token, sealed
//! with AES-256-GCM under a key derived from the *previous* token (HMAC-SHA256),
//! which the store never holds: a dump of the store, even with the data keys,
//! yields no usable refresh token; only the holder of the previous token can open
//! it, and that holder is entitled to the successor within the grace window anyway.

use std::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use serde::{Serialize, Serializer};

use crate::clock::Timestamp;
use crate::record::EndReason;
use crate::seal::{SealError, Sealed};
use crate::token::{SessionId, SessionToken, TokenError, TokenHash, UserId, fill_random};

/// The bearer secret of a refresh token family member. Never stored, never logged.
///
/// # Examples
///
/// ```
/// use sessionary_core::RefreshToken;
///
/// let token = RefreshToken::generate()?;
/// let text = token.encode();
/// assert_eq!(text.len(), 43);
/// assert_eq!(RefreshToken::parse(&text)?.hash(), token.hash());
/// assert_eq!(format!("{token:?}"), "RefreshToken(REDACTED)");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(SessionToken);

impl RefreshToken {
    /// A new token from the CSPRNG.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Random`] when the system refuses randomness.
    pub fn generate() -> Result<Self, crate::Error> {
        SessionToken::generate().map(Self)
    }

    /// Parses the 43-character base64url form; anything else is refused
    /// without touching a store.
    ///
    /// # Errors
    ///
    /// [`TokenError`] naming what is wrong.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        SessionToken::parse(s).map(Self)
    }

    /// The text form handed to the client.
    pub fn encode(&self) -> String {
        self.0.encode()
    }

    /// The SHA-256 of the token: the only form a store sees.
    pub fn hash(&self) -> TokenHash {
        self.0.hash()
    }

    fn from_bytes(b: [u8; 32]) -> Self {
        Self(SessionToken::from_bytes(b))
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(REDACTED)")
    }
}

/// The public handle of a refresh token family: 16 random bytes, shown as 22
/// base64url characters. Not a credential.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FamilyId(pub [u8; 16]);

impl FamilyId {
    /// A new random id.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Random`] when the system refuses randomness.
    pub fn generate() -> Result<Self, crate::Error> {
        let mut b = [0u8; 16];
        fill_random(&mut b)?;
        Ok(Self(b))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Builds from stored bytes.
    ///
    /// # Errors
    ///
    /// [`TokenError::Length`] unless `b` is 16 bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self, TokenError> {
        <[u8; 16]>::try_from(b)
            .map(Self)
            .map_err(|_| TokenError::Length {
                expected: 16,
                actual: b.len(),
            })
    }
}

impl fmt::Display for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The same text form as a session id.
        fmt::Display::fmt(&SessionId(self.0), f)
    }
}

impl fmt::Debug for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FamilyId({self})")
    }
}

impl Serialize for FamilyId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a family was revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FamilyEnd {
    /// A spent token was presented (reuse detection).
    Reused,
    /// The user (or an application on their behalf) revoked it.
    RevokedByUser,
    /// Its session was found ended or expired at a refresh.
    SessionEnded,
    /// Its session was held for a step-up after a binding mismatch: a client
    /// that cannot step up interactively signs in again.
    BindingChanged,
}

impl FamilyEnd {
    /// The snake_case name used in APIs, logs and stores.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reused => "refresh_reused",
            Self::RevokedByUser => "revoked_by_user",
            Self::SessionEnded => "session_ended",
            Self::BindingChanged => "binding_changed",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "refresh_reused" => Self::Reused,
            "revoked_by_user" => Self::RevokedByUser,
            "session_ended" => Self::SessionEnded,
            "binding_changed" => Self::BindingChanged,
            _ => return None,
        })
    }
}

/// A refresh token family as stores keep it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshFamily {
    /// Its public handle.
    pub id: FamilyId,
    /// The session it refreshes.
    pub session_id: SessionId,
    /// The session's user (refresh tokens are for signed-in sessions only).
    pub user: UserId,
    /// When it was issued.
    pub created_at: Timestamp,
    /// No token of the family is accepted from then on, however recently rotated.
    pub absolute_expires_at: Timestamp,
    /// Rotations so far (0 for the first token).
    pub generation: u64,
    /// The hash of the one token that rotates.
    pub current_hash: TokenHash,
    /// When the current token was issued.
    pub rotated_at: Timestamp,
    /// The hash of the token the current one replaced (a retry within the grace
    /// window receives the current token again).
    pub previous_hash: Option<TokenHash>,
    /// The current token, sealed under a key derived from the previous token
    /// (see the module docs); `None` for the first token.
    pub successor: Option<Sealed>,
    /// Set once the family is revoked; nothing of it is accepted afterwards.
    pub revoked: Option<FamilyEnd>,
}

impl RefreshFamily {
    /// Whether the family is past its absolute lifetime at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.absolute_expires_at
    }

    /// What presenting the token hashed as `presented` means for this family:
    /// the one rule every store applies inside its atomic refresh step, in this
    /// order: revoked, expired, the current token (rotate), the previous one
    /// within `grace_ms` of its rotation (retry: the same successor), anything
    /// else (reuse: revoke the family and end the session).
    pub fn classify(&self, presented: &TokenHash, now: Timestamp, grace_ms: i64) -> RefreshUse {
        if self.revoked.is_some() {
            RefreshUse::Revoked
        } else if self.is_expired(now) {
            RefreshUse::Expired
        } else if self.current_hash == *presented {
            RefreshUse::Current
        } else if self.previous_hash.as_ref() == Some(presented)
            && now <= self.rotated_at.add_millis(grace_ms)
        {
            RefreshUse::Retry
        } else {
            RefreshUse::Reuse
        }
    }
}

/// The verdict of [`RefreshFamily::classify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshUse {
    /// The family was revoked.
    Revoked,
    /// The family is past its absolute lifetime.
    Expired,
    /// The current token: rotate.
    Current,
    /// The previous token within the grace window: answer with the successor.
    Retry,
    /// A spent token: revoke the family, end the session.
    Reuse,
}

/// A rotation request for [`crate::SessionStore::refresh`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshRequest {
    /// The hash of the token presented.
    pub presented: TokenHash,
    /// The hash of the token that becomes current if the presented one is.
    pub next_hash: TokenHash,
    /// That token, sealed for a retry (see [`seal_successor`]).
    pub next_sealed: Sealed,
    /// The current time.
    pub now: Timestamp,
    /// The previous token is answered with the current one while
    /// `now <= rotated_at + grace_ms`.
    pub grace_ms: i64,
    /// How the session ends when reuse is detected (reason `refresh_reused`).
    pub reuse: crate::store::Ending,
}

/// What [`crate::SessionStore::refresh`] did, decided and written in one atomic step.
#[derive(Clone, Debug, PartialEq)]
pub enum RefreshOutcome {
    /// The presented token was current: `next_hash` is current now, the
    /// presented one previous, and the session was touched (`last_seen_at = now`).
    Rotated {
        /// The family after the rotation.
        family: RefreshFamily,
        /// The session after the touch.
        session: std::sync::Arc<crate::SessionRecord>,
    },
    /// The presented token was the previous one and the grace window is open:
    /// nothing rotated; `family.successor` holds the current token. The session
    /// was touched.
    Retry {
        /// The family (unchanged).
        family: RefreshFamily,
        /// The session after the touch.
        session: std::sync::Arc<crate::SessionRecord>,
    },
    /// The presented token was spent (previous after the grace window, or older):
    /// the family is revoked and its session ended with `request.reuse`.
    Reused {
        /// The family, revoked.
        family: RefreshFamily,
        /// The session that ended, if it still existed.
        ended: Option<std::sync::Arc<crate::SessionRecord>>,
    },
    /// The presented token was current or previous within the grace window, but
    /// the session is gone or not live at `now`: the family is revoked
    /// ([`FamilyEnd::SessionEnded`]); nothing rotated.
    SessionEnded {
        /// The family, revoked.
        family: RefreshFamily,
        /// The session if it still exists (expired, not yet ended: the caller ends it).
        session: Option<std::sync::Arc<crate::SessionRecord>>,
    },
    /// The family is past its absolute lifetime; nothing was written.
    Expired(RefreshFamily),
    /// The family was revoked before; nothing was written.
    Revoked(RefreshFamily),
    /// No family knows this hash (never issued, or swept).
    Missing,
}

/// Outcome of [`crate::SessionStore::create_refresh_family`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateFamily {
    /// Stored.
    Created,
    /// The family id or token hash is in use; nothing was written.
    Duplicate,
    /// The session is missing or not live at `created_at`; nothing was written.
    SessionGone,
}

/// Why [`crate::SessionManager::refresh`] refused a refresh token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshRefusal {
    /// Never issued, or forgotten after its family's absolute lifetime.
    Unknown,
    /// The family's absolute lifetime ran out: sign in again.
    Expired,
    /// A spent token was presented: the family and its session were revoked.
    Reused,
    /// The user revoked the family.
    RevokedByUser,
    /// The session ended (with this reason, when known) or expired.
    SessionEnded(Option<EndReason>),
    /// The session was held for a step-up after its device or network changed.
    BindingChanged,
}

impl RefreshRefusal {
    /// The reason code: `unknown`, `refresh_expired`, `refresh_reused`,
    /// `revoked_by_user`, the session's end reason, or `session_ended`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Expired => "refresh_expired",
            Self::Reused => "refresh_reused",
            Self::RevokedByUser => "revoked_by_user",
            Self::SessionEnded(Some(r)) => r.as_str(),
            Self::SessionEnded(None) => "session_ended",
            Self::BindingChanged => "binding_changed",
        }
    }

    /// The refusal for a family revoked for `end`.
    pub const fn revoked(end: Option<FamilyEnd>) -> Self {
        match end {
            Some(FamilyEnd::Reused) => Self::Reused,
            Some(FamilyEnd::RevokedByUser) => Self::RevokedByUser,
            Some(FamilyEnd::BindingChanged) => Self::BindingChanged,
            Some(FamilyEnd::SessionEnded) | None => Self::SessionEnded(None),
        }
    }
}

impl fmt::Display for RefreshRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const SUCCESSOR_FORMAT: u8 = 1;
const SUCCESSOR_CONTEXT: &[u8] = b"sessionary refresh successor v1";
const TAG_LEN: usize = 16;

fn successor_key(previous: &RefreshToken) -> Result<LessSafeKey, SealError> {
    let mac = hmac::Key::new(hmac::HMAC_SHA256, previous.0.expose_secret());
    let derived = hmac::sign(&mac, SUCCESSOR_CONTEXT);
    UnboundKey::new(&AES_256_GCM, derived.as_ref())
        .map(LessSafeKey::new)
        .map_err(|_| SealError::InvalidKey("derived key"))
}

/// Seals `next` so that only the holder of `previous` can open it:
/// `[format][nonce][ciphertext+tag]`, AES-256-GCM under HMAC-SHA256(previous,
/// context), with `next`'s hash as associated data.
///
/// # Errors
///
/// [`SealError::Random`] when no nonce can be drawn.
pub fn seal_successor(previous: &RefreshToken, next: &RefreshToken) -> Result<Sealed, SealError> {
    let key = successor_key(previous)?;
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce).map_err(|_| SealError::Random)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + 32 + TAG_LEN);
    out.push(SUCCESSOR_FORMAT);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(next.0.expose_secret());
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(SUCCESSOR_CONTEXT),
            &mut out[1 + NONCE_LEN..],
        )
        .map_err(|_| SealError::Corrupt)?;
    out.extend_from_slice(tag.as_ref());
    Ok(Sealed::from_bytes(out))
}

/// Opens what [`seal_successor`] sealed for the holder of `previous`, and checks
/// that it is the token whose hash is `expected`.
///
/// # Errors
///
/// [`SealError::Corrupt`] if the blob does not open with `previous` or holds
/// another token.
pub fn open_successor(
    previous: &RefreshToken,
    blob: &Sealed,
    expected: &TokenHash,
) -> Result<RefreshToken, SealError> {
    let b = blob.as_bytes();
    if b.len() != 1 + NONCE_LEN + 32 + TAG_LEN || b[0] != SUCCESSOR_FORMAT {
        return Err(SealError::Corrupt);
    }
    let key = successor_key(previous)?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&b[1..=NONCE_LEN]);
    let mut buf = b[1 + NONCE_LEN..].to_vec();
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(SUCCESSOR_CONTEXT),
            &mut buf,
        )
        .map_err(|_| SealError::Corrupt)?;
    let bytes = <[u8; 32]>::try_from(&*plain).map_err(|_| SealError::Corrupt)?;
    let token = RefreshToken::from_bytes(bytes);
    if token.hash() != *expected {
        return Err(SealError::Corrupt);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn successor_opens_only_with_the_previous_token() {
        let prev = RefreshToken::generate().unwrap();
        let next = RefreshToken::generate().unwrap();
        let blob = seal_successor(&prev, &next).unwrap();
        assert_eq!(open_successor(&prev, &blob, &next.hash()).unwrap(), next);
        let other = RefreshToken::generate().unwrap();
        assert!(open_successor(&other, &blob, &next.hash()).is_err());
        // A blob holding another token than the family's current one is refused.
        assert!(open_successor(&prev, &blob, &other.hash()).is_err());
        let mut tampered = blob.as_bytes().to_vec();
        tampered[20] ^= 1;
        assert!(open_successor(&prev, &Sealed::from_bytes(tampered), &next.hash()).is_err());
    }

    #[test]
    fn names_round_trip() {
        for e in [
            FamilyEnd::Reused,
            FamilyEnd::RevokedByUser,
            FamilyEnd::SessionEnded,
        ] {
            assert_eq!(FamilyEnd::parse(e.as_str()), Some(e));
        }
        assert_eq!(FamilyId([0; 16]).to_string().len(), 22);
    }
}
