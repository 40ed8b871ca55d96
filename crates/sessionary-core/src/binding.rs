//! Binding a session to its device and network.
//!
//! Each session records the device it was created from ([`Device`]). On every
//! request the layer compares the requesting client with it, under the
//! [`Binding`] of the session's role policy:
//!
//! - the IP address: [`IpMatch::Ignore`], [`IpMatch::Subnet`] (the same /24 for
//!   IPv4, /48 for IPv6) or [`IpMatch::Exact`];
//! - the user agent: [`UaMatch::Ignore`], [`UaMatch::Label`] (the same browser
//!   and operating system, so a browser update is not a change) or
//!   [`UaMatch::Exact`].
//!
//! A change is answered with a [`BindingAction`]: `log` (an audit entry, and
//! the session follows the device), `step_up` (the session is held: it claims
//! no assurance until the user passes MFA or re-authenticates, and every other
//! request gets `403 step-up-required`), or `revoke` (the session ends with
//! reason `hijack_suspected`).
//!
//! The check on the request path is a comparison of two addresses and, only
//! when the header differs from the stored one byte for byte, of two parsed
//! user agents: no allocation and no store access unless something changed.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::record::{Device, same_device_kind};

/// How the client IP must match the session's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpMatch {
    /// The IP is not compared.
    Ignore,
    /// The same /24 (IPv4) or /48 (IPv6) network.
    #[default]
    Subnet,
    /// The same address.
    Exact,
}

/// How the `User-Agent` must match the session's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UaMatch {
    /// The user agent is not compared.
    Ignore,
    /// The same browser family and operating system ("Chrome on Linux"); a
    /// version change is not a change.
    #[default]
    Label,
    /// The same header, byte for byte.
    Exact,
}

/// What a broken binding leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingAction {
    /// An audit entry; the session continues and follows the new device.
    Log,
    /// The session is held until the user proves themselves again (MFA, or
    /// the password when they have no MFA): AAL 0, `403 step-up-required`.
    StepUp,
    /// The session ends with reason `hijack_suspected`.
    Revoke,
}

impl BindingAction {
    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::StepUp => "step_up",
            Self::Revoke => "revoke",
        }
    }
}

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingChange {
    /// The client IP left the bound network (or address).
    Ip,
    /// The user agent changed.
    UserAgent,
}

impl BindingChange {
    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::UserAgent => "user_agent",
        }
    }
}

/// A broken binding: what changed and what the policy says to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// What changed.
    pub change: BindingChange,
    /// What to do; with both changes, the stronger action.
    pub action: BindingAction,
}

/// The binding part of a role policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Binding {
    /// How the IP must match.
    pub ip: IpMatch,
    /// What an IP change leads to.
    pub on_ip_change: BindingAction,
    /// How the user agent must match.
    pub user_agent: UaMatch,
    /// What a user-agent change leads to.
    pub on_user_agent_change: BindingAction,
}

impl Default for Binding {
    /// Signed-in users: another network is logged (people move between
    /// networks all day); another browser or OS holds the session for a
    /// step-up.
    fn default() -> Self {
        Self {
            ip: IpMatch::Subnet,
            on_ip_change: BindingAction::Log,
            user_agent: UaMatch::Label,
            on_user_agent_change: BindingAction::StepUp,
        }
    }
}

impl Binding {
    /// No binding at all (anonymous sessions).
    pub const fn none() -> Self {
        Self {
            ip: IpMatch::Ignore,
            on_ip_change: BindingAction::Log,
            user_agent: UaMatch::Ignore,
            on_user_agent_change: BindingAction::Log,
        }
    }

    /// Administrators: another network needs a step-up; any change of the
    /// user-agent header ends the session.
    pub const fn strict() -> Self {
        Self {
            ip: IpMatch::Subnet,
            on_ip_change: BindingAction::StepUp,
            user_agent: UaMatch::Exact,
            on_user_agent_change: BindingAction::Revoke,
        }
    }

    /// Whether nothing is compared (the layer then skips finding the client).
    pub const fn is_off(&self) -> bool {
        matches!(self.ip, IpMatch::Ignore) && matches!(self.user_agent, UaMatch::Ignore)
    }

    /// Compares the device a session is bound to with the requesting one. An
    /// unknown side (no IP, no user agent) is not a change: a deployment that
    /// cannot see addresses does not hold every session.
    pub fn check(
        &self,
        bound: &Device,
        ip: Option<IpAddr>,
        user_agent: Option<&str>,
    ) -> Option<Mismatch> {
        let ip_changed = match (self.ip, bound.ip, ip) {
            (IpMatch::Ignore, ..) | (_, None, _) | (_, _, None) => false,
            (IpMatch::Exact, Some(a), Some(b)) => a != b,
            (IpMatch::Subnet, Some(a), Some(b)) => !same_network(a, b),
        };
        let ua_changed = match (self.user_agent, bound.user_agent.as_deref(), user_agent) {
            (UaMatch::Ignore, ..) | (_, None, _) | (_, _, None) => false,
            (_, Some(a), Some(b)) if a == truncated(b) => false,
            (UaMatch::Exact, ..) => true,
            (UaMatch::Label, Some(a), Some(b)) => !same_device_kind(a, b),
        };
        match (ip_changed, ua_changed) {
            (false, false) => None,
            (true, false) => Some(Mismatch {
                change: BindingChange::Ip,
                action: self.on_ip_change,
            }),
            (false, true) => Some(Mismatch {
                change: BindingChange::UserAgent,
                action: self.on_user_agent_change,
            }),
            (true, true) if self.on_ip_change > self.on_user_agent_change => Some(Mismatch {
                change: BindingChange::Ip,
                action: self.on_ip_change,
            }),
            (true, true) => Some(Mismatch {
                change: BindingChange::UserAgent,
                action: self.on_user_agent_change,
            }),
        }
    }
}

