//! Events: every state change is announced to `tracing`, to pluggable sinks and
//! to in-process subscribers. Events carry session ids, never tokens.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::binding::{BindingAction, BindingChange};
use crate::clock::Timestamp;
use crate::fanout::{Fanout, NodeId, RemoteEvent};
use crate::record::EndReason;
use crate::refresh::FamilyId;
use crate::token::{SessionId, UserId};

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A session was created (sign-in or first anonymous write).
    Created {
        /// Whether it belongs to a user.
        authenticated: bool,
    },
    /// A session's token was replaced (`previous` is the old session id when the
    /// id changed too, as on sign-in from an anonymous session).
    Regenerated {
        /// The session the data came from, if different.
        previous: Option<SessionId>,
    },
    /// A session was extended explicitly.
    Extended,
    /// Session data changed.
    DataChanged,
    /// User-scope data changed (all of the user's devices should refresh).
    UserDataChanged,
    /// A session ended.
    Ended {
        /// Why.
        reason: EndReason,
    },
    /// Data of an expired session was restored into a new one.
    Restored {
        /// The expired session.
        from: SessionId,
    },
    /// A sign-in was refused by the concurrent-session limit.
    LimitRejected,
    /// A refresh token family was issued for the session.
    RefreshIssued {
        /// The family.
        family: FamilyId,
    },
    /// A refresh token was used: the family rotated, or (`retried`) a retry
    /// within the grace window received the same successor again.
    Refreshed {
        /// The family.
        family: FamilyId,
        /// Whether this was a retry.
        retried: bool,
    },
    /// A spent refresh token was presented: the family was revoked and the
    /// session ended (an `ended` event with reason `refresh_reused` follows if
    /// the session still existed).
    RefreshReused {
        /// The family.
        family: FamilyId,
    },
    /// A refresh token family was revoked by its user.
    RefreshRevoked {
        /// The family.
        family: FamilyId,
    },
    /// A request came from another network or browser than the session is
    /// bound to ([`crate::Binding`]); `ip` is the new address.
    BindingMismatch {
        /// What changed.
        change: BindingChange,
        /// What the policy did about it.
        action: BindingAction,
    },
    /// The session proved a higher assurance level (MFA) or its user
    /// re-authenticated, releasing a binding hold if there was one.
    SteppedUp {
        /// The assurance level now.
        aal: u8,
    },
    /// Events of other nodes were lost on their way here (a [`crate::Fanout`]
    /// reconnected or this node lagged): any session may have ended or
    /// changed. Subscribers re-read what they watch; no session is named.
    EventsMissed,
    /// A request presented a session token that did not verify (malformed,
    /// unknown, or of an ended session); reported by the web layer with
    /// [`crate::SessionManager::report_failure`].
    VerifyFailed {
        /// Why (`malformed`, `unknown_session`, or the end reason).
        reason: &'static str,
    },
    /// A quota refused a charge ([`crate::SessionManager::charge`]): the
    /// request was answered `429`. Metrics count these.
    QuotaRefused {
        /// The quota's name (`downloads`, `bytes_out`, ...).
        quota: String,
    },
}

impl EventKind {
    /// The snake_case name of the kind.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "created",
            Self::Regenerated { .. } => "regenerated",
            Self::Extended => "extended",
            Self::DataChanged => "data_changed",
            Self::UserDataChanged => "user_data_changed",
            Self::Ended { .. } => "ended",
            Self::Restored { .. } => "restored",
            Self::LimitRejected => "limit_rejected",
            Self::RefreshIssued { .. } => "refresh_issued",
            Self::Refreshed { .. } => "refreshed",
            Self::RefreshReused { .. } => "refresh_reused",
            Self::RefreshRevoked { .. } => "refresh_revoked",
            Self::BindingMismatch { .. } => "binding_mismatch",
            Self::SteppedUp { .. } => "stepped_up",
            Self::VerifyFailed { .. } => "verify_failed",
            Self::EventsMissed => "events_missed",
            Self::QuotaRefused { .. } => "quota_refused",
        }
    }
}

