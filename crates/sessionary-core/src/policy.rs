//! Timeouts and limits, per role.
//!
//! A session takes the policy of the strictest of its roles that has one (the
//! shortest idle timeout wins), else the default policy; anonymous sessions
//! take the anonymous policy. The defaults follow NIST SP 800-63B-4 for AAL2
//! (idle at most 1 h, overall at most 24 h):
//!
//! | policy    | idle   | absolute | remember-me idle | remember-me absolute | limit | refresh family |
//! |-----------|--------|----------|------------------|----------------------|-------|----------------|
//! | default   | 30 min | 12 h     | 7 days           | 30 days              | none  | 30 days        |
//! | `admin`   | 10 min | 8 h      | (no remember-me: same as idle/absolute) | | 3, evict oldest | 8 h |
//! | anonymous | 30 min | 24 h     | -                | -                    | none  | - (signed-in only) |
//!
//! Binding ([`Binding`]): by default another network is logged and another
//! browser or OS holds the session for a step-up; `admin` needs a step-up on
//! another network and ends the session on any user-agent change; anonymous
//! sessions are not bound.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::binding::{Binding, BindingAction};
use crate::clock::duration_millis;
use crate::quota::Quotas;

/// What happens when a user already has the maximum number of sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    /// The new sign-in is refused with a clear error.
    RejectNew,
    /// The least recently created session is ended (reason `evicted_by_limit`).
    EvictOldest,
}

/// Timeouts and limits for one role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolePolicy {
    /// Sliding idle timeout.
    #[serde(with = "human")]
    pub idle_timeout: Duration,
    /// Absolute lifetime from creation.
    #[serde(with = "human")]
    pub absolute_timeout: Duration,
    /// Idle timeout of remember-me sessions.
    #[serde(with = "human")]
    pub remember_idle_timeout: Duration,
    /// Absolute lifetime of remember-me sessions.
    #[serde(with = "human")]
    pub remember_absolute_timeout: Duration,
    /// Whether remember-me is allowed for this role at all.
    pub allow_remember: bool,
    /// Minimum time between two recorded touches; `None` means 1/20 of the idle timeout.
    #[serde(with = "human_opt")]
    pub touch_interval: Option<Duration>,
    /// Maximum concurrent sessions per user (`None`: unlimited).
    pub max_sessions: Option<u32>,
    /// Behaviour at the limit.
    pub on_limit: LimitMode,
    /// Absolute lifetime of a refresh token family from its issue, however
    /// often it rotates (also capped by the session's own absolute lifetime).
    #[serde(with = "human")]
    pub refresh_absolute_timeout: Duration,
    /// Binding to device and network: what an IP or user-agent change leads to.
    pub binding: Binding,
    /// Quotas: units, bytes in and out, upload cap (default: none).
    pub quotas: Quotas,
}

impl Default for RolePolicy {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            remember_idle_timeout: Duration::from_secs(7 * 86_400),
            remember_absolute_timeout: Duration::from_secs(30 * 86_400),
            allow_remember: true,
            touch_interval: None,
            max_sessions: None,
            on_limit: LimitMode::EvictOldest,
            refresh_absolute_timeout: Duration::from_secs(30 * 86_400),
            binding: Binding::default(),
            quotas: Quotas::default(),
        }
    }
}

impl RolePolicy {
    /// The administrator default: 10 min idle, 8 h absolute, no remember-me, 3
    /// sessions, refresh token families for 8 h, [`Binding::strict`].
    pub fn admin() -> Self {
        Self {
            idle_timeout: Duration::from_secs(10 * 60),
            absolute_timeout: Duration::from_secs(8 * 3600),
            remember_idle_timeout: Duration::from_secs(10 * 60),
            remember_absolute_timeout: Duration::from_secs(8 * 3600),
            allow_remember: false,
            touch_interval: None,
            max_sessions: Some(3),
            on_limit: LimitMode::EvictOldest,
            refresh_absolute_timeout: Duration::from_secs(8 * 3600),
            binding: Binding::strict(),
            quotas: Quotas::default(),
        }
    }

    /// The anonymous default: 30 min idle, 24 h absolute, no binding.
    pub fn anonymous() -> Self {
        Self {
            absolute_timeout: Duration::from_secs(24 * 3600),
            allow_remember: false,
            binding: Binding::none(),
            ..Self::default()
        }
    }

    /// (idle, absolute) timeouts in milliseconds for a session with or without remember-me.
    pub fn timeouts_ms(&self, remember: bool) -> (i64, i64) {
        if remember && self.allow_remember {
            (
                duration_millis(self.remember_idle_timeout),
                duration_millis(self.remember_absolute_timeout),
            )
        } else {
            (
                duration_millis(self.idle_timeout),
                duration_millis(self.absolute_timeout),
            )
        }
    }

    /// The touch interval in milliseconds for a given idle timeout.
    pub fn touch_interval_ms(&self, idle_ms: i64) -> i64 {
        match self.touch_interval {
            Some(d) => duration_millis(d),
            None => idle_ms / 20,
        }
    }

