//! Hot-path benchmark of issue #2: verify + (coalesced) touch of one session
//! holding ~1 KiB of data among 100,000 live sessions, on Sessionary's
//! `MemoryStore` and SQLite store, next to tower-sessions' `MemoryStore`
//! doing load + save of the same record, all in one run on one core.
//!
//! Run with `cargo bench -p sessionary-bench --bench hot_path`; see the
//! crate README for the model (mock clock pacing, touch rate) and results.

use std::cell::Cell;
use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use serde_json::{Map, Value, json};
use sessionary_core::{
    Clock, Device, KeyRing, MockClock, NewSession, SessionManager, SessionStore, SessionToken,
    SystemClock, Timestamp, TokenHash, UserId,
};
use sessionary_sql::{SqlStore, SqliteOptions};
use tokio::runtime::{Builder, Runtime};
use tower_sessions::SessionStore as _;
use tower_sessions::cookie::time::{Duration as TimeDuration, OffsetDateTime};
use tower_sessions::session::{Id, Record};

/// Live sessions in every store.
const SESSIONS: usize = 100_000;
/// The default policy's touch interval (30 min idle / 20), in milliseconds.
const TOUCH_INTERVAL_MS: u64 = 90_000;
/// Coalesced model: every session sends a request every 10 s (of mock time), so
/// one verify in 9 is due a touch (90 s / 10 s).
const COALESCED_GAP_MS: u64 = 10_000;
/// Worst case: every session is seen less often than once per touch interval,
/// so every verify writes.
const TOUCH_EVERY_GAP_MS: u64 = 100_000;
/// The measured loops yield to the runtime once every this many requests, as a
/// server does between requests (it awaits sockets), so that background tasks
/// (the SQLite store's touch flusher) run as they would in production.
const YIELD_EVERY: usize = 1024;
/// Touches per flush in `sqlite_cached_flush_1000_touches`: about one second
/// of touches for 100k active sessions at the coalesced rate (100k / 90 s).
const FLUSH_BATCH: usize = 1_000;

/// One core: everything runs on a current-thread runtime.
fn runtime() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime")
}

