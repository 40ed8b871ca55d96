//! [`SessionManager`]: every lifecycle rule, over any [`SessionStore`].

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::binding::{BindingAction, Mismatch};
use crate::clock::{Clock, SystemClock, Timestamp, duration_millis};
use crate::error::{Error, Result};
use crate::event::{Event, EventBus, EventKind, EventSink, TracingSink};
use crate::fanout::{Fanout, NodeId};
use crate::policy::{Policy, RolePolicy};
use crate::quota::{Charge, QuotaKind, Usage};
use crate::record::{CsrfSecret, Device, EndReason, SessionRecord, Tombstone};
use crate::refresh::{
    CreateFamily, FamilyEnd, FamilyId, RefreshFamily, RefreshOutcome, RefreshRefusal,
    RefreshRequest, RefreshToken, open_successor, seal_successor,
};
use crate::seal::{KeyRing, SealError, Sealed};
use crate::store::{
    Counter, Create, Ending, Lookup, SessionLimit, SessionStore, SweepSpec, Touch, Update,
};
use crate::token::{SessionId, SessionToken, TokenHash, UserId, fill_random};

/// Session or user data: a JSON object.
pub type Data = Map<String, Value>;

/// Optimistic writes retry this often before giving up with [`Error::Contention`].
/// Every failed attempt means another writer succeeded, so with fewer than this many
/// concurrent writers on one session every write lands.
const MAX_ATTEMPTS: usize = 256;
/// Default grace window in which a retry of a refresh gets the same successor.
const DEFAULT_REFRESH_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest grace window accepted: a long one would blunt reuse detection.
const MAX_REFRESH_GRACE: std::time::Duration = std::time::Duration::from_secs(60);
/// Most roles a session may carry.
const MAX_ROLES: usize = 32;
/// Longest role name, in bytes.
const MAX_ROLE_LEN: usize = 64;

/// Where anonymous data goes when its visitor signs in.
///
/// `session` is the new session's data (it starts with what the caller passed),
/// `user` is the user's data shared by all devices.
#[derive(Debug)]
pub struct MergeInto<'a> {
    /// The new session's data.
    pub session: &'a mut Data,
    /// The user's data (all devices).
    pub user: &'a mut Data,
}

/// Decides how an anonymous session's data joins the signed-in user's.
///
/// Called at sign-in with a copy of the anonymous data; it may run more than once
/// if the user's data changes concurrently, so it must be a pure function of its
/// inputs.
pub trait MergeHook: Send + Sync + fmt::Debug + 'static {
    /// Merges `anonymous` into `into`.
    fn merge(&self, anonymous: Data, into: MergeInto<'_>);
}

/// The default hook: anonymous session data becomes the new session's data
/// (keys the caller set for the new session win); user data is untouched.
#[derive(Clone, Copy, Debug, Default)]
pub struct CarryOver;

impl MergeHook for CarryOver {
    fn merge(&self, anonymous: Data, into: MergeInto<'_>) {
        for (k, v) in anonymous {
            into.session.entry(k).or_insert(v);
        }
    }
}

/// A session to create.
///
/// # Examples
///
/// ```
/// use sessionary_core::{NewSession, UserId};
/// let new = NewSession::user(UserId::new("alice")?).with_roles(["user"]).with_remember(true);
/// # Ok::<(), sessionary_core::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct NewSession {
    /// The user; `None` for an anonymous session.
    pub user: Option<UserId>,
    /// Roles.
    pub roles: Vec<String>,
    /// Assurance level the authentication event proved (1-3; 0 for anonymous).
    pub aal: u8,
    /// Remember me.
    pub remember: bool,
    /// The device.
    pub device: Device,
    /// Initial session data.
    pub data: Data,
    /// Restore the data of this user's last expired session, if kept (default: yes).
    pub restore: bool,
    /// Create it without applying the role's concurrent-session limit, so it
    /// evicts nothing and is never refused by it, and keep it out of the
    /// limit for good ([`SessionRecord::exempt_from_limit`]): later sign-ins
    /// neither count nor evict it (default: no). For sessions derived from a
    /// live one, such as an app's session under a single sign-on session: the
    /// device already counted.
    pub exempt_from_limit: bool,
}

impl NewSession {
    /// An anonymous session.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// A session for `user` at AAL1.
    pub fn user(user: UserId) -> Self {
        Self {
            user: Some(user),
            aal: 1,
            restore: true,
            ..Self::default()
        }
    }

    /// Sets the roles.
    #[must_use]
    pub fn with_roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, roles: I) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the assurance level.
    #[must_use]
    pub fn with_aal(mut self, aal: u8) -> Self {
        self.aal = aal;
        self
    }

    /// Sets remember-me.
    #[must_use]
    pub fn with_remember(mut self, remember: bool) -> Self {
        self.remember = remember;
        self
    }

    /// Sets the device.
    #[must_use]
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Sets the initial data.
    #[must_use]
    pub fn with_data(mut self, data: Data) -> Self {
        self.data = data;
        self
    }

    /// Whether to restore the data of the user's last expired session.
    #[must_use]
    pub fn with_restore(mut self, restore: bool) -> Self {
        self.restore = restore;
        self
    }

    /// Creates the session without applying the concurrent-session limit
    /// (the `exempt_from_limit` field).
    #[must_use]
    pub fn without_limit(mut self) -> Self {
        self.exempt_from_limit = true;
        self
    }
}

/// A privilege change applied by [`SessionManager::regenerate`].
#[derive(Clone, Debug, Default)]
pub struct Privilege {
    /// New roles, if they change.
    pub roles: Option<Vec<String>>,
    /// New assurance level, if it changes (a step-up).
    pub aal: Option<u8>,
    /// The user just authenticated again: `auth_time` becomes now.
    pub reauthenticated: bool,
    /// The device the session is bound to from now on (after a step-up that
    /// released a binding hold, the device that passed it).
    pub device: Option<Device>,
}

/// A session just issued, with the only copy of its token.
#[derive(Debug)]
pub struct Issued {
    /// The bearer token: hand it to the client, do not keep it.
    pub token: SessionToken,
    /// The stored record.
    pub session: Arc<SessionRecord>,
    /// Sessions the concurrent-session limit ended to make room.
    pub evicted: Vec<SessionId>,
    /// The expired session whose data was restored into this one.
    pub restored_from: Option<SessionId>,
}

/// A refresh token just issued, with the only copy of the token.
#[derive(Debug)]
pub struct IssuedRefresh {
    /// The refresh token: hand it to the client, do not keep it.
    pub token: RefreshToken,
    /// Its family (public handle, for listing and revoking).
    pub family_id: FamilyId,
    /// No token of the family works from then on (the earlier of the role's
    /// `refresh_absolute_timeout` and the session's absolute expiry).
    pub expires_at: Timestamp,
}

/// The result of [`SessionManager::refresh`].
#[derive(Debug)]
pub struct Refreshed {
    /// The session, touched by the refresh.
    pub session: Arc<SessionRecord>,
    /// The token to use next time (the presented one is spent).
    pub token: RefreshToken,
    /// The family.
    pub family_id: FamilyId,
    /// When the family's absolute lifetime ends.
    pub expires_at: Timestamp,
    /// Whether this was a retry within the grace window that received the
    /// successor an earlier use of the same token already received.
    pub retried: bool,
}

