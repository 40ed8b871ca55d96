//! Events: every state change is announced to `tracing`, to pluggable sinks and
//! to in-process subscribers. Events carry session ids, never tokens.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::clock::Timestamp;
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
        let kind = match &e.kind {
            EventKind::Created { .. } => "created",
            EventKind::Regenerated { .. } => "regenerated",
            EventKind::Extended => "extended",
            EventKind::DataChanged => "data_changed",
            EventKind::UserDataChanged => "user_data_changed",
            EventKind::Ended { .. } => "ended",
            EventKind::Restored { .. } => "restored",
            EventKind::LimitRejected => "limit_rejected",
            EventKind::RefreshIssued { .. } => "refresh_issued",
            EventKind::Refreshed { .. } => "refreshed",
            EventKind::RefreshReused { .. } => "refresh_reused",
            EventKind::RefreshRevoked { .. } => "refresh_revoked",
        };
        let family = match &e.kind {
            EventKind::RefreshIssued { family }
            | EventKind::Refreshed { family, .. }
            | EventKind::RefreshReused { family }
            | EventKind::RefreshRevoked { family } => Some(family.to_string()),
            _ => None,
        };
        let reason = match &e.kind {
            EventKind::Ended { reason } => reason.as_str(),
            _ => "",
        };
        tracing::info!(
            target: "sessionary::event",
            at = %e.at,
            event = kind,
            session_id = sid.as_deref().unwrap_or(""),
            user = e.user.as_ref().map(UserId::as_str).unwrap_or(""),
            reason,
            family = family.as_deref().unwrap_or(""),
        );
    }
}

/// Fans events out to sinks and to broadcast subscribers.
#[derive(Clone)]
pub(crate) struct EventBus {
    sinks: Arc<[Arc<dyn EventSink>]>,
    tx: broadcast::Sender<Arc<Event>>,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("sinks", &self.sinks.len())
            .field("subscribers", &self.tx.receiver_count())
            .finish()
    }
}

impl EventBus {
    pub(crate) fn new(sinks: Vec<Arc<dyn EventSink>>, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            sinks: sinks.into(),
            tx,
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        for s in self.sinks.iter() {
            s.emit(&event);
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
