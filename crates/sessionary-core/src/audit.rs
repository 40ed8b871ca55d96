//! The audit log: security-relevant events, kept in the store.
//!
//! [`AuditLog`] is an [`EventSink`]: it maps each audited [`Event`] to an
//! [`AuditEntry`] (UTC time, kind, session id, user, client IP, a short detail)
//! and hands it to a background task that writes batches with
//! [`SessionStore::append_audit`]. `emit` never waits: the channel is bounded
//! and a full channel drops the entry (counted, with a `tracing` warning).
//! Entries are read back with [`SessionStore::audit`] (newest first, paged by
//! sequence number) and forgotten after the retention with
//! [`SessionStore::sweep_audit`].
//!
//! # What is audited
//!
//! | kind | detail |
//! |---|---|
//! | `created` | `authenticated` or `anonymous` |
//! | `regenerated` | the previous session id when the id changed (sign-in from a session), else empty |
//! | `stepped_up` | `aal <n>` |
//! | `binding_mismatch` | `<change>/<action>`, e.g. `ip/step_up` (the IP is the new address) |
//! | `ended` | the reason: `logged_out`, `revoked_by_user`, `revoked_by_admin`, `expired_idle`, `hijack_suspected`, `refresh_reused`, ... |
//! | `refresh_issued`, `refresh_reused`, `refresh_revoked` | the refresh family id |
//! | `limit_rejected` | empty |
//! | `verify_failed` | why (`malformed`, `unknown_session`, or the end reason); rate-limited, below |
//! | `verify_failed_suppressed` | how many failures the rate limit left out in the last window |
//!
//! Not audited: `extended`, `refreshed`, `data_changed`, `user_data_changed`
//! and `restored`. They happen on ordinary activity (every refresh, every
//! write of a cart), say nothing about who holds a session, and would bury
//! the entries above; `tracing` still reports them.
//!
//! # Failed verifications
//!
//! Anyone can send garbage tokens, so `verify_failed` is rate-limited by the
//! injected [`Clock`] (never by sleeping): per one-minute window at most
//! [`AuditLog::PER_IP_PER_MINUTE`] entries per client address and
//! [`AuditLog::GLOBAL_PER_MINUTE`] in all. When a window with suppressed
//! failures is over, the next audited event writes one
//! `verify_failed_suppressed` entry with the count.
//!
//! # Security
//!
//! An entry holds ids only, taken from events, and events never carry tokens
//! (nor token hashes): a dump of the audit log gives no credential.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::clock::{Clock, Timestamp};
use crate::event::{Event, EventKind, EventSink};
use crate::store::SessionStore;
use crate::token::{SessionId, UserId};

/// The event kinds written to the audit log (see the [module docs](self)).
pub const AUDITED_KINDS: &[&str] = &[
    "created",
    "regenerated",
    "stepped_up",
    "binding_mismatch",
    "ended",
    "refresh_issued",
    "refresh_reused",
    "refresh_revoked",
    "limit_rejected",
    "verify_failed",
    SUPPRESSED_KIND,
];

/// The kind of the summary entry written for rate-limited failures.
pub const SUPPRESSED_KIND: &str = "verify_failed_suppressed";

/// One audit log entry. Never holds a token or a token hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, UTC.
    pub at: Timestamp,
    /// The event kind's name ([`EventKind::name`]), or [`SUPPRESSED_KIND`].
    pub kind: String,
    /// The session concerned.
    pub session_id: Option<SessionId>,
    /// Its user.
    pub user: Option<UserId>,
    /// The client address: the session's device, or the requesting client for
    /// binding mismatches and failed verifications.
    pub ip: Option<IpAddr>,
    /// A short detail: the end reason, `<change>/<action>`, a family id, `aal 2`, ...
    pub detail: String,
}

impl AuditEntry {
    /// The entry for `event`, or `None` if its kind is not audited (see the
    /// [module docs](self)). Rate limiting is [`AuditLog`]'s job, not this.
    ///
    /// # Examples
    ///
    /// ```
    /// use sessionary_core::audit::AuditEntry;
    /// use sessionary_core::{EndReason, Event, EventKind, Timestamp};
    ///
    /// let event = Event {
    ///     at: Timestamp(0),
    ///     session_id: None,
    ///     user: None,
    ///     ip: None,
    ///     kind: EventKind::Ended { reason: EndReason::LoggedOut },
    /// };
    /// assert_eq!(AuditEntry::from_event(&event).unwrap().detail, "logged_out");
    /// ```
    pub fn from_event(event: &Event) -> Option<Self> {
        let detail = match &event.kind {
            EventKind::Created { authenticated } => {
                if *authenticated {
                    "authenticated".to_owned()
                } else {
                    "anonymous".to_owned()
                }
            }
            EventKind::Regenerated { previous } => {
                previous.map(|p| p.to_string()).unwrap_or_default()
            }
            EventKind::SteppedUp { aal } => format!("aal {aal}"),
            EventKind::BindingMismatch { change, action } => {
                format!("{}/{}", change.as_str(), action.as_str())
            }
            EventKind::Ended { reason } => reason.as_str().to_owned(),
            EventKind::RefreshIssued { family }
            | EventKind::RefreshReused { family }
            | EventKind::RefreshRevoked { family } => family.to_string(),
            EventKind::LimitRejected => String::new(),
            EventKind::VerifyFailed { reason } => (*reason).to_owned(),
            _ => return None,
        };
        Some(Self {
            at: event.at,
            kind: event.kind.name().to_owned(),
            session_id: event.session_id,
            user: event.user.clone(),
            ip: event.ip,
            detail,
        })
    }
}

