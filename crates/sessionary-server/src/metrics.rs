//! Prometheus metrics of the service (`GET /metrics`).
//!
//! [`Metrics`] is an [`EventSink`] of the session manager: every counter that
//! follows the session lifecycle (creations, ends by reason, failed
//! verifications, sign-ins refused by the concurrent-session limit) moves when
//! the manager emits the event, so the numbers are exactly what the audit log
//! and the `sessionary::event` log lines say. Two things are not events and are
//! fed directly: the latency of `POST /v1/sessions/verify`
//! ([`Metrics::observe_verify`], a lock-free histogram: two clock reads and two
//! relaxed atomic additions per call) and store errors, counted by kind from the
//! problem documents the service answers with ([`StoreErrorKind`]).
//!
//! The text is the OpenMetrics exposition that Prometheus scrapes
//! (`prometheus-client`'s encoder), served as
//! `application/openmetrics-text; version=1.0.0; charset=utf-8`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `sessionary_sessions_active` | gauge | this node's creations minus ends since it started |
//! | `sessionary_sessions_created_total` | counter | `kind` = `user` / `anonymous` |
//! | `sessionary_sessions_ended_total` | counter | `reason` (`expired_idle`, `expired_absolute`, `logged_out`, `revoked_by_admin`, ...) |
//! | `sessionary_verify_duration_seconds` | histogram | |
//! | `sessionary_verify_failures_total` | counter | `reason` (`malformed`, `unknown_session`, or a suspicious end reason such as `revoked_by_admin`; tokens of timed-out or signed-out sessions are refused but not counted, as `SessionManager::report_failure` does not report them) |
//! | `sessionary_store_errors_total` | counter | `kind` = `unavailable` / `corrupt` / `backend` |
//! | `sessionary_quota_refusals_total` | counter | `limit` (`concurrent_sessions`, or a quota's name) |
//! | `sessionary_oidc_events_total` | counter | `event` ([`OidcEvent`]: app sign-ins, tokens issued by grant, token requests refused, code reuse, logouts by scope, back-channel deliveries by outcome) |
//!
//! # Security model
//!
//! Metrics name no session, user, token or address: labels take only fixed
//! names (reasons, kinds, limits). `/metrics` still tells how busy the service
//! is, so it is not public: see `[metrics]` in the configuration.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use sessionary_core::{Event, EventKind, EventSink, StoreError};

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The name of the concurrent-session limit in `sessionary_quota_refusals_total`.
pub const CONCURRENT_SESSIONS: &str = "concurrent_sessions";

/// Upper bounds of the verify latency buckets, in seconds: 10 µs to 1 s.
const VERIFY_BUCKETS: [f64; 14] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.1, 0.25, 1.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

/// What the OpenID Connect provider counts in `sessionary_oidc_events_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OidcEvent {
    /// An authorization answered with a code (`sign_in`).
    SignIn,
    /// Tokens issued for a code (`code_redeemed`).
    CodeRedeemed,
    /// Tokens issued for a refresh token (`refreshed`).
    Refreshed,
    /// A token request refused, any reason (`token_refused`).
    TokenRefused,
    /// A code presented a second time; its session ended (`code_reused`).
    CodeReused,
    /// An RP-initiated logout that ended the central session (`logout_everywhere`).
    LogoutEverywhere,
    /// An RP-initiated logout from another browser: that app only (`logout_app`).
    LogoutApp,
    /// A back-channel logout token the app accepted (`backchannel_delivered`).
    BackchannelDelivered,
    /// A back-channel logout token not accepted after the retries (`backchannel_failed`).
    BackchannelFailed,
}

impl OidcEvent {
    /// The `event` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::CodeRedeemed => "code_redeemed",
            Self::Refreshed => "refreshed",
            Self::TokenRefused => "token_refused",
            Self::CodeReused => "code_reused",
            Self::LogoutEverywhere => "logout_everywhere",
            Self::LogoutApp => "logout_app",
            Self::BackchannelDelivered => "backchannel_delivered",
            Self::BackchannelFailed => "backchannel_failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: Cow<'static, str>,
}

