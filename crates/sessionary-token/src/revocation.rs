//! The in-process revocation list: ended sessions by id, fed by session events.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use sessionary_core::token::RandomKeyMap;
use sessionary_core::{Clock, Event, EventKind, EventSink, SessionId, Timestamp};
use tokio::sync::broadcast;

use crate::tokens::{MAX_LEEWAY, MAX_TTL};

/// How long an entry is kept: every access token lives at most [`MAX_TTL`],
/// plus at most [`MAX_LEEWAY`], so after that no token of the session can pass
/// the time checks anyway.
pub const REVOCATION_TTL: Duration = MAX_TTL.saturating_add(MAX_LEEWAY);

/// No lag recorded.
const NO_LAG: i64 = i64::MIN;

/// Sessions that ended, so that their access tokens are refused before they expire.
///
/// Feed it in one of two ways (or both; duplicates are harmless):
///
/// - as an [`EventSink`] of the `SessionManager` (`with_event_sink`): called
///   synchronously while the session ends, so a token is refused as soon as
///   `logout`/`end_session` returns, and nothing can be missed;
/// - with [`Revocations::follow`] on `SessionManager::subscribe()`: a task reads
///   the broadcast stream.
///
/// Only `Ended` events revoke (any reason, including `regenerated`, which is how
/// the old id of a session renewed at sign-in ends). `Regenerated` does not: the
/// session lives on under the same or a new id.
///
/// # Lag: failing safe
///
/// A broadcast subscriber that falls behind loses events
/// (`RecvError::Lagged`) without knowing which sessions they ended. Then every
/// token issued at or before that instant (`iat`, whole seconds, so the second
/// of the lag is included) is refused with
/// [`crate::AccessTokenError::RevocationUnknown`] until [`REVOCATION_TTL`] after
/// the lag, when they have all expired. Clients refresh (the refresh checks the
/// session in the store) and carry on. The sink never lags.
///
/// # Memory
///
/// Entries are dropped [`REVOCATION_TTL`] after the revocation (swept at most
/// once a minute, on insert), so the list holds only the sessions ended in the
/// last ~16 minutes.
pub struct Revocations {
    clock: Arc<dyn Clock>,
    ended: RwLock<RandomKeyMap<SessionId, Timestamp>>,
    next_sweep: Mutex<Timestamp>,
    lagged_at: AtomicI64,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("ended", &self.ended.read().len())
            .field("lagged_at", &self.lagged_at())
            .finish_non_exhaustive()
    }
}

impl Revocations {
    /// An empty list on `clock` (use the manager's clock).
    pub fn new(clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            clock,
            ended: RwLock::new(RandomKeyMap::default()),
            next_sweep: Mutex::new(Timestamp(i64::MIN)),
            lagged_at: AtomicI64::new(NO_LAG),
        })
    }

    /// Records that session `sid` ended.
    pub fn revoke(&self, sid: SessionId) {
        let now = self.clock.now();
        self.ended.write().insert(sid, now);
        self.sweep_if_due(now);
    }

    /// Whether `sid` is known to have ended.
    pub fn is_revoked(&self, sid: &SessionId) -> bool {
        self.ended.read().contains_key(sid)
    }

    /// How many ended sessions are remembered.
    pub fn len(&self) -> usize {
        self.ended.read().len()
    }

    /// Whether no ended session is remembered.
    pub fn is_empty(&self) -> bool {
        self.ended.read().is_empty()
    }

    /// Takes one event into account: `Ended` revokes its session;
    /// `EventsMissed` (another node's events were lost) counts as a lag
    /// ([`Self::mark_lagged`]); others are ignored.
    pub fn observe(&self, event: &Event) {
        match (&event.kind, event.session_id) {
            (EventKind::Ended { .. }, Some(sid)) => self.revoke(sid),
            (EventKind::EventsMissed, _) => self.mark_lagged(),
            _ => {}
        }
    }

    /// Records that events were missed now: tokens issued until now are refused
    /// until [`REVOCATION_TTL`] has passed (see the type's docs).
    pub fn mark_lagged(&self) {
        let now = self.clock.now();
        tracing::warn!(
            target: "sessionary::token",
            at = %now,
            "session events were missed; access tokens issued until now are refused until they expire"
        );
        self.lagged_at.fetch_max(now.0, Ordering::SeqCst);
    }

    /// When events were last missed, if that still matters.
    pub fn lagged_at(&self) -> Option<Timestamp> {
        match self.lagged_at.load(Ordering::Relaxed) {
            NO_LAG => None,
            t => Some(Timestamp(t)),
        }
    }

    /// Reads `events` (from `SessionManager::subscribe()`) on a task until the
    /// stream closes. A lag is handled by [`Self::mark_lagged`].
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn follow(
        self: &Arc<Self>,
        mut events: broadcast::Receiver<Arc<Event>>,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => this.observe(&event),
                    Err(broadcast::error::RecvError::Lagged(_)) => this.mark_lagged(),
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }

    /// The check made by the verifier, after the signature and times.
    pub(crate) fn check(
        &self,
        sid: &SessionId,
        iat_secs: i64,
        now: Timestamp,
    ) -> Result<(), crate::AccessTokenError> {
        let lag = self.lagged_at.load(Ordering::Relaxed);
        if lag != NO_LAG
            && iat_secs.saturating_mul(1000) <= lag
            && now < Timestamp(lag).plus(REVOCATION_TTL)
        {
            return Err(crate::AccessTokenError::RevocationUnknown);
        }
        if self.ended.read().contains_key(sid) {
            return Err(crate::AccessTokenError::Revoked);
        }
        Ok(())
    }

    fn sweep_if_due(&self, now: Timestamp) {
        {
            let mut next = self.next_sweep.lock();
            if now < *next {
                return;
            }
            *next = now.plus(Duration::from_secs(60));
        }
        let ttl = REVOCATION_TTL;
        self.ended.write().retain(|_, at| at.plus(ttl) > now);
    }
}

impl EventSink for Revocations {
    fn emit(&self, event: &Event) {
        self.observe(event);
    }
}
