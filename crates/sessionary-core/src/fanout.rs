//! Events between the nodes that share a store.
//!
//! Every node's [`crate::SessionManager`] announces its own events to its own
//! subscribers (SSE streams, the access-token revocation list). When several
//! nodes share one store, a session revoked on node B must also reach node A's
//! subscribers: a [`Fanout`] carries the events subscribers act on
//! ([`RemoteKind`]: ends and data changes) to the other nodes, where the
//! manager hands them to its subscribers (never to its sinks: each node writes
//! its own audit entries and logs).
//!
//! Transports: [`LocalFanout`] (in one process: tests, several managers),
//! Redis pub/sub and PostgreSQL `LISTEN/NOTIFY` in the store crates.
//!
//! A transport may lose messages (a dropped connection). When it knows it did,
//! it reports [`RemoteEvent::missed`]; the manager passes that on as
//! [`crate::EventKind::EventsMissed`], and subscribers treat it as "anything may
//! have changed" (SSE streams re-read their session; the token revocation list
//! fails safe).

use std::fmt;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::clock::Timestamp;
use crate::event::{Event, EventKind};
use crate::record::EndReason;
use crate::token::{SessionId, UserId, fill_random};

/// The random id of one manager, so that a node ignores its own messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u64);

impl NodeId {
    /// A new random id.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Random`] if the system RNG fails.
    pub fn generate() -> crate::Result<Self> {
        let mut b = [0u8; 8];
        fill_random(&mut b)?;
        Ok(Self(u64::from_le_bytes(b)))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What crosses nodes: the kinds subscribers act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RemoteKind {
    /// A session ended (revocations, logouts, expiry).
    Ended {
        /// Why.
        reason: EndReason,
    },
    /// Session data changed.
    DataChanged,
    /// User-scope data changed.
    UserDataChanged,
    /// A session record changed in the store (rotated, updated, ended): copies
    /// of it kept in memory ([`crate::near_cache::NearCache`]) must go. Not an
    /// event for local subscribers.
    Changed,
    /// The transport lost messages: anything may have changed.
    Missed,
}

/// One event on the wire, with the node it came from. Never a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteEvent {
    /// The node that emitted it.
    pub node: NodeId,
    /// When, UTC (the emitting node's clock).
    pub at: Timestamp,
    /// The session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    /// Its user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    /// What happened.
    #[serde(flatten)]
    pub kind: RemoteKind,
}

impl RemoteEvent {
    /// The wire form of a local event, if other nodes need it.
    pub fn from_event(node: NodeId, event: &Event) -> Option<Self> {
        let kind = match event.kind {
            EventKind::Ended { reason } => RemoteKind::Ended { reason },
            EventKind::DataChanged => RemoteKind::DataChanged,
            EventKind::UserDataChanged => RemoteKind::UserDataChanged,
            _ => return None,
        };
        Some(Self {
            node,
            at: event.at,
            session_id: event.session_id,
            user: event.user.clone(),
            kind,
        })
    }

    /// "Messages were lost", as a transport reports it (`node` is the
    /// receiving node's own id, so it is not filtered as someone else's).
    pub fn missed(at: Timestamp) -> Self {
        Self {
            node: NodeId(0),
            at,
            session_id: None,
            user: None,
            kind: RemoteKind::Missed,
        }
    }

    /// The event local subscribers receive, if any.
    pub fn into_event(self) -> Option<Event> {
        let kind = match self.kind {
            RemoteKind::Ended { reason } => EventKind::Ended { reason },
            RemoteKind::DataChanged => EventKind::DataChanged,
            RemoteKind::UserDataChanged => EventKind::UserDataChanged,
            RemoteKind::Missed => EventKind::EventsMissed,
            RemoteKind::Changed => return None,
        };
        Some(Event {
            at: self.at,
            session_id: self.session_id,
            user: self.user,
            ip: None,
            kind,
        })
    }

    /// JSON bytes for a transport.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising these plain fields cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// From [`Self::encode`]'s bytes; `None` for anything else (a foreign
    /// publisher on the channel), which transports drop with a warning.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// A transport of [`RemoteEvent`]s between the nodes sharing a store.
pub trait Fanout: Send + Sync + fmt::Debug + 'static {
    /// Sends one of this node's events to the others. Must not block: queue it
    /// (called from inside the manager's operations).
    fn publish(&self, event: RemoteEvent);

