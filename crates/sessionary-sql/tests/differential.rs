//! Differential test: long random sequences of operations run against
//! `MemoryStore` (the reference) and `SqlStore`, which must answer every one
//! of them identically.

// Test code: a panic is how a check reports a failure (helpers outside
// `#[test]` functions are not covered by clippy.toml's test allowance).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{
    MINUTE, T0, cached_store, cached_store_flushing_every, file_store, record, sealed, user,
};
use sessionary_core::record::{EndReason, Tombstone};
use sessionary_core::store::{Ending, SessionLimit, StoreResult, SweepSpec, Touch};
use sessionary_core::{
    LimitMode, MemoryStore, SessionId, SessionRecord, SessionStore, SessionToken, Timestamp,
    TokenHash,
};

/// xorshift64*: deterministic, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[usize::try_from(self.below(v.len() as u64)).unwrap()]
    }
}

const USERS: [&str; 3] = ["ann", "ben", "cat"];

fn pick_user(rng: &mut Rng) -> &'static str {
    USERS[usize::try_from(rng.below(3)).unwrap()]
}
const REASONS: [EndReason; 4] = [
    EndReason::LoggedOut,
    EndReason::RevokedByUser,
    EndReason::ExpiredIdle,
    EndReason::HijackSuspected,
];

fn same<T: PartialEq + std::fmt::Debug>(
    step: usize,
    what: &str,
    a: StoreResult<T>,
    b: StoreResult<T>,
) {
    if std::env::var_os("DIFF_TRACE").is_some() {
        eprintln!("{step} {what}: {a:?}");
    }
    match (a, b) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "step {step}: {what}"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("step {step}: {what}: memory {a:?}, sql {b:?}"),
    }
}

