//! [`NewDeviceAlerts`]: the known devices of each user, and one alert per new one.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sessionary_core::clock::duration_millis;
use sessionary_core::{Data, SessionManager, SessionRecord, Timestamp, UserId};

use crate::alert::{Alert, device_label, network_text};
use crate::error::{NotifyError, Result};
use crate::notifier::Notifier;

/// The key of the known devices in the user's data ([`SessionManager::user_data`]).
pub const KNOWN_DEVICES_KEY: &str = "known_devices";
/// The key of the times of recent alerts in the user's data (the rate limit).
pub const ALERTS_SENT_KEY: &str = "new_device_alerts";
/// Default number of alerts per user within [`DEFAULT_ALERT_WINDOW`].
pub const DEFAULT_MAX_ALERTS: usize = 3;
/// Default window of the rate limit.
pub const DEFAULT_ALERT_WINDOW: Duration = Duration::from_secs(3600);
/// Default number of devices remembered per user (the least recently seen goes first).
pub const DEFAULT_MAX_KNOWN: usize = 20;

/// A device a user has signed in from: its label and network are the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownDevice {
    /// The label, such as "Chrome on Linux".
    pub label: String,
    /// The network (`203.0.113.0/24`), `None` when the IP was unknown.
    pub network: Option<String>,
    /// The first sign-in from it.
    pub first_seen: Timestamp,
    /// The last sign-in from it.
    pub last_seen: Timestamp,
}

/// What [`NewDeviceAlerts::sign_in`] did. Every variant but
/// [`Outcome::NotSignedIn`] leaves the device known.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// An anonymous session: nothing to do.
    NotSignedIn,
    /// The user's first device ever: recorded, nobody to warn.
    FirstDevice,
    /// A known device: its last sign-in updated, no alert.
    Known,
    /// A new device: recorded and this alert delivered.
    Alerted(Alert),
    /// A new device, but the user already had the most alerts the window
    /// allows: recorded, nothing sent.
    RateLimited,
    /// A new device: recorded, but the notifier failed (logged). The
    /// sign-in should go on.
    NotifyFailed {
        /// The alert that was not delivered.
        alert: Alert,
        /// Why.
        error: NotifyError,
    },
}

impl Outcome {
    /// Whether an alert was delivered.
    pub fn alert_sent(&self) -> bool {
        matches!(self, Self::Alerted(_))
    }
}

/// Watches sign-ins and alerts a user, through a [`Notifier`], when one
/// comes from a device they have not used: a device is its label ("Chrome
/// on Linux") and its network (/24 for IPv4, /48 for IPv6), so a new
/// address from the same provider is not new, but another browser or
/// another network is.
///
/// State lives in the user's data (sealed by the core, shared by every node
/// of the service): the known devices under [`KNOWN_DEVICES_KEY`] and the
/// times of recent alerts under [`ALERTS_SENT_KEY`].
///
/// # Examples
///
/// See the [crate documentation](crate).
#[derive(Clone, Debug)]
pub struct NewDeviceAlerts {
    manager: SessionManager,
    notifier: Arc<dyn Notifier>,
    max_alerts: usize,
    window: Duration,
    max_known: usize,
}

/// What the compare-and-set decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    First,
    Known,
    Alert,
    Limited,
}

impl NewDeviceAlerts {
    /// Alerts through `notifier`, at most 3 per user per hour, remembering 20
    /// devices per user.
    pub fn new(manager: SessionManager, notifier: Arc<dyn Notifier>) -> Self {
        Self {
            manager,
            notifier,
            max_alerts: DEFAULT_MAX_ALERTS,
            window: DEFAULT_ALERT_WINDOW,
            max_known: DEFAULT_MAX_KNOWN,
        }
    }

    /// At most `n` alerts per user per window (0 sends none, but still
    /// records devices).
    #[must_use]
    pub fn with_max_alerts(mut self, n: usize) -> Self {
        self.max_alerts = n;
        self
    }

    /// The rate limit's window (one hour by default).
    #[must_use]
    pub fn with_alert_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Remembers at most `n` devices per user (at least 1); past that, the
    /// least recently seen is forgotten (and would alert again).
    #[must_use]
    pub fn with_max_known(mut self, n: usize) -> Self {
        self.max_known = n.max(1);
        self
    }

    /// The notifier alerts go through.
    pub fn notifier(&self) -> &Arc<dyn Notifier> {
        &self.notifier
    }

    /// The devices `user` has signed in from, most recently seen first.
    ///
    /// # Errors
    ///
    /// Session errors (store, sealing).
    pub async fn known_devices(&self, user: &UserId) -> Result<Vec<KnownDevice>> {
        let (_, data) = self.manager.user_data(user).await?;
        let mut devices: Vec<KnownDevice> = load(&data, KNOWN_DEVICES_KEY);
        devices.sort_by_key(|d| std::cmp::Reverse(d.last_seen));
        Ok(devices)
    }

