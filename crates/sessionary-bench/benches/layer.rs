//! The user-space cost of `SessionLayer` per request, without sockets: the same
//! `GET /` router as the HTTP benchmark's server (`src/bin/http_bench_server.rs`),
//! called in-process through `tower::Service`, bare and behind the layer.
//!
//! Run with `cargo bench -p sessionary-bench --bench layer`; see the crate README.
//!
//! Each iteration builds one request (the cookie of the next of 10,000 signed-in
//! sessions in a shuffled order, the browser `User-Agent` the sessions are bound
//! to, the loopback peer as `ConnectInfo`), calls the router and drops the
//! response. The bare router gets the same requests, so the difference between
//! the two is what the layer, the `Session` extractor and the response headers
//! cost. On one core (a current-thread runtime); time from `SystemClock`, so
//! touches are due only once per touch interval (90 s), as in the HTTP benchmark.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use criterion::Criterion;
use http::{HeaderValue, Request, header};
use sessionary_axum::{Session, SessionConfig, SessionLayer};
use sessionary_core::near_cache::{NearCache, NearCacheOptions};
use sessionary_core::{
    Data, Device, Fanout, LocalFanout, MemoryStore, NewSession, SessionManager, SessionStore,
    SystemClock, UserId,
};
use tokio::runtime::{Builder, Runtime};
use tower::{Service, ServiceExt};

/// Signed-in sessions, visited in a shuffled order.
const SESSIONS: usize = 10_000;
/// What `http/cookies.lua` sends, and what the sessions are bound to.
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

fn runtime() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime")
}

async fn bare() -> &'static str {
    "hello"
}

async fn read_user(session: Session) -> &'static str {
    let record = session.record();
    black_box(
        record
            .as_ref()
            .and_then(|r| r.user.as_ref())
            .map(|u| u.as_str()),
    );
    "hello"
}

/// `SESSIONS` signed-in sessions bound to the benchmark's device; their
/// `Cookie` headers in a shuffled visit order.
async fn populate(manager: &SessionManager) -> Vec<HeaderValue> {
    let mut cookies = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let mut data = Data::new();
        data.insert("theme".to_owned(), "dark".into());
        let device = Device::new(
            Some(std::net::IpAddr::from([127, 0, 0, 1])),
            Some(USER_AGENT),
        );
        let new = NewSession::user(UserId::new(format!("user{i}")).expect("a user id"))
            .with_data(data)
            .with_device(device);
        let issued = manager.create(new).await.expect("a session");
        cookies.push(
            HeaderValue::try_from(format!("session={}", issued.token.encode()))
                .expect("a header value"),
        );
    }
    // A fixed permutation (multiplying by a unit mod SESSIONS).
    let order: Vec<HeaderValue> = (0..SESSIONS)
        .map(|i| cookies[(i * 7919) % SESSIONS].clone())
        .collect();
    order
}

/// A request as hyper hands it over: its header values are fresh copies (a
/// server has just parsed them, so they are in cache), not shared with the
/// cookie list.
fn request(cookie: &HeaderValue) -> Request<Body> {
    let cookie = HeaderValue::from_bytes(cookie.as_bytes()).expect("a header value");
    let mut req = Request::get("/")
        .header(header::HOST, HeaderValue::from_static("127.0.0.1:3002"))
        .header(header::COOKIE, cookie)
        .header(header::USER_AGENT, HeaderValue::from_static(USER_AGENT))
        .body(Body::empty())
        .expect("a request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    req
}

fn bench_router(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    name: &str,
    router: Router,
    cookies: &[HeaderValue],
) {
    // Every request must get an answer with the session (or, bare, without).
    let first = rt.block_on(router.clone().oneshot(request(&cookies[0])));
    let first = first.expect("infallible");
    assert!(first.status().is_success(), "{name}: {}", first.status());
    let mut svc = router;
    let mut i = 0usize;
    group.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) % cookies.len();
            let req = request(&cookies[i]);
            let res = rt.block_on(async {
                // `Router` is always ready.
                let fut = svc.call(req);
                fut.await
            });
            black_box(res)
        });
    });
}

fn layer(c: &mut Criterion) {
    let rt = runtime();
    let config = SessionConfig::new().dangerous().allow_insecure_http();
    let memory = SessionManager::builder(Arc::new(MemoryStore::new()) as Arc<dyn SessionStore>)
        .build()
        .expect("a manager");
    let memory_cookies = rt.block_on(populate(&memory));
    let cached = rt.block_on(async {
        let fanout: Arc<dyn Fanout> = Arc::new(LocalFanout::new());
        let cache = NearCache::new(
            Arc::new(MemoryStore::new()),
            Arc::clone(&fanout),
            Arc::new(SystemClock),
            NearCacheOptions::new().with_max_age(Duration::from_secs(3600)),
        )
        .expect("a near cache");
        SessionManager::builder(Arc::new(cache))
            .with_fanout(fanout)
            .build()
            .expect("a manager")
    });
    let cached_cookies = rt.block_on(populate(&cached));

    let mut group = c.benchmark_group("layer_10k");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    bench_router(
        &mut group,
        &rt,
        "bare",
        Router::new().route("/", get(bare)),
        &memory_cookies,
    );
    bench_router(
        &mut group,
        &rt,
        "session_memory",
        Router::new()
            .route("/", get(read_user))
            .layer(SessionLayer::new(memory, config.clone())),
        &memory_cookies,
    );
    bench_router(
        &mut group,
        &rt,
        "session_near_cache",
        Router::new()
            .route("/", get(read_user))
            .layer(SessionLayer::new(cached, config)),
        &cached_cookies,
    );
    group.finish();
}

// What `criterion_group!` + `criterion_main!` expand to, written out because the
// macro's generated `pub fn` cannot carry the docs the workspace lints require.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    layer(&mut c);
    c.final_summary();
}