impl Binding {
    /// After [`Self::check`] found no change: whether the session should take
    /// the request's user agent all the same, because under [`UaMatch::Label`]
    /// it differs from the stored one only in what the label ignores (a
    /// browser update). Following it once keeps later requests on the fast
    /// path (equal bytes: no parsing) instead of parsing two user agents on
    /// every request until the session ends.
    pub fn follows_user_agent(&self, bound: &Device, user_agent: Option<&str>) -> bool {
        matches!(self.user_agent, UaMatch::Label)
            && matches!((bound.user_agent.as_deref(), user_agent), (Some(a), Some(b)) if a != truncated(b))
    }
}

/// The user agent as a [`Device`] keeps it.
fn truncated(ua: &str) -> &str {
    crate::record::truncate(ua, Device::USER_AGENT_MAX)
}

/// The network an address belongs to for binding and known devices: /24 for
/// IPv4, /48 for IPv6 (IPv4-mapped IPv6 counts as IPv4).
pub fn network_prefix(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
    }
}

/// Whether two addresses are in the same /24 (IPv4) or /48 (IPv6).
pub fn same_network(a: IpAddr, b: IpAddr) -> bool {
    network_prefix(a) == network_prefix(b)
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as IPv4, everything else as is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_120: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const CHROME_121: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36";
    const FIREFOX: &str =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0";

    fn device(ip: &str, ua: &str) -> Device {
        Device::new(Some(ip.parse().unwrap()), Some(ua))
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn same_slash_24_is_the_same_network_under_subnet() {
        let b = Binding {
            on_ip_change: BindingAction::StepUp,
            ..Binding::default()
        };
        let bound = device("203.0.113.7", CHROME_120);
        assert_eq!(b.check(&bound, ip("203.0.113.200"), Some(CHROME_120)), None);
        let m = b
            .check(&bound, ip("198.51.100.7"), Some(CHROME_120))
            .unwrap();
        assert_eq!(
            (m.change, m.action),
            (BindingChange::Ip, BindingAction::StepUp)
        );
        // IPv6: the same /48 is the same network, another /48 is not.
        let bound6 = device("2001:db8:1::1", CHROME_120);
        assert_eq!(
            b.check(&bound6, ip("2001:db8:1:ffff::9"), Some(CHROME_120)),
            None
        );
        assert!(
            b.check(&bound6, ip("2001:db8:2::1"), Some(CHROME_120))
                .is_some()
        );
        // IPv4-mapped IPv6 is IPv4.
        assert_eq!(
            b.check(&bound, ip("::ffff:203.0.113.9"), Some(CHROME_120)),
            None
        );
    }

    #[test]
    fn exact_ip_refuses_a_neighbour_and_ignore_refuses_nothing() {
        let bound = device("203.0.113.7", CHROME_120);
        let exact = Binding {
            ip: IpMatch::Exact,
            ..Binding::default()
        };
        assert!(
            exact
                .check(&bound, ip("203.0.113.8"), Some(CHROME_120))
                .is_some()
        );
        assert_eq!(
            exact.check(&bound, ip("203.0.113.7"), Some(CHROME_120)),
            None
        );
        assert_eq!(
            Binding::none().check(&bound, ip("192.0.2.1"), Some(FIREFOX)),
            None
        );
    }

    #[test]
    fn user_agent_label_allows_updates_and_exact_does_not() {
        let bound = device("203.0.113.7", CHROME_120);
        let label = Binding::default();
        assert_eq!(
            label.check(&bound, ip("203.0.113.7"), Some(CHROME_121)),
            None
        );
        let m = label
            .check(&bound, ip("203.0.113.7"), Some(FIREFOX))
            .unwrap();
        assert_eq!(
            (m.change, m.action),
            (BindingChange::UserAgent, BindingAction::StepUp)
        );
        let strict = Binding::strict();
        let m = strict
            .check(&bound, ip("203.0.113.7"), Some(CHROME_121))
            .unwrap();
        assert_eq!(
            (m.change, m.action),
            (BindingChange::UserAgent, BindingAction::Revoke)
        );
    }

    #[test]
    fn both_changes_take_the_stronger_action() {
        let bound = device("203.0.113.7", CHROME_120);
        let m = Binding::strict()
            .check(&bound, ip("198.51.100.1"), Some(FIREFOX))
            .unwrap();
        assert_eq!(m.action, BindingAction::Revoke);
        assert_eq!(m.change, BindingChange::UserAgent);
    }

    #[test]
    fn unknown_sides_are_not_changes() {
        let b = Binding::strict();
        assert_eq!(
            b.check(&Device::default(), ip("192.0.2.1"), Some(FIREFOX)),
            None
        );
        let bound = device("203.0.113.7", CHROME_120);
        assert_eq!(b.check(&bound, None, None), None);
    }

    #[test]
    fn an_overlong_user_agent_matches_its_stored_truncation() {
        let long = format!("{CHROME_120}{}", "x".repeat(1000));
        let bound = Device::new(ip("203.0.113.7"), Some(&long));
        assert_eq!(
            Binding::strict().check(&bound, ip("203.0.113.7"), Some(&long)),
            None
        );
    }
}
