//! The session record, as stores keep it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::seal::Sealed;
use crate::token::{SessionId, TokenHash, UserId};

/// The device a session was created from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Client IP address, as the deployment determined it.
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header, truncated to 512 bytes.
    pub user_agent: Option<String>,
    /// A human label such as "Firefox on Linux".
    pub label: Option<String>,
}

impl Device {
    /// Longest user agent kept, in bytes.
    pub const USER_AGENT_MAX: usize = 512;

    /// A device from an IP and user agent; the label is derived from the user agent.
    pub fn new(ip: Option<IpAddr>, user_agent: Option<&str>) -> Self {
        let user_agent = user_agent.map(|ua| truncate(ua, Self::USER_AGENT_MAX).to_owned());
        let label = user_agent.as_deref().map(device_label);
        Self {
            ip,
            user_agent,
            label,
        }
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Whether two user agents are the same browser family on the same
/// operating system, as the [`woothee`] parser reads them (a version update is
/// not a change; two unrecognised agents are the same only when equal).
pub fn same_device_kind(a: &str, b: &str) -> bool {
    let parser = woothee::parser::Parser::new();
    match (parser.parse(a), parser.parse(b)) {
        (Some(x), Some(y)) => x.name == y.name && x.os == y.os,
        (None, None) => a == b,
        _ => false,
    }
}

/// A short label ("Chrome on Linux") from a user agent.
pub fn device_label(ua: &str) -> String {
    let Some(r) = woothee::parser::Parser::new().parse(ua) else {
        return "Unknown device".to_owned();
    };
    let known = |s: &str| s != woothee::woothee::VALUE_UNKNOWN;
    let os = match r.os {
        "Mac OSX" => "macOS",
        os => os,
    };
    match (known(r.name), known(os)) {
        (true, true) => format!("{} on {os}", r.name),
        (true, false) => r.name.to_owned(),
        (false, true) => format!("Unknown browser on {os}"),
        (false, false) => "Unknown device".to_owned(),
    }
}

/// Why a session ended. Kept for a while after the end so the next request can say why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndReason {
    /// No request within the idle timeout.
    ExpiredIdle,
    /// The absolute lifetime ran out.
    ExpiredAbsolute,
    /// The user signed out.
    LoggedOut,
    /// The user ended it from another device ("manage sessions").
    RevokedByUser,
    /// An administrator ended it.
    RevokedByAdmin,
    /// A newer session pushed it out under the concurrent-session limit.
    EvictedByLimit,
    /// Its binding to a device or network was broken.
    HijackSuspected,
    /// A spent refresh token was replayed.
    TokenReuse,
    /// The token was replaced by a new one (sign-in, privilege change); the
    /// session lives on under the new token.
    Regenerated,
    /// The user account was disabled.
    UserDisabled,
    /// A spent refresh token of the session was presented again: its family
    /// and the session were revoked.
    RefreshReused,
}

impl EndReason {
    /// The snake_case name used in APIs and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ExpiredIdle => "expired_idle",
            Self::ExpiredAbsolute => "expired_absolute",
            Self::LoggedOut => "logged_out",
            Self::RevokedByUser => "revoked_by_user",
            Self::RevokedByAdmin => "revoked_by_admin",
            Self::EvictedByLimit => "evicted_by_limit",
            Self::HijackSuspected => "hijack_suspected",
            Self::TokenReuse => "token_reuse",
            Self::Regenerated => "regenerated",
            Self::UserDisabled => "user_disabled",
            Self::RefreshReused => "refresh_reused",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "expired_idle" => Self::ExpiredIdle,
            "expired_absolute" => Self::ExpiredAbsolute,
            "logged_out" => Self::LoggedOut,
            "revoked_by_user" => Self::RevokedByUser,
            "revoked_by_admin" => Self::RevokedByAdmin,
            "evicted_by_limit" => Self::EvictedByLimit,
            "hijack_suspected" => Self::HijackSuspected,
            "token_reuse" => Self::TokenReuse,
            "regenerated" => Self::Regenerated,
            "user_disabled" => Self::UserDisabled,
            "refresh_reused" => Self::RefreshReused,
            _ => return None,
        })
    }

    /// Whether the session ran out of time (its data may be restored later).
    pub const fn is_expiry(self) -> bool {
        matches!(self, Self::ExpiredIdle | Self::ExpiredAbsolute)
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A per-session secret from which CSRF tokens are derived. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CsrfSecret(#[serde(with = "b64_32")] pub [u8; 32]);

impl fmt::Debug for CsrfSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfSecret(REDACTED)")
    }
}

mod b64_32 {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let v = URL_SAFE_NO_PAD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)?;
        <[u8; 32]>::try_from(v.as_slice())
            .map_err(|_| serde::de::Error::custom("expected 32 bytes"))
    }
}

