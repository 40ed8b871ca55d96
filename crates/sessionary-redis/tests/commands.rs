//! How many Redis commands one verification (`load`) costs, read from
//! `INFO commandstats` of a private `redis-server` before and after (commands
//! run inside a script are counted there too). Prints the numbers and checks
//! what must hold on one server: in steady state (no touch due) a
//! verification is exactly one command, a `GET` of the token route's
//! snapshot; with touches, one `EVALSHA` more per touch written.

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;

use sessionary_core::record::EndReason;
use sessionary_core::store::{Ending, Lookup, Touch};
use sessionary_core::{SessionStore, Timestamp};
use sessionary_redis::{RedisOptions, RedisStore};

const T0: Timestamp = Timestamp(1_767_225_600_000);
const LOADS: u64 = 1000;

async fn commandstats(url: &str) -> BTreeMap<String, u64> {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut con)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// The commands `run` sent, by name (without the `INFO` calls that measure).
async fn counted(url: &str, run: impl AsyncFnOnce()) -> BTreeMap<String, u64> {
    let before = commandstats(url).await;
    run().await;
    let after = commandstats(url).await;
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(k, d)| *d > 0 && k != "info")
        .collect()
}

fn report(what: &str, delta: &BTreeMap<String, u64>) -> u64 {
    let total: u64 = delta.values().sum();
    let _ = writeln!(
        std::io::stderr(),
        "{what}: {delta:?}; {:.3} commands per load",
        total as f64 / LOADS as f64,
    );
    total
}

#[tokio::test]
async fn commands_per_load() {
    let port = common::free_port();
    let server = match common::Server::start(port, &[]) {
        Ok(s) => s,
        Err(e) => {
            common::skip(
                "commands_per_load",
                &format!("cannot start redis-server: {e}"),
            );
            return;
        }
    };
    let url = server.url();
    let store = RedisStore::connect(&url, RedisOptions::new())
        .await
        .unwrap();
    let (t, r) = sessionary_testkit::record(Some("alice"), T0);
    let interval = r.touch_interval_ms;
    store.create(r, None).await.unwrap();
    let h = t.hash();
    // Warm up (loads the script).
    store
        .load(
            &h,
            Some(Touch {
                now: T0.add_millis(interval),
            }),
        )
        .await
        .unwrap();
    let t1 = T0.add_millis(interval);

    // Steady state: a verification every millisecond of mock time, no touch due.
    let steady = counted(&url, async || {
        for i in 0..LOADS {
            let now = t1.add_millis(1 + i64::try_from(i).unwrap());
            assert!(matches!(
                store.load(&h, Some(Touch { now })).await.unwrap(),
                Lookup::Found(_)
            ));
        }
    })
    .await;
    let total = report(
        &format!("{LOADS} loads, no touch due (interval {interval} ms)"),
        &steady,
    );
    assert_eq!(total, LOADS, "one command per verification: {steady:?}");
    assert_eq!(steady.get("get").copied(), Some(LOADS), "{steady:?}");

    // With touches: a verification every second of mock time, so one touch
    // is due every `touch_interval` (90 s), as in a busy session.
    let t2 = t1.add_millis(i64::try_from(LOADS).unwrap() + 1);
    let touching = counted(&url, async || {
        for i in 0..LOADS {
            let now = t2.add_millis(i64::try_from(i).unwrap() * 1000);
            assert!(matches!(
                store.load(&h, Some(Touch { now })).await.unwrap(),
                Lookup::Found(_)
            ));
        }
    })
    .await;
    let total = report(
        &format!("{LOADS} loads with touch (interval {interval} ms, one load per second)"),
        &touching,
    );
    let touches = touching.get("evalsha").copied().unwrap_or(0);
    // 1000 s of mock time over a 90 s interval: 11 or 12 touches.
    assert!((11..=12).contains(&touches), "{touching:?}");
    assert_eq!(
        touching.get("get").copied(),
        Some(LOADS + touches),
        "{touching:?}"
    );
    assert!(total <= LOADS + 5 * touches, "{touching:?}");
    let _ = writeln!(
        std::io::stderr(),
        "round trips per load with touch: {:.3}",
        (LOADS + touches) as f64 / LOADS as f64
    );

    // An ended session: its tombstone snapshot, one command too.
    let id = match store.load(&h, None).await.unwrap() {
        Lookup::Found(r) => r.id,
        other => panic!("{other:?}"),
    };
    let end_at = t2.add_millis(i64::try_from(LOADS).unwrap() * 1000);
    store
        .end(
            &id,
            Ending {
                reason: EndReason::RevokedByUser,
                at: end_at,
                reason_until: end_at.add_millis(86_400_000),
                restore_until: None,
            },
        )
        .await
        .unwrap()
        .unwrap();
    let ended = counted(&url, async || {
        for _ in 0..LOADS {
            assert!(matches!(
                store.load(&h, Some(Touch { now: end_at })).await.unwrap(),
                Lookup::Ended(_)
            ));
        }
    })
    .await;
    assert_eq!(
        report(&format!("{LOADS} loads of an ended session"), &ended),
        LOADS
    );
    drop(server);
}
