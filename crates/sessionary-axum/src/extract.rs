//! Extractors: the [`Session`] handle, the signed-in [`CurrentUser`], and the
//! guards [`RequireRole`] and [`RequireAal`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use parking_lot::{Mutex, MutexGuard};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sessionary_core::record::CsrfSecret;
use sessionary_core::{
    Data, EndReason, Error, Issued, NewSession, Privilege, SessionManager, SessionRecord,
    SessionToken, Timestamp, UserId,
};

use crate::config::SessionConfig;
use crate::layer::{CookieChange, LayerShared};
use crate::rejection::SessionRejection;

/// The request's session, put in by [`crate::SessionLayer`].
///
/// A visitor without a cookie has no session, and gets none for only reading:
/// the first write ([`Session::insert`], [`Session::update`]) creates an
/// anonymous one and sets the cookie. Data is decrypted only when asked for
/// ([`Session::data`], [`Session::get`]).
///
/// Clones share the same state; the layer reads it after the handler to decide
/// on `Set-Cookie`.
///
/// # Examples
///
/// ```
/// use sessionary_axum::{Session, SessionRejection};
///
/// async fn add_to_cart(session: Session) -> Result<String, SessionRejection> {
///     let n: u64 = session.get("items")?.unwrap_or(0) + 1;
///     session.insert("items", n).await?;
///     Ok(format!("{n} items"))
/// }
/// ```
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

struct Shared {
    layer: Arc<LayerShared>,
    state: Mutex<State>,
    /// Serializes this request's writes, so two concurrent first writes create
    /// one session, not two.
    writes: tokio::sync::Mutex<()>,
}

