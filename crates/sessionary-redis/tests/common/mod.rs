//! Shared by the Redis integration tests: the server URL and skipping.

use std::io::Write as _;

/// `SESSIONARY_TEST_REDIS_URL`, else the local default.
// Each test binary includes this module; the reconnect test runs its own server.
#[allow(dead_code)]
pub(crate) fn url() -> String {
    std::env::var("SESSIONARY_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

/// Reports that a test cannot run here: a failure with `CI=true` (the suite
/// must not pass without its Redis tests), else a note on stderr.
pub(crate) fn skip(test: &str, why: &str) {
    let why = format!(
        "Redis test {test}: {why} (start redis-server, as scripts/test does, or set SESSIONARY_TEST_REDIS_URL)"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}; CI=true, so this is a failure");
    }
    // Straight to stderr, past the harness's capture, so the skip shows in a passing run.
    let _ = writeln!(std::io::stderr(), "SKIPPED {why}");
}

#[allow(unused_imports)] // Only the tests that run their own server use them.
pub(crate) use sessionary_testkit::redis_server::{RedisServer as Server, free_port};