/// One session as stored. Stores hand these out behind [`Arc`], never cloned per request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Public handle.
    pub id: SessionId,
    /// SHA-256 of the current bearer token.
    pub token_hash: TokenHash,
    /// The signed-in user; `None` for an anonymous session.
    pub user: Option<UserId>,
    /// Roles granted at sign-in.
    pub roles: Vec<String>,
    /// Authenticator assurance level proved by the authentication event (1-3);
    /// 0 for an anonymous session, and for a signed-in one held for a step-up
    /// ([`Self::step_up_required`]).
    pub aal: u8,
    /// When the user last authenticated (password, MFA); `None` when anonymous.
    pub auth_time: Option<Timestamp>,
    /// When the session was created.
    pub created_at: Timestamp,
    /// Last recorded activity (written at most once per touch interval).
    pub last_seen_at: Timestamp,
    /// Sliding idle timeout, in milliseconds.
    pub idle_timeout_ms: i64,
    /// Minimum milliseconds between two recorded touches (coalescing).
    pub touch_interval_ms: i64,
    /// Hard end of the session, whatever the activity.
    pub absolute_expires_at: Timestamp,
    /// Whether the remember-me policy applies.
    pub remember: bool,
    /// Device the session was created from.
    pub device: Device,
    /// Bumped by every change except touches; used for compare-and-set.
    pub version: u64,
    /// Secret for CSRF tokens bound to this session.
    pub csrf_secret: CsrfSecret,
    /// Usage counters (bytes, downloads, ...), changed only atomically by the store.
    pub counters: BTreeMap<String, u64>,
    /// Not counted by the concurrent-session limit, and never evicted by it
    /// (an app session of the OpenID Connect provider, which lives under a
    /// counted central session). Set at creation, kept by every update.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exempt_from_limit: bool,
    /// Session-scope data, sealed with the key ring (associated data: the session id).
    pub data: Sealed,
}

impl SessionRecord {
    /// When the session ends if nothing else happens: the earlier of idle and absolute expiry.
    pub fn expires_at(&self) -> Timestamp {
        std::cmp::min(
            self.last_seen_at.add_millis(self.idle_timeout_ms),
            self.absolute_expires_at,
        )
    }

    /// Whether the session is still alive at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at()
    }

    /// Why the session is over at `now`, if it is.
    /// When both deadlines passed, the one that came first is the reason.
    pub fn expiry_reason(&self, now: Timestamp) -> Option<EndReason> {
        let idle_end = self.last_seen_at.add_millis(self.idle_timeout_ms);
        if now < idle_end.min(self.absolute_expires_at) {
            None
        } else if idle_end < self.absolute_expires_at {
            Some(EndReason::ExpiredIdle)
        } else {
            Some(EndReason::ExpiredAbsolute)
        }
    }

    /// Whether a touch is due: the session is live and at least the touch
    /// interval passed since the last recorded activity.
    pub fn touch_due(&self, now: Timestamp) -> bool {
        self.is_live(now) && now.millis_since(self.last_seen_at) >= self.touch_interval_ms
    }

    /// Whether the session counts toward its user's concurrent-session limit
    /// at `now`: live, and not [`Self::exempt_from_limit`]. Every store's
    /// limit count uses this (Redis's `create.lua` the same rule on its fields).
    pub fn counts_toward_limit(&self, now: Timestamp) -> bool {
        self.is_live(now) && !self.exempt_from_limit
    }

    /// Whether the session has a user.
    pub fn is_authenticated(&self) -> bool {
        self.user.is_some()
    }

    /// Whether the session is held for a step-up after a binding mismatch: a
    /// signed-in session at AAL 0 proves nothing until its user passes MFA or
    /// re-authenticates ([`crate::Privilege`]).
    pub fn step_up_required(&self) -> bool {
        self.user.is_some() && self.aal == 0
    }
}

/// What stays of an ended session's token for a while: who, when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The session that ended (or, for [`EndReason::Regenerated`], lives on under a new token).
    pub session_id: SessionId,
    /// Its user, if any.
    pub user: Option<UserId>,
    /// Why it ended.
    pub reason: EndReason,
    /// When it ended.
    pub ended_at: Timestamp,
    /// When the store may forget this tombstone.
    pub keep_until: Timestamp,
}

/// Data of an expired session, kept for its user's next session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Restorable {
    /// The session the data came from (the associated data it is sealed under).
    pub session_id: SessionId,
    /// The sealed session data.
    pub data: Sealed,
    /// When the store may forget it.
    pub keep_until: Timestamp,
}

/// User-scope data (shared by all of a user's sessions), sealed, with its version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserData {
    /// Bumped on every change; starts at 1 (0 means "absent" in preconditions).
    pub version: u64,
    /// Sealed JSON object (associated data: the user id).
    pub data: Sealed,
}

/// Convenience alias for a shared record.
pub type SharedRecord = Arc<SessionRecord>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_common_browsers() {
        assert_eq!(
            device_label(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
            ),
            "Chrome on Linux"
        );
        assert_eq!(
            device_label(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"
            ),
            "Firefox on Windows 10"
        );
        assert_eq!(device_label("no browser at all"), "Unknown device");
    }

    #[test]
    fn user_agent_is_truncated_on_a_char_boundary() {
        let ua = "é".repeat(400);
        let d = Device::new(None, Some(&ua));
        let kept = d.user_agent.unwrap();
        assert!(kept.len() <= Device::USER_AGENT_MAX);
        assert!(ua.starts_with(&kept));
    }

    #[test]
    fn end_reasons_round_trip() {
        for r in [
            EndReason::ExpiredIdle,
            EndReason::ExpiredAbsolute,
            EndReason::LoggedOut,
            EndReason::RevokedByUser,
            EndReason::RevokedByAdmin,
            EndReason::EvictedByLimit,
            EndReason::HijackSuspected,
            EndReason::TokenReuse,
            EndReason::Regenerated,
            EndReason::UserDisabled,
            EndReason::RefreshReused,
        ] {
            assert_eq!(EndReason::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
    }
}
