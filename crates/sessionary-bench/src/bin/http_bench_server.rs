//! The server of the HTTP benchmark of issue #3 (see `http/run.sh` and the crate
//! README): the same `GET /` handler on two loopback ports, bare on one, behind
//! `SessionLayer` (`MemoryStore`, default policy, sliding expiry on) on the other.
//!
//! ```sh
//! http_bench_server [BARE_PORT] [SESSION_PORT] [SESSIONS] [TOKENS_FILE] [NOOP_PORT]
//! ```
//!
//! Defaults: `3001 3002 10000 target/http-bench-tokens.txt 0`. With a
//! `NOOP_PORT` other than 0 it also serves the bare routes behind a pass-through
//! middleware there (a control: what any `Router::layer` costs). It creates
//! `SESSIONS` signed-in sessions (each with one data key, `theme`) and writes
//! their tokens, one per line, to `TOKENS_FILE` before it listens; then it prints
//! `ready` and serves until killed.
//!
//! Routes (on both ports, identical bodies):
//! - `GET /`: reads who is signed in, borrowed from the verified record
//!   (`Session::record`), answers `hello`.
//! - `GET /user`: the same through `Session::user`, which copies the user id.
//! - `GET /data`: reads one data key (`Session::get`: AES-256-GCM open and JSON
//!   parse of the data), answers `hello`.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use axum::{Router, routing::get};
use serde_json::Value;
use sessionary_axum::{Session, SessionConfig, SessionLayer};
use sessionary_core::{Data, MemoryStore, NewSession, SessionManager, UserId};

/// The `User-Agent` `cookies.lua` sends (a browser's, so the binding compares
/// a realistic header).
const BENCH_USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

async fn bare() -> &'static str {
    "hello"
}

/// Who is signed in, borrowed from the verified record (no copy).
async fn read_user(session: Session) -> &'static str {
    let record = session.record();
    // `black_box`, so the read cannot be optimized away.
    std::hint::black_box(
        record
            .as_ref()
            .and_then(|r| r.user.as_ref())
            .map(|u| u.as_str()),
    );
    "hello"
}

/// The same through `Session::user`, which copies the user id.
async fn read_user_copy(session: Session) -> &'static str {
    std::hint::black_box(session.user());
    "hello"
}

async fn read_data(session: Session) -> &'static str {
    let theme = session.get::<String>("theme").ok().flatten();
    std::hint::black_box(theme);
    "hello"
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> anyhow::Result<T> {
    match args.get(i) {
        Some(s) => s
            .parse()
            .map_err(|_| anyhow::anyhow!("argument {i} is not valid: {s}")),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let bare_port: u16 = arg(&args, 1, 3001)?;
    let session_port: u16 = arg(&args, 2, 3002)?;
    let sessions: usize = arg(&args, 3, 10_000)?;
    let tokens_file: String = arg(&args, 4, "target/http-bench-tokens.txt".to_owned())?;

    // Default policy (30 min idle, sliding, touch interval 90 s), `SystemClock`.
    // `BENCH_REDIS_URL` set: the sessions live in Redis (a fresh key prefix),
    // else in a `MemoryStore`. With `BENCH_NEAR_CACHE` (a max age in
    // milliseconds) too, a `NearCache` invalidated by a `RedisFanout` sits in
    // front of Redis, as `[store] near_cache` does in `sessionary serve`.
    let builder = match std::env::var("BENCH_REDIS_URL") {
        Ok(url) if !url.is_empty() => {
            let prefix = format!("bench:{}:", std::process::id());
            let options = sessionary_redis::RedisOptions::new().with_key_prefix(&prefix);
            let redis: Arc<dyn sessionary_core::SessionStore> =
                Arc::new(sessionary_redis::RedisStore::connect(&url, options).await?);
            match std::env::var("BENCH_NEAR_CACHE") {
                Ok(ms) if !ms.is_empty() => {
                    let max_age = std::time::Duration::from_millis(ms.parse()?);
                    let fanout: Arc<dyn sessionary_core::Fanout> =
                        Arc::new(sessionary_redis::RedisFanout::connect(&url, &prefix).await?);
                    let cache = sessionary_core::near_cache::NearCache::new(
                        redis,
                        Arc::clone(&fanout),
                        Arc::new(sessionary_core::SystemClock),
                        sessionary_core::near_cache::NearCacheOptions::new().with_max_age(max_age),
                    )?;
                    SessionManager::builder(Arc::new(cache)).with_fanout(fanout)
                }
                _ => SessionManager::builder(redis),
            }
        }
        _ => SessionManager::builder(Arc::new(MemoryStore::new())),
    };
    let manager = builder.build()?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&tokens_file).with_context(|| format!("creating {tokens_file}"))?,
    );
    for i in 0..sessions {
        let mut data = Data::new();
        data.insert("theme".to_owned(), Value::from("dark"));
        // Bound to the device wrk presents (loopback, the `User-Agent` of
        // `cookies.lua`), so the layer's binding check runs on every request.
        let device = sessionary_core::Device::new(
            Some(std::net::IpAddr::from([127, 0, 0, 1])),
            Some(BENCH_USER_AGENT),
        );
        let new = NewSession::user(UserId::new(format!("user{i}"))?)
            .with_data(data)
            .with_device(device);
        let issued = manager.create(new).await?;
        writeln!(out, "{}", issued.token.encode())?;
    }
    out.flush()?;
    drop(out);

    // Plain HTTP on loopback: no `Secure`, so the cookie is `session`.
    let config = SessionConfig::new().dangerous().allow_insecure_http();
    let bare_app = Router::new()
        .route("/", get(bare))
        .route("/user", get(bare))
        .route("/data", get(bare));
    let session_app = Router::new()
        .route("/", get(read_user))
        .route("/user", get(read_user_copy))
        .route("/data", get(read_data))
        .layer(SessionLayer::new(manager, config));

    // Optional control: the bare handler behind a pass-through middleware
    // (`MapRequestLayer` with the identity), i.e. what any `Router::layer` costs.
    let noop_port: u16 = arg(&args, 5, 0)?;
    if noop_port != 0 {
        let noop_app = Router::new()
            .route("/", get(bare))
            .route("/user", get(bare))
            .route("/data", get(bare))
            .layer(tower::util::MapRequestLayer::new(
                |r: axum::extract::Request| r,
            ));
        let l = tokio::net::TcpListener::bind(("127.0.0.1", noop_port)).await?;
        tokio::spawn(async move { axum::serve(l, noop_app).await });
    }
    let bare_listener = tokio::net::TcpListener::bind(("127.0.0.1", bare_port)).await?;
    let session_listener = tokio::net::TcpListener::bind(("127.0.0.1", session_port)).await?;
    println!(
        "ready: bare on {bare_port}, session on {session_port}, {sessions} sessions in {tokens_file}"
    );
    // Both with connect info, so they differ by the session layer only.
    let bare_server = tokio::spawn(async move {
        axum::serve(
            bare_listener,
            bare_app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let session_server = tokio::spawn(async move {
        axum::serve(
            session_listener,
            session_app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let (a, b) = tokio::try_join!(bare_server, session_server)?;
    a?;
    b?;
    Ok(())
}
