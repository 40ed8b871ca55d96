//! The peer server of the HTTP benchmark with Redis (issue 6): the handler of
//! `http_bench_server` (read who is signed in from the session), behind
//! tower-sessions' `SessionManagerLayer` with `tower-sessions-redis-store`,
//! with sliding expiry (`Expiry::OnInactivity`, 30 min), on two ports:
//!
//! - `READ_PORT`: the session is read on every request and saved only when
//!   modified (tower-sessions' default), so the expiry slides only on writes;
//! - `SAVE_PORT`: the same with `with_always_save(true)`, what sliding expiry
//!   takes in tower-sessions: every request writes the record back (`SET XX
//!   EXAT`).
//!
//! ```sh
//! sessionary-bench-peer REDIS_URL READ_PORT SAVE_PORT SESSIONS TOKENS_FILE [POOL]
//! ```
//!
//! It creates `SESSIONS` records (`user` and `theme` keys; the store keys
//! them by session id, without a prefix), writes their cookie values, one per
//! line, to `TOKENS_FILE`, prints `ready` and serves until killed; the records
//! expire in Redis 30 min after their last save. `POOL` is the number of
//! connections of the fred pool (default 6, as in the store's example).

use std::collections::HashMap;
use std::io::Write as _;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::SessionStore as _;
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::*;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Who is signed in, read from the session (tower-sessions loads it from
/// Redis on the first access); 401 if the session was not found, so a
/// misconfigured run shows as non-2xx responses in wrk.
async fn read_user(session: Session) -> Result<&'static str, StatusCode> {
    match session.get::<String>("user").await {
        Ok(Some(user)) => {
            std::hint::black_box(user);
            Ok("hello")
        }
        _ => Err(StatusCode::UNAUTHORIZED),
    }
}

fn arg(args: &[String], i: usize) -> Result<&str, Error> {
    args.get(i).map(String::as_str).ok_or_else(|| {
        format!(
            "argument {i} missing; usage: REDIS_URL READ_PORT SAVE_PORT SESSIONS TOKENS_FILE [POOL]"
        )
        .into()
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, 1)?;
    let read_port: u16 = arg(&args, 2)?.parse()?;
    let save_port: u16 = arg(&args, 3)?.parse()?;
    let sessions: usize = arg(&args, 4)?.parse()?;
    let tokens_file = arg(&args, 5)?;
    let pool_size: usize = args.get(6).map_or(Ok(6), |p| p.parse())?;

    let pool = Pool::new(Config::from_url(url)?, None, None, None, pool_size)?;
    let _connection = pool.connect();
    pool.wait_for_connect().await?;
    let store = RedisStore::new(pool);

    let idle = Duration::minutes(30);
    let mut out = std::io::BufWriter::new(std::fs::File::create(tokens_file)?);
    for i in 0..sessions {
        let mut data = HashMap::new();
        data.insert("user".to_owned(), Value::from(format!("user{i}")));
        data.insert("theme".to_owned(), Value::from("dark"));
        let mut record = Record {
            id: Id::default(),
            data,
            expiry_date: OffsetDateTime::now_utc() + idle,
        };
        store.create(&mut record).await?;
        writeln!(out, "{}", record.id)?;
    }
    out.flush()?;
    drop(out);

    let layer = |always_save: bool| {
        SessionManagerLayer::new(store.clone())
            .with_name("session")
            .with_secure(false)
            .with_expiry(Expiry::OnInactivity(idle))
            .with_always_save(always_save)
    };
    let read_app = Router::new().route("/", get(read_user)).layer(layer(false));
    let save_app = Router::new().route("/", get(read_user)).layer(layer(true));
    let read = tokio::net::TcpListener::bind(("127.0.0.1", read_port)).await?;
    let save = tokio::net::TcpListener::bind(("127.0.0.1", save_port)).await?;
    println!(
        "ready: read on {read_port}, save on {save_port}, {sessions} sessions in {tokens_file}"
    );
    let a = tokio::spawn(async move { axum::serve(read, read_app).await });
    let b = tokio::spawn(async move { axum::serve(save, save_app).await });
    let (a, b) = tokio::try_join!(a, b)?;
    a?;
    b?;
    Ok(())
}
