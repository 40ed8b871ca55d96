//! `NewDeviceAlerts` against `MemoryStore` with a `MockClock`: the first
//! device, new and known devices, networks, the rate limit, concurrency,
//! failing notifiers and the bound on known devices. Each test fails if the
//! rule it names is removed.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use async_trait::async_trait;
use sessionary_core::{
    Device, MemoryStore, MockClock, NewSession, SessionManager, SessionRecord, SessionStore, UserId,
};
use sessionary_notify::{
    ALERTS_SENT_KEY, Alert, KNOWN_DEVICES_KEY, NEW_DEVICE, NewDeviceAlerts, Notifier, NotifyError,
    Outcome,
};

const CHROME_LINUX: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const FIREFOX_WINDOWS: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0";

/// Keeps what it is asked to send; fails every time when `fail` is set.
#[derive(Debug, Default)]
struct Recorder {
    sent: Mutex<Vec<Alert>>,
    fail: bool,
}

impl Recorder {
    fn sent(&self) -> Vec<Alert> {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Notifier for Recorder {
    async fn send(&self, alert: &Alert) -> Result<(), NotifyError> {
        if self.fail {
            return Err(NotifyError::Status(503));
        }
        if let Ok(mut s) = self.sent.lock() {
            s.push(alert.clone());
        }
        Ok(())
    }
}

struct World {
    clock: MockClock,
    manager: SessionManager,
    recorder: Arc<Recorder>,
    alerts: NewDeviceAlerts,
}

fn world() -> Result<World> {
    world_with(Arc::new(MemoryStore::new()), Recorder::default())
}

fn world_with(store: Arc<dyn SessionStore>, recorder: Recorder) -> Result<World> {
    let clock = MockClock::default();
    let manager = SessionManager::builder(store)
        .with_clock(Arc::new(clock.clone()))
        .build()?;
    let recorder = Arc::new(recorder);
    let alerts = NewDeviceAlerts::new(manager.clone(), recorder.clone());
    Ok(World {
        clock,
        manager,
        recorder,
        alerts,
    })
}

fn alice() -> UserId {
    UserId::new("alice").unwrap_or_else(|_| unreachable!("a valid user id"))
}

impl World {
    /// A signed-in session of alice from `ip` with `ua`.
    async fn session(&self, ip: &str, ua: &str) -> Result<Arc<SessionRecord>> {
        let ip: IpAddr = ip.parse()?;
        let new = NewSession::user(alice()).with_device(Device::new(Some(ip), Some(ua)));
        Ok(self.manager.create(new).await?.session)
    }

    /// Signs alice in from `ip` with `ua` and reports what the watcher did.
    async fn sign_in(&self, ip: &str, ua: &str) -> Result<Outcome> {
        let s = self.session(ip, ua).await?;
        Ok(self.alerts.sign_in(&s).await?)
    }
}

#[tokio::test]
async fn first_device_sends_no_alert_but_is_recorded() -> Result<()> {
    let w = world()?;
    assert!(matches!(
        w.sign_in("203.0.113.7", CHROME_LINUX).await?,
        Outcome::FirstDevice
    ));
    assert!(w.recorder.sent().is_empty());
    let known = w.alerts.known_devices(&alice()).await?;
    assert_eq!(known.len(), 1);
    assert_eq!(known[0].label, "Chrome on Linux");
    assert_eq!(known[0].network.as_deref(), Some("203.0.113.0/24"));
    Ok(())
}

#[tokio::test]
async fn alert_sent_once_for_a_new_device_and_never_for_a_known_one() -> Result<()> {
    let w = world()?;
    w.sign_in("203.0.113.7", CHROME_LINUX).await?;
    w.clock.advance(Duration::from_secs(60));
    let s = w.session("198.51.100.20", FIREFOX_WINDOWS).await?;
    let Outcome::Alerted(alert) = w.alerts.sign_in(&s).await? else {
        panic!("a new device alerts");
    };
    assert_eq!(w.recorder.sent(), std::slice::from_ref(&alert));
    assert_eq!(alert.kind, NEW_DEVICE);
    assert_eq!(alert.user, alice());
    assert_eq!(alert.device, "Firefox on Windows 10");
    assert_eq!(alert.ip, Some("198.51.100.20".parse()?));
    assert_eq!(alert.network.as_deref(), Some("198.51.100.0/24"));
    assert_eq!(alert.session_id, s.id.to_string());
    assert_eq!(alert.at, w.manager.now());
    assert_eq!(alert.id.len(), 32);
    assert_eq!(
        alert.subject,
        "New sign-in to your account from Firefox on Windows 10"
    );
    assert!(
        alert.body.contains("Network: 198.51.100.0/24"),
        "{}",
        alert.body
    );
    // Never a credential: not the token's hash, nor anything like it.
    let json = serde_json::to_string(&alert)?;
    assert!(!json.contains("token"), "{json}");

    // The same device again, and the first one again: nothing more.
    for (ip, ua) in [
        ("198.51.100.20", FIREFOX_WINDOWS),
        ("203.0.113.7", CHROME_LINUX),
        ("198.51.100.20", FIREFOX_WINDOWS),
    ] {
        w.clock.advance(Duration::from_secs(60));
        assert!(matches!(w.sign_in(ip, ua).await?, Outcome::Known));
    }
    assert_eq!(w.recorder.sent().len(), 1);
    let known = w.alerts.known_devices(&alice()).await?;
    assert_eq!(known.len(), 2);
    assert_eq!(known[0].label, "Firefox on Windows 10"); // most recently seen first
    assert!(known[0].last_seen > known[0].first_seen);
    Ok(())
}

#[tokio::test]
async fn another_address_in_the_same_network_is_not_new() -> Result<()> {
    let w = world()?;
    w.sign_in("203.0.113.7", CHROME_LINUX).await?;
    assert!(matches!(
        w.sign_in("203.0.113.200", CHROME_LINUX).await?,
        Outcome::Known
    ));
    // IPv6: one /48.
    w.sign_in("2001:db8:1:2::1", CHROME_LINUX).await?;
    let before = w.recorder.sent().len();
    assert!(matches!(
        w.sign_in("2001:db8:1:ffff::9", CHROME_LINUX).await?,
        Outcome::Known
    ));
    assert_eq!(w.recorder.sent().len(), before);
    Ok(())
}

#[tokio::test]
async fn another_network_with_the_same_browser_alerts() -> Result<()> {
    let w = world()?;
    w.sign_in("203.0.113.7", CHROME_LINUX).await?;
    let out = w.sign_in("203.0.114.7", CHROME_LINUX).await?;
    assert!(out.alert_sent(), "{out:?}");
    let sent = w.recorder.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].network.as_deref(), Some("203.0.114.0/24"));
    Ok(())
}