/// What [`SessionManager::verify_hash_now`] could not do without waiting; give
/// it to [`SessionManager::verify_later`].
#[derive(Debug)]
pub struct VerifyLater(Later);

#[derive(Debug)]
enum Later {
    /// The store must be awaited.
    Load { extend: bool },
    /// Found past its expiry: it must be ended.
    Expire(Arc<SessionRecord>, EndReason),
}

/// Builds a [`SessionManager`].
#[derive(Debug)]
pub struct ManagerBuilder {
    store: Arc<dyn SessionStore>,
    policy: Policy,
    keys: Option<KeyRing>,
    clock: Arc<dyn Clock>,
    merge: Arc<dyn MergeHook>,
    sinks: Vec<Arc<dyn EventSink>>,
    event_capacity: usize,
    max_data_bytes: usize,
    refresh_grace: std::time::Duration,
    fanout: Option<Arc<dyn Fanout>>,
}

impl ManagerBuilder {
    /// Shares events with the other nodes of the same store through `fanout`:
    /// this node's ends and data changes are published, and the other nodes'
    /// reach this manager's subscribers ([`SessionManager::subscribe`]: SSE
    /// streams, the access-token revocation list) within the transport's delay.
    /// Sinks see only this node's own events. [`SessionManager::builder`]'s
    /// `build` must then run inside a Tokio runtime (a task forwards the
    /// arriving events).
    #[must_use]
    pub fn with_fanout(mut self, fanout: Arc<dyn Fanout>) -> Self {
        self.fanout = Some(fanout);
        self
    }

    /// How long after a rotation a retry with the previous refresh token
    /// receives the same successor (default 10 s, at most 60 s; the bound is
    /// inclusive, so with zero only a retry in the very millisecond of the
    /// rotation is one, and any later second use is reuse).
    #[must_use]
    pub fn with_refresh_grace(mut self, grace: std::time::Duration) -> Self {
        self.refresh_grace = grace;
        self
    }

    /// Sets the policy (default: [`Policy::default`]).
    #[must_use]
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the data key ring (default: a fresh random key, so data does not
    /// survive a restart: give a persistent ring in production).
    #[must_use]
    pub fn with_keys(mut self, keys: KeyRing) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Sets the clock (default: [`SystemClock`]).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the sign-in merge hook (default: [`CarryOver`]).
    #[must_use]
    pub fn with_merge_hook(mut self, hook: Arc<dyn MergeHook>) -> Self {
        self.merge = hook;
        self
    }

    /// Adds an event sink (a [`TracingSink`] is always present).
    #[must_use]
    pub fn with_event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Largest serialized session or user data accepted, in bytes (default 64 KiB).
    #[must_use]
    pub fn with_max_data_bytes(mut self, n: usize) -> Self {
        self.max_data_bytes = n;
        self
    }

    /// Builds the manager.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid policy; [`Error::Seal`] if no key can be generated.
    pub fn build(self) -> Result<SessionManager> {
        self.policy.validate().map_err(Error::Config)?;
        if self.refresh_grace > MAX_REFRESH_GRACE {
            return Err(Error::Config(
                "the refresh grace window must be at most 60s".into(),
            ));
        }
        let keys = match self.keys {
            Some(k) => k,
            None => KeyRing::generate(1)?,
        };
        let mut events = EventBus::new(self.sinks, self.event_capacity);
        if let Some(fanout) = self.fanout {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                Error::Config("a fanout needs a Tokio runtime: build the manager inside one".into())
            })?;
            events.connect(fanout, NodeId::generate()?, &runtime);
        }
        Ok(SessionManager {
            inner: Arc::new(Inner {
                store: self.store,
                policy: self.policy,
                keys,
                clock: self.clock,
                merge: self.merge,
                events,
                max_data_bytes: self.max_data_bytes,
                refresh_grace_ms: duration_millis(self.refresh_grace),
            }),
        })
    }
}

/// The session engine. Cheap to clone; clones share everything.
///
/// # Examples
///
/// ```
/// # tokio_test(async {
/// use std::sync::Arc;
/// use sessionary_core::{MemoryStore, NewSession, SessionManager, UserId};
///
/// let manager = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;
/// let issued = manager.create(NewSession::user(UserId::new("alice")?)).await?;
/// let session = manager.verify(&issued.token.encode()).await?;
/// assert_eq!(session.user.as_ref().map(|u| u.as_str()), Some("alice"));
/// manager.logout(&issued.token.encode()).await?;
/// assert!(manager.verify(&issued.token.encode()).await.is_err());
/// # Ok::<(), sessionary_core::Error>(())
/// # });
/// # fn tokio_test<F: std::future::Future<Output = Result<(), sessionary_core::Error>>>(f: F) {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f).unwrap()
/// # }
/// ```
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn SessionStore>,
    policy: Policy,
    keys: KeyRing,
    clock: Arc<dyn Clock>,
    merge: Arc<dyn MergeHook>,
    events: EventBus,
    max_data_bytes: usize,
    refresh_grace_ms: i64,
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("store", &self.inner.store)
            .field("policy", &self.inner.policy)
            .field("keys", &self.inner.keys)
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}

fn session_aad(id: &SessionId) -> [u8; 18] {
    let mut a = [0u8; 18];
    a[0] = b's';
    a[1] = b':';
    a[2..].copy_from_slice(id.as_bytes());
    a
}

fn user_aad(user: &UserId) -> Vec<u8> {
    let mut a = Vec::with_capacity(2 + user.as_str().len());
    a.extend_from_slice(b"u:");
    a.extend_from_slice(user.as_str().as_bytes());
    a
}

fn validate_roles(roles: &[String]) -> Result<()> {
    if roles.len() > MAX_ROLES
        || roles
            .iter()
            .any(|r| r.is_empty() || r.len() > MAX_ROLE_LEN || r.chars().any(char::is_control))
    {
        return Err(Error::InvalidInput(
            "at most 32 roles of 1-64 bytes without control characters",
        ));
    }
    Ok(())
}

