//! Helpers shared by the integration tests of `sessionary-sql`.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset
#![allow(clippy::unwrap_used)] // test helpers: a panic is a failed check

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sessionary_core::record::CsrfSecret;
use sessionary_core::{Device, Sealed, SessionId, SessionRecord, SessionToken, Timestamp, UserId};
use sessionary_sql::SqlStore;

pub const T0: i64 = 1_700_000_000_000;
pub const MINUTE: i64 = 60_000;

/// A folder under the system temp dir, removed (with the database in it) on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "sessionary-sql-test-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn db(&self) -> PathBuf {
        self.0.join("sessions.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store on a fresh database file, with the folder that holds it.
pub async fn file_store() -> (SqlStore, TempDir) {
    let dir = TempDir::new();
    let store = SqlStore::open_sqlite(dir.db()).await.unwrap();
    (store, dir)
}

/// A store on a fresh database file that it owns, with the write-through cache.
pub async fn cached_store() -> (SqlStore, TempDir) {
    let dir = TempDir::new();
    let options = sessionary_sql::SqliteOptions::new().with_exclusive_cache(true);
    let store = SqlStore::open_sqlite_with(dir.db(), options).await.unwrap();
    (store, dir)
}

/// A store on a fresh database file that it owns, with the write-through cache
/// and touches written behind every `every`.
pub async fn cached_store_flushing_every(every: std::time::Duration) -> (SqlStore, TempDir) {
    let dir = TempDir::new();
    let options = sessionary_sql::SqliteOptions::new()
        .with_exclusive_cache(true)
        .with_touch_flush_interval(every);
    let store = SqlStore::open_sqlite_with(dir.db(), options).await.unwrap();
    (store, dir)
}

pub fn user(name: &str) -> UserId {
    UserId::new(name).unwrap()
}

pub fn sealed(bytes: &[u8]) -> Sealed {
    Sealed::from_bytes(bytes.to_vec())
}

/// A fresh session record created at `now` (30 min idle, 12 h absolute, touch each minute).
pub fn record(user: Option<&str>, now: i64) -> SessionRecord {
    let token = SessionToken::generate().unwrap();
    let mut counters = BTreeMap::new();
    counters.insert("downloads".to_owned(), 1);
    SessionRecord {
        id: SessionId::generate().unwrap(),
        token_hash: token.hash(),
        user: user.map(|u| UserId::new(u).unwrap()),
        roles: user.map_or_else(Vec::new, |_| vec!["user".to_owned(), "admin".to_owned()]),
        aal: if user.is_some() { 2 } else { 0 },
        auth_time: user.map(|_| Timestamp(now)),
        created_at: Timestamp(now),
        last_seen_at: Timestamp(now),
        idle_timeout_ms: 30 * MINUTE,
        touch_interval_ms: MINUTE,
        absolute_expires_at: Timestamp(now + 12 * 60 * MINUTE),
        remember: user.is_some(),
        device: Device::new(
            Some("2001:db8::7".parse().unwrap()),
            Some("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"),
        ),
        version: 1,
        csrf_secret: CsrfSecret([7; 32]),
        counters,
        exempt_from_limit: false,
        data: sealed(b"sealed-session-data"),
    }
}
