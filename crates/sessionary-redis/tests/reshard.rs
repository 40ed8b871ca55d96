//! The Redis store across a Redis Cluster resharding: half of one master's
//! slots move to another master (`redis-cli --cluster reshard`, keys
//! migrated with `MIGRATE` while the Cluster keeps serving) while clients
//! verify (with touches), create, rotate and revoke sessions of 300 users
//! whose owner tags are spread over every master, and rotate the refresh
//! tokens of some of them (the API transport).
//!
//! Checked: during the move an operation either answers right or fails
//! with `StoreError::Unavailable` (never a wrong answer, another error or a
//! hang: every operation is bounded); afterwards every acknowledged session
//! verifies by its latest token unless it was revoked, no revoked session
//! and no replaced token verifies, each user's index lists its live
//! sessions, every refresh family rotates from its latest token (none lost,
//! none resurrected with its session's end), a spent refresh token is still
//! caught as reuse (and ends its session), and the same store (no restart, a
//! warm route cache) creates sessions on the new owner and answers for all
//! of them.
//!
//! Skips without `redis-server` on PATH (fails when `CI=true`).

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sessionary_core::store::StoreError;
use sessionary_core::{
    EndReason, Error, NewSession, Policy, Privilege, SessionId, SessionManager, SessionToken,
    UserId,
};
use sessionary_redis::{RedisOptions, RedisStore};
use sessionary_testkit::redis_cluster::RedisCluster;
use sessionary_testkit::redis_server::skip;

/// Users whose sessions exist before the move (tags spread over all masters).
const USERS: usize = 300;
/// Slots of the moving half of node 0 (which `redis-cli --cluster create`
/// gives 0-5460; the reshard moves its first slots) that get many keys each,
/// so their migration takes many `MIGRATE` batches, and most of the load.
const HOT_SLOTS: [u16; 3] = [100, 1300, 2600];
/// Users per hot slot, and sessions each of them has before the move.
const HOT_USERS: usize = 10;
const HOT_SESSIONS: usize = 30;
/// Concurrent clients during the move; client `t` works on users `u % TASKS == t`.
const TASKS: usize = 4;
/// The store's timeout.
const TIMEOUT: Duration = Duration::from_millis(1000);
/// Every operation of the workload is bounded by this: beyond it, a hang.
const OP_LIMIT: Duration = Duration::from_secs(5);
/// The generous bound on the move.
const MOVE_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Create,
    Verify,
    Touch,
    Rotate,
    End,
    /// A verification of a token that must not work (replaced or revoked).
    Dead,
    /// A refresh-token rotation (retried with the same token when unavailable).
    Refresh,
}

/// One operation: what was done, whether it failed (only "unavailable" is
/// accepted; anything else is an anomaly), when.
#[derive(Debug)]
struct Op {
    kind: Kind,
    ok: bool,
    at: Instant,
}

/// A session as its client knows it.
#[derive(Debug)]
struct Tracked {
    user: UserId,
    /// The user's tag is in a hot slot.
    hot: bool,
    id: SessionId,
    /// Every token it had; the last one is current unless `uncertain`.
    tokens: Vec<SessionToken>,
    /// An end was acknowledged.
    ended: bool,
    /// A rotation or end failed (unavailable): its outcome is unknown, the
    /// session is no longer used.
    uncertain: bool,
    /// Its refresh family, if it has one.
    refresh: Option<Family>,
}

/// A refresh family as its client knows it.
#[derive(Debug)]
struct Family {
    /// Every refresh token it had, encoded; the last one is current unless
    /// `uncertain`.
    tokens: Vec<String>,
    /// A rotation failed even when retried: which token is current is unknown.
    uncertain: bool,
}

impl Tracked {
    fn live(&self) -> bool {
        !self.ended && !self.uncertain
    }
}

#[derive(Debug, Default)]
struct Log {
    ops: Vec<Op>,
    sessions: Vec<Tracked>,
    /// Wrong answers, errors other than "unavailable", hangs.
    anomalies: Vec<String>,
    /// The "unavailable" errors, for the report.
    unavailable: Vec<String>,
}

fn unavailable(e: &Error) -> bool {
    matches!(e, Error::Store(StoreError::Unavailable(_)))
}

