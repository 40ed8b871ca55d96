//! The [`Notifier`] trait.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::alert::Alert;
use crate::error::Result;

/// Delivers an [`Alert`] to its user: [`crate::FileOutbox`] (the default),
/// [`crate::SmtpNotifier`], [`crate::WebhookNotifier`], or your own.
///
/// # Examples
///
/// ```
/// use async_trait::async_trait;
/// use sessionary_notify::{Alert, Notifier, NotifyError};
///
/// /// Logs alerts instead of sending them.
/// #[derive(Debug)]
/// struct LogOnly;
///
/// #[async_trait]
/// impl Notifier for LogOnly {
///     async fn send(&self, alert: &Alert) -> Result<(), NotifyError> {
///         tracing::info!(user = %alert.user.as_str(), subject = %alert.subject, "alert");
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait Notifier: Send + Sync + Debug {
    /// Delivers one alert.
    ///
    /// # Errors
    ///
    /// Whatever stopped delivery; [`crate::NewDeviceAlerts`] logs it and
    /// lets the sign-in go on.
    async fn send(&self, alert: &Alert) -> Result<()>;
}
