//! Sentinel mode (`redis+sentinel://`) on a private deployment of one
//! primary, two replicas and three sentinels (`sessionary_testkit::redis_sentinel`):
//!
//! - the conformance suite on a Sentinel-connected store (one deployment
//!   shared by the cases running at the same time, a key prefix per case);
//! - a failover asked of the sentinels (`SENTINEL FAILOVER`) under a
//!   workload of creates, touches, rotations and revocations, with the WAIT
//!   mode on every replica: no acknowledged write lost, no revocation
//!   undone, and the store works again without a restart within a bound;
//! - the same with `kill -9` of the primary;
//! - `RedisFanout` following the primary.
//!
//! Skips without `redis-server` on PATH (fails when `CI=true`).

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sessionary_core::fanout::{Fanout, RemoteKind};
use sessionary_core::store::{Lookup, StoreError};
use sessionary_core::{
    EndReason, Error, NewSession, Privilege, SessionId, SessionManager, SessionStore, SessionToken,
    Timestamp, UserId,
};
use sessionary_redis::{RedisFanout, RedisOptions, RedisStore};
use sessionary_testkit::Keeping;
use sessionary_testkit::redis_sentinel::SentinelSet;
use sessionary_testkit::redis_server::skip;

/// The store's timeout in the fault tests.
const TIMEOUT: Duration = Duration::from_millis(1000);
/// How long a write waits for the replicas in the fault tests.
const ACK_WAIT: Duration = Duration::from_millis(300);
/// How long the sentinels may take to agree on a new primary.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);
/// The generous bound on the store working again after the fault (measured
/// 2.4-3.6 s after `kill -9`, 10.4-11.4 s after `SENTINEL FAILOVER` with WAIT
/// on both replicas; see ARCHITECTURE.md, "Sentinel").
const RECOVERY_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Conformance, on one deployment shared by the cases that run together.

static SHARED: Mutex<Weak<SentinelSet>> = Mutex::new(Weak::new());

/// The running deployment, or a new one; it stops when the last case
/// holding it ends.
fn shared_set() -> std::io::Result<Arc<SentinelSet>> {
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(set) = slot.upgrade() {
        return Ok(set);
    }
    let set = Arc::new(SentinelSet::start()?);
    *slot = Arc::downgrade(&set);
    Ok(set)
}

async fn make() -> Option<Arc<dyn SessionStore>> {
    let set = match tokio::task::spawn_blocking(shared_set).await.unwrap() {
        Ok(set) => set,
        Err(e) => {
            skip("sentinel conformance", &format!("cannot start: {e}"));
            return None;
        }
    };
    let prefix = format!("sentinel-test:{}:", SessionId::generate().unwrap());
    let options = RedisOptions::new().with_key_prefix(prefix);
    let store = RedisStore::connect(&set.url(), options).await.unwrap();
    // A Sentinel-connected store under its own prefix, keeping the deployment up.
    Some(Keeping::store(Arc::new(store), set))
}

sessionary_testkit::store_conformance!(optional make);

// ---------------------------------------------------------------------------
// Faults under a workload.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Create,
    Touch,
    Rotate,
    End,
}

/// One operation and what the caller was told.
#[derive(Debug)]
struct Op {
    kind: Kind,
    ok: bool,
    at: Instant,
}

/// A session as its client knows it.
#[derive(Debug)]
struct Tracked {
    id: SessionId,
    /// Every token it had; the last one is current if no write failed.
    tokens: Vec<SessionToken>,
    /// An end was acknowledged.
    ended: bool,
    /// A rotation or end failed: its outcome is unknown, the session is no
    /// longer used (its current token is unknown).
    uncertain: bool,
}

/// The workload's record.
#[derive(Debug, Default)]
struct Log {
    ops: Vec<Op>,
    sessions: Vec<Tracked>,
    /// Failures other than "unavailable": an acknowledged session that is
    /// gone or ended (lost writes) or any other error.
    anomalies: Vec<String>,
}

impl Log {
    /// Only "store unavailable" (503) is an acceptable failure.
    fn failed(&mut self, e: &Error, what: &str) {
        if !matches!(e, Error::Store(StoreError::Unavailable(_))) {
            self.anomalies.push(format!("{what}: {e:?}"));
        }
    }
}

