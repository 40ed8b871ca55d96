//! New-device alerts for Sessionary.
//!
//! `sessionary-notify` remembers the devices each user signs in from (a
//! device is its label, such as "Chrome on Linux", and its network: /24 for
//! IPv4, /48 for IPv6) and, when a sign-in comes from one the user has not
//! used, sends them one [`Alert`] through a [`Notifier`]:
//!
//! | notifier | delivers |
//! |---|---|
//! | [`FileOutbox`] (the default) | one JSON line per alert in a file (the demo shows it at `/outbox`) |
//! | [`SmtpNotifier`] | a plain-text e-mail through an SMTP relay ([`lettre`], rustls) |
//! | [`WebhookNotifier`] | a JSON POST signed with HMAC-SHA256 ([`webhook::SIGNATURE_HEADER`]) |
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! use std::sync::Arc;
//! use sessionary_core::{Device, MemoryStore, NewSession, SessionManager, UserId};
//! use sessionary_notify::{FileOutbox, NewDeviceAlerts, Outcome};
//!
//! let manager = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;
//! # let dir = std::env::temp_dir().join(format!("notify-doc-{}", std::process::id()));
//! let outbox = Arc::new(FileOutbox::new(dir.join("outbox.jsonl")));
//! let alerts = NewDeviceAlerts::new(manager.clone(), outbox.clone());
//! let alice = UserId::new("alice")?;
//! let linux = Device::new(Some("203.0.113.7".parse()?), Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"));
//! let phone = Device::new(Some("198.51.100.9".parse()?), Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"));
//!
//! // After each successful sign-in:
//! let s = manager.create(NewSession::user(alice.clone()).with_device(linux.clone())).await?.session;
//! assert!(matches!(alerts.sign_in(&s).await?, Outcome::FirstDevice)); // nobody to warn yet
//! let s = manager.create(NewSession::user(alice.clone()).with_device(phone)).await?.session;
//! assert!(alerts.sign_in(&s).await?.alert_sent()); // a new device: one alert
//! let s = manager.create(NewSession::user(alice.clone()).with_device(linux)).await?.session;
//! assert!(matches!(alerts.sign_in(&s).await?, Outcome::Known)); // known: nothing
//!
//! let sent = outbox.read_for(&alice).await?;
//! assert_eq!(sent.len(), 1);
//! assert!(sent[0].subject.starts_with("New sign-in to your account from"));
//! # let _ = std::fs::remove_dir_all(&dir);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Security model
//!
//! - **What an alert holds**: the user, the device label, the IP and its
//!   network, the time and the session's public id (so the user can find and
//!   end it). Never a token or anything else that grants access.
//! - **Where state lives**: in the user's data (sealed with AES-256-GCM by the
//!   core, bound to the user), so every node of a service sees the same
//!   devices and the same rate limit.
//! - **Exactly once**: the decision ("new device, alert") and the record of
//!   the device are one compare-and-set of the user's data; the alert is sent
//!   only after it committed. Of concurrent sign-ins from one new device, one
//!   records it and alerts, the others find it known.
//! - **Rate limit**: at most 3 alerts per user per hour by default
//!   ([`NewDeviceAlerts::with_max_alerts`]); past that the device is recorded,
//!   nothing is sent and a warning is logged. An attacker cycling user agents
//!   cannot flood a mailbox.
//! - **No alert for the first device**: a user's first sign-in ever has no
//!   earlier device to compare with.
//! - **Failures**: a notifier that fails is logged and reported
//!   ([`Outcome::NotifyFailed`]); the sign-in goes on and the device stays
//!   recorded (the alert is not retried).
//! - **Transport**: SMTP uses rustls (`STARTTLS` required by default; plain
//!   text only with [`SmtpTls::None`]); webhooks carry
//!   `Sessionary-Signature: sha256=<hex>` over the body
//!   ([`webhook::verify_signature`] for receivers), do not follow redirects
//!   and time out. The outbox file is owner-only (0600) on Unix.
//!
//! # Features
//!
//! This crate has no optional features.

#![deny(missing_docs)]

pub mod alert;
pub mod alerts;
pub mod error;
pub mod notifier;
pub mod outbox;
pub mod smtp;
pub mod webhook;

pub use alert::{Alert, NEW_DEVICE, network_text};
pub use alerts::{
    ALERTS_SENT_KEY, DEFAULT_ALERT_WINDOW, DEFAULT_MAX_ALERTS, DEFAULT_MAX_KNOWN,
    KNOWN_DEVICES_KEY, KnownDevice, NewDeviceAlerts, Outcome,
};
pub use error::{NotifyError, Result};
pub use notifier::Notifier;
pub use outbox::FileOutbox;
pub use smtp::{SmtpConfig, SmtpNotifier, SmtpTls};
pub use webhook::WebhookNotifier;
