//! [`WebhookNotifier`]: alerts POSTed as JSON, signed with HMAC-SHA256.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use ring::hmac;

use crate::alert::{Alert, hex};
use crate::error::{NotifyError, Result};
use crate::notifier::Notifier;

/// The header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "Sessionary-Signature";

/// Default time allowed for one request (connect to last byte).
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// The value of [`SIGNATURE_HEADER`] for `body` under `secret`:
/// `sha256=` and the lower-case hex HMAC-SHA256.
///
/// # Examples
///
/// ```
/// let sig = sessionary_notify::webhook::signature(b"secret", b"{}");
/// assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
/// ```
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex(hmac::sign(&key, body).as_ref()))
}

/// Whether `header` is the right [`SIGNATURE_HEADER`] for `body` under
/// `secret`, compared in constant time: what a receiver checks before
/// believing an alert.
///
/// # Examples
///
/// ```
/// use sessionary_notify::webhook::{signature, verify_signature};
/// let sig = signature(b"secret", b"{}");
/// assert!(verify_signature(b"secret", b"{}", &sig));
/// assert!(!verify_signature(b"other", b"{}", &sig));
/// ```
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_mac) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(mac) = unhex(hex_mac) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, body, &mac).is_ok()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// POSTs each alert as JSON (`application/json`, the [`Alert`] fields) to a
/// URL, with [`SIGNATURE_HEADER`] so the receiver can tell it came from
/// here. Any 2xx answer is delivery; redirects are not followed (a
/// redirected POST would lose its body); the request has a timeout.
///
/// # Security
///
/// The secret authenticates the body, not its freshness: receivers should
/// drop alerts whose `id` they have seen. Use an `https` URL: the alert
/// names the user and an IP address. `Debug` prints only the URL's origin
/// (a path may hold a secret) and never the key.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sessionary_notify::WebhookNotifier;
///
/// let hook = WebhookNotifier::new(
///     "https://hooks.example.com/sessionary/T0KEN",
///     b"a shared secret of 32 bytes or more",
///     Duration::from_secs(5),
/// )?;
/// assert!(!format!("{hook:?}").contains("T0KEN"));
/// # Ok::<(), sessionary_notify::NotifyError>(())
/// ```
#[derive(Clone)]
pub struct WebhookNotifier {
    url: reqwest::Url,
    key: hmac::Key,
    client: reqwest::Client,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("origin", &self.url.origin().ascii_serialization())
            .field("key", &"REDACTED")
            .finish_non_exhaustive()
    }
}

/// Checks that `url` is an absolute `http` or `https` URL with a host.
///
/// # Errors
///
/// [`NotifyError::Url`].
pub fn check_url(url: &str) -> Result<()> {
    parse_url(url).map(|_| ())
}

fn parse_url(url: &str) -> Result<reqwest::Url> {
    let parsed = reqwest::Url::parse(url).map_err(|e| NotifyError::Url(Box::new(e)))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(NotifyError::Url(
            "expected an http:// or https:// URL".into(),
        ));
    }
    Ok(parsed)
}

impl WebhookNotifier {
    /// A notifier POSTing to `url`, signing with `secret`, giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`NotifyError::Url`] for a URL that is not `http(s)://host...`,
    /// [`NotifyError::Http`] if the HTTP client cannot be built (TLS roots).
    pub fn new(url: &str, secret: &[u8], timeout: Duration) -> Result<Self> {
        let url = parse_url(url)?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sessionary/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(NotifyError::Http)?;
        Ok(Self {
            url,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            client,
        })
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn send(&self, alert: &Alert) -> Result<()> {
        let body = serde_json::to_vec(alert).map_err(NotifyError::Encode)?;
        let sig = format!("sha256={}", hex(hmac::sign(&self.key, &body).as_ref()));
        let res = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sig)
            .body(body)
            .send()
            .await
            .map_err(|e| NotifyError::Http(e.without_url()))?;
        let status = res.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(NotifyError::Status(status.as_u16()))
        }
    }
}
