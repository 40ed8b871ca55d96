//! The MFA error type.

/// Everything [`crate::Mfa`] can refuse or fail with.
///
/// Each variant maps to one problem `type` of the service API
/// ([`Error::problem_type`]) and, for refusals a client acts on, a `reason`
/// ([`Error::reason`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The session is anonymous: MFA belongs to a signed-in user.
    #[error("not signed in")]
    NotSignedIn,
    /// The user has no confirmed TOTP enrolment.
    #[error("no confirmed MFA enrolment")]
    NotEnrolled,
    /// The user already has a confirmed enrolment; disable it first.
    #[error("MFA is already enrolled")]
    AlreadyEnrolled,
    /// The code is neither a valid TOTP code for the current time window nor
    /// an unused recovery code.
    #[error("invalid code")]
    InvalidCode,
    /// The TOTP code was valid once but its time step (or a later one) was
    /// already used.
    #[error("code already used")]
    Replayed,
    /// Too many wrong codes for this user; nothing is checked until the
    /// window passes.
    #[error("too many wrong codes; try again in {retry_after_ms} ms")]
    TooManyAttempts {
        /// Milliseconds until one more attempt is allowed.
        retry_after_ms: i64,
    },
    /// A sensitive action outside the privileged window: authenticate again
    /// (step up) first.
    #[error("re-authentication required")]
    ReauthenticationRequired,
    /// The session's assurance level is too low for this action.
    #[error("authentication assurance level {required} required (session has {current})")]
    InsufficientAal {
        /// The level required.
        required: u8,
        /// The session's level.
        current: u8,
    },
    /// The stored MFA state would not parse (or its secret would not decode).
    #[error("stored MFA state is corrupt")]
    Corrupt(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The QR code could not be drawn (the otpauth URL is too long).
    #[error("QR code")]
    Qr(#[source] qrcode::types::QrError),
    /// The operating system refused randomness.
    #[error("the system random number generator failed")]
    Random,
    /// The session engine refused or failed (unknown session, store error, ...).
    #[error(transparent)]
    Session(#[from] sessionary_core::Error),
}

/// Shorthand for MFA results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The problem type name (RFC 9457 `type` suffix) for this error.
    ///
    /// # Examples
    ///
    /// ```
    /// use sessionary_mfa::Error;
    /// assert_eq!(Error::ReauthenticationRequired.problem_type(), "reauthentication-required");
    /// ```
    pub fn problem_type(&self) -> &'static str {
        match self {
            Self::NotSignedIn => "not-signed-in",
            Self::NotEnrolled => "mfa-not-enrolled",
            Self::AlreadyEnrolled => "mfa-already-enrolled",
            Self::InvalidCode | Self::Replayed => "mfa-code-refused",
            Self::TooManyAttempts { .. } => "mfa-rate-limited",
            Self::ReauthenticationRequired => "reauthentication-required",
            Self::InsufficientAal { .. } => "step-up-required",
            Self::Corrupt(_) | Self::Qr(_) | Self::Random => "internal",
            Self::Session(e) => e.problem_type(),
        }
    }

    /// The reason code of a refusal (`invalid_code`, `replayed`,
    /// `too_many_attempts`, ...; a session's reason such as `regenerated`).
    ///
    /// # Examples
    ///
    /// ```
    /// use sessionary_mfa::Error;
    /// assert_eq!(Error::Replayed.reason(), Some("replayed"));
    /// ```
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::NotSignedIn => Some("not_signed_in"),
            Self::NotEnrolled => Some("not_enrolled"),
            Self::AlreadyEnrolled => Some("already_enrolled"),
            Self::InvalidCode => Some("invalid_code"),
            Self::Replayed => Some("replayed"),
            Self::TooManyAttempts { .. } => Some("too_many_attempts"),
            Self::ReauthenticationRequired => Some("reauthentication_required"),
            Self::InsufficientAal { .. } => Some("insufficient_aal"),
            Self::Session(e) => e.reason(),
            Self::Corrupt(_) | Self::Qr(_) | Self::Random => None,
        }
    }
}
