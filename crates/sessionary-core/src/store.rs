//! The storage contract every backend fulfils.
//!
//! Every operation is atomic on every backend; the conformance suite in
//! `sessionary-testkit` checks each one, races included. Stores see token
//! hashes, never tokens, and sealed data, never plaintext.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::audit::{AuditEntry, AuditQuery, AuditRecord};
use crate::clock::Timestamp;
use crate::policy::LimitMode;
use crate::record::{EndReason, Restorable, SessionRecord, Tombstone, UserData};
use crate::refresh::{CreateFamily, FamilyEnd, RefreshFamily, RefreshOutcome, RefreshRequest};
use crate::seal::Sealed;
use crate::token::{SessionId, TokenHash, UserId};

/// A failure of the storage backend itself (not "not found": that is an outcome).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be reached now; the caller may retry later.
    #[error("session store unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
    /// Stored bytes could not be decoded.
    #[error("stored session data is corrupt")]
    Corrupt(#[source] Box<dyn StdError + Send + Sync>),
    /// Any other backend error.
    #[error("session store error")]
    Backend(#[source] Box<dyn StdError + Send + Sync>),
}

impl StoreError {
    /// Wraps a backend error.
    pub fn backend(e: impl StdError + Send + Sync + 'static) -> Self {
        Self::Backend(Box::new(e))
    }

    /// Wraps a connectivity error.
    pub fn unavailable(e: impl StdError + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(e))
    }

    /// Wraps a decoding error.
    pub fn corrupt(e: impl StdError + Send + Sync + 'static) -> Self {
        Self::Corrupt(Box::new(e))
    }
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// A request to record activity while loading, written only if due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Touch {
    /// The current time; written only if the record's touch interval passed
    /// since `last_seen_at` (see [`SessionRecord::touch_due`]).
    pub now: Timestamp,
}

/// What a load by token hash found.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    /// A session (possibly past its expiry: the caller decides).
    Found(Arc<SessionRecord>),
    /// The token belonged to a session that ended recently; here is why.
    Ended(Tombstone),
    /// Never issued, or ended long ago.
    Missing,
}

/// How to end a session: reason, time, and what to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ending {
    /// Why it ends.
    pub reason: EndReason,
    /// When (stored in the tombstone).
    pub at: Timestamp,
    /// Keep the reason under the token hash until then.
    pub reason_until: Timestamp,
    /// If set and the session has a user, keep its (sealed, possibly empty) data
    /// for the user's next session until then. Of several kept for one user, the
    /// one kept longest wins.
    pub restore_until: Option<Timestamp>,
}

/// A concurrent-session limit applied atomically by [`SessionStore::create`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimit {
    /// Most live sessions the user may have, the new one included.
    pub max: u32,
    /// What to do at the limit.
    pub mode: LimitMode,
    /// Sessions expired at this time do not count (they are left for `load` or `sweep` to end).
    pub now: Timestamp,
    /// How evicted sessions end (reason `evicted_by_limit`).
    pub evict: Ending,
}

/// Outcome of [`SessionStore::create`].
#[derive(Clone, Debug, PartialEq)]
pub enum Create {
    /// Stored; `evicted` lists sessions the limit pushed out.
    Created {
        /// Sessions ended to make room (oldest first).
        evicted: Vec<Arc<SessionRecord>>,
    },
    /// A session with this id or token hash exists already; nothing was written.
    Duplicate,
    /// The user is at the limit and the mode is [`LimitMode::RejectNew`]; nothing was written.
    LimitReached {
        /// Live sessions the user has.
        active: u32,
    },
}

/// Outcome of a compare-and-set write.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// Written; the stored record now.
    Updated(Arc<SessionRecord>),
    /// The version did not match; the stored record now.
    Conflict(Arc<SessionRecord>),
    /// The session no longer exists; nothing was written (never re-created).
    Gone,
}

/// Outcome of [`SessionStore::increment_counter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Incremented; the new value.
    Incremented(u64),
    /// Not incremented: the limit would be exceeded; the current value.
    LimitExceeded(u64),
    /// The session no longer exists.
    Gone,
}

