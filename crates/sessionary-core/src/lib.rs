//! The session engine of Sessionary.
//!
//! `sessionary-core` holds the session record, every lifecycle rule
//! ([`SessionManager`]), the storage contract ([`SessionStore`]) with an
//! in-process [`MemoryStore`], token and id types, sealing of data at rest
//! ([`KeyRing`]), events, and an injectable [`Clock`]. It knows nothing of HTTP
//! or databases: `sessionary-sql` adds SQL stores and `sessionary-server` the
//! service.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use sessionary_core::{MemoryStore, NewSession, SessionManager, UserId};
//!
//! let manager = SessionManager::builder(Arc::new(MemoryStore::new())).build()?;
//! // Sign in: the token goes to the client; the store keeps only its SHA-256.
//! let issued = manager.create(NewSession::user(UserId::new("alice")?).with_roles(["user"])).await?;
//! let token = issued.token.encode();
//! // Each request: one store read; a touch at most once per touch interval.
//! let session = manager.verify(&token).await?;
//! manager.update_data(&session.id, None, |d| { d.insert("theme".into(), "dark".into()); }).await?;
//! manager.logout(&token).await?;
//! // The next request learns why.
//! assert_eq!(manager.verify(&token).await.unwrap_err().reason(), Some("logged_out"));
//! # Ok::<(), sessionary_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Security model
//!
//! - Tokens are 256 bits from the OS CSPRNG; stores see only SHA-256 hashes, so a
//!   dump of the store gives no usable token. Malformed tokens are refused before
//!   any store access; unknown tokens never create anything.
//! - Idle and absolute timeouts are enforced here, server-side, from the record;
//!   a cookie's expiry is never what ends a session.
//! - Sign-in and privilege changes issue a new token; the old one is dead at once
//!   and reports `regenerated`.
//! - Session and user data are sealed with AES-256-GCM, bound to their owner.
//! - Refresh tokens ([`SessionManager::refresh`]) are stored hashed, rotate on
//!   every use within families that have an absolute lifetime, and work only
//!   while their session lives; presenting a spent one revokes the family and
//!   ends the session (`refresh_reused`).
//! - Security events (sign-in, token changes, step-up, binding mismatches,
//!   ends, refresh token reuse, rate-limited failed verifications) can be kept
//!   in the store by the [`AuditLog`] sink, with ids and never a token.
//! - No lost updates: data changes are compare-and-set with retry; a session that
//!   ended is never written again.
//!
//! # Features
//!
//! This crate has no optional features; stores for SQL databases live in
//! `sessionary-sql`.

#![deny(missing_docs)]

pub mod activity;
pub mod audit;
pub mod binding;
pub mod clock;
pub mod error;
pub mod event;
pub mod fanout;
pub mod manager;
pub mod memory;
pub mod near_cache;
pub mod policy;
pub mod quota;
pub mod record;
pub mod refresh;
pub mod seal;
pub mod store;
pub mod token;

pub use audit::{AuditEntry, AuditLog, AuditQuery, AuditRecord};
pub use binding::{Binding, BindingAction, BindingChange, IpMatch, Mismatch, UaMatch};
pub use clock::{Clock, MockClock, SystemClock, Timestamp};
pub use error::{Error, Result};
pub use event::{Event, EventKind, EventSink, TracingSink};
pub use fanout::{Fanout, LocalFanout, NodeId, Relay, RemoteEvent, RemoteKind};
pub use manager::{
    CarryOver, Data, Issued, IssuedRefresh, ManagerBuilder, MergeHook, MergeInto, NewSession,
    Privilege, Refreshed, SessionManager, VerifyLater, merge_patch,
};
pub use memory::MemoryStore;
pub use policy::{LimitMode, Policy, RolePolicy};
pub use quota::{Charge, QuotaKind, QuotaLimit, Quotas, Usage, Window};
pub use record::{Device, EndReason, SessionRecord, Tombstone};
pub use refresh::{FamilyId, RefreshRefusal, RefreshToken};
pub use seal::{KeyRing, SealError, Sealed};
pub use store::{SessionStore, StoreError};
pub use token::{SessionId, SessionToken, TokenError, TokenHash, UserId};