/// SplitMix64: a deterministic shuffle without a `rand` dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Fisher-Yates with a fixed seed, so every run visits sessions in the same order.
fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut rng = SplitMix64(seed);
    for i in (1..v.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// ~1 KiB of realistic session data: a cart of a few items, preferences and a
/// little navigation state. Varies with `i` so no two sessions are identical.
fn session_data(i: usize) -> Map<String, Value> {
    let items: Vec<Value> = (0..4)
        .map(|k| {
            json!({
                "sku": format!("SKU-{:06}-{k}", i % 999_983),
                "name": format!("Organic cotton t-shirt, size {}", ["S", "M", "L", "XL"][k]),
                "qty": 1 + (i + k) % 3,
                "unit_price_cents": 1999 + 100 * k,
                "options": { "colour": "navy", "gift_wrap": k == 2 },
            })
        })
        .collect();
    let value = json!({
        "cart": {
            "items": items,
            "currency": "EUR",
            "coupon": if i % 5 == 0 { Value::from("SPRING10") } else { Value::Null },
            "updated_at": 1_767_225_600_000_i64 + i as i64,
        },
        "preferences": {
            "theme": if i % 2 == 0 { "dark" } else { "light" },
            "locale": "fr-FR",
            "timezone": "Europe/Paris",
            "page_size": 24,
            "notifications": { "email": true, "push": false, "digest": "weekly" },
        },
        "recently_viewed": [i % 7919, i % 104_729, i % 1_299_709, 42],
        "return_to": format!("/account/orders?page={}", i % 10),
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// A typical desktop browser, stored with each Sessionary session.
fn device() -> Device {
    Device::new(
        Some([192, 0, 2, 10].into()),
        Some(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/120.0 Safari/537.36",
        ),
    )
}

/// Equal-length strings packed back to back in visit order, so fetching the
/// next one is a sequential read (a real request's token is already in cache;
/// 100k scattered `String`s would add a cache miss per iteration that a
/// server never pays).
#[derive(Clone)]
struct Packed {
    buf: String,
    width: usize,
    len: usize,
}

impl Packed {
    fn new(items: &[String]) -> Self {
        let width = items.first().map_or(0, String::len);
        assert!(items.iter().all(|s| s.len() == width), "equal lengths");
        Self {
            buf: items.concat(),
            width,
            len: items.len(),
        }
    }

    /// The `i`-th string, cycling.
    fn get(&self, i: usize) -> &str {
        let at = (i % self.len) * self.width;
        &self.buf[at..at + self.width]
    }
}

/// Mock-time pacing of the measured loop: each session is verified once every
/// `gap` of mock time (tokens are cycled, so one cycle of `SESSIONS` verifies
/// lasts `gap`). The mock clock counts whole milliseconds, so the step of
/// `gap / SESSIONS` per verify is applied as 1 ms every `SESSIONS / gap`
/// verifies (or `gap / SESSIONS` ms every verify).
#[derive(Clone, Copy)]
struct Pace {
    every: usize,
    step_ms: u64,
}

impl Pace {
    const fn per_session_gap(gap_ms: u64) -> Self {
        let sessions = SESSIONS as u64;
        if gap_ms >= sessions {
            Self {
                every: 1,
                step_ms: gap_ms / sessions,
            }
        } else {
            Self {
                every: (sessions / gap_ms) as usize,
                step_ms: 1,
            }
        }
    }

    /// Mock milliseconds elapsed at verify number `i` (counted from the pace's start).
    fn offset_ms(self, i: usize) -> u64 {
        (i / self.every) as u64 * self.step_ms + self.step_ms
    }
}

const COALESCED: Pace = Pace::per_session_gap(COALESCED_GAP_MS);
const TOUCH_EVERY: Pace = Pace::per_session_gap(TOUCH_EVERY_GAP_MS);

/// A Sessionary manager over some store with 100k sessions, and their tokens
/// in visit order.
struct Sessionary {
    manager: SessionManager,
    clock: MockClock,
    tokens: Packed,
    /// Verifies done so far; shared by every benchmark of this fixture so that
    /// each session keeps being seen exactly once per cycle.
    next: Cell<usize>,
}

/// 100k sessions written to a store: their tokens in visit order, the key ring
/// that sealed their data and the mock time at which the measured loop starts.
#[derive(Clone)]
struct Population {
    tokens: Packed,
    keys: KeyRing,
    start: Timestamp,
}

/// Creates 100k sessions in `store`. Each session's creation time is chosen
/// so that the coalesced loop is in its steady state from its first verify:
/// the session at visit position `p` was last seen `j` gaps (1 to 9, spread
/// evenly) before its first visit, so exactly one verify in 9 is due a touch.
/// Sessions are created in a shuffled order so that neighbours in the visit
/// order are not neighbours in memory or on disk.
async fn populate(store: Arc<dyn SessionStore>, label: &str) -> Population {
    let keys = KeyRing::generate(1).expect("a data key");
    let clock = MockClock::default();
    let manager = SessionManager::builder(store)
        .with_clock(Arc::new(clock.clone()))
        .with_keys(keys.clone())
        .build()
        .expect("default policy");
    let start = clock
        .now()
        .add_millis(i64::try_from(TOUCH_INTERVAL_MS).expect("small"));
    let phases = TOUCH_INTERVAL_MS.div_ceil(COALESCED_GAP_MS);
    let mut order: Vec<usize> = (0..SESSIONS).collect();
    shuffle(&mut order, 0x5e55_10a7);
    let started = Instant::now();
    let mut tokens = vec![String::new(); SESSIONS];
    for (i, &p) in order.iter().enumerate() {
        let j = 1 + p as u64 % phases;
        let seen = COALESCED.offset_ms(p) as i64 - (j * COALESCED_GAP_MS) as i64;
        clock.set(start.add_millis(seen));
        let new = NewSession::user(UserId::new(format!("user-{i:06}")).expect("valid user"))
            .with_roles(["user"])
            .with_device(device())
            .with_data(session_data(i));
        let issued = manager.create(new).await.expect("create");
        tokens[p] = issued.token.encode();
    }
    clock.set(start);
    let sample = manager.status(&tokens[0]).await.expect("live");
    eprintln!(
        "{label}: {SESSIONS} sessions created in {:.1?} (sealed data {} bytes per session)",
        started.elapsed(),
        sample.data.as_bytes().len(),
    );
    Population {
        tokens: Packed::new(&tokens),
        keys,
        start,
    }
}

impl Population {
    /// A manager over `store` (which holds this population), its clock at the start.
    fn serve(&self, store: Arc<dyn SessionStore>) -> Sessionary {
        let clock = MockClock::default();
        clock.set(self.start);
        let manager = SessionManager::builder(store)
            .with_clock(Arc::new(clock.clone()))
            .with_keys(self.keys.clone())
            .build()
            .expect("default policy");
        Sessionary {
            manager,
            clock,
            tokens: self.tokens.clone(),
            next: Cell::new(0),
        }
    }
}

impl Sessionary {
    /// The next token in visit order, moving the mock clock as `pace` says.
    fn step(&self, pace: Pace) -> &str {
        let i = self.next.get();
        self.next.set(i + 1);
        if i % pace.every == 0 {
            self.clock.advance(Duration::from_millis(pace.step_ms));
        }
        self.tokens.get(i)
    }

    /// Runs `n` paced verifies, unmeasured, and returns the share that touched.
    async fn touch_rate(&self, pace: Pace, n: usize) -> f64 {
        let mut touched = 0usize;
        for _ in 0..n {
            let token = self.step(pace);
            let rec = self.manager.verify(token).await.expect("live session");
            if rec.last_seen_at == self.clock.now() {
                touched += 1;
            }
        }
        touched as f64 / n as f64
    }

    /// Whether the next request yields to the runtime first (see [`YIELD_EVERY`]).
    fn yields(&self) -> bool {
        self.next.get() % YIELD_EVERY == 0
    }

    /// Benchmarks `verify` of the next token in visit order under `pace`, after
    /// `calibrate` unmeasured verifies that report the touch rate.
    fn bench_verify(
        &self,
        group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        rt: &Runtime,
        name: &str,
        pace: Pace,
        calibrate: usize,
    ) {
        let rate = rt.block_on(self.touch_rate(pace, calibrate));
        eprintln!(
            "{name}: {:.1}% of {calibrate} verifies touched (unmeasured, before the run)",
            rate * 100.0
        );
        group.bench_function(name, |b| {
            b.to_async(rt).iter(|| {
                let yields = self.yields();
                let token = self.step(pace);
                async move {
                    if yields {
                        tokio::task::yield_now().await;
                    }
                    self.manager.verify(token).await.expect("live session")
                }
            });
        });
        let store = format!("{:?}", self.manager.store());
        if store.starts_with("SqlStore") {
            eprintln!("{name}: after the run: {store}");
        }
    }
}

/// tower-sessions' `MemoryStore` with 100k records and their cookie values (shuffled).
struct Tower {
    store: tower_sessions::MemoryStore,
    cookies: Packed,
}

async fn populate_tower() -> Tower {
    let started = Instant::now();
    let store = tower_sessions::MemoryStore::default();
    let expiry = OffsetDateTime::now_utc() + TimeDuration::minutes(30);
    let mut cookies = Vec::with_capacity(SESSIONS);
    let mut bytes = 0;
    for i in 0..SESSIONS {
        let data: HashMap<String, Value> = session_data(i).into_iter().collect();
        if i == 0 {
            bytes = serde_json::to_vec(&data).expect("json").len();
        }
        let mut record = Record {
            id: Id::default(),
            data,
            expiry_date: expiry,
        };
        store.create(&mut record).await.expect("create");
        cookies.push(record.id.to_string());
    }
    shuffle(&mut cookies, 0x5e55_10a7);
    eprintln!(
        "tower-sessions: {SESSIONS} records created in {:.1?} (data {bytes} bytes of JSON per record)",
        started.elapsed()
    );
    Tower {
        store,
        cookies: Packed::new(&cookies),
    }
}

mod sqlite {
    //! The SQLite fixtures: temporary database files, removed on drop.

    use std::path::{Path, PathBuf};

    pub(crate) struct TempDb(PathBuf);

    impl TempDb {
        /// A database file in the system temp folder (a disk: fsync is real).
        pub(crate) fn new(name: &str) -> Self {
            Self::new_in(&std::env::temp_dir(), name)
        }

        /// A database file in `dir`.
        pub(crate) fn new_in(dir: &Path, name: &str) -> Self {
            let path = dir.join(format!(
                "sessionary-bench-{}-{name}.sqlite3",
                std::process::id()
            ));
            let db = Self(path);
            db.remove();
            db
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }

        fn remove(&self) {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut p = self.0.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            self.remove();
        }
    }
}

/// Three copies of one SQLite database holding the same 100k sessions: one
/// opened with the defaults, one with the exclusive in-process cache (touches
/// written behind by its own flush task, every second, as `sessionary serve`
/// runs it), and one like it whose flush task stays idle so that
/// `sqlite_cached_flush_1000_touches` can time flushes alone.
struct SqliteFixtures {
    plain: Sessionary,
    cached: Sessionary,
    flushed: Sessionary,
    flushed_store: SqlStore,
    _files: [sqlite::TempDb; 3],
}

async fn sqlite_fixtures() -> SqliteFixtures {
    // The 100k creates run on tmpfs when there is one: each is its own
    // `synchronous=FULL` commit, and an fsync there costs nothing. The
    // measured databases are byte-for-byte copies on the temp folder's disk.
    let shm = Path::new("/dev/shm");
    let setup_dir = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    let setup_db = sqlite::TempDb::new_in(&setup_dir, "setup");
    let store = SqlStore::open_sqlite(setup_db.path())
        .await
        .expect("open SQLite");
    let population = populate(
        Arc::new(store.clone()),
        &format!(
            "sessionary SqlStore (SQLite file in {})",
            setup_dir.display()
        ),
    )
    .await;
    // Closing checkpoints the WAL into the file, which is then copied whole.
    store.close().await;
    drop(store);
    let files = [
        sqlite::TempDb::new("plain"),
        sqlite::TempDb::new("cached"),
        sqlite::TempDb::new("flushed"),
    ];
    for f in &files {
        std::fs::copy(setup_db.path(), f.path()).expect("copy the database");
    }
    drop(setup_db);
    let plain = SqlStore::open_sqlite(files[0].path())
        .await
        .expect("open SQLite");
    let cached = SqlStore::open_sqlite_with(
        files[1].path(),
        SqliteOptions::new().with_exclusive_cache(true),
    )
    .await
    .expect("open SQLite with the exclusive cache");
    let flushed_store = SqlStore::open_sqlite_with(
        files[2].path(),
        SqliteOptions::new()
            .with_exclusive_cache(true)
            .with_touch_flush_interval(Duration::from_secs(24 * 3600)),
    )
    .await
    .expect("open SQLite with the exclusive cache");
    SqliteFixtures {
        plain: population.serve(Arc::new(plain)),
        cached: population.serve(Arc::new(cached)),
        flushed: population.serve(Arc::new(flushed_store.clone())),
        flushed_store,
        _files: files,
    }
}

/// `sqlite_cached_flush_1000_touches`: the write-behind cost of touches, which
/// the verify loops leave to the background: one `flush_touches` transaction
/// writing [`FLUSH_BATCH`] touches (of as many sessions, each due), timed alone.
/// The touching verifies before each flush are not timed.
fn bench_flush(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    f: &SqliteFixtures,
) {
    let fixture = &f.flushed;
    let store = &f.flushed_store;
    // Fill the cache (misses are not what this measures), then make every
    // session due at each visit.
    let rate = rt.block_on(fixture.touch_rate(COALESCED, SESSIONS));
    rt.block_on(store.flush_touches()).expect("flush");
    fixture
        .clock
        .advance(Duration::from_millis(TOUCH_INTERVAL_MS));
    eprintln!(
        "sqlite_cached_flush: cache filled ({:.1}% touched)",
        rate * 100.0
    );
    group.bench_function("sqlite_cached_flush_1000_touches", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                for _ in 0..FLUSH_BATCH {
                    let token = fixture.step(TOUCH_EVERY);
                    fixture.manager.verify(token).await.expect("live session");
                }
                let started = Instant::now();
                let n = store.flush_touches().await.expect("flush");
                spent += started.elapsed();
                assert_eq!(n, FLUSH_BATCH, "every verify touched");
            }
            spent
        });
    });
}

