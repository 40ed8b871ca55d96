//! Time, injected: every rule that depends on "now" asks a [`Clock`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time: milliseconds since the Unix epoch, UTC.
///
/// Stored as a plain integer so every store can index and compare it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch (rounded down).
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This instant moved forward by `d`, saturating.
    #[must_use]
    pub fn plus(self, d: Duration) -> Self {
        Self(self.0.saturating_add(duration_millis(d)))
    }

    /// This instant moved forward by `ms` milliseconds, saturating.
    #[must_use]
    pub const fn add_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self` (negative if `earlier` is later).
    pub const fn millis_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// RFC 3339 text in UTC with millisecond precision, e.g. `2026-11-26T04:54:43.123Z`.
    pub fn to_rfc3339(self) -> String {
        let b = self.rfc3339_bytes();
        // The buffer holds ASCII digits and punctuation only.
        String::from_utf8_lossy(&b).into_owned()
    }

    /// [`Self::to_rfc3339`] into a fixed buffer, without allocating (for headers
    /// written on every response). Instants outside years 0..=9999, which four
    /// digits cannot name, are clamped to the nearest end of that range (a
    /// saturated "never" reads as the last millisecond of 9999, not as year 0).
    pub fn rfc3339_bytes(self) -> [u8; 24] {
        // Years 1970..=9999, the common case, in unsigned arithmetic and two
        // digits at a time: this runs on every response of a live session.
        match u64::try_from(self.0) {
            Ok(ms) if ms < YEAR_10000_MS => rfc3339_bytes_after_epoch(ms),
            Ok(_) => rfc3339_bytes_after_epoch(YEAR_10000_MS - 1),
            Err(_) => Self(self.0.max(YEAR_0_MS)).rfc3339_bytes_any(),
        }
    }

    /// [`Self::rfc3339_bytes`] for any instant (signed arithmetic, digit by digit).
    fn rfc3339_bytes_any(self) -> [u8; 24] {
        let secs = self.0.div_euclid(1000);
        let milli = self.0.rem_euclid(1000);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut v: i64| {
            for i in (at..at + width).rev() {
                // `v.rem_euclid(10)` is 0..=9, so the conversion cannot fail.
                out[i] = b'0' + u8::try_from(v.rem_euclid(10)).unwrap_or(0);
                v /= 10;
            }
        };
        put(0, 4, y);
        put(5, 2, i64::from(m));
        put(8, 2, i64::from(d));
        put(11, 2, sod / 3600);
        put(14, 2, (sod % 3600) / 60);
        put(17, 2, sod % 60);
        put(20, 3, milli);
        out
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Converts a [`Duration`] to whole milliseconds, saturating at `i64::MAX`.
pub fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `10000-01-01T00:00:00Z` in milliseconds since the Unix epoch.
const YEAR_10000_MS: u64 = 253_402_300_800_000;
/// 0000-01-01T00:00:00Z (proleptic Gregorian), in ms since the epoch.
const YEAR_0_MS: i64 = -62_167_219_200_000;

/// `"00" "01" ... "99"`.
const TWO_DIGITS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// [`Timestamp::rfc3339_bytes`] for `0 <= ms < YEAR_10000_MS`.
fn rfc3339_bytes_after_epoch(ms: u64) -> [u8; 24] {
    let secs = ms / 1000;
    let milli = ms % 1000;
    let sod = secs % 86_400;
    // Hinnant's days-to-civil, as below, for days >= 0.
    let z = secs / 86_400 + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put2 = |at: usize, v: u64| {
        // Every `v` is below 100 (the year is below 10000).
        let i = 2 * (v % 100) as usize;
        out[at..at + 2].copy_from_slice(&TWO_DIGITS[i..i + 2]);
    };
    put2(0, y / 100);
    put2(2, y % 100);
    put2(5, m);
    put2(8, d);
    put2(11, sod / 3600);
    put2(14, sod / 60 % 60);
    put2(17, sod % 60);
    put2(21, milli % 100);
    out[20] = b'0' + (milli / 100) as u8;
    out
}

// Howard Hinnant's days-to-civil algorithm (public domain arithmetic).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A source of the current time.
///
/// The engine never reads the system clock directly, so tests move time with
/// [`MockClock`] instead of sleeping.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;

    /// For clocks that jump (a [`MockClock`] moved by a test): a receiver that
    /// is notified with the new time after each jump, so that code waiting for
    /// an instant by this clock (the session events stream) can look again.
    /// Clocks that move on their own return `None` (the default).
    fn jumps(&self) -> Option<tokio::sync::watch::Receiver<Timestamp>> {
        None
    }
}

/// The real wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(duration_millis)
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// # Examples
///
/// ```
/// use sessionary_core::{Clock, MockClock};
/// use std::time::Duration;
///
/// let clock = MockClock::new(1_000);
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(clock.now().as_millis(), 61_000);
/// ```
#[derive(Clone, Debug)]
pub struct MockClock {
    now: Arc<AtomicI64>,
    /// Tells [`Clock::jumps`] receivers about each move.
    jumps: Arc<tokio::sync::watch::Sender<Timestamp>>,
}