impl Log {
    /// Runs `f` bounded by [`OP_LIMIT`]: `None` (recorded as an anomaly) on a hang.
    async fn bounded<T>(
        &mut self,
        what: &str,
        f: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        match tokio::time::timeout(OP_LIMIT, f).await {
            Ok(v) => Some(v),
            Err(_) => {
                self.anomalies
                    .push(format!("{what}: no answer within {OP_LIMIT:?}"));
                None
            }
        }
    }

    /// The outcome of a write to session `s`: its value, or `None` with the
    /// session marked uncertain (the write may or may not have landed) and a
    /// failure recorded.
    fn settle<T>(&mut self, s: usize, what: &str, r: Option<Result<T, Error>>) -> Option<T> {
        match r {
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                self.failed(&e, what);
                self.sessions[s].uncertain = true;
                None
            }
            None => {
                self.sessions[s].uncertain = true;
                None
            }
        }
    }

    fn failed(&mut self, e: &Error, what: &str) {
        if unavailable(e) {
            self.unavailable.push(format!("{what}: {e:?}"));
        } else {
            self.anomalies.push(format!("{what}: {e:?}"));
        }
    }
}

/// One client: verifies (plain and with a touch), creates, rotates and
/// revokes sessions of its users until `stop`, and checks that replaced and
/// revoked tokens stay dead, recording every outcome.
async fn client(
    task: usize,
    manager: Arc<SessionManager>,
    hot_users: Vec<UserId>,
    mut log: Log,
    stop: Arc<AtomicBool>,
) -> Log {
    let cold_users: Vec<UserId> = (0..USERS)
        .filter(|u| u % TASKS == task)
        .map(|u| UserId::new(format!("u{u}")).unwrap())
        .collect();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        // Three operations in four on the hot users.
        let hot = i % 4 != 0;
        let users = if hot { &hot_users } else { &cold_users };
        let live: Vec<usize> = (0..log.sessions.len())
            .filter(|&s| log.sessions[s].live() && log.sessions[s].hot == hot)
            .collect();
        let dead: Vec<usize> = (0..log.sessions.len())
            .filter(|&s| log.sessions[s].ended || log.sessions[s].tokens.len() > 1)
            .collect();
        let families: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&s| {
                log.sessions[s]
                    .refresh
                    .as_ref()
                    .is_some_and(|f| !f.uncertain)
            })
            .collect();
        let kind = match i % 12 {
            _ if live.is_empty() => Kind::Create,
            0 | 1 => Kind::Create,
            2 | 3 => Kind::Verify,
            4 | 5 => Kind::Touch,
            6 => Kind::Rotate,
            7 => Kind::End,
            8 | 9 if !families.is_empty() => Kind::Refresh,
            _ if dead.is_empty() => Kind::Verify,
            _ => Kind::Dead,
        };
        // Spread over the users (and so over the slots) with a stride.
        let pick = live.get((i * 7919) % live.len().max(1)).copied();
        let ok = match kind {
            Kind::Create => {
                let user = users[(i * 31) % users.len()].clone();
                let r = log
                    .bounded("create", manager.create(NewSession::user(user.clone())))
                    .await;
                match r {
                    Some(Ok(issued)) => {
                        log.sessions.push(Tracked {
                            user,
                            hot,
                            id: issued.session.id,
                            tokens: vec![issued.token],
                            ended: false,
                            uncertain: false,
                            refresh: None,
                        });
                        true
                    }
                    Some(Err(e)) => {
                        log.failed(&e, "create");
                        false
                    }
                    None => false,
                }
            }
            Kind::Verify | Kind::Touch => {
                let s = pick.unwrap();
                let token = log.sessions[s].tokens.last().unwrap().encode();
                let r = if kind == Kind::Touch {
                    log.bounded("touch", manager.extend(&token)).await
                } else {
                    log.bounded("verify", manager.verify(&token)).await
                };
                match r {
                    Some(Ok(rec)) if rec.id == log.sessions[s].id => true,
                    Some(Ok(rec)) => {
                        log.anomalies.push(format!(
                            "{kind:?} of {:?} answered another session {:?}",
                            log.sessions[s].id, rec.id
                        ));
                        false
                    }
                    Some(Err(e)) => {
                        log.failed(&e, &format!("{kind:?} of a live session"));
                        false
                    }
                    None => false,
                }
            }
            Kind::Rotate => {
                let s = pick.unwrap();
                let change = Privilege {
                    reauthenticated: true,
                    ..Privilege::default()
                };
                let id = log.sessions[s].id;
                let r = log.bounded("rotate", manager.regenerate(&id, change)).await;
                match log.settle(s, "rotation of a live session", r) {
                    Some(issued) => {
                        log.sessions[s].tokens.push(issued.token);
                        true
                    }
                    None => false,
                }
            }
            Kind::End => {
                let s = pick.unwrap();
                let id = log.sessions[s].id;
                let r = log
                    .bounded(
                        "revoke",
                        manager.end_session(&id, EndReason::RevokedByAdmin),
                    )
                    .await;
                let ended = log.settle(s, "revocation of a live session", r).is_some();
                log.sessions[s].ended |= ended;
                ended
            }
            Kind::Refresh => {
                let s = families[(i * 7919) % families.len()];
                refresh(&manager, &mut log, s).await
            }
            Kind::Dead => {
                let s = dead[(i * 104_729) % dead.len()];
                let t = &log.sessions[s];
                // A revoked session's latest token, else a replaced one.
                let token = if t.ended {
                    t.tokens.last().unwrap().encode()
                } else {
                    t.tokens[0].encode()
                };
                match log.bounded("dead verify", manager.verify(&token)).await {
                    Some(Ok(_)) => {
                        let what = if log.sessions[s].ended {
                            "a revoked session verifies"
                        } else {
                            "a replaced token verifies"
                        };
                        log.anomalies
                            .push(format!("{what} ({:?})", log.sessions[s].id));
                        false
                    }
                    Some(Err(e)) if unavailable(&e) => {
                        log.unavailable.push(format!("dead verify: {e:?}"));
                        false
                    }
                    Some(Err(_)) => true,
                    None => false,
                }
            }
        };
        log.ops.push(Op {
            kind,
            ok,
            at: Instant::now(),
        });
        tokio::task::yield_now().await;
    }
    log
}

