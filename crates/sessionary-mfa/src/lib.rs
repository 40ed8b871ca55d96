//! TOTP step-up for Sessionary.
//!
//! `sessionary-mfa` adds a second factor to [`sessionary_core::SessionManager`]:
//! RFC 6238 TOTP enrolment (secret, `otpauth://` URL and an SVG QR code, plus
//! ten single-use recovery codes), verification with replay refusal and a rate
//! limit, step-up of a live session to AAL 2 with a new token, and the
//! privileged window that sensitive actions require.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use sessionary_core::{MemoryStore, NewSession, SessionManager, UserId};
//! use sessionary_mfa::Mfa;
//!
//! let manager = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;
//! let mfa = Mfa::new(manager.clone(), "Sessionary");
//! let alice = UserId::new("alice")?;
//! let session = manager.create(NewSession::user(alice.clone())).await?.session;
//!
//! // Just signed in, so inside the privileged window: enrolment may begin.
//! let enrolment = mfa.begin_enrolment(&session.id).await?;
//! assert!(enrolment.qr_svg.starts_with("<?xml"));
//! assert_eq!(enrolment.recovery_codes.len(), 10);
//! assert!(!mfa.is_enrolled(&alice).await?); // not before a code confirms it
//! # let code = sessionary_mfa::testing::code_at(&enrolment.secret_base32, manager.now())?;
//! mfa.confirm_enrolment(&session.id, &code).await?;
//!
//! // Later: a recovery code (or the next TOTP code) steps the session up.
//! let issued = mfa.step_up(&session.id, &enrolment.recovery_codes[0]).await?;
//! assert_eq!(issued.session.aal, 2); // and the old token now says `regenerated`
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Security model
//!
//! - **Where the state lives**: in the user's data under [`MFA_KEY`], which
//!   the core seals with AES-256-GCM bound to the user. Recovery codes are
//!   kept only as SHA-256 hashes bound to the user; 120 bits each, so a fast
//!   hash suffices (NIST SP 800-63B-4 asks for a slow one below 112 bits).
//! - **Replay**: a TOTP code is accepted only for a time step later than the
//!   last one accepted; the check and the update are one compare-and-set on
//!   the user's data, so concurrent submissions of one code pass once.
//! - **Skew**: the previous, current and next 30 s steps are accepted; two
//!   steps away is refused. Time is the manager's clock, never the system's.
//! - **Rate limit**: at most 5 wrong codes (TOTP, recovery or replayed) per
//!   user per 5 minutes; past that no code is even checked
//!   ([`Error::TooManyAttempts`]) until the oldest failure leaves the window.
//! - **AAL**: only a successful code raises a session, to exactly AAL 2, through
//!   [`sessionary_core::SessionManager::regenerate`]: new token, old one dead
//!   (`regenerated`), `auth_time` now. A refused code leaves the session as it was.
//! - **Privileged window**: sensitive actions ([`Mfa::disable`],
//!   [`Mfa::begin_enrolment`], and the application's own through
//!   [`Mfa::require_privileged`] or [`privileged`]) need an authentication
//!   event less than 5 minutes old (configurable); disabling a confirmed
//!   enrolment also needs AAL 2.
//!
//! # Features
//!
//! This crate has no optional features.

#![deny(missing_docs)]

pub mod error;
pub mod mfa;

pub use error::{Error, Result};
pub use mfa::{
    DEFAULT_FAILURE_WINDOW, DEFAULT_MAX_FAILURES, DEFAULT_PRIVILEGED_WINDOW, Enrolment, MFA_KEY,
    Mfa, RECOVERY_CODES, STEP_UP_AAL, Verified, privileged,
};

/// Helpers for tests of applications: the code an authenticator would show.
pub mod testing {
    use sessionary_core::Timestamp;

    /// The six-digit TOTP code for `secret_base32` at `at` (RFC 6238, SHA-1,
    /// 30 s steps), as an authenticator app would show it.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Corrupt`] if the secret is not base32 of at least 128 bits,
    /// [`crate::Error::InvalidCode`] before the Unix epoch.
    pub fn code_at(secret_base32: &str, at: Timestamp) -> crate::Result<String> {
        crate::mfa::code_at(secret_base32, at)
    }
}