impl MockClock {
    /// A clock standing at `millis` since the epoch.
    pub fn new(millis: i64) -> Self {
        Self {
            now: Arc::new(AtomicI64::new(millis)),
            jumps: Arc::new(tokio::sync::watch::Sender::new(Timestamp(millis))),
        }
    }

    /// Moves the clock forward (saturating).
    pub fn advance(&self, d: Duration) {
        let d = duration_millis(d);
        self.jump(|now| now.saturating_add(d));
    }

    /// Sets the clock to an absolute instant.
    pub fn set(&self, at: Timestamp) {
        self.jump(|_| at.0);
    }

    /// Moves the time and tells the [`Clock::jumps`] receivers, as one step:
    /// concurrent moves are published in the order they happened, so the last
    /// value a receiver sees is always `now()`.
    fn jump(&self, to: impl FnOnce(i64) -> i64) {
        self.jumps.send_modify(|published| {
            let next = to(self.now.load(Ordering::SeqCst));
            self.now.store(next, Ordering::SeqCst);
            *published = Timestamp(next);
        });
    }
}

impl Default for MockClock {
    /// 2026-01-01T00:00:00Z.
    fn default() -> Self {
        Self::new(1_767_225_600_000)
    }
}

impl Clock for MockClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::SeqCst))
    }

    fn jumps(&self) -> Option<tokio::sync::watch::Receiver<Timestamp>> {
        Some(self.jumps.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_fast_path_matches_the_general_one() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut cases: Vec<i64> = vec![0, 1, 999, 1000, 86_399_999, 86_400_000, 951_782_400_000];
        let last = i64::try_from(YEAR_10000_MS).unwrap_or(i64::MAX) - 1;
        cases.extend([last - 1, last]);
        for _ in 0..200_000 {
            // xorshift: spread over the whole fast range.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push(i64::try_from(x % YEAR_10000_MS).unwrap_or(0));
        }
        for ms in cases {
            let t = Timestamp(ms);
            assert_eq!(t.rfc3339_bytes(), t.rfc3339_bytes_any(), "{ms}");
        }
        assert_eq!(Timestamp(last).to_rfc3339(), "9999-12-31T23:59:59.999Z");
        // Beyond four-digit years: clamped, never wrapped.
        assert_eq!(Timestamp(last + 1).to_rfc3339(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp(i64::MAX).to_rfc3339(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp(i64::MIN).to_rfc3339(), "0000-01-01T00:00:00.000Z");
        assert_eq!(Timestamp(-1).to_rfc3339(), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_767_225_600_123).to_rfc3339(),
            "2026-01-01T00:00:00.123Z"
        );
        assert_eq!(
            Timestamp(951_782_400_000).to_rfc3339(),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn mock_clock_moves_only_when_told() {
        let c = MockClock::new(5);
        let c2 = c.clone();
        assert_eq!(c.now(), Timestamp(5));
        c2.advance(Duration::from_millis(10));
        assert_eq!(c.now(), Timestamp(15));
    }
}
