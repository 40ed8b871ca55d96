//! Store-level benchmark of issue #6: `SessionManager::verify` over a
//! `RedisStore` from 50 concurrent tasks, with the Redis commands each
//! verification costs (`INFO commandstats` before and after). `http/redis_store.sh`
//! runs it beside `redis-benchmark -t get -c 50` on the same server.
//!
//! ```text
//! redis_verify_bench [url] [sessions] [tasks] [seconds]
//! ```
//!
//! Prints `verifications/s: N` and the commands per verification by name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sessionary_core::{NewSession, SessionManager, UserId};

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match args.get(i) {
        None => Ok(default),
        Some(a) => a
            .parse()
            .map_err(|e| anyhow::anyhow!("argument {i} ({a:?}): {e}")),
    }
}

/// `cmdstat_<name>` → calls, from `INFO commandstats`.
async fn commandstats(
    con: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(con)
        .await?;
    let mut out = BTreeMap::new();
    for line in info.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((name, fields)) = rest.split_once(':') else {
            continue;
        };
        let calls = fields
            .split(',')
            .find_map(|f| f.strip_prefix("calls="))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        out.insert(name.to_owned(), calls);
    }
    Ok(out)
}

/// Runs `tasks` loops of `verify` over `tokens` for `secs`; returns how many.
async fn run(
    manager: &SessionManager,
    tokens: &Arc<Vec<String>>,
    tasks: usize,
    secs: f64,
) -> anyhow::Result<u64> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (m, tokens, done, stop) = (
            manager.clone(),
            Arc::clone(tokens),
            Arc::clone(&done),
            Arc::clone(&stop),
        );
        handles.push(tokio::spawn(async move {
            let mut i = t * 7919;
            while !stop.load(Ordering::Relaxed) {
                let token = &tokens[i % tokens.len()];
                m.verify(token).await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += tasks;
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await??;
    }
    Ok(done.load(Ordering::Relaxed))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url: String = arg(&args, 1, "redis://127.0.0.1:6379".to_owned())?;
    let sessions: usize = arg(&args, 2, 10_000)?;
    let tasks: usize = arg(&args, 3, 50)?;
    let secs: f64 = arg(&args, 4, 10.0)?;

    let prefix = format!("bench-store:{}:", std::process::id());
    let store = sessionary_redis::RedisStore::connect(
        &url,
        sessionary_redis::RedisOptions::new().with_key_prefix(&prefix),
    )
    .await
    .context("connecting to Redis")?;
    let manager = SessionManager::builder(Arc::new(store.clone())).build()?;
    let mut tokens = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let issued = manager
            .create(NewSession::user(UserId::new(format!("user{i}"))?))
            .await?;
        tokens.push(issued.token.encode());
    }
    let tokens = Arc::new(tokens);
    let mut con = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;

    run(&manager, &tokens, tasks, 1.0).await?; // warm-up
    let before = commandstats(&mut con).await?;
    let started = Instant::now();
    let n = run(&manager, &tokens, tasks, secs).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let after = commandstats(&mut con).await?;
    store.clear().await?;

    println!("verifications/s: {:.0}", n as f64 / elapsed);
    let mut total = 0u64;
    for (name, calls) in &after {
        let d = calls - before.get(name).copied().unwrap_or(0);
        // `info` is this bench's own two calls.
        if d > 0 && name != "info" {
            total += d;
            println!("  {name}: {:.3} per verification", d as f64 / n as f64);
        }
    }
    println!(
        "commands per verification: {:.3} ({n} verifications, {tasks} tasks, {sessions} sessions)",
        total as f64 / n as f64
    );
    Ok(())
}
