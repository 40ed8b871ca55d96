//! How many Redis commands one verification (`load` with a touch) costs,
//! read from `INFO commandstats` before and after (commands run inside a
//! script are counted there too). Prints the numbers; checks the one thing
//! that must hold: one `EVALSHA` (one round trip) per load.

// Test code: a panic is how a check reports a failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;

use sessionary_core::store::{Lookup, Touch};
use sessionary_core::{SessionId, SessionStore, Timestamp};
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

#[tokio::test]
async fn commands_per_load() {
    let url = common::url();
    let prefix = format!("sessionary-test:{}:", SessionId::generate().unwrap());
    let store = match RedisStore::connect(&url, RedisOptions::new().with_key_prefix(prefix)).await {
        Ok(s) => s,
        Err(e) => {
            common::skip("commands_per_load", &format!("cannot connect: {e}"));
            return;
        }
    };
    let (t, r) = sessionary_testkit::record(Some("alice"), T0);
    let interval = r.touch_interval_ms;
    store.create(r, None).await.unwrap();
    let h = t.hash();
    // Warm up (loads the script).
    store.load(&h, None).await.unwrap();

    let before = commandstats(&url).await;
    // A verification every second of mock time: one touch is due every
    // `touch_interval` (90 s), as in a busy session.
    for i in 0..LOADS {
        let now = T0.add_millis(1 + i64::try_from(i).unwrap() * 1000);
        assert!(matches!(
            store.load(&h, Some(Touch { now })).await.unwrap(),
            Lookup::Found(_)
        ));
    }
    let after = commandstats(&url).await;
    store.clear().await.unwrap();

    let mut delta: Vec<(String, u64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(k, d)| *d > 0 && k != "info")
        .collect();
    delta.sort();
    let total: u64 = delta.iter().map(|(_, d)| d).sum();
    let _ = writeln!(
        std::io::stderr(),
        "{LOADS} loads with touch (interval {interval} ms, one load per second): {delta:?}; \
         {:.2} commands per load including the EVALSHA, {:.2} inside the script",
        total as f64 / LOADS as f64,
        (total
            - delta
                .iter()
                .find(|(k, _)| k == "evalsha")
                .map_or(0, |(_, d)| *d)) as f64
            / LOADS as f64,
    );
    let evalsha = delta
        .iter()
        .find(|(k, _)| k == "evalsha")
        .map_or(0, |(_, d)| *d);
    // Other clients of a shared server may add calls; never fewer than one per load.
    assert!(evalsha >= LOADS, "{evalsha} EVALSHA for {LOADS} loads");
}