/// The per-request session state.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The live session's token (presented or just issued).
    pub(crate) token: Option<SessionToken>,
    /// The live session.
    pub(crate) record: Option<Arc<SessionRecord>>,
    /// Why the presented cookie's session is gone.
    pub(crate) ended: Option<EndReason>,
    /// The store failed while verifying the cookie.
    pub(crate) store_failed: bool,
    /// What the response must do to the cookie.
    pub(crate) change: CookieChange,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Session")
            .field("id", &state.record.as_ref().map(|r| r.id))
            .field("user", &state.record.as_ref().and_then(|r| r.user.clone()))
            .field("ended", &state.ended)
            .field("change", &state.change)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(layer: Arc<LayerShared>) -> Self {
        Self {
            shared: Arc::new(Shared {
                layer,
                state: Mutex::new(State::default()),
                writes: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Records what verifying the presented cookie gave.
    pub(crate) fn presented(
        &self,
        token: SessionToken,
        verified: Result<Arc<SessionRecord>, Error>,
    ) {
        let mut state = self.lock();
        match verified {
            Ok(record) => {
                state.token = Some(token);
                state.record = Some(record);
            }
            Err(Error::Ended(reason)) => state.ended = Some(reason),
            Err(Error::UnknownSession | Error::MalformedToken(_)) => {}
            Err(Error::Store(e)) => {
                tracing::warn!(error = %e, "session store failed while verifying a cookie");
                state.store_failed = true;
            }
            Err(e) => tracing::warn!(error = %e, "session cookie refused"),
        }
    }

    /// The live session's CSRF secret (for `CsrfLayer`).
    pub(crate) fn csrf_secret(&self) -> Option<CsrfSecret> {
        self.lock().record.as_ref().map(|r| r.csrf_secret.clone())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock()
    }

    pub(crate) fn config(&self) -> &SessionConfig {
        &self.shared.layer.config
    }

    /// The session manager behind the layer.
    pub fn manager(&self) -> &SessionManager {
        &self.shared.layer.manager
    }

    /// The live session's record, if there is one.
    pub fn record(&self) -> Option<Arc<SessionRecord>> {
        self.lock().record.clone()
    }

    /// The signed-in user, if any.
    pub fn user(&self) -> Option<UserId> {
        self.lock().record.as_ref().and_then(|r| r.user.clone())
    }

    /// When the live session ends if nothing else happens.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.lock().record.as_ref().map(|r| r.expires_at())
    }

    /// Why the session of the presented cookie is gone (`expired_idle`,
    /// `logged_out`, `regenerated`, ...), if it was refused for a known reason.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.lock().ended
    }

    /// The session's data, decrypted (empty without a session).
    ///
    /// # Errors
    ///
    /// [`SessionRejection::Operation`] if the data does not open with the key ring.
    pub fn data(&self) -> Result<Data, SessionRejection> {
        match self.record() {
            Some(r) => Ok(self.shared.layer.manager.data(&r)?),
            None => Ok(Data::new()),
        }
    }

    /// One value of the session's data, deserialized.
    ///
    /// # Errors
    ///
    /// As [`Session::data`]; [`SessionRejection::Operation`] with
    /// [`Error::InvalidData`] if the value has another shape than `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionRejection> {
        match self.data()?.remove(key) {
            Some(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| Error::InvalidData(e.to_string()).into()),
            None => Ok(None),
        }
    }

    /// Sets one value, creating an anonymous session (and its cookie) if there is none.
    ///
    /// # Errors
    ///
    /// As [`Session::update`]; [`SessionRejection::Operation`] if `value` does not
    /// serialize.
    pub async fn insert(
        &self,
        key: impl Into<String>,
        value: impl Serialize,
    ) -> Result<(), SessionRejection> {
        let key = key.into();
        let value = serde_json::to_value(value).map_err(|e| Error::InvalidData(e.to_string()))?;
        self.update(move |d| {
            d.insert(key.clone(), value.clone());
        })
        .await
    }

    /// Removes one value (creates nothing).
    ///
    /// # Errors
    ///
    /// As [`Session::update`].
    pub async fn remove(&self, key: &str) -> Result<(), SessionRejection> {
        if self.record().is_none() {
            return Ok(());
        }
        self.update(|d| {
            d.remove(key);
        })
        .await
    }

    /// Changes the data with `f` (which may run more than once on concurrent
    /// changes; none are lost). Without a session, one is created if `f` leaves
    /// something in the empty data.
    ///
    /// # Errors
    ///
    /// [`SessionRejection::SessionExpired`] if the session ended meanwhile,
    /// [`SessionRejection::StoreUnavailable`], [`SessionRejection::Operation`]
    /// (data too large, contention, ...).
    pub async fn update<F>(&self, mut f: F) -> Result<(), SessionRejection>
    where
        F: FnMut(&mut Data) + Send,
    {
        let _writing = self.shared.writes.lock().await;
        let (id, store_failed) = {
            let state = self.lock();
            (state.record.as_ref().map(|r| r.id), state.store_failed)
        };
        if store_failed {
            // The cookie may name a live session we could not read: never replace it.
            return Err(SessionRejection::StoreUnavailable);
        }
        match id {
            Some(id) => {
                let record = self.shared.layer.manager.update_data(&id, None, f).await?;
                self.lock().record = Some(record);
            }
            None => {
                let mut data = Data::new();
                f(&mut data);
                if data.is_empty() {
                    return Ok(());
                }
                let issued = self
                    .shared
                    .layer
                    .manager
                    .create(NewSession::anonymous().with_data(data))
                    .await?;
                self.issued(issued);
            }
        }
        Ok(())
    }

    /// The session, created (anonymous, empty) if there is none yet: for a page
    /// that must render a CSRF token before the visitor has stored anything.
    ///
    /// # Errors
    ///
    /// [`SessionRejection::StoreUnavailable`], [`SessionRejection::Operation`].
    pub async fn ensure(&self) -> Result<Arc<SessionRecord>, SessionRejection> {
        let _writing = self.shared.writes.lock().await;
        let (record, store_failed) = {
            let state = self.lock();
            (state.record.clone(), state.store_failed)
        };
        if store_failed {
            // The cookie may name a live session we could not read: never replace it.
            return Err(SessionRejection::StoreUnavailable);
        }
        if let Some(record) = record {
            return Ok(record);
        }
        let issued = self
            .shared
            .layer
            .manager
            .create(NewSession::anonymous())
            .await?;
        let record = Arc::clone(&issued.session);
        self.issued(issued);
        Ok(record)
    }

    /// A CSRF token for this session, masked afresh (render one per form or page),
    /// creating an anonymous session first if there is none (see [`Self::ensure`]).
    ///
    /// # Errors
    ///
    /// As [`Self::ensure`]; [`SessionRejection::Operation`] if no randomness is available.
    pub async fn csrf_token(&self) -> Result<String, SessionRejection> {
        let record = self.ensure().await?;
        crate::csrf::token_for(&record.csrf_secret)
            .map_err(|_| SessionRejection::Operation(Error::Random))
    }

    /// Signs a user in: a new session with a new token (the presented session, if
    /// any, ends with reason `regenerated` and its data is carried over by the
    /// manager's merge hook). With `new.remember` (and a policy that allows it)
    /// the cookie is persistent until the session's absolute expiry; otherwise
    /// it is a browser-session cookie.
    ///
    /// # Errors
    ///
    /// [`SessionRejection::Operation`] ([`Error::LimitReached`],
    /// [`Error::InvalidInput`], ...), [`SessionRejection::StoreUnavailable`].
    pub async fn login(&self, new: NewSession) -> Result<Arc<SessionRecord>, SessionRejection> {
        let _writing = self.shared.writes.lock().await;
        let token = self.lock().token.as_ref().map(SessionToken::encode);
        let issued = self
            .shared
            .layer
            .manager
            .login(token.as_deref(), new)
            .await?;
        let record = Arc::clone(&issued.session);
        self.issued(issued);
        Ok(record)
    }

    /// Issues a new token for the live session after a privilege change,
    /// step-up or re-authentication; the old token is dead at once.
    ///
    /// # Errors
    ///
    /// [`SessionRejection::NotSignedIn`] without a session; as
    /// [`SessionManager::regenerate`].
    pub async fn regenerate(
        &self,
        change: Privilege,
    ) -> Result<Arc<SessionRecord>, SessionRejection> {
        let _writing = self.shared.writes.lock().await;
        let id = self
            .lock()
            .record
            .as_ref()
            .map(|r| r.id)
            .ok_or(SessionRejection::NotSignedIn)?;
        let issued = self.shared.layer.manager.regenerate(&id, change).await?;
        let record = Arc::clone(&issued.session);
        self.issued(issued);
        Ok(record)
    }

    /// Records activity now, whatever the touch interval ("stay signed in"); the
    /// response's `Sessionary-Expires` shows the new end. The token and cookie
    /// stay as they are.
    ///
    /// # Errors
    ///
    /// [`SessionRejection::NotSignedIn`] without a session,
    /// [`SessionRejection::SessionExpired`] if it ended meanwhile, store errors.
    pub async fn extend(&self) -> Result<Arc<SessionRecord>, SessionRejection> {
        let token = self
            .lock()
            .token
            .as_ref()
            .map(SessionToken::encode)
            .ok_or(SessionRejection::NotSignedIn)?;
        let record = self.shared.layer.manager.extend(&token).await?;
        self.lock().record = Some(Arc::clone(&record));
        Ok(record)
    }

    /// Signs out: the session ends server-side (reason `logged_out`); the
    /// response removes the cookie and sends `Clear-Site-Data: "cookies"`, with or
    /// without a session.
    ///
    /// # Errors
    ///
    /// [`SessionRejection::StoreUnavailable`] or [`SessionRejection::Operation`]
    /// if the store fails (the cookie is then left as it was).
    pub async fn logout(&self) -> Result<(), SessionRejection> {
        let _writing = self.shared.writes.lock().await;
        let token = self.lock().token.as_ref().map(SessionToken::encode);
        if let Some(token) = token {
            self.shared.layer.manager.logout(&token).await?;
        }
        let mut state = self.lock();
        state.token = None;
        state.record = None;
        state.change = CookieChange::Remove;
        Ok(())
    }

    fn issued(&self, issued: Issued) {
        let mut state = self.lock();
        state.token = Some(issued.token);
        state.record = Some(issued.session);
        state.ended = None;
        state.change = CookieChange::Set;
    }

    /// The signed-in user, or why there is none.
    fn current_user(&self) -> Result<CurrentUser, SessionRejection> {
        let state = self.lock();
        if state.store_failed {
            return Err(SessionRejection::StoreUnavailable);
        }
        match &state.record {
            Some(record) => match &record.user {
                Some(user) => Ok(CurrentUser {
                    user: user.clone(),
                    record: Arc::clone(record),
                    session: self.clone(),
                }),
                None => Err(SessionRejection::NotSignedIn),
            },
            None => Err(match state.ended {
                Some(reason) => SessionRejection::SessionExpired { reason },
                None => SessionRejection::NotSignedIn,
            }),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(SessionRejection::LayerMissing)
    }
}

/// The signed-in user; refuses anonymous visitors.
///
/// Rejects with [`SessionRejection::NotSignedIn`] (no session, anonymous, unknown
/// token), [`SessionRejection::SessionExpired`] with the reason when the presented
/// session ended (HTML requests are redirected by the layer), or
/// [`SessionRejection::StoreUnavailable`].
///
/// # Examples
///
/// ```
/// use sessionary_axum::CurrentUser;
///
/// async fn me(user: CurrentUser) -> String {
///     format!("hello {}", user.user)
/// }
/// ```
#[derive(Clone, Debug)]
pub struct CurrentUser {
    /// Who is signed in.
    pub user: UserId,
    /// The session record as verified for this request.
    pub record: Arc<SessionRecord>,
    /// The session handle (for data, regeneration, logout).
    pub session: Session,
}

impl CurrentUser {
    /// Whether the session carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.record.roles.iter().any(|r| r == role)
    }

    /// The session's authentication assurance level.
    pub fn aal(&self) -> u8 {
        self.record.aal
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        <Session as FromRequestParts<S>>::from_request_parts(parts, state)
            .await?
            .current_user()
    }
}