    /// Checks the values make sense.
    ///
    /// # Errors
    ///
    /// A message naming the field that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.idle_timeout.is_zero() || self.absolute_timeout.is_zero() {
            return Err("idle_timeout and absolute_timeout must be greater than zero".into());
        }
        if self.idle_timeout > self.absolute_timeout {
            return Err("idle_timeout must not exceed absolute_timeout".into());
        }
        if self.remember_idle_timeout > self.remember_absolute_timeout {
            return Err("remember_idle_timeout must not exceed remember_absolute_timeout".into());
        }
        if let Some(t) = self.touch_interval {
            if t >= self.idle_timeout {
                return Err("touch_interval must be shorter than idle_timeout".into());
            }
        }
        if self.refresh_absolute_timeout.is_zero() {
            return Err("refresh_absolute_timeout must be greater than zero".into());
        }
        if self.max_sessions == Some(0) {
            return Err("max_sessions must be at least 1 (omit it for no limit)".into());
        }
        let longest = if self.allow_remember {
            self.absolute_timeout.max(self.remember_absolute_timeout)
        } else {
            self.absolute_timeout
        };
        self.quotas.validate(longest)?;
        Ok(())
    }
}

/// The whole policy: a default, the anonymous one, and one per role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// For signed-in sessions whose roles have no policy of their own.
    pub default: RolePolicy,
    /// For anonymous sessions.
    pub anonymous: RolePolicy,
    /// Per role; the strictest matching role wins.
    pub roles: BTreeMap<String, RolePolicy>,
    /// How long the reason of an ended session is remembered.
    #[serde(with = "human")]
    pub reason_ttl: Duration,
    /// How long an expired session's data is kept for its user's next session.
    #[serde(with = "human")]
    pub restore_ttl: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        let mut roles = BTreeMap::new();
        roles.insert("admin".to_owned(), RolePolicy::admin());
        Self {
            default: RolePolicy::default(),
            anonymous: RolePolicy::anonymous(),
            roles,
            reason_ttl: Duration::from_secs(24 * 3600),
            restore_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

impl Policy {
    /// The policy in force for a session with `roles`, signed in or not.
    pub fn for_session(&self, authenticated: bool, roles: &[String]) -> &RolePolicy {
        if !authenticated {
            return &self.anonymous;
        }
        roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .min_by_key(|p| p.idle_timeout)
            .unwrap_or(&self.default)
    }

    /// Checks every role policy.
    ///
    /// # Errors
    ///
    /// A message naming the policy and field that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        self.default
            .validate()
            .map_err(|e| format!("policy.default: {e}"))?;
        self.anonymous
            .validate()
            .map_err(|e| format!("policy.anonymous: {e}"))?;
        let b = &self.anonymous.binding;
        if b.on_ip_change == BindingAction::StepUp
            || b.on_user_agent_change == BindingAction::StepUp
        {
            return Err("policy.anonymous.binding: an anonymous session has no one to step up; use log or revoke".into());
        }
        for (name, p) in &self.roles {
            p.validate()
                .map_err(|e| format!("policy.roles.{name}: {e}"))?;
        }
        Ok(())
    }
}

/// Parses a duration such as `30s`, `10m`, `2h`, `7d`, `250ms` or `1h30m`.
///
/// # Errors
///
/// A message saying what is allowed.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// assert_eq!(sessionary_core::policy::parse_duration("1h30m")?, Duration::from_secs(5400));
/// assert!(sessionary_core::policy::parse_duration("soon").is_err());
/// # Ok::<(), String>(())
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const ALLOWED: &str = "expected a duration such as 250ms, 30s, 10m, 2h, 7d or 1h30m";
    let s = s.trim();
    if s.is_empty() {
        return Err(ALLOWED.into());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("{ALLOWED}, got {s:?}"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{ALLOWED}, got {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("{ALLOWED}, got {s:?}")),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {s:?} is too large"))?;
    }
    Ok(Duration::from_millis(total))
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, f) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= f && ms % f == 0 {
            return format!("{}{unit}", ms / f);
        }
    }
    format!("{ms}ms")
}

struct Human(Duration);
impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

mod human {
    use super::*;
    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&Human(*d))
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

mod human_opt {
    use super::*;
    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&Human(*d)),
            None => s.serialize_none(),
        }
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictest_role_wins() {
        let p = Policy::default();
        let user = p.for_session(true, &["user".into()]);
        assert_eq!(user.idle_timeout, Duration::from_secs(1800));
        let admin = p.for_session(true, &["user".into(), "admin".into()]);
        assert_eq!(admin.idle_timeout, Duration::from_secs(600));
        let anon = p.for_session(false, &["admin".into()]);
        assert_eq!(anon, &p.anonymous);
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        for bad in ["", "10", "m", "5 minutes", "-1s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn defaults_respect_nist_aal2_bounds() {
        let p = Policy::default();
        p.validate().unwrap();
        for rp in [&p.default, &p.roles["admin"]] {
            assert!(rp.idle_timeout <= Duration::from_secs(3600));
            assert!(rp.absolute_timeout <= Duration::from_secs(24 * 3600));
        }
    }

    #[test]
    fn invalid_policies_are_named() {
        let mut p = Policy::default();
        p.roles.get_mut("admin").unwrap().max_sessions = Some(0);
        assert!(p.validate().unwrap_err().contains("policy.roles.admin"));
    }
}
