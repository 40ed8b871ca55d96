//! Activity tracking: the pages a session viewed, how long it stayed on each,
//! its errors, its start and end.
//!
//! [`Activity`] records three kinds of entries through the [`AuditLog`]'s
//! writer (written behind, never waited for): `page_view` (the path),
//! `page_left` (the path, when the browser says it leaves: a
//! `navigator.sendBeacon` on `pagehide`) and `page_error` (`<status> <path>`).
//! They share the audit log's storage and retention but carry no user, so
//! per-user audit queries (the security log) never list them. Paths are kept
//! without their query string (it may hold personal data), at most
//! [`MAX_PATH`] bytes, and at most [`Activity::PER_SESSION`] views per session
//! are recorded by one node.
//!
//! [`summarize`] turns a session's entries into an [`ActivitySummary`]. The
//! dwell time of a view is, by preference: the time to the `page_left` of the
//! same path after it (the beacon), else the time to the next view (capped
//! at [`MAX_GAP_MS`]: a long gap says the reader went away, not that they
//! read), else unknown (the last page, still open). Every time is the
//! server's clock when the request arrived, never the browser's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use crate::audit::{AuditEntry, AuditLog, AuditQuery, AuditRecord};
use crate::clock::Timestamp;
use crate::store::{SessionStore, StoreResult};
use crate::token::SessionId;

/// Kind of a page view entry.
pub const VIEW: &str = "page_view";
/// Kind of a "left the page" entry (the beacon).
pub const LEFT: &str = "page_left";
/// Kind of an error entry.
pub const ERROR: &str = "page_error";
/// Longest path kept, in bytes (longer ones are cut at a character boundary).
pub const MAX_PATH: usize = 200;
/// The longest gap to the next view counted as time on a page (30 minutes).
pub const MAX_GAP_MS: i64 = 30 * 60 * 1000;
/// Most entries [`read`] looks at for one session.
pub const READ_LIMIT: usize = 2000;

/// The path as kept: no query or fragment, no control characters, at most
/// [`MAX_PATH`] bytes; `None` if it is not an absolute path.
pub fn clean_path(path: &str) -> Option<String> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') || path.chars().any(char::is_control) {
        return None;
    }
    let mut end = path.len().min(MAX_PATH);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    Some(path[..end].to_owned())
}

/// Records page views, leaves and errors (see the [module docs](self)).
#[derive(Debug)]
pub struct Activity {
    log: Arc<AuditLog>,
    views: Mutex<HashMap<SessionId, u32>>,
}

impl Activity {
    /// Most views recorded per session by one node.
    pub const PER_SESSION: u32 = 500;
    /// Sessions whose view counts are remembered; past it the counts restart.
    const TRACKED: usize = 100_000;

    /// Records through `log`. Each call takes its time from the caller: the
    /// manager's clock ([`crate::SessionManager::now`]) when the request arrived.
    pub fn new(log: Arc<AuditLog>) -> Self {
        Self {
            log,
            views: Mutex::new(HashMap::new()),
        }
    }

    /// The audit log entries are written through (its `flush` waits for them).
    pub fn log(&self) -> &Arc<AuditLog> {
        &self.log
    }

    fn entry(&self, session: SessionId, at: Timestamp, kind: &str, detail: String) {
        self.log.record(AuditEntry {
            at,
            kind: kind.to_owned(),
            session_id: Some(session),
            user: None,
            ip: None,
            detail,
        });
    }

    /// A page view of `path`; `false` if not recorded (a bad path, or the
    /// session's views are at [`Self::PER_SESSION`]).
    pub fn view(&self, session: SessionId, path: &str, at: Timestamp) -> bool {
        let Some(path) = clean_path(path) else {
            return false;
        };
        {
            let mut views = self.views.lock();
            if views.len() >= Self::TRACKED && !views.contains_key(&session) {
                views.clear();
            }
            let n = views.entry(session).or_insert(0);
            if *n >= Self::PER_SESSION {
                return false;
            }
            *n += 1;
        }
        self.entry(session, at, VIEW, path);
        true
    }

    /// The browser left `path` (the `pagehide` beacon); `false` for a bad path.
    pub fn left(&self, session: SessionId, path: &str, at: Timestamp) -> bool {
        let Some(path) = clean_path(path) else {
            return false;
        };
        self.entry(session, at, LEFT, path);
        true
    }

