//! [`SmtpNotifier`]: alerts as plain-text e-mail through an SMTP relay.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::error::{NotifyError, Result};
use crate::notifier::Notifier;

/// The placeholder of the recipient template replaced by the user id.
pub const USER_PLACEHOLDER: &str = "{user}";

/// Default time allowed for one delivery (connect, dialogue, data).
pub const DEFAULT_SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// How the connection to the relay is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text, no TLS at all: only for a relay on the same host or a
    /// test server. Credentials and alerts travel in clear.
    None,
    /// Plain connection upgraded with `STARTTLS`, which is required
    /// (port 587, the default).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Where and how [`SmtpNotifier`] sends. `Debug` hides the password.
#[derive(Clone)]
pub struct SmtpConfig {
    /// The relay's host name (also checked against its TLS certificate).
    pub host: String,
    /// The relay's port (587 by default).
    pub port: u16,
    /// Transport security.
    pub tls: SmtpTls,
    /// User name and password for `AUTH`, if the relay wants them.
    pub credentials: Option<(String, String)>,
    /// The sender, such as `Sessionary <security@example.com>`.
    pub from: String,
    /// The recipient, with [`USER_PLACEHOLDER`] replaced by the user id,
    /// such as `{user}@example.com`.
    pub to: String,
    /// Time allowed for one delivery.
    pub timeout: Duration,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, _)| (u, "REDACTED")),
            )
            .field("from", &self.from)
            .field("to", &self.to)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl SmtpConfig {
    /// Port 587 with `STARTTLS`, no credentials, a 10 s timeout.
    pub fn new(host: impl Into<String>, from: impl Into<String>, to: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port: 587,
            tls: SmtpTls::default(),
            credentials: None,
            from: from.into(),
            to: to.into(),
            timeout: DEFAULT_SMTP_TIMEOUT,
        }
    }

    /// Another port.
    #[must_use]
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Another transport security.
    #[must_use]
    pub fn with_tls(mut self, tls: SmtpTls) -> Self {
        self.tls = tls;
        self
    }

    /// Authenticates with these.
    #[must_use]
    pub fn with_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Another delivery timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the sender and the recipient template (with the user `alice`).
    ///
    /// # Errors
    ///
    /// [`NotifyError::Address`] naming the address that does not parse.
    pub fn validate(&self) -> Result<()> {
        mailbox(&self.from)?;
        mailbox(&self.recipient("alice"))?;
        Ok(())
    }

    fn recipient(&self, user: &str) -> String {
        self.to.replace(USER_PLACEHOLDER, user)
    }
}

/// Checks that `address` is a mailbox (`a@example.com` or
/// `Name <a@example.com>`).
///
/// # Errors
///
/// [`NotifyError::Address`].
pub fn check_mailbox(address: &str) -> Result<()> {
    mailbox(address).map(|_| ())
}

fn mailbox(address: &str) -> Result<Mailbox> {
    address.parse().map_err(|source| NotifyError::Address {
        address: address.to_owned(),
        source,
    })
}

/// Sends each alert as a plain-text e-mail through an SMTP relay, with
/// [`lettre`]'s async transport (tokio, rustls). One connection per alert:
/// alerts are rare, and a pool would hold connections open for nothing.
///
/// # Examples
///
/// ```
/// use sessionary_notify::{SmtpConfig, SmtpNotifier, SmtpTls};
///
/// let notifier = SmtpNotifier::new(
///     SmtpConfig::new("smtp.example.com", "Sessionary <security@example.com>", "{user}@example.com")
///         .with_tls(SmtpTls::Starttls)
///         .with_credentials("sessionary", "app-password"),
/// )?;
/// assert!(!format!("{notifier:?}").contains("app-password"));
/// # Ok::<(), sessionary_notify::NotifyError>(())
/// ```
#[derive(Clone)]
pub struct SmtpNotifier {
    config: SmtpConfig,
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpNotifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SmtpNotifier {
    /// A notifier for `config` (no connection is made yet).
    ///
    /// # Errors
    ///
    /// [`NotifyError::Address`] for a bad sender or recipient template,
    /// [`NotifyError::Smtp`] if the TLS settings cannot be built.
    pub fn new(config: SmtpConfig) -> Result<Self> {
        config.validate()?;
        let from = mailbox(&config.from)?;
        let host = config.host.as_str();
        let builder = match config.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(NotifyError::Smtp)?,
            SmtpTls::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(NotifyError::Smtp)?
            }
        };
        let mut builder = builder.port(config.port).timeout(Some(config.timeout));
        if let Some((user, password)) = &config.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            config,
        })
    }

    /// The e-mail for `alert`.
    fn message(&self, alert: &Alert) -> Result<Message> {
        let to = mailbox(&self.config.recipient(alert.user.as_str()))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(alert.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(alert.body.clone())
            .map_err(NotifyError::Message)
    }
}

#[async_trait]
impl Notifier for SmtpNotifier {
    async fn send(&self, alert: &Alert) -> Result<()> {
        let message = self.message(alert)?;
        self.transport
            .send(message)
            .await
            .map_err(NotifyError::Smtp)?;
        Ok(())
    }
}