    /// Call after a successful sign-in that created `session`: records its
    /// device and, when it is new (and not the user's first), sends one alert.
    ///
    /// The decision and the record are one compare-and-set of the user's
    /// data, and the alert is sent only after it committed, so concurrent
    /// sign-ins from one new device send one alert. A failing notifier is
    /// logged and reported as [`Outcome::NotifyFailed`], not as an error.
    ///
    /// # Errors
    ///
    /// Session errors (store, sealing, contention): the caller should log
    /// them and let the sign-in go on.
    pub async fn sign_in(&self, session: &SessionRecord) -> Result<Outcome> {
        let Some(user) = &session.user else {
            return Ok(Outcome::NotSignedIn);
        };
        let now = self.manager.now();
        let label = device_label(session).to_owned();
        let network = session.device.ip.map(network_text);
        let mut decision = Decision::Known;
        self.manager
            .update_user_data(user, None, |data| {
                decision = self.decide(data, &label, network.as_deref(), now);
            })
            .await?;
        let sid = session.id;
        match decision {
            Decision::First => {
                tracing::debug!(%sid, "first device of the user recorded");
                Ok(Outcome::FirstDevice)
            }
            Decision::Known => Ok(Outcome::Known),
            Decision::Limited => {
                tracing::warn!(
                    %sid,
                    max = self.max_alerts,
                    window_s = self.window.as_secs(),
                    "sign-in from a new device; alert not sent (rate limit)"
                );
                Ok(Outcome::RateLimited)
            }
            Decision::Alert => {
                let alert = Alert::new_device(session, now)?;
                match self.notifier.send(&alert).await {
                    Ok(()) => {
                        tracing::info!(%sid, alert = %alert.id, "new-device alert sent");
                        Ok(Outcome::Alerted(alert))
                    }
                    Err(error) => {
                        tracing::warn!(
                            %sid,
                            alert = %alert.id,
                            error = &error as &dyn std::error::Error,
                            "new-device alert could not be sent"
                        );
                        Ok(Outcome::NotifyFailed { alert, error })
                    }
                }
            }
        }
    }

    /// Records the device in `data` and decides whether to alert. Runs
    /// inside the compare-and-set, so it may run more than once: it only
    /// reads `data` and its arguments.
    fn decide(
        &self,
        data: &mut Data,
        label: &str,
        network: Option<&str>,
        now: Timestamp,
    ) -> Decision {
        let mut devices: Vec<KnownDevice> = load(data, KNOWN_DEVICES_KEY);
        let decision = if let Some(d) = devices
            .iter_mut()
            .find(|d| d.label == label && d.network.as_deref() == network)
        {
            d.last_seen = d.last_seen.max(now);
            Decision::Known
        } else {
            let first = devices.is_empty();
            devices.push(KnownDevice {
                label: label.to_owned(),
                network: network.map(str::to_owned),
                first_seen: now,
                last_seen: now,
            });
            while devices.len() > self.max_known {
                // The least recently seen of the others (the new one is last).
                let oldest = devices[..devices.len() - 1]
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, d)| d.last_seen)
                    .map_or(0, |(i, _)| i);
                devices.remove(oldest);
            }
            if first {
                Decision::First
            } else {
                let window = duration_millis(self.window);
                let mut sent: Vec<Timestamp> = load(data, ALERTS_SENT_KEY);
                sent.retain(|t| now.millis_since(*t) < window);
                let d = if sent.len() >= self.max_alerts {
                    Decision::Limited
                } else {
                    sent.push(now);
                    Decision::Alert
                };
                store(data, ALERTS_SENT_KEY, &sent);
                d
            }
        };
        store(data, KNOWN_DEVICES_KEY, &devices);
        decision
    }
}

/// The list under `key`; missing or unreadable is empty (an unreadable
/// entry is replaced at the next write, which forgets nothing worse than
/// an alert or two).
fn load<T: serde::de::DeserializeOwned>(data: &Data, key: &str) -> Vec<T> {
    match data.get(key) {
        None => Vec::new(),
        Some(v) => serde_json::from_value(v.clone()).unwrap_or_else(|e| {
            tracing::warn!(key, error = %e, "unreadable new-device state; starting afresh");
            Vec::new()
        }),
    }
}

fn store<T: Serialize>(data: &mut Data, key: &str, value: &T) {
    // Plain structs of strings and integers: serialisation cannot fail.
    if let Ok(v) = serde_json::to_value(value) {
        data.insert(key.to_owned(), v);
    }
}