    /// An error answered to the session (`status` 400-599).
    pub fn error(&self, session: SessionId, path: &str, status: u16, at: Timestamp) -> bool {
        let Some(path) = clean_path(path) else {
            return false;
        };
        if !(400..600).contains(&status) {
            return false;
        }
        self.entry(session, at, ERROR, format!("{status} {path}"));
        true
    }
}

/// Where a dwell time comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DwellSource {
    /// The `pagehide` beacon.
    Beacon,
    /// The next page view (capped at [`MAX_GAP_MS`]).
    NextView,
    /// Unknown: the last page, still open or left without a beacon.
    Open,
}

/// One page view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PageView {
    /// The path.
    pub path: String,
    /// When (UTC).
    #[serde(serialize_with = "rfc3339")]
    pub at: Timestamp,
    /// Time on the page, in milliseconds, if known.
    pub dwell_ms: Option<i64>,
    /// Where it comes from.
    pub dwell_from: DwellSource,
}

/// One error answered to the session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PageError {
    /// The path.
    pub path: String,
    /// The HTTP status.
    pub status: u16,
    /// When (UTC).
    #[serde(serialize_with = "rfc3339")]
    pub at: Timestamp,
}

/// Time on one path, summed over its views.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PathTime {
    /// The path.
    pub path: String,
    /// Views.
    pub views: u32,
    /// Known time on it, in milliseconds.
    pub dwell_ms: i64,
}

/// A session's activity (see [`summarize`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActivitySummary {
    /// The session.
    pub session_id: SessionId,
    /// When it started, if the log still has it.
    #[serde(serialize_with = "rfc3339_opt")]
    pub started_at: Option<Timestamp>,
    /// When it ended, if it did.
    #[serde(serialize_with = "rfc3339_opt")]
    pub ended_at: Option<Timestamp>,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// From start (or first view) to end (or `now`), in milliseconds.
    pub length_ms: i64,
    /// Page views, oldest first.
    pub views: Vec<PageView>,
    /// Errors, oldest first.
    pub errors: Vec<PageError>,
    /// Time per path, longest first.
    pub time_per_path: Vec<PathTime>,
}

fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339())
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339()),
        None => s.serialize_none(),
    }
}