/// After the move: every acknowledged session verifies by its latest token
/// unless revoked or uncertain, every older token and every revoked session
/// is dead, and each user's list holds their live sessions. Returns the
/// sessions checked and the violations.
async fn check(manager: &SessionManager, logs: &[Log]) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut bad = Vec::new();
    let mut users = BTreeSet::new();
    for t in logs.iter().flat_map(|l| &l.sessions) {
        checked += 1;
        users.insert(t.user.clone());
        let (current, older) = t.tokens.split_last().unwrap();
        for old in older {
            if manager.verify(&old.encode()).await.is_ok() {
                bad.push(format!("a replaced token verifies ({:?})", t.id));
            }
        }
        let r = manager.verify(&current.encode()).await;
        if t.ended {
            if r.is_ok() {
                bad.push(format!("a revoked session verifies ({:?})", t.id));
            }
        } else if t.uncertain {
            match &r {
                Err(e) if unavailable(e) => {
                    bad.push(format!("unavailable after the move ({:?}): {e:?}", t.id));
                }
                _ => {}
            }
        } else if !matches!(&r, Ok(rec) if rec.id == t.id) {
            bad.push(format!(
                "an acknowledged session does not verify: {r:?} ({:?})",
                t.id
            ));
        }
    }
    for user in users {
        let listed: BTreeSet<SessionId> = manager
            .list(&user)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        for t in logs.iter().flat_map(|l| &l.sessions) {
            if t.user == user && t.live() && !listed.contains(&t.id) {
                bad.push(format!("{user:?}'s list lacks live session {:?}", t.id));
            }
        }
    }
    (checked, bad)
}