    /// Events arriving from the nodes (this node's own may come back: the
    /// manager drops them by [`NodeId`]). A transport that loses messages
    /// sends [`RemoteEvent::missed`]; a lagging receiver counts as the same.
    fn subscribe(&self) -> broadcast::Receiver<RemoteEvent>;
}

/// The two ends a networked [`Fanout`] needs: a bounded queue of this node's
/// events for the transport's sending task (publishing never waits; a full
/// queue drops the event with a warning), and the hub its receiving task feeds.
/// Transports (`PgFanout`, `RedisFanout` in the store crates) wrap one and forward
/// their `Fanout` methods to it.
#[derive(Debug)]
pub struct Relay {
    outgoing: mpsc::Sender<RemoteEvent>,
    incoming: broadcast::Sender<RemoteEvent>,
}

impl Relay {
    /// A relay holding up to `capacity` events each way, and the receiving end
    /// of its outgoing queue for the sending task.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<RemoteEvent>) {
        let (outgoing, queue) = mpsc::channel(capacity.max(1));
        let (incoming, _) = broadcast::channel(capacity.max(1));
        (Self { outgoing, incoming }, queue)
    }

    /// A handle for the receiving task that does not keep the hub alive: the
    /// task ends when its upgrade fails (the relay is gone).
    pub fn hub(&self) -> broadcast::WeakSender<RemoteEvent> {
        self.incoming.downgrade()
    }
}

impl Fanout for Relay {
    fn publish(&self, event: RemoteEvent) {
        if self.outgoing.try_send(event).is_err() {
            tracing::warn!(
                "session event queue full or closed; an event was not sent to the other nodes"
            );
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<RemoteEvent> {
        self.incoming.subscribe()
    }
}

/// A [`Fanout`] inside one process: every clone publishes to and hears from
/// the same hub. For tests, and several managers in one process.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use sessionary_core::{EndReason, Error, LocalFanout, MemoryStore, NewSession, SessionManager, UserId};
///
/// let store = Arc::new(MemoryStore::new());
/// let hub = LocalFanout::new();
/// let a = SessionManager::builder(store.clone()).with_fanout(Arc::new(hub.clone())).build()?;
/// let b = SessionManager::builder(store).with_fanout(Arc::new(hub)).build()?;
/// let mut on_a = a.subscribe();
/// let issued = a.create(NewSession::user(UserId::new("alice")?)).await?;
/// b.end_session(&issued.session.id, EndReason::RevokedByAdmin).await?;
/// // Node A's subscribers learn it, although B ended it.
/// let event = on_a.recv().await.unwrap();
/// assert_eq!(event.session_id, Some(issued.session.id));
/// # Ok::<(), Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct LocalFanout {
    tx: broadcast::Sender<RemoteEvent>,
}

impl Default for LocalFanout {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalFanout {
    /// A new hub (capacity 4096 events per subscriber).
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(4096).0,
        }
    }
}

impl Fanout for LocalFanout {
    fn publish(&self, event: RemoteEvent) {
        // An error only means nobody listens.
        let _ = self.tx.send(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<RemoteEvent> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_round_trips_and_carries_no_more_than_needed() {
        let sid = SessionId::generate().unwrap();
        let event = Event {
            at: Timestamp(1_700_000_000_000),
            session_id: Some(sid),
            user: Some(UserId::new("alice").unwrap()),
            ip: Some("203.0.113.7".parse().unwrap()),
            kind: EventKind::Ended {
                reason: EndReason::RevokedByAdmin,
            },
        };
        let remote = RemoteEvent::from_event(NodeId(7), &event).unwrap();
        let bytes = remote.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            !text.contains("203.0.113.7"),
            "no client address on the wire"
        );
        let back = RemoteEvent::decode(&bytes).unwrap();
        assert_eq!(back, remote);
        let local = back.into_event().unwrap();
        assert_eq!(local.kind, event.kind);
        // Cache invalidations are not events for subscribers.
        let changed = RemoteEvent {
            kind: RemoteKind::Changed,
            ..remote
        };
        assert_eq!(changed.into_event(), None);
        assert_eq!(local.session_id, Some(sid));
        // Kinds no subscriber needs stay home.
        let created = Event {
            kind: EventKind::Created {
                authenticated: true,
            },
            ..event
        };
        assert!(RemoteEvent::from_event(NodeId(7), &created).is_none());
        assert!(RemoteEvent::decode(b"{\"kind\":\"nonsense\"}").is_none());
    }
}
