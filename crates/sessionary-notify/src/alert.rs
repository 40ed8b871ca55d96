//! [`Alert`]: what a [`crate::Notifier`] delivers.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sessionary_core::{SessionRecord, Timestamp, UserId};

use crate::error::{NotifyError, Result};

/// The `kind` of a new-device alert.
pub const NEW_DEVICE: &str = "new_device";

/// The label used when the session's device has none (no `User-Agent`).
pub const UNKNOWN_DEVICE: &str = "Unknown device";

/// One message to a user about their account. It never carries a token:
/// only the session's public id, which lets the user find and end it.
///
/// # Examples
///
/// ```
/// use std::net::IpAddr;
/// use sessionary_core::{Device, NewSession, SessionRecord, Timestamp, UserId};
/// use sessionary_notify::Alert;
///
/// let ip: IpAddr = "203.0.113.7".parse()?;
/// let device = Device::new(Some(ip), Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"));
/// # let manager = sessionary_core::SessionManager::builder(std::sync::Arc::new(sessionary_core::MemoryStore::new())).build()?;
/// # let session = tokio::runtime::Builder::new_current_thread().build()?.block_on(
/// #     manager.create(NewSession::user(UserId::new("alice")?).with_device(device)))?.session;
/// let alert = Alert::new_device(&session, session.created_at)?;
/// assert_eq!(alert.network.as_deref(), Some("203.0.113.0/24"));
/// assert_eq!(alert.subject, "New sign-in to your account from Chrome on Linux");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Random id (32 hex digits), so receivers can drop duplicates.
    pub id: String,
    /// When it was raised (milliseconds since the Unix epoch, UTC).
    pub at: Timestamp,
    /// The account concerned.
    pub user: UserId,
    /// What happened: [`NEW_DEVICE`].
    pub kind: String,
    /// The device label, such as "Chrome on Linux".
    pub device: String,
    /// The client IP of the sign-in, when known.
    pub ip: Option<IpAddr>,
    /// The network of that IP (`203.0.113.0/24`, `2001:db8:1::/48`).
    pub network: Option<String>,
    /// The public id of the new session (not a credential).
    pub session_id: String,
    /// A one-line subject for a person.
    pub subject: String,
    /// The message for a person (plain text, lines under 78 characters
    /// unless a device label is very long).
    pub body: String,
}

impl Alert {
    /// The alert for a sign-in by `session` from a device the user has not used.
    ///
    /// # Errors
    ///
    /// [`NotifyError::Random`] if the id cannot be drawn,
    /// [`NotifyError::NotSignedIn`] for an anonymous session.
    pub fn new_device(session: &SessionRecord, at: Timestamp) -> Result<Self> {
        let user = session.user.clone().ok_or(NotifyError::NotSignedIn)?;
        let device = device_label(session).to_owned();
        let ip = session.device.ip;
        let network = ip.map(network_text);
        let mut id = [0u8; 16];
        sessionary_core::token::fill_random(&mut id).map_err(|_| NotifyError::Random)?;
        let when = at.to_rfc3339();
        let from = match &network {
            Some(n) => format!("{device},\nnetwork {n}"),
            None => device.clone(),
        };
        let subject = format!("New sign-in to your account from {device}");
        let body = format!(
            "New sign-in to your account from {from}.\n\
             \n\
             Account: {user}\n\
             When: {when}\n\
             Device: {device}\n\
             Network: {network}\n\
             IP address: {ip}\n\
             Session: {sid}\n\
             \n\
             If this was you, there is nothing to do.\n\
             If not, end this session under \"Manage sessions\"\n\
             and change your password.\n",
            user = user.as_str(),
            network = network.as_deref().unwrap_or("unknown"),
            ip = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
            sid = session.id,
        );
        Ok(Self {
            id: hex(&id),
            at,
            user,
            kind: NEW_DEVICE.to_owned(),
            device,
            ip,
            network,
            session_id: session.id.to_string(),
            subject,
            body,
        })
    }
}

/// The session's device label, or [`UNKNOWN_DEVICE`].
pub(crate) fn device_label(session: &SessionRecord) -> &str {
    session
        .device
        .label
        .as_deref()
        .filter(|l| !l.trim().is_empty())
        .unwrap_or(UNKNOWN_DEVICE)
}

/// `203.0.113.0/24` or `2001:db8:1::/48`: the network
/// [`sessionary_core::binding::network_prefix`] puts `ip` in.
pub fn network_text(ip: IpAddr) -> String {
    match sessionary_core::binding::network_prefix(ip) {
        p @ IpAddr::V4(_) => format!("{p}/24"),
        p @ IpAddr::V6(_) => format!("{p}/48"),
    }
}

/// Lower-case hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
