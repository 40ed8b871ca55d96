//! The engine's error type.

use crate::record::EndReason;
use crate::refresh::RefreshRefusal;
use crate::seal::SealError;
use crate::store::StoreError;
use crate::token::TokenError;

/// Everything [`crate::SessionManager`] can refuse or fail with.
///
/// Each variant maps to one problem `type` in the service API (see
/// [`Error::problem_type`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token is not a well-formed session token; no store was asked.
    #[error("malformed session token: {0}")]
    MalformedToken(#[from] TokenError),
    /// The token is well-formed but no session has it (never issued, or long gone).
    #[error("unknown session")]
    UnknownSession,
    /// The session ended; the reason says why.
    #[error("session ended: {0}")]
    Ended(EndReason),
    /// No session with this id.
    #[error("session not found")]
    NotFound,
    /// A version precondition failed; `current` is the stored version.
    #[error("version conflict: the session is at version {current}")]
    VersionConflict {
        /// The version now stored.
        current: u64,
    },
    /// The user already has the maximum number of sessions and the policy refuses new ones.
    #[error("concurrent session limit reached ({max} sessions)")]
    LimitReached {
        /// The limit.
        max: u32,
    },
    /// Input that breaks a documented rule.
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// Session data is not a JSON object, or too large.
    #[error("invalid session data: {0}")]
    InvalidData(String),
    /// The storage backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Sealed data would not open or seal.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The operating system refused randomness.
    #[error("the system random number generator failed")]
    Random,
    /// The configuration (policy, keys) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Optimistic updates kept conflicting; nothing was written.
    #[error("too much contention on one session; try again")]
    Contention,
    /// A refresh token was refused; the refusal says why.
    #[error("refresh token refused: {0}")]
    RefreshRefused(RefreshRefusal),
    /// The session is held after a binding mismatch: its user must pass MFA
    /// (or re-authenticate) before it can be used again.
    #[error("step-up required: the session's device or network changed")]
    StepUpRequired,
}

/// Shorthand for engine results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The problem type name (RFC 9457 `type` suffix) for this error.
    pub fn problem_type(&self) -> &'static str {
        match self {
            Self::MalformedToken(_) => "malformed-token",
            Self::UnknownSession | Self::Ended(_) => "session-expired",
            Self::NotFound => "not-found",
            Self::VersionConflict { .. } | Self::Contention => "session-conflict",
            Self::LimitReached { .. } => "session-limit",
            Self::InvalidInput(_) | Self::InvalidData(_) => "invalid-request",
            Self::Config(_) => "internal",
            Self::RefreshRefused(_) => "refresh-refused",
            Self::StepUpRequired => "step-up-required",
            Self::Store(StoreError::Unavailable(_)) => "store-unavailable",
            Self::Store(_) | Self::Seal(_) | Self::Random => "internal",
        }
    }

    /// The reason code of a refused session (`expired_idle`, `logged_out`, `unknown`, ...).
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Ended(r) => Some(r.as_str()),
            Self::UnknownSession => Some("unknown"),
            Self::MalformedToken(_) => Some("malformed"),
            Self::RefreshRefused(r) => Some(r.as_str()),
            Self::StepUpRequired => Some("binding_changed"),
            _ => None,
        }
    }
}
