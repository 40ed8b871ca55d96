//! Quotas: per-session counters with limits per role (issue 7).
//!
//! A role's [`Quotas`] (in [`crate::RolePolicy::quotas`]) names limits on
//! *units* (any name, e.g. `downloads`), on the bytes a session sends
//! (`bytes_in`) and receives (`bytes_out`), and a cap on a single upload
//! (`upload_max`). Each limit counts in a [`Window`]: the whole session, or
//! fixed periods aligned to the Unix epoch in UTC (`per = "1h"` resets on every
//! full hour). A count is a session counter ([`crate::SessionStore::increment_counter`])
//! whose name carries the window start, so charging is one atomic store
//! operation on every store, and the limit holds across nodes and parallel
//! requests.
//!
//! ```toml
//! [policy.roles.user.quotas]
//! upload_max = "10MB"
//! bytes_out = { limit = "500MB", per = "1d" }
//! [policy.roles.user.quotas.units]
//! downloads = { limit = 5, per = "session" }
//! ```
//!
//! [`crate::SessionManager::charge`] charges a quota; it emits an
//! [`crate::EventKind::QuotaRefused`] event when a limit refuses.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::{Timestamp, duration_millis};
use crate::policy::{format_duration, parse_duration};
use crate::record::SessionRecord;

/// Prefix of the session counters quotas use.
pub const COUNTER_PREFIX: &str = "quota:";

/// The shortest period a windowed limit may have (each window with activity
/// leaves one counter in the session record until the session ends).
pub const MIN_PERIOD: Duration = Duration::from_secs(60);

/// The most windows a limit may have within the longest session of its role,
/// which bounds the counters a session can collect.
pub const MAX_WINDOWS_PER_SESSION: u64 = 1000;

/// Which quota: a named unit, or the byte counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuotaKind<'a> {
    /// A unit counted per route (e.g. `downloads`).
    Unit(&'a str),
    /// Bytes of request bodies (uploads).
    BytesIn,
    /// Bytes of response bodies (downloads).
    BytesOut,
}

impl QuotaKind<'_> {
    /// The quota's name: the unit's name, `bytes_in` or `bytes_out`.
    pub fn name(&self) -> &str {
        match self {
            Self::Unit(n) => n,
            Self::BytesIn => "bytes_in",
            Self::BytesOut => "bytes_out",
        }
    }
}

/// A window in which a limit counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Window {
    /// The whole session: the count starts again only with a new session
    /// (after sign-out, expiry, or a new anonymous session).
    #[default]
    Session,
    /// Fixed periods aligned to the Unix epoch (UTC): `1h` resets at every
    /// full hour, `1d` at midnight UTC.
    Every(Duration),
}

impl Window {
    /// The window containing `now`: the counter name for quota `name` and
    /// when the window ends. For [`Window::Session`] that is `session_end`,
    /// the session's absolute expiry (the count cannot outlive it, and ends
    /// sooner if the session does).
    pub fn locate(
        &self,
        name: &str,
        now: Timestamp,
        session_end: Timestamp,
    ) -> (String, Timestamp) {
        match self {
            Self::Session => (format!("{COUNTER_PREFIX}{name}"), session_end),
            Self::Every(period) => {
                let p = duration_millis(*period).max(1);
                let start = now.as_millis().div_euclid(p) * p;
                (
                    format!("{COUNTER_PREFIX}{name}@{}", start / 1000),
                    Timestamp(start).add_millis(p),
                )
            }
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Session => f.write_str("session"),
            Self::Every(d) => f.write_str(&format_duration(*d)),
        }
    }
}

impl FromStr for Window {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "session" {
            return Ok(Self::Session);
        }
        parse_duration(s)
            .map(Self::Every)
            .map_err(|e| format!("expected \"session\" or a period such as \"1h\" or \"1d\" ({e})"))
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One limit: at most `limit` per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimit {
    /// The most that may be charged in one window (units, or bytes: an
    /// integer, or a size such as `"10MB"` (10^6) or `"10MiB"` (2^20)).
    #[serde(deserialize_with = "amount")]
    pub limit: u64,
    /// The window (default: the whole session).
    #[serde(default)]
    pub per: Window,
}

impl QuotaLimit {
    /// `limit` per session.
    pub fn per_session(limit: u64) -> Self {
        Self {
            limit,
            per: Window::Session,
        }
    }

