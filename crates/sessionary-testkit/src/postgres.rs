//! A PostgreSQL database for tests: a fresh schema per call, on the server
//! named by `SESSIONARY_TEST_POSTGRES_URL` (default [`DEFAULT_URL`]).
//!
//! When the server cannot be reached, [`fresh_schema`] says so on stderr and
//! returns `None`, so the test skips, unless the environment variable `CI` is
//! `true`: then it panics, as a test suite that silently skipped its database
//! cases would hide a broken store.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Connection as _, PgConnection, Row as _};

/// The server the tests use when `SESSIONARY_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Test schemas are named `sessionary_test_<unix seconds>_<pid>_<n>`.
const PREFIX: &str = "sessionary_test_";

/// Schemas of earlier runs older than this are dropped by the first call of a
/// run; a run's own schemas are younger (each case takes seconds).
const KEEP: Duration = Duration::from_secs(10 * 60);

/// How long to wait for the server before deciding it is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The server URL for tests.
pub fn server_url() -> String {
    std::env::var("SESSIONARY_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// Creates an empty schema and returns the URL of the test server with that
/// schema as its `search_path` (an `options=-c search_path=...` parameter),
/// so a store connected with it sees only its own tables. `None` (after a
/// `SKIPPED` line on stderr) if the server is unreachable and `CI` is not
/// `true`.
///
/// # Panics
///
/// If the server is unreachable and `CI=true`, or if it is reachable but the
/// schema cannot be created.
pub async fn fresh_schema(test: &str) -> Option<String> {
    let url = server_url();
    let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(&url)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return unavailable(test, &e.to_string()),
        Err(_) => return unavailable(test, "no answer in 5 s"),
    };
    static CLEANED: AtomicBool = AtomicBool::new(false);
    if !CLEANED.swap(true, Ordering::Relaxed) {
        drop_old_schemas(&mut conn).await;
    }
    static N: AtomicU64 = AtomicU64::new(0);
    let schema = format!(
        "{PREFIX}{}_{}_{}",
        unix_secs(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create schema {schema} for {test}: {e}"));
    let _ = conn.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}options=-c%20search_path%3D{schema}"))
}

fn unavailable(test: &str, error: &str) -> Option<String> {
    // The URL may hold a password: name the variable, not the value.
    let why = format!(
        "PostgreSQL test {test}: the server of SESSIONARY_TEST_POSTGRES_URL (default \
         {DEFAULT_URL}) is unreachable: {error}"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}; CI=true, so this is a failure");
    }
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        // Straight to stderr, past the harness's capture, so the skip shows.
        let _ = writeln!(std::io::stderr(), "SKIPPED {why}");
    }
    None
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Best effort: drops test schemas older than [`KEEP`] (earlier runs).
async fn drop_old_schemas(conn: &mut PgConnection) {
    let Ok(rows) = sqlx::query("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)")
        .bind(PREFIX)
        .fetch_all(&mut *conn)
        .await
    else {
        return;
    };
    let cutoff = unix_secs().saturating_sub(KEEP.as_secs());
    for row in rows {
        let Ok(name) = row.try_get::<String, _>(0) else {
            continue;
        };
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        // Only names this module made (digits, underscores), so the name
        // needs no quoting.
        let ours = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ours && created.is_some_and(|c| c < cutoff) {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .execute(&mut *conn)
                .await;
        }
    }
}