/// A stored entry with its sequence number (increasing in the order of
/// writing; the paging cursor).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Sequence number, unique in the store, never reused.
    pub seq: u64,
    /// The entry.
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// A query of the audit log: every given filter must match; results newest
/// first (by sequence number), at most `limit`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this user's entries.
    pub user: Option<UserId>,
    /// Only this session's entries.
    pub session_id: Option<SessionId>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only entries with a sequence number below this (the `seq` of the last
    /// entry of the previous page).
    pub before: Option<u64>,
    /// At most this many entries.
    pub limit: usize,
}

impl AuditQuery {
    /// The newest `limit` entries, unfiltered.
    pub fn newest(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// Only `user`'s entries.
    #[must_use]
    pub fn with_user(mut self, user: UserId) -> Self {
        self.user = Some(user);
        self
    }

    /// Whether a stored entry matches the filters and the cursor (for stores
    /// that filter in memory).
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let e = &record.entry;
        self.before.is_none_or(|b| record.seq < b)
            && self
                .user
                .as_ref()
                .is_none_or(|u| e.user.as_ref() == Some(u))
            && self.session_id.is_none_or(|s| e.session_id == Some(s))
            && self.kind.as_deref().is_none_or(|k| e.kind == k)
    }
}

/// What the writer task receives.
enum Msg {
    Entry(AuditEntry),
    /// Answer once everything received before is written (or failed).
    Flush(oneshot::Sender<()>),
}

/// The rate limit of `verify_failed` entries, per fixed one-minute window.
#[derive(Debug, Default)]
struct Limiter {
    window: i64,
    per_ip: HashMap<Option<IpAddr>, u32>,
    total: u32,
    suppressed: u64,
}

impl Limiter {
    /// Starts a new window if `now` is past the current one; returns the count
    /// suppressed in the window that ended, if any.
    fn roll(&mut self, now: Timestamp) -> Option<u64> {
        let window = now.as_millis().div_euclid(60_000);
        if window == self.window {
            return None;
        }
        self.window = window;
        self.per_ip.clear();
        self.total = 0;
        Some(std::mem::take(&mut self.suppressed)).filter(|n| *n > 0)
    }

    /// Whether a failure from `ip` may be written in the current window.
    fn admit(&mut self, ip: Option<IpAddr>) -> bool {
        if self.total >= AuditLog::GLOBAL_PER_MINUTE {
            self.suppressed += 1;
            return false;
        }
        let n = self.per_ip.entry(ip).or_insert(0);
        if *n >= AuditLog::PER_IP_PER_MINUTE {
            self.suppressed += 1;
            return false;
        }
        *n += 1;
        self.total += 1;
        true
    }
}

/// An [`EventSink`] that writes audited events to the store (see the
/// [module docs](self)).
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use sessionary_core::audit::{AuditLog, AuditQuery};
/// use sessionary_core::{MemoryStore, NewSession, SessionManager, SessionStore, SystemClock, UserId};
///
/// let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
/// let audit = AuditLog::spawn(Arc::clone(&store), Arc::new(SystemClock));
/// let manager = SessionManager::builder(Arc::clone(&store))
///     .with_event_sink(audit.clone())
///     .build()?;
/// manager.create(NewSession::user(UserId::new("alice")?)).await?;
/// audit.flush().await;
/// let entries = store.audit(&AuditQuery::newest(10)).await.unwrap();
/// assert_eq!(entries[0].entry.kind, "created");
/// # Ok::<(), sessionary_core::Error>(())
/// # }).unwrap();
/// ```
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    clock: Arc<dyn Clock>,
    limiter: Mutex<Limiter>,
    dropped: AtomicU64,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("queued", &(self.tx.max_capacity() - self.tx.capacity()))
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Entries waiting to be written before new ones are dropped.
    pub const CAPACITY: usize = 4096;
    /// Most entries written in one `append_audit` call.
    pub const BATCH: usize = 256;
    /// Most `verify_failed` entries per client address per minute.
    pub const PER_IP_PER_MINUTE: u32 = 5;
    /// Most `verify_failed` entries per minute in all.
    pub const GLOBAL_PER_MINUTE: u32 = 100;

    /// Starts the writer task on the current tokio runtime; `clock` (the
    /// manager's) times the rate limit. The task ends once the log is dropped
    /// and everything queued is written.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(store: Arc<dyn SessionStore>, clock: Arc<dyn Clock>) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(Self::CAPACITY);
        tokio::spawn(writer(store, rx));
        Arc::new(Self {
            tx,
            limiter: Mutex::new(Limiter {
                window: clock.now().as_millis().div_euclid(60_000),
                ..Limiter::default()
            }),
            clock,
            dropped: AtomicU64::new(0),
        })
    }

    /// Entries dropped so far because the queue was full (or the writer gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every entry emitted before this call is written (or its
    /// write failed, which is logged). Tests call it instead of sleeping; the
    /// service calls it before answering an audit query.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Queues an entry that is not an event (e.g. [`crate::activity`]'s page
    /// views); written behind like the others, never waited for.
    pub fn record(&self, entry: AuditEntry) {
        self.queue(entry);
    }

    fn queue(&self, entry: AuditEntry) {
        if let Err(e) = self.tx.try_send(Msg::Entry(entry)) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let kind = match &e {
                mpsc::error::TrySendError::Full(Msg::Entry(e))
                | mpsc::error::TrySendError::Closed(Msg::Entry(e)) => e.kind.as_str(),
                _ => "",
            };
            tracing::warn!(
                target: "sessionary::audit",
                kind,
                dropped_total = n,
                "audit entry dropped: the audit queue is full"
            );
        }
    }
}