    /// `limit` per fixed `period`.
    pub fn every(limit: u64, period: Duration) -> Self {
        Self {
            limit,
            per: Window::Every(period),
        }
    }
}

/// The quotas of one role. Everything is optional; nothing set means no limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// The largest single request body, in bytes (an integer or a size such
    /// as `"10MB"`); larger uploads are refused with `413` before they are read.
    #[serde(
        deserialize_with = "amount_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub upload_max: Option<u64>,
    /// Request body bytes per window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<QuotaLimit>,
    /// Response body bytes per window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<QuotaLimit>,
    /// Named units per window (e.g. `downloads`), charged by routes.
    pub units: BTreeMap<String, QuotaLimit>,
}

impl Quotas {
    /// The limit of `kind`, if this role has one.
    pub fn limit(&self, kind: QuotaKind<'_>) -> Option<&QuotaLimit> {
        match kind {
            QuotaKind::Unit(n) => self.units.get(n),
            QuotaKind::BytesIn => self.bytes_in.as_ref(),
            QuotaKind::BytesOut => self.bytes_out.as_ref(),
        }
    }

    /// Checks names and values; `longest_session` is the role's longest
    /// absolute lifetime (bounds how many windows a session can see).
    ///
    /// # Errors
    ///
    /// A message naming the field that is wrong.
    pub fn validate(&self, longest_session: Duration) -> Result<(), String> {
        if self.upload_max == Some(0) {
            return Err("quotas.upload_max: must be greater than zero (omit it for no cap)".into());
        }
        let named = [("bytes_in", &self.bytes_in), ("bytes_out", &self.bytes_out)];
        let all = named
            .iter()
            .filter_map(|(n, l)| l.as_ref().map(|l| ((*n).to_owned(), l)))
            .chain(self.units.iter().map(|(n, l)| (format!("units.{n}"), l)));
        for (key, l) in all {
            if l.limit == 0 {
                return Err(format!(
                    "quotas.{key}.limit: must be greater than zero (omit the quota for no limit)"
                ));
            }
            if let Window::Every(p) = l.per {
                if p < MIN_PERIOD {
                    return Err(format!(
                        "quotas.{key}.per: must be \"session\" or at least 1m"
                    ));
                }
                let windows = longest_session.as_millis() / p.as_millis().max(1);
                if windows > u128::from(MAX_WINDOWS_PER_SESSION) {
                    return Err(format!(
                        "quotas.{key}.per: {} gives more than {MAX_WINDOWS_PER_SESSION} windows in a {} session; use a longer period",
                        format_duration(p),
                        format_duration(longest_session)
                    ));
                }
            }
        }
        for name in self.units.keys() {
            valid_unit_name(name).map_err(|e| format!("quotas.units.{name}: {e}"))?;
        }
        Ok(())
    }
}

/// Checks a unit name: 1 to 32 characters of `a-z`, `0-9`, `_` and `-`, and
/// not `bytes_in` or `bytes_out`.
///
/// # Errors
///
/// A message saying what is allowed.
pub fn valid_unit_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty()
        || name.len() > 32
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err("a unit name has 1 to 32 characters of a-z, 0-9, _ and -");
    }
    if name == "bytes_in" || name == "bytes_out" {
        return Err("bytes_in and bytes_out are the byte quotas, not units");
    }
    Ok(())
}

/// Where a quota stands for one session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// The quota's name (`downloads`, `bytes_out`, ...).
    pub quota: String,
    /// Charged in the current window.
    pub used: u64,
    /// The limit, if the session's role has one.
    pub limit: Option<u64>,
    /// The window.
    pub per: Window,
    /// When the current window ends and the count starts again (for a
    /// per-session window: the session's absolute expiry, at the latest).
    pub resets_at: Timestamp,
}

impl Usage {
    /// What is left in this window (`None`: no limit).
    pub fn remaining(&self) -> Option<u64> {
        self.limit.map(|l| l.saturating_sub(self.used))
    }

    /// The usage of `kind` as recorded in `record` at `now`, read from the
    /// record's counters (no store access).
    pub fn of(
        record: &SessionRecord,
        quotas: &Quotas,
        kind: QuotaKind<'_>,
        now: Timestamp,
    ) -> Self {
        let limit = quotas.limit(kind);
        let per = limit.map(|l| l.per).unwrap_or_default();
        let (counter, resets_at) = per.locate(kind.name(), now, record.absolute_expires_at);
        Self {
            quota: kind.name().to_owned(),
            used: record.counters.get(&counter).copied().unwrap_or(0),
            limit: limit.map(|l| l.limit),
            per,
            resets_at,
        }
    }
}

