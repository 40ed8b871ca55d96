//! The error type of this crate.

/// Everything a [`crate::Notifier`] or [`crate::NewDeviceAlerts`] can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The outbox file could not be created, written or read.
    #[error("outbox {what} {path}")]
    Outbox {
        /// What was being done (`create`, `append to`, `read`).
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An alert could not be encoded as JSON.
    #[error("cannot encode the alert")]
    Encode(#[source] serde_json::Error),
    /// An e-mail address (sender, or the recipient made from the template)
    /// is not a valid mailbox.
    #[error("invalid e-mail address {address:?}")]
    Address {
        /// The address as written.
        address: String,
        /// The cause.
        #[source]
        source: lettre::address::AddressError,
    },
    /// The e-mail could not be built.
    #[error("cannot build the e-mail")]
    Message(#[source] lettre::error::Error),
    /// The SMTP server refused the message or could not be reached.
    #[error("SMTP delivery failed")]
    Smtp(#[source] lettre::transport::smtp::Error),
    /// The webhook URL is not an absolute `http` or `https` URL.
    #[error("invalid webhook URL")]
    Url(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The webhook request failed (connection, TLS, timeout).
    #[error("webhook request failed")]
    Http(#[source] reqwest::Error),
    /// The webhook answered with a status other than 2xx.
    #[error("webhook answered {0}")]
    Status(u16),
    /// The session is anonymous: alerts are about a user's account.
    #[error("not signed in")]
    NotSignedIn,
    /// The operating system refused randomness (alert ids).
    #[error("the system random number generator failed")]
    Random,
    /// The session engine failed (reading or writing the user's data).
    #[error(transparent)]
    Session(#[from] sessionary_core::Error),
}

/// Shorthand for results of this crate.
pub type Result<T, E = NotifyError> = std::result::Result<T, E>;