/// A session's activity from its log entries (any order), as of `now`.
pub fn summarize(session: SessionId, records: &[AuditRecord], now: Timestamp) -> ActivitySummary {
    let mut entries: Vec<&AuditRecord> = records
        .iter()
        .filter(|r| r.entry.session_id == Some(session))
        .collect();
    entries.sort_by_key(|r| (r.entry.at, r.seq));
    let mut started_at = None;
    let mut ended = None;
    let mut views: Vec<PageView> = Vec::new();
    let mut errors = Vec::new();
    for r in &entries {
        let e = &r.entry;
        match e.kind.as_str() {
            "created" => started_at = started_at.or(Some(e.at)),
            "ended" => ended = Some((e.at, e.detail.clone())),
            VIEW => {
                if let Some(last) = views.last_mut() {
                    if last.dwell_from == DwellSource::Open {
                        let gap = e.at.millis_since(last.at);
                        last.dwell_ms = Some(gap.min(MAX_GAP_MS));
                        last.dwell_from = DwellSource::NextView;
                    }
                }
                views.push(PageView {
                    path: e.detail.clone(),
                    at: e.at,
                    dwell_ms: None,
                    dwell_from: DwellSource::Open,
                });
            }
            LEFT => {
                // The latest view of this path not yet closed by a beacon.
                if let Some(v) = views
                    .iter_mut()
                    .rev()
                    .find(|v| v.path == e.detail && v.dwell_from != DwellSource::Beacon)
                {
                    v.dwell_ms = Some(e.at.millis_since(v.at));
                    v.dwell_from = DwellSource::Beacon;
                }
            }
            ERROR => {
                if let Some((status, path)) = e.detail.split_once(' ') {
                    if let Ok(status) = status.parse() {
                        errors.push(PageError {
                            path: path.to_owned(),
                            status,
                            at: e.at,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    let mut per_path: BTreeMap<&str, (u32, i64)> = BTreeMap::new();
    for v in &views {
        let p = per_path.entry(&v.path).or_default();
        p.0 += 1;
        p.1 += v.dwell_ms.unwrap_or(0);
    }
    let mut time_per_path: Vec<PathTime> = per_path
        .into_iter()
        .map(|(path, (views, dwell_ms))| PathTime {
            path: path.to_owned(),
            views,
            dwell_ms,
        })
        .collect();
    time_per_path.sort_by(|a, b| b.dwell_ms.cmp(&a.dwell_ms).then(a.path.cmp(&b.path)));
    let start = started_at.or_else(|| views.first().map(|v| v.at));
    let end = ended.as_ref().map_or(now, |(at, _)| *at);
    ActivitySummary {
        session_id: session,
        started_at,
        ended_at: ended.as_ref().map(|(at, _)| *at),
        end_reason: ended.map(|(_, why)| why),
        length_ms: start.map_or(0, |s| end.millis_since(s)),
        views,
        errors,
        time_per_path,
    }
}

/// Reads a session's entries from `store` (the newest [`READ_LIMIT`]) and
/// summarizes them as of `now`.
///
/// # Errors
///
/// Store errors.
pub async fn read(
    store: &dyn SessionStore,
    session: SessionId,
    now: Timestamp,
) -> StoreResult<ActivitySummary> {
    let query = AuditQuery {
        session_id: Some(session),
        limit: READ_LIMIT,
        ..AuditQuery::default()
    };
    let records = store.audit(&query).await?;
    Ok(summarize(session, &records, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, at: i64, kind: &str, detail: &str, sid: SessionId) -> AuditRecord {
        AuditRecord {
            seq,
            entry: AuditEntry {
                at: Timestamp(at),
                kind: kind.to_owned(),
                session_id: Some(sid),
                user: None,
                ip: None,
                detail: detail.to_owned(),
            },
        }
    }

    #[test]
    fn dwell_from_beacons_then_next_views() {
        let s = SessionId([1; 16]);
        let other = SessionId([2; 16]);
        let log = vec![
            rec(1, 1_000, "created", "authenticated", s),
            rec(2, 1_000, VIEW, "/", s),
            rec(3, 4_000, LEFT, "/", s),      // 3 s by the beacon
            rec(4, 5_000, VIEW, "/cart", s),  // no beacon: 10 s to the next view
            rec(5, 15_000, VIEW, "/", s),     // then 2.5 s by the beacon
            rec(6, 16_000, VIEW, "/", other), // another session: ignored
            rec(7, 17_500, LEFT, "/", s),
            rec(8, 18_000, ERROR, "404 /nope", s),
            rec(9, 20_000, VIEW, "/late", s), // 40 min gap to the next: capped
            rec(10, 20_000 + 40 * 60_000, VIEW, "/end", s),
        ];
        let sum = summarize(s, &log, Timestamp(3_000_000));
        let dwell: Vec<_> = sum
            .views
            .iter()
            .map(|v| (v.dwell_ms, v.dwell_from))
            .collect();
        assert_eq!(
            dwell,
            [
                (Some(3_000), DwellSource::Beacon),
                (Some(10_000), DwellSource::NextView),
                (Some(2_500), DwellSource::Beacon),
                (Some(MAX_GAP_MS), DwellSource::NextView),
                (None, DwellSource::Open),
            ]
        );
        assert_eq!(sum.started_at, Some(Timestamp(1_000)));
        assert_eq!(sum.length_ms, 3_000_000 - 1_000);
        assert_eq!(
            sum.errors,
            [PageError {
                path: "/nope".into(),
                status: 404,
                at: Timestamp(18_000)
            }]
        );
        assert_eq!(sum.time_per_path[0].path, "/late");
        let home = sum.time_per_path.iter().find(|p| p.path == "/").unwrap();
        assert_eq!((home.views, home.dwell_ms), (2, 5_500));
    }

    #[test]
    fn an_ended_session_ends_its_length() {
        let s = SessionId([1; 16]);
        let log = vec![
            rec(1, 1_000, "created", "anonymous", s),
            rec(2, 61_000, "ended", "expired_idle", s),
        ];
        let sum = summarize(s, &log, Timestamp(999_999));
        assert_eq!(sum.length_ms, 60_000);
        assert_eq!(sum.end_reason.as_deref(), Some("expired_idle"));
    }

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(clean_path("/a?token=x#y").as_deref(), Some("/a"));
        assert_eq!(clean_path("relative"), None);
        assert_eq!(clean_path("/a\nb"), None);
        let long = format!("/{}", "é".repeat(200));
        let kept = clean_path(&long).unwrap();
        assert!(kept.len() <= MAX_PATH && long.starts_with(&kept));
    }
}
