//! The crate's error type.

/// Everything issuing or verifying an access token can refuse or fail with.
///
/// Verification failures name the first check that failed; the order is fixed:
/// form, header, key and algorithm, signature, type, claims, issuer, audience,
/// time, revocation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessTokenError {
    /// Not a compact JWS of three base64url parts with a JSON header (too long,
    /// empty, wrong number of parts, bad base64url, a JWE, ...).
    #[error("malformed access token: {0}")]
    Malformed(&'static str),
    /// The header names no key of this issuer (`kid` missing, unknown, too long).
    #[error("unknown signing key")]
    UnknownKey,
    /// The key was retired and its verification window has passed.
    #[error("the signing key was retired")]
    KeyRetired,
    /// The header's `alg` is not the one algorithm pinned to the key (`none`,
    /// any spelling of it, or another algorithm).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The header asks for something this verifier does not do (`crit`).
    #[error("unsupported header: {0}")]
    UnsupportedHeader(&'static str),
    /// The signature does not match.
    #[error("bad signature")]
    BadSignature,
    /// The header's `typ` is not `at+jwt` (or missing).
    #[error("wrong token type (expected at+jwt)")]
    WrongType,
    /// A claim is missing, of the wrong JSON type, or invalid.
    #[error("invalid claims: {0}")]
    InvalidClaims(#[source] serde_json::Error),
    /// A claim has the right type but a value that breaks a rule (`sub`, `jti`).
    #[error("invalid claim: {0}")]
    InvalidClaim(&'static str),
    /// `iss` is not this issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` is not this audience.
    #[error("wrong audience")]
    WrongAudience,
    /// `exp` has passed (beyond the leeway).
    #[error("access token expired")]
    Expired,
    /// `nbf` (or `iat`) is still in the future (beyond the leeway).
    #[error("access token not yet valid")]
    NotYetValid,
    /// The token's session has ended.
    #[error("the session was revoked")]
    Revoked,
    /// The verifier missed session events (the stream lagged) and cannot tell
    /// whether this token's session still lives; tokens issued before the lag
    /// are refused until they would have expired anyway. Refresh and retry.
    #[error("revocation state unknown for tokens issued before a missed event; refresh")]
    RevocationUnknown,
    /// Issuing: the session has no user.
    #[error("anonymous sessions get no access token")]
    Anonymous,
    /// Issuing: the session has already ended or expired.
    #[error("the session is not live")]
    SessionNotLive,
    /// Issuing: the session is held for a step-up after its device or network
    /// changed (`SessionRecord::step_up_required`).
    #[error("step-up required: the session's device or network changed")]
    StepUpRequired,
    /// A key could not be made, loaded or parsed.
    #[error("invalid key: {0}")]
    Key(&'static str),
    /// A key file could not be read or written.
    #[error("key file: {0}")]
    Io(#[source] std::io::Error),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// Signing failed.
    #[error("signing failed")]
    Signing(#[source] jsonwebtoken::errors::Error),
    /// The operating system refused randomness.
    #[error("the system random number generator failed")]
    Random,
}

impl AccessTokenError {
    /// The problem type name (RFC 9457 `type` suffix) for this error, in the
    /// spirit of `sessionary_core::Error::problem_type`.
    pub fn problem_type(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed-token",
            Self::UnknownKey
            | Self::KeyRetired
            | Self::AlgorithmNotAllowed
            | Self::UnsupportedHeader(_)
            | Self::BadSignature
            | Self::WrongType
            | Self::InvalidClaims(_)
            | Self::InvalidClaim(_)
            | Self::WrongIssuer
            | Self::WrongAudience => "invalid-token",
            Self::Expired | Self::NotYetValid | Self::RevocationUnknown => "token-expired",
            Self::Revoked | Self::SessionNotLive => "session-expired",
            Self::Anonymous => "invalid-request",
            Self::StepUpRequired => "step-up-required",
            Self::Key(_) | Self::Io(_) | Self::Config(_) | Self::Signing(_) | Self::Random => {
                "internal"
            }
        }
    }

    /// A short snake_case reason code for refused tokens (`expired`,
    /// `bad_signature`, `revoked`, ...); `None` for internal failures.
    pub fn reason(&self) -> Option<&'static str> {
        Some(match self {
            Self::Malformed(_) => "malformed",
            Self::UnknownKey => "unknown_key",
            Self::KeyRetired => "key_retired",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::UnsupportedHeader(_) => "unsupported_header",
            Self::BadSignature => "bad_signature",
            Self::WrongType => "wrong_type",
            Self::InvalidClaims(_) | Self::InvalidClaim(_) => "invalid_claims",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Revoked => "revoked",
            Self::RevocationUnknown => "revocation_unknown",
            Self::Anonymous => "anonymous",
            Self::SessionNotLive => "session_not_live",
            Self::StepUpRequired => "binding_changed",
            Self::Key(_) | Self::Io(_) | Self::Config(_) | Self::Signing(_) | Self::Random => {
                return None;
            }
        })
    }
}