/// One client: creates (one user each), touches, rotates and ends sessions
/// until `stop`, recording every outcome.
async fn client(task: usize, manager: Arc<SessionManager>, stop: Arc<AtomicBool>) -> Log {
    let mut log = Log::default();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let live: Vec<usize> = (0..log.sessions.len())
            .filter(|&s| !log.sessions[s].ended && !log.sessions[s].uncertain)
            .collect();
        let kind = match (i % 6, live.is_empty()) {
            (_, true) | (0 | 1, _) => Kind::Create,
            (2 | 3, _) => Kind::Touch,
            (4, _) => Kind::Rotate,
            _ => Kind::End,
        };
        let pick = live.get(i % live.len().max(1)).copied();
        let ok = match (kind, pick) {
            (Kind::Create, _) => {
                let user = UserId::new(format!("w{task}-{i}")).unwrap();
                match manager.create(NewSession::user(user)).await {
                    Ok(issued) => {
                        log.sessions.push(Tracked {
                            id: issued.session.id,
                            tokens: vec![issued.token],
                            ended: false,
                            uncertain: false,
                        });
                        true
                    }
                    Err(e) => {
                        log.failed(&e, "create");
                        false
                    }
                }
            }
            (Kind::Touch, Some(s)) => {
                let token = log.sessions[s].tokens.last().unwrap().encode();
                match manager.extend(&token).await {
                    Ok(_) => true,
                    Err(e) => {
                        log.failed(&e, "touch of an acknowledged session");
                        false
                    }
                }
            }
            (Kind::Rotate, Some(s)) => {
                let change = Privilege {
                    reauthenticated: true,
                    ..Privilege::default()
                };
                match manager.regenerate(&log.sessions[s].id, change).await {
                    Ok(issued) => {
                        log.sessions[s].tokens.push(issued.token);
                        true
                    }
                    Err(e) => {
                        log.failed(&e, "rotation of an acknowledged session");
                        log.sessions[s].uncertain = true;
                        false
                    }
                }
            }
            (Kind::End, Some(s)) => {
                match manager
                    .end_session(&log.sessions[s].id, EndReason::RevokedByAdmin)
                    .await
                {
                    Ok(_) => {
                        log.sessions[s].ended = true;
                        true
                    }
                    Err(e) => {
                        log.failed(&e, "revocation of an acknowledged session");
                        log.sessions[s].uncertain = true;
                        false
                    }
                }
            }
            _ => continue,
        };
        log.ops.push(Op {
            kind,
            ok,
            at: Instant::now(),
        });
        if !ok {
            // Real time: waiting for real processes to fail over.
            tokio::time::sleep(Duration::from_millis(10)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    log
}

/// The final state, read from the new primary, against the record: every
/// acknowledged create or rotation loads by its latest token unless later
/// ended or left uncertain; every older token is dead; every acknowledged
/// end stays ended. Returns the number of sessions checked and the
/// violations found.
async fn check(store: &RedisStore, logs: &[Log]) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut bad = Vec::new();
    for t in logs.iter().flat_map(|l| &l.sessions) {
        checked += 1;
        let (current, older) = t.tokens.split_last().unwrap();
        for old in older {
            let l = store.load(&old.hash(), None).await.unwrap();
            if matches!(l, Lookup::Found(_)) {
                bad.push(format!(
                    "a token replaced by an acknowledged rotation works again ({:?})",
                    t.id
                ));
            }
        }
        let l = store.load(&current.hash(), None).await.unwrap();
        if t.ended {
            if !matches!(l, Lookup::Ended(_)) {
                bad.push(format!(
                    "an acknowledged revocation was undone: {l:?} ({:?})",
                    t.id
                ));
            }
        } else if t.uncertain {
            // A rotation or end whose outcome the client never learnt: the
            // token is alive, or replaced / ended, but never unknown.
            if matches!(l, Lookup::Missing) {
                bad.push(format!("an acknowledged session is lost ({:?})", t.id));
            }
        } else if !matches!(&l, Lookup::Found(r) if r.id == t.id) {
            bad.push(format!(
                "an acknowledged create or rotation is lost: {l:?} ({:?})",
                t.id
            ));
        }
    }
    (checked, bad)
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `SENTINEL FAILOVER m`.
    Failover,
    /// `kill -9` of the primary; it comes back as a replica once the
    /// sentinels agree on a new primary (WAIT 2 needs two replicas).
    Kill,
}

async fn under_fault(fault: Fault) {
    let name = format!("sentinel {fault:?}");
    let mut set = match tokio::task::spawn_blocking(SentinelSet::start)
        .await
        .unwrap()
    {
        Ok(s) => s,
        Err(e) => {
            skip(&name, &format!("cannot start: {e}"));
            return;
        }
    };
    let options = RedisOptions::new()
        .with_key_prefix("faults:")
        .with_timeout(TIMEOUT)
        .with_replica_acks(2, ACK_WAIT);
    let store = RedisStore::connect(&set.url(), options.clone())
        .await
        .unwrap();
    let clock = sessionary_testkit::start();
    let manager = Arc::new(sessionary_testkit::manager(Arc::new(store.clone()), &clock));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|t| tokio::spawn(client(t, manager.clone(), stop.clone())))
        .collect();

    // Real time: the workload runs against real processes.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let faulted = Instant::now();
    let (old, new) = tokio::task::block_in_place(|| {
        let old = match fault {
            Fault::Failover => set.failover().unwrap(),
            Fault::Kill => set.kill_primary().unwrap(),
        };
        let new = set.wait_new_primary(old, FAILOVER_LIMIT).unwrap();
        if let Fault::Kill = fault {
            set.restart_as_replica(old, new).unwrap();
        }
        (old, new)
    });
    let agreed = faulted.elapsed();

    // Run on until every client has had an acknowledged write after the
    // fault, then one more second.
    let recovered = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let probe = sessionary_testkit::record(Some("probe"), Timestamp(1_767_225_600_000)).1;
        if store.create(probe, None).await.is_ok() {
            break faulted.elapsed();
        }
        assert!(
            faulted.elapsed() < RECOVERY_LIMIT,
            "no acknowledged write within {RECOVERY_LIMIT:?} of the fault"
        );
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for t in tasks {
        logs.push(t.await.unwrap());
    }

    // The checks read from the primary the sentinels settle on (the store
    // follows it). Under load Sentinel may fail over once more (a busy
    // machine can miss `down-after-milliseconds`); with `WAIT 2` every
    // promoted node holds every acknowledged write, so the checks hold on
    // any later primary. They wait until it is stable and takes writes.
    let settled = tokio::task::block_in_place(|| set.settled_primary(RECOVERY_LIMIT)).unwrap();
    if settled != new {
        eprintln!(
            "{name}: the sentinels failed over once more ({new} -> {settled}); checking there"
        );
    }
    let deadline = Instant::now() + RECOVERY_LIMIT;
    loop {
        let probe = sessionary_testkit::record(Some("probe"), Timestamp(1_767_225_600_000)).1;
        if store.create(probe, None).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no write on the settled primary");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (checked, mut violations) = check(&store, &logs).await;
    violations.extend(logs.iter().flat_map(|l| l.anomalies.iter().cloned()));
    let ops: Vec<&Op> = logs.iter().flat_map(|l| &l.ops).collect();
    let failed: Vec<&&Op> = ops.iter().filter(|o| !o.ok).collect();
    let count = |k: Kind| {
        let all = ops.iter().filter(|o| o.kind == k).count();
        let bad = failed.iter().filter(|o| o.kind == k).count();
        format!("{k:?} {all} ({bad} failed)")
    };
    let unavailable = match (failed.first(), failed.last()) {
        (Some(a), Some(b)) => {
            let first = failed.iter().map(|o| o.at).min().unwrap_or(a.at);
            let last = failed.iter().map(|o| o.at).max().unwrap_or(b.at);
            last - first
        }
        _ => Duration::ZERO,
    };
    eprintln!(
        "sentinel {fault:?}: primary {old} -> {new}; sentinels agreed after {agreed:?}, \
         first acknowledged write {recovered:?} after the fault; {} ops: {}, {}, {}, {}; \
         failures spread over {unavailable:?}; {checked} sessions checked, \
         {} violations (lost or undone acknowledged writes)",
        ops.len(),
        count(Kind::Create),
        count(Kind::Touch),
        count(Kind::Rotate),
        count(Kind::End),
        violations.len(),
    );
    assert!(
        violations.is_empty(),
        "{} violations, e.g. {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    assert!(
        ops.iter().any(|o| o.ok && o.at > faulted + recovered),
        "no client write succeeded after the recovery"
    );
    assert!(
        ops.iter().filter(|o| o.ok && o.kind != Kind::Touch).count() > 50,
        "the workload did too little to mean anything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_under_load_loses_no_acknowledged_write() {
    under_fault(Fault::Failover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_primary_loses_no_acknowledged_write_with_wait() {
    under_fault(Fault::Kill).await;
}

// ---------------------------------------------------------------------------
// Fanout.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fanout_follows_the_primary() {
    let set = match tokio::task::spawn_blocking(SentinelSet::start)
        .await
        .unwrap()
    {
        Ok(s) => s,
        Err(e) => {
            skip("sentinel fanout", &format!("cannot start: {e}"));
            return;
        }
    };
    let a = RedisFanout::connect(&set.url(), "fan:").await.unwrap();
    let b = RedisFanout::connect(&set.url(), "fan:").await.unwrap();
    let mut on_b = b.subscribe();
    let event = |n: i64| sessionary_core::fanout::RemoteEvent::missed(Timestamp(n));
    // A plain event through the first primary ("missed" is only a carrier
    // here: its timestamp tells the events apart).
    a.publish(event(1));
    let got = tokio::time::timeout(Duration::from_secs(5), on_b.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.at, Timestamp(1));

    let old = tokio::task::block_in_place(|| set.failover().unwrap());
    tokio::task::block_in_place(|| set.wait_new_primary(old, FAILOVER_LIMIT).unwrap());
    // The subscriber reports the gap, then hears what is published on the
    // new primary.
    let started = Instant::now();
    let mut saw_gap = false;
    let mut n = 100;
    loop {
        n += 1;
        a.publish(event(n));
        match tokio::time::timeout(Duration::from_millis(200), on_b.recv()).await {
            Ok(Ok(e)) if e.kind == RemoteKind::Missed && e.at == Timestamp(0) => saw_gap = true,
            Ok(Ok(e)) if saw_gap && e.at.0 > 100 => break,
            _ => {}
        }
        assert!(
            started.elapsed() < RECOVERY_LIMIT,
            "the fanout did not recover within {RECOVERY_LIMIT:?} (gap reported: {saw_gap})"
        );
    }
    eprintln!(
        "sentinel fanout: events flow again {:?} after the sentinels agreed",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