/// The outcome of [`crate::SessionManager::charge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Charge {
    /// Charged; the usage after it.
    Granted(Usage),
    /// Refused: the charge would pass the limit; nothing was charged.
    Refused(Usage),
}

impl Charge {
    /// The usage, granted or not.
    pub fn usage(&self) -> &Usage {
        match self {
            Self::Granted(u) | Self::Refused(u) => u,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Amount {
    Int(u64),
    Text(String),
}

fn parse_amount(a: Amount) -> Result<u64, String> {
    match a {
        Amount::Int(n) => Ok(n),
        Amount::Text(s) => match s.trim().parse::<u64>() {
            Ok(n) => Ok(n),
            Err(_) => bytesize::ByteSize::from_str(s.trim())
                .map(|b| b.as_u64())
                .map_err(|_| {
                    format!("expected a count or a size such as \"10MB\" or \"512KiB\", got {s:?}")
                }),
        },
    }
}

fn amount<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    parse_amount(Amount::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn amount_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<Amount>::deserialize(d)?
        .map(parse_amount)
        .transpose()
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_the_epoch() {
        let end = Timestamp(86_400_000);
        let hour = Window::Every(Duration::from_secs(3600));
        let at = Timestamp(3600 * 1000 * 5 + 1234);
        let (name, reset) = hour.locate("downloads", at, end);
        assert_eq!(name, "quota:downloads@18000");
        assert_eq!(reset, Timestamp(3600 * 1000 * 6));
        let (name, reset) = Window::Session.locate("downloads", at, end);
        assert_eq!(name, "quota:downloads");
        assert_eq!(reset, end);
    }

    #[test]
    fn limits_parse_counts_and_sizes() {
        let q: Quotas = serde_json::from_value(serde_json::json!({
            "upload_max": "10MB",
            "bytes_out": { "limit": "1KiB", "per": "1h" },
            "units": { "downloads": { "limit": 5 } }
        }))
        .unwrap();
        assert_eq!(q.upload_max, Some(10_000_000));
        assert_eq!(
            q.bytes_out,
            Some(QuotaLimit::every(1024, Duration::from_secs(3600)))
        );
        assert_eq!(q.units["downloads"], QuotaLimit::per_session(5));
        let bad: Result<Quotas, _> =
            serde_json::from_value(serde_json::json!({ "upload_max": "lots" }));
        assert!(bad.unwrap_err().to_string().contains("\"10MB\""));
        let bad: Result<Quotas, _> = serde_json::from_value(
            serde_json::json!({ "units": { "d": { "limit": 1, "per": "weekly" } } }),
        );
        assert!(bad.unwrap_err().to_string().contains("\"session\""));
    }

    #[test]
    fn validation_names_the_field() {
        let day = Duration::from_secs(86_400);
        let mut q = Quotas::default();
        q.units
            .insert("Downloads!".into(), QuotaLimit::per_session(1));
        assert!(
            q.validate(day)
                .unwrap_err()
                .contains("quotas.units.Downloads!")
        );
        let mut q = Quotas::default();
        q.units
            .insert("bytes_out".into(), QuotaLimit::per_session(1));
        assert!(q.validate(day).unwrap_err().contains("byte quotas"));
        let mut q = Quotas::default();
        q.units.insert("d".into(), QuotaLimit::per_session(0));
        assert!(
            q.validate(day)
                .unwrap_err()
                .contains("quotas.units.d.limit")
        );
        let q = Quotas {
            bytes_in: Some(QuotaLimit::every(10, Duration::from_secs(10))),
            ..Quotas::default()
        };
        assert!(q.validate(day).unwrap_err().contains("at least 1m"));
        let q = Quotas {
            bytes_in: Some(QuotaLimit::every(10, Duration::from_secs(60))),
            ..Quotas::default()
        };
        assert!(q.validate(day).unwrap_err().contains("1000 windows"));
        let q = Quotas {
            bytes_in: Some(QuotaLimit::every(10, Duration::from_secs(3600))),
            ..Quotas::default()
        };
        assert!(
            q.validate(day * 30).is_ok(),
            "720 hourly windows in 30 days"
        );
        let q = Quotas {
            upload_max: Some(0),
            ..Quotas::default()
        };
        assert!(q.validate(day).unwrap_err().contains("upload_max"));
    }
}