/// `Option<CurrentUser>`: `None` for visitors who are not signed in (or whose
/// session ended); still refuses when the store is unavailable or the layer is
/// missing.
impl<S: Send + Sync> OptionalFromRequestParts<S> for CurrentUser {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match <Self as FromRequestParts<S>>::from_request_parts(parts, state).await {
            Ok(user) => Ok(Some(user)),
            Err(SessionRejection::NotSignedIn | SessionRejection::SessionExpired { .. }) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// A role name known at compile time, for [`RequireRole`].
///
/// # Examples
///
/// ```
/// use sessionary_axum::Role;
///
/// #[derive(Debug)]
/// struct Editor;
/// impl Role for Editor {
///     const NAME: &'static str = "editor";
/// }
/// ```
pub trait Role: Send + Sync + 'static {
    /// The role as stored on sessions.
    const NAME: &'static str;
}

/// The `admin` role.
#[derive(Clone, Copy, Debug)]
pub struct Admin;

impl Role for Admin {
    const NAME: &'static str = "admin";
}

/// A signed-in user with role `R`; otherwise [`SessionRejection::MissingRole`]
/// (403), or the rejections of [`CurrentUser`].
///
/// # Examples
///
/// ```
/// use sessionary_axum::{Admin, RequireRole};
///
/// async fn admin_panel(RequireRole(admin, ..): RequireRole<Admin>) -> String {
///     format!("welcome, {}", admin.user)
/// }
/// ```
pub struct RequireRole<R: Role>(pub CurrentUser, pub PhantomData<R>);

impl<R: Role> fmt::Debug for RequireRole<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequireRole")
            .field(&R::NAME)
            .field(&self.0)
            .finish()
    }
}

impl<S: Send + Sync, R: Role> FromRequestParts<S> for RequireRole<R> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = <CurrentUser as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        if user.has_role(R::NAME) {
            Ok(Self(user, PhantomData))
        } else {
            Err(SessionRejection::MissingRole { role: R::NAME })
        }
    }
}

/// A signed-in user whose session has at least assurance level `N`; otherwise
/// [`SessionRejection::InsufficientAal`] (403, `step-up-required`), or the
/// rejections of [`CurrentUser`].
///
/// # Examples
///
/// ```
/// use sessionary_axum::RequireAal;
///
/// async fn change_email(RequireAal(user): RequireAal<2>) -> String {
///     format!("{} may change the email", user.user)
/// }
/// ```
#[derive(Clone, Debug)]
pub struct RequireAal<const N: u8>(pub CurrentUser);

impl<S: Send + Sync, const N: u8> FromRequestParts<S> for RequireAal<N> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = <CurrentUser as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        if user.aal() >= N {
            Ok(Self(user))
        } else {
            Err(SessionRejection::InsufficientAal {
                required: N,
                current: user.aal(),
            })
        }
    }
}