/// A histogram that observes with atomics only (no lock on the hot path).
/// Buckets are counted singly and made cumulative by the encoder.
#[derive(Clone, Debug)]
struct AtomicHistogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    buckets: [AtomicU64; VERIFY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    fn new() -> Self {
        Self(Arc::new(HistogramCells {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }))
    }

    fn observe(&self, d: Duration) {
        let c = &self.0;
        let secs = d.as_secs_f64();
        let i = VERIFY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(VERIFY_BUCKETS.len());
        c.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        c.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), fmt::Error> {
        let buckets: Vec<(f64, u64)> = VERIFY_BUCKETS
            .iter()
            .copied()
            // The encoder writes `le="+Inf"` for f64::MAX.
            .chain(std::iter::once(f64::MAX))
            .zip(self.0.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        // Read singly, so count and the buckets may differ by the observations
        // of the instant; the next scrape agrees again.
        let count = buckets.iter().map(|(_, n)| n).sum();
        #[allow(clippy::cast_precision_loss)] // nanoseconds to seconds, for display
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<KindLabel>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A store error's kind, put on a response as an extension by
/// [`crate::Problem`] so [`Metrics`] can count it without the handlers'
/// help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The store could not be reached.
    Unavailable,
    /// Stored bytes did not decode.
    Corrupt,
    /// Any other store failure.
    Backend,
}

impl StoreErrorKind {
    /// The kind of `e`.
    pub fn of(e: &StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::Unavailable,
            StoreError::Corrupt(_) => Self::Corrupt,
            _ => Self::Backend,
        }
    }

    /// `unavailable`, `corrupt` or `backend` (the metric's label).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Corrupt => "corrupt",
            Self::Backend => "backend",
        }
    }
}

struct Inner {
    registry: Registry,
    active: Gauge<i64, AtomicI64>,
    created: Family<KindLabel, Counter>,
    ended: Family<ReasonLabel, Counter>,
    verify: AtomicHistogram,
    verify_failures: Family<ReasonLabel, Counter>,
    store_errors: Family<KindLabel, Counter>,
    quota_refusals: Family<LimitLabel, Counter>,
    oidc: Family<EventLabel, Counter>,
}

/// The service's metrics: an [`EventSink`] for the manager, plus
/// [`Metrics::observe_verify`], [`Metrics::store_error`] and
/// [`Metrics::quota_refused`]. Cheap to clone (one `Arc`).
///
/// # Examples
///
/// ```
/// use sessionary_server::metrics::Metrics;
/// let metrics = Metrics::new();
/// metrics.quota_refused("api_calls_per_minute");
/// let text = metrics.render();
/// assert!(text.contains("sessionary_quota_refusals_total{limit=\"api_calls_per_minute\"} 1"));
/// ```
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("active", &self.0.active.get())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sessionary");
        let active = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "sessions_active",
            "Sessions created minus sessions ended, as seen by this node since it started",
            active.clone(),
        );
        let created = Family::<KindLabel, Counter>::default();
        registry.register(
            "sessions_created",
            "Sessions created, by kind (user, anonymous)",
            created.clone(),
        );
        let ended = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "sessions_ended",
            "Sessions ended, by reason (expiries, logouts, revocations, ...)",
            ended.clone(),
        );
        let verify = AtomicHistogram::new();
        registry.register(
            "verify_duration_seconds",
            "Time to answer POST /v1/sessions/verify, refusals included",
            verify.clone(),
        );
        let verify_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "verify_failures",
            "Session tokens refused, by reason",
            verify_failures.clone(),
        );
        let store_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "store_errors",
            "Requests failed by the session store, by kind (unavailable, corrupt, backend)",
            store_errors.clone(),
        );
        let quota_refusals = Family::<LimitLabel, Counter>::default();
        registry.register(
            "quota_refusals",
            "Requests or sign-ins refused by a limit, by limit",
            quota_refusals.clone(),
        );
        let oidc = Family::<EventLabel, Counter>::default();
        registry.register(
            "oidc_events",
            "OpenID Connect provider events: sign-ins, tokens, refusals, logouts, back-channel deliveries",
            oidc.clone(),
        );
        Self(Arc::new(Inner {
            registry,
            oidc,
            active,
            created,
            ended,
            verify,
            verify_failures,
            store_errors,
            quota_refusals,
        }))
    }

    /// Records one verification that took `elapsed`.
    pub fn observe_verify(&self, elapsed: Duration) {
        self.0.verify.observe(elapsed);
    }

    /// Counts one request failed by the store.
    pub fn store_error(&self, kind: StoreErrorKind) {
        self.0
            .store_errors
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc();
    }

    /// Counts one refusal by the limit named `limit`
    /// (`sessionary_quota_refusals_total{limit="..."}`). Quotas call this when
    /// they refuse; the concurrent-session limit is counted from its
    /// `limit_rejected` event as [`CONCURRENT_SESSIONS`]. Use a fixed set of
    /// names (never a user or an address): each name is a time series.
    pub fn quota_refused(&self, limit: impl Into<Cow<'static, str>>) {
        self.0
            .quota_refusals
            .get_or_create(&LimitLabel {
                limit: limit.into(),
            })
            .inc();
    }

    /// Counts one event of the OpenID Connect provider.
    pub fn oidc(&self, event: OidcEvent) {
        self.0
            .oidc
            .get_or_create(&EventLabel {
                event: event.as_str(),
            })
            .inc();
    }

    /// The OpenMetrics text of every metric, ending with `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }
}