/// Rotates session `s`'s refresh token. A rotation that fails with
/// "unavailable" is retried with the same token: if the first attempt
/// landed, the retry is answered with its successor (the grace window; the
/// clock does not move), else it rotates; either way the client learns the
/// current token. Three failures in a row leave the family uncertain.
async fn refresh(manager: &SessionManager, log: &mut Log, s: usize) -> bool {
    let id = log.sessions[s].id;
    let Some(token) = log.sessions[s]
        .refresh
        .as_ref()
        .and_then(|f| f.tokens.last().cloned())
    else {
        return false;
    };
    for attempt in 0..3 {
        match log.bounded("refresh", manager.refresh(&token)).await {
            Some(Ok(r)) if r.session.id == id => {
                if r.retried && attempt == 0 {
                    log.anomalies
                        .push(format!("a first refresh was answered as a retry ({id:?})"));
                }
                if let Some(f) = log.sessions[s].refresh.as_mut() {
                    f.tokens.push(r.token.encode());
                }
                return true;
            }
            Some(Ok(r)) => {
                log.anomalies.push(format!(
                    "a refresh of {id:?} answered another session {:?}",
                    r.session.id
                ));
                return false;
            }
            Some(Err(e)) if unavailable(&e) => {
                log.unavailable.push(format!("refresh: {e:?}"));
            }
            Some(Err(e)) => {
                log.anomalies.push(format!(
                    "a refresh of a live session failed: {e:?} ({id:?})"
                ));
                return false;
            }
            None => break,
        }
    }
    if let Some(f) = log.sessions[s].refresh.as_mut() {
        f.uncertain = true;
    }
    false
}

/// After the move and [`check`]: every refresh family of an acknowledged
/// session rotates from its latest token (refused if the session was
/// revoked); then a spent token (two rotations old) of each live family that
/// rotated during the workload is caught as reuse and ends its session.
/// Returns the families checked and the violations.
async fn check_refresh(manager: &SessionManager, logs: &[Log]) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut bad = Vec::new();
    // (session, its first refresh token, its current session token)
    let mut spent = Vec::new();
    for t in logs.iter().flat_map(|l| &l.sessions) {
        let Some(f) = t.refresh.as_ref().filter(|f| !f.uncertain && !t.uncertain) else {
            continue;
        };
        checked += 1;
        let latest = f.tokens.last().unwrap();
        let r = manager.refresh(latest).await;
        if t.ended {
            if r.is_ok() {
                bad.push(format!(
                    "a revoked session's refresh token rotates ({:?})",
                    t.id
                ));
            }
            continue;
        }
        match r {
            Ok(r) if r.session.id == t.id && !r.retried => {
                // Rotated at least once before: its first token is now two
                // rotations old (the one before the latest is answered as a
                // retry within the grace window, and the clock stands still).
                if f.tokens.len() >= 2 {
                    spent.push((t.id, f.tokens[0].clone(), t.tokens.last().unwrap().encode()));
                }
            }
            other => bad.push(format!(
                "an acknowledged refresh family does not rotate from its latest token: {other:?} ({:?})",
                t.id
            )),
        }
    }
    if spent.is_empty() {
        bad.push("no refresh family rotated during the workload".to_owned());
    }
    for (id, first, session_token) in spent {
        match manager.refresh(&first).await {
            Err(Error::RefreshRefused(why)) if why.as_str() == "refresh_reused" => {}
            other => bad.push(format!(
                "a spent refresh token was not caught as reuse: {other:?} ({id:?})"
            )),
        }
        if manager.verify(&session_token).await.is_ok() {
            bad.push(format!(
                "reuse of a refresh token did not end its session ({id:?})"
            ));
        }
    }
    (checked, bad)
}

/// The store's owner tag of a user: `u:` and the id in lowercase hex.
fn tag_of(user: &str) -> String {
    let hex: String = user.bytes().map(|b| format!("{b:02x}")).collect();
    format!("u:{hex}")
}