fn hot_path(c: &mut Criterion) {
    let rt = runtime();
    eprintln!(
        "session data: {} bytes of JSON",
        serde_json::to_vec(&session_data(0)).expect("json").len()
    );
    let with_sqlite = std::env::var_os("SESSIONARY_BENCH_NO_SQLITE").is_none();

    let memory_store: Arc<dyn SessionStore> = Arc::new(sessionary_core::MemoryStore::new());
    let memory = rt
        .block_on(populate(memory_store.clone(), "sessionary MemoryStore"))
        .serve(memory_store);
    let sqlite = with_sqlite.then(|| rt.block_on(sqlite_fixtures()));
    let tower = rt.block_on(populate_tower());

    let mut group = c.benchmark_group("verify_100k");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));

    memory.bench_verify(&mut group, &rt, "sessionary_memory", COALESCED, SESSIONS);
    if let Some(f) = &sqlite {
        f.plain
            .bench_verify(&mut group, &rt, "sessionary_sqlite", COALESCED, 9_000);
        // One unmeasured cycle fills the cache (and keeps the touch phases).
        f.cached.bench_verify(
            &mut group,
            &rt,
            "sessionary_sqlite_cached",
            COALESCED,
            SESSIONS,
        );
    }

    let next = Cell::new(0usize);
    group.bench_function("tower_sessions_memory", |b| {
        b.to_async(&rt).iter(|| {
            let i = next.get();
            next.set(i + 1);
            let cookie = tower.cookies.get(i);
            let store = &tower.store;
            async move {
                if i % YIELD_EVERY == 0 {
                    tokio::task::yield_now().await;
                }
                // What tower-sessions does per request with sliding expiry
                // (`Expiry::OnInactivity` + `with_always_save(true)`): parse the
                // cookie, load (a deep clone), push the expiry, save (another clone).
                let id: Id = cookie.parse().expect("cookie");
                let mut record = store.load(&id).await.expect("load").expect("live");
                record.expiry_date = OffsetDateTime::now_utc() + TimeDuration::minutes(30);
                store.save(&record).await.expect("save");
                record
            }
        });
    });

    // Like-for-like with tower-sessions, whose load hands out decoded data:
    // verify, then open (AES-256-GCM) and parse the session's data.
    group.bench_function("sessionary_memory_read_data", |b| {
        b.to_async(&rt).iter(|| {
            let yields = memory.yields();
            let token = memory.step(COALESCED);
            let m = &memory.manager;
            async move {
                if yields {
                    tokio::task::yield_now().await;
                }
                let rec = m.verify(token).await.expect("live session");
                m.data(&rec).expect("data opens")
            }
        });
    });

    // Worst case: jump one touch interval so every session is due, then keep
    // each session unseen for longer than the interval: every verify writes.
    let interval = Duration::from_millis(TOUCH_INTERVAL_MS);
    memory.clock.advance(interval);
    memory.bench_verify(
        &mut group,
        &rt,
        "sessionary_memory_touch_every",
        TOUCH_EVERY,
        SESSIONS,
    );
    if let Some(f) = &sqlite {
        f.cached.clock.advance(interval);
        f.cached.bench_verify(
            &mut group,
            &rt,
            "sessionary_sqlite_cached_touch_every",
            TOUCH_EVERY,
            SESSIONS,
        );
        f.plain.clock.advance(interval);
        f.plain.bench_verify(
            &mut group,
            &rt,
            "sessionary_sqlite_touch_every",
            TOUCH_EVERY,
            2_000,
        );
    }
    group.finish();

    // The pieces of `verify`, to see where its time goes.
    let mut group = c.benchmark_group("verify_parts");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let tokens = &memory.tokens;
    let hashes: Vec<TokenHash> = (0..tokens.len)
        .map(|i| SessionToken::parse(tokens.get(i)).expect("token").hash())
        .collect();
    let next = Cell::new(0usize);
    let cycle = || {
        let i = next.get();
        next.set(i + 1);
        i
    };
    group.bench_function("token_parse", |b| {
        b.iter(|| SessionToken::parse(black_box(tokens.get(cycle()))).expect("token"));
    });
    group.bench_function("token_parse_sha256", |b| {
        b.iter(|| {
            SessionToken::parse(black_box(tokens.get(cycle())))
                .expect("token")
                .hash()
        });
    });
    group.bench_function("system_clock_now", |b| {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        b.iter(|| black_box(&clock).now());
    });
    let store = memory.manager.store();
    group.bench_function("memory_store_load_no_touch", |b| {
        b.to_async(&rt).iter(|| {
            let h = &hashes[cycle() % hashes.len()];
            async move { store.load(h, None).await.expect("load") }
        });
    });
    let m = &memory.manager;
    group.bench_function("memory_status_no_touch", |b| {
        b.to_async(&rt).iter(|| {
            let t = tokens.get(cycle());
            async move { m.status(t).await.expect("live session") }
        });
    });
    if let Some(f) = &sqlite {
        bench_flush(&mut group, &rt, f);
        for (name, fixture) in [
            ("sqlite_status_no_touch", &f.plain),
            ("sqlite_cached_status_no_touch", &f.cached),
        ] {
            group.bench_function(name, |b| {
                b.to_async(&rt).iter(|| {
                    let t = fixture.tokens.get(cycle());
                    async move { fixture.manager.status(t).await.expect("live session") }
                });
            });
        }
    }
    group.finish();
}

// What `criterion_group!` + `criterion_main!` expand to, written out because the
// macro's generated `pub fn` cannot carry the docs the workspace lints require.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    hot_path(&mut c);
    c.final_summary();
}