/// A session ended by a sweep or a bulk end, for events.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    /// The record as it was.
    pub record: Arc<SessionRecord>,
    /// Why it ended.
    pub reason: EndReason,
}

/// What a sweep keeps of the sessions it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepSpec {
    /// The current time: sessions expired by then are ended.
    pub now: Timestamp,
    /// Reasons are kept this many milliseconds after the expiry.
    pub reason_ttl_ms: i64,
    /// Data of expired users' sessions is kept this many milliseconds for restore.
    pub restore_ttl_ms: i64,
}

impl SweepSpec {
    /// How a sweep ends `record`, expired for `reason`: the reason is kept
    /// `reason_ttl_ms` after the expiry, and a user's data `restore_ttl_ms`.
    pub fn ending(&self, record: &SessionRecord, reason: EndReason) -> Ending {
        let at = record.expires_at();
        Ending {
            reason,
            at,
            reason_until: at.add_millis(self.reason_ttl_ms),
            restore_until: record
                .user
                .as_ref()
                .map(|_| at.add_millis(self.restore_ttl_ms)),
        }
    }
}

/// The record a compare-and-set write stores, the same on every backend: the
/// writer's fields, except that owner, creation time, counters and the limit
/// exemption stay as stored, `last_seen_at` never moves backwards, and the
/// version is `version`.
pub fn apply_update(mut new: SessionRecord, stored: &SessionRecord, version: u64) -> SessionRecord {
    new.version = version;
    new.user.clone_from(&stored.user);
    new.created_at = stored.created_at;
    new.exempt_from_limit = stored.exempt_from_limit;
    new.counters.clone_from(&stored.counters);
    new.last_seen_at = new.last_seen_at.max(stored.last_seen_at);
    new
}