impl EventSink for AuditLog {
    fn emit(&self, event: &Event) {
        let Some(entry) = AuditEntry::from_event(event) else {
            return;
        };
        let now = self.clock.now();
        let (summary, admitted) = {
            let mut limiter = self.limiter.lock();
            let summary = limiter.roll(now);
            let admitted = match event.kind {
                EventKind::VerifyFailed { .. } => limiter.admit(event.ip),
                _ => true,
            };
            (summary, admitted)
        };
        if let Some(n) = summary {
            self.queue(AuditEntry {
                at: now,
                kind: SUPPRESSED_KIND.to_owned(),
                session_id: None,
                user: None,
                ip: None,
                detail: n.to_string(),
            });
        }
        if admitted {
            self.queue(entry);
        }
    }
}

/// Forgets every audit entry older than `retention` at `now`, in batches of
/// 10 000 (one store call each); returns how many. Call it periodically.
///
/// # Errors
///
/// Store errors (entries forgotten before the error stay forgotten).
pub async fn sweep_expired(
    store: &dyn SessionStore,
    now: Timestamp,
    retention: std::time::Duration,
) -> crate::store::StoreResult<usize> {
    const BATCH: usize = 10_000;
    let before = Timestamp(
        now.as_millis()
            .saturating_sub(crate::clock::duration_millis(retention)),
    );
    let mut total = 0;
    loop {
        let n = store.sweep_audit(before, BATCH).await?;
        total += n;
        if n < BATCH {
            return Ok(total);
        }
    }
}

/// The writer task: takes what is queued (up to a batch), writes it in one
/// call, then answers the flushes received meanwhile.
async fn writer(store: Arc<dyn SessionStore>, mut rx: mpsc::Receiver<Msg>) {
    let mut batch = Vec::with_capacity(AuditLog::BATCH);
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Entry(e) => batch.push(e),
                Msg::Flush(done) => flushes.push(done),
            }
            if batch.len() < AuditLog::BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let n = batch.len();
            if let Err(e) = store
                .append_audit(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(AuditLog::BATCH),
                ))
                .await
            {
                tracing::warn!(
                    target: "sessionary::audit",
                    error = %e,
                    entries = n,
                    "audit entries lost: the store refused them"
                );
            }
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::EndReason;

    #[tokio::test]
    async fn emit_never_waits_and_counts_drops() {
        // A queue of 2 that nobody reads: the third entry on is dropped, at once.
        let (tx, _rx) = mpsc::channel(2);
        let log = AuditLog {
            tx,
            clock: Arc::new(crate::clock::MockClock::new(0)),
            limiter: Mutex::new(Limiter::default()),
            dropped: AtomicU64::new(0),
        };
        let event = Event {
            at: Timestamp(0),
            session_id: None,
            user: None,
            ip: None,
            kind: EventKind::Ended {
                reason: EndReason::LoggedOut,
            },
        };
        for _ in 0..5 {
            log.emit(&event);
        }
        assert_eq!(log.dropped(), 3);
        let not_audited = Event {
            kind: EventKind::Extended,
            ..event
        };
        log.emit(&not_audited);
        assert_eq!(log.dropped(), 3);
    }

    #[test]
    fn limiter_caps_per_ip_and_globally_and_rolls() {
        let mut l = Limiter::default();
        assert_eq!(l.roll(Timestamp(0)), None);
        let a = Some(IpAddr::from([192, 0, 2, 1]));
        let admitted = (0..50).filter(|_| l.admit(a)).count();
        assert_eq!(admitted, 5);
        for i in 0..200u8 {
            l.admit(Some(IpAddr::from([198, 51, 100, i])));
        }
        assert_eq!(l.total, AuditLog::GLOBAL_PER_MINUTE);
        assert_eq!(l.roll(Timestamp(59_999)), None);
        assert_eq!(l.roll(Timestamp(60_000)), Some(45 + 200 - 95));
        assert!(l.admit(a));
        assert_eq!(l.roll(Timestamp(120_000)), None);
    }
}