/// The Cluster slot of a key whose hash tag is `tag`: CRC16 (XMODEM) mod 16384.
fn key_slot(tag: &str) -> u16 {
    let mut crc: u16 = 0;
    for b in tag.bytes() {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resharding_under_load_gives_no_wrong_answer() {
    let name = "reshard under load";
    let cluster = match tokio::task::spawn_blocking(|| RedisCluster::start(3))
        .await
        .unwrap()
    {
        Ok(c) => Arc::new(c),
        Err(e) => {
            skip(name, &format!("cannot start a Redis Cluster: {e}"));
            return;
        }
    };
    let options = RedisOptions::new().with_timeout(TIMEOUT);
    let store = RedisStore::connect(&cluster.url(), options).await.unwrap();
    let clock = sessionary_testkit::start();
    // A (never reached) limit, so every create reads its user's index and
    // the sessions in it: the multi-key path of `create.lua`.
    let mut policy = Policy::default();
    policy.default.max_sessions = Some(1000);
    let manager = Arc::new(sessionary_testkit::manager_with(
        Arc::new(store.clone()),
        &clock,
        policy,
    ));

    // Users whose tag is in a hot slot: found with the slot function (CRC16
    // of the tag), checked once against the server's.
    let mut hot_users: Vec<UserId> = Vec::new();
    let mut per_slot = [0usize; HOT_SLOTS.len()];
    for n in 0.. {
        let name = format!("h{n}");
        let slot = key_slot(&tag_of(&name));
        match HOT_SLOTS.iter().position(|&h| h == slot) {
            Some(k) if per_slot[k] < HOT_USERS => {
                per_slot[k] += 1;
                hot_users.push(UserId::new(name).unwrap());
            }
            _ => {}
        }
        if per_slot.iter().all(|&c| c == HOT_USERS) {
            break;
        }
    }
    {
        let client = redis::Client::open(cluster.node_urls()[0].clone()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let tag = tag_of(hot_users[0].as_str());
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(format!("x{{{tag}}}:y"))
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(slot, key_slot(&tag), "the test's slot function is wrong");
    }

    // Before the move: one session per spread user, many per hot user, a
    // few at a time.
    let mut logs: Vec<Log> = (0..TASKS).map(|_| Log::default()).collect();
    let mut wanted: Vec<(usize, UserId, bool)> = (0..USERS)
        .map(|u| (u % TASKS, UserId::new(format!("u{u}")).unwrap(), false))
        .collect();
    for (k, user) in hot_users.iter().enumerate() {
        for _ in 0..HOT_SESSIONS {
            wanted.push((k % TASKS, user.clone(), true));
        }
    }
    for chunk in wanted.chunks(20) {
        let made = futures_util::future::join_all(chunk.iter().map(|(t, user, hot)| {
            let manager = manager.clone();
            async move {
                let issued = manager
                    .create(NewSession::user(user.clone()))
                    .await
                    .unwrap();
                (*t, user.clone(), *hot, issued)
            }
        }))
        .await;
        for (t, user, hot, issued) in made {
            logs[t].sessions.push(Tracked {
                user,
                hot,
                id: issued.session.id,
                tokens: vec![issued.token],
                ended: false,
                uncertain: false,
                refresh: None,
            });
        }
    }
    // Refresh families for one session in three (so many in the hot slots).
    let mut families = 0;
    for log in &mut logs {
        for (k, t) in log.sessions.iter_mut().enumerate() {
            if k % 3 == 0 {
                let issued = manager.issue_refresh(&t.id).await.unwrap();
                t.refresh = Some(Family {
                    tokens: vec![issued.token.encode()],
                    uncertain: false,
                });
                families += 1;
            }
        }
    }
    let before: Vec<usize> = (0..3).map(|i| cluster.slot_count(i).unwrap()).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = logs
        .into_iter()
        .enumerate()
        .map(|(t, log)| {
            let hot: Vec<UserId> = hot_users
                .iter()
                .enumerate()
                .filter(|(k, _)| k % TASKS == t)
                .map(|(_, u)| u.clone())
                .collect();
            tokio::spawn(client(t, manager.clone(), hot, log, stop.clone()))
        })
        .collect();
    // Real time: the workload runs against real processes before the move.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let moving = before[0] / 2;
    let started = Instant::now();
    let moved = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.move_slots(0, 1, moving))
    };
    let moved = tokio::time::timeout(MOVE_LIMIT, moved).await;
    let took = started.elapsed();
    let ended = Instant::now();
    // Half a second more of the workload on the new slot map.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for t in tasks {
        logs.push(t.await.unwrap());
    }
    let anomalies: Vec<&String> = logs.iter().flat_map(|l| &l.anomalies).collect();
    let moved = moved
        .unwrap_or_else(|_| panic!("the move did not finish within {MOVE_LIMIT:?}"))
        .unwrap();
    assert!(
        moved.is_ok(),
        "the move failed: {moved:?}; the workload saw {} anomalies during it, e.g. {:#?}",
        anomalies.len(),
        &anomalies[..anomalies.len().min(10)]
    );
    let after: Vec<usize> = (0..3).map(|i| cluster.slot_count(i).unwrap()).collect();
    assert_eq!(
        after[0],
        before[0] - moving,
        "slots before {before:?}, after {after:?}"
    );
    assert_eq!(
        after[1],
        before[1] + moving,
        "slots before {before:?}, after {after:?}"
    );

    // What the nodes answered during the move: `TRYAGAIN` (the scripts'
    // guard, or Redis's multi-key check), `ASK` and `MOVED` redirections.
    let mut redirects = BTreeMap::new();
    for url in cluster.node_urls() {
        let client = redis::Client::open(url).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("errorstats")
            .query_async(&mut con)
            .await
            .unwrap();
        for l in info.lines() {
            if let Some((name, rest)) = l.strip_prefix("errorstat_").and_then(|l| l.split_once(':'))
            {
                let n: u64 = rest
                    .strip_prefix("count=")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                *redirects.entry(name.to_owned()).or_insert(0) += n;
            }
        }
    }

    let (checked, mut violations) = check(&manager, &logs).await;
    let (families_checked, refresh_violations) = check_refresh(&manager, &logs).await;
    violations.extend(refresh_violations);
    violations.extend(logs.iter().flat_map(|l| l.anomalies.iter().cloned()));

    // The same store, no restart: new sessions for every user (so on every
    // master, the moved slots' new owner included), and they verify.
    let mut fresh_failed = 0;
    let everyone = (0..USERS)
        .map(|u| UserId::new(format!("u{u}")).unwrap())
        .chain(hot_users.iter().cloned());
    for user in everyone {
        let issued = manager.create(NewSession::user(user)).await.unwrap();
        match manager.verify(&issued.token.encode()).await {
            Ok(r) if r.id == issued.session.id => {}
            _ => fresh_failed += 1,
        }
    }
    violations
        .extend((fresh_failed > 0).then(|| format!("{fresh_failed} new sessions do not verify")));

    // The hot slots' keys, the new sessions' included, are all on node 1.
    let mut hot_keys = [0u64; 2];
    for (n, node) in [0, 1].into_iter().enumerate() {
        let client = redis::Client::open(cluster.node_urls()[node].clone()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        for slot in HOT_SLOTS {
            let c: u64 = redis::cmd("CLUSTER")
                .arg("COUNTKEYSINSLOT")
                .arg(slot)
                .query_async(&mut con)
                .await
                .unwrap();
            hot_keys[n] += c;
        }
    }
    assert_eq!(hot_keys[0], 0, "keys of the hot slots left on node 0");
    assert!(hot_keys[1] > 0, "no keys of the hot slots on node 1");

    let ops: Vec<&Op> = logs.iter().flat_map(|l| &l.ops).collect();
    let during: Vec<&&Op> = ops
        .iter()
        .filter(|o| o.at >= started && o.at <= ended)
        .collect();
    let failed: Vec<&&Op> = ops.iter().filter(|o| !o.ok).collect();
    let count = |k: Kind| {
        let all = ops.iter().filter(|o| o.kind == k).count();
        let bad = failed.iter().filter(|o| o.kind == k).count();
        format!("{k:?} {all} ({bad} failed)")
    };
    let late = failed.iter().filter(|o| o.at > ended).count();
    eprintln!(
        "reshard: {moving} slots node 0 -> node 1 (slots {before:?} -> {after:?}; the 3 hot \
         slots with {} keys) in {took:?}; \
         {} ops ({} during the move): {}, {}, {}, {}, {}, {}, {}; {} failed with Unavailable \
         ({late} after the move ended); errors the nodes answered {redirects:?}; \
         {checked} sessions and {families_checked} of {families} refresh families checked, \
         {} violations",
        hot_keys[1],
        ops.len(),
        during.len(),
        count(Kind::Create),
        count(Kind::Verify),
        count(Kind::Touch),
        count(Kind::Rotate),
        count(Kind::End),
        count(Kind::Dead),
        count(Kind::Refresh),
        failed.len(),
        violations.len(),
    );
    let why: Vec<&String> = logs.iter().flat_map(|l| &l.unavailable).collect();
    eprintln!("reshard: the Unavailable errors: {why:#?}");
    assert!(
        violations.is_empty(),
        "{} violations, e.g. {:#?}",
        violations.len(),
        &violations[..violations.len().min(10)]
    );
    assert_eq!(late, 0, "operations failed after the move had ended");
    assert!(
        redirects.get("TRYAGAIN").copied().unwrap_or(0)
            + redirects.get("ASK").copied().unwrap_or(0)
            > 0,
        "the workload never met a migrating slot: {redirects:?}"
    );
    assert!(
        during.iter().filter(|o| o.ok).count() > 100,
        "the workload did too little during the move to mean anything"
    );
}