async fn run(seed: u64, steps: usize, sql: &dyn SessionStore) {
    let mem = MemoryStore::new();
    let mut rng = Rng(seed);
    if std::env::var_os("DIFF_TRACE").is_some() {
        eprintln!("seed {seed}");
    }
    let mut now = T0;
    let mut ids: Vec<SessionId> = Vec::new();
    let mut hashes: Vec<TokenHash> = Vec::new();

    for step in 0..steps {
        now += i64::try_from(rng.below(4 * MINUTE as u64)).unwrap();
        let u = if rng.chance(80) {
            Some(*rng.pick(&USERS))
        } else {
            None
        };
        let ending = Ending {
            reason: *rng.pick(&REASONS),
            at: Timestamp(now),
            reason_until: Timestamp(now + i64::try_from(rng.below(60 * MINUTE as u64)).unwrap()),
            restore_until: rng
                .chance(50)
                .then(|| Timestamp(now + i64::try_from(rng.below(60 * MINUTE as u64)).unwrap())),
        };
        let some_id = |rng: &mut Rng| {
            if ids.is_empty() || rng.chance(5) {
                SessionId([0xee; 16])
            } else {
                *rng.pick(&ids)
            }
        };
        match rng.below(15) {
            0..=2 => {
                let mut rec = record(u, now);
                rec.touch_interval_ms = i64::try_from(rng.below(3 * MINUTE as u64)).unwrap();
                rec.idle_timeout_ms = [5, 30, 120][usize::try_from(rng.below(3)).unwrap()] * MINUTE;
                rec.absolute_expires_at =
                    Timestamp(now + i64::try_from(rng.below(180 * MINUTE as u64)).unwrap() + 1);
                if !ids.is_empty() && rng.chance(5) {
                    rec.id = *rng.pick(&ids);
                }
                if !hashes.is_empty() && rng.chance(5) {
                    rec.token_hash = *rng.pick(&hashes);
                }
                let limit = rng.chance(60).then(|| SessionLimit {
                    max: u32::try_from(rng.below(4)).unwrap(),
                    mode: if rng.chance(50) {
                        LimitMode::RejectNew
                    } else {
                        LimitMode::EvictOldest
                    },
                    now: Timestamp(now),
                    evict: ending,
                });
                ids.push(rec.id);
                hashes.push(rec.token_hash);
                let a = mem.create(rec.clone(), limit).await;
                let b = sql.create(rec, limit).await;
                same(step, "create", a, b);
            }
            3..=4 => {
                if hashes.is_empty() {
                    continue;
                }
                let h = *rng.pick(&hashes);
                let touch = rng.chance(70).then_some(Touch {
                    now: Timestamp(now),
                });
                same(
                    step,
                    "load",
                    mem.load(&h, touch).await,
                    sql.load(&h, touch).await,
                );
            }
            5 => {
                let id = some_id(&mut rng);
                same(step, "get", mem.get(&id).await, sql.get(&id).await);
            }
            6 | 7 => {
                let id = some_id(&mut rng);
                let Some(cur) = mem.get(&id).await.unwrap() else {
                    let stale = record(u, now);
                    same(
                        step,
                        "update gone",
                        mem.update(stale.clone(), 1).await,
                        sql.update(stale, 1).await,
                    );
                    continue;
                };
                let mut next: SessionRecord = (*cur).clone();
                next.data = sealed(&rng.next().to_be_bytes());
                next.aal = u8::try_from(rng.below(4)).unwrap();
                next.last_seen_at =
                    Timestamp(now - MINUTE + i64::try_from(rng.below(2 * MINUTE as u64)).unwrap());
                next.counters.insert("forged".into(), 7);
                let version = if rng.chance(80) {
                    cur.version
                } else {
                    cur.version + 1
                };
                if rng.chance(50) {
                    same(
                        step,
                        "update",
                        mem.update(next.clone(), version).await,
                        sql.update(next, version).await,
                    );
                } else {
                    next.token_hash = if rng.chance(10) {
                        *rng.pick(&hashes)
                    } else {
                        SessionToken::generate().unwrap().hash()
                    };
                    hashes.push(next.token_hash);
                    let tomb = Tombstone {
                        session_id: id,
                        user: cur.user.clone(),
                        reason: EndReason::Regenerated,
                        ended_at: Timestamp(now),
                        keep_until: ending.reason_until,
                    };
                    same(
                        step,
                        "rotate",
                        mem.rotate(next.clone(), version, tomb.clone()).await,
                        sql.rotate(next, version, tomb).await,
                    );
                }
            }
            8 => {
                let id = some_id(&mut rng);
                let at =
                    Timestamp(now - MINUTE + i64::try_from(rng.below(2 * MINUTE as u64)).unwrap());
                same(
                    step,
                    "touch",
                    mem.touch(&id, at).await,
                    sql.touch(&id, at).await,
                );
            }
            9 => {
                let id = some_id(&mut rng);
                same(
                    step,
                    "end",
                    mem.end(&id, ending).await,
                    sql.end(&id, ending).await,
                );
            }
            10 => {
                let who = user(pick_user(&mut rng));
                if rng.chance(30) {
                    let except = rng.chance(50).then(|| some_id(&mut rng));
                    same(
                        step,
                        "end_user",
                        mem.end_user(&who, except.as_ref(), ending).await,
                        sql.end_user(&who, except.as_ref(), ending).await,
                    );
                } else {
                    let at = Timestamp(now);
                    same(
                        step,
                        "list_user",
                        mem.list_user(&who, at).await,
                        sql.list_user(&who, at).await,
                    );
                }
            }
            11 => {
                let id = some_id(&mut rng);
                let name = if rng.chance(50) { "downloads" } else { "bytes" };
                let by = rng.below(4);
                let limit = rng.chance(60).then(|| rng.below(8));
                same(
                    step,
                    "increment_counter",
                    mem.increment_counter(&id, name, by, limit).await,
                    sql.increment_counter(&id, name, by, limit).await,
                );
            }
            12 => {
                let spec = SweepSpec {
                    now: Timestamp(now),
                    reason_ttl_ms: i64::try_from(rng.below(60 * MINUTE as u64)).unwrap(),
                    restore_ttl_ms: i64::try_from(rng.below(60 * MINUTE as u64)).unwrap(),
                };
                let sort = |r: StoreResult<Vec<sessionary_core::store::Ended>>| {
                    r.map(|mut v| {
                        v.sort_by_key(|e| e.record.id);
                        v
                    })
                };
                let a = sort(mem.sweep(spec, 10_000).await);
                let ended = a.as_ref().map(Vec::clone).unwrap_or_default();
                same(step, "sweep", a, sort(sql.sweep(spec, 10_000).await));
                // When one sweep ends several sessions of a user, whose data stays
                // restorable is the store's choice (MemoryStore: shard order;
                // SqlStore: the latest expiry). Forget it in both.
                for who in USERS {
                    let n = ended
                        .iter()
                        .filter(|e| e.record.user.as_ref().map(|u| u.as_str()) == Some(who))
                        .count();
                    if n > 1 {
                        let who = user(who);
                        mem.take_restorable(&who, Timestamp(now)).await.unwrap();
                        sql.take_restorable(&who, Timestamp(now)).await.unwrap();
                    }
                }
            }
            13 => {
                let who = user(pick_user(&mut rng));
                let at = Timestamp(now);
                same(
                    step,
                    "take_restorable",
                    mem.take_restorable(&who, at).await,
                    sql.take_restorable(&who, at).await,
                );
            }
            _ => {
                let who = user(pick_user(&mut rng));
                if rng.chance(50) {
                    same(
                        step,
                        "user_data",
                        mem.user_data(&who).await,
                        sql.user_data(&who).await,
                    );
                } else {
                    let v = rng.below(3);
                    let data = sealed(&rng.next().to_be_bytes());
                    same(
                        step,
                        "set_user_data",
                        mem.set_user_data(&who, v, data.clone()).await,
                        sql.set_user_data(&who, v, data).await,
                    );
                }
            }
        }
    }
    // And the final state, as a whole.
    for id in &ids {
        same(
            usize::MAX,
            "final get",
            mem.get(id).await,
            sql.get(id).await,
        );
    }
    for h in &hashes {
        same(
            usize::MAX,
            "final load",
            mem.load(h, None).await,
            sql.load(h, None).await,
        );
    }
}

#[tokio::test]
async fn in_memory_database_matches_memory_store() {
    for seed in [1, 2, 3, 0x5eed_0001, 0xdead_beef] {
        let sql = sessionary_sql::SqlStore::sqlite_in_memory().await.unwrap();
        run(seed, 1500, &sql).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_file_matches_memory_store() {
    for seed in [7, 0xfeed] {
        let (sql, _dir) = file_store().await;
        run(seed, 1000, &sql).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_database_file_matches_memory_store() {
    for seed in [11, 0xcafe] {
        let (sql, _dir) = cached_store().await;
        run(seed, 1500, &sql).await;
    }
}

/// With touches written behind every millisecond: flushes land between (and
/// during) operations, and must never change an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_file_flushing_often_matches_memory_store() {
    for seed in [13, 0xbeef] {
        let (sql, _dir) = cached_store_flushing_every(Duration::from_millis(1)).await;
        run(seed, 1500, &sql).await;
    }
}
