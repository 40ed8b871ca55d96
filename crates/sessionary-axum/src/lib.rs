//! Sessions for axum: a tower layer, extractors and rejections on top of
//! [`sessionary_core::SessionManager`].
//!
//! [`SessionLayer`] reads the session cookie, verifies it with one store read,
//! and hands the request a [`Session`]. Handlers read and write session data,
//! sign users in and out, and guard routes with [`CurrentUser`],
//! [`RequireRole`] and [`RequireAal`]. Failures are [`SessionRejection`]s,
//! answered as RFC 9457 `application/problem+json` (or, for an HTML request
//! whose session expired, a `303` to the expired page).
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, routing::{get, post}};
//! use sessionary_axum::{CurrentUser, Session, SessionConfig, SessionLayer, SessionRejection};
//! use sessionary_core::{MemoryStore, NewSession, SessionManager, UserId};
//!
//! async fn visits(session: Session) -> Result<String, SessionRejection> {
//!     // Reading creates nothing; the first write creates an anonymous session.
//!     let n: u64 = session.get("visits")?.unwrap_or(0) + 1;
//!     session.insert("visits", n).await?;
//!     Ok(n.to_string())
//! }
//!
//! async fn login(session: Session) -> Result<&'static str, SessionRejection> {
//!     // A new token; the anonymous session's data is carried over.
//!     let user = UserId::new("alice").map_err(SessionRejection::from)?;
//!     session.login(NewSession::user(user).with_remember(true)).await?;
//!     Ok("signed in")
//! }
//!
//! async fn me(user: CurrentUser) -> String {
//!     user.user.to_string()
//! }
//!
//! let manager = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;
//! let app: Router = Router::new()
//!     .route("/visits", get(visits))
//!     .route("/login", post(login))
//!     .route("/me", get(me))
//!     .layer(SessionLayer::new(manager, SessionConfig::new()));
//! # Ok::<(), sessionary_core::Error>(())
//! ```
//!
//! # Features
//!
//! This crate has no optional features.
//!
//! | Module | What |
//! |---|---|
//! | [`config`] | [`SessionConfig`]: cookie name, `SameSite`, expired page, [`SessionConfig::dangerous`] |
//! | [`layer`] | [`SessionLayer`], [`SessionService`] |
//! | [`extract`] | [`Session`], [`CurrentUser`], [`RequireRole`], [`RequireAal`] |
//! | [`rejection`] | [`SessionRejection`] |
//! | [`csrf`] | [`csrf::CsrfLayer`]: session-bound CSRF tokens and origin checks |
//! | [`quota`] | [`QuotaLayer`]: units per route, bytes in and out per session, limits per role, `429` saying which limit and when it resets |
//! | [`routes`] | [`session_routes`]: `/session/status` (never extends), `/session/extend`, SSE `/session/events` |
//!
//! # Security model
//!
//! - The cookie is `__Host-session; Path=/; Secure; HttpOnly; SameSite=Lax`, with
//!   no `Domain`. `SameSite=Strict` is a per-layer setting (one layer per route
//!   group). Dropping `Secure` (and so the `__Host-` prefix) takes
//!   `SessionConfig::new().dangerous().allow_insecure_http()`, for plain-HTTP
//!   local development only.
//! - `Set-Cookie` is sent only when the token changes (first write, sign-in,
//!   regeneration) or the session ends (logout); such responses carry
//!   `Cache-Control: no-store`. Logout also sends `Clear-Site-Data: "cookies"` and
//!   a removal cookie with the same name and `Path`.
//! - Timeouts are enforced server-side by the manager; the cookie's lifetime is
//!   only a hint (a browser-session cookie, or for remember-me sessions one that
//!   lasts until the absolute expiry).
//! - A cookie value that is not shaped like a token is ignored before any store
//!   access. Unknown tokens never create sessions.
//! - Sign-in always issues a new token; the old one reports `regenerated`.
//! - The expired redirect's `return_to` is always a local path (`/...`), never an
//!   absolute or protocol-relative URL; the expired page must still check it
//!   before redirecting there.
//! - Every response of a live session carries `Sessionary-Expires` (RFC 3339).

#![deny(missing_docs)]

mod bearer;
pub mod config;
pub mod csrf;
mod device;
pub mod extract;
pub mod layer;
pub mod quota;
pub mod rejection;
pub mod routes;

pub use bearer::{Bearer, BearerRejection, Caller, CallerRejection};
pub use config::{
    ConfigError, DangerousConfig, SameSite, SessionConfig, accepts_html, is_local_path,
};
pub use device::{ClientDevice, TrustedProxies};
pub use extract::{Admin, CurrentUser, RequireAal, RequireRole, Role, Session};
pub use layer::{EXPIRES_HEADER, ResponseFuture, SessionLayer, SessionService};
pub use quota::{
    ChargedQuotas, QuotaBodyError, QuotaExceeded, QuotaLayer, QuotaRejection, QuotaService,
};
pub use rejection::{PROBLEM_JSON, SessionRejection};
pub use routes::session_routes;