impl EventSink for Metrics {
    fn emit(&self, event: &Event) {
        let m = &self.0;
        match &event.kind {
            EventKind::Created { authenticated } => {
                let kind = if *authenticated { "user" } else { "anonymous" };
                m.created.get_or_create(&KindLabel { kind }).inc();
                m.active.inc();
            }
            EventKind::Ended { reason } => {
                m.ended
                    .get_or_create(&ReasonLabel {
                        reason: reason.as_str(),
                    })
                    .inc();
                m.active.dec();
            }
            EventKind::VerifyFailed { reason } => {
                m.verify_failures
                    .get_or_create(&ReasonLabel { reason })
                    .inc();
            }
            EventKind::LimitRejected => self.quota_refused(CONCURRENT_SESSIONS),
            // Quota names come from the configuration and routes (validated
            // unit names, `bytes_in`, `bytes_out`): a small fixed set.
            EventKind::QuotaRefused { quota } => self.quota_refused(quota.clone()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use sessionary_core::{EndReason, SessionId, Timestamp};

    fn event(kind: EventKind) -> Event {
        Event {
            at: Timestamp(0),
            session_id: Some(SessionId::generate().unwrap()),
            user: None,
            ip: None,
            kind,
        }
    }

    #[test]
    fn events_move_the_counters() {
        let m = Metrics::new();
        m.emit(&event(EventKind::Created {
            authenticated: true,
        }));
        m.emit(&event(EventKind::Created {
            authenticated: false,
        }));
        m.emit(&event(EventKind::Ended {
            reason: EndReason::ExpiredIdle,
        }));
        m.emit(&event(EventKind::LimitRejected));
        m.emit(&event(EventKind::QuotaRefused {
            quota: "downloads".into(),
        }));
        let text = m.render();
        for line in [
            "sessionary_sessions_active 1",
            "sessionary_sessions_created_total{kind=\"user\"} 1",
            "sessionary_sessions_created_total{kind=\"anonymous\"} 1",
            "sessionary_sessions_ended_total{reason=\"expired_idle\"} 1",
            "sessionary_quota_refusals_total{limit=\"concurrent_sessions\"} 1",
            "sessionary_quota_refusals_total{limit=\"downloads\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn store_errors_are_counted_by_kind() {
        let m = Metrics::new();
        let e = StoreError::unavailable(std::io::Error::other("down"));
        m.store_error(StoreErrorKind::of(&e));
        m.store_error(StoreErrorKind::of(&e));
        let e = StoreError::corrupt(std::io::Error::other("bad bytes"));
        m.store_error(StoreErrorKind::of(&e));
        let text = m.render();
        for line in [
            "sessionary_store_errors_total{kind=\"unavailable\"} 2",
            "sessionary_store_errors_total{kind=\"corrupt\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn the_histogram_is_cumulative() {
        let m = Metrics::new();
        m.observe_verify(Duration::from_micros(5));
        m.observe_verify(Duration::from_micros(300));
        m.observe_verify(Duration::from_secs(3));
        let text = m.render();
        for line in [
            "sessionary_verify_duration_seconds_bucket{le=\"0.00001\"} 1",
            "sessionary_verify_duration_seconds_bucket{le=\"0.0005\"} 2",
            "sessionary_verify_duration_seconds_bucket{le=\"1.0\"} 2",
            "sessionary_verify_duration_seconds_bucket{le=\"+Inf\"} 3",
            "sessionary_verify_duration_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
