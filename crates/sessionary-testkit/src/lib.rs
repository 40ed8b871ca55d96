//! The store conformance suite: one set of cases every [`SessionStore`] must pass.
//!
//! A store crate runs the whole suite with one line in an integration test:
//!
//! ```ignore
//! async fn make() -> std::sync::Arc<dyn sessionary_core::SessionStore> {
//!     std::sync::Arc::new(sessionary_core::MemoryStore::new())
//! }
//! sessionary_testkit::store_conformance!(make);
//! ```
//!
//! Each case gets a fresh store from `make`. The race cases run on a
//! multi-threaded runtime; time is a [`MockClock`], never slept through.

#![deny(missing_docs)]
// A test-support crate: a panic is how a case reports a failure.
#![allow(clippy::unwrap_used)]

mod audit_cases;
pub mod cases;
mod keeping;
pub mod postgres;
pub mod probe;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod redis_server;
pub mod redis_tls;
mod refresh_cases;
mod temp;
pub mod yielding;

pub use keeping::Keeping;
pub use probe::ProbeStore;
pub use temp::TempDir;
pub use yielding::YieldingStore;

use std::sync::Arc;

use sessionary_core::record::CsrfSecret;
use sessionary_core::{
    Device, MockClock, Policy, SessionId, SessionManager, SessionRecord, SessionStore,
    SessionToken, Timestamp, UserId,
};

/// A fresh record for `user` (anonymous if `None`) created at `now`: 30 min idle,
/// 12 h absolute, touch interval 90 s, some opaque data.
pub fn record(user: Option<&str>, now: Timestamp) -> (SessionToken, SessionRecord) {
    let token = SessionToken::generate().expect("randomness");
    let id = SessionId::generate().expect("randomness");
    let rec = SessionRecord {
        id,
        token_hash: token.hash(),
        user: user.map(|u| UserId::new(u).expect("valid user id")),
        roles: if user.is_some() {
            vec!["user".into()]
        } else {
            vec![]
        },
        aal: u8::from(user.is_some()),
        auth_time: user.map(|_| now),
        created_at: now,
        last_seen_at: now,
        idle_timeout_ms: 30 * 60_000,
        touch_interval_ms: 90_000,
        absolute_expires_at: now.add_millis(12 * 3_600_000),
        remember: false,
        device: Device::new(
            Some([127, 0, 0, 1].into()),
            Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
        ),
        version: 1,
        csrf_secret: CsrfSecret([7; 32]),
        counters: Default::default(),
        exempt_from_limit: false,
        data: sessionary_core::Sealed::from_bytes(vec![0xAB; 64]),
    };
    (token, rec)
}

/// A manager over `store` with a [`MockClock`] and the default policy.
pub fn manager(store: Arc<dyn SessionStore>, clock: &MockClock) -> SessionManager {
    manager_with(store, clock, Policy::default())
}

/// A manager over `store` with a [`MockClock`] and `policy`.
pub fn manager_with(
    store: Arc<dyn SessionStore>,
    clock: &MockClock,
    policy: Policy,
) -> SessionManager {
    SessionManager::builder(store)
        .with_clock(Arc::new(clock.clone()))
        .with_policy(policy)
        .build()
        .expect("valid manager")
}

/// The mock clock's start.
pub fn start() -> MockClock {
    MockClock::default()
}

/// Runs every conformance case against stores made by `$make` (an `async fn() ->
/// Arc<dyn SessionStore>`), one `#[tokio::test]` each. The calling crate needs
/// `tokio` with the `macros` and `rt-multi-thread` features.
///
/// For a store on a server that may be absent (PostgreSQL, Redis), the form
/// `store_conformance!(optional $make)` takes an `async fn() ->
/// Option<Arc<dyn SessionStore>>`: a case whose `make` gives `None` returns at
/// once (`make` says why, and fails instead where skipping is not allowed;
/// see [`postgres::fresh_schema`]).
#[macro_export]
macro_rules! store_conformance {
    (optional $make:path) => {
        $crate::store_conformance!(@list $make; optional);
    };
    ($make:path) => {
        $crate::store_conformance!(@list $make; required);
    };
    (@list $make:path; $mode:ident) => {
        $crate::store_conformance!(@cases $make; $mode;
            create_and_load,
            create_never_overwrites,
            load_touch_is_coalesced,
            load_now_is_load,
            explicit_touch,
            update_is_compare_and_set,
            update_keeps_store_owned_fields,
            destroy_beats_in_flight_save,
            rotate_is_atomic,
            rotate_with_stale_version_changes_nothing,
            concurrent_rotations_one_wins,
            end_leaves_reason_and_restorable,
            end_user_except_one,
            list_user_is_live_and_oldest_first,
            limit_evicts_oldest,
            limit_rejects_new,
            limit_ignores_expired_sessions,
            limit_skips_exempt_sessions,
            race_parallel_creates_evict_oldest,
            race_parallel_creates_reject_new,
            race_concurrent_data_updates,
            race_destroy_during_updates,
            counters_increment_with_limit,
            race_counter_limit,
            sweep_removes_only_expired,
            user_data_compare_and_set,
            race_user_data_updates,
            manager_walk,
            refresh_rotates_and_touches,
            refresh_retry_within_grace,
            refresh_reuse_after_grace_revokes,
            refresh_older_token_is_reuse,
            race_concurrent_refreshes_one_rotation,
            refresh_family_absolute_lifetime,
            refresh_needs_live_session,
            refresh_revoke,
            refresh_sweep_forgets_expired_families,
            manager_refresh_walk,
            audit_append_and_query_newest_first,
            audit_query_filters,
            audit_cursor_paging_and_limit,
            audit_sweep_forgets_old_entries,
        );
    };
    (@cases $make:path; required; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store = $make().await;
                $crate::cases::$case(store).await;
            }
        )*
    };
    (@cases $make:path; optional; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(store) = $make().await else {
                    return;
                };
                $crate::cases::$case(store).await;
            }
        )*
    };
}