#[tokio::test]
async fn alerts_are_rate_limited_per_user_and_hour() -> Result<()> {
    let w = world()?;
    w.sign_in("10.0.0.1", CHROME_LINUX).await?;
    let mut outcomes = Vec::new();
    for net in 1..=4 {
        w.clock.advance(Duration::from_secs(60));
        outcomes.push(w.sign_in(&format!("10.0.{net}.1"), CHROME_LINUX).await?);
    }
    assert_eq!(outcomes.iter().filter(|o| o.alert_sent()).count(), 3);
    assert!(matches!(outcomes[3], Outcome::RateLimited), "{outcomes:?}");
    assert_eq!(w.recorder.sent().len(), 3);
    // The limited device was still recorded: no alert for it later.
    w.clock.advance(Duration::from_secs(3600));
    assert!(matches!(
        w.sign_in("10.0.4.1", CHROME_LINUX).await?,
        Outcome::Known
    ));
    // An hour after the first alerts, new devices alert again.
    assert!(w.sign_in("10.0.5.1", CHROME_LINUX).await?.alert_sent());
    assert_eq!(w.recorder.sent().len(), 4);
    // The state is in the user's data (shared by every node).
    let (_, data) = w.manager.user_data(&alice()).await?;
    assert!(data.contains_key(KNOWN_DEVICES_KEY) && data.contains_key(ALERTS_SENT_KEY));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_sign_ins_from_one_new_device_send_one_alert() -> Result<()> {
    // A store that yields between each read and its compare-and-set, so the
    // ten tasks really interleave.
    let w = world_with(
        Arc::new(sessionary_testkit::YieldingStore::default()),
        Recorder::default(),
    )?;
    w.sign_in("203.0.113.7", CHROME_LINUX).await?;
    let mut sessions = Vec::new();
    for _ in 0..10 {
        sessions.push(w.session("198.51.100.20", FIREFOX_WINDOWS).await?);
    }
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|s| {
            let alerts = w.alerts.clone();
            tokio::spawn(async move { alerts.sign_in(&s).await })
        })
        .collect();
    let mut sent = 0;
    for t in tasks {
        match t.await?? {
            Outcome::Alerted(_) => sent += 1,
            Outcome::Known => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(sent, 1);
    assert_eq!(w.recorder.sent().len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_failing_notifier_does_not_fail_the_sign_in_and_the_device_is_recorded() -> Result<()> {
    let w = world_with(
        Arc::new(MemoryStore::new()),
        Recorder {
            fail: true,
            ..Recorder::default()
        },
    )?;
    w.sign_in("203.0.113.7", CHROME_LINUX).await?;
    let out = w.sign_in("198.51.100.20", FIREFOX_WINDOWS).await?;
    let Outcome::NotifyFailed { alert, error } = out else {
        panic!("expected NotifyFailed, got {out:?}");
    };
    assert!(matches!(error, NotifyError::Status(503)));
    assert_eq!(alert.device, "Firefox on Windows 10");
    assert!(matches!(
        w.sign_in("198.51.100.20", FIREFOX_WINDOWS).await?,
        Outcome::Known
    ));
    Ok(())
}

#[tokio::test]
async fn anonymous_sessions_are_ignored() -> Result<()> {
    let w = world()?;
    let s = w.manager.create(NewSession::anonymous()).await?.session;
    assert!(matches!(w.alerts.sign_in(&s).await?, Outcome::NotSignedIn));
    assert!(w.manager.user_data(&alice()).await?.1.is_empty());
    Ok(())
}

#[tokio::test]
async fn the_least_recently_seen_device_is_forgotten_past_the_bound() -> Result<()> {
    let mut w = world()?;
    w.alerts = w.alerts.clone().with_max_known(2).with_max_alerts(100);
    w.sign_in("10.0.1.1", CHROME_LINUX).await?; // A, first
    w.clock.advance(Duration::from_secs(1));
    w.sign_in("10.0.2.1", CHROME_LINUX).await?; // B
    w.clock.advance(Duration::from_secs(1));
    w.sign_in("10.0.1.1", CHROME_LINUX).await?; // A seen again
    w.clock.advance(Duration::from_secs(1));
    w.sign_in("10.0.3.1", CHROME_LINUX).await?; // C: B goes
    let known = w.alerts.known_devices(&alice()).await?;
    let nets: Vec<_> = known.iter().filter_map(|d| d.network.as_deref()).collect();
    assert_eq!(nets, ["10.0.3.0/24", "10.0.1.0/24"]);
    assert!(w.sign_in("10.0.2.1", CHROME_LINUX).await?.alert_sent());
    Ok(())
}