/// Applies an RFC 7396 JSON merge patch to `target`.
pub fn merge_patch(target: &mut Data, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(p) => {
                let slot = target
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(t) = slot {
                    merge_patch(t, p);
                }
            }
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

impl SessionManager {
    /// Starts building a manager over `store`.
    pub fn builder(store: Arc<dyn SessionStore>) -> ManagerBuilder {
        ManagerBuilder {
            store,
            policy: Policy::default(),
            keys: None,
            clock: Arc::new(SystemClock),
            merge: Arc::new(CarryOver),
            sinks: vec![Arc::new(TracingSink)],
            event_capacity: 1024,
            max_data_bytes: 64 * 1024,
            refresh_grace: DEFAULT_REFRESH_GRACE,
            fanout: None,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// The current time by the manager's clock.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// The role policy that governs `record`.
    pub fn policy_for(&self, record: &SessionRecord) -> &RolePolicy {
        self.inner
            .policy
            .for_session(record.user.is_some(), &record.roles)
    }

    /// Notified when the manager's clock jumps (a test's [`crate::MockClock`]);
    /// `None` for real clocks. See [`Clock::jumps`].
    pub fn clock_jumps(&self) -> Option<tokio::sync::watch::Receiver<Timestamp>> {
        self.inner.clock.jumps()
    }

    /// Subscribes to events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.events.subscribe()
    }

    fn emit(&self, session_id: Option<SessionId>, user: Option<UserId>, kind: EventKind) {
        self.emit_with(session_id, user, None, kind);
    }

    fn emit_with(
        &self,
        session_id: Option<SessionId>,
        user: Option<UserId>,
        ip: Option<IpAddr>,
        kind: EventKind,
    ) {
        self.inner.events.emit(Event {
            at: self.now(),
            session_id,
            user,
            ip,
            kind,
        });
    }

    /// An event about a session, with its id, user and device address.
    fn emit_for(&self, rec: &SessionRecord, kind: EventKind) {
        self.inner.events.emit(Event {
            at: self.now(),
            session_id: Some(rec.id),
            user: rec.user.clone(),
            ip: rec.device.ip,
            kind,
        });
    }

    fn ending(&self, reason: EndReason, at: Timestamp, restore: bool) -> Ending {
        let p = &self.inner.policy;
        Ending {
            reason,
            at,
            reason_until: at.plus(p.reason_ttl),
            restore_until: restore.then(|| at.plus(p.restore_ttl)),
        }
    }

    fn seal_data(&self, id: &SessionId, data: &Data) -> Result<Sealed> {
        if data.is_empty() {
            return Ok(Sealed::default());
        }
        let json = serde_json::to_vec(data).map_err(|e| Error::InvalidData(e.to_string()))?;
        if json.len() > self.inner.max_data_bytes {
            return Err(Error::InvalidData(format!(
                "data is {} bytes, the limit is {}",
                json.len(),
                self.inner.max_data_bytes
            )));
        }
        Ok(self.inner.keys.seal(&session_aad(id), &json)?)
    }

    fn open_blob(&self, aad: &[u8], blob: &Sealed) -> Result<Data> {
        if blob.is_empty() {
            return Ok(Data::new());
        }
        let plain = self.inner.keys.open(aad, blob)?;
        serde_json::from_slice(&plain).map_err(|e| Error::InvalidData(e.to_string()))
    }

    /// Opens a session's data.
    ///
    /// # Errors
    ///
    /// [`Error::Seal`] if the blob does not open with the key ring.
    pub fn data(&self, record: &SessionRecord) -> Result<Data> {
        self.open_blob(&session_aad(&record.id), &record.data)
    }

    fn new_record(&self, new: &NewSession, data: &Data) -> Result<(SessionToken, SessionRecord)> {
        let now = self.now();
        let rp = self
            .inner
            .policy
            .for_session(new.user.is_some(), &new.roles);
        let remember = new.remember && rp.allow_remember;
        let (idle, abs) = rp.timeouts_ms(remember);
        let token = SessionToken::generate()?;
        let id = SessionId::generate()?;
        let mut csrf = [0u8; 32];
        fill_random(&mut csrf)?;
        let record = SessionRecord {
            id,
            token_hash: token.hash(),
            user: new.user.clone(),
            roles: new.roles.clone(),
            aal: new.aal,
            auth_time: new.user.as_ref().map(|_| now),
            created_at: now,
            last_seen_at: now,
            idle_timeout_ms: idle,
            touch_interval_ms: rp.touch_interval_ms(idle),
            absolute_expires_at: now.add_millis(abs),
            remember,
            device: new.device.clone(),
            version: 1,
            csrf_secret: CsrfSecret(csrf),
            counters: Default::default(),
            exempt_from_limit: new.exempt_from_limit,
            data: self.seal_data(&id, data)?,
        };
        Ok((token, record))
    }

    /// Creates a session: at sign-in, or for an anonymous visitor when something is
    /// first stored (never on a mere visit). Applies the concurrent-session limit
    /// atomically, and restores the data of the user's last expired session if
    /// `new.restore` and the data is still kept.
    ///
    /// # Errors
    ///
    /// [`Error::LimitReached`] under [`crate::LimitMode::RejectNew`]; [`Error::InvalidInput`]
    /// for bad roles, AAL or data; store errors.
    pub async fn create(&self, new: NewSession) -> Result<Issued> {
        validate_roles(&new.roles)?;
        match (&new.user, new.aal) {
            (None, 0) if new.roles.is_empty() => {}
            (None, _) => {
                return Err(Error::InvalidInput(
                    "an anonymous session has no roles and AAL 0",
                ));
            }
            (Some(_), 1..=3) => {}
            (Some(_), _) => return Err(Error::InvalidInput("aal must be 1, 2 or 3")),
        }
        let rp = self
            .inner
            .policy
            .for_session(new.user.is_some(), &new.roles);
        for _ in 0..4 {
            let (token, record) = self.new_record(&new, &new.data)?;
            let now = record.created_at;
            let limit = match (rp.max_sessions, &new.user) {
                (Some(max), Some(_)) if !new.exempt_from_limit => Some(SessionLimit {
                    max,
                    mode: rp.on_limit,
                    now,
                    evict: self.ending(EndReason::EvictedByLimit, now, false),
                }),
                _ => None,
            };
            let id = record.id;
            match self.inner.store.create(record, limit).await? {
                Create::Created { evicted } => {
                    let user = new.user.clone();
                    self.emit_with(
                        Some(id),
                        user.clone(),
                        new.device.ip,
                        EventKind::Created {
                            authenticated: user.is_some(),
                        },
                    );
                    for e in &evicted {
                        self.emit_for(
                            e,
                            EventKind::Ended {
                                reason: EndReason::EvictedByLimit,
                            },
                        );
                    }
                    let mut issued = Issued {
                        token,
                        session: self.get(&id).await?,
                        evicted: evicted.iter().map(|e| e.id).collect(),
                        restored_from: None,
                    };
                    if let (true, Some(user)) = (new.restore, &new.user) {
                        self.restore_into(user, &mut issued).await?;
                    }
                    return Ok(issued);
                }
                Create::Duplicate => continue,
                Create::LimitReached { .. } => {
                    self.emit(None, new.user.clone(), EventKind::LimitRejected);
                    return Err(Error::LimitReached {
                        max: rp.max_sessions.unwrap_or(0),
                    });
                }
            }
        }
        // Four collisions of 128/256-bit random values do not happen by chance.
        Err(Error::Random)
    }

    async fn restore_into(&self, user: &UserId, issued: &mut Issued) -> Result<()> {
        let now = self.now();
        let Some(r) = self.inner.store.take_restorable(user, now).await? else {
            return Ok(());
        };
        let restored = match self.open_blob(&session_aad(&r.session_id), &r.data) {
            Ok(d) if !d.is_empty() => d,
            // Undecodable leftovers (e.g. a retired key) are dropped, not fatal.
            _ => return Ok(()),
        };
        let updated = self
            .update_data(&issued.session.id, None, |data| {
                for (k, v) in restored.clone() {
                    data.entry(k).or_insert(v);
                }
            })
            .await?;
        issued.session = updated;
        issued.restored_from = Some(r.session_id);
        self.emit(
            Some(issued.session.id),
            Some(user.clone()),
            EventKind::Restored { from: r.session_id },
        );
        Ok(())
    }

    async fn get(&self, id: &SessionId) -> Result<Arc<SessionRecord>> {
        self.inner.store.get(id).await?.ok_or(Error::NotFound)
    }

    /// Ends a session found past its expiry, keeping the reason and (for a user)
    /// the data for restore.
    async fn expire(&self, rec: &SessionRecord, reason: EndReason) -> Error {
        let at = rec.expires_at();
        let ending = self.ending(reason, at, rec.user.is_some());
        match self.inner.store.end(&rec.id, ending).await {
            Ok(Some(gone)) => {
                self.emit_for(&gone, EventKind::Ended { reason });
                Error::Ended(reason)
            }
            Ok(None) => Error::Ended(reason),
            Err(e) => Error::Store(e),
        }
    }

    async fn lookup(&self, token: &str, touch: bool) -> Result<Arc<SessionRecord>> {
        // Malformed input is refused here, before any store access.
        let hash = SessionToken::parse(token)?.hash();
        self.verify_hash(&hash, touch).await
    }

    /// What a load found, for a lookup at `now`; `Err(record, reason)`: found, but
    /// past its expiry, so it must be ended.
    fn found(
        lookup: Lookup,
        now: Timestamp,
    ) -> std::result::Result<Result<Arc<SessionRecord>>, (Arc<SessionRecord>, EndReason)> {
        match lookup {
            Lookup::Found(rec) => match rec.expiry_reason(now) {
                None => Ok(Ok(rec)),
                Some(reason) => Err((rec, reason)),
            },
            Lookup::Ended(t) => Ok(Err(Error::Ended(t.reason))),
            Lookup::Missing => Ok(Err(Error::UnknownSession)),
        }
    }

    /// [`Self::verify`] (`extend`) or [`Self::status`] (not `extend`) for a token
    /// the caller has already parsed, given by its hash ([`SessionToken::hash`]),
    /// so that a caller that needs the parsed token anyway (the session layer)
    /// decodes and hashes it only once.
    ///
    /// # Errors
    ///
    /// As [`Self::verify`], except [`Error::MalformedToken`].
    pub async fn verify_hash(&self, hash: &TokenHash, extend: bool) -> Result<Arc<SessionRecord>> {
        // A store that answers at once costs no boxed future.
        match self.verify_hash_now(hash, extend) {
            Ok(result) => result,
            Err(later) => self.verify_later(hash, later).await,
        }
    }

    /// [`Self::verify_hash`] without waiting, as far as that goes: `Ok` with what
    /// `verify_hash` would give when the store answers at once
    /// ([`SessionStore::load_now`], e.g. [`crate::MemoryStore`]) and the session
    /// needs no ending; otherwise `Err` with what is left to do, which
    /// [`Self::verify_later`] finishes (a due touch is written by whichever call
    /// loads). The session layer uses this to skip a boxed future per request.
    pub fn verify_hash_now(
        &self,
        hash: &TokenHash,
        extend: bool,
    ) -> std::result::Result<Result<Arc<SessionRecord>>, VerifyLater> {
        let now = self.now();
        let touch = extend.then_some(Touch { now });
        let Some(loaded) = self.inner.store.load_now(hash, touch) else {
            return Err(VerifyLater(Later::Load { extend }));
        };
        let lookup = match loaded {
            Ok(lookup) => lookup,
            Err(e) => return Ok(Err(e.into())),
        };
        Self::found(lookup, now).map_err(|(rec, reason)| VerifyLater(Later::Expire(rec, reason)))
    }

    /// Finishes what [`Self::verify_hash_now`] left for later, for the same `hash`.
    ///
    /// # Errors
    ///
    /// As [`Self::verify_hash`].
    pub async fn verify_later(
        &self,
        hash: &TokenHash,
        later: VerifyLater,
    ) -> Result<Arc<SessionRecord>> {
        let (rec, reason) = match later.0 {
            Later::Load { extend } => {
                // `load_now` already said no: straight to the store.
                let now = self.now();
                let lookup = self
                    .inner
                    .store
                    .load(hash, extend.then_some(Touch { now }))
                    .await?;
                match Self::found(lookup, now) {
                    Ok(result) => return result,
                    Err(expired) => expired,
                }
            }
            Later::Expire(rec, reason) => (rec, reason),
        };
        Err(self.expire(&rec, reason).await)
    }

    /// The hot path: the session a token belongs to, recording activity at most once
    /// per touch interval (most calls write nothing).
    ///
    /// # Errors
    ///
    /// [`Error::MalformedToken`] (no store access), [`Error::UnknownSession`],
    /// [`Error::Ended`] with the reason, store errors.
    pub async fn verify(&self, token: &str) -> Result<Arc<SessionRecord>> {
        self.lookup(token, true).await
    }

    /// Like [`Self::verify`], but never extends the session (for status polling).
    ///
    /// # Errors
    ///
    /// As [`Self::verify`].
    pub async fn status(&self, token: &str) -> Result<Arc<SessionRecord>> {
        self.lookup(token, false).await
    }

    /// Records activity now, whatever the touch interval ("stay signed in").
    ///
    /// # Errors
    ///
    /// As [`Self::verify`].
    pub async fn extend(&self, token: &str) -> Result<Arc<SessionRecord>> {
        // Parsed and hashed once for both lookups.
        let hash = SessionToken::parse(token)?.hash();
        let rec = self.verify_hash(&hash, false).await?;
        let now = self.now();
        match self.inner.store.touch(&rec.id, now).await? {
            Some(r) => {
                self.emit_for(&r, EventKind::Extended);
                Ok(r)
            }
            // Expired or ended meanwhile: look again so the caller learns why.
            None => Err(match self.verify_hash(&hash, false).await {
                Err(e) => e,
                Ok(_) => Error::UnknownSession,
            }),
        }
    }

    /// Compares a verified session with the requesting client under its role's
    /// [`crate::Binding`]. Pure and cheap (no allocation unless the user agent
    /// differs from the stored one); `None` also for a session already held.
    pub fn binding_check(
        &self,
        rec: &SessionRecord,
        ip: Option<IpAddr>,
        user_agent: Option<&str>,
    ) -> Option<Mismatch> {
        if rec.step_up_required() {
            return None;
        }
        self.policy_for(rec)
            .binding
            .check(&rec.device, ip, user_agent)
    }

    /// Acts on a [`Mismatch`] found by [`Self::binding_check`] for a request
    /// from `seen`, and records it (event `binding_mismatch` with the new IP):
    ///
    /// - `log`: the session follows the device (so one change is one entry)
    ///   and the request continues with the updated record;
    /// - `step_up`: the session is held (AAL 0, still bound to the old device)
    ///   and returned so; it claims nothing until a [`Self::regenerate`] with
    ///   a new AAL or re-authentication, which should carry the new device;
    /// - `revoke`: the session ends with reason `hijack_suspected`.
    ///
    /// # Errors
    ///
    /// [`Error::Ended`] with `hijack_suspected` for `revoke` (or the reason it
    /// ended meanwhile), store errors.
    pub async fn on_binding_mismatch(
        &self,
        rec: &Arc<SessionRecord>,
        mismatch: Mismatch,
        seen: Device,
    ) -> Result<Arc<SessionRecord>> {
        let ip = seen.ip;
        let event = EventKind::BindingMismatch {
            change: mismatch.change,
            action: mismatch.action,
        };
        if mismatch.action == BindingAction::Revoke {
            let reason = EndReason::HijackSuspected;
            let ending = self.ending(reason, self.now(), false);
            self.emit_with(Some(rec.id), rec.user.clone(), ip, event);
            if let Some(gone) = self.inner.store.end(&rec.id, ending).await? {
                self.emit_for(&gone, EventKind::Ended { reason });
            }
            return Err(Error::Ended(reason));
        }
        let mut current = Arc::clone(rec);
        for _ in 0..MAX_ATTEMPTS {
            let mut new = SessionRecord::clone(&current);
            match mismatch.action {
                BindingAction::StepUp => new.aal = 0,
                _ => new.device.clone_from(&seen),
            }
            match self.inner.store.update(new, current.version).await? {
                Update::Updated(r) => {
                    self.emit_with(Some(r.id), r.user.clone(), ip, event);
                    if r.step_up_required() {
                        // Refresh tokens are bearer credentials of clients that
                        // cannot step up interactively: they sign in again.
                        self.revoke_refresh_families(&r.id, FamilyEnd::BindingChanged)
                            .await?;
                    }
                    return Ok(r);
                }
                // Another request wrote first. If it already settled this
                // change (held the session, or moved it to this device), go on
                // with that; otherwise apply the action to what is stored, so a
                // racing write never lets a request slip past a hold.
                Update::Conflict(r) => {
                    let settled = match mismatch.action {
                        BindingAction::StepUp => r.step_up_required(),
                        _ => r.device == seen,
                    };
                    if r.token_hash != rec.token_hash {
                        // Regenerated meanwhile: this request's token is dead.
                        return Err(Error::Ended(EndReason::Regenerated));
                    }
                    if settled {
                        return Ok(r);
                    }
                    current = r;
                }
                Update::Gone => {
                    return Err(match self.session(&rec.id).await {
                        Err(e) => e,
                        Ok(_) => Error::UnknownSession,
                    });
                }
            }
        }
        Err(Error::Contention)
    }

    /// Moves a session to `device` without an event, when
    /// [`crate::Binding::follows_user_agent`] says the change is no change
    /// (a browser update under the `label` rule). One compare-and-set; if
    /// another request wrote first, what is stored is returned (the next
    /// request follows again if it must).
    ///
    /// # Errors
    ///
    /// The session's end reason if it is gone, store errors.
    pub async fn follow_device(
        &self,
        rec: &Arc<SessionRecord>,
        device: Device,
    ) -> Result<Arc<SessionRecord>> {
        let mut new = SessionRecord::clone(rec);
        new.device = device;
        match self.inner.store.update(new, rec.version).await? {
            Update::Updated(r) | Update::Conflict(r) => Ok(r),
            Update::Gone => Err(match self.session(&rec.id).await {
                Err(e) => e,
                Ok(_) => Error::UnknownSession,
            }),
        }
    }

    /// Records a failed verification (event `verify_failed`, with the client
    /// address) for the audit log; the web layer and the service API call it
    /// when a presented token does not verify. Reported: malformed and unknown
    /// tokens (forged or guessed), and tokens of sessions ended for a reason
    /// that makes a replay suspicious (`hijack_suspected`, `refresh_reused`,
    /// `token_reuse`, `regenerated`, `revoked_by_admin`, `user_disabled`).
    /// Not reported: sessions that merely timed out or were signed out, whose
    /// cookies browsers keep sending until they are cleared. Audit sinks
    /// rate-limit these per address.
    pub fn report_failure(&self, ip: Option<IpAddr>, error: &Error) {
        let reason = match error {
            Error::MalformedToken(_) => "malformed",
            Error::UnknownSession => "unknown_session",
            Error::Ended(
                r @ (EndReason::HijackSuspected
                | EndReason::RefreshReused
                | EndReason::TokenReuse
                | EndReason::Regenerated
                | EndReason::RevokedByAdmin
                | EndReason::UserDisabled),
            ) => r.as_str(),
            _ => return,
        };
        self.emit_with(None, None, ip, EventKind::VerifyFailed { reason });
    }

    /// A session by id (for the service API and "manage sessions").
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Ended`] if it is past its expiry, store errors.
    pub async fn session(&self, id: &SessionId) -> Result<Arc<SessionRecord>> {
        let rec = self.get(id).await?;
        match rec.expiry_reason(self.now()) {
            None => Ok(rec),
            Some(reason) => Err(self.expire(&rec, reason).await),
        }
    }

    /// Changes a session's data with `f`; concurrent changes are never lost.
    ///
    /// With `expected_version`, one attempt is made and a different stored version is
    /// a [`Error::VersionConflict`]; without, the change is retried on conflicts
    /// (compare-and-set), so `f` may run more than once. If `f` leaves the data as it
    /// was, nothing is written. A session ended meanwhile is never brought back.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Ended`], [`Error::VersionConflict`],
    /// [`Error::InvalidData`] (too large), [`Error::Contention`], store errors.
    pub async fn update_data<F>(
        &self,
        id: &SessionId,
        expected_version: Option<u64>,
        mut f: F,
    ) -> Result<Arc<SessionRecord>>
    where
        F: FnMut(&mut Data) + Send,
    {
        for _ in 0..MAX_ATTEMPTS {
            let rec = self.session(id).await?;
            if expected_version.is_some_and(|v| v != rec.version) {
                return Err(Error::VersionConflict {
                    current: rec.version,
                });
            }
            let before = self.data(&rec)?;
            let mut after = before.clone();
            f(&mut after);
            if after == before {
                return Ok(rec);
            }
            let mut new = SessionRecord::clone(&rec);
            new.data = self.seal_data(id, &after)?;
            match self.inner.store.update(new, rec.version).await? {
                Update::Updated(r) => {
                    self.emit_for(&r, EventKind::DataChanged);
                    return Ok(r);
                }
                Update::Conflict(cur) if expected_version.is_some() => {
                    return Err(Error::VersionConflict {
                        current: cur.version,
                    });
                }
                Update::Conflict(_) => tokio::task::yield_now().await,
                Update::Gone => return Err(Error::NotFound),
            }
        }
        Err(Error::Contention)
    }

    /// Applies an RFC 7396 JSON merge patch to a session's data.
    ///
    /// # Errors
    ///
    /// As [`Self::update_data`].
    pub async fn patch_data(
        &self,
        id: &SessionId,
        expected_version: Option<u64>,
        patch: &Map<String, Value>,
    ) -> Result<Arc<SessionRecord>> {
        self.update_data(id, expected_version, |d| merge_patch(d, patch))
            .await
    }

    /// Issues a new token for a live session (privilege change, step-up,
    /// re-authentication). The old token is dead at once (it reports reason
    /// `regenerated`); id, data and counters carry over. Role changes re-apply
    /// the policy's timeouts.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Ended`], [`Error::InvalidInput`], store errors.
    pub async fn regenerate(&self, id: &SessionId, change: Privilege) -> Result<Issued> {
        if let Some(roles) = &change.roles {
            validate_roles(roles)?;
        }
        for _ in 0..MAX_ATTEMPTS {
            let rec = self.session(id).await?;
            if rec.user.is_none() && (change.roles.is_some() || change.aal.is_some()) {
                return Err(Error::InvalidInput(
                    "an anonymous session cannot gain roles or AAL; sign in instead",
                ));
            }
            if change.aal.is_some_and(|a| !(1..=3).contains(&a)) {
                return Err(Error::InvalidInput("aal must be 1, 2 or 3"));
            }
            let now = self.now();
            let token = SessionToken::generate()?;
            let mut new = SessionRecord::clone(&rec);
            new.token_hash = token.hash();
            if let Some(roles) = &change.roles {
                new.roles.clone_from(roles);
                let rp = self.inner.policy.for_session(true, roles);
                let remember = rec.remember && rp.allow_remember;
                let (idle, abs) = rp.timeouts_ms(remember);
                new.remember = remember;
                new.idle_timeout_ms = idle;
                new.touch_interval_ms = rp.touch_interval_ms(idle);
                new.absolute_expires_at = rec.created_at.add_millis(abs);
            }
            if let Some(aal) = change.aal {
                new.aal = aal;
            }
            if let Some(device) = &change.device {
                new.device.clone_from(device);
            }
            if change.reauthenticated || change.aal.is_some() {
                new.auth_time = Some(now);
            }
            new.last_seen_at = now;
            let tomb = Tombstone {
                session_id: rec.id,
                user: rec.user.clone(),
                reason: EndReason::Regenerated,
                ended_at: now,
                keep_until: now.plus(self.inner.policy.reason_ttl),
            };
            match self.inner.store.rotate(new, rec.version, tomb).await? {
                Update::Updated(session) => {
                    if session.aal > rec.aal && change.reauthenticated {
                        self.emit_for(&session, EventKind::SteppedUp { aal: session.aal });
                    }
                    self.emit_for(&session, EventKind::Regenerated { previous: None });
                    return Ok(Issued {
                        token,
                        session,
                        evicted: Vec::new(),
                        restored_from: None,
                    });
                }
                Update::Conflict(_) => continue,
                Update::Gone => return Err(Error::NotFound),
            }
        }
        Err(Error::Contention)
    }

    /// Signs a user in. A new session (new id, new token) is created under the
    /// concurrent-session limit; if `current_token` names a live session, its data
    /// joins the new one through the merge hook (anonymous → user; the same user
    /// re-authenticating keeps its data; another user's data is never carried) and
    /// that session ends with reason `regenerated`. If creating fails, the old
    /// session is left as it was.
    ///
    /// # Errors
    ///
    /// As [`Self::create`]; [`Error::InvalidInput`] if `new.user` is `None`.
    pub async fn login(&self, current_token: Option<&str>, mut new: NewSession) -> Result<Issued> {
        let Some(user) = new.user.clone() else {
            return Err(Error::InvalidInput("sign-in needs a user"));
        };
        let previous = match current_token {
            Some(t) => match self.status(t).await {
                Ok(rec) => Some(rec),
                Err(Error::MalformedToken(_) | Error::UnknownSession | Error::Ended(_)) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let carried = match &previous {
            Some(p) if p.user.is_none() || p.user.as_ref() == Some(&user) => Some(self.data(p)?),
            _ => None,
        };
        let mut user_changes = None;
        if let Some(anon) = &carried {
            let (version, mut user_data) = self.user_data(&user).await?;
            let before = user_data.clone();
            self.inner.merge.merge(
                anon.clone(),
                MergeInto {
                    session: &mut new.data,
                    user: &mut user_data,
                },
            );
            if user_data != before {
                user_changes = Some((version, user_data));
            }
        }
        let mut issued = self.create(new).await?;
        if let (Some((version, data)), Some(anon)) = (user_changes, &carried) {
            self.write_merged_user_data(&user, version, data, anon)
                .await?;
        }
        if let Some(p) = previous {
            let reason = if carried.is_some() {
                EndReason::Regenerated
            } else {
                EndReason::LoggedOut
            };
            if let Some(gone) = self
                .inner
                .store
                .end(&p.id, self.ending(reason, self.now(), false))
                .await?
            {
                self.emit_for(&gone, EventKind::Ended { reason });
            }
            if carried.is_some() {
                self.emit(
                    Some(issued.session.id),
                    Some(user),
                    EventKind::Regenerated {
                        previous: Some(p.id),
                    },
                );
            }
        }
        issued.session = self.get(&issued.session.id).await?;
        Ok(issued)
    }

    async fn write_merged_user_data(
        &self,
        user: &UserId,
        mut version: u64,
        mut data: Data,
        anon: &Data,
    ) -> Result<()> {
        for _ in 0..MAX_ATTEMPTS {
            let sealed = self.seal_user(user, &data)?;
            match self
                .inner
                .store
                .set_user_data(user, version, sealed)
                .await?
            {
                Ok(_) => {
                    self.emit(None, Some(user.clone()), EventKind::UserDataChanged);
                    return Ok(());
                }
                Err(current) => {
                    // Someone else changed the user's data: merge again on top of it.
                    version = current.as_ref().map_or(0, |c| c.version);
                    data = match &current {
                        Some(c) => self.open_blob(&user_aad(user), &c.data)?,
                        None => Data::new(),
                    };
                    let mut scratch = Data::new();
                    self.inner.merge.merge(
                        anon.clone(),
                        MergeInto {
                            session: &mut scratch,
                            user: &mut data,
                        },
                    );
                }
            }
        }
        Err(Error::Contention)
    }

    fn seal_user(&self, user: &UserId, data: &Data) -> Result<Sealed> {
        let json = serde_json::to_vec(data).map_err(|e| Error::InvalidData(e.to_string()))?;
        if json.len() > self.inner.max_data_bytes {
            return Err(Error::InvalidData(format!(
                "data is {} bytes, the limit is {}",
                json.len(),
                self.inner.max_data_bytes
            )));
        }
        Ok(self.inner.keys.seal(&user_aad(user), &json)?)
    }

    /// Signs out: the session ends (reason `logged_out`). Unknown or already ended
    /// tokens are not an error (returns `None`).
    ///
    /// # Errors
    ///
    /// [`Error::MalformedToken`], store errors.
    pub async fn logout(&self, token: &str) -> Result<Option<SessionId>> {
        let hash = SessionToken::parse(token)?.hash();
        let Lookup::Found(rec) = self.inner.store.load(&hash, None).await? else {
            return Ok(None);
        };
        self.end_session(&rec.id, EndReason::LoggedOut).await?;
        Ok(Some(rec.id))
    }

    /// Ends one session by id with `reason`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], store errors.
    pub async fn end_session(
        &self,
        id: &SessionId,
        reason: EndReason,
    ) -> Result<Arc<SessionRecord>> {
        let gone = self
            .inner
            .store
            .end(id, self.ending(reason, self.now(), false))
            .await?
            .ok_or(Error::NotFound)?;
        self.emit_for(&gone, EventKind::Ended { reason });
        Ok(gone)
    }

    /// Ends a session on behalf of `user` ("manage sessions"): refused with
    /// [`Error::NotFound`] unless the session is theirs.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], store errors.
    pub async fn end_own_session(
        &self,
        user: &UserId,
        id: &SessionId,
        reason: EndReason,
    ) -> Result<Arc<SessionRecord>> {
        let rec = self.get(id).await?;
        if rec.user.as_ref() != Some(user) {
            return Err(Error::NotFound);
        }
        self.end_session(id, reason).await
    }

    /// Ends all of a user's sessions except `except` ("log out everywhere" / "other
    /// devices", disabling a user, an admin's revocation).
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn end_user_sessions(
        &self,
        user: &UserId,
        except: Option<&SessionId>,
        reason: EndReason,
    ) -> Result<Vec<SessionId>> {
        let gone = self
            .inner
            .store
            .end_user(user, except, self.ending(reason, self.now(), false))
            .await?;
        for g in &gone {
            self.emit_for(g, EventKind::Ended { reason });
        }
        Ok(gone.iter().map(|g| g.id).collect())
    }

    /// A user's live sessions, oldest first.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn list(&self, user: &UserId) -> Result<Vec<Arc<SessionRecord>>> {
        Ok(self.inner.store.list_user(user, self.now()).await?)
    }

    /// A user's data (all devices) and its version (0 when none was ever written).
    ///
    /// # Errors
    ///
    /// [`Error::Seal`], store errors.
    pub async fn user_data(&self, user: &UserId) -> Result<(u64, Data)> {
        match self.inner.store.user_data(user).await? {
            Some(d) => Ok((d.version, self.open_blob(&user_aad(user), &d.data)?)),
            None => Ok((0, Data::new())),
        }
    }

    /// Changes a user's data with `f` (compare-and-set with retry, or one attempt
    /// with `expected_version`). Returns the new version and data.
    ///
    /// # Errors
    ///
    /// [`Error::VersionConflict`], [`Error::InvalidData`], [`Error::Contention`], store errors.
    pub async fn update_user_data<F>(
        &self,
        user: &UserId,
        expected_version: Option<u64>,
        mut f: F,
    ) -> Result<(u64, Data)>
    where
        F: FnMut(&mut Data) + Send,
    {
        for _ in 0..MAX_ATTEMPTS {
            let (version, before) = self.user_data(user).await?;
            if expected_version.is_some_and(|v| v != version) {
                return Err(Error::VersionConflict { current: version });
            }
            let mut after = before.clone();
            f(&mut after);
            if after == before {
                return Ok((version, before));
            }
            let sealed = self.seal_user(user, &after)?;
            match self
                .inner
                .store
                .set_user_data(user, version, sealed)
                .await?
            {
                Ok(d) => {
                    self.emit(None, Some(user.clone()), EventKind::UserDataChanged);
                    return Ok((d.version, after));
                }
                Err(cur) if expected_version.is_some() => {
                    return Err(Error::VersionConflict {
                        current: cur.map_or(0, |c| c.version),
                    });
                }
                Err(_) => tokio::task::yield_now().await,
            }
        }
        Err(Error::Contention)
    }

    /// Adds to a session counter unless `limit` would be exceeded (quotas).
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn increment(
        &self,
        id: &SessionId,
        name: &str,
        by: u64,
        limit: Option<u64>,
    ) -> Result<Counter> {
        Ok(self
            .inner
            .store
            .increment_counter(id, name, by, limit)
            .await?)
    }

    /// Charges `by` to quota `kind` of the session `record` (units, or bytes),
    /// in the window the session's role policy sets for it, in one atomic
    /// store step ([`SessionStore::increment_counter`] on the window's counter).
    ///
    /// Without a limit for `kind` in the role's [`crate::Quotas`] the charge is
    /// only counted. A charge that would pass the limit is refused, charges
    /// nothing, and emits [`EventKind::QuotaRefused`].
    ///
    /// # Errors
    ///
    /// [`Error::UnknownSession`] if the session is gone (nothing is
    /// re-created); store errors.
    pub async fn charge(
        &self,
        record: &SessionRecord,
        kind: QuotaKind<'_>,
        by: u64,
    ) -> Result<Charge> {
        let quotas = &self.policy_for(record).quotas;
        let limit = quotas.limit(kind).copied();
        let per = limit.map(|l| l.per).unwrap_or_default();
        let (counter, resets_at) = per.locate(kind.name(), self.now(), record.absolute_expires_at);
        let out = self
            .inner
            .store
            .increment_counter(&record.id, &counter, by, limit.map(|l| l.limit))
            .await?;
        let usage = |used| Usage {
            quota: kind.name().to_owned(),
            used,
            limit: limit.map(|l| l.limit),
            per,
            resets_at,
        };
        match out {
            Counter::Incremented(n) => Ok(Charge::Granted(usage(n))),
            Counter::LimitExceeded(n) => {
                self.emit_for(
                    record,
                    EventKind::QuotaRefused {
                        quota: kind.name().to_owned(),
                    },
                );
                Ok(Charge::Refused(usage(n)))
            }
            Counter::Gone => Err(Error::UnknownSession),
        }
    }

    /// Ends up to `max` expired sessions (keeping reasons and restorable data) and
    /// forgets old reasons. Returns how many sessions ended.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn sweep(&self, max: usize) -> Result<usize> {
        let p = &self.inner.policy;
        let spec = SweepSpec {
            now: self.now(),
            reason_ttl_ms: duration_millis(p.reason_ttl),
            restore_ttl_ms: duration_millis(p.restore_ttl),
        };
        let ended = self.inner.store.sweep(spec, max).await?;
        for e in &ended {
            self.emit_for(&e.record, EventKind::Ended { reason: e.reason });
        }
        self.inner.store.sweep_refresh(spec.now, max).await?;
        Ok(ended.len())
    }

    /// Issues a refresh token for a live, signed-in session: the first of a new
    /// family, which lives for the role's `refresh_absolute_timeout` (and never
    /// beyond the session's absolute expiry). A session may have several
    /// families (one per client).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Ended`], [`Error::InvalidInput`] for an
    /// anonymous session, store errors.
    pub async fn issue_refresh(&self, id: &SessionId) -> Result<IssuedRefresh> {
        for _ in 0..4 {
            let rec = self.session(id).await?;
            let Some(user) = rec.user.clone() else {
                return Err(Error::InvalidInput(
                    "refresh tokens are for signed-in sessions",
                ));
            };
            if rec.step_up_required() {
                return Err(Error::StepUpRequired);
            }
            let now = self.now();
            let lifetime = self.policy_for(&rec).refresh_absolute_timeout;
            let expires_at = now.plus(lifetime).min(rec.absolute_expires_at);
            let token = RefreshToken::generate()?;
            let family = RefreshFamily {
                id: FamilyId::generate()?,
                session_id: rec.id,
                user,
                created_at: now,
                absolute_expires_at: expires_at,
                generation: 0,
                current_hash: token.hash(),
                rotated_at: now,
                previous_hash: None,
                successor: None,
                revoked: None,
            };
            let family_id = family.id;
            match self.inner.store.create_refresh_family(family).await? {
                CreateFamily::Created => {
                    self.emit_for(&rec, EventKind::RefreshIssued { family: family_id });
                    return Ok(IssuedRefresh {
                        token,
                        family_id,
                        expires_at,
                    });
                }
                CreateFamily::Duplicate => continue,
                // Ended or expired since it was read: look again to say why.
                CreateFamily::SessionGone => {
                    self.session(id).await?;
                    return Err(Error::NotFound);
                }
            }
        }
        // Four collisions of 128/256-bit random values do not happen by chance.
        Err(Error::Random)
    }

    /// Uses a refresh token: returns the session and the token to use next time.
    ///
    /// - The current token of its family rotates: a new token is returned and
    ///   the presented one is spent.
    /// - A retry of the token just rotated, within the grace window (default
    ///   10 s, [`ManagerBuilder::with_refresh_grace`]), receives the same
    ///   successor (`retried`), so a lost response or two tabs refreshing at
    ///   once do not sign the user out.
    /// - Any other spent token is reuse: the family is revoked and the session
    ///   ends with reason `refresh_reused` (events `refresh_reused` and `ended`).
    /// - The session must be live; refreshing counts as activity (it touches the
    ///   session), since a client using access tokens never calls [`Self::verify`].
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use sessionary_core::{MemoryStore, NewSession, SessionManager, UserId};
    ///
    /// let manager = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;
    /// let signed_in = manager.create(NewSession::user(UserId::new("alice")?)).await?;
    /// let issued = manager.issue_refresh(&signed_in.session.id).await?;
    /// let first = issued.token.encode();
    /// let next = manager.refresh(&first).await?;
    /// // A retry within the grace window gets the same successor.
    /// let retry = manager.refresh(&first).await?;
    /// assert!(retry.retried);
    /// assert_eq!(retry.token.encode(), next.token.encode());
    /// // Once the session ends, its refresh tokens fail at once.
    /// manager.logout(&signed_in.token.encode()).await?;
    /// let err = manager.refresh(&next.token.encode()).await.unwrap_err();
    /// assert_eq!(err.reason(), Some("session_ended"));
    /// # Ok::<(), sessionary_core::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::MalformedToken`] (no store access), [`Error::RefreshRefused`]
    /// with why, [`Error::Seal`] if a retry's successor does not open, store errors.
    pub async fn refresh(&self, token: &str) -> Result<Refreshed> {
        let presented = RefreshToken::parse(token)?;
        let next = RefreshToken::generate()?;
        let now = self.now();
        let request = RefreshRequest {
            presented: presented.hash(),
            next_hash: next.hash(),
            next_sealed: seal_successor(&presented, &next)?,
            now,
            grace_ms: self.inner.refresh_grace_ms,
            reuse: self.ending(EndReason::RefreshReused, now, false),
        };
        let refused = |r| Err(Error::RefreshRefused(r));
        match self.inner.store.refresh(request).await? {
            RefreshOutcome::Rotated { family, session } => {
                self.emit_for(
                    &session,
                    EventKind::Refreshed {
                        family: family.id,
                        retried: false,
                    },
                );
                Ok(Refreshed {
                    session,
                    token: next,
                    family_id: family.id,
                    expires_at: family.absolute_expires_at,
                    retried: false,
                })
            }
            RefreshOutcome::Retry { family, session } => {
                let sealed = family.successor.as_ref().ok_or(SealError::Corrupt)?;
                let token = open_successor(&presented, sealed, &family.current_hash)?;
                self.emit_for(
                    &session,
                    EventKind::Refreshed {
                        family: family.id,
                        retried: true,
                    },
                );
                Ok(Refreshed {
                    session,
                    token,
                    family_id: family.id,
                    expires_at: family.absolute_expires_at,
                    retried: true,
                })
            }
            RefreshOutcome::Reused { family, ended } => {
                self.emit(
                    Some(family.session_id),
                    Some(family.user.clone()),
                    EventKind::RefreshReused { family: family.id },
                );
                if let Some(gone) = ended {
                    self.emit_for(
                        &gone,
                        EventKind::Ended {
                            reason: EndReason::RefreshReused,
                        },
                    );
                }
                refused(RefreshRefusal::Reused)
            }
            RefreshOutcome::SessionEnded { session, .. } => {
                let reason = match session {
                    Some(rec) => match rec.expiry_reason(now) {
                        Some(reason) => match self.expire(&rec, reason).await {
                            Error::Ended(r) => Some(r),
                            e => return Err(e),
                        },
                        None => None,
                    },
                    None => None,
                };
                refused(RefreshRefusal::SessionEnded(reason))
            }
            RefreshOutcome::Expired(_) => refused(RefreshRefusal::Expired),
            RefreshOutcome::Revoked(f) => refused(RefreshRefusal::revoked(f.revoked)),
            RefreshOutcome::Missing => refused(RefreshRefusal::Unknown),
        }
    }

    /// Revokes the family of a refresh token (the user signs an API client out,
    /// or a client discards its token): no token of it works any more; the
    /// session itself lives on. Any token of the family may be presented.
    /// Unknown tokens are not an error (returns `None`).
    ///
    /// # Errors
    ///
    /// [`Error::MalformedToken`], store errors.
    pub async fn revoke_refresh(&self, token: &str) -> Result<Option<FamilyId>> {
        let hash = RefreshToken::parse(token)?.hash();
        let Some(family) = self
            .inner
            .store
            .revoke_refresh(&hash, FamilyEnd::RevokedByUser)
            .await?
        else {
            return Ok(None);
        };
        self.emit(
            Some(family.session_id),
            Some(family.user.clone()),
            EventKind::RefreshRevoked { family: family.id },
        );
        Ok(Some(family.id))
    }

    /// Revokes every refresh token family of a session ("sign out API clients"
    /// in "manage sessions"); the session lives on. Returns the families revoked.
    /// Ending a session needs no such call: a refresh checks that its session
    /// is live.
    ///
    /// # Errors
    ///
    /// Store errors.
    pub async fn revoke_session_refresh(&self, id: &SessionId) -> Result<Vec<FamilyId>> {
        self.revoke_refresh_families(id, FamilyEnd::RevokedByUser)
            .await
    }

    async fn revoke_refresh_families(
        &self,
        id: &SessionId,
        why: FamilyEnd,
    ) -> Result<Vec<FamilyId>> {
        let revoked = self.inner.store.revoke_refresh_families(id, why).await?;
        for f in &revoked {
            self.emit(
                Some(f.session_id),
                Some(f.user.clone()),
                EventKind::RefreshRevoked { family: f.id },
            );
        }
        Ok(revoked.iter().map(|f| f.id).collect())
    }

    /// Runs [`Self::sweep`] every `every` until the returned handle is aborted or the
    /// manager's last clone is dropped.
    pub fn spawn_sweeper(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let m = SessionManager { inner };
                if let Err(e) = m.sweep(10_000).await {
                    tracing::warn!(error = %e, "session sweep failed");
                }
            }
        })
    }
}