/// One event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When, UTC.
    pub at: Timestamp,
    /// The session concerned.
    pub session_id: Option<SessionId>,
    /// Its user.
    pub user: Option<UserId>,
    /// The client address concerned, when known: the session's device, or the
    /// requesting client for binding mismatches and failed verifications.
    pub ip: Option<IpAddr>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Receives every event synchronously; keep it quick (hand off to a channel for I/O).
pub trait EventSink: Send + Sync + fmt::Debug + 'static {
    /// Called once per event.
    fn emit(&self, event: &Event);
}

/// Writes each event as a `tracing` record at `INFO` (target `sessionary::event`).
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingSink;

impl EventSink for TracingSink {
    fn emit(&self, e: &Event) {
        let sid = e.session_id.map(|s| s.to_string());
        let kind = e.kind.name();
        let family = match &e.kind {
            EventKind::RefreshIssued { family }
            | EventKind::Refreshed { family, .. }
            | EventKind::RefreshReused { family }
            | EventKind::RefreshRevoked { family } => Some(family.to_string()),
            _ => None,
        };
        let reason = match &e.kind {
            EventKind::Ended { reason } => reason.as_str(),
            EventKind::VerifyFailed { reason } => reason,
            EventKind::BindingMismatch { change, .. } => change.as_str(),
            EventKind::QuotaRefused { quota } => quota,
            _ => "",
        };
        let ip = e.ip.map(|ip| ip.to_string());
        tracing::info!(
            target: "sessionary::event",
            at = %e.at,
            event = kind,
            session_id = sid.as_deref().unwrap_or(""),
            user = e.user.as_ref().map(UserId::as_str).unwrap_or(""),
            reason,
            ip = ip.as_deref().unwrap_or(""),
            family = family.as_deref().unwrap_or(""),
        );
    }
}

/// Fans events out to sinks, to broadcast subscribers and, with a
/// [`Fanout`], to the other nodes.
#[derive(Clone)]
pub(crate) struct EventBus {
    sinks: Arc<[Arc<dyn EventSink>]>,
    tx: broadcast::Sender<Arc<Event>>,
    fanout: Option<(Arc<dyn Fanout>, NodeId)>,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("sinks", &self.sinks.len())
            .field("subscribers", &self.tx.receiver_count())
            .field("node", &self.fanout.as_ref().map(|(_, n)| *n))
            .finish()
    }
}

impl EventBus {
    pub(crate) fn new(sinks: Vec<Arc<dyn EventSink>>, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            sinks: sinks.into(),
            tx,
            fanout: None,
        }
    }

    /// Publishes this node's events through `fanout` and forwards the other
    /// nodes' to the subscribers, from a task on `runtime` that ends when the
    /// bus is gone or the fanout closes.
    pub(crate) fn connect(
        &mut self,
        fanout: Arc<dyn Fanout>,
        node: NodeId,
        runtime: &tokio::runtime::Handle,
    ) {
        // Subscribed now, so nothing published after `build` is missed.
        let mut rx = fanout.subscribe();
        let weak = self.tx.downgrade();
        runtime.spawn(async move {
            loop {
                let event = match rx.recv().await {
                    Ok(remote) if remote.node == node => continue,
                    Ok(remote) => match remote.into_event() {
                        Some(event) => event,
                        None => continue,
                    },
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "events of other nodes were missed");
                        Event {
                            at: Timestamp(0),
                            session_id: None,
                            user: None,
                            ip: None,
                            kind: EventKind::EventsMissed,
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(tx) = weak.upgrade() else { return };
                // An error only means nobody listens right now.
                let _ = tx.send(Arc::new(event));
            }
        });
        self.fanout = Some((fanout, node));
    }

    pub(crate) fn emit(&self, event: Event) {
        for s in self.sinks.iter() {
            s.emit(&event);
        }
        if let Some((fanout, node)) = &self.fanout {
            if let Some(remote) = RemoteEvent::from_event(*node, &event) {
                fanout.publish(remote);
            }
        }
        if self.tx.receiver_count() > 0 {
            // A send error only means nobody listens right now.
            let _ = self.tx.send(Arc::new(event));
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