/// Storage for sessions, tombstones, restorable data and user data.
///
/// Object-safe; used as `Arc<dyn SessionStore>`. Every method is one atomic
/// operation on the backend.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug + 'static {
    /// Inserts a new session. Never overwrites: an existing id or token hash gives
    /// [`Create::Duplicate`]. With a limit, counting the user's live sessions
    /// (not those [`SessionRecord::exempt_from_limit`]), evicting or refusing
    /// and inserting happen as one step.
    async fn create(
        &self,
        record: SessionRecord,
        limit: Option<SessionLimit>,
    ) -> StoreResult<Create>;

    /// Finds a session by token hash, else its tombstone. With `touch`, a live
    /// session whose touch is due gets `last_seen_at = touch.now` in the same
    /// step (the version is not bumped, data is not rewritten).
    async fn load(&self, hash: &TokenHash, touch: Option<Touch>) -> StoreResult<Lookup>;

    /// [`Self::load`] without waiting, for a store that can answer at once (in
    /// memory, or from a cache): `Some` with exactly what `load` would give (the
    /// touch included), or `None` if the answer needs I/O, in which case nothing
    /// was done and the caller calls [`Self::load`]. The default answers `None`.
    ///
    /// The session layer tries this first on every request, so that a store in
    /// memory costs no boxed future.
    fn load_now(&self, hash: &TokenHash, touch: Option<Touch>) -> Option<StoreResult<Lookup>> {
        let _ = (hash, touch);
        None
    }

    /// Finds a session by id.
    async fn get(&self, id: &SessionId) -> StoreResult<Option<Arc<SessionRecord>>>;

    /// Replaces a session if its version is `expected_version`. The stored record gets
    /// `version = expected_version + 1`; `last_seen_at` never moves backwards; the token
    /// hash and counters of the stored record are kept. A missing session stays missing.
    async fn update(&self, record: SessionRecord, expected_version: u64) -> StoreResult<Update>;

    /// Replaces a session's token in one step: the record (with its new `token_hash`) is
    /// written if the stored version is `expected_version`, and the old token hash
    /// resolves to `tombstone` from then on. Counters are kept.
    async fn rotate(
        &self,
        record: SessionRecord,
        expected_version: u64,
        tombstone: Tombstone,
    ) -> StoreResult<Update>;

    /// Records activity now if the session is live (`POST /session/extend`).
    /// Returns the record after the touch, `None` if missing or expired.
    async fn touch(
        &self,
        id: &SessionId,
        now: Timestamp,
    ) -> StoreResult<Option<Arc<SessionRecord>>>;

    /// Ends one session: removes it, leaves a tombstone under its token hash, and
    /// keeps its data for restore if asked. Returns the removed record.
    async fn end(&self, id: &SessionId, ending: Ending) -> StoreResult<Option<Arc<SessionRecord>>>;

    /// Ends all of a user's sessions except `except`. Returns the removed records.
    async fn end_user(
        &self,
        user: &UserId,
        except: Option<&SessionId>,
        ending: Ending,
    ) -> StoreResult<Vec<Arc<SessionRecord>>>;

    /// A user's sessions that are live at `now`, oldest first.
    async fn list_user(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Vec<Arc<SessionRecord>>>;

    /// Adds `by` to a counter unless the result would exceed `limit`; bumps the version.
    async fn increment_counter(
        &self,
        id: &SessionId,
        name: &str,
        by: u64,
        limit: Option<u64>,
    ) -> StoreResult<Counter>;

    /// Ends up to `max` sessions expired at `spec.now` (with tombstones and restorable
    /// data as for [`Self::end`]) and forgets expired tombstones and restorable data.
    async fn sweep(&self, spec: SweepSpec, max: usize) -> StoreResult<Vec<Ended>>;

    /// Takes (and removes) the restorable data a user's expired session left, if still kept.
    async fn take_restorable(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> StoreResult<Option<Restorable>>;

    /// A user's user-scope data.
    async fn user_data(&self, user: &UserId) -> StoreResult<Option<UserData>>;

    /// Writes a user's data if its version is `expected_version` (0: must be absent).
    /// Returns the stored value after the write, or `Err(current)` on a version mismatch.
    async fn set_user_data(
        &self,
        user: &UserId,
        expected_version: u64,
        data: Sealed,
    ) -> StoreResult<Result<UserData, Option<UserData>>>;

    /// Stores a new refresh token family (generation 0, `family.current_hash`
    /// its only token) if its session exists and is live at `family.created_at`,
    /// checked in the same step. Never overwrites.
    async fn create_refresh_family(&self, family: RefreshFamily) -> StoreResult<CreateFamily>;

    /// Uses a refresh token, as one atomic step (see [`RefreshOutcome`] for each
    /// case): the current token rotates to `request.next_hash` and touches the
    /// session; the previous one within the grace window is a retry; any other
    /// token of the family is reuse, which revokes the family and ends its
    /// session. The session must be live at `request.now` for a rotation or a
    /// retry, else the family is revoked. Concurrent uses of one token: exactly
    /// one rotates, the others are retries (within the grace window).
    async fn refresh(&self, request: RefreshRequest) -> StoreResult<RefreshOutcome>;

    /// Revokes the family that `hash` belongs to (any of its tokens, spent ones
    /// included). Returns the family, `None` if no family knows the hash. A
    /// family revoked before keeps its first reason.
    async fn revoke_refresh(
        &self,
        hash: &TokenHash,
        reason: FamilyEnd,
    ) -> StoreResult<Option<RefreshFamily>>;

    /// Revokes every family of a session that is not revoked yet; returns them.
    async fn revoke_refresh_families(
        &self,
        session: &SessionId,
        reason: FamilyEnd,
    ) -> StoreResult<Vec<RefreshFamily>>;

    /// Forgets up to `max` families past their absolute lifetime at `now`, with
    /// all their token hashes (their tokens are then `Missing`). Returns how many.
    async fn sweep_refresh(&self, now: Timestamp, max: usize) -> StoreResult<usize>;

    /// Appends audit entries in order, each with the next sequence number (never
    /// reused, even after a sweep). Written by [`crate::audit::AuditLog`].
    async fn append_audit(&self, entries: Vec<AuditEntry>) -> StoreResult<()>;

    /// The audit entries matching `query`, newest (highest sequence number) first.
    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>>;

    /// Forgets up to `max` audit entries older than `before` (retention);
    /// returns how many.
    async fn sweep_audit(&self, before: Timestamp, max: usize) -> StoreResult<usize>;
}
